//! Errors of the agent API. Each has a stable [`code`](AgentError::code) the UI can match on;
//! remote faults (a SIP status) are kept apart from API misuse (a call in the wrong state).

use crate::call::{CallOp, CallState};
use crate::sip::ParseError;

/// Errors about a call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CallError {
    /// API misuse: the operation is not possible in the call's state.
    #[error("cannot {operation:?} a call in state {state:?}")]
    InvalidState {
        /// What was asked.
        operation: CallOp,
        /// The state the call was in.
        state: CallState,
    },
    /// No call with that id.
    #[error("no call with id {0}")]
    NotFound(String),
    /// The far end broke the protocol.
    #[error("protocol error: {0}")]
    Protocol(String),
}

impl From<ParseError> for CallError {
    fn from(e: ParseError) -> Self {
        CallError::Protocol(e.0)
    }
}

/// Errors of the agent (`CallAgent` operations and the command surface).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    /// A call error.
    #[error(transparent)]
    Call(#[from] CallError),
    /// The call target could not be understood.
    #[error("invalid target {0:?}: give a user name, a sip: URI or a tel: number")]
    InvalidTarget(String),
    /// The credential could not be parsed.
    #[error("invalid credential: {0}")]
    InvalidCredential(String),
    /// The agent is not registered, so it cannot call.
    #[error("not connected to the server")]
    NotConnected,
    /// A command line could not be understood (headless agent, IPC).
    #[error("malformed command: {0}")]
    MalformedCommand(String),
    /// A DTMF string had characters outside 0-9 * # A-D.
    #[error("invalid DTMF tones {0:?}")]
    InvalidDtmf(String),
    /// Media could not be set up.
    #[error("media: {0}")]
    Media(String),
    /// An audio device could not be opened or used.
    #[error(transparent)]
    Device(#[from] crate::audio::DeviceError),
    /// A socket could not be opened or used.
    #[error("transport: {0}")]
    Transport(String),
    /// The agent has shut down.
    #[error("the agent has shut down")]
    ShutDown,
}

impl AgentError {
    /// A stable code for the UI and scripts.
    pub fn code(&self) -> ErrorCode {
        match self {
            AgentError::Call(CallError::InvalidState { .. }) => ErrorCode::CallInvalidState,
            AgentError::Call(CallError::NotFound(_)) => ErrorCode::CallNotFound,
            AgentError::Call(CallError::Protocol(_)) => ErrorCode::CallProtocol,
            AgentError::InvalidTarget(_) => ErrorCode::TargetInvalid,
            AgentError::InvalidCredential(_) => ErrorCode::CredentialInvalid,
            AgentError::NotConnected => ErrorCode::AgentNotConnected,
            AgentError::MalformedCommand(_) => ErrorCode::CommandMalformed,
            AgentError::InvalidDtmf(_) => ErrorCode::DtmfInvalid,
            AgentError::Media(_) => ErrorCode::MediaFailed,
            AgentError::Device(e) => e.code(),
            AgentError::Transport(_) => ErrorCode::TransportFailed,
            AgentError::ShutDown => ErrorCode::AgentShutDown,
        }
    }
}

macro_rules! error_codes {
    ($($(#[doc = $doc:literal])+ $name:ident = $code:literal,)+) => {
        /// Every error code the API reports (`error.code`, `audioDeviceError.code`, and the
        /// desktop shell's own), one typed vocabulary with stable dotted strings: the UI
        /// matches on these, so a code is never renamed, only added.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        #[cfg_attr(feature = "specta", derive(specta::Type))]
        #[non_exhaustive]
        pub enum ErrorCode {
            $($(#[doc = $doc])+ #[serde(rename = $code)] $name,)+
        }

        impl ErrorCode {
            /// Every code, in declaration order.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$name,)+];

            /// The stable string (`call.not_found`).
            pub fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$name => $code,)+
                }
            }
        }
    };
}

error_codes! {
    /// The operation is not possible in the call's state.
    CallInvalidState = "call.invalid_state",
    /// No call with that id.
    CallNotFound = "call.not_found",
    /// The far end broke the protocol.
    CallProtocol = "call.protocol",
    /// The far end refused to put the call on hold.
    CallHoldFailed = "call.hold_failed",
    /// The far end refused to take the call off hold.
    CallResumeFailed = "call.resume_failed",
    /// The call target could not be understood.
    TargetInvalid = "target.invalid",
    /// The credential could not be parsed.
    CredentialInvalid = "credential.invalid",
    /// Not registered, so no call can be made.
    AgentNotConnected = "agent.not_connected",
    /// A command could not be understood.
    CommandMalformed = "command.malformed",
    /// DTMF digits outside 0-9 * # A-D.
    DtmfInvalid = "dtmf.invalid",
    /// Media could not be set up or failed.
    MediaFailed = "media.failed",
    /// The other side takes none of the media profiles or codecs this account allows.
    MediaIncompatible = "media.incompatible",
    /// A socket could not be opened or used.
    TransportFailed = "transport.failed",
    /// The agent has shut down.
    AgentShutDown = "agent.shut_down",
    /// The sound device does not exist or cannot be opened.
    DeviceUnavailable = "device.unavailable",
    /// Reading from or writing to the sound device failed.
    DeviceIo = "device.io",
    /// An audio file is not in a format we can play.
    DeviceFormat = "device.format",
    /// A device specification could not be understood.
    DeviceSpec = "device.spec",
    /// The device was already closed.
    DeviceClosed = "device.closed",
    /// The microphone in use went away; another one is used.
    DeviceLostMicrophone = "device.lost.microphone",
    /// The speaker in use went away; another one is used.
    DeviceLostSpeaker = "device.lost.speaker",
    /// The ringer went away; another one is used.
    DeviceLostRinger = "device.lost.ringer",
    /// No sound device at all: only virtual ones.
    DeviceNoneAvailable = "device.none_available",
    /// The app could not read or save its settings.
    SettingsFailed = "settings.failed",
    /// The server offers no voicemail service to this app.
    VoicemailUnavailable = "voicemail.unavailable",
    /// The voicemail service answered with an error.
    VoicemailFailed = "voicemail.failed",
}

impl PartialEq<str> for ErrorCode {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for ErrorCode {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_serialize_as_their_stable_strings() {
        for code in ErrorCode::ALL {
            let json = serde_json::to_string(code).unwrap();
            assert_eq!(
                json,
                format!("\"{}\"", code.as_str()),
                "the wire form is the code"
            );
            let back: ErrorCode = serde_json::from_str(&json).unwrap();
            assert_eq!(back, *code, "codes round-trip");
        }
        let mut seen = std::collections::HashSet::new();
        assert!(
            ErrorCode::ALL.iter().all(|c| seen.insert(c.as_str())),
            "no two codes share a string"
        );
    }
}
