//! One call: its public state machine (`Call.state`) and its SIP dialog, with no I/O.
//!
//! [`CallMachine`] turns protocol inputs into `Call.state` transitions and refuses API misuse
//! (holding a call that is not connected, accepting an outgoing call, ...) with a typed error.
//! [`Dialog`] holds the RFC 3261 §12 dialog state and builds in-dialog requests.

use serde::{Deserialize, Serialize};

use crate::error::CallError;
use crate::sip::{new_branch, Headers, Method, NameAddr, Request, Response, Uri, Via};

/// `Call.state` (ACS names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub enum CallState {
    /// Not started.
    None,
    /// An outgoing call is being set up, or an accepted incoming call awaits its ACK.
    Connecting,
    /// The far end is alerting (outgoing), or we are (incoming).
    Ringing,
    /// The far end sent early media (183 with SDP).
    EarlyMedia,
    /// Talking.
    Connected,
    /// We put the call on hold.
    LocalHold,
    /// The far end put the call on hold.
    RemoteHold,
    /// Hanging up.
    Disconnecting,
    /// Ended; see `callEndReason`.
    Disconnected,
}

/// Who started the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[serde(rename_all = "camelCase")]
pub enum CallDirection {
    /// We called.
    Outgoing,
    /// They called.
    Incoming,
}

/// `Call.callEndReason`: `code` is the SIP status that ended the call, `sub_code` says which
/// of our cases it was (see [`sub_code`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[serde(rename_all = "camelCase")]
pub struct CallEndReason {
    /// The SIP status: 200 for a normal hang-up (the BYE's answer), 487 for a cancelled call,
    /// 603 for a rejected one, the far end's final status for a failed one.
    pub code: u16,
    /// Our own sub-code, one of [`sub_code`].
    pub sub_code: u32,
}

/// The documented `callEndReason.subCode` values.
pub mod sub_code {
    /// The far end answered with a final failure status; `code` is that status.
    pub const REMOTE_STATUS: u32 = 0;
    /// We hung up a connected call.
    pub const LOCAL_HANGUP: u32 = 1000;
    /// The far end hung up (BYE).
    pub const REMOTE_HANGUP: u32 = 1001;
    /// We cancelled our call before it was answered.
    pub const LOCAL_CANCEL: u32 = 1002;
    /// The caller cancelled before we answered.
    pub const REMOTE_CANCEL: u32 = 1003;
    /// We rejected the incoming call.
    pub const LOCAL_REJECT: u32 = 1004;
    /// No answer to a request in time (`code` 408).
    pub const TIMEOUT: u32 = 1005;
    /// Media could not be set up or failed (`code` 488 or 500).
    pub const MEDIA_FAILED: u32 = 1006;
    /// The transport failed (`code` 503).
    pub const TRANSPORT_FAILED: u32 = 1007;
    /// The call was replaced by another (transfer; `code` 200).
    pub const REPLACED: u32 = 1008;
    /// The agent shut down with the call up.
    pub const AGENT_SHUTDOWN: u32 = 1009;
    /// We transferred the call away and hung up (transferor, `code` 200).
    pub const TRANSFERRED: u32 = 1010;
    /// We answered `486 Busy Here` (do not disturb).
    pub const LOCAL_BUSY: u32 = 1011;
}

/// What happened to a call, as the state machine sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallInput {
    /// We sent the INVITE.
    Dialed,
    /// A provisional response (`sdp`: it carried early media).
    Provisional {
        /// The status (180, 183, ...).
        status: u16,
        /// Whether it had an SDP body.
        sdp: bool,
    },
    /// Our INVITE was answered 2xx.
    Answered,
    /// The incoming call arrived and is alerting.
    IncomingRinging,
    /// We accepted the incoming call (200 sent).
    Accepted,
    /// The ACK for our 200 arrived.
    Acked,
    /// The local hold state is now as given (after the re-INVITE succeeded).
    LocalHold(bool),
    /// The far end's hold state is now as given (from its offer's direction).
    RemoteHold(bool),
    /// We started hanging up (BYE or CANCEL sent).
    HangingUp,
    /// The call is over.
    Ended(CallEndReason),
}

/// The operations a user may ask of a call; checked against the state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallOp {
    /// Accept an incoming call.
    Accept,
    /// Reject an incoming call.
    Reject,
    /// Hang up (or cancel).
    HangUp,
    /// Hold.
    Hold,
    /// Resume.
    Resume,
    /// Send DTMF.
    SendDtmf,
    /// Mute or unmute.
    Mute,
    /// Transfer the call.
    Transfer,
}

/// The public state of one call, driven by [`CallInput`]s.
#[derive(Debug, Clone)]
pub struct CallMachine {
    direction: CallDirection,
    state: CallState,
    local_hold: bool,
    remote_hold: bool,
    end_reason: Option<CallEndReason>,
}

impl CallMachine {
    /// A new call in state `None`.
    pub fn new(direction: CallDirection) -> Self {
        CallMachine {
            direction,
            state: CallState::None,
            local_hold: false,
            remote_hold: false,
            end_reason: None,
        }
    }

    /// The current state.
    pub fn state(&self) -> CallState {
        self.state
    }

    /// Who started the call.
    pub fn direction(&self) -> CallDirection {
        self.direction
    }

    /// Why it ended, once `Disconnected`.
    pub fn end_reason(&self) -> Option<CallEndReason> {
        self.end_reason
    }

    /// Whether we hold the call.
    pub fn is_local_hold(&self) -> bool {
        self.local_hold
    }

    /// Whether the media is established (Connected or on hold either way).
    pub fn is_established(&self) -> bool {
        matches!(
            self.state,
            CallState::Connected | CallState::LocalHold | CallState::RemoteHold
        )
    }

    /// Check that the user may do `op` now.
    pub fn check(&self, op: CallOp) -> Result<(), CallError> {
        use CallState::*;
        let ok = match op {
            CallOp::Accept | CallOp::Reject => {
                self.direction == CallDirection::Incoming && self.state == Ringing
            }
            CallOp::HangUp => !matches!(self.state, Disconnecting | Disconnected),
            CallOp::Hold => matches!(self.state, Connected | RemoteHold) && !self.local_hold,
            CallOp::Resume => self.local_hold && self.is_established(),
            CallOp::SendDtmf | CallOp::Mute | CallOp::Transfer => self.is_established(),
        };
        if ok {
            Ok(())
        } else {
            Err(CallError::InvalidState {
                operation: op,
                state: self.state,
            })
        }
    }

    /// Apply an input; returns `(old, new)` when the public state changed.
    pub fn apply(&mut self, input: CallInput) -> Option<(CallState, CallState)> {
        let old = self.state;
        if old == CallState::Disconnected {
            return None;
        }
        let new = match input {
            CallInput::Dialed => CallState::Connecting,
            CallInput::Provisional { status, sdp } => match (old, status, sdp) {
                (CallState::Connecting | CallState::Ringing, 183, true)
                | (CallState::Connecting | CallState::Ringing, 180..=199, true) => {
                    CallState::EarlyMedia
                }
                (CallState::Connecting, 180..=199, false) => CallState::Ringing,
                _ => old,
            },
            CallInput::Answered | CallInput::Acked => self.held_state(),
            CallInput::IncomingRinging => CallState::Ringing,
            CallInput::Accepted => CallState::Connecting,
            CallInput::LocalHold(h) => {
                self.local_hold = h;
                self.held_state()
            }
            CallInput::RemoteHold(h) => {
                self.remote_hold = h;
                if self.is_established() {
                    self.held_state()
                } else {
                    old
                }
            }
            CallInput::HangingUp => CallState::Disconnecting,
            CallInput::Ended(reason) => {
                self.end_reason = Some(reason);
                CallState::Disconnected
            }
        };
        // A late provisional or a stray ACK must not pull an ended or ending call back.
        if old == CallState::Disconnecting && new != CallState::Disconnected {
            return None;
        }
        self.state = new;
        (old != new).then_some((old, new))
    }

    fn held_state(&self) -> CallState {
        if self.local_hold {
            CallState::LocalHold
        } else if self.remote_hold {
            CallState::RemoteHold
        } else {
            CallState::Connected
        }
    }
}

/// RFC 3261 §12 dialog state.
#[derive(Debug, Clone)]
pub struct Dialog {
    /// Call-ID.
    pub call_id: String,
    /// Our side (From on our requests), with our tag.
    pub local: NameAddr,
    /// Their side (To on our requests), with their tag.
    pub remote: NameAddr,
    /// Where in-dialog requests go (their Contact).
    pub remote_target: Uri,
    /// The route set, in the order our requests must carry it.
    pub route_set: Vec<String>,
    /// Our last CSeq.
    pub local_cseq: u32,
    /// Their last CSeq.
    pub remote_cseq: Option<u32>,
}

impl Dialog {
    /// The dialog a UAC gets from its INVITE and a response with a To tag.
    pub fn from_uac(invite: &Request, resp: &Response) -> Result<Dialog, CallError> {
        let remote_target = resp
            .contact()
            .map(|c| c.uri)
            .ok_or_else(|| CallError::Protocol("answer without Contact".into()))?;
        let mut route_set = resp.headers.get_all("Record-Route");
        route_set.reverse();
        Ok(Dialog {
            call_id: invite.call_id()?.to_owned(),
            local: invite.from()?,
            remote: resp.to()?,
            remote_target,
            route_set,
            local_cseq: invite.cseq()?.seq,
            remote_cseq: None,
        })
    }

    /// The dialog a UAS gets from an INVITE, answering with `local_tag`.
    pub fn from_uas(invite: &Request, local_tag: &str) -> Result<Dialog, CallError> {
        let remote_target = invite
            .contact()
            .map(|c| c.uri)
            .ok_or_else(|| CallError::Protocol("INVITE without Contact".into()))?;
        let mut local = invite.to()?;
        local.set_param("tag", Some(local_tag));
        Ok(Dialog {
            call_id: invite.call_id()?.to_owned(),
            local,
            remote: invite.from()?,
            remote_target,
            route_set: invite.headers.get_all("Record-Route"),
            local_cseq: rand::random::<u16>() as u32 + 1,
            remote_cseq: Some(invite.cseq()?.seq),
        })
    }

    /// Our tag.
    pub fn local_tag(&self) -> &str {
        self.local.tag().unwrap_or_default()
    }

    /// Their tag.
    pub fn remote_tag(&self) -> &str {
        self.remote.tag().unwrap_or_default()
    }

    /// A new in-dialog request (next CSeq, new branch; ACK and CANCEL excluded).
    pub fn request(&mut self, method: Method, via: &Via) -> Request {
        self.local_cseq += 1;
        let seq = self.local_cseq;
        self.request_with_cseq(method, seq, via)
    }

    /// An in-dialog request with a given CSeq number (ACK reuses the INVITE's).
    pub fn request_with_cseq(&self, method: Method, seq: u32, via: &Via) -> Request {
        let mut via = via.clone();
        via.set_param("branch", Some(&new_branch()));
        let mut headers = Headers::default();
        headers.push("Via", via.to_string());
        headers.push("Max-Forwards", "70");
        for r in &self.route_set {
            headers.push("Route", r.clone());
        }
        headers.push("From", self.local.to_string());
        headers.push("To", self.remote.to_string());
        headers.push("Call-ID", self.call_id.clone());
        headers.push("CSeq", format!("{seq} {method}"));
        Request {
            method,
            uri: self.remote_target.clone(),
            headers,
            body: Vec::new(),
        }
    }

    /// Whether an incoming request belongs to this dialog (Call-ID and both tags).
    pub fn matches(&self, req: &Request) -> bool {
        let (Ok(call_id), Ok(from), Ok(to)) = (req.call_id(), req.from(), req.to()) else {
            return false;
        };
        call_id == self.call_id && from.tag() == self.remote.tag() && to.tag() == self.local.tag()
    }

    /// Where the next in-dialog request goes: the first route if any, else the remote target.
    pub fn next_hop(&self) -> Result<Uri, CallError> {
        match self.route_set.first() {
            Some(r) => Ok(r.parse::<NameAddr>()?.uri),
            None => Ok(self.remote_target.clone()),
        }
    }
}

/// Whether a message carries an SDP body (from its headers and body).
pub fn has_sdp(headers: &Headers, body: &[u8]) -> bool {
    !body.is_empty()
        && headers
            .get("Content-Type")
            .is_some_and(|c| c.to_ascii_lowercase().starts_with("application/sdp"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::Message;

    #[test]
    fn outgoing_call_goes_through_ringing_to_connected() {
        let mut m = CallMachine::new(CallDirection::Outgoing);
        assert_eq!(
            m.apply(CallInput::Dialed),
            Some((CallState::None, CallState::Connecting)),
            "dialing is Connecting"
        );
        assert_eq!(
            m.apply(CallInput::Provisional {
                status: 180,
                sdp: false
            }),
            Some((CallState::Connecting, CallState::Ringing)),
            "180 without SDP is Ringing"
        );
        assert_eq!(
            m.apply(CallInput::Provisional {
                status: 180,
                sdp: false
            }),
            None,
            "a repeated 180 is no news"
        );
        assert_eq!(
            m.apply(CallInput::Answered),
            Some((CallState::Ringing, CallState::Connected)),
            "2xx connects"
        );
    }

    #[test]
    fn early_media_is_its_own_state() {
        let mut m = CallMachine::new(CallDirection::Outgoing);
        m.apply(CallInput::Dialed);
        assert_eq!(
            m.apply(CallInput::Provisional {
                status: 183,
                sdp: true
            }),
            Some((CallState::Connecting, CallState::EarlyMedia)),
            "183 with SDP is EarlyMedia"
        );
    }

    #[test]
    fn hold_states_combine_with_local_taking_precedence() {
        let mut m = CallMachine::new(CallDirection::Incoming);
        m.apply(CallInput::IncomingRinging);
        m.apply(CallInput::Accepted);
        m.apply(CallInput::Acked);
        assert_eq!(
            m.state(),
            CallState::Connected,
            "ACK completes an incoming call"
        );
        m.apply(CallInput::RemoteHold(true));
        assert_eq!(
            m.state(),
            CallState::RemoteHold,
            "their sendonly offer is RemoteHold"
        );
        assert!(
            m.check(CallOp::Hold).is_ok(),
            "we may hold a call they hold"
        );
        m.apply(CallInput::LocalHold(true));
        assert_eq!(m.state(), CallState::LocalHold, "our own hold shows first");
        m.apply(CallInput::LocalHold(false));
        assert_eq!(
            m.state(),
            CallState::RemoteHold,
            "resuming shows their hold again"
        );
        m.apply(CallInput::RemoteHold(false));
        assert_eq!(m.state(), CallState::Connected, "both resumed is Connected");
    }

    #[test]
    fn misuse_is_a_typed_error() {
        let mut m = CallMachine::new(CallDirection::Outgoing);
        m.apply(CallInput::Dialed);
        assert!(
            matches!(m.check(CallOp::Hold), Err(CallError::InvalidState { .. })),
            "cannot hold a call being set up"
        );
        assert!(
            m.check(CallOp::Accept).is_err(),
            "cannot accept an outgoing call"
        );
        assert!(
            m.check(CallOp::Transfer).is_err(),
            "cannot transfer a call that is not connected"
        );
        assert!(
            m.check(CallOp::HangUp).is_ok(),
            "can always hang up a live call"
        );
        m.apply(CallInput::Ended(CallEndReason {
            code: 487,
            sub_code: sub_code::LOCAL_CANCEL,
        }));
        assert!(m.check(CallOp::HangUp).is_err(), "cannot hang up twice");
        assert_eq!(
            m.apply(CallInput::Answered),
            None,
            "nothing revives an ended call"
        );
        assert_eq!(
            m.end_reason().map(|r| r.code),
            Some(487),
            "the end reason is kept"
        );
    }

    #[test]
    fn disconnecting_ignores_late_progress() {
        let mut m = CallMachine::new(CallDirection::Outgoing);
        m.apply(CallInput::Dialed);
        m.apply(CallInput::HangingUp);
        assert_eq!(
            m.apply(CallInput::Provisional {
                status: 180,
                sdp: false
            }),
            None,
            "late 180 after CANCEL ignored"
        );
        assert_eq!(m.state(), CallState::Disconnecting, "still disconnecting");
    }

    #[test]
    fn dialog_builds_in_dialog_requests_with_the_route_set() {
        let invite =
            "INVITE sip:bob@d SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5000;branch=z9hG4bK1\r\n\
From: <sip:alice@d>;tag=a\r\nTo: <sip:bob@d>\r\nCall-ID: cid\r\nCSeq: 7 INVITE\r\n\
Contact: <sip:alice@127.0.0.1:5000>\r\nContent-Length: 0\r\n\r\n";
        let Message::Request(inv) = Message::parse(invite.as_bytes()).unwrap() else {
            unreachable!()
        };
        let mut resp = inv.response(200, None, Some("b"));
        resp.headers
            .push("Record-Route", "<sip:p1;lr>, <sip:p2;lr>");
        resp.headers.push("Contact", "<sip:bob@127.0.0.1:6000>");
        let mut d = Dialog::from_uac(&inv, &resp).unwrap();
        assert_eq!(
            d.route_set,
            vec!["<sip:p2;lr>", "<sip:p1;lr>"],
            "UAC reverses Record-Route"
        );
        let via: Via = "SIP/2.0/UDP 127.0.0.1:5000".parse().unwrap();
        let bye = d.request(Method::Bye, &via);
        assert_eq!(bye.cseq().unwrap().seq, 8, "CSeq increments");
        assert_eq!(
            bye.uri.to_string(),
            "sip:bob@127.0.0.1:6000",
            "request goes to the remote target"
        );
        assert_eq!(bye.to().unwrap().tag(), Some("b"), "To carries their tag");
        assert_eq!(
            d.next_hop().unwrap().host,
            "p2",
            "first route is the next hop"
        );
        let uas = Dialog::from_uas(&inv, "b").unwrap();
        assert_eq!(
            uas.route_set,
            vec![] as Vec<String>,
            "no Record-Route on the request, no routes"
        );
        assert!(
            uas.matches(&bye_as_seen_by_uas(&bye)),
            "the UAS recognises the BYE as its dialog's"
        );
    }

    fn bye_as_seen_by_uas(bye: &Request) -> Request {
        // The BYE from the UAC's perspective: From=alice;tag=a, To=bob;tag=b — exactly what the UAS matches.
        bye.clone()
    }
}
