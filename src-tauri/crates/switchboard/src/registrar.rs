//! Registrar bindings (RFC 3261 §10.3), in memory, time passed in.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::time::{Duration, Instant};

use hookflash_core::sip::{NameAddr, TransportKind, Uri};

use crate::routing::{Flow, SIP_PORT};

/// At most this many contacts per user; a new one evicts the one expiring first.
pub const MAX_BINDINGS_PER_USER: usize = 10;

/// One registered contact of a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// The contact as registered (its `expires` parameter removed).
    pub contact: NameAddr,
    /// The flow the REGISTER came on: requests for this contact go back over it.
    pub flow: Flow,
    /// When the binding lapses.
    pub expires_at: Instant,
    /// The Call-ID of the REGISTER that made or refreshed it.
    pub call_id: String,
}

impl Binding {
    /// Seconds left at `now` (at least 0).
    pub fn remaining(&self, now: Instant) -> u64 {
        self.expires_at.saturating_duration_since(now).as_secs()
    }
}

/// A hash map keyed by what peers send (user names, Call-IDs, branches): aHash, keyed at
/// random per process so that chosen keys cannot make it degrade (HashDoS), and several times
/// faster than the standard library's SipHash, which was a tenth of the switchboard's time.
pub type FastMap<K, V> = HashMap<K, V, ahash::RandomState>;
/// The set of [`FastMap`].
pub type FastSet<T> = HashSet<T, ahash::RandomState>;

/// The identity of a contact URI: scheme, user, host (case-insensitive), and the port and
/// transport it is reached on, defaults filled in (`sip:a@h` and `sip:a@h:5060;transport=udp`
/// reach the same place: a peer that echoes a contact back without its parameters still finds
/// it).
type ContactKey = (String, Option<String>, String, u16, Option<TransportKind>);

fn contact_key(uri: &Uri) -> ContactKey {
    let (transport, port) = match uri.transport_and_port(TransportKind::Udp) {
        Some((t, p)) => (Some(t), p),
        None => (None, uri.port.unwrap_or(SIP_PORT)),
    };
    (
        uri.scheme.clone(),
        uri.user.clone(),
        uri.host.to_ascii_lowercase(),
        port,
        transport,
    )
}

/// Whether two URIs reach the same contact, ignoring parameters other than transport.
pub fn same_contact(a: &Uri, b: &Uri) -> bool {
    contact_key(a) == contact_key(b)
}

/// All bindings, by user name, with their expiry times in a heap and two indexes: purging
/// looks only at the users whose bindings are due, and finding the binding of a contact (every
/// in-dialog request) or of a closed connection looks only at the users that hold it. A scan
/// of every binding per request made the registrar slow down with its size.
#[derive(Debug, Default)]
pub struct Registrar {
    bindings: FastMap<String, Vec<Binding>>,
    /// (when, user) for every binding made or refreshed; entries outlived by a refresh or a
    /// removal are skipped when they come up.
    expiries: BinaryHeap<Reverse<(Instant, String)>>,
    /// The users holding a binding for each contact.
    by_contact: FastMap<ContactKey, FastSet<String>>,
    /// The users holding a binding on each flow.
    by_flow: FastMap<Flow, FastSet<String>>,
    /// How many bindings there are.
    count: usize,
}

/// Removes `user` from the set under `key`, and the set when it empties.
fn unlink<K: std::hash::Hash + Eq>(index: &mut FastMap<K, FastSet<String>>, key: &K, user: &str) {
    if let Some(users) = index.get_mut(key) {
        users.remove(user);
        if users.is_empty() {
            index.remove(key);
        }
    }
}

impl Registrar {
    /// Changes `user`'s bindings through `change`, keeping the indexes and the count right.
    fn edit<R>(&mut self, user: &str, change: impl FnOnce(&mut Vec<Binding>) -> R) -> R {
        let mut list = self.bindings.remove(user).unwrap_or_default();
        for b in &list {
            unlink(&mut self.by_contact, &contact_key(&b.contact.uri), user);
            unlink(&mut self.by_flow, &b.flow, user);
        }
        self.count -= list.len();
        let out = change(&mut list);
        for b in &list {
            self.by_contact
                .entry(contact_key(&b.contact.uri))
                .or_default()
                .insert(user.to_owned());
            self.by_flow
                .entry(b.flow)
                .or_default()
                .insert(user.to_owned());
        }
        self.count += list.len();
        if !list.is_empty() {
            self.bindings.insert(user.to_owned(), list);
        }
        out
    }

    /// Add, refresh (`expires > 0`) or remove (`expires == 0`) one contact of `user`.
    pub fn update(
        &mut self,
        user: &str,
        mut contact: NameAddr,
        expires: u32,
        flow: Flow,
        call_id: &str,
        now: Instant,
    ) {
        contact
            .params
            .retain(|(n, _)| !n.eq_ignore_ascii_case("expires"));
        // A registered contact becomes the Request-URI of requests to it, which carries no
        // headers (RFC 3261 §19.1.5: they would be headers of the request; a registrant has
        // no business adding headers to its callers' requests, and our agent refuses a
        // Request-URI with them).
        contact.uri.headers.clear();
        let expires_at = now + Duration::from_secs(u64::from(expires));
        self.edit(user, |list| {
            list.retain(|b| b.expires_at > now && !same_contact(&b.contact.uri, &contact.uri));
            if expires > 0 {
                if list.len() >= MAX_BINDINGS_PER_USER {
                    if let Some(i) = list
                        .iter()
                        .enumerate()
                        .min_by_key(|(_, b)| b.expires_at)
                        .map(|(i, _)| i)
                    {
                        list.remove(i);
                    }
                }
                list.push(Binding {
                    contact,
                    flow,
                    expires_at,
                    call_id: call_id.to_owned(),
                });
            }
        });
        if expires > 0 {
            self.expiries.push(Reverse((expires_at, user.to_owned())));
        }
    }

    /// Remove every contact of `user` (`Contact: *`).
    pub fn remove_all(&mut self, user: &str) {
        self.edit(user, Vec::clear);
    }

    /// The live bindings of `user` (expired ones are dropped on the way).
    pub fn lookup(&mut self, user: &str, now: Instant) -> Vec<Binding> {
        let Some(list) = self.bindings.get(user) else {
            return Vec::new();
        };
        // The usual case, on every call: nothing lapsed, so the indexes need no rework.
        if list.iter().all(|b| b.expires_at > now) {
            return list.clone();
        }
        self.edit(user, |list| {
            list.retain(|b| b.expires_at > now);
            list.clone()
        })
    }

    /// The live binding whose contact is `uri`, if any (the newest when several users share it).
    pub fn find_contact(&self, uri: &Uri, now: Instant) -> Option<Binding> {
        let users = self.by_contact.get(&contact_key(uri))?;
        users
            .iter()
            .filter_map(|u| self.bindings.get(u))
            .flatten()
            .filter(|b| b.expires_at > now && same_contact(&b.contact.uri, uri))
            .max_by_key(|b| b.expires_at)
            .cloned()
    }

    /// Drop every binding that uses `flow` (its TCP connection closed); how many went.
    pub fn remove_flow(&mut self, flow: Flow) -> usize {
        let users: Vec<String> = self
            .by_flow
            .get(&flow)
            .map(|u| u.iter().cloned().collect())
            .unwrap_or_default();
        users
            .iter()
            .map(|user| {
                self.edit(user, |list| {
                    let before = list.len();
                    list.retain(|b| b.flow != flow);
                    before - list.len()
                })
            })
            .sum()
    }

    /// Drop expired bindings everywhere: only the users with a binding due are looked at.
    pub fn purge(&mut self, now: Instant) {
        self.purge_some(now, usize::MAX);
    }

    /// [`purge`](Self::purge), looking at no more than `budget` due entries: a request's
    /// share of the work. When a crowd of registrations lapses together (100,000 users
    /// registered in a burst, gone silent), purging them all on the next REGISTER stalled the
    /// switchboard for a third of a second, long enough for every client to retransmit at
    /// once. Expired bindings still waiting are never used: lookups skip them.
    pub fn purge_some(&mut self, now: Instant, budget: usize) {
        for _ in 0..budget {
            let Some(Reverse((at, _))) = self.expiries.peek() else {
                break;
            };
            if *at > now {
                break;
            }
            let Some(Reverse((_, user))) = self.expiries.pop() else {
                break;
            };
            if self.bindings.contains_key(&user) {
                self.edit(&user, |list| list.retain(|b| b.expires_at > now));
            }
        }
        // The heap holds one entry per registration ever made until it comes due; with
        // refreshes it can outgrow the bindings. Rebuild it when it is mostly stale.
        if self.expiries.len() > 4 * self.count + 1024 {
            self.expiries = self
                .bindings
                .iter()
                .flat_map(|(u, l)| l.iter().map(move |b| Reverse((b.expires_at, u.clone()))))
                .collect();
        }
    }

    /// How many bindings there are (expired ones not yet purged count too).
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether there are no bindings.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}

/// The users who signed in with a token, each until the latest token they used expires (Unix
/// seconds): such a user is known while offline (a call reaches voicemail, not 404), and is
/// forgotten once no token of theirs is valid, so the set does not grow with every name that
/// ever signed in.
#[derive(Debug, Default)]
pub struct TokenUsers {
    until: FastMap<String, u64>,
    /// (expiry, user) for every expiry recorded; stale entries (a later token came) are
    /// skipped when they come due.
    expiries: BinaryHeap<Reverse<(u64, String)>>,
}

impl TokenUsers {
    /// `user` signed in with a token valid until `expiry`.
    pub fn record(&mut self, user: &str, expiry: u64) {
        match self.until.get_mut(user) {
            Some(until) if *until >= expiry => return,
            Some(until) => *until = expiry,
            None => {
                self.until.insert(user.to_owned(), expiry);
            }
        }
        self.expiries.push(Reverse((expiry, user.to_owned())));
    }

    /// Whether `user` holds a token still valid at `now_unix`.
    pub fn contains(&self, user: &str, now_unix: u64) -> bool {
        self.until.get(user).is_some_and(|until| *until >= now_unix)
    }

    /// How many users are remembered.
    pub fn len(&self) -> usize {
        self.until.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.until.is_empty()
    }

    /// Forget up to `budget` users whose tokens all expired before `now_unix`; the tables
    /// give memory back once they are mostly empty.
    pub fn purge_some(&mut self, now_unix: u64, budget: usize) {
        for _ in 0..budget {
            match self.expiries.peek() {
                Some(Reverse((at, _))) if *at < now_unix => {}
                _ => break,
            }
            let Some(Reverse((at, user))) = self.expiries.pop() else {
                break;
            };
            if self.until.get(&user) == Some(&at) {
                self.until.remove(&user);
            }
        }
        if self.until.capacity() > 1024 && self.until.len() * 4 < self.until.capacity() {
            self.until.shrink_to_fit();
        }
        if self.expiries.capacity() > 1024 && self.expiries.len() * 4 < self.expiries.capacity() {
            self.expiries.shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_contact_is_the_same_with_or_without_its_default_port_and_transport() {
        let uri = |s: &str| s.parse::<Uri>().unwrap();
        assert!(
            same_contact(
                &uri("sip:bob@127.0.0.1:4002;transport=UDP"),
                &uri("sip:bob@127.0.0.1:4002")
            ),
            "a peer that echoes a contact without ;transport=udp still reaches it"
        );
        assert!(
            same_contact(
                &uri("sip:bob@Host.example:5060"),
                &uri("sip:bob@host.example")
            ),
            "5060 is the default port, and hosts are case-insensitive"
        );
        assert!(
            !same_contact(
                &uri("sip:bob@127.0.0.1:4002;transport=tcp"),
                &uri("sip:bob@127.0.0.1:4002")
            ),
            "TCP and UDP at one address are two contacts"
        );
    }

    #[test]
    fn a_registered_contact_keeps_no_uri_headers() {
        let mut r = Registrar::default();
        let now = Instant::now();
        let contact: NameAddr = "<sip:bob@127.0.0.1:4002?X-Injected=1&Subject=hi>"
            .parse()
            .unwrap();
        r.update(
            "bob",
            contact,
            60,
            Flow {
                transport: TransportKind::Udp,
                addr: ([127, 0, 0, 1], 4002).into(),
            },
            "c",
            now,
        );
        let bound = r.lookup("bob", now);
        assert!(
            bound[0].contact.uri.headers.is_empty(),
            "the headers of a registered Contact must not reach the Request-URI of calls to \
             it: {}",
            bound[0].contact.uri
        );
    }

    #[test]
    fn token_users_are_known_until_their_latest_token_expires_then_forgotten() {
        let mut t = TokenUsers::default();
        t.record("alice", 100);
        t.record("alice", 200);
        t.record("alice", 150);
        t.record("bob", 120);
        assert!(
            t.contains("alice", 180),
            "alice's later token (200) still counts after the first (100) expired"
        );
        assert!(
            !t.contains("bob", 121),
            "bob's only token expired: he is no longer known"
        );
        t.purge_some(150, usize::MAX);
        assert_eq!(
            t.len(),
            1,
            "bob is forgotten; alice's stale entry (100) must not remove her"
        );
        assert!(t.contains("alice", 150));
        t.purge_some(201, usize::MAX);
        assert!(
            t.is_empty(),
            "once every token expired, nobody is remembered"
        );
    }

    #[test]
    fn purging_token_users_is_bounded_per_call_and_memory_comes_back() {
        let mut t = TokenUsers::default();
        for i in 0..100_000u64 {
            t.record(&format!("u{i}"), 1_000 + i % 10);
        }
        let full = t.until.capacity();
        t.purge_some(2_000, 16);
        assert_eq!(
            t.len(),
            100_000 - 16,
            "one call does a bounded share of the work"
        );
        while !t.is_empty() {
            t.purge_some(2_000, 16);
        }
        assert!(
            t.until.capacity() < full / 8 && t.expiries.capacity() < full / 8,
            "the tables must shrink once emptied ({} and {} of {full} slots kept)",
            t.until.capacity(),
            t.expiries.capacity()
        );
    }

    use super::*;
    use hookflash_core::sip::TransportKind;

    fn flow(port: u16, transport: TransportKind) -> Flow {
        Flow {
            transport,
            addr: ([127, 0, 0, 1], port).into(),
        }
    }

    fn contact(s: &str) -> NameAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_contact_and_flow_indexes_agree_with_a_scan_of_every_binding() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut r = Registrar::default();
        let t0 = Instant::now();
        let mut now = t0;
        let scan = |r: &Registrar, uri: &Uri, now: Instant| {
            r.bindings
                .values()
                .flatten()
                .filter(|b| b.expires_at > now && same_contact(&b.contact.uri, uri))
                .map(|b| b.expires_at)
                .max()
        };
        let uri =
            |u: u16, port: u16| -> Uri { format!("sip:u{u}@127.0.0.1:{port}").parse().unwrap() };
        for step in 0..1_500 {
            let (user, port) = (rng.gen_range(0..40u16), rng.gen_range(5000..5012u16));
            let transport = if rng.gen_bool(0.5) {
                TransportKind::Udp
            } else {
                TransportKind::Tcp
            };
            match rng.gen_range(0..100) {
                0..=59 => {
                    let expires = if rng.gen_bool(0.1) {
                        0
                    } else {
                        rng.gen_range(1..60)
                    };
                    let c = NameAddr::new(uri(user % 8, port));
                    r.update(
                        &format!("u{user}"),
                        c,
                        expires,
                        flow(port, transport),
                        "c",
                        now,
                    );
                }
                60..=64 => r.remove_all(&format!("u{user}")),
                65..=69 => {
                    r.remove_flow(flow(port, transport));
                }
                70..=79 => {
                    r.lookup(&format!("u{user}"), now);
                }
                _ => {
                    now += Duration::from_millis(rng.gen_range(0..3000));
                    r.purge(now);
                }
            }
            let total: usize = r.bindings.values().map(Vec::len).sum();
            assert_eq!(
                r.len(),
                total,
                "step {step}: the kept count matches the bindings"
            );
            for u in 0..8 {
                for port in 5000..5012 {
                    let c = uri(u, port);
                    assert_eq!(
                        r.find_contact(&c, now).map(|b| b.expires_at),
                        scan(&r, &c, now),
                        "step {step}: the index finds what a scan of every binding finds"
                    );
                }
            }
            let flows: HashSet<Flow> = r.bindings.values().flatten().map(|b| b.flow).collect();
            assert!(
                r.by_flow.keys().all(|f| flows.contains(f)),
                "step {step}: no flow is indexed that no binding uses (the index must shrink)"
            );
        }
    }

    #[test]
    fn purging_drops_exactly_the_bindings_that_are_due_however_many_there_are() {
        let t0 = Instant::now();
        let mut r = Registrar::default();
        let udp = flow(4000, TransportKind::Udp);
        // 10,000 users for a minute, and every tenth refreshed for an hour.
        for i in 0..10_000u32 {
            let user = format!("u{i}");
            let c = contact(&format!("<sip:{user}@127.0.0.1:{}>", 10_000 + i % 50_000));
            r.update(&user, c.clone(), 60, udp, "c", t0);
            if i % 10 == 0 {
                r.update(&user, c, 3600, udp, "c", t0 + Duration::from_secs(30));
            }
        }
        assert_eq!(
            r.len(),
            10_000,
            "one binding each (a refresh replaces, not adds)"
        );
        r.purge(t0 + Duration::from_secs(59));
        assert_eq!(r.len(), 10_000, "nothing is due before its time");
        r.purge_some(t0 + Duration::from_secs(61), 100);
        assert!(
            (9_900..10_000).contains(&r.len()),
            "a budgeted purge looks at its 100 due entries only (some of them outlived by a \
             refresh), however many lapsed together: {} left",
            r.len()
        );
        assert!(
            r.lookup("u1", t0 + Duration::from_secs(61)).is_empty(),
            "a lapsed binding not purged yet is never used"
        );
        r.purge(t0 + Duration::from_secs(61));
        assert_eq!(
            r.len(),
            1_000,
            "the minute-long bindings went; the refreshed ones stay, though their first \
             expiry came up in the heap"
        );
        assert_eq!(r.lookup("u10", t0 + Duration::from_secs(61)).len(), 1);
        assert!(r.lookup("u11", t0 + Duration::from_secs(61)).is_empty());
        r.purge(t0 + Duration::from_secs(3631));
        assert!(r.is_empty(), "and the hour-long ones go after their hour");
        assert!(
            r.expiries.len() <= 1024,
            "the heap does not keep what has come due: {}",
            r.expiries.len()
        );
    }

    #[test]
    fn bindings_refresh_expire_and_remove() {
        let t0 = Instant::now();
        let mut r = Registrar::default();
        let udp = flow(4000, TransportKind::Udp);
        r.update(
            "bob",
            contact("<sip:bob@127.0.0.1:4000>;expires=60"),
            60,
            udp,
            "c1",
            t0,
        );
        r.update(
            "bob",
            contact("<sip:bob@127.0.0.1:4002>"),
            120,
            udp,
            "c2",
            t0,
        );
        assert_eq!(r.lookup("bob", t0).len(), 2, "two contacts registered");
        assert!(
            r.lookup("bob", t0)[0].contact.param("expires").is_none(),
            "the expires param is not part of the stored contact"
        );
        r.update(
            "bob",
            contact("<sip:bob@127.0.0.1:4000;ob>"),
            300,
            udp,
            "c1",
            t0,
        );
        assert_eq!(
            r.lookup("bob", t0).len(),
            2,
            "same contact refreshed, not duplicated"
        );
        let later = t0 + Duration::from_secs(121);
        assert_eq!(r.lookup("bob", later).len(), 1, "the 120 s binding lapsed");
        r.update(
            "bob",
            contact("<sip:bob@127.0.0.1:4000>"),
            0,
            udp,
            "c1",
            later,
        );
        assert!(
            r.lookup("bob", later).is_empty(),
            "expires=0 removed the last one"
        );
    }

    #[test]
    fn closed_tcp_flow_drops_its_bindings() {
        let t0 = Instant::now();
        let mut r = Registrar::default();
        let tcp = flow(40000, TransportKind::Tcp);
        r.update(
            "bob",
            contact("<sip:bob@127.0.0.1:4000;transport=tcp>"),
            60,
            tcp,
            "c",
            t0,
        );
        r.update(
            "amy",
            contact("<sip:amy@127.0.0.1:4100>"),
            60,
            flow(4100, TransportKind::Udp),
            "d",
            t0,
        );
        let found = r.find_contact(&"sip:bob@127.0.0.1:4000;transport=tcp".parse().unwrap(), t0);
        assert_eq!(
            found.map(|b| b.flow),
            Some(tcp),
            "a contact URI finds its flow"
        );
        assert_eq!(r.remove_flow(tcp), 1, "only the TCP binding went");
        assert!(r.lookup("bob", t0).is_empty(), "bob is unreachable now");
        assert_eq!(r.lookup("amy", t0).len(), 1, "amy is untouched");
    }

    #[test]
    fn too_many_bindings_evict_the_oldest() {
        let t0 = Instant::now();
        let mut r = Registrar::default();
        let udp = flow(4000, TransportKind::Udp);
        for i in 0..=MAX_BINDINGS_PER_USER as u16 {
            let c = contact(&format!("<sip:bob@127.0.0.1:{}>", 5000 + i));
            r.update("bob", c, 60 + u32::from(i), udp, "c", t0);
        }
        let live = r.lookup("bob", t0);
        assert_eq!(live.len(), MAX_BINDINGS_PER_USER, "bounded per user");
        assert!(
            live.iter().all(|b| b.contact.uri.port != Some(5000)),
            "the one expiring first was evicted"
        );
    }
}
