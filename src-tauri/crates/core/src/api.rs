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
//! | `transfer` | `callId` and one of `targetParticipant`, `targetCallId`, `targetParticipantVoicemail`; `disableForwardingAndUnanswered`, `hangUpOnTransferred` | REFER (blind, attended with Replaces, voicemail) |
//! | `acceptTransfer` / `rejectTransfer` | `callId`, `transferId` | answers a `transferRequested` when the policy asks the user |
//! | `setDoNotDisturb` | `enabled` | new calls are answered 486 Busy Here |
//! | `getMicrophones` / `getSpeakers` | | answered by `audioDevices` |
//! | `selectMicrophone` / `selectSpeaker` | `deviceId` | switches devices, also mid-call; remembered |
//! | `selectRinger` | `deviceId?` | where the ringtone plays (none: on the speaker) |
//! | `startMicrophoneLevelMeter` / `stopMicrophoneLevelMeter` | | `microphoneLevelChanged` events while on |
//! | `playSpeakerTestTone` | | a test tone on the selected speaker |
//! | `playKeyTone` | `tones` | local DTMF key tones |
//! | `setRingtone` | `path?` | rings with an audio file (WAV, FLAC, MP3, Ogg Vorbis), or the built-in tone |
//! | `playAudioFile` / `stopAudioFile` | `path` | plays a recording once on the speaker (voicemail) |
//! | `getAudioProcessing` | | answered by `audioProcessingChanged` |
//! | `setAudioProcessing` | `echoCancellation?`, `noiseSuppression?` | voice processing on real microphones (both on by default); remembered |
//! | `signOut` | | unregisters and stops the agent |
//!
//! Every command is answered by `commandSucceeded` or `error`, carrying its `requestId`.
//! Events: `connectionStateChanged`, `incomingCall`, `callsUpdated`, `callStateChanged`,
//! `isMutedChanged`, `dtmfReceived`, `remoteAudioStarted`, `transferStateChanged`,
//! `transferRequested`, `transferAccepted`, `callReplaced`, `messageWaiting`,
//! `doNotDisturbChanged`, `audioDevices`, `audioDevicesUpdated`, `selectedMicrophoneChanged`,
//! `selectedSpeakerChanged`, `selectedRingerChanged`, `audioDeviceError`,
//! `microphoneLevelChanged`, `audioProcessingChanged`, `commandSucceeded`, `error`.
//!
//! ```
//! use hookflash_core::api::{Command, CommandEnvelope};
//! let c: CommandEnvelope = serde_json::from_str(r#"{"command":"startCall","target":"bob","requestId":"1"}"#).unwrap();
//! assert!(matches!(c.command, Command::StartCall { .. }));
//! ```

use serde::{Deserialize, Serialize};

use crate::call::{CallDirection, CallEndReason, CallState};
use crate::error::{AgentError, ErrorCode};
use crate::registration::{ConnectionReason, ConnectionState};
use crate::transfer::{TransferError, TransferOptions, TransferState, TransferTarget};

/// A command with an optional id that its answer echoes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
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
#[cfg_attr(feature = "specta", derive(specta::Type))]
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
    /// Transfer a call (`call.feature(Transfer).transfer`): exactly one of
    /// `targetParticipant`, `targetCallId`, `targetParticipantVoicemail`; none or two is a
    /// parse error, not a run-time surprise.
    Transfer(TransferRequest),
    /// Accept a transfer request (when the policy asks the user).
    AcceptTransfer {
        /// The call the REFER came on.
        call_id: String,
        /// The request's id from `transferRequested`.
        transfer_id: String,
    },
    /// Refuse a transfer request (the transferor sees `Failed` with 603).
    RejectTransfer {
        /// The call the REFER came on.
        call_id: String,
        /// The request's id from `transferRequested`.
        transfer_id: String,
    },
    /// Do not disturb: answer new calls `486 Busy Here`.
    SetDoNotDisturb {
        /// On or off.
        enabled: bool,
    },
    /// Unregister and stop.
    SignOut {},
    // ---- audio devices (DeviceManager) --------------------------------------------------
    /// List the microphones; answered by an `audioDevices` event.
    GetMicrophones {},
    /// List the speakers; answered by an `audioDevices` event.
    GetSpeakers {},
    /// Use this microphone from now on (also in running calls); remembered.
    SelectMicrophone {
        /// An `id` from `audioDevices`.
        device_id: String,
    },
    /// Use this speaker from now on (also in running calls); remembered.
    SelectSpeaker {
        /// An `id` from `audioDevices`.
        device_id: String,
    },
    /// Ring incoming calls on this device; without `deviceId`, on the speaker.
    SelectRinger {
        /// A speaker `id` from `audioDevices`, or none.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        device_id: Option<String>,
    },
    /// Keep the microphone open and report `microphoneLevelChanged` (settings page).
    StartMicrophoneLevelMeter {},
    /// Stop the level meter.
    StopMicrophoneLevelMeter {},
    /// Play the speaker test tone (2 s).
    PlaySpeakerTestTone {},
    /// Play the local key tone of dial-pad keys (0-9 * # A-D), without sending DTMF.
    PlayKeyTone {
        /// The keys.
        tones: String,
    },
    /// Ring incoming calls with this audio file (WAV, FLAC, MP3, Ogg Vorbis);
    /// without `path`, with the built-in ringtone. Remembered. A file that cannot
    /// be decoded is refused with an error and the ringtone stays as it was.
    SetRingtone {
        /// The file.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        path: Option<String>,
    },
    /// Play an audio file (WAV, FLAC, MP3, Ogg Vorbis) once on the speaker: a voicemail
    /// message, a greeting. Replaces a file already playing; a file that cannot be decoded
    /// is refused with `device.format`.
    PlayAudioFile {
        /// The file.
        path: String,
    },
    /// Stop the file `playAudioFile` started.
    StopAudioFile {},
    /// Report the voice processing in effect; answered by `audioProcessingChanged`.
    GetAudioProcessing {},
    /// Turn echo cancellation and noise suppression on or off (also mid-call);
    /// remembered. Omitted fields keep their setting. Answered by `audioProcessingChanged`.
    SetAudioProcessing {
        /// Remove the far end's voice, played by the speaker, from the microphone.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        echo_cancellation: Option<bool>,
        /// Remove steady background noise from the microphone.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        noise_suppression: Option<bool>,
    },
}

/// The `transfer` command: which call, its one target, and the options.
///
/// On the wire it keeps the ACS spelling — `callId`, one of `targetParticipant`,
/// `targetCallId`, `targetParticipantVoicemail`, then `disableForwardingAndUnanswered` and
/// `hangUpOnTransferred` — and a message naming no target or two targets does not parse.
///
/// ```
/// use hookflash_core::api::Command;
/// let ok = r#"{"command":"transfer","callId":"c1","targetParticipant":"carol"}"#;
/// assert!(matches!(serde_json::from_str::<Command>(ok), Ok(Command::Transfer(_))));
/// let two = r#"{"command":"transfer","callId":"c1","targetParticipant":"carol","targetCallId":"c2"}"#;
/// assert!(serde_json::from_str::<Command>(two).is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "TransferWire", into = "TransferWire")]
pub struct TransferRequest {
    /// The call to transfer (with the transferee).
    pub call_id: String,
    /// Where it goes.
    pub target: TransferTarget,
    /// Ring only the target, and hang up once transferred.
    pub options: TransferOptions,
}

/// The flat wire form of [`TransferRequest`].
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TransferWire {
    call_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    target_participant: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    target_call_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    target_participant_voicemail: Option<String>,
    #[serde(default)]
    disable_forwarding_and_unanswered: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    hang_up_on_transferred: Option<bool>,
}

impl TryFrom<TransferWire> for TransferRequest {
    type Error = String;

    fn try_from(w: TransferWire) -> Result<Self, String> {
        let target = match (
            w.target_participant,
            w.target_call_id,
            w.target_participant_voicemail,
        ) {
            (Some(p), None, None) => TransferTarget::Participant(p),
            (None, Some(c), None) => TransferTarget::Call(c),
            (None, None, Some(v)) => TransferTarget::Voicemail(v),
            _ => {
                return Err(
                    "transfer takes exactly one of targetParticipant, targetCallId, \
                     targetParticipantVoicemail"
                        .into(),
                )
            }
        };
        Ok(TransferRequest {
            call_id: w.call_id,
            target,
            options: TransferOptions {
                disable_forwarding_and_unanswered: w.disable_forwarding_and_unanswered,
                hang_up_on_transferred: w.hang_up_on_transferred.unwrap_or(true),
            },
        })
    }
}

impl From<TransferRequest> for TransferWire {
    fn from(r: TransferRequest) -> Self {
        let (target_participant, target_call_id, target_participant_voicemail) = match r.target {
            TransferTarget::Participant(p) => (Some(p), None, None),
            TransferTarget::Call(c) => (None, Some(c), None),
            TransferTarget::Voicemail(v) => (None, None, Some(v)),
        };
        TransferWire {
            call_id: r.call_id,
            target_participant,
            target_call_id,
            target_participant_voicemail,
            disable_forwarding_and_unanswered: r.options.disable_forwarding_and_unanswered,
            hang_up_on_transferred: Some(r.options.hang_up_on_transferred),
        }
    }
}

/// The TypeScript shape of [`TransferRequest`]: the call, exactly one target, the options.
#[cfg(feature = "specta")]
mod transfer_shape {
    #![allow(dead_code)]
    use serde::Serialize;

    #[derive(Serialize, specta::Type)]
    #[serde(rename_all = "camelCase")]
    pub(super) struct TransferRequest {
        call_id: String,
        #[serde(flatten)]
        target: TransferTargetShape,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        disable_forwarding_and_unanswered: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        hang_up_on_transferred: Option<bool>,
    }

    #[derive(Serialize, specta::Type)]
    #[serde(untagged, rename_all_fields = "camelCase")]
    enum TransferTargetShape {
        Participant {
            target_participant: String,
        },
        Call {
            target_call_id: String,
        },
        Voicemail {
            target_participant_voicemail: String,
        },
    }
}

#[cfg(feature = "specta")]
impl specta::Type for TransferRequest {
    fn definition(types: &mut specta::Types) -> specta::datatype::DataType {
        transfer_shape::TransferRequest::definition(types)
    }
}

/// `callerInfo` of an incoming call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[serde(rename_all = "camelCase")]
pub struct CallerInfo {
    /// The caller's address (`sip:alice@domain`, `tel:+1555...`).
    pub identifier: String,
    /// The caller's display name, if given.
    pub display_name: Option<String>,
}

/// Everything the agent tells its client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
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
        /// Who transferred this call to us (from `Referred-By`), if it is a transfer.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        transferor_info: Option<CallerInfo>,
        /// The Request-URI as it reached us: our contact, with any parameters the server added
        /// (a voicemail service reads RFC 4458 `target` and `cause` here).
        called: String,
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
    /// `Transfer.state` changed (transferor side).
    TransferStateChanged {
        /// The call being transferred.
        call_id: String,
        /// The transfer.
        transfer_id: String,
        /// The new state.
        state: TransferState,
        /// Set when `Failed`.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        error: Option<TransferError>,
    },
    /// The far end asks us to call someone else (transferee side).
    TransferRequested {
        /// The call the REFER came on.
        call_id: String,
        /// Its id, for `acceptTransfer` / `rejectTransfer`.
        transfer_id: String,
        /// Who we are asked to call.
        target: String,
        /// Who asks (from `Referred-By`, else the far end).
        transferor: CallerInfo,
        /// Whether the policy already accepted it.
        auto_accepted: bool,
    },
    /// We accepted a transfer and started the new call (transferee side).
    TransferAccepted {
        /// The original call.
        call_id: String,
        /// The transfer.
        transfer_id: String,
        /// The new call to the target.
        target_call: String,
    },
    /// An INVITE with `Replaces` took over one of our calls (attended-transfer target side).
    CallReplaced {
        /// The call that was replaced (it ends).
        call_id: String,
        /// The call that replaces it.
        new_call_id: String,
    },
    /// Message waiting indication (RFC 3842) for our mailbox.
    MessageWaiting {
        /// The mailbox.
        account: String,
        /// New (unheard) messages.
        new_messages: u32,
        /// Old (heard) messages.
        old_messages: u32,
    },
    /// Do not disturb was switched.
    DoNotDisturbChanged {
        /// Now on?
        enabled: bool,
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
        code: ErrorCode,
        /// A readable explanation.
        message: String,
    },
    // ---- audio devices (DeviceManager) --------------------------------------------------
    /// The answer to `getMicrophones` / `getSpeakers`.
    AudioDevices {
        /// Which list.
        device_type: crate::audio::DeviceType,
        /// The devices: sound cards first, then virtual ones.
        devices: Vec<crate::audio::AudioDeviceInfo>,
        /// The id of the device in use.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        selected: Option<String>,
    },
    /// Devices were plugged in or removed.
    AudioDevicesUpdated {
        /// New devices.
        added: Vec<crate::audio::AudioDeviceInfo>,
        /// Devices that are gone.
        removed: Vec<crate::audio::AudioDeviceInfo>,
    },
    /// The microphone in use changed (a selection, or a fallback).
    SelectedMicrophoneChanged {
        /// The microphone now in use.
        device: crate::audio::AudioDeviceInfo,
    },
    /// The speaker in use changed (a selection, or a fallback).
    SelectedSpeakerChanged {
        /// The speaker now in use.
        device: crate::audio::AudioDeviceInfo,
    },
    /// The device the ringtone plays on changed.
    SelectedRingerChanged {
        /// The ringer now in use.
        device: crate::audio::AudioDeviceInfo,
    },
    /// A sound device failed or none is usable; the user must be told.
    AudioDeviceError {
        /// Microphone or speaker, when one device is concerned.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        device_type: Option<crate::audio::DeviceType>,
        /// The device that failed.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        device_id: Option<String>,
        /// `device.lost.microphone`, `device.lost.speaker`, `device.lost.ringer`,
        /// `device.none_available`.
        code: ErrorCode,
        /// A readable explanation, naming the device now used.
        message: String,
        /// The device used instead.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        fallback_device_id: Option<String>,
    },
    /// The microphone level meter (0.0..=1.0, peak), ten times a second.
    MicrophoneLevelChanged {
        /// Peak level, linear.
        level: f32,
    },
    /// The voice processing on real microphones (the answer to
    /// `getAudioProcessing` and `setAudioProcessing`).
    AudioProcessingChanged {
        /// Echo cancellation is on.
        echo_cancellation: bool,
        /// Noise suppression is on.
        noise_suppression: bool,
    },
}

/// One line of the headless agent's stdin: the command it holds, or the `error` event
/// (`command.malformed`) to print for it, carrying the line's `requestId` when one can be
/// read from it.
pub fn parse_command_line(line: &str) -> Result<CommandEnvelope, Box<Event>> {
    serde_json::from_str::<CommandEnvelope>(line).map_err(|e| {
        let request_id = serde_json::from_str::<serde_json::Value>(line)
            .ok()
            .and_then(|v| {
                v.get("requestId")
                    .and_then(|r| r.as_str())
                    .map(str::to_owned)
            });
        Box::new(Event::from_error(
            request_id,
            &AgentError::MalformedCommand(e.to_string()),
        ))
    })
}

/// A call as listed in `callsUpdated`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
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
            code: e.code(),
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
            | Event::RemoteAudioStarted { call_id }
            | Event::TransferStateChanged { call_id, .. }
            | Event::TransferRequested { call_id, .. }
            | Event::TransferAccepted { call_id, .. }
            | Event::CallReplaced { call_id, .. } => Some(call_id),
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
