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

use super::codec::{is_telephone_event, Codec};

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

/// What a bind gives us: where and how to write.
pub(crate) struct Binding {
    id: String,
    pub(crate) ssrc: u32,
    pub(crate) writer: Arc<dyn TrackLocalWriter + Send + Sync>,
    paused: Box<dyn Fn() -> bool + Send + Sync>,
    pub(crate) audio: SendCodec,
    pub(crate) telephone_event: Option<EventCodec>,
}

impl Binding {
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
        // The remote's order is the negotiated preference (RFC 3264 §6.1); among
        // those, only codecs we were configured with.
        let audio = negotiated
            .iter()
            .find_map(|p| {
                let codec = Codec::from_mime(&p.capability.mime_type)?;
                self.codecs.contains(&codec).then_some((codec, p))
            })
            .ok_or(webrtc::Error::ErrUnsupportedCodec)?;
        let (codec, params) = audio;
        let events: Vec<&RTCRtpCodecParameters> = negotiated
            .iter()
            .filter(|p| is_telephone_event(&p.capability.mime_type))
            .collect();
        // Prefer the telephone-event whose clock matches the audio clock (RFC 4733 §2.1).
        let telephone_event = events
            .iter()
            .find(|p| p.capability.clock_rate == codec.clock_rate())
            .or_else(|| events.first())
            .map(|p| EventCodec {
                payload_type: p.payload_type,
                clock_rate: if p.capability.clock_rate == 0 {
                    8000
                } else {
                    p.capability.clock_rate
                },
            });
        let paused = t.paused();
        let binding = Binding {
            id: t.id(),
            ssrc: t.ssrc(),
            writer: t.write_stream(),
            paused: Box::new(move || paused.load(Ordering::SeqCst)),
            audio: SendCodec {
                codec,
                payload_type: params.payload_type,
            },
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

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

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
