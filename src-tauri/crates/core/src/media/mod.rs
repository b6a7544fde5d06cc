//! Real-time media for calls: ICE, DTLS-SRTP, Opus/PCMU audio and RFC 4733 DTMF,
//! on top of the `webrtc` crate (webrtc-rs 0.14, the classic async API).
//!
//! # Driving a session
//!
//! A [`MediaSession`] is one call's audio stream. SIP carries whole SDP bodies,
//! so there is no trickle ICE: every SDP this module produces is complete, with
//! all (host) candidates, because it is returned only after gathering finished.
//!
//! ```no_run
//! # async fn demo() -> Result<(), hookflash_core::media::MediaError> {
//! use hookflash_core::audio::{CaptureSink, ToneSource};
//! use hookflash_core::media::{Direction, MediaConfig, MediaSession};
//!
//! let (alice, _alice_events) = MediaSession::new(
//!     MediaConfig::default(),
//!     Box::new(ToneSource::new(440.0)),
//!     Box::new(CaptureSink::new()),
//! )
//! .await?;
//! let (bob, mut bob_events) = MediaSession::new(
//!     MediaConfig::default(),
//!     Box::new(ToneSource::new(880.0)),
//!     Box::new(CaptureSink::new()),
//! )
//! .await?;
//!
//! let offer = alice.create_offer().await?; // INVITE body
//! let answer = bob.accept_offer(&offer).await?; // 200 OK body
//! alice.accept_answer(&answer).await?; // ACK
//!
//! // Hold: re-INVITE with a=sendonly, answered with a=recvonly; resume likewise.
//! let hold = alice.create_reoffer(Direction::SendOnly).await?;
//! alice.accept_answer(&bob.accept_offer(&hold).await?).await?;
//! let resume = alice.create_reoffer(Direction::SendRecv).await?;
//! alice.accept_answer(&bob.accept_offer(&resume).await?).await?;
//!
//! alice.send_dtmf("159#").await?; // Bob gets MediaEvent::Dtmf('1'), ...
//! alice.close().await;
//! bob.close().await;
//! # Ok(()) }
//! ```
//!
//! # The pipeline
//!
//! * **Send**: every 20 ms the pump reads one frame from the [`AudioSource`],
//!   encodes it with the negotiated codec and writes one RTP packet. DTMF digits
//!   replace audio with RFC 4733 packets on the same SSRC and timestamp clock.
//! * **Receive**: each RTP packet is decoded (a gap in sequence numbers is
//!   concealed first: Opus PLC/FEC, silence for PCMU) and written to the
//!   [`AudioSink`]; telephone-event packets become [`MediaEvent::Dtmf`].
//!   There is no jitter buffer yet: frames go to the sink as packets arrive.
//! * **Direction** is taken from the SDP in both directions *and* enforced in the
//!   pipeline; see [`MediaSession::create_reoffer`].
//!
//! [`AudioSource`]: crate::audio::AudioSource
//! [`AudioSink`]: crate::audio::AudioSink

mod codec;
mod dtmf;
pub mod g711;
mod opus_codec;
pub mod resample;
pub mod sdp;
mod session;
mod track;

use std::net::{IpAddr, Ipv4Addr};

pub use codec::{Codec, TELEPHONE_EVENT_PAYLOAD_TYPE};
pub use dtmf::{dtmf_digit, dtmf_event_code, TelephoneEvent};
pub use opus_codec::{OpusDecoder, OpusEncoder};
pub use sdp::{sdp_direction, Direction};
pub use session::MediaSession;

use crate::audio::DeviceError;

/// How a [`MediaSession`] is set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaConfig {
    /// The local address to gather ICE host candidates on. A loopback address
    /// (the default, `127.0.0.1`) enables loopback candidates, which WebRTC
    /// normally excludes; the unspecified address (`0.0.0.0` / `::`) gathers on
    /// every non-loopback interface of that family; any other address gathers on
    /// exactly that address.
    pub bind_ip: IpAddr,
    /// The audio codecs to offer or accept, in order of preference. Default:
    /// `[Opus, Pcmu]`. `telephone-event` is always added for DTMF.
    pub codecs: Vec<Codec>,
}

impl Default for MediaConfig {
    fn default() -> Self {
        Self {
            bind_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            codecs: vec![Codec::Opus, Codec::Pcmu],
        }
    }
}

/// Something that happened to a [`MediaSession`], delivered on the channel
/// returned by [`MediaSession::new`].
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq)]
pub enum MediaEvent {
    /// ICE and DTLS are up: media can flow. May repeat after a `Disconnected`.
    Connected,
    /// Connectivity was lost; ICE may still recover (then `Connected` again).
    Disconnected,
    /// The first received audio frame was decoded and written to the sink
    /// (emitted once per session).
    FirstAudioFrame,
    /// The remote side sent a DTMF digit (RFC 4733), reported once per key press.
    Dtmf(char),
    /// The media connection failed for good (ICE or DTLS); the call has no audio.
    Failed(String),
    /// The source or sink failed; reported once until the device is replaced.
    /// Silence is sent in place of a failing source.
    DeviceError(DeviceError),
}

/// Errors from media sessions. [`code`](MediaError::code) gives a stable string.
///
/// Faults of the remote side ([`InvalidSdp`](MediaError::InvalidSdp),
/// [`Incompatible`](MediaError::Incompatible)) are kept apart from misuse of the
/// API ([`InvalidState`](MediaError::InvalidState)) and local failures.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MediaError {
    /// The remote SDP could not be parsed or is malformed (SIP: 400/488).
    #[error("invalid SDP: {0}")]
    InvalidSdp(String),
    /// The remote SDP is valid but cannot be served: no audio stream, no common
    /// codec, or plain RTP without ICE/DTLS-SRTP (SIP: 488 Not Acceptable Here).
    #[error("incompatible media: {0}")]
    Incompatible(String),
    /// The call is not in a state where this operation makes sense (for example
    /// an answer without an outstanding offer, or DTMF before negotiation).
    #[error("invalid media state: {0}")]
    InvalidState(String),
    /// The remote side did not negotiate `telephone-event`, so DTMF cannot be sent.
    #[error("the remote side does not accept RFC 4733 telephone events")]
    DtmfUnsupported,
    /// A character that is not a DTMF digit (0-9, *, #, A-D).
    #[error("{0:?} is not a DTMF digit")]
    InvalidDtmf(char),
    /// The configuration cannot be used (for example an empty codec list).
    #[error("invalid media configuration: {0}")]
    InvalidConfig(String),
    /// Encoding or decoding audio failed.
    #[error("codec error: {0}")]
    Codec(String),
    /// Something took too long (for example ICE candidate gathering).
    #[error("media timeout: {0}")]
    Timeout(String),
    /// The WebRTC engine failed internally.
    #[error("media engine error: {0}")]
    Engine(String),
    /// The session was closed.
    #[error("media session closed")]
    Closed,
}

impl MediaError {
    /// A stable, dotted error code for the UI and logs, e.g. `media.incompatible`.
    pub fn code(&self) -> &'static str {
        match self {
            MediaError::InvalidSdp(_) => "media.sdp_invalid",
            MediaError::Incompatible(_) => "media.incompatible",
            MediaError::InvalidState(_) => "media.invalid_state",
            MediaError::DtmfUnsupported => "media.dtmf_unsupported",
            MediaError::InvalidDtmf(_) => "media.dtmf_invalid",
            MediaError::InvalidConfig(_) => "media.config",
            MediaError::Codec(_) => "media.codec",
            MediaError::Timeout(_) => "media.timeout",
            MediaError::Engine(_) => "media.engine",
            MediaError::Closed => "media.closed",
        }
    }
}
