//! The registration state machine: when to REGISTER, what the outcome means for
//! `connectionState`, and how to back off — with no I/O inside.
//!
//! The driver feeds it the outcome of each REGISTER attempt and the passage of time, and
//! carries out what it asks through [`Registration::poll_action`]:
//!
//! ```text
//!   start ──► attempt ──ok──► Connected ──(refresh at 80 % of expires)──► attempt
//!               │  ▲                                    │
//!   401/403 with credentials, token past expiry         transport closed ──► attempt now
//!               │  │
//!               ▼  └─ failure: retry after 0.5 s, 1 s, 2 s, ... (bounded)
//!   Disconnected{invalidToken}   after `max_retries` failures: Disconnected{connectionIssue},
//!   (no retry: a new credential     then retry every `slow_retry` until it works again
//!    is needed)
//! ```
//!
//! Time is an [`Instant`] passed in, so tests run on virtual time.

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
    /// Any other final failure: timeout, transport error, 5xx, ...
    Failed {
        /// The SIP status, or 408/503 for timeouts and transport errors.
        status: u16,
    },
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
        }
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
        self.set_state(ConnectionState::Disconnected, ConnectionReason::SignedOut);
    }

    /// The outcome of the REGISTER in flight.
    pub fn handle_outcome(&mut self, now: Instant, outcome: RegisterOutcome) {
        if self.phase != Phase::Attempting {
            return; // a late answer after sign-out, or a duplicate
        }
        match outcome {
            RegisterOutcome::Registered { expires } => {
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
            RegisterOutcome::Failed { .. } => {
                self.failures += 1;
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
        }
    }

    /// The registrar wants a longer interval (423 Min-Expires): ask for at least `min` from now on.
    pub fn raise_expires(&mut self, min: u32) {
        self.policy.expires = self.policy.expires.max(min);
    }

    /// The transport under the registration broke (TCP closed): register again at once.
    pub fn handle_transport_closed(&mut self, now: Instant) {
        if matches!(self.phase, Phase::Registered { .. } | Phase::Waiting { .. }) {
            self.attempt(now);
        }
    }

    /// When [`Registration::handle_timeout`] should next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.phase {
            Phase::Waiting { at } => Some(at),
            Phase::Registered { refresh_at } => Some(refresh_at),
            _ => None,
        }
    }

    /// Time has passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        match self.phase {
            Phase::Waiting { at } if now >= at => self.attempt(now),
            Phase::Registered { refresh_at } if now >= refresh_at => self.attempt(now),
            _ => {}
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
        self.actions.push_back(RegistrationAction::SendRegister {
            expires: self.policy.expires,
        });
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
