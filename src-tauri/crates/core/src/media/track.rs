//! A local track that writes our own RTP packets unmodified.
//!
//! `TrackLocalStaticRTP::write_rtp` (webrtc 0.14) overwrites every packet's
//! payload type with the one codec chosen at bind time, which would turn RFC 4733
//! telephone-event packets into broken audio packets. This track instead keeps
//! the `TrackLocalContext`'s write stream from `bind()` and the negotiated codec
//! list, and the media pump writes complete packets (our payload type, sequence
//! number, timestamp and the bound SSRC) straight to that stream.

use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::sync::watch;
use webrtc::rtp_transceiver::rtp_codec::{RTCRtpCodecParameters, RTPCodecType};
use webrtc::track::track_local::{TrackLocal, TrackLocalContext, TrackLocalWriter};

use webrtc::rtp::packet::Packet;

use super::codec::Codec;
use super::sdp::SdpCodec;

/// The audio codec chosen for sending, with the negotiated payload type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SendCodec {
    pub(crate) codec: Codec,
    pub(crate) payload_type: u8,
}

/// The negotiated telephone-event format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EventCodec {
    pub(crate) payload_type: u8,
    pub(crate) clock_rate: u32,
}

/// Where the media pump's packets go: the WebRTC engine's track (which encrypts and sends
/// them over ICE), or the classic profile's socket.
pub(crate) trait RtpOut: Send + Sync {
    /// Sends one complete RTP packet.
    fn send<'a>(&'a self, packet: &'a Packet) -> BoxFuture<'a, Result<(), String>>;
}

/// The engine's write stream from `bind()`.
struct EngineOut(Arc<dyn TrackLocalWriter + Send + Sync>);

impl RtpOut for EngineOut {
    fn send<'a>(&'a self, packet: &'a Packet) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            self.0
                .write_rtp(packet)
                .await
                .map(drop)
                .map_err(|e| e.to_string())
        })
    }
}

/// What negotiation gives the pump: where and how to write.
pub(crate) struct Binding {
    id: String,
    pub(crate) ssrc: u32,
    pub(crate) writer: Arc<dyn RtpOut>,
    paused: Box<dyn Fn() -> bool + Send + Sync>,
    pub(crate) audio: SendCodec,
    pub(crate) telephone_event: Option<EventCodec>,
}

impl Binding {
    /// A binding for a transport that never pauses by itself (the classic profile: the
    /// negotiated directions alone decide what is sent).
    pub(crate) fn new(
        ssrc: u32,
        writer: Arc<dyn RtpOut>,
        audio: SendCodec,
        telephone_event: Option<EventCodec>,
    ) -> Self {
        Self {
            id: "classic".to_owned(),
            ssrc,
            writer,
            paused: Box::new(|| false),
            audio,
            telephone_event,
        }
    }

    /// Whether the engine has paused the sender (negotiated direction without send).
    /// Packets must then not be written, so that sequence numbers do not advance.
    pub(crate) fn is_paused(&self) -> bool {
        (self.paused)()
    }
}

impl std::fmt::Debug for Binding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Binding")
            .field("ssrc", &self.ssrc)
            .field("audio", &self.audio)
            .field("telephone_event", &self.telephone_event)
            .finish()
    }
}

/// What to send with, from the receiver's formats (its SDP, or the engine's negotiated
/// list): its first audio codec that is also one of `ours` (the remote's order is the
/// negotiated preference, RFC 3264 §6.1) with its payload type, and the telephone-event
/// whose clock matches that codec's (RFC 4733 §2.1), else its first.
pub(crate) fn choose_send(
    remote: &[SdpCodec],
    ours: &[Codec],
) -> Option<(SendCodec, Option<EventCodec>)> {
    let (codec, payload_type) = remote.iter().find_map(|c| {
        let codec = Codec::from_sdp(&c.name, c.clock_rate)?;
        ours.contains(&codec).then_some((codec, c.payload_type))
    })?;
    let events: Vec<&SdpCodec> = remote
        .iter()
        .filter(|c| c.name.eq_ignore_ascii_case("telephone-event"))
        .collect();
    let telephone_event = events
        .iter()
        .find(|c| c.clock_rate == codec.clock_rate())
        .or_else(|| events.first())
        .map(|c| EventCodec {
            payload_type: c.payload_type,
            clock_rate: if c.clock_rate == 0 {
                8000
            } else {
                c.clock_rate
            },
        });
    Some((
        SendCodec {
            codec,
            payload_type,
        },
        telephone_event,
    ))
}

/// The outgoing audio track of a media session.
pub(crate) struct RawRtpTrack {
    id: String,
    stream_id: String,
    /// Codecs we are willing to send, in our order of preference.
    codecs: Vec<Codec>,
    binding: watch::Sender<Option<Arc<Binding>>>,
}

impl std::fmt::Debug for RawRtpTrack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawRtpTrack").field("id", &self.id).finish()
    }
}

impl RawRtpTrack {
    pub(crate) fn new(codecs: Vec<Codec>, stream_id: String) -> Self {
        Self {
            id: "audio".to_owned(),
            stream_id,
            codecs,
            binding: watch::Sender::new(None),
        }
    }

    /// Watches the current binding (None until negotiation completes).
    pub(crate) fn subscribe(&self) -> watch::Receiver<Option<Arc<Binding>>> {
        self.binding.subscribe()
    }

    /// The current binding, if any.
    pub(crate) fn binding(&self) -> Option<Arc<Binding>> {
        self.binding.borrow().clone()
    }

    fn do_bind(&self, t: &TrackLocalContext) -> webrtc::error::Result<RTCRtpCodecParameters> {
        let negotiated = t.codec_parameters();
        let formats: Vec<SdpCodec> = negotiated
            .iter()
            .map(|p| SdpCodec {
                payload_type: p.payload_type,
                name: p
                    .capability
                    .mime_type
                    .split_once('/')
                    .map_or(p.capability.mime_type.as_str(), |(_, name)| name)
                    .to_owned(),
                clock_rate: p.capability.clock_rate,
            })
            .collect();
        let (audio, telephone_event) =
            choose_send(&formats, &self.codecs).ok_or(webrtc::Error::ErrUnsupportedCodec)?;
        let params = negotiated
            .iter()
            .find(|p| p.payload_type == audio.payload_type)
            .ok_or(webrtc::Error::ErrUnsupportedCodec)?;
        let paused = t.paused();
        let binding = Binding {
            id: t.id(),
            ssrc: t.ssrc(),
            writer: Arc::new(EngineOut(t.write_stream())),
            paused: Box::new(move || paused.load(Ordering::SeqCst)),
            audio,
            telephone_event,
        };
        tracing::debug!(?binding, "media track bound");
        self.binding.send_replace(Some(Arc::new(binding)));
        Ok(params.clone())
    }

    fn do_unbind(&self, t: &TrackLocalContext) -> webrtc::error::Result<()> {
        let id = t.id();
        let matches = self.binding.borrow().as_ref().is_some_and(|b| b.id == id);
        if !matches {
            return Err(webrtc::Error::ErrUnbindFailed);
        }
        self.binding.send_replace(None);
        Ok(())
    }
}

pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

// `TrackLocal` is an `#[async_trait]` trait; these are its desugared signatures
// (bind and unbind complete synchronously, so they return ready futures).
impl TrackLocal for RawRtpTrack {
    fn bind<'life0, 'life1, 'async_trait>(
        &'life0 self,
        t: &'life1 TrackLocalContext,
    ) -> BoxFuture<'async_trait, webrtc::error::Result<RTCRtpCodecParameters>>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        let result = self.do_bind(t);
        Box::pin(std::future::ready(result))
    }

    fn unbind<'life0, 'life1, 'async_trait>(
        &'life0 self,
        t: &'life1 TrackLocalContext,
    ) -> BoxFuture<'async_trait, webrtc::error::Result<()>>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        let result = self.do_unbind(t);
        Box::pin(std::future::ready(result))
    }

    fn id(&self) -> &str {
        &self.id
    }

    fn rid(&self) -> Option<&str> {
        None
    }

    fn stream_id(&self) -> &str {
        &self.stream_id
    }

    fn kind(&self) -> RTPCodecType {
        RTPCodecType::Audio
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
