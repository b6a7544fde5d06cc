//! Hookflash calling core: the call agent, calls, transfer, devices, audio, media and SIP —
//! everything of the softphone but the window. It builds and tests without Tauri or WebKit.
//!
//! # How to drive it
//!
//! The programming model is the ACS calling SDK's: a [`CallClient`] creates
//! a [`CallAgent`] from a credential; the agent registers
//! (`connectionState`), places and receives calls, and reports every change as an
//! [`Event`](api::Event). Commands and events are one serde vocabulary ([`api`]) shared by the
//! Tauri IPC, the headless `hookflash-agent` binary (JSON lines) and the tests.
//!
//! # Layers
//!
//! - [`sip`]: messages, URIs, UDP/TCP transport.
//! - [`registration`], [`call`], [`transfer`]: protocol state machines with no I/O, tested on virtual time.
//! - [`media`]: WebRTC media (ICE, DTLS-SRTP, Opus/PCMU, RFC 4733 DTMF) via the `webrtc` crate.
//! - [`audio`]: the device seam ([`audio::AudioSource`], [`audio::AudioSink`]) and virtual devices.
//! - [`agent`]: the async driver that owns sockets and timers and runs the machines.
//! - [`auth`]: user access tokens (Kamailio `auth_ephemeral` scheme) and SIP digest.
#![warn(missing_docs)]

pub mod agent;
pub mod api;
pub mod audio;
pub mod auth;
pub mod call;
pub mod error;
pub mod mailbox;
pub mod media;
pub mod privacy;
pub mod registration;
pub mod sip;
pub mod transfer;

pub use agent::{AgentConfig, Call, CallAgent, CallClient, Credential};
pub use error::{AgentError, CallError, ErrorCode};
