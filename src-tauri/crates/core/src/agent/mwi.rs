//! Message waiting (RFC 3842): the agent subscribes to its own mailbox's `message-summary`
//! once registered, keeps the subscription refreshed, and reports each NOTIFY as a
//! `messageWaiting` event. A server that does not offer it (404, 489, 501) is left alone.

use std::time::Duration;

use tokio::time::Instant;

use super::{Core, Purpose};
use crate::api::Event;
use crate::auth::Challenge;
use crate::call::Dialog;
use crate::sip::{new_call_id, new_tag, Method, NameAddr, Request, Response, TransportKind};

/// The subscription's state.
#[derive(Debug, Default)]
pub(super) struct MwiState {
    call_id: Option<String>,
    from_tag: String,
    cseq: u32,
    auth_sent: bool,
    dialog: Option<Dialog>,
    refresh_at: Option<Instant>,
    given_up: bool,
}

const MWI_EXPIRES: u32 = 3600;
/// How long to wait before subscribing again after a passing failure.
const MWI_RETRY: Duration = Duration::from_secs(30);

/// Parse `Voice-Message: NEW/OLD` from a simple-message-summary body.
pub fn voice_messages(body: &str) -> Option<(u32, u32)> {
    let line = body.lines().find(|l| {
        l.trim_start()
            .to_ascii_lowercase()
            .starts_with("voice-message:")
    })?;
    let counts = line.split_once(':')?.1.split_whitespace().next()?;
    let (new, old) = counts.split_once('/')?;
    Some((new.trim().parse().ok()?, old.trim().parse().ok()?))
}

impl Core {
    pub(super) async fn subscribe_mwi(&mut self) {
        if !self.cfg.subscribe_mwi || self.mwi.given_up || self.mwi.call_id.is_some() {
            return;
        }
        self.mwi.call_id = Some(new_call_id());
        self.mwi.from_tag = new_tag();
        self.send_subscribe(None).await;
    }

    async fn send_subscribe(&mut self, challenge: Option<(Challenge, bool)>) {
        let via = self.via();
        let contact = self.contact();
        let req = if let Some(d) = self.mwi.dialog.as_mut() {
            let mut r = d.request(Method::Subscribe, &via);
            r.headers.push("Event", "message-summary");
            r.headers.push("Expires", MWI_EXPIRES.to_string());
            r.headers.push("Contact", contact.to_string());
            r
        } else {
            self.mwi.cseq += 1;
            let aor = self.aor();
            let mut from = NameAddr::new(aor.clone());
            from.set_param("tag", Some(&self.mwi.from_tag));
            let mut r = Request::new(Method::Subscribe, aor.clone());
            let h = &mut r.headers;
            h.push("Via", via.to_string());
            h.push("Max-Forwards", "70");
            h.push("From", from.to_string());
            h.push("To", NameAddr::new(aor).to_string());
            h.push("Call-ID", self.mwi.call_id.clone().unwrap_or_default());
            h.push("CSeq", format!("{} SUBSCRIBE", self.mwi.cseq));
            h.push("Contact", contact.to_string());
            h.push("Event", "message-summary");
            h.push("Accept", "application/simple-message-summary");
            h.push("Expires", MWI_EXPIRES.to_string());
            r
        };
        let mut req = req;
        self.mwi.auth_sent = challenge.is_some();
        if let Some((ch, proxy)) = challenge {
            let value = self.authorization(&Method::Subscribe, &req.uri, &ch);
            req.headers.push(super::authorization_header(proxy), value);
        }
        let (dest, kind) = match self.mwi.dialog.as_ref().map(|d| d.next_hop()) {
            Some(Ok(hop)) => self
                .resolve(&hop)
                .await
                .unwrap_or((self.cfg.server, self.cfg.transport)),
            _ => (self.cfg.server, self.cfg.transport),
        };
        self.send_request(Purpose::Subscribe, req, dest, kind).await;
    }

    pub(super) async fn on_subscribe_response(&mut self, request: Request, resp: Response) {
        match resp.status {
            200..=299 => {
                if self.mwi.dialog.is_none() {
                    let mut resp = resp.clone();
                    if resp.contact().is_none() {
                        // A notifier must give a Contact; fall back to the server if it did not.
                        resp.headers
                            .push("Contact", format!("<sip:{}>", self.cfg.server));
                    }
                    self.mwi.dialog = Dialog::from_uac(&request, &resp).ok();
                }
                let expires = resp
                    .headers
                    .get("Expires")
                    .and_then(|e| e.trim().parse::<u64>().ok())
                    .unwrap_or(u64::from(MWI_EXPIRES))
                    .clamp(2, 86_400);
                self.mwi.refresh_at = Some(Instant::now() + Duration::from_secs(expires * 4 / 5));
            }
            401 | 407 if !self.mwi.auth_sent => {
                if let Some(challenge) = super::challenge_of(&resp) {
                    self.send_subscribe(Some(challenge)).await;
                }
            }
            481 => {
                // The notifier forgot us: start a new subscription.
                self.mwi = MwiState::default();
                self.subscribe_mwi().await;
            }
            404 | 403 | 405 | 489 | 501 => {
                tracing::info!(
                    status = resp.status,
                    "message-summary not offered by the server"
                );
                self.mwi.given_up = true;
                self.mwi.refresh_at = None;
            }
            _ => self.mwi_retry_later(),
        }
    }

    /// Whether a NOTIFY belongs to our message-summary subscription.
    pub(super) fn is_mwi_notify(&self, req: &Request) -> bool {
        req.call_id()
            .ok()
            .is_some_and(|c| Some(c) == self.mwi.call_id.as_deref())
    }

    pub(super) async fn on_mwi_notify(
        &mut self,
        req: Request,
        source: std::net::SocketAddr,
        kind: TransportKind,
    ) {
        self.reply(&req, 200, source, kind).await;
        if let Some((new, old)) = voice_messages(&req.body_str()) {
            self.emit(Event::MessageWaiting {
                account: self.aor().aor(),
                new_messages: new,
                old_messages: old,
            });
        }
        let terminated = super::subscription_terminated(&req);
        if terminated {
            self.mwi = MwiState::default();
        }
    }

    pub(super) fn mwi_deadline(&self) -> Option<Instant> {
        self.mwi.refresh_at
    }

    pub(super) async fn on_mwi_timer(&mut self, now: Instant) {
        if self.mwi.refresh_at.is_some_and(|t| now >= t) {
            self.mwi.refresh_at = None;
            if self.mwi.call_id.is_none() {
                self.subscribe_mwi().await; // a retry after a failure: a new subscription
            } else {
                self.send_subscribe(None).await; // a refresh within the dialog
            }
        }
    }

    /// A SUBSCRIBE failed for a passing reason (timeout, 5xx): start afresh a little later.
    pub(super) fn mwi_retry_later(&mut self) {
        self.mwi = MwiState {
            refresh_at: Some(Instant::now() + MWI_RETRY),
            ..MwiState::default()
        };
    }
}

#[cfg(test)]
mod tests {
    use super::voice_messages;

    #[test]
    fn message_summary_counts_parse() {
        let body =
            "Messages-Waiting: yes\r\nMessage-Account: sip:c@h\r\nVoice-Message: 2/5 (0/1)\r\n";
        assert_eq!(
            voice_messages(body),
            Some((2, 5)),
            "new/old voice messages, urgent counts ignored"
        );
        assert_eq!(
            voice_messages("Messages-Waiting: no\r\n"),
            None,
            "no counts, no event"
        );
    }
}
