//! The audio codecs we negotiate, and the per-stream encoders and decoders.

use std::fmt;
use std::str::FromStr;

use webrtc::api::media_engine::{MIME_TYPE_OPUS, MIME_TYPE_PCMU, MIME_TYPE_TELEPHONE_EVENT};
use webrtc::rtp_transceiver::rtp_codec::{RTCRtpCodecCapability, RTCRtpCodecParameters};

use super::g711::{decode_ulaw, encode_ulaw};
use super::opus_codec::{OpusDecoder, OpusEncoder};
use super::resample::{Downsampler48kTo8k, Upsampler8kTo48k};
use super::MediaError;
use crate::audio::FRAME_SAMPLES;

/// The payload type we offer for `telephone-event/8000` (RFC 4733).
pub const TELEPHONE_EVENT_PAYLOAD_TYPE: u8 = 101;

/// An audio codec we can negotiate. Offers list them in the configured order.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// Opus, 48 kHz (mono in practice), offered as payload type 111.
    Opus,
    /// G.711 µ-law, 8 kHz, static payload type 0.
    Pcmu,
}

impl Codec {
    /// The SDP encoding name (`opus`, `PCMU`).
    pub fn name(self) -> &'static str {
        match self {
            Codec::Opus => "opus",
            Codec::Pcmu => "PCMU",
        }
    }

    /// The MIME type used by the WebRTC engine (`audio/opus`, `audio/PCMU`).
    pub fn mime_type(self) -> &'static str {
        match self {
            Codec::Opus => MIME_TYPE_OPUS,
            Codec::Pcmu => MIME_TYPE_PCMU,
        }
    }

    /// The RTP clock rate in Hz.
    pub fn clock_rate(self) -> u32 {
        match self {
            Codec::Opus => 48_000,
            Codec::Pcmu => 8_000,
        }
    }

    /// The payload type we offer (the answerer's own numbers are used when we answer).
    pub fn default_payload_type(self) -> u8 {
        match self {
            Codec::Opus => 111,
            Codec::Pcmu => 0,
        }
    }

    /// RTP timestamp units per 20 ms frame.
    pub fn samples_per_frame(self) -> u32 {
        self.clock_rate() / 50
    }

    /// The codec for a MIME type such as `audio/opus` (case-insensitive).
    pub fn from_mime(mime: &str) -> Option<Codec> {
        [Codec::Opus, Codec::Pcmu]
            .into_iter()
            .find(|c| c.mime_type().eq_ignore_ascii_case(mime))
    }

    /// The codec for an SDP encoding name and clock rate (`opus`/48000, `PCMU`/8000).
    pub(crate) fn from_sdp(name: &str, clock_rate: u32) -> Option<Codec> {
        [Codec::Opus, Codec::Pcmu]
            .into_iter()
            .find(|c| c.name().eq_ignore_ascii_case(name) && c.clock_rate() == clock_rate)
    }

    pub(crate) fn parameters(self) -> RTCRtpCodecParameters {
        let (channels, fmtp) = match self {
            Codec::Opus => (2, "minptime=10;useinbandfec=1"),
            Codec::Pcmu => (0, ""),
        };
        RTCRtpCodecParameters {
            capability: RTCRtpCodecCapability {
                mime_type: self.mime_type().to_owned(),
                clock_rate: self.clock_rate(),
                channels,
                sdp_fmtp_line: fmtp.to_owned(),
                rtcp_feedback: vec![],
            },
            payload_type: self.default_payload_type(),
            ..Default::default()
        }
    }
}

impl fmt::Display for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Codec {
    type Err = MediaError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "opus" => Ok(Codec::Opus),
            "pcmu" => Ok(Codec::Pcmu),
            other => Err(MediaError::InvalidConfig(format!(
                "unknown codec {other:?}; expected `opus` or `pcmu`"
            ))),
        }
    }
}

pub(crate) fn telephone_event_parameters() -> RTCRtpCodecParameters {
    RTCRtpCodecParameters {
        capability: RTCRtpCodecCapability {
            mime_type: MIME_TYPE_TELEPHONE_EVENT.to_owned(),
            clock_rate: 8_000,
            channels: 0,
            sdp_fmtp_line: "0-16".to_owned(),
            rtcp_feedback: vec![],
        },
        payload_type: TELEPHONE_EVENT_PAYLOAD_TYPE,
        ..Default::default()
    }
}

pub(crate) fn is_telephone_event(mime: &str) -> bool {
    mime.eq_ignore_ascii_case(MIME_TYPE_TELEPHONE_EVENT)
}

/// Turns 48 kHz frames into RTP payloads for one codec.
pub(crate) enum AudioEncoder {
    Opus(OpusEncoder),
    Pcmu(Downsampler48kTo8k),
}

impl AudioEncoder {
    pub(crate) fn new(codec: Codec) -> Result<Self, MediaError> {
        Ok(match codec {
            Codec::Opus => AudioEncoder::Opus(OpusEncoder::new()?),
            Codec::Pcmu => AudioEncoder::Pcmu(Downsampler48kTo8k::new()),
        })
    }

    /// Encodes one 20 ms frame of [`FRAME_SAMPLES`] samples.
    pub(crate) fn encode(&mut self, frame: &[i16]) -> Result<Vec<u8>, MediaError> {
        match self {
            AudioEncoder::Opus(enc) => enc.encode(frame),
            AudioEncoder::Pcmu(down) => Ok(encode_ulaw(&down.process(frame))),
        }
    }
}

/// Turns RTP payloads of one codec into 48 kHz samples.
pub(crate) enum AudioDecoder {
    Opus(OpusDecoder),
    Pcmu(Upsampler8kTo48k),
}

impl AudioDecoder {
    pub(crate) fn new(codec: Codec) -> Result<Self, MediaError> {
        Ok(match codec {
            Codec::Opus => AudioDecoder::Opus(OpusDecoder::new()?),
            Codec::Pcmu => AudioDecoder::Pcmu(Upsampler8kTo48k::new()),
        })
    }

    pub(crate) fn codec(&self) -> Codec {
        match self {
            AudioDecoder::Opus(_) => Codec::Opus,
            AudioDecoder::Pcmu(_) => Codec::Pcmu,
        }
    }

    pub(crate) fn decode(&mut self, payload: &[u8]) -> Result<Vec<i16>, MediaError> {
        match self {
            AudioDecoder::Opus(dec) => dec.decode(payload),
            AudioDecoder::Pcmu(up) => Ok(up.process(&decode_ulaw(payload))),
        }
    }

    /// One frame standing in for a lost packet: Opus PLC; for PCMU, silence
    /// (passed through the resampler so its history stays continuous).
    pub(crate) fn conceal(&mut self) -> Result<Vec<i16>, MediaError> {
        match self {
            AudioDecoder::Opus(dec) => dec.conceal(),
            AudioDecoder::Pcmu(up) => Ok(up.process(&[0; FRAME_SAMPLES / 6])),
        }
    }

    /// The frame just before `next_payload`, rebuilt from its FEC data when the
    /// codec has any (Opus), otherwise concealed.
    pub(crate) fn recover(&mut self, next_payload: &[u8]) -> Result<Vec<i16>, MediaError> {
        match self {
            AudioDecoder::Opus(dec) => dec.recover(next_payload),
            AudioDecoder::Pcmu(_) => self.conceal(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::{dominant_tone, AudioSource, ToneSource, SAMPLE_RATE};

    #[test]
    fn codec_metadata() {
        assert_eq!(Codec::Opus.samples_per_frame(), 960);
        assert_eq!(Codec::Pcmu.samples_per_frame(), 160);
        assert_eq!(Codec::from_mime("AUDIO/OPUS"), Some(Codec::Opus));
        assert_eq!(Codec::from_mime("audio/PCMU"), Some(Codec::Pcmu));
        assert_eq!(Codec::from_mime("audio/PCMA"), None);
        assert_eq!("Opus".parse::<Codec>().ok(), Some(Codec::Opus));
        assert!("g729".parse::<Codec>().is_err());
    }

    #[test]
    fn pcmu_pipeline_keeps_a_tone() {
        let mut enc = AudioEncoder::new(Codec::Pcmu).expect("pcmu encoder");
        let mut dec = AudioDecoder::new(Codec::Pcmu).expect("pcmu decoder");
        let mut tone = ToneSource::new(440.0);
        let mut frame = vec![0i16; FRAME_SAMPLES];
        let mut heard = Vec::new();
        for _ in 0..50 {
            tone.read_frame(&mut frame).expect("tone");
            let payload = enc.encode(&frame).expect("encode");
            assert_eq!(payload.len(), 160, "20 ms of PCMU is 160 bytes");
            heard.extend(dec.decode(&payload).expect("decode"));
        }
        assert_eq!(dec.conceal().expect("conceal").len(), FRAME_SAMPLES);
        assert_eq!(
            dominant_tone(&heard, &[440.0, 880.0], SAMPLE_RATE),
            Some(440.0)
        );
    }
}
