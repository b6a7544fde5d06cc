//! The one API surface: commands in, typed events out.
//!
//! The same serde types serve the Tauri IPC, the headless agent (`hookflash-agent`, one JSON
//! object per line on stdin/stdout) and the tests. Names keep the ACS spelling so that anyone
//! who has read the ACS calling SDK documents recognises them.
//!
//! Commands (`{"command": ..., "requestId"?: ...}`):
//!
//! | command | fields | does |
//! |---|---|---|
//! | `startCall` | `target` (user name, `sip:` URI or `tel:` number) | calls; the call id comes back in `commandSucceeded` |
//! | `accept` / `reject` | `callId` | answers or declines (603) an incoming call |
//! | `hangUp` | `callId` | hangs up, or cancels a call still ringing |
//! | `hold` / `resume` | `callId` | re-INVITE with `a=sendonly` / `a=sendrecv` |
//! | `mute` / `unmute` | `callId` | stops / restarts sending our voice |
//! | `sendDtmf` | `callId`, `tones` | RFC 4733 telephone events |
//! | `signOut` | | unregisters and stops the agent |
//!
//! Every command is answered by `commandSucceeded` or `error`, carrying its `requestId`.
//! Events: `connectionStateChanged`, `incomingCall`, `callsUpdated`, `callStateChanged`,
//! `isMutedChanged`, `dtmfReceived`, `remoteAudioStarted`, `commandSucceeded`, `error`.
//!
//! ```
//! use hookflash_core::api::{Command, CommandEnvelope};
//! let c: CommandEnvelope = serde_json::from_str(r#"{"command":"startCall","target":"bob","requestId":"1"}"#).unwrap();
//! assert!(matches!(c.command, Command::StartCall { .. }));
//! ```

use serde::{Deserialize, Serialize};

use crate::call::{CallDirection, CallEndReason, CallState};
use crate::error::AgentError;
use crate::registration::{ConnectionReason, ConnectionState};

/// A command with an optional id that its answer echoes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CommandEnvelope {
    /// Echoed in `commandSucceeded` / `error`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// The command.
    #[serde(flatten)]
    pub command: Command,
}

/// What a client can ask of the agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "command",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum Command {
    /// Call a user name, a SIP URI or a `tel:` number.
    StartCall {
        /// Who to call.
        target: String,
    },
    /// Accept an incoming call.
    Accept {
        /// The call.
        call_id: String,
    },
    /// Reject an incoming call (603 Decline).
    Reject {
        /// The call.
        call_id: String,
    },
    /// Hang up or cancel.
    HangUp {
        /// The call.
        call_id: String,
    },
    /// Put on hold.
    Hold {
        /// The call.
        call_id: String,
    },
    /// Take off hold.
    Resume {
        /// The call.
        call_id: String,
    },
    /// Stop sending our voice.
    Mute {
        /// The call.
        call_id: String,
    },
    /// Send our voice again.
    Unmute {
        /// The call.
        call_id: String,
    },
    /// Send DTMF tones.
    SendDtmf {
        /// The call.
        call_id: String,
        /// Digits: 0-9 * # A-D.
        tones: String,
    },
    /// Unregister and stop.
    SignOut {},
}

/// `callerInfo` of an incoming call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallerInfo {
    /// The caller's address (`sip:alice@domain`, `tel:+1555...`).
    pub identifier: String,
    /// The caller's display name, if given.
    pub display_name: Option<String>,
}

/// Everything the agent tells its client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    tag = "event",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum Event {
    /// `CallAgent.connectionState` changed.
    ConnectionStateChanged {
        /// Before.
        old_value: ConnectionState,
        /// After.
        new_value: ConnectionState,
        /// Why.
        reason: ConnectionReason,
    },
    /// A call arrived.
    IncomingCall {
        /// Its id.
        call_id: String,
        /// Who calls.
        caller_info: CallerInfo,
    },
    /// Calls were added to or removed from `CallAgent.calls`.
    CallsUpdated {
        /// New calls.
        added: Vec<CallSummary>,
        /// Ended calls.
        removed: Vec<String>,
    },
    /// `Call.state` changed.
    CallStateChanged {
        /// The call.
        call_id: String,
        /// Before.
        old_state: CallState,
        /// After.
        state: CallState,
        /// Set once the state is `Disconnected`.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        call_end_reason: Option<CallEndReason>,
    },
    /// `Call.isMuted` changed.
    IsMutedChanged {
        /// The call.
        call_id: String,
        /// Now muted?
        is_muted: bool,
    },
    /// A DTMF tone arrived from the far end.
    DtmfReceived {
        /// The call.
        call_id: String,
        /// The digit.
        tone: String,
    },
    /// The first audio frame from the far end was decoded and played.
    RemoteAudioStarted {
        /// The call.
        call_id: String,
    },
    /// A command succeeded.
    CommandSucceeded {
        /// The command's `requestId`.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        request_id: Option<String>,
        /// The call it made or acted on.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        call_id: Option<String>,
    },
    /// A command failed, or something went wrong that the user must know about.
    Error {
        /// The command's `requestId`, if a command failed.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        request_id: Option<String>,
        /// A stable code (see [`AgentError::code`]).
        code: String,
        /// A readable explanation.
        message: String,
    },
}

/// A call as listed in `callsUpdated`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallSummary {
    /// Its id.
    pub id: String,
    /// Who started it.
    pub direction: CallDirection,
    /// The other party.
    pub remote: String,
}

impl Event {
    /// The error event for a failed command.
    pub fn from_error(request_id: Option<String>, e: &AgentError) -> Event {
        Event::Error {
            request_id,
            code: e.code().to_owned(),
            message: e.to_string(),
        }
    }

    /// The call this event is about, if any.
    pub fn call_id(&self) -> Option<&str> {
        match self {
            Event::IncomingCall { call_id, .. }
            | Event::CallStateChanged { call_id, .. }
            | Event::IsMutedChanged { call_id, .. }
            | Event::DtmfReceived { call_id, .. }
            | Event::RemoteAudioStarted { call_id } => Some(call_id),
            Event::CommandSucceeded { call_id, .. } => call_id.as_deref(),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_use_the_acs_spelling() {
        let c: CommandEnvelope =
            serde_json::from_str(r#"{"command":"sendDtmf","callId":"c1","tones":"12#"}"#).unwrap();
        assert_eq!(
            c.command,
            Command::SendDtmf {
                call_id: "c1".into(),
                tones: "12#".into()
            },
            "camelCase command and field names, as in ACS"
        );
        assert!(
            serde_json::from_str::<CommandEnvelope>(r#"{"command":"launchRockets"}"#).is_err(),
            "unknown commands are errors the agent can report"
        );
    }

    #[test]
    fn events_serialize_with_acs_names() {
        let e = Event::ConnectionStateChanged {
            old_value: ConnectionState::Disconnected,
            new_value: ConnectionState::Connected,
            reason: ConnectionReason::Registered,
        };
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            r#"{"event":"connectionStateChanged","oldValue":"Disconnected","newValue":"Connected","reason":"registered"}"#,
            "the wire form is what UI code and scripts match on"
        );
        let e = Event::CallStateChanged {
            call_id: "x".into(),
            old_state: CallState::Connected,
            state: CallState::Disconnected,
            call_end_reason: Some(CallEndReason {
                code: 200,
                sub_code: 1001,
            }),
        };
        let s = serde_json::to_string(&e).unwrap();
        assert!(
            s.contains(r#""callEndReason":{"code":200,"subCode":1001}"#),
            "end reason in ACS form: {s}"
        );
        assert_eq!(
            serde_json::from_str::<Event>(&s).unwrap(),
            e,
            "events round-trip for clients in Rust"
        );
    }
}
