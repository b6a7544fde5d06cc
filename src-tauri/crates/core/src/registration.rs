//! The registration state machine: when to REGISTER, when to probe the server, what the
//! outcomes mean for `connectionState`, and how to back off — with no I/O inside.
//!
//! The driver feeds it the outcome of each REGISTER attempt, every sign of life from the
//! server and the passage of time, and carries out what it asks through
//! [`Registration::poll_action`]:
//!
//! ```text
//!   start ──► attempt ──ok──► Connected ──(refresh at 80 % of expires)──► attempt
//!               │  ▲            │   │
//!               │  │            │   └─ TCP connection closed ──► attempt now (still Connected)
//!               │  │            └─ server gone (probe or request unanswered, send error)
//!               │  │                 ──► Disconnected{connectionIssue}, attempt now
//!               │  │
//!   401/403 with credentials, token past expiry
//!               │  │
//!               ▼  └─ failure: retry after 0.5 s, 1 s, 2 s, ... (bounded); a REGISTER that
//!   Disconnected{invalidToken}   got no answer at all is reported as connectionIssue at once;
//!   (no retry: a new credential  after `max_retries` failures: Disconnected{connectionIssue},
//!    is needed)                  then retry every `slow_retry` until it works again
//! ```
//!
//! Time is an [`Instant`] passed in, so tests run on virtual time.
//!
//! # Noticing a dead server
//!
//! A registration refreshed every few minutes says nothing about whether the server is there
//! *now*, and a user whose server is gone cannot be called: they must see it within about ten
//! seconds, on any transport. So while Connected (with a [`KeepAlivePolicy`], see
//! [`Registration::with_keepalive`]) the machine watches the server for signs of life:
//!
//! * **Anything heard from the server proves it alive** ([`Registration::handle_heard`]): a
//!   response with any status (a 404 or 405 to the probe, a 401, even a 503 all say that
//!   something answers), a request, a CRLF pong. A busy agent therefore never probes; an idle
//!   one asks for a probe ([`RegistrationAction::SendKeepAlive`]) after `interval` of silence.
//! * **The probe** is the cheapest thing the server must answer. On TCP it is RFC 5626
//!   §4.4.1's CRLFCRLF ping, answered by a CRLF pong: four bytes, no SIP parsing. On UDP it is
//!   an OPTIONS to the server: RFC 5626 §4.4.2's STUN keep-alive needs a STUN server on the
//!   SIP port, which neither our switchboard nor a stock Kamailio has, while every registrar
//!   answers OPTIONS, if only with 404 or 405.
//! * **Silence means gone**: a probe unanswered for `timeout`, or any other request to the
//!   server that got no answer at all ([`Registration::handle_request_unanswered`]: a
//!   REGISTER or an INVITE that timed out, or one the transport could not send — no route,
//!   connection refused), *unless* the server was heard from since that request went out: a
//!   proxy's silence after its 100 Trying is the far end's, not its own.
//! * **A closed TCP connection** is acted on at once ([`Registration::handle_transport_closed`]):
//!   we register again at once over a new connection (RFC 5626 §4.4.1). If the server is
//!   alive (it closed an idle flow, or restarted) that works and nothing visible happens; if
//!   its process died, its host refuses the connection and the unsent REGISTER reports the loss
//!   within milliseconds; if the host itself is gone, the connect gives up after 5 s.
//!
//! A server found gone is `Disconnected{connectionIssue}`, the state and reason a sign-in
//! that cannot reach the server already has. The machine then registers again at once and
//! follows the ordinary back-off (0.5 s, 1 s, then every `slow_retry`), so the agent is
//! Connected again by itself at most `slow_retry` after the server is back. No probes are
//! sent while Disconnected: the REGISTER retries are the probes.
//!
//! ## The numbers
//!
//! The worst case is a server that dies just after it was last heard from: it is noticed
//! `interval + timeout` later. The defaults, 5 s + 4 s = 9 s, keep within the ten seconds
//! with a second to spare for a busy event loop; a death at a random moment of an idle
//! period is noticed after 6.5 s on average. (On TCP a crashed server process is noticed at
//! once, by its closed connection.)
//!
//! * `timeout` = 4 s, the REGISTER timeout the agent already uses. On UDP the OPTIONS
//!   transaction retransmits at 0.5, 1.5 and 3.5 s (T1 doubling), so four copies go out and
//!   the server has at least 0.5 s to answer the last. A false alarm needs all four round
//!   trips lost: at 1 % packet loss that is (1 − 0.99²)⁴ ≈ 1.6·10⁻⁷ per probe, about once a
//!   year for an agent idling around the clock (17,280 probes a day); at 5 % loss about
//!   once or twice a day, and then the immediate REGISTER gets through and the agent is
//!   Connected again a round trip later. On TCP the stream retransmits by itself.
//! * `interval` = 5 s, what the budget leaves. The cost on the server is 0.2 probes a second
//!   per idle user: for 10,000 UDP users, 2,000 OPTIONS and 2,000 replies a second, about
//!   1 MB/s each way at ~500 bytes a message, which a proxy answering OPTIONS statelessly
//!   (Kamailio's `sl_send_reply`, our switchboard's local answer) handles with a few percent
//!   of one core — but ~60 times the load of REGISTER refreshes every 240 s, the price of
//!   10 s detection. TCP pings cost 4 bytes each way and no parse. A deployment that prefers
//!   less load to fast detection sets a longer interval: detection takes interval + timeout.
//! * Why not a slow idle interval with fast probing after a sign of trouble? A server that
//!   dies silently gives no sign until a probe goes unanswered, so the idle interval itself
//!   must fit into the bound.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// `CallAgent.connectionState`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub enum ConnectionState {
    /// Not registered (yet, or any more).
    Disconnected,
    /// Registered and reachable.
    Connected,
}

/// Why the connection state changed (`connectionStateChanged.reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[serde(rename_all = "camelCase")]
pub enum ConnectionReason {
    /// Registration succeeded (also after a recovery).
    Registered,
    /// The credential was rejected or has expired; no retry without a new one.
    InvalidToken,
    /// The server could not be reached after the bounded retries.
    ConnectionIssue,
    /// The server's TLS certificate is not trusted (unknown issuer, another name, expired):
    /// nothing was sent to it. Retried slowly, in case the server's certificate is mended.
    CertificateNotTrusted,
    /// The user signed out.
    SignedOut,
}

/// How a REGISTER attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegisterOutcome {
    /// 2xx: registered for this many seconds.
    Registered {
        /// The expiry the registrar granted.
        expires: u32,
    },
    /// The registrar refused our credentials (401/403 after we sent them).
    Rejected {
        /// The SIP status.
        status: u16,
    },
    /// Any other final answer: 5xx, an unusable 423, ... (the server is there, but unhappy).
    Failed {
        /// The SIP status.
        status: u16,
    },
    /// No answer at all: the REGISTER timed out, or the transport could not send it. Unless
    /// the server was heard from since the attempt began, it is gone: reported as
    /// `connectionIssue` at once, then retried like any failure.
    NoAnswer {
        /// 408 for a timeout, 503 for a transport error.
        status: u16,
    },
    /// The connection was refused for the server's certificate, which we do not trust.
    Untrusted,
}

/// Tuning of the state machine.
#[derive(Debug, Clone)]
pub struct RegistrationPolicy {
    /// The expiry we ask for.
    pub expires: u32,
    /// The first retry delay after a failure; doubles per failure.
    pub retry_initial: Duration,
    /// How many consecutive failures before reporting `connectionIssue`.
    pub max_retries: u32,
    /// The retry period once `connectionIssue` was reported.
    pub slow_retry: Duration,
}

impl Default for RegistrationPolicy {
    fn default() -> Self {
        RegistrationPolicy {
            expires: 300,
            retry_initial: Duration::from_millis(500),
            max_retries: 3,
            slow_retry: Duration::from_secs(15),
        }
    }
}

/// How a registered server is watched for signs of life (see the module docs for the
/// reasoning behind the defaults).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeepAlivePolicy {
    /// Silence from the server this long asks for a probe (CRLF ping on TCP, OPTIONS on UDP).
    pub interval: Duration,
    /// A probe unanswered this long means the server is gone.
    pub timeout: Duration,
}

impl Default for KeepAlivePolicy {
    /// 5 s + 4 s: a dead server is noticed within 9 s.
    fn default() -> Self {
        KeepAlivePolicy {
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(4),
        }
    }
}

/// What the driver must do now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistrationAction {
    /// Send a REGISTER asking for this expiry (0 = unregister).
    SendRegister {
        /// Requested expiry in seconds.
        expires: u32,
    },
    /// Report `connectionStateChanged`.
    StateChanged {
        /// Previous state.
        old: ConnectionState,
        /// New state.
        new: ConnectionState,
        /// Why.
        reason: ConnectionReason,
    },
    /// Probe the server: a CRLFCRLF ping on TCP, an OPTIONS on UDP. Its answer (any) comes
    /// back as [`Registration::handle_heard`]; its absence is the machine's own timeout.
    SendKeepAlive,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    Idle,
    /// A REGISTER is in flight.
    Attempting,
    /// Waiting to try again.
    Waiting {
        at: Instant,
    },
    /// Registered; refresh at this time.
    Registered {
        refresh_at: Instant,
    },
    /// Stopped for good: invalid credential or signed out.
    Stopped,
}

/// The registration state machine.
#[derive(Debug)]
pub struct Registration {
    policy: RegistrationPolicy,
    phase: Phase,
    state: ConnectionState,
    failures: u32,
    credential_expiry: Option<Instant>,
    last_reason: Option<ConnectionReason>,
    actions: std::collections::VecDeque<RegistrationAction>,
    /// Probing while Connected; `None`: never.
    keepalive: Option<KeepAlivePolicy>,
    /// When the server last proved alive.
    last_heard: Option<Instant>,
    /// When the REGISTER in flight went out.
    attempt_at: Option<Instant>,
    /// When the probe in flight went out.
    probe_at: Option<Instant>,
}

impl Registration {
    /// A machine with this policy; `credential_expiry` is when the token stops being valid.
    pub fn new(policy: RegistrationPolicy, credential_expiry: Option<Instant>) -> Self {
        Registration {
            policy,
            phase: Phase::Idle,
            state: ConnectionState::Disconnected,
            failures: 0,
            credential_expiry,
            last_reason: None,
            actions: Default::default(),
            keepalive: None,
            last_heard: None,
            attempt_at: None,
            probe_at: None,
        }
    }

    /// Watch the server while Connected: probe after `interval` of silence, and count it
    /// gone when a probe is unanswered for `timeout`.
    pub fn with_keepalive(mut self, keepalive: KeepAlivePolicy) -> Self {
        self.keepalive = Some(keepalive);
        self
    }

    /// The current `connectionState`.
    pub fn state(&self) -> ConnectionState {
        self.state
    }

    /// Begin registering.
    pub fn start(&mut self, now: Instant) {
        if self.phase == Phase::Idle {
            self.attempt(now);
        }
    }

    /// Stop: unregister when registered, report `Disconnected{signedOut}`.
    pub fn sign_out(&mut self) {
        if matches!(self.phase, Phase::Registered { .. }) {
            self.actions
                .push_back(RegistrationAction::SendRegister { expires: 0 });
        }
        self.phase = Phase::Stopped;
        self.probe_at = None;
        self.set_state(ConnectionState::Disconnected, ConnectionReason::SignedOut);
    }

    /// The outcome of the REGISTER in flight.
    pub fn handle_outcome(&mut self, now: Instant, outcome: RegisterOutcome) {
        if self.phase != Phase::Attempting {
            return; // a late answer after sign-out, or a duplicate
        }
        let attempt_at = self.attempt_at.take();
        match outcome {
            RegisterOutcome::Registered { expires } => {
                self.last_heard = Some(now);
                self.failures = 0;
                let expires = Duration::from_secs(u64::from(expires.max(1)));
                // Refresh at 80 % of the granted time, at least 1 s before the end.
                let refresh = (expires * 4 / 5).min(expires.saturating_sub(Duration::from_secs(1)));
                self.phase = Phase::Registered {
                    refresh_at: now + refresh.max(Duration::from_millis(500)),
                };
                self.set_state(ConnectionState::Connected, ConnectionReason::Registered);
            }
            RegisterOutcome::Rejected { .. } => {
                self.phase = Phase::Stopped;
                self.set_state(
                    ConnectionState::Disconnected,
                    ConnectionReason::InvalidToken,
                );
            }
            RegisterOutcome::NoAnswer { status } => {
                if !self.heard_since(attempt_at) {
                    self.set_state(
                        ConnectionState::Disconnected,
                        ConnectionReason::ConnectionIssue,
                    );
                    self.probe_at = None;
                }
                self.handle_failure(now, status);
            }
            RegisterOutcome::Failed { status } => {
                self.last_heard = Some(now);
                self.handle_failure(now, status);
            }
            RegisterOutcome::Untrusted => {
                // Not a network failure to retry quickly: only mending the certificate (or the
                // trusted roots) helps, so say so, and look again at the slow pace.
                self.failures += 1;
                self.probe_at = None;
                self.set_state(
                    ConnectionState::Disconnected,
                    ConnectionReason::CertificateNotTrusted,
                );
                self.phase = Phase::Waiting {
                    at: now + self.policy.slow_retry,
                };
            }
        }
    }

    /// A REGISTER failed: back off, and after `max_retries` report `connectionIssue`.
    fn handle_failure(&mut self, now: Instant, status: u16) {
        self.failures += 1;
        tracing::debug!(status, failures = self.failures, "REGISTER failed");
        let delay = if self.failures >= self.policy.max_retries {
            self.set_state(
                ConnectionState::Disconnected,
                ConnectionReason::ConnectionIssue,
            );
            self.policy.slow_retry
        } else {
            self.policy.retry_initial * 2u32.saturating_pow(self.failures - 1)
        };
        self.phase = Phase::Waiting { at: now + delay };
    }

    /// The registrar wants a longer interval (423 Min-Expires): ask for at least `min` from now on.
    pub fn raise_expires(&mut self, min: u32) {
        self.policy.expires = self.policy.expires.max(min);
    }

    /// The transport under the registration broke (TCP closed): register again at once, over
    /// a new connection. Not yet a sign that the server is gone — a live server that closed
    /// an idle flow or restarted takes the new REGISTER at once, without a visible change; a
    /// dead one refuses the connection, and that REGISTER's [`RegisterOutcome::NoAnswer`]
    /// reports it. (A REGISTER already in flight is left to its own timeout, so that a server
    /// closing every connection at once cannot drive a loop of attempts.)
    pub fn handle_transport_closed(&mut self, now: Instant) {
        self.probe_at = None; // the probe went down with the connection
        if matches!(self.phase, Phase::Registered { .. } | Phase::Waiting { .. }) {
            self.attempt(now);
        }
    }

    /// A sign of life from the server: any message from it (a response of any status, a
    /// request) or a CRLF pong. Answers the probe in flight and restarts the idle period.
    pub fn handle_heard(&mut self, now: Instant) {
        if self.last_heard.is_none_or(|h| h < now) {
            self.last_heard = Some(now);
        }
        self.probe_at = None;
    }

    /// A request to the server, sent at `sent_at`, ended without any answer: it timed out, or
    /// the transport could not send it (no route, connection refused). Unless the server was
    /// heard from since then, it is gone: `Disconnected{connectionIssue}`, and a REGISTER at
    /// once (then the usual back-off) to be Connected again as soon as it is back.
    pub fn handle_request_unanswered(&mut self, now: Instant, sent_at: Instant) {
        if !self.heard_since(Some(sent_at)) {
            self.server_gone(now);
        }
    }

    /// When [`Registration::handle_timeout`] should next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let phase = match self.phase {
            Phase::Waiting { at } => Some(at),
            Phase::Registered { refresh_at } => Some(refresh_at),
            _ => None,
        };
        match (phase, self.liveness_timeout()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Time has passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        match self.phase {
            Phase::Waiting { at } if now >= at => self.attempt(now),
            Phase::Registered { refresh_at } if now >= refresh_at => self.attempt(now),
            _ => {}
        }
        let Some(keepalive) = self.keepalive else {
            return;
        };
        match self.probe_at {
            Some(sent) if now >= sent + keepalive.timeout => {
                tracing::info!(timeout = ?keepalive.timeout, "the server did not answer the keep-alive");
                self.server_gone(now);
            }
            Some(_) => {}
            None => {
                if self.may_probe()
                    && self
                        .last_heard
                        .is_some_and(|h| now >= h + keepalive.interval)
                {
                    self.probe_at = Some(now);
                    self.actions.push_back(RegistrationAction::SendKeepAlive);
                }
            }
        }
    }

    /// The next thing to do, if any.
    pub fn poll_action(&mut self) -> Option<RegistrationAction> {
        self.actions.pop_front()
    }

    fn attempt(&mut self, now: Instant) {
        if self.credential_expiry.is_some_and(|e| now >= e) {
            // A token past its expiry would only be refused: say so without a retry storm.
            self.phase = Phase::Stopped;
            self.set_state(
                ConnectionState::Disconnected,
                ConnectionReason::InvalidToken,
            );
            return;
        }
        self.phase = Phase::Attempting;
        self.attempt_at = Some(now);
        self.actions.push_back(RegistrationAction::SendRegister {
            expires: self.policy.expires,
        });
    }

    /// Probes go out only while Connected and no REGISTER is in flight (a REGISTER is a probe
    /// of its own); while Disconnected the REGISTER retries do the probing.
    fn may_probe(&self) -> bool {
        self.state == ConnectionState::Connected
            && matches!(self.phase, Phase::Registered { .. } | Phase::Waiting { .. })
    }

    /// When the probe in flight times out, or when the next one is due.
    fn liveness_timeout(&self) -> Option<Instant> {
        let keepalive = self.keepalive?;
        match self.probe_at {
            Some(sent) => Some(sent + keepalive.timeout),
            None if self.may_probe() => self.last_heard.map(|h| h + keepalive.interval),
            None => None,
        }
    }

    /// Whether the server was heard from at or after `since` (`None`: never counts).
    fn heard_since(&self, since: Option<Instant>) -> bool {
        since.is_some_and(|since| self.last_heard.is_some_and(|h| h >= since))
    }

    /// The server is gone: say so, and register again at once (a dead server makes that
    /// attempt fail, and the ordinary back-off takes over).
    fn server_gone(&mut self, now: Instant) {
        self.probe_at = None;
        if matches!(self.phase, Phase::Idle | Phase::Stopped) {
            return;
        }
        self.set_state(
            ConnectionState::Disconnected,
            ConnectionReason::ConnectionIssue,
        );
        if matches!(self.phase, Phase::Registered { .. }) {
            self.attempt(now);
        }
    }

    /// Report a change of state, or a new reason for staying disconnected (a sign-in that
    /// fails is news even though the state stays `Disconnected`); never the same report twice.
    fn set_state(&mut self, new: ConnectionState, reason: ConnectionReason) {
        let old = self.state;
        if old == new && self.last_reason == Some(reason) {
            return;
        }
        if old == new && new == ConnectionState::Connected {
            return;
        }
        self.state = new;
        self.last_reason = Some(reason);
        self.actions
            .push_back(RegistrationAction::StateChanged { old, new, reason });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(r: &mut Registration) -> Vec<RegistrationAction> {
        std::iter::from_fn(|| r.poll_action()).collect()
    }

    fn changed(
        new: ConnectionState,
        reason: ConnectionReason,
    ) -> impl Fn(&RegistrationAction) -> bool {
        move |a| matches!(a, RegistrationAction::StateChanged { new: n, reason: r, .. } if *n == new && *r == reason)
    }

    #[test]
    fn an_untrusted_certificate_is_its_own_reason_and_retried_slowly() {
        let t0 = Instant::now();
        let policy = RegistrationPolicy::default();
        let mut r = Registration::new(policy.clone(), None);
        r.start(t0);
        drain(&mut r);
        r.handle_outcome(t0, RegisterOutcome::Untrusted);
        assert!(
            drain(&mut r).iter().any(changed(
                ConnectionState::Disconnected,
                ConnectionReason::CertificateNotTrusted
            )),
            "the user must read that the certificate is not trusted, not that the server is \
             unreachable"
        );
        assert_eq!(
            r.poll_timeout().map(|at| at - t0),
            Some(policy.slow_retry),
            "retrying at once cannot help: look again at the slow pace"
        );
        r.handle_timeout(t0 + policy.slow_retry);
        assert_eq!(
            drain(&mut r),
            vec![RegistrationAction::SendRegister { expires: 300 }],
            "then try again, in case the certificate was mended"
        );
        r.handle_outcome(
            t0 + policy.slow_retry,
            RegisterOutcome::Registered { expires: 300 },
        );
        assert!(
            drain(&mut r).iter().any(changed(
                ConnectionState::Connected,
                ConnectionReason::Registered
            )),
            "and connect once it is"
        );
    }

    #[test]
    fn success_connects_and_refreshes_before_expiry() {
        let t0 = Instant::now();
        let mut r = Registration::new(RegistrationPolicy::default(), None);
        r.start(t0);
        assert_eq!(
            drain(&mut r),
            vec![RegistrationAction::SendRegister { expires: 300 }],
            "first REGISTER at once"
        );
        r.handle_outcome(t0, RegisterOutcome::Registered { expires: 100 });
        assert!(
            drain(&mut r).iter().any(changed(
                ConnectionState::Connected,
                ConnectionReason::Registered
            )),
            "a 200 makes us Connected"
        );
        let refresh = r.poll_timeout().expect("a refresh is scheduled");
        assert_eq!(
            refresh - t0,
            Duration::from_secs(80),
            "refresh at 80 % of the granted expiry"
        );
        r.handle_timeout(refresh);
        assert_eq!(
            drain(&mut r),
            vec![RegistrationAction::SendRegister { expires: 300 }],
            "refresh sends REGISTER"
        );
        r.handle_outcome(refresh, RegisterOutcome::Registered { expires: 100 });
        assert!(
            drain(&mut r).is_empty(),
            "a refresh that works changes nothing visible"
        );
    }

    #[test]
    fn rejected_credential_is_invalid_token_without_retries() {
        let t0 = Instant::now();
        let mut r = Registration::new(RegistrationPolicy::default(), None);
        r.start(t0);
        drain(&mut r);
        r.handle_outcome(t0, RegisterOutcome::Rejected { status: 403 });
        assert!(
            drain(&mut r).iter().any(changed(
                ConnectionState::Disconnected,
                ConnectionReason::InvalidToken
            )),
            "a rejected credential is reported as invalidToken"
        );
        assert_eq!(
            r.poll_timeout(),
            None,
            "and nothing is retried: no retry storm"
        );
    }

    #[test]
    fn expired_token_is_refused_locally() {
        let t0 = Instant::now();
        let mut r = Registration::new(RegistrationPolicy::default(), Some(t0));
        r.start(t0);
        let actions = drain(&mut r);
        assert!(
            !actions
                .iter()
                .any(|a| matches!(a, RegistrationAction::SendRegister { .. })),
            "an expired token is not even sent"
        );
        assert!(
            actions.iter().any(changed(
                ConnectionState::Disconnected,
                ConnectionReason::InvalidToken
            )),
            "it is reported as invalidToken"
        );
    }

    #[test]
    fn unreachable_server_backs_off_then_reports_connection_issue_then_recovers() {
        let t0 = Instant::now();
        let policy = RegistrationPolicy::default();
        let mut r = Registration::new(policy.clone(), None);
        r.start(t0);
        drain(&mut r);
        let mut now = t0;
        let mut delays = Vec::new();
        for _ in 0..policy.max_retries {
            r.handle_outcome(now, RegisterOutcome::Failed { status: 408 });
            let next = r.poll_timeout().expect("a retry is scheduled");
            delays.push(next - now);
            now = next;
            r.handle_timeout(now);
            let _ = drain(&mut r);
        }
        assert_eq!(
            delays,
            vec![
                Duration::from_millis(500),
                Duration::from_secs(1),
                policy.slow_retry
            ],
            "retries back off exponentially, then slow down after connectionIssue"
        );
        r.handle_outcome(now, RegisterOutcome::Failed { status: 408 });
        let next = r.poll_timeout().unwrap();
        assert_eq!(
            next - now,
            policy.slow_retry,
            "keeps trying at the slow pace"
        );
        r.handle_timeout(next);
        drain(&mut r);
        r.handle_outcome(next, RegisterOutcome::Registered { expires: 60 });
        assert!(
            drain(&mut r).iter().any(changed(
                ConnectionState::Connected,
                ConnectionReason::Registered
            )),
            "when the server is back the agent is Connected again"
        );
    }

    #[test]
    fn connection_issue_is_reported_once() {
        let t0 = Instant::now();
        let mut r = Registration::new(RegistrationPolicy::default(), None);
        r.start(t0);
        let mut reports = 0;
        let mut now = t0;
        for _ in 0..6 {
            drain(&mut r);
            r.handle_outcome(now, RegisterOutcome::Failed { status: 503 });
            reports += drain(&mut r)
                .iter()
                .filter(|a| {
                    changed(
                        ConnectionState::Disconnected,
                        ConnectionReason::ConnectionIssue,
                    )(a)
                })
                .count();
            now = r.poll_timeout().unwrap();
            r.handle_timeout(now);
        }
        assert_eq!(
            reports, 1,
            "connectionIssue is news once, not on every slow retry"
        );
    }

    #[test]
    fn lost_connection_re_registers_at_once() {
        let t0 = Instant::now();
        let mut r = Registration::new(RegistrationPolicy::default(), None);
        r.start(t0);
        drain(&mut r);
        r.handle_outcome(t0, RegisterOutcome::Registered { expires: 300 });
        drain(&mut r);
        r.handle_transport_closed(t0 + Duration::from_secs(5));
        assert_eq!(
            drain(&mut r),
            vec![RegistrationAction::SendRegister { expires: 300 }],
            "a closed TCP flow triggers an immediate REGISTER"
        );
    }

    /// The REGISTER timeout the agent uses by default (`AgentConfig::register_timeout`).
    const REGISTER_TIMEOUT: Duration = Duration::from_secs(4);

    /// What reaches the machine from its virtual server.
    #[derive(Debug)]
    enum Arrival {
        /// An answer to a probe (any status).
        ProbeAnswered,
        /// The REGISTER's 200.
        Registered,
        /// The REGISTER timed out.
        RegisterUnanswered,
    }

    /// A machine with the default keep-alive policy, driven on virtual time against a server
    /// that answers REGISTERs and probes after `delay` while it is up, and nothing while down.
    struct World {
        r: Registration,
        t0: Instant,
        now: Instant,
        delay: Duration,
        /// The server is down from `.0` until `.1` (relative to `t0`).
        down: Option<(Duration, Duration)>,
        pending: Vec<(Instant, Arrival)>,
        /// Every `connectionStateChanged`, at its time since `t0`.
        changes: Vec<(Duration, ConnectionState, ConnectionReason)>,
        /// When each probe went out, since `t0`.
        probes: Vec<Duration>,
    }

    impl World {
        fn new(delay: Duration, down: Option<(Duration, Duration)>) -> World {
            let t0 = Instant::now();
            let r = Registration::new(RegistrationPolicy::default(), None)
                .with_keepalive(KeepAlivePolicy::default());
            let mut w = World {
                r,
                t0,
                now: t0,
                delay,
                down,
                pending: Vec::new(),
                changes: Vec::new(),
                probes: Vec::new(),
            };
            w.r.start(t0);
            w.act();
            w
        }

        fn up(&self) -> bool {
            let t = self.now - self.t0;
            !self.down.is_some_and(|(from, to)| t >= from && t < to)
        }

        /// Carry out what the machine asks, as the driver would.
        fn act(&mut self) {
            while let Some(action) = self.r.poll_action() {
                match action {
                    RegistrationAction::SendRegister { .. } => {
                        // The driver drops a REGISTER still in flight for the new one.
                        self.pending
                            .retain(|(_, a)| matches!(a, Arrival::ProbeAnswered));
                        let arrival = if self.up() {
                            (self.now + self.delay, Arrival::Registered)
                        } else {
                            (self.now + REGISTER_TIMEOUT, Arrival::RegisterUnanswered)
                        };
                        self.pending.push(arrival);
                    }
                    RegistrationAction::SendKeepAlive => {
                        self.probes.push(self.now - self.t0);
                        if self.up() {
                            self.pending
                                .push((self.now + self.delay, Arrival::ProbeAnswered));
                        }
                    }
                    RegistrationAction::StateChanged { new, reason, .. } => {
                        self.changes.push((self.now - self.t0, new, reason));
                    }
                }
            }
        }

        /// Run until `end` (since `t0`).
        fn run_until(&mut self, end: Duration) {
            loop {
                let next = self
                    .pending
                    .iter()
                    .map(|(at, _)| *at)
                    .chain(self.r.poll_timeout())
                    .min()
                    .expect("a registered machine always has a timer");
                if next > self.t0 + end {
                    self.now = self.t0 + end;
                    return;
                }
                self.now = self.now.max(next);
                let now = self.now;
                let (due, later): (Vec<_>, Vec<_>) =
                    self.pending.drain(..).partition(|(at, _)| *at <= now);
                self.pending = later;
                for (_, arrival) in due {
                    match arrival {
                        Arrival::ProbeAnswered => self.r.handle_heard(now),
                        Arrival::Registered => {
                            self.r.handle_heard(now);
                            self.r
                                .handle_outcome(now, RegisterOutcome::Registered { expires: 300 });
                        }
                        Arrival::RegisterUnanswered => self
                            .r
                            .handle_outcome(now, RegisterOutcome::NoAnswer { status: 408 }),
                    }
                    self.act();
                }
                self.r.handle_timeout(now);
                self.act();
            }
        }

        /// The first change to `state` at or after `after`, since `t0`.
        fn first(&self, state: ConnectionState, after: Duration) -> Option<Duration> {
            self.changes
                .iter()
                .find(|(at, s, _)| *s == state && *at >= after)
                .map(|(at, _, _)| *at)
        }
    }

    #[test]
    fn a_dead_udp_server_is_noticed_within_ten_seconds_whenever_it_dies() {
        let delay = Duration::from_millis(20);
        let mut worst = Duration::ZERO;
        // Deaths every 100 ms over the first 40 s: every phase of the idle/probe cycle.
        for death in (0..400).map(|i| Duration::from_millis(100) * i) {
            let mut w = World::new(delay, Some((death, Duration::from_secs(3600))));
            w.run_until(death + Duration::from_secs(20));
            if death < delay {
                continue; // it never registered: that is sign-in, not a lost server
            }
            let noticed = w
                .first(ConnectionState::Disconnected, death)
                .unwrap_or_else(|| panic!("a server dead at {death:?} must be noticed"));
            assert_eq!(
                w.changes.last().map(|c| c.2),
                Some(ConnectionReason::ConnectionIssue),
                "a lost server is reported as connectionIssue, the reason sign-in uses"
            );
            worst = worst.max(noticed - death);
        }
        eprintln!("worst-case detection of a dead UDP server on virtual time: {worst:?}");
        assert!(
            worst <= Duration::from_secs(10),
            "a dead server must be noticed within 10 s of its death, worst case was {worst:?}"
        );
        assert!(
            worst >= Duration::from_secs(8),
            "the worst case should be about interval + timeout (9 s), not {worst:?}: \
             is the sweep reaching the deaths right after an answer?"
        );
    }

    #[test]
    fn an_alive_server_with_a_slow_answer_is_not_flagged() {
        // Every answer takes 3.9 s, just under the 4 s timeout, for half an hour.
        let mut w = World::new(Duration::from_millis(3900), None);
        w.run_until(Duration::from_secs(1800));
        assert_eq!(
            w.changes.iter().map(|c| (c.1, c.2)).collect::<Vec<_>>(),
            vec![(ConnectionState::Connected, ConnectionReason::Registered)],
            "a slow but answering server stays Connected the whole time"
        );
        assert!(
            w.probes.len() > 100,
            "the idle agent kept probing (every interval of silence), sent {}",
            w.probes.len()
        );
    }

    #[test]
    fn probes_go_out_only_after_an_interval_of_silence() {
        let mut w = World::new(Duration::from_millis(20), None);
        w.run_until(Duration::from_secs(60));
        let gaps: Vec<Duration> = w.probes.windows(2).map(|p| p[1] - p[0]).collect();
        assert!(
            gaps.iter()
                .all(|g| *g >= KeepAlivePolicy::default().interval),
            "probes are spaced by at least the idle interval (load on the server): {gaps:?}"
        );
        assert!(
            (10..=12).contains(&w.probes.len()),
            "about one probe per 5 s in a minute, got {}",
            w.probes.len()
        );
    }

    #[test]
    fn the_agent_is_connected_again_by_itself_once_the_server_is_back() {
        let (death, back) = (Duration::from_secs(20), Duration::from_secs(60));
        let mut w = World::new(Duration::from_millis(20), Some((death, back)));
        w.run_until(Duration::from_secs(120));
        let lost = w
            .first(ConnectionState::Disconnected, death)
            .expect("the dead server is noticed");
        assert!(
            lost - death <= Duration::from_secs(10),
            "noticed within 10 s, took {:?}",
            lost - death
        );
        let again = w
            .first(ConnectionState::Connected, lost)
            .expect("Connected again without user action once the server is back");
        let slow = RegistrationPolicy::default().slow_retry;
        assert!(
            again >= back && again - back <= slow + Duration::from_secs(1),
            "reconnected within one slow retry ({slow:?}) of the server's return, at {again:?}"
        );
        assert!(
            w.probes.iter().all(|p| *p < lost || *p > again),
            "no keep-alive probes while Disconnected: the REGISTER retries probe: {:?}",
            w.probes
        );
        assert_eq!(
            w.r.state(),
            ConnectionState::Connected,
            "and it stays Connected"
        );
    }

    #[test]
    fn any_request_left_unanswered_means_the_server_is_gone_unless_it_spoke_since() {
        let t0 = Instant::now();
        let mut r = Registration::new(RegistrationPolicy::default(), None)
            .with_keepalive(KeepAlivePolicy::default());
        r.start(t0);
        drain(&mut r);
        r.handle_outcome(t0, RegisterOutcome::Registered { expires: 300 });
        drain(&mut r);
        // An INVITE sent at 1 s whose 100 Trying came at 1.1 s, then a 408 of our own at 33 s:
        // the far end was silent, not the server.
        r.handle_heard(t0 + Duration::from_millis(1100));
        r.handle_request_unanswered(t0 + Duration::from_secs(33), t0 + Duration::from_secs(1));
        assert!(
            drain(&mut r).is_empty(),
            "a request the server answered provisionally says nothing about the server"
        );
        assert_eq!(r.state(), ConnectionState::Connected, "still Connected");
        // An INVITE sent at 2 s that the transport could not send, nothing heard since.
        let at = t0 + Duration::from_secs(2);
        r.handle_request_unanswered(at, at);
        let actions = drain(&mut r);
        assert!(
            actions.iter().any(changed(
                ConnectionState::Disconnected,
                ConnectionReason::ConnectionIssue
            )),
            "a request to a silent server that got no answer means it is gone: {actions:?}"
        );
        assert!(
            actions.contains(&RegistrationAction::SendRegister { expires: 300 }),
            "and a REGISTER goes out at once to be back as soon as the server is: {actions:?}"
        );
    }

    #[test]
    fn a_register_without_any_answer_is_connection_issue_at_once() {
        let t0 = Instant::now();
        let mut r = Registration::new(RegistrationPolicy::default(), None)
            .with_keepalive(KeepAlivePolicy::default());
        r.start(t0);
        drain(&mut r);
        r.handle_outcome(t0, RegisterOutcome::Registered { expires: 100 });
        drain(&mut r);
        let refresh = r.poll_timeout().expect("a refresh or probe is scheduled");
        // Answer the probes until the refresh is due, then let the refresh time out.
        let mut now = refresh;
        while !drain(&mut r).contains(&RegistrationAction::SendRegister { expires: 300 }) {
            r.handle_heard(now);
            now = r.poll_timeout().expect("a timer");
            r.handle_timeout(now);
        }
        let sent = now;
        now = sent + REGISTER_TIMEOUT;
        r.handle_outcome(now, RegisterOutcome::NoAnswer { status: 408 });
        let actions = drain(&mut r);
        assert!(
            actions.iter().any(changed(
                ConnectionState::Disconnected,
                ConnectionReason::ConnectionIssue
            )),
            "a refresh that got no answer at all reports connectionIssue at once, not after \
             the bounded retries: {actions:?}"
        );
        assert_eq!(
            r.poll_timeout(),
            Some(now + RegistrationPolicy::default().retry_initial),
            "and the ordinary back-off goes on"
        );
    }

    #[test]
    fn a_register_refused_by_a_live_server_keeps_the_bounded_retries() {
        let t0 = Instant::now();
        let mut r = Registration::new(RegistrationPolicy::default(), None)
            .with_keepalive(KeepAlivePolicy::default());
        r.start(t0);
        drain(&mut r);
        r.handle_outcome(t0, RegisterOutcome::Registered { expires: 300 });
        drain(&mut r);
        r.handle_transport_closed(t0 + Duration::from_secs(1));
        drain(&mut r);
        r.handle_outcome(
            t0 + Duration::from_secs(1),
            RegisterOutcome::Failed { status: 500 },
        );
        assert!(
            drain(&mut r).is_empty(),
            "a server that answers 500 is there: one failure is not yet a connection issue"
        );
    }

    #[test]
    fn a_closed_connection_to_a_dead_server_is_noticed_at_once() {
        let t0 = Instant::now();
        let mut r = Registration::new(RegistrationPolicy::default(), None)
            .with_keepalive(KeepAlivePolicy::default());
        r.start(t0);
        drain(&mut r);
        r.handle_outcome(t0, RegisterOutcome::Registered { expires: 300 });
        drain(&mut r);
        let closed = t0 + Duration::from_secs(3);
        r.handle_transport_closed(closed);
        assert_eq!(
            drain(&mut r),
            vec![RegistrationAction::SendRegister { expires: 300 }],
            "a closed connection is not yet news: register again at once over a new one"
        );
        // The new connection is refused: the REGISTER could not be sent.
        r.handle_outcome(closed, RegisterOutcome::NoAnswer { status: 503 });
        assert!(
            drain(&mut r).iter().any(changed(
                ConnectionState::Disconnected,
                ConnectionReason::ConnectionIssue
            )),
            "a refused reconnection is the dead server, reported in the same instant"
        );
    }

    #[test]
    fn sign_out_unregisters() {
        let t0 = Instant::now();
        let mut r = Registration::new(RegistrationPolicy::default(), None);
        r.start(t0);
        drain(&mut r);
        r.handle_outcome(t0, RegisterOutcome::Registered { expires: 300 });
        drain(&mut r);
        r.sign_out();
        let a = drain(&mut r);
        assert_eq!(
            a[0],
            RegistrationAction::SendRegister { expires: 0 },
            "sign-out removes the binding"
        );
        assert!(
            a.iter().any(changed(
                ConnectionState::Disconnected,
                ConnectionReason::SignedOut
            )),
            "and says so"
        );
        assert_eq!(r.poll_timeout(), None, "no refresh after sign-out");
    }
}
