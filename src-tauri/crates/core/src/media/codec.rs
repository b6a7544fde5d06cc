//! The audio codecs we negotiate, and the per-stream encoders and decoders.

use std::fmt;
use std::str::FromStr;

use audio_codec::resampler::BoxedResampler;
use audio_codec::{create_decoder, create_encoder, CodecType};
use webrtc::api::media_engine::{
    MIME_TYPE_G722, MIME_TYPE_OPUS, MIME_TYPE_PCMA, MIME_TYPE_PCMU, MIME_TYPE_TELEPHONE_EVENT,
};
use webrtc::rtp_transceiver::rtp_codec::{RTCRtpCodecCapability, RTCRtpCodecParameters};

use super::opus_codec::{OpusDecoder, OpusEncoder};
use super::MediaError;
use crate::audio::SAMPLE_RATE;

/// The payload type we offer for `telephone-event/8000` (RFC 4733).
pub const TELEPHONE_EVENT_PAYLOAD_TYPE: u8 = 101;

/// An audio codec we can negotiate. Offers list them in the configured order.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// Opus, 48 kHz (mono in practice), offered as payload type 111.
    Opus,
    /// G.722 wideband (16 kHz audio on an 8 kHz RTP clock, RFC 3551), static payload type 9.
    G722,
    /// G.711 µ-law, 8 kHz, static payload type 0.
    Pcmu,
    /// G.711 A-law, 8 kHz, static payload type 8.
    Pcma,
}

/// Every codec, in the order offered by default (wideband first).
const ALL: [Codec; 4] = [Codec::Opus, Codec::G722, Codec::Pcmu, Codec::Pcma];

impl Codec {
    /// Every codec we implement, in our default order of preference.
    pub fn all() -> &'static [Codec] {
        &ALL
    }

    /// The SDP encoding name (`opus`, `G722`, `PCMU`, `PCMA`).
    pub fn name(self) -> &'static str {
        match self {
            Codec::Opus => "opus",
            Codec::G722 => "G722",
            Codec::Pcmu => "PCMU",
            Codec::Pcma => "PCMA",
        }
    }

    /// The MIME type used by the WebRTC engine (`audio/opus`, `audio/PCMU`, ...).
    pub fn mime_type(self) -> &'static str {
        match self {
            Codec::Opus => MIME_TYPE_OPUS,
            Codec::G722 => MIME_TYPE_G722,
            Codec::Pcmu => MIME_TYPE_PCMU,
            Codec::Pcma => MIME_TYPE_PCMA,
        }
    }

    /// The RTP clock rate in Hz (8000 for G.722, whose RTP clock is half its sample rate).
    pub fn clock_rate(self) -> u32 {
        match self {
            Codec::Opus => 48_000,
            Codec::G722 | Codec::Pcmu | Codec::Pcma => 8_000,
        }
    }

    /// The rate at which the codec itself samples audio.
    fn sample_rate(self) -> usize {
        match self {
            Codec::Opus => 48_000,
            Codec::G722 => 16_000,
            Codec::Pcmu | Codec::Pcma => 8_000,
        }
    }

    /// The payload type we offer (the answerer's own numbers are used when we answer).
    pub fn default_payload_type(self) -> u8 {
        match self {
            Codec::Opus => 111,
            Codec::G722 => 9,
            Codec::Pcmu => 0,
            Codec::Pcma => 8,
        }
    }

    /// The number of channels written in `a=rtpmap` (Opus is always `/2`, RFC 7587).
    pub(crate) fn rtpmap_channels(self) -> Option<u16> {
        (self == Codec::Opus).then_some(2)
    }

    /// The `a=fmtp` parameters we offer, if any.
    pub(crate) fn fmtp(self) -> Option<&'static str> {
        (self == Codec::Opus).then_some("minptime=10;useinbandfec=1")
    }

    /// RTP timestamp units per 20 ms frame.
    pub fn samples_per_frame(self) -> u32 {
        self.clock_rate() / 50
    }

    /// The codec for a MIME type such as `audio/opus` (case-insensitive).
    pub fn from_mime(mime: &str) -> Option<Codec> {
        ALL.into_iter()
            .find(|c| c.mime_type().eq_ignore_ascii_case(mime))
    }

    /// The codec for an SDP encoding name and clock rate (`opus`/48000, `PCMU`/8000).
    pub(crate) fn from_sdp(name: &str, clock_rate: u32) -> Option<Codec> {
        ALL.into_iter()
            .find(|c| c.name().eq_ignore_ascii_case(name) && c.clock_rate() == clock_rate)
    }

    pub(crate) fn parameters(self) -> RTCRtpCodecParameters {
        RTCRtpCodecParameters {
            capability: RTCRtpCodecCapability {
                mime_type: self.mime_type().to_owned(),
                clock_rate: self.clock_rate(),
                channels: self.rtpmap_channels().unwrap_or(0),
                sdp_fmtp_line: self.fmtp().unwrap_or_default().to_owned(),
                rtcp_feedback: vec![],
            },
            payload_type: self.default_payload_type(),
            ..Default::default()
        }
    }

    /// The `audio-codec` crate's name for a classic telephony codec.
    fn telephony(self) -> Option<CodecType> {
        match self {
            Codec::Opus => None,
            Codec::G722 => Some(CodecType::G722),
            Codec::Pcmu => Some(CodecType::PCMU),
            Codec::Pcma => Some(CodecType::PCMA),
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
        let wanted = s.trim();
        ALL.into_iter()
            .find(|c| c.name().eq_ignore_ascii_case(wanted))
            .ok_or_else(|| {
                MediaError::InvalidConfig(format!(
                    "unknown codec {wanted:?}; expected one of opus, g722, pcmu, pcma"
                ))
            })
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

/// A classic telephony codec from the `audio-codec` crate, with the resampler between our
/// 48 kHz pipeline and its own rate.
pub(crate) struct Telephony<T> {
    codec: Codec,
    coder: T,
    resampler: BoxedResampler,
}

impl<T> Telephony<T> {
    fn new(codec: Codec, coder: T, from: usize, to: usize) -> Result<Self, MediaError> {
        let resampler =
            BoxedResampler::new(from, to).map_err(|e| MediaError::Codec(format!("{e:?}")))?;
        Ok(Self {
            codec,
            coder,
            resampler,
        })
    }
}

/// Turns 48 kHz frames into RTP payloads for one codec.
pub(crate) enum AudioEncoder {
    Opus(OpusEncoder),
    Telephony(Telephony<Box<dyn audio_codec::Encoder>>),
}

impl AudioEncoder {
    pub(crate) fn new(codec: Codec) -> Result<Self, MediaError> {
        Ok(match codec.telephony() {
            None => AudioEncoder::Opus(OpusEncoder::new()?),
            Some(kind) => AudioEncoder::Telephony(Telephony::new(
                codec,
                create_encoder(kind),
                SAMPLE_RATE as usize,
                codec.sample_rate(),
            )?),
        })
    }

    /// Encodes one 20 ms frame of [`FRAME_SAMPLES`] samples.
    pub(crate) fn encode(&mut self, frame: &[i16]) -> Result<Vec<u8>, MediaError> {
        match self {
            AudioEncoder::Opus(enc) => enc.encode(frame),
            AudioEncoder::Telephony(t) => Ok(t.coder.encode(&t.resampler.resample(frame))),
        }
    }
}

/// Turns RTP payloads of one codec into 48 kHz samples.
pub(crate) enum AudioDecoder {
    Opus(OpusDecoder),
    Telephony(Telephony<Box<dyn audio_codec::Decoder>>),
}

impl AudioDecoder {
    pub(crate) fn new(codec: Codec) -> Result<Self, MediaError> {
        Ok(match codec.telephony() {
            None => AudioDecoder::Opus(OpusDecoder::new()?),
            Some(kind) => AudioDecoder::Telephony(Telephony::new(
                codec,
                create_decoder(kind),
                codec.sample_rate(),
                SAMPLE_RATE as usize,
            )?),
        })
    }

    pub(crate) fn codec(&self) -> Codec {
        match self {
            AudioDecoder::Opus(_) => Codec::Opus,
            AudioDecoder::Telephony(t) => t.codec,
        }
    }

    pub(crate) fn decode(&mut self, payload: &[u8]) -> Result<Vec<i16>, MediaError> {
        match self {
            AudioDecoder::Opus(dec) => dec.decode(payload),
            AudioDecoder::Telephony(t) => Ok(t.resampler.resample(&t.coder.decode(payload))),
        }
    }

    /// One frame standing in for a lost packet: Opus PLC; for the telephony codecs, silence
    /// (passed through the resampler so that its history stays continuous).
    pub(crate) fn conceal(&mut self) -> Result<Vec<i16>, MediaError> {
        match self {
            AudioDecoder::Opus(dec) => dec.conceal(),
            AudioDecoder::Telephony(t) => {
                let silence = vec![0i16; t.codec.sample_rate() / 50];
                Ok(t.resampler.resample(&silence))
            }
        }
    }

    /// The frame just before `next_payload`, rebuilt from its FEC data when the
    /// codec has any (Opus), otherwise concealed.
    pub(crate) fn recover(&mut self, next_payload: &[u8]) -> Result<Vec<i16>, MediaError> {
        match self {
            AudioDecoder::Opus(dec) => dec.recover(next_payload),
            AudioDecoder::Telephony(_) => self.conceal(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::{dominant_tone, AudioSource, ToneSource, FRAME_SAMPLES};

    #[test]
    fn codec_metadata() {
        assert_eq!(Codec::Opus.samples_per_frame(), 960);
        assert_eq!(Codec::Pcmu.samples_per_frame(), 160);
        assert_eq!(
            Codec::G722.samples_per_frame(),
            160,
            "G.722's RTP clock is 8 kHz although it samples at 16 kHz (RFC 3551 §4.5.2)"
        );
        assert_eq!(Codec::from_mime("AUDIO/OPUS"), Some(Codec::Opus));
        assert_eq!(Codec::from_mime("audio/PCMA"), Some(Codec::Pcma));
        assert_eq!(Codec::from_sdp("g722", 8000), Some(Codec::G722));
        assert_eq!(
            Codec::from_sdp("G722", 16000),
            None,
            "a G.722 rtpmap with a 16 kHz clock is not RFC 3551's G.722"
        );
        assert_eq!("Opus".parse::<Codec>().ok(), Some(Codec::Opus));
        assert_eq!("pcma".parse::<Codec>().ok(), Some(Codec::Pcma));
        assert!("g729".parse::<Codec>().is_err());
    }

    /// Encodes two seconds of a tone and decodes it again: the tone must survive, every
    /// frame must have the codec's size, and concealment must give a whole frame.
    fn keeps_a_tone(codec: Codec, bytes_per_frame: usize, tone: f64) {
        let mut enc = AudioEncoder::new(codec).expect("encoder");
        let mut dec = AudioDecoder::new(codec).expect("decoder");
        let mut source = ToneSource::new(tone);
        let mut frame = vec![0i16; FRAME_SAMPLES];
        let mut heard = Vec::new();
        for _ in 0..100 {
            source.read_frame(&mut frame).expect("tone");
            let payload = enc.encode(&frame).expect("encode");
            assert_eq!(payload.len(), bytes_per_frame, "20 ms of {codec}");
            let decoded = dec.decode(&payload).expect("decode");
            assert_eq!(
                decoded.len(),
                FRAME_SAMPLES,
                "one 48 kHz frame out per packet"
            );
            heard.extend(decoded);
        }
        assert_eq!(dec.conceal().expect("conceal").len(), FRAME_SAMPLES);
        assert_eq!(
            dominant_tone(&heard[4800..], &[440.0, 880.0, 3000.0, 5000.0], SAMPLE_RATE),
            Some(tone),
            "{codec} keeps a {tone} Hz tone"
        );
    }

    #[test]
    fn pcmu_keeps_a_tone() {
        keeps_a_tone(Codec::Pcmu, 160, 440.0);
    }

    #[test]
    fn pcma_keeps_a_tone() {
        keeps_a_tone(Codec::Pcma, 160, 880.0);
    }

    #[test]
    fn g722_keeps_a_wideband_tone() {
        // 5 kHz is above what G.711's 4 kHz band can carry: only a wideband codec passes it.
        keeps_a_tone(Codec::G722, 160, 5000.0);
    }
}
