//! The agent's side of call transfer, in all three roles.
//!
//! - **Transferor**: `transfer()` sends a REFER on the call with the transferee; the
//!   [`Transfer`] machine follows the NOTIFY sipfrag progress; once `Transferred` the original
//!   call is hung up (option `hangUpOnTransferred`).
//! - **Transferee**: a REFER from the party we are in a call with is answered `202`, reported as
//!   `transferRequested`, and (by policy, or by the user) carried out: the original call is put
//!   on hold, a new call goes to the Refer-To target with `Referred-By` (and `Replaces` /
//!   `X-Disable-Forwarding` when the Refer-To carries them), `transferAccepted` names it, and
//!   its progress goes back to the transferor as NOTIFY sipfrag. If it fails, the original
//!   call is resumed. REFERs from anyone else are refused (`403` outside a dialog, `481` for a
//!   dialog we do not have).
//! - **Target**: an INVITE with `Replaces` naming one of our calls is answered at once,
//!   without ringing, and the replaced call is ended (`callReplaced`).

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::{Core, Purpose};
use crate::api::{CallerInfo, Event};
use crate::call::{sub_code, CallEndReason, CallOp, CallState};
use crate::error::{AgentError, CallError};
use crate::privacy::redact;
use crate::sip::{new_tag, reason_phrase, Method, NameAddr, Request, TransportKind, Uri};
use crate::transfer::{
    refer_to, sipfrag, sipfrag_status, split_refer_to, voicemail_uri, Replaces, Transfer,
    TransferInput, TransferOptions, TransferState, TransferTarget,
};

/// What the transferee does with a REFER from the party it is in a call with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub enum TransferPolicy {
    /// Carry it out at once (the default, as desk phones do).
    #[default]
    AcceptFromPeer,
    /// Report `transferRequested` and wait for `acceptTransfer` / `rejectTransfer`.
    Ask,
    /// Refuse every transfer.
    RejectAll,
}

/// The transferor's record of a transfer under way on a call.
#[derive(Debug)]
pub(super) struct OutgoingTransfer {
    pub id: String,
    pub machine: Transfer,
    pub options: TransferOptions,
    /// For an attended transfer: our call with the target.
    pub consult_call: Option<String>,
}

/// Where a received REFER stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum IncomingPhase {
    /// Waiting for the user (policy `Ask`).
    Pending,
    /// The new call is under way.
    Calling { new_call: String },
    /// Over (success, failure or refusal reported).
    Done,
}

/// The transferee's record of a REFER received on a call.
#[derive(Debug)]
pub(super) struct IncomingTransfer {
    pub id: String,
    pub refer_to: Uri,
    pub referred_by: Option<String>,
    pub phase: IncomingPhase,
    /// We put the original call on hold for the transfer, so we resume it if it fails.
    pub held_by_transfer: bool,
    /// The transfer failed while our hold re-INVITE was still under way: resume once it lands.
    pub resume_when_held: bool,
}

/// Work that synchronous code queues for the async loop.
#[derive(Debug)]
pub(super) enum Deferred {
    /// A call placed for a REFER changed state: tell the transferor.
    Progress {
        original: String,
        state: CallState,
        end: Option<CallEndReason>,
    },
    /// Registered: subscribe to our mailbox.
    SubscribeMwi,
    /// A hold re-INVITE completed: resume if a failed transfer asked for it meanwhile.
    HoldSettled { call_id: String },
}

impl Core {
    pub(super) async fn drive_deferred(&mut self) {
        while !self.deferred.is_empty() {
            let work: Vec<Deferred> = std::mem::take(&mut self.deferred);
            for d in work {
                match d {
                    Deferred::Progress {
                        original,
                        state,
                        end,
                    } => self.on_transfer_call_progress(&original, state, end).await,
                    Deferred::SubscribeMwi => self.subscribe_mwi().await,
                    Deferred::HoldSettled { call_id } => {
                        let resume = self
                            .calls
                            .get_mut(&call_id)
                            .and_then(|c| c.transfer_in.as_mut())
                            .is_some_and(|t| std::mem::take(&mut t.resume_when_held));
                        if resume {
                            self.resume_after_transfer(&call_id).await;
                        }
                    }
                }
            }
        }
    }

    // ---- transferor --------------------------------------------------------------------------

    /// `uri` as a client without our outbound proxy can reach it: a URI in our domain gets
    /// the server's address as its host when the domain is a name (the switchboard's
    /// `hookflash.local` resolves nowhere; the server, which takes its own address as its
    /// domain, is where the transferor reaches it too). Other URIs are left alone.
    pub(super) fn routable(&self, mut uri: Uri) -> Uri {
        let ours = uri.host.eq_ignore_ascii_case(&self.cfg.domain);
        let named = self.cfg.domain.parse::<std::net::IpAddr>().is_err();
        if ours && named {
            uri.host = match self.cfg.server.ip() {
                std::net::IpAddr::V6(ip) => format!("[{ip}]"),
                ip => ip.to_string(),
            };
            uri.port = Some(self.cfg.server.port());
        }
        uri
    }

    pub(super) async fn transfer(
        &mut self,
        call_id: &str,
        target: TransferTarget,
        options: TransferOptions,
    ) -> Result<String, AgentError> {
        self.check(call_id, CallOp::Transfer)?;
        let busy = self.calls.get(call_id).is_some_and(|c| {
            c.reinvite_pending
                || c.transfer_out
                    .as_ref()
                    .is_some_and(|t| !t.machine.is_final())
        });
        if busy {
            let state = self.calls[call_id].machine.state();
            return Err(CallError::InvalidState {
                operation: CallOp::Transfer,
                state,
            }
            .into());
        }
        let (uri, replaces, consult_call) = match &target {
            TransferTarget::Participant(p) => (self.routable(self.target_uri(p)?), None, None),
            TransferTarget::Voicemail(owner) => {
                let owner_uri = self.target_uri(owner)?;
                let uri = voicemail_uri(
                    &owner_uri,
                    &self.cfg.domain,
                    self.cfg.voicemail_pattern.as_deref(),
                )
                .ok_or_else(|| AgentError::InvalidTarget(owner.clone()))?;
                (self.routable(uri), None, None)
            }
            TransferTarget::Call(other) => {
                if other == call_id {
                    return Err(AgentError::InvalidTarget(other.clone()));
                }
                self.check(other, CallOp::Transfer)?;
                let d = self.calls[other.as_str()]
                    .dialog
                    .as_ref()
                    .ok_or_else(|| CallError::Protocol("no dialog".into()))?;
                let replaces = Replaces {
                    call_id: d.call_id.clone(),
                    to_tag: d.remote_tag().to_owned(),
                    from_tag: d.local_tag().to_owned(),
                    early_only: false,
                };
                // The target's address of record, not its contact: the transferee's INVITE
                // then reaches it through the server, as every other call does, whether the
                // transferee has an outbound proxy or not (a contact behind the server may
                // not be reachable, nor take requests from strangers).
                let mut target = d.remote.uri.clone();
                target.params.clear();
                target.headers.clear();
                (self.routable(target), Some(replaces), Some(other.clone()))
            }
        };
        let refer_uri = refer_to(
            &uri,
            replaces.as_ref(),
            options.disable_forwarding_and_unanswered,
        );
        let via = self.via();
        let contact = self.contact();
        let mut referred_by = NameAddr::new(self.aor());
        referred_by.display = self.cfg.display_name.clone();
        let call = self
            .calls
            .get_mut(call_id)
            .ok_or_else(|| CallError::NotFound(call_id.to_owned()))?;
        let dialog = call
            .dialog
            .as_mut()
            .ok_or_else(|| CallError::Protocol("no dialog".into()))?;
        let mut req = dialog.request(Method::Refer, &via);
        req.headers
            .push("Refer-To", NameAddr::new(refer_uri).to_string());
        req.headers.push("Referred-By", referred_by.to_string());
        req.headers.push("Contact", contact.to_string());
        let hop = dialog.next_hop()?;
        // Where the REFER goes is settled before anything is reported as Transferring.
        let (dest, kind) = self.resolve(&hop).await?;
        let id = new_tag();
        let mut machine = Transfer::new(self.cfg.transfer_timeout);
        let state = machine.handle(Instant::now().into_std(), TransferInput::ReferSent);
        let call = self
            .calls
            .get_mut(call_id)
            .ok_or_else(|| CallError::NotFound(call_id.to_owned()))?;
        call.transfer_out = Some(OutgoingTransfer {
            id: id.clone(),
            machine,
            options,
            consult_call,
        });
        tracing::info!(call = %redact(call_id), target = %redact(&uri.aor()), attended = replaces.is_some(), "transferring");
        if let Some(state) = state {
            self.publish_transfer(call_id, state);
        }
        self.send_request(
            Purpose::Refer {
                call_id: call_id.to_owned(),
            },
            req,
            dest,
            kind,
        )
        .await;
        Ok(id)
    }

    fn publish_transfer(&self, call_id: &str, state: TransferState) {
        let Some(t) = self
            .calls
            .get(call_id)
            .and_then(|c| c.transfer_out.as_ref())
        else {
            return;
        };
        self.emit(Event::TransferStateChanged {
            call_id: call_id.to_owned(),
            transfer_id: t.id.clone(),
            state,
            error: t.machine.error(),
        });
    }

    /// Feed the transferor's machine and act on a final state.
    pub(super) async fn transfer_input(&mut self, call_id: &str, input: TransferInput) {
        let now = Instant::now().into_std();
        let Some(t) = self
            .calls
            .get_mut(call_id)
            .and_then(|c| c.transfer_out.as_mut())
        else {
            return;
        };
        let Some(state) = t.machine.handle(now, input) else {
            return;
        };
        self.transfer_changed(call_id, state).await;
    }

    async fn transfer_changed(&mut self, call_id: &str, state: TransferState) {
        self.publish_transfer(call_id, state);
        let Some(t) = self
            .calls
            .get(call_id)
            .and_then(|c| c.transfer_out.as_ref())
        else {
            return;
        };
        match state {
            TransferState::Transferred => {
                tracing::info!(call = %redact(call_id), "transferred");
                let consult = t.consult_call.clone();
                let live = self
                    .calls
                    .get(call_id)
                    .is_some_and(|c| c.machine.check(CallOp::HangUp).is_ok());
                if t.options.hang_up_on_transferred && live {
                    self.send_bye(call_id, sub_code::TRANSFERRED).await;
                }
                // The target ends our call with it when the Replaces lands; should it not
                // (an older phone), we end it ourselves: the transferee has taken our place.
                if let Some(consult) = consult {
                    if self
                        .calls
                        .get(&consult)
                        .is_some_and(|c| c.machine.check(CallOp::HangUp).is_ok())
                    {
                        self.send_bye(&consult, sub_code::TRANSFERRED).await;
                    }
                }
            }
            TransferState::Failed => {
                tracing::info!(call = %redact(call_id), error = ?t.machine.error(), "transfer failed");
            }
            _ => {}
        }
    }

    pub(super) fn transfer_deadlines(&self) -> impl Iterator<Item = Instant> + '_ {
        self.calls
            .values()
            .filter_map(|c| c.transfer_out.as_ref())
            .filter_map(|t| t.machine.poll_timeout())
            .map(Instant::from_std)
    }

    pub(super) async fn on_transfer_timers(&mut self, now: Instant) {
        let due: Vec<String> = self
            .calls
            .iter()
            .filter(|(_, c)| {
                c.transfer_out
                    .as_ref()
                    .and_then(|t| t.machine.poll_timeout())
                    .is_some_and(|d| now.into_std() >= d)
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in due {
            let state = self
                .calls
                .get_mut(&id)
                .and_then(|c| c.transfer_out.as_mut())
                .and_then(|t| t.machine.handle_timeout(now.into_std()));
            if let Some(state) = state {
                self.transfer_changed(&id, state).await;
            }
        }
    }

    /// A NOTIFY on a call: transfer progress (transferor side).
    pub(super) async fn on_refer_notify(&mut self, call_id: &str, req: &Request) {
        let status = sipfrag_status(&req.body_str());
        let terminated = super::subscription_terminated(req);
        self.transfer_input(call_id, TransferInput::Notify { status, terminated })
            .await;
    }

    // ---- transferee --------------------------------------------------------------------------

    /// A REFER arrived. `call_id` is the dialog it belongs to, if any.
    pub(super) async fn on_refer(
        &mut self,
        req: Request,
        call_id: Option<String>,
        in_dialog: bool,
        source: std::net::SocketAddr,
        kind: TransportKind,
    ) {
        let Some(call_id) = call_id else {
            // Only the party we are in a call with may transfer us.
            let status = if in_dialog { 481 } else { 403 };
            tracing::warn!(status, "REFER from a stranger refused");
            self.reply(&req, status, source, kind).await;
            return;
        };
        let tag = self.calls[&call_id]
            .dialog
            .as_ref()
            .map(|d| d.local_tag().to_owned());
        let refer_to = req
            .headers
            .get("Refer-To")
            .and_then(|r| r.parse::<NameAddr>().ok());
        let Some(refer_to) = refer_to else {
            let resp = req.response(400, Some("Bad Refer-To"), tag.as_deref());
            self.send_response(resp, source, kind).await;
            return;
        };
        let call = &self.calls[&call_id];
        let ongoing = call
            .transfer_in
            .as_ref()
            .is_some_and(|t| t.phase != IncomingPhase::Done);
        if !call.machine.is_established()
            || ongoing
            || self.cfg.transfer_policy == TransferPolicy::RejectAll
        {
            let status = if ongoing { 491 } else { 603 };
            let resp = req.response(status, None, tag.as_deref());
            self.send_response(resp, source, kind).await;
            return;
        }
        let transferor = req
            .headers
            .get("Referred-By")
            .and_then(|r| r.parse::<NameAddr>().ok())
            .unwrap_or_else(|| {
                call.dialog
                    .as_ref()
                    .map(|d| d.remote.clone())
                    .unwrap_or_else(|| refer_to.clone())
            });
        let id = new_tag();
        let auto = self.cfg.transfer_policy == TransferPolicy::AcceptFromPeer;
        if let Some(c) = self.calls.get_mut(&call_id) {
            c.transfer_in = Some(IncomingTransfer {
                id: id.clone(),
                refer_to: refer_to.uri.clone(),
                // RFC 3892: the target learns who referred the call. A REFER without
                // Referred-By (baresip sends none) is referred by the far end of this call.
                referred_by: Some(req.headers.get("Referred-By").map_or_else(
                    || {
                        let uri = &transferor.uri;
                        match transferor.display.as_deref().map(|d| d.replace('"', "")) {
                            Some(d) if !d.is_empty() => format!("\"{d}\" <{uri}>"),
                            _ => format!("<{uri}>"),
                        }
                    },
                    str::to_owned,
                )),
                phase: IncomingPhase::Pending,
                held_by_transfer: false,
                resume_when_held: false,
            });
        }
        let resp = req.response(202, None, tag.as_deref());
        self.send_response(resp, source, kind).await;
        let (target, _) = split_refer_to(&refer_to.uri);
        self.emit(Event::TransferRequested {
            call_id: call_id.clone(),
            transfer_id: id.clone(),
            target: target.to_string(),
            transferor: CallerInfo {
                identifier: transferor.uri.aor(),
                display_name: transferor.display,
            },
            auto_accepted: auto,
        });
        // The implicit subscription starts with "100 Trying" (RFC 3515 §2.4.5).
        self.send_transfer_notify(&call_id, 100, false).await;
        if auto {
            self.carry_out_transfer(&call_id).await;
        }
    }

    pub(super) async fn answer_transfer_request(
        &mut self,
        call_id: &str,
        transfer_id: &str,
        accept: bool,
    ) -> Result<(), AgentError> {
        let pending = self
            .calls
            .get(call_id)
            .ok_or_else(|| CallError::NotFound(call_id.to_owned()))?
            .transfer_in
            .as_ref()
            .is_some_and(|t| t.id == transfer_id && t.phase == IncomingPhase::Pending);
        if !pending {
            return Err(CallError::NotFound(format!("transfer request {transfer_id}")).into());
        }
        if accept {
            self.carry_out_transfer(call_id).await;
        } else {
            self.finish_incoming_transfer(call_id, 603, false).await;
        }
        Ok(())
    }

    async fn carry_out_transfer(&mut self, call_id: &str) {
        let Some(t) = self.calls.get(call_id).and_then(|c| c.transfer_in.as_ref()) else {
            return;
        };
        let (target, uri_headers) = split_refer_to(&t.refer_to);
        let mut headers: Vec<(String, String)> = uri_headers;
        if let Some(rb) = &t.referred_by {
            headers.push(("Referred-By".into(), rb.clone()));
        }
        let id = t.id.clone();
        // The new call goes out first (it is what the transferor waits for); then the original
        // call waits on hold while we try the target.
        match self
            .start_call_to(target, &headers, Some(call_id.to_owned()))
            .await
        {
            Ok(new_call) => {
                if let Some(t) = self
                    .calls
                    .get_mut(call_id)
                    .and_then(|c| c.transfer_in.as_mut())
                {
                    t.phase = IncomingPhase::Calling {
                        new_call: new_call.clone(),
                    };
                }
                self.emit(Event::TransferAccepted {
                    call_id: call_id.to_owned(),
                    transfer_id: id,
                    target_call: new_call,
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not call the transfer target");
                self.finish_incoming_transfer(call_id, 500, false).await;
                return;
            }
        }
        let hold = self
            .calls
            .get(call_id)
            .is_some_and(|c| c.machine.check(CallOp::Hold).is_ok());
        if hold && self.set_hold(call_id, true).await.is_ok() {
            if let Some(t) = self
                .calls
                .get_mut(call_id)
                .and_then(|c| c.transfer_in.as_mut())
            {
                t.held_by_transfer = true;
            }
        }
    }

    /// The call we placed for a REFER moved on: report it as sipfrag to the transferor.
    async fn on_transfer_call_progress(
        &mut self,
        original: &str,
        state: CallState,
        end: Option<CallEndReason>,
    ) {
        match state {
            CallState::Ringing | CallState::EarlyMedia => {
                let status = if state == CallState::Ringing {
                    180
                } else {
                    183
                };
                self.send_transfer_notify(original, status, false).await;
            }
            CallState::Connected => {
                let calling = self.is_calling_for_transfer(original);
                if calling {
                    self.finish_incoming_transfer(original, 200, false).await;
                }
            }
            CallState::Disconnected => {
                let code = end.map(|e| e.code).unwrap_or(500);
                let calling = self.is_calling_for_transfer(original);
                if calling {
                    self.finish_incoming_transfer(original, code.max(300), true)
                        .await;
                }
            }
            _ => {}
        }
    }

    /// Whether the REFER received on `original` is being carried out by a call of ours.
    fn is_calling_for_transfer(&self, original: &str) -> bool {
        self.calls
            .get(original)
            .and_then(|c| c.transfer_in.as_ref())
            .is_some_and(|t| matches!(t.phase, IncomingPhase::Calling { .. }))
    }

    /// Send the final sipfrag and, on failure, take the original call off hold.
    async fn finish_incoming_transfer(&mut self, call_id: &str, status: u16, resume: bool) {
        let held = match self
            .calls
            .get_mut(call_id)
            .and_then(|c| c.transfer_in.as_mut())
        {
            Some(t) => {
                t.phase = IncomingPhase::Done;
                t.held_by_transfer
            }
            None => return,
        };
        self.send_transfer_notify(call_id, status, true).await;
        if resume && held {
            let hold_pending = self.calls.get(call_id).is_some_and(|c| c.reinvite_pending);
            if hold_pending {
                if let Some(t) = self
                    .calls
                    .get_mut(call_id)
                    .and_then(|c| c.transfer_in.as_mut())
                {
                    t.resume_when_held = true;
                }
            } else {
                self.resume_after_transfer(call_id).await;
            }
        }
    }

    async fn resume_after_transfer(&mut self, call_id: &str) {
        let can = self
            .calls
            .get(call_id)
            .is_some_and(|c| c.machine.check(CallOp::Resume).is_ok());
        if can {
            if let Err(e) = self.set_hold(call_id, false).await {
                tracing::warn!(error = %e, "could not resume after a failed transfer");
            }
        }
    }

    async fn send_transfer_notify(&mut self, call_id: &str, status: u16, terminated: bool) {
        let via = self.via();
        let contact = self.contact();
        let Some(dialog) = self.calls.get_mut(call_id).and_then(|c| c.dialog.as_mut()) else {
            return;
        };
        let mut req = dialog.request(Method::Notify, &via);
        req.headers.push("Event", "refer");
        req.headers.push(
            "Subscription-State",
            if terminated {
                "terminated;reason=noresource".to_owned()
            } else {
                "active;expires=60".to_owned()
            },
        );
        req.headers.push("Contact", contact.to_string());
        req.headers
            .push("Content-Type", "message/sipfrag;version=2.0");
        req.body = sipfrag(status, reason_phrase(status)).into_bytes();
        let Ok(hop) = dialog.next_hop() else { return };
        if let Ok((dest, kind)) = self.resolve(&hop).await {
            self.send_request(Purpose::Notify, req, dest, kind).await;
        }
    }

    // ---- target ------------------------------------------------------------------------------

    /// Which of our established calls a `Replaces` value names.
    pub(super) fn find_replaced_call(&self, value: &str) -> Option<String> {
        let r = Replaces::parse(&crate::sip::unescape(value))?;
        self.calls
            .iter()
            .find(|(_, c)| {
                c.machine.is_established()
                    && c.dialog.as_ref().is_some_and(|d| {
                        d.call_id == r.call_id
                            && d.local_tag() == r.to_tag
                            && d.remote_tag() == r.from_tag
                    })
            })
            .map(|(id, _)| id.clone())
    }

    /// Answer the replacing call at once; the one it replaces ends once the answer is out.
    pub(super) async fn accept_replacing(&mut self, call_id: &str, old: &str) {
        if let Err(e) = self.start_answer(call_id, Some(old.to_owned())) {
            tracing::warn!(error = %e, "could not answer the replacing call");
        }
    }

    /// The replacing call is answered: say so and end the call it replaces.
    pub(super) async fn finish_replacing(&mut self, call_id: &str, old: &str) {
        tracing::info!(old = %redact(old), new = %redact(call_id), "call replaced");
        self.emit(Event::CallReplaced {
            call_id: old.to_owned(),
            new_call_id: call_id.to_owned(),
        });
        self.send_bye(old, sub_code::REPLACED).await;
    }

    /// A call ended: a transfer under way on it fails.
    pub(super) fn transfer_call_ended(&mut self, call_id: &str) {
        let now = std::time::Instant::now();
        if let Some(t) = self
            .calls
            .get_mut(call_id)
            .and_then(|c| c.transfer_out.as_mut())
        {
            if let Some(state) = t.machine.handle(now, TransferInput::CallEnded) {
                let event = Event::TransferStateChanged {
                    call_id: call_id.to_owned(),
                    transfer_id: t.id.clone(),
                    state,
                    error: t.machine.error(),
                };
                self.emit(event);
            }
        }
    }
}
