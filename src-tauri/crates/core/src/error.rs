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
    /// An audio device could not be opened.
    #[error("device: {0}")]
    Device(String),
    /// A socket could not be opened or used.
    #[error("transport: {0}")]
    Transport(String),
    /// The agent has shut down.
    #[error("the agent has shut down")]
    ShutDown,
}

impl AgentError {
    /// A stable code for the UI and scripts.
    pub fn code(&self) -> &'static str {
        match self {
            AgentError::Call(CallError::InvalidState { .. }) => "call.invalid_state",
            AgentError::Call(CallError::NotFound(_)) => "call.not_found",
            AgentError::Call(CallError::Protocol(_)) => "call.protocol",
            AgentError::InvalidTarget(_) => "target.invalid",
            AgentError::InvalidCredential(_) => "credential.invalid",
            AgentError::NotConnected => "agent.not_connected",
            AgentError::MalformedCommand(_) => "command.malformed",
            AgentError::InvalidDtmf(_) => "dtmf.invalid",
            AgentError::Media(_) => "media.failed",
            AgentError::Device(_) => "device.failed",
            AgentError::Transport(_) => "transport.failed",
            AgentError::ShutDown => "agent.shut_down",
        }
    }
}
