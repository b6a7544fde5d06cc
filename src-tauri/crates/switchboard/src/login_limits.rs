//! Failed sign-ins to the HTTP API, counted per user and address and per address, time
//! passed in (no I/O): guessing a password or forging tokens from one address is slowed to a
//! crawl, while the real user signing in from elsewhere is never locked out by someone else's
//! guesses (a lock on the user alone would hand any stranger a way to shut them out).
//!
//! - [`MAX_FAILURES_PER_USER`] failures for one user from one address within [`WINDOW`]
//!   lock that pair out for [`FIRST_LOCKOUT`], doubling with each lockout up to
//!   [`MAX_LOCKOUT`];
//! - [`MAX_FAILURES_PER_ADDRESS`] failures from one address whatever the user (spraying many
//!   names) lock the address out the same way;
//! - a success clears that user's count at that address.
//!
//! Memory is bounded: at most [`MAX_TRACKED`] records each way; past that, records whose
//! window and lockout are over go first, then the oldest.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Failures for one user from one address before that pair is locked out.
pub const MAX_FAILURES_PER_USER: u32 = 5;
/// Failures from one address, whatever the users, before it is locked out.
pub const MAX_FAILURES_PER_ADDRESS: u32 = 30;
/// How long failures are remembered.
pub const WINDOW: Duration = Duration::from_secs(300);
/// The first lockout; each next one doubles.
pub const FIRST_LOCKOUT: Duration = Duration::from_secs(60);
/// The longest lockout.
pub const MAX_LOCKOUT: Duration = Duration::from_secs(900);
/// The most records kept each way.
pub const MAX_TRACKED: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Record {
    failures: u32,
    since: Instant,
    locked_until: Option<Instant>,
    lockouts: u32,
}

impl Record {
    fn new(now: Instant) -> Record {
        Record {
            failures: 0,
            since: now,
            locked_until: None,
            lockouts: 0,
        }
    }

    fn locked(&self, now: Instant) -> Option<Duration> {
        self.locked_until
            .filter(|until| *until > now)
            .map(|until| until - now)
    }

    fn fail(&mut self, now: Instant, max: u32) {
        if now.duration_since(self.since) > WINDOW {
            self.failures = 0;
            self.since = now;
        }
        self.failures += 1;
        if self.failures >= max {
            let lockout = FIRST_LOCKOUT
                .saturating_mul(1 << self.lockouts.min(10))
                .min(MAX_LOCKOUT);
            self.locked_until = Some(now + lockout);
            self.lockouts += 1;
            self.failures = 0;
            self.since = now;
        }
    }

    fn spent(&self, now: Instant) -> bool {
        self.locked(now).is_none() && now.duration_since(self.since) > WINDOW
    }
}

/// The counts (see the module docs).
#[derive(Debug, Default)]
pub struct LoginLimits {
    pairs: HashMap<(String, IpAddr), Record>,
    addresses: HashMap<IpAddr, Record>,
}

impl LoginLimits {
    /// Whether `user` may try to sign in from `ip` now: `Err` with how long to wait if not.
    pub fn check(&self, user: &str, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        let pair = self
            .pairs
            .get(&(user.to_owned(), ip))
            .and_then(|r| r.locked(now));
        let address = self.addresses.get(&ip).and_then(|r| r.locked(now));
        match pair.max(address) {
            Some(wait) => Err(wait),
            None => Ok(()),
        }
    }

    /// A sign-in as `user` from `ip` failed.
    pub fn failed(&mut self, user: &str, ip: IpAddr, now: Instant) {
        bound(&mut self.pairs, now);
        bound(&mut self.addresses, now);
        self.pairs
            .entry((user.to_owned(), ip))
            .or_insert_with(|| Record::new(now))
            .fail(now, MAX_FAILURES_PER_USER);
        self.addresses
            .entry(ip)
            .or_insert_with(|| Record::new(now))
            .fail(now, MAX_FAILURES_PER_ADDRESS);
    }

    /// `user` signed in from `ip`: their failures there are forgotten.
    pub fn succeeded(&mut self, user: &str, ip: IpAddr) {
        self.pairs.remove(&(user.to_owned(), ip));
    }
}

/// Keep `map` under [`MAX_TRACKED`]: spent records go first, then the oldest quarter (at
/// once, so that a flood costs one sort per quarter of the table, not one per request).
fn bound<K: Clone + Eq + std::hash::Hash>(map: &mut HashMap<K, Record>, now: Instant) {
    if map.len() < MAX_TRACKED {
        return;
    }
    map.retain(|_, r| !r.spent(now));
    if map.len() >= MAX_TRACKED * 3 / 4 {
        let mut by_age: Vec<(Instant, K)> = map.iter().map(|(k, r)| (r.since, k.clone())).collect();
        by_age.sort_unstable_by_key(|(since, _)| *since);
        for (_, k) in by_age.into_iter().take(MAX_TRACKED / 4) {
            map.remove(&k);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, last])
    }

    #[test]
    fn guesses_from_one_address_lock_that_address_out_of_that_user_only() {
        let t0 = Instant::now();
        let mut l = LoginLimits::default();
        for n in 0..MAX_FAILURES_PER_USER {
            assert!(
                l.check("alice", ip(1), t0).is_ok(),
                "guess {n} is still let through"
            );
            l.failed("alice", ip(1), t0);
        }
        assert_eq!(
            l.check("alice", ip(1), t0),
            Err(FIRST_LOCKOUT),
            "five wrong guesses lock alice out from that address for a minute"
        );
        assert!(
            l.check("alice", ip(2), t0).is_ok(),
            "the real alice, elsewhere, is not locked out by a stranger's guesses"
        );
        assert!(
            l.check("bob", ip(1), t0).is_ok(),
            "nor is another user at that address (until it sprays many names)"
        );
        assert!(
            l.check("alice", ip(1), t0 + FIRST_LOCKOUT).is_ok(),
            "the lockout ends"
        );
        for _ in 0..MAX_FAILURES_PER_USER {
            l.failed("alice", ip(1), t0 + FIRST_LOCKOUT);
        }
        assert_eq!(
            l.check("alice", ip(1), t0 + FIRST_LOCKOUT),
            Err(FIRST_LOCKOUT * 2),
            "the next lockout is twice as long"
        );
    }

    #[test]
    fn spraying_many_names_from_one_address_locks_the_address_out() {
        let t0 = Instant::now();
        let mut l = LoginLimits::default();
        for n in 0..MAX_FAILURES_PER_ADDRESS {
            l.failed(&format!("user{n}"), ip(9), t0);
        }
        assert!(
            l.check("anyone", ip(9), t0).is_err(),
            "an address that failed for thirty names is shut out whatever name it tries"
        );
        assert!(
            l.check("anyone", ip(8), t0).is_ok(),
            "other addresses are not"
        );
    }

    #[test]
    fn a_success_clears_the_count_and_old_failures_lapse() {
        let t0 = Instant::now();
        let mut l = LoginLimits::default();
        for _ in 0..MAX_FAILURES_PER_USER - 1 {
            l.failed("alice", ip(1), t0);
        }
        l.succeeded("alice", ip(1));
        l.failed("alice", ip(1), t0);
        assert!(
            l.check("alice", ip(1), t0).is_ok(),
            "a typo after signing in does not count the earlier ones"
        );
        for _ in 0..MAX_FAILURES_PER_USER - 1 {
            l.failed("alice", ip(3), t0);
        }
        l.failed("alice", ip(3), t0 + WINDOW + Duration::from_secs(1));
        assert!(
            l.check("alice", ip(3), t0 + WINDOW + Duration::from_secs(1))
                .is_ok(),
            "failures older than the window lapse"
        );
    }

    #[test]
    fn memory_stays_bounded_under_a_flood_of_names() {
        let t0 = Instant::now();
        let mut l = LoginLimits::default();
        for n in 0..(MAX_TRACKED as u32 * 2) {
            l.failed(&format!("u{n}"), IpAddr::from(n.to_be_bytes()), t0);
        }
        assert!(
            l.pairs.len() <= MAX_TRACKED && l.addresses.len() <= MAX_TRACKED,
            "never more than {MAX_TRACKED} records each way ({} and {})",
            l.pairs.len(),
            l.addresses.len()
        );
    }
}
