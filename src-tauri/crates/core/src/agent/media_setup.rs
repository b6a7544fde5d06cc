//! Media set-up beside the agent's loop.
//!
//! Opening a call's devices, creating its media session and producing the first offer or
//! answer can take long: the WebRTC profile gathers ICE candidates (up to 5 s), a sound card
//! may be slow to open. None of it runs on the loop that serves the other calls, retransmits
//! and answers commands: the loop starts the set-up as a task, keeps the call in its current
//! state (Connecting, or Ringing while it answers), and finishes the SIP side when the task
//! reports back. A set-up whose call moved on meanwhile (hung up, cancelled, offered again)
//! is closed and dropped: every set-up has an attempt number the call must still expect.
//!
//! Re-offers in an established session (hold, resume, a peer's re-INVITE) stay on the loop:
//! the session and its candidates exist by then, so they take microseconds.

use std::sync::Arc;

use tokio::sync::mpsc;

use super::Credential;
use super::{sub_code, CallEndReason, Core, Purpose, Retransmit, ALLOW, T1};
use crate::api::Event;
use crate::auth::Scope;
use crate::call::CallInput;
use crate::error::AgentError;
use crate::media::{IceServer, MediaConfig, MediaEvent, MediaProfile, MediaSession};
use crate::privacy::redact;
use crate::sip::Message;

/// A session, its events, and the SDP it produced.
type Prepared = (
    Arc<MediaSession>,
    mpsc::UnboundedReceiver<MediaEvent>,
    String,
);

/// What a set-up is for.
#[derive(Debug, Clone)]
pub(super) enum SetupKind {
    /// The offer of our INVITE (a new call, or the same call offered with another profile).
    Offer,
    /// The answer to an incoming call's offer; `replacing` names the call it takes over
    /// (RFC 3891), which ends once the answer is out.
    Answer { replacing: Option<String> },
}

/// A set-up's outcome, reported to the loop.
pub(super) struct MediaReady {
    call_id: String,
    attempt: u64,
    kind: SetupKind,
    /// On failure: the error and the SIP status it calls for (488 for media the peer cannot
    /// have, 500 for a local failure).
    result: Result<Prepared, (AgentError, u16)>,
}

impl Core {
    /// The TURN servers for a call's media, with their credentials, and whether only relay
    /// candidates may be used.
    fn ice_servers(&self) -> (Vec<IceServer>, bool) {
        let Some(turn) = &self.cfg.turn else {
            return (Vec::new(), false);
        };
        let (username, credential) = match (&turn.credentials, &self.cfg.credential) {
            (Some((u, p)), _) => (u.clone(), p.clone()),
            (None, Credential::Token(t)) => (
                t.sip_username(),
                // Checked when the agent is created: TURN without credentials needs this grant.
                t.password(Scope::Turn).unwrap_or_default().to_owned(),
            ),
            // Refused when the agent was created.
            (None, Credential::Password { .. }) => return (Vec::new(), turn.relay_only),
        };
        let server = IceServer {
            urls: turn.urls.clone(),
            username,
            credential,
        };
        (vec![server], turn.relay_only)
    }

    /// Starts setting up `call_id`'s media with `profile` beside the loop: an offer, or the
    /// answer to `remote_offer`. The call expects this attempt from now on.
    pub(super) fn start_media_setup(
        &mut self,
        call_id: &str,
        profile: MediaProfile,
        kind: SetupKind,
        remote_offer: Option<String>,
    ) {
        self.setup_attempts += 1;
        let attempt = self.setup_attempts;
        let Some(call) = self.calls.get_mut(call_id) else {
            return;
        };
        call.setup = Some(attempt);
        let (microphone, speaker) = (self.cfg.microphone.clone(), self.cfg.speaker.clone());
        let bind_ip = self.cfg.bind_ip;
        let (ice_servers, relay_only) = self.ice_servers();
        let tx = self.setup_tx.clone();
        let id = call_id.to_owned();
        tokio::spawn(async move {
            let result = async {
                // Opening sound devices blocks (a sound server, a USB headset waking up).
                let opened = {
                    let id = id.clone();
                    tokio::task::spawn_blocking(move || (microphone(&id), speaker(&id))).await
                };
                let (source, sink) = opened
                    .map_err(|e| (AgentError::Media(format!("opening the devices: {e}")), 500))?;
                let source = source.map_err(|e| (AgentError::Device(e), 500))?;
                let sink = sink.map_err(|e| (AgentError::Device(e), 500))?;
                let config = MediaConfig {
                    bind_ip,
                    profile,
                    ice_servers,
                    relay_only,
                    ..MediaConfig::default()
                };
                let (session, events) = MediaSession::new(config, source, sink)
                    .await
                    .map_err(|e| (AgentError::Media(e.to_string()), 500))?;
                let sdp = match &remote_offer {
                    None => session.create_offer().await,
                    Some(offer) => session.accept_offer(offer).await,
                };
                match sdp {
                    Ok(sdp) => Ok((Arc::new(session), events, sdp)),
                    Err(e) => {
                        session.close().await;
                        let status = if e.code() == "media.incompatible"
                            || e.code() == "media.sdp_invalid"
                        {
                            488
                        } else {
                            500
                        };
                        Err((AgentError::Media(e.to_string()), status))
                    }
                }
            }
            .await;
            let ready = MediaReady {
                call_id: id,
                attempt,
                kind,
                result,
            };
            // The loop is gone only when the agent shut down; the session then closes as it
            // is dropped.
            let _ = tx.send(ready);
        });
    }

    /// A set-up reported back: finish the SIP side, unless the call moved on.
    pub(super) async fn on_media_ready(&mut self, ready: MediaReady) {
        let MediaReady {
            call_id,
            attempt,
            kind,
            result,
        } = ready;
        let expected = self.calls.get(&call_id).and_then(|c| c.setup);
        if expected != Some(attempt) {
            tracing::debug!(call = %redact(&call_id), "dropping the media of a call that moved on");
            if let Ok((media, _, _)) = result {
                media.close().await;
            }
            return;
        }
        if let Some(c) = self.calls.get_mut(&call_id) {
            c.setup = None;
        }
        match (kind, result) {
            (SetupKind::Offer, Ok(prepared)) => self.send_offer(&call_id, prepared).await,
            (SetupKind::Answer { replacing }, Ok(prepared)) => {
                self.send_answer(&call_id, prepared, replacing).await
            }
            (kind, Err((e, status))) => {
                tracing::warn!(call = %redact(&call_id), error = %e, "media set-up failed");
                self.emit(Event::Error {
                    request_id: None,
                    code: e.code(),
                    message: format!("The call's audio could not be set up: {e}"),
                });
                match kind {
                    SetupKind::Offer => {
                        let reason = CallEndReason {
                            code: status,
                            sub_code: sub_code::MEDIA_FAILED,
                        };
                        self.end_call(&call_id, reason).await;
                    }
                    SetupKind::Answer { .. } => {
                        self.answer_incoming_with(&call_id, status, sub_code::MEDIA_FAILED)
                            .await;
                    }
                }
            }
        }
    }

    /// Sends the INVITE the call was waiting for, with its offer.
    async fn send_offer(&mut self, call_id: &str, (media, events, offer): Prepared) {
        self.forward_media_events(call_id, events);
        let Some(call) = self.calls.get_mut(call_id) else {
            return;
        };
        call.invite.body = offer.into_bytes();
        let request = call.invite.clone();
        if let Some(old) = call.media.replace(media) {
            old.close().await;
        }
        self.send_request(
            Purpose::Invite {
                call_id: call_id.to_owned(),
            },
            request,
            self.cfg.server,
            self.cfg.transport,
        )
        .await;
    }

    /// Answers the ringing call with 200 and our SDP; then ends the call it replaces, if any.
    async fn send_answer(
        &mut self,
        call_id: &str,
        (media, events, answer): Prepared,
        replacing: Option<String>,
    ) {
        let Some(call) = self.calls.get(call_id) else {
            media.close().await;
            return;
        };
        let Some((source, kind)) = call.invite_source else {
            media.close().await;
            return;
        };
        self.forward_media_events(call_id, events);
        let local_tag = call
            .dialog
            .as_ref()
            .map(|d| d.local_tag().to_owned())
            .unwrap_or_default();
        let mut resp = call.invite.response(200, None, Some(&local_tag));
        resp.headers.push("Contact", self.contact().to_string());
        resp.headers.push("Allow", ALLOW);
        resp.headers.push("Supported", "replaces");
        resp.headers.push("Content-Type", "application/sdp");
        resp.body = answer.into_bytes();
        if let Some(c) = self.calls.get_mut(call_id) {
            c.media = Some(media);
        }
        self.apply(call_id, CallInput::Accepted);
        let bytes = Message::Response(resp.clone()).to_bytes();
        self.send_response(resp, source, kind).await;
        // Until the ACK: retransmit over UDP, and on any transport give up after 64*T1
        // (RFC 3261 §13.3.1.4: the ACK is end to end and may be lost on a UDP hop beyond).
        let now = tokio::time::Instant::now();
        self.uas_2xx.insert(
            call_id.to_owned(),
            Retransmit {
                bytes,
                dest: source,
                kind,
                next: now + T1,
                interval: T1,
                deadline: now + std::time::Duration::from_secs(32),
            },
        );
        if let Some(old) = replacing {
            self.finish_replacing(call_id, &old).await;
        }
    }
}
