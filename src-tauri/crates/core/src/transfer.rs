//! Call transfer (`call.feature(Transfer)`): the transferor's state machine, and the pieces of
//! SIP it rests on — REFER (RFC 3515), Referred-By (RFC 3892), Replaces (RFC 3891), sipfrag
//! progress (RFC 3420) and the RFC 4458 voicemail URI — with no I/O.
//!
//! The transferor's [`Transfer`] follows the transferee's NOTIFY progress, never the mere
//! `202 Accepted`:
//!
//! ```text
//!  None ──REFER sent──► Transferring ──NOTIFY sipfrag 2xx──────────────► Transferred
//!                            │ REFER rejected (≥300), sipfrag ≥300,
//!                            │ subscription terminated without a final answer,
//!                            └ or no final answer in time ─────────────► Failed {code, subCode}
//! ```

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::sip::{escape_uri_header, unescape, Uri};

/// Who to transfer the call to (ACS transfer targets).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum TransferTarget {
    /// Blind transfer to a user name, SIP URI or `tel:` number (`targetParticipant`).
    Participant(String),
    /// Attended transfer into my other call with the target (`targetCallId`).
    Call(String),
    /// To that person's voicemail (`targetParticipantVoicemail`).
    Voicemail(String),
}

/// Options of a transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TransferOptions {
    /// Ring only the target, ignoring its forwarding and no-answer rules; if it does not
    /// answer, the transfer fails. Carried as `X-Disable-Forwarding: true` (DESIGN §2).
    #[serde(default)]
    pub disable_forwarding_and_unanswered: bool,
    /// Hang up the original call once the transfer is `Transferred` (default true).
    #[serde(default = "yes")]
    pub hang_up_on_transferred: bool,
}

fn yes() -> bool {
    true
}

impl Default for TransferOptions {
    fn default() -> Self {
        TransferOptions {
            disable_forwarding_and_unanswered: false,
            hang_up_on_transferred: true,
        }
    }
}

/// `Transfer.state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub enum TransferState {
    /// Not started.
    None,
    /// The REFER is out; the transferee is working on it.
    Transferring,
    /// The transferee reached the target.
    Transferred,
    /// It did not work; see the error.
    Failed,
}

/// `Transfer.error`: `code` is the SIP status that failed it; `sub_code` one of
/// [`transfer_sub_code`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[serde(rename_all = "camelCase")]
pub struct TransferError {
    /// The SIP status (the REFER's rejection, or the sipfrag's status).
    pub code: u16,
    /// Our documented sub-code.
    pub sub_code: u32,
}

/// The documented `Transfer.error.subCode` values.
pub mod transfer_sub_code {
    /// The transferee refused the REFER (`code` is its status, e.g. 603).
    pub const REFER_REJECTED: u32 = 2000;
    /// The transferee's call to the target failed (`code` is the target's status: 486, 404, 480...).
    pub const TARGET_FAILED: u32 = 2001;
    /// The subscription ended without a final answer (`code` 487).
    pub const NO_FINAL_ANSWER: u32 = 2002;
    /// No final answer within the transfer timeout (`code` 408).
    pub const TIMEOUT: u32 = 2003;
    /// The call ended while the transfer was under way (`code` 487).
    pub const CALL_ENDED: u32 = 2004;
}

/// What happened to a transfer, as its machine sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransferInput {
    /// The REFER went out.
    ReferSent,
    /// The REFER got a final response.
    ReferAnswered(u16),
    /// A NOTIFY arrived: its sipfrag status (if it parsed) and whether the subscription ended.
    Notify {
        /// The sipfrag status line's code.
        status: Option<u16>,
        /// `Subscription-State: terminated`.
        terminated: bool,
    },
    /// The call under transfer ended.
    CallEnded,
}

/// One transfer on the transferor's side.
#[derive(Debug, Clone)]
pub struct Transfer {
    state: TransferState,
    error: Option<TransferError>,
    deadline: Option<Instant>,
    timeout: Duration,
}

impl Transfer {
    /// A transfer that must end within `timeout` of its REFER.
    pub fn new(timeout: Duration) -> Self {
        Transfer {
            state: TransferState::None,
            error: None,
            deadline: None,
            timeout,
        }
    }

    /// `Transfer.state`.
    pub fn state(&self) -> TransferState {
        self.state
    }

    /// `Transfer.error`, once `Failed`.
    pub fn error(&self) -> Option<TransferError> {
        self.error
    }

    /// Whether it reached `Transferred` or `Failed`.
    pub fn is_final(&self) -> bool {
        matches!(
            self.state,
            TransferState::Transferred | TransferState::Failed
        )
    }

    /// When [`Transfer::handle_timeout`] is due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadline.filter(|_| !self.is_final())
    }

    /// Time passed: no final answer in time fails the transfer with 408.
    pub fn handle_timeout(&mut self, now: Instant) -> Option<TransferState> {
        match self.deadline {
            Some(d) if now >= d && !self.is_final() => self.fail(408, transfer_sub_code::TIMEOUT),
            _ => None,
        }
    }

    /// Apply an input; returns the new state when it changed.
    pub fn handle(&mut self, now: Instant, input: TransferInput) -> Option<TransferState> {
        if self.is_final() {
            return None;
        }
        match input {
            TransferInput::ReferSent => {
                self.deadline = Some(now + self.timeout);
                self.set(TransferState::Transferring)
            }
            TransferInput::ReferAnswered(code) if code >= 300 => {
                self.fail(code, transfer_sub_code::REFER_REJECTED)
            }
            TransferInput::ReferAnswered(_) => None,
            TransferInput::Notify { status, terminated } => match status {
                Some(200..=299) => self.set(TransferState::Transferred),
                Some(code) if code >= 300 => self.fail(code, transfer_sub_code::TARGET_FAILED),
                _ if terminated => self.fail(487, transfer_sub_code::NO_FINAL_ANSWER),
                _ => None,
            },
            TransferInput::CallEnded => self.fail(487, transfer_sub_code::CALL_ENDED),
        }
    }

    fn set(&mut self, s: TransferState) -> Option<TransferState> {
        (self.state != s).then(|| {
            self.state = s;
            s
        })
    }

    fn fail(&mut self, code: u16, sub_code: u32) -> Option<TransferState> {
        self.error = Some(TransferError { code, sub_code });
        self.set(TransferState::Failed)
    }
}

/// The status code of a `message/sipfrag` body (`SIP/2.0 200 OK`).
pub fn sipfrag_status(body: &str) -> Option<u16> {
    let line = body.lines().next()?.trim();
    let rest = line.strip_prefix("SIP/2.0 ")?;
    let code: u16 = rest.split_whitespace().next()?.parse().ok()?;
    (100..700).contains(&code).then_some(code)
}

/// A `message/sipfrag` body for a status.
pub fn sipfrag(status: u16, reason: &str) -> String {
    format!("SIP/2.0 {status} {reason}\r\n")
}

/// A parsed `Replaces` value (RFC 3891): the dialog to replace, from the recipient's view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replaces {
    /// The dialog's Call-ID.
    pub call_id: String,
    /// The recipient's own (local) tag.
    pub to_tag: String,
    /// The recipient's peer's (remote) tag.
    pub from_tag: String,
    /// `early-only`: only replace an early dialog.
    pub early_only: bool,
}

impl Replaces {
    /// Parse a `Replaces` header value (unescaped).
    pub fn parse(value: &str) -> Option<Replaces> {
        let mut parts = value.split(';').map(str::trim);
        let call_id = parts.next().filter(|c| !c.is_empty())?.to_owned();
        let (mut to_tag, mut from_tag, mut early_only) = (None, None, false);
        for p in parts {
            match p.split_once('=') {
                Some((n, v)) if n.eq_ignore_ascii_case("to-tag") => to_tag = Some(v.to_owned()),
                Some((n, v)) if n.eq_ignore_ascii_case("from-tag") => from_tag = Some(v.to_owned()),
                None if p.eq_ignore_ascii_case("early-only") => early_only = true,
                _ => {}
            }
        }
        Some(Replaces {
            call_id,
            to_tag: to_tag?,
            from_tag: from_tag?,
            early_only,
        })
    }
}

impl std::fmt::Display for Replaces {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{};to-tag={};from-tag={}",
            self.call_id, self.to_tag, self.from_tag
        )?;
        if self.early_only {
            write!(f, ";early-only")?;
        }
        Ok(())
    }
}

/// The Refer-To URI: the target, with `?Replaces=` for an attended transfer and
/// `?X-Disable-Forwarding=true` when forwarding is disabled.
pub fn refer_to(target: &Uri, replaces: Option<&Replaces>, disable_forwarding: bool) -> Uri {
    let mut uri = target.clone();
    uri.headers.clear();
    if let Some(r) = replaces {
        uri.headers
            .push(("Replaces".into(), escape_uri_header(&r.to_string())));
    }
    if disable_forwarding {
        uri.headers
            .push(("X-Disable-Forwarding".into(), "true".into()));
    }
    uri
}

/// The headers a Refer-To URI asks the transferee to put on its INVITE (unescaped), and the
/// URI to call without them.
pub fn split_refer_to(refer_to: &Uri) -> (Uri, Vec<(String, String)>) {
    let mut target = refer_to.clone();
    let headers = std::mem::take(&mut target.headers)
        .into_iter()
        .filter(|(n, _)| {
            // Only headers that make sense on the new INVITE; never let a REFER inject routing.
            ["Replaces", "X-Disable-Forwarding", "Accept-Contact"]
                .iter()
                .any(|ok| ok.eq_ignore_ascii_case(n))
        })
        .map(|(n, v)| (n, unescape(&v)))
        .collect();
    (target, headers)
}

/// The voicemail URI for `owner` in `domain`, or the account's own pattern with `{user}`
/// and `{domain}` placeholders (other PBX styles, e.g. `sip:*98{user}@{domain}`).
///
/// By default it is RFC 4458's `sip:voicemail@DOMAIN;target=…;cause=302`. For an owner in
/// our own domain whose user name needs no escaping, `target` is the bare user name
/// (`;target=carol`): clients that mishandle %-escapes in a Refer-To (baresip 1.0 turns
/// `sip:carol%40domain` into a broken URI) pass it on intact. Anyone else gets RFC 4458's
/// escaped URI form. [`voicemail_owner`] reads both.
pub fn voicemail_uri(owner: &Uri, domain: &str, pattern: Option<&str>) -> Option<Uri> {
    let user = owner.user.clone()?;
    match pattern {
        Some(p) => p
            .replace("{user}", &user)
            .replace("{domain}", domain)
            .parse()
            .ok(),
        None => {
            let mut uri = Uri::sip(Some("voicemail"), domain, None);
            let plain = |c: char| c.is_ascii_alphanumeric() || "-_.!~*'()+$".contains(c);
            let target = if owner.host.eq_ignore_ascii_case(domain) && user.chars().all(plain) {
                user
            } else {
                escape_uri_header(&format!("sip:{}@{}", user, owner.host))
            };
            uri.set_param("target", Some(&target));
            uri.set_param("cause", Some("302"));
            Some(uri)
        }
    }
}

/// The mailbox owner a voicemail URI names in its `target` parameter: RFC 4458's escaped
/// URI (`target=sip:carol%40example.org`), or a bare user name in the URI's own domain
/// (`target=carol`). `None` without a usable target.
pub fn voicemail_owner(uri: &Uri) -> Option<Uri> {
    let target = unescape(uri.param("target")??);
    let target = target.trim();
    if target.is_empty() {
        return None;
    }
    if target.contains(':') {
        target.parse().ok()
    } else {
        Some(Uri::sip(Some(target), &uri.host, uri.port))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transferred_only_on_a_2xx_sipfrag_not_on_202() {
        let t0 = Instant::now();
        let mut t = Transfer::new(Duration::from_secs(30));
        assert_eq!(
            t.handle(t0, TransferInput::ReferSent),
            Some(TransferState::Transferring),
            "REFER out: Transferring"
        );
        assert_eq!(
            t.handle(t0, TransferInput::ReferAnswered(202)),
            None,
            "202 is not success yet"
        );
        assert_eq!(
            t.handle(
                t0,
                TransferInput::Notify {
                    status: Some(100),
                    terminated: false
                }
            ),
            None,
            "100 Trying progress changes nothing"
        );
        assert_eq!(
            t.handle(
                t0,
                TransferInput::Notify {
                    status: Some(200),
                    terminated: true
                }
            ),
            Some(TransferState::Transferred),
            "sipfrag 200 is success"
        );
        assert_eq!(
            t.handle(t0, TransferInput::CallEnded),
            None,
            "a final state is final"
        );
    }

    #[test]
    fn failures_carry_the_sip_status_and_a_sub_code() {
        let t0 = Instant::now();
        let cases = [
            (
                TransferInput::ReferAnswered(603),
                603,
                transfer_sub_code::REFER_REJECTED,
            ),
            (
                TransferInput::Notify {
                    status: Some(486),
                    terminated: true,
                },
                486,
                transfer_sub_code::TARGET_FAILED,
            ),
            (
                TransferInput::Notify {
                    status: None,
                    terminated: true,
                },
                487,
                transfer_sub_code::NO_FINAL_ANSWER,
            ),
            (TransferInput::CallEnded, 487, transfer_sub_code::CALL_ENDED),
        ];
        for (input, code, sub) in cases {
            let mut t = Transfer::new(Duration::from_secs(30));
            t.handle(t0, TransferInput::ReferSent);
            assert_eq!(
                t.handle(t0, input.clone()),
                Some(TransferState::Failed),
                "{input:?} fails the transfer"
            );
            assert_eq!(
                t.error(),
                Some(TransferError {
                    code,
                    sub_code: sub
                }),
                "{input:?} reports its code"
            );
        }
    }

    #[test]
    fn no_final_answer_times_out_on_virtual_time() {
        let t0 = Instant::now();
        let mut t = Transfer::new(Duration::from_secs(30));
        t.handle(t0, TransferInput::ReferSent);
        let due = t.poll_timeout().expect("a deadline is armed by the REFER");
        assert_eq!(
            due - t0,
            Duration::from_secs(30),
            "deadline is the transfer timeout"
        );
        assert_eq!(
            t.handle_timeout(due - Duration::from_millis(1)),
            None,
            "not before the deadline"
        );
        assert_eq!(
            t.handle_timeout(due),
            Some(TransferState::Failed),
            "at the deadline it fails"
        );
        assert_eq!(t.error().map(|e| e.code), Some(408), "as a 408");
        assert_eq!(t.poll_timeout(), None, "no timer after a final state");
    }

    #[test]
    fn sipfrag_round_trips() {
        assert_eq!(
            sipfrag_status(&sipfrag(180, "Ringing")),
            Some(180),
            "status line parsed"
        );
        assert_eq!(
            sipfrag_status("SIP/2.0 200 OK\r\nContent-Length: 0\r\n"),
            Some(200),
            "extra lines ignored"
        );
        assert_eq!(sipfrag_status("garbage"), None, "not a sipfrag");
        assert_eq!(sipfrag_status("SIP/2.0 99 Nope"), None, "out-of-range code");
    }

    #[test]
    fn refer_to_carries_replaces_and_the_forwarding_flag_escaped() {
        let r = Replaces {
            call_id: "abc@h".into(),
            to_tag: "t1".into(),
            from_tag: "f1".into(),
            early_only: false,
        };
        let target: Uri = "sip:carol@127.0.0.1:5070".parse().unwrap();
        let uri = refer_to(&target, Some(&r), true);
        let printed = uri.to_string();
        assert_eq!(
            printed,
            "sip:carol@127.0.0.1:5070?Replaces=abc%40h%3Bto-tag%3Dt1%3Bfrom-tag%3Df1&X-Disable-Forwarding=true",
            "Replaces is escaped inside the URI"
        );
        let (plain, headers) = split_refer_to(&printed.parse().unwrap());
        assert_eq!(
            plain.to_string(),
            "sip:carol@127.0.0.1:5070",
            "the INVITE goes to the plain target"
        );
        assert_eq!(
            Replaces::parse(&headers[0].1),
            Some(r),
            "Replaces survives the trip"
        );
        assert_eq!(
            headers[1],
            ("X-Disable-Forwarding".into(), "true".into()),
            "the flag survives"
        );
    }

    #[test]
    fn refer_to_cannot_inject_routing_headers() {
        let uri: Uri = "sip:x@h?Route=%3Csip:evil%3E&Replaces=a%3Bto-tag%3D1%3Bfrom-tag%3D2"
            .parse()
            .unwrap();
        let (_, headers) = split_refer_to(&uri);
        assert_eq!(headers.len(), 1, "Route from a Refer-To is dropped");
        assert_eq!(headers[0].0, "Replaces", "only the allowed header stays");
    }

    #[test]
    fn voicemail_uri_is_rfc_4458_or_the_account_pattern() {
        let owner: Uri = "sip:carol@hookflash.local".parse().unwrap();
        let vm = voicemail_uri(&owner, "hookflash.local", None).unwrap();
        assert_eq!(
            vm.to_string(),
            "sip:voicemail@hookflash.local;target=carol;cause=302",
            "an owner in our domain is named without %-escapes, which some clients mangle"
        );
        assert_eq!(
            voicemail_owner(&vm).map(|u| u.to_string()).as_deref(),
            Some("sip:carol@hookflash.local"),
            "and read back as the owner in the URI's domain"
        );
        let elsewhere: Uri = "sip:dave@other.example".parse().unwrap();
        let vm = voicemail_uri(&elsewhere, "hookflash.local", None).unwrap();
        assert_eq!(
            vm.to_string(),
            "sip:voicemail@hookflash.local;target=sip:dave%40other.example;cause=302",
            "anyone else gets RFC 4458's escaped URI"
        );
        assert_eq!(
            voicemail_owner(&vm).map(|u| u.to_string()).as_deref(),
            Some("sip:dave@other.example"),
            "which reads back as that URI"
        );
        let vm = voicemail_uri(&owner, "pbx.example", Some("sip:*98{user}@{domain}")).unwrap();
        assert_eq!(
            vm.to_string(),
            "sip:*98carol@pbx.example",
            "a PBX-style pattern"
        );
    }
}
