//! Real-time media for calls: Opus, G.722, PCMU and PCMA audio with RFC 4733 DTMF, over one
//! of two transports behind one pipeline (codecs, jitter buffer, DTMF, hold, devices):
//!
//! * the **WebRTC profile** ([`MediaProfile::WebRtc`]): ICE and DTLS-SRTP on the `webrtc`
//!   crate (webrtc-rs 0.14, the classic async API), what the switchboard and browsers use;
//! * the **classic profile**: RTP/AVP ([`MediaProfile::Rtp`]) or RTP/SAVP with SDES keys
//!   ([`MediaProfile::Sdes`], RFC 4568), no ICE, symmetric RTP (RFC 4961) and RTCP, what desk
//!   phones, PBXes and SIP trunks use.
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
//! * **Receive**: RTP packets wait in an adaptive jitter buffer; every 20 ms one
//!   is decoded (a gap is concealed: Opus PLC/FEC, silence for the others) and
//!   written to the [`AudioSink`]; telephone-event packets become [`MediaEvent::Dtmf`].
//! * **Direction** is taken from the SDP in both directions *and* enforced in the
//!   pipeline; see [`MediaSession::create_reoffer`].
//!
//! [`AudioSource`]: crate::audio::AudioSource
//! [`AudioSink`]: crate::audio::AudioSink

mod codec;
mod dtmf;
mod opus_codec;
mod profile;
pub mod sdp;
mod sdp_classic;
mod session;
mod track;

use std::net::{IpAddr, Ipv4Addr};

pub use codec::{Codec, TELEPHONE_EVENT_PAYLOAD_TYPE};
pub use dtmf::{dtmf_digit, dtmf_event_code, TelephoneEvent};
pub use opus_codec::{OpusDecoder, OpusEncoder};
pub use profile::MediaProfile;
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
    /// The audio codecs to offer or accept, in order of preference. Default: all of them,
    /// wideband first (Opus, G.722, PCMU, PCMA). `telephone-event` is always added for DTMF.
    pub codecs: Vec<Codec>,
    /// The transport: what an offer from this session uses, and what an offer it answers
    /// must use ([`MediaSession::check_offer`] says which profile an offer needs).
    pub profile: MediaProfile,
    /// TURN servers to gather relay candidates from (WebRTC profile).
    pub ice_servers: Vec<IceServer>,
    /// Offer and use relay candidates only: the peer never learns our addresses, and media
    /// crosses any NAT or firewall that lets the TURN server through. Only the WebRTC
    /// profile has ICE, so the classic profiles are refused under this policy.
    pub relay_only: bool,
}

/// A TURN server (RFC 8656) and the credentials to allocate on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IceServer {
    /// `turn:HOST:PORT` (`?transport=udp`); UDP relays only.
    pub urls: Vec<String>,
    /// The TURN user name: with the TURN REST scheme, the token's `EXPIRY:USER`.
    pub username: String,
    /// Its password: with the TURN REST scheme, the token's signature.
    pub credential: String,
}

impl Default for MediaConfig {
    fn default() -> Self {
        Self {
            bind_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            codecs: Codec::all().to_vec(),
            profile: MediaProfile::WebRtc,
            ice_servers: Vec::new(),
            relay_only: false,
        }
    }
}

/// Something that happened to a [`MediaSession`], delivered on the channel
/// returned by [`MediaSession::new`].
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq)]
pub enum MediaEvent {
    /// The media path is up: ICE and DTLS for the WebRTC profile; for the classic profile,
    /// the first valid (authenticated, with SRTP) packet from the peer, or the answer when the
    /// peer does not send. May repeat after a `Disconnected`.
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
    /// codec, or a media profile the policy does not allow (SIP: 488 Not Acceptable Here).
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
