//! The registrar and stateful proxy as a state machine without I/O.
//!
//! Inputs: [`Engine::handle_message`], [`Engine::handle_malformed`], [`Engine::handle_closed`],
//! [`Engine::handle_send_error`] and [`Engine::handle_timeout`], each with the current time.
//! Outputs: [`Engine::poll_transmit`] (messages to send on a flow) and
//! [`Engine::poll_timeout`] (when to call `handle_timeout` next). The async driver in
//! `server.rs` moves bytes and sleeps; everything else happens here, and tests drive it on
//! virtual time.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hookflash_core::auth::{
    ephemeral_password, fold_user, scope_key, Challenge, DigestResponse, Scope,
};
use hookflash_core::privacy::redact;
use hookflash_core::sip::{
    escape_uri_header, new_tag, Message, Method, NameAddr, Request, Response, TransportKind, Uri,
    Via, BRANCH_COOKIE,
};
use tracing::{debug, info, warn};

use crate::mailbox::MailboxCounts;
use crate::mwi;
use crate::nonce::{NonceCheck, NonceKey};
use crate::registrar::{Binding, FastMap, Registrar, TokenUsers};
use crate::routing::{
    best_response, branch_prefix, clamp_expires, classify, is_device_host, loop_hash,
    number_candidates, resolve, trunk_at, trunk_for, trunk_named, trunk_with_flow, via_destination,
    Destination, DialogLegs, DialogMarks, Flow, Local, Trunk, DEFAULT_EXPIRES, SIP_PORT,
};
use crate::rules::{ForwardTarget, Rules};
use crate::users::{UserStore, VOICEMAIL_USER};

/// RFC 3261 T1: the round-trip estimate that paces UDP retransmissions.
const T1: Duration = Duration::from_millis(500);
/// RFC 3261 T2: the longest retransmission interval for non-INVITE requests and responses.
const T2: Duration = Duration::from_secs(4);
/// 64·T1: how long a transaction waits for an answer (Timers B and F), and how long an
/// INVITE answered with a failure waits for its ACK (Timer H).
const TX_LINGER: Duration = Duration::from_secs(32);
/// How long a finished UDP transaction stays to absorb retransmissions, counted from the last
/// copy it absorbed (Timers I, J, K, D, L and M). RFC 3261 keeps some of them for 64·T1 = 32 s
/// to cover a client's whole Timer F; but a peer only retransmits after our answer was lost,
/// and its next copy comes at most T2 (4 s) after the previous one (§17.1.2.2, §17.2.1), so a
/// window of T4 = 5 s that every absorbed copy renews catches every retransmission, as
/// Kamailio's 5 s wait timer does. At thousands of transactions a second this is the
/// difference between seconds and half a minute of finished transactions held in memory.
/// Over TCP nothing is retransmitted, so nothing lingers (RFC 3261 sets these timers to 0).
const ABSORB: Duration = Duration::from_secs(5);
/// After a CANCEL, how long to wait for the branches' 487 before answering 487 ourselves.
const CANCEL_GRACE: Duration = Duration::from_secs(4);
/// How often an unanswered CANCEL is sent again over UDP.
const CANCEL_RETRIES: u32 = 6;
/// How many times one call may be forwarded by users' rules (A→B→C→...); a rule that would
/// go further, or back to a user already in the chain, is ignored.
pub const MAX_FORWARD_HOPS: usize = 5;
/// The header that makes an INVITE ring only its target (DESIGN §2).
pub const DISABLE_FORWARDING_HEADER: &str = "X-Disable-Forwarding";
/// At most this many message-summary subscriptions per mailbox; a new one evicts the oldest.
const MAX_SUBSCRIPTIONS_PER_USER: usize = 16;
/// At most this many message-summary subscriptions in all.
const MAX_SUBSCRIPTIONS: usize = 10_000;

const SERVER: &str = concat!("hookflash-switchboard/", env!("CARGO_PKG_VERSION"));
const ALLOW: &str =
    "INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, SUBSCRIBE, NOTIFY, REFER, MESSAGE, INFO, UPDATE, PRACK";

/// How many lapsed bindings each REGISTER purges (its share): enough to keep up with any
/// rate of expiry at a tenth of the REGISTER rate, never a stall when a crowd lapses at once.
const PURGE_PER_REGISTER: usize = 16;

/// The timer heap is never compacted below this size (compaction would cost more than it
/// saves).
const MIN_TIMER_COMPACTION: usize = 4096;

/// How long a finished transaction on `flow` lingers after the last copy it absorbed.
fn absorb_window(flow: Flow) -> Duration {
    if flow.transport == TransportKind::Udp {
        ABSORB
    } else {
        Duration::ZERO
    }
}

/// A message for the driver to send.
#[derive(Debug)]
pub struct Transmit {
    /// Where to.
    pub flow: Flow,
    /// What.
    pub message: Message,
    /// The client transaction to fail if the send fails (forwarded requests only).
    pub branch: Option<String>,
}

/// A live binding as the handle reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindingInfo {
    /// The registered contact URI.
    pub contact: String,
    /// The flow requests for this contact take: transport...
    pub transport: TransportKind,
    /// ...and peer address (the REGISTER's source).
    pub source: std::net::SocketAddr,
    /// Time left.
    pub expires_in: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct ServerKey {
    id: String,
    invite: bool,
}

/// The server transaction key of a request (ACK and CANCEL map to their INVITE's).
fn server_key(req: &Request, via: &Via, invite: bool) -> ServerKey {
    let sent_by = format!(
        "{}:{}",
        via.host.to_ascii_lowercase(),
        via.port.unwrap_or(SIP_PORT)
    );
    let mut id = match via.branch() {
        Some(b) if b.starts_with(BRANCH_COOKIE) => format!("{b}|{sent_by}"),
        _ => {
            // RFC 2543 peers: no magic cookie, so key on the dialog and sequence instead.
            let tag = req.from().ok().and_then(|f| f.tag().map(str::to_owned));
            let seq = req.cseq().map(|c| c.seq).unwrap_or(0);
            format!(
                "2543|{}|{seq}|{}|{sent_by}",
                req.call_id().unwrap_or_default(),
                tag.unwrap_or_default()
            )
        }
    };
    if !invite {
        id.push('|');
        id.push_str(req.method.as_str());
    }
    ServerKey { id, invite }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ServerState {
    /// No final response yet.
    Proceeding,
    /// Final non-2xx sent (INVITE: waiting for the ACK), or any final for non-INVITE.
    Completed,
    /// The ACK came.
    Confirmed,
    /// A 2xx to an INVITE went upstream.
    Accepted,
}

struct ServerTx {
    request: Request,
    flow: Flow,
    to_tag: String,
    last: Option<Response>,
    state: ServerState,
    retransmit: Duration,
    linger_until: Option<Instant>,
    branches: Vec<String>,
    /// Until when a transaction without a final response is kept (extended on each forward).
    expire_at: Instant,
    /// The forwarding context of an INVITE to one of our users.
    fwd: Option<Box<Forwarding>>,
    /// Bumped at every retarget: timers of an earlier step are then ignored.
    generation: u32,
    /// How long the current step may ring before the no-answer timeout (Timer C).
    no_answer_after: Duration,
    /// What the no-answer timeout answers: 408, or 480 when forwarding is disabled.
    no_answer_status: u16,
    /// Cancelled by the caller or timed out: no more retargeting.
    stopped: bool,
}

/// Why a call is forwarded: the RFC 4458 `cause` and the RFC 5806 Diversion reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cause {
    Always,
    Busy,
    NoAnswer,
    Unregistered,
}

impl Cause {
    fn code(self) -> u16 {
        match self {
            Cause::Always => 302,
            Cause::Busy => 486,
            Cause::NoAnswer => 408,
            Cause::Unregistered => 404,
        }
    }

    fn diversion_reason(self) -> &'static str {
        match self {
            Cause::Always => "unconditional",
            Cause::Busy => "user-busy",
            Cause::NoAnswer => "no-answer",
            Cause::Unregistered => "unavailable",
        }
    }
}

/// How an INVITE to one of our users is being routed through forwarding rules.
struct Forwarding {
    /// The request to fork again on a retarget (Max-Forwards already decremented).
    request: Request,
    max_forwards: u32,
    prefix: String,
    /// Whose contacts ring now (and whose rules apply).
    user: String,
    rules: Rules,
    /// The users this call has rung so far, in order.
    visited: Vec<String>,
    /// `X-Disable-Forwarding: true`: ring the target only.
    disabled: bool,
}

/// A message-summary subscription to one of our mailboxes (we are the notifier).
struct Subscription {
    owner: String,
    call_id: String,
    remote_tag: String,
    /// The From of our NOTIFYs: the SUBSCRIBE's To with our tag.
    from: String,
    /// The To of our NOTIFYs: the SUBSCRIBE's From.
    to: String,
    /// The subscriber's Contact.
    target: Uri,
    route_set: Vec<String>,
    flow: Flow,
    cseq: u32,
    expires_at: Instant,
    generation: u32,
}

/// A NOTIFY we sent, until answered.
struct NotifyTx {
    sub: String,
    request: Request,
    flow: Flow,
    retransmit: Duration,
    answered: bool,
}

impl ServerTx {
    fn is_final(&self) -> bool {
        self.state != ServerState::Proceeding
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClientState {
    /// Sent, nothing back yet.
    Calling,
    /// A provisional came.
    Proceeding,
    /// A final non-2xx came (or we gave up on the branch).
    Completed,
    /// A 2xx came.
    Accepted,
}

impl ClientState {
    fn is_final(self) -> bool {
        matches!(self, ClientState::Completed | ClientState::Accepted)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CancelState {
    None,
    /// Wanted, but no provisional yet (RFC 3261 §9.1: wait for one).
    Pending,
    /// Sent; retransmissions so far.
    Sent {
        answered: bool,
        tries: u32,
    },
}

struct ClientTx {
    server: ServerKey,
    request: Request,
    flow: Flow,
    invite: bool,
    state: ClientState,
    final_response: Option<Response>,
    retransmit: Duration,
    linger_until: Option<Instant>,
    cancel: CancelState,
    /// A final response really came from downstream (not one we made up).
    answered: bool,
    /// Left behind by a retarget: cancelled, and its answers no longer count (but a 2xx
    /// still goes upstream).
    abandoned: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    ServerRetransmit(ServerKey),
    ServerExpire(ServerKey),
    ClientRetransmit(String),
    ClientTimeout(String),
    ClientExpire(String),
    CancelRetransmit(String),
    NoAnswer(ServerKey, u32),
    ForwardNoAnswer(ServerKey, u32),
    CancelGrace(ServerKey),
    NotifyRetransmit(String),
    NotifyTimeout(String),
    SubscriptionExpire(String, u32),
}

enum AuthOutcome {
    Ok(String),
    Challenge { stale: bool },
    Forbidden(&'static str),
}

/// Who a dialog runs between, as its mark says, and whether the request at hand comes from
/// a trunk.
#[derive(Debug)]
struct Legs {
    /// What the mark vouches for.
    marked: DialogLegs,
    /// Whether the request at hand comes from a trunk.
    from_trunk: bool,
}

enum Hops {
    /// Addressed to the switchboard itself.
    Local,
    /// Forward: new Request-URI and flow per branch.
    Targets(Vec<(Uri, Flow)>),
    /// Answer with this status and reason.
    Reject(u16, &'static str),
}

/// The registrar and proxy state machine.
pub struct Engine {
    local: Local,
    secret: String,
    /// The key of the SIP scope: what a token's `sip` grant is signed with.
    sip_key: String,
    nonces: NonceKey,
    /// Marks our Record-Routes, so that only routes we made are followed.
    marks: DialogMarks,
    users: Arc<UserStore>,
    registrar: Registrar,
    token_users: TokenUsers,
    /// The only way to other domains, and the only strangers taken without credentials.
    trunks: Vec<Trunk>,
    servers: FastMap<ServerKey, ServerTx>,
    clients: FastMap<String, ClientTx>,
    timers: BinaryHeap<Reverse<(Instant, u64, Timer)>>,
    timer_seq: u64,
    /// When the timer heap grows past this, timers of finished transactions are dropped.
    compact_timers_at: usize,
    out: VecDeque<Transmit>,
    no_answer_timeout: Duration,
    epoch: (Instant, u64),
    /// Message-summary subscriptions by our tag.
    subscriptions: FastMap<String, Subscription>,
    /// Our NOTIFY client transactions by branch.
    notifies: FastMap<String, NotifyTx>,
}

/// The address-of-record of a header, redacted for logs.
fn redacted_aor(value: Option<&str>) -> String {
    value
        .and_then(|v| v.parse::<NameAddr>().ok())
        .map(|a| redact(&a.uri.aor()))
        .unwrap_or_else(|| "-".into())
}

/// The part of a parse error that names the fault, without the wire data it quotes.
fn error_class(error: &str) -> &str {
    error.split(['"', ':']).next().unwrap_or_default().trim()
}

/// The `Unsupported` header of a 420 when `req` requires (in `header`: `Require` or
/// `Proxy-Require`) option tags; we support none there.
fn unsupported(req: &Request, header: &str) -> Option<Vec<(&'static str, String)>> {
    let tags: Vec<String> = req
        .headers
        .get_all(header)
        .into_iter()
        .filter(|t| !t.is_empty())
        .collect();
    (!tags.is_empty()).then(|| vec![("Unsupported", tags.join(", "))])
}

fn user_of(value: Option<&str>) -> Option<String> {
    value
        .and_then(|v| v.parse::<NameAddr>().ok())
        .and_then(|a| a.uri.user)
        .map(|u| fold_user(&u))
}

impl Engine {
    /// A fresh engine. `now`/`now_unix` anchor the clock used for nonces and token expiry.
    pub fn new(
        local: Local,
        secret: &str,
        users: Arc<UserStore>,
        no_answer_timeout: Duration,
        now: Instant,
        now_unix: u64,
    ) -> Engine {
        Engine {
            local,
            secret: secret.to_owned(),
            sip_key: scope_key(secret, Scope::Sip),
            nonces: NonceKey::new(secret),
            marks: DialogMarks::new(secret),
            users,
            registrar: Registrar::default(),
            token_users: TokenUsers::default(),
            trunks: Vec::new(),
            servers: FastMap::default(),
            clients: FastMap::default(),
            timers: BinaryHeap::new(),
            timer_seq: 0,
            compact_timers_at: MIN_TIMER_COMPACTION,
            out: VecDeque::new(),
            no_answer_timeout,
            epoch: (now, now_unix),
            subscriptions: FastMap::default(),
            notifies: FastMap::default(),
        }
    }

    /// This engine with `trunks` to other domains (see [`Trunk`]).
    pub fn with_trunks(mut self, trunks: Vec<Trunk>) -> Engine {
        self.trunks = trunks;
        self
    }

    /// The trunk a request arriving on `src` comes from, if any.
    fn trunk_sending(&self, src: Option<Flow>) -> Option<&Trunk> {
        let src = src?;
        self.trunks.iter().find(|t| t.sent(src))
    }

    /// The trunk the top Route of `req` names, if it names one (by address: the Route may
    /// not say the trunk's transport).
    fn top_route_trunk(&self, req: &Request) -> Option<&Trunk> {
        req.headers
            .get_all("Route")
            .first()
            .and_then(|top| top.parse::<NameAddr>().ok())
            .and_then(|a| resolve(&a.uri, TransportKind::Udp))
            .and_then(|flow| trunk_at(&self.trunks, flow.addr))
    }

    /// Whether an INVITE follows a transfer by someone outside our domain (its Referred-By
    /// names another domain).
    fn referred_from_elsewhere(&self, req: &Request) -> bool {
        req.headers
            .get("Referred-By")
            .and_then(|v| v.parse::<NameAddr>().ok())
            .is_some_and(|by| classify(&by.uri, &self.local) == Destination::Remote)
    }

    /// How long a transaction without a final response is kept, ringing for `ring`.
    fn transaction_cap(&self, invite: bool, ring: Duration) -> Duration {
        if invite {
            ring + CANCEL_GRACE + TX_LINGER * 2
        } else {
            TX_LINGER * 2
        }
    }

    fn unix(&self, now: Instant) -> u64 {
        self.epoch.1 + now.saturating_duration_since(self.epoch.0).as_secs()
    }

    fn schedule(&mut self, at: Instant, timer: Timer) {
        self.timer_seq += 1;
        self.timers.push(Reverse((at, self.timer_seq, timer)));
        if self.timers.len() > self.compact_timers_at {
            self.compact_timers();
        }
    }

    /// Drops the timers whose transaction, NOTIFY or subscription is gone. A heap cannot
    /// cancel, so a timer stays until it fires even when what it was for finished long
    /// before (a no-answer timer of a call answered at once, a transaction timeout of one
    /// answered in a millisecond): under load that is most of the heap. Compacting whenever
    /// the heap doubles keeps it within twice the live timers, at amortised constant cost.
    fn compact_timers(&mut self) {
        let (servers, clients) = (&self.servers, &self.clients);
        let (notifies, subscriptions) = (&self.notifies, &self.subscriptions);
        self.timers.retain(|Reverse((_, _, timer))| match timer {
            Timer::ServerRetransmit(k)
            | Timer::ServerExpire(k)
            | Timer::NoAnswer(k, _)
            | Timer::ForwardNoAnswer(k, _)
            | Timer::CancelGrace(k) => servers.contains_key(k),
            Timer::ClientRetransmit(b)
            | Timer::ClientTimeout(b)
            | Timer::ClientExpire(b)
            | Timer::CancelRetransmit(b) => clients.contains_key(b),
            Timer::NotifyRetransmit(b) | Timer::NotifyTimeout(b) => notifies.contains_key(b),
            Timer::SubscriptionExpire(id, _) => subscriptions.contains_key(id),
        });
        self.compact_timers_at = (self.timers.len() * 2).max(MIN_TIMER_COMPACTION);
    }

    /// The next message to send, if any.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.pop_front()
    }

    /// When [`Engine::handle_timeout`] wants to run next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.peek().map(|Reverse((at, _, _))| *at)
    }

    /// The live bindings of a user.
    pub fn bindings(&mut self, user: &str, now: Instant) -> Vec<BindingInfo> {
        self.registrar
            .lookup(user, now)
            .into_iter()
            .map(|b| BindingInfo {
                contact: b.contact.uri.to_string(),
                transport: b.flow.transport,
                source: b.flow.addr,
                expires_in: b.expires_at.saturating_duration_since(now),
            })
            .collect()
    }

    fn send(&mut self, flow: Flow, message: impl Into<Message>, branch: Option<String>) {
        let message = message.into();
        match &message {
            Message::Request(r) => debug!(
                dir = "out", %flow, method = %r.method, ruri = %redact(&r.uri.to_string()),
                call = %redact(r.headers.get("Call-ID").unwrap_or_default()),
                "request"
            ),
            Message::Response(r) => debug!(
                dir = "out", %flow, status = r.status,
                cseq = r.headers.get("CSeq").unwrap_or_default(),
                call = %redact(r.headers.get("Call-ID").unwrap_or_default()),
                "response"
            ),
        }
        self.out.push_back(Transmit {
            flow,
            message,
            branch,
        });
    }

    // ---------------------------------------------------------------- inputs

    /// A message arrived on `flow`.
    pub fn handle_message(&mut self, message: Message, flow: Flow, now: Instant) {
        match message {
            Message::Request(r) => self.on_request(r, flow, now),
            Message::Response(r) => self.on_response(r, flow, now),
        }
    }

    /// Bytes that did not parse as SIP arrived on `flow`: answered when they were a request
    /// that can be (`reply`: 505, 416 or 400, see `Message::reply_to_unparsable`), else
    /// logged and dropped.
    pub fn handle_malformed(&mut self, flow: Flow, error: &str, reply: Option<Response>) {
        match reply {
            Some(mut resp) => {
                warn!(%flow, error = error_class(error), status = resp.status, "answering an unparseable request");
                resp.headers.push("Server", SERVER);
                self.send(flow, resp, None);
            }
            None => warn!(%flow, error = error_class(error), "dropping unparseable message"),
        }
    }

    /// The TCP connection to `peer` closed: its bindings go, and branches sent on it fail.
    pub fn handle_closed(&mut self, flow: Flow, now: Instant) {
        let n = self.registrar.remove_flow(flow);
        if n > 0 {
            info!(%flow, bindings = n, "connection closed: bindings dropped");
        }
        self.subscriptions.retain(|_, s| s.flow != flow);
        let pending: Vec<String> = self
            .clients
            .iter()
            .filter(|(_, c)| c.flow == flow && !c.state.is_final())
            .map(|(b, _)| b.clone())
            .collect();
        for b in pending {
            self.branch_gave_up(&b, 480, now);
        }
    }

    /// Sending the request of client transaction `branch` failed.
    pub fn handle_send_error(&mut self, branch: &str, now: Instant) {
        if self
            .clients
            .get(branch)
            .is_some_and(|c| !c.state.is_final())
        {
            self.branch_gave_up(branch, 480, now);
        }
    }

    /// Run the timers due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(Reverse((at, _, _))) = self.timers.peek() {
            if *at > now {
                break;
            }
            let Some(Reverse((_, _, timer))) = self.timers.pop() else {
                break;
            };
            self.on_timer(timer, now);
        }
    }

    // ---------------------------------------------------------------- requests

    fn on_request(&mut self, mut req: Request, src: Flow, now: Instant) {
        if let Err(e) = req.validate() {
            self.reject_malformed(req, src, &e.0);
            return;
        }
        let Ok(mut via) = req.top_via() else {
            return;
        };
        via.set_param("received", Some(&src.addr.ip().to_string()));
        via.set_param("rport", Some(&src.addr.port().to_string()));
        req.headers.pop_first("Via");
        req.headers.push_front("Via", via.to_string());
        debug!(
            dir = "in", flow = %src, method = %req.method, ruri = %redact(&req.uri.to_string()),
            from = %redacted_aor(req.headers.get("From")),
            to = %redacted_aor(req.headers.get("To")),
            call = %redact(req.headers.get("Call-ID").unwrap_or_default()),
            "request"
        );
        match req.method {
            Method::Ack => self.on_ack(req, &via, src, now),
            Method::Cancel => self.on_cancel(req, &via, src, now),
            _ => self.on_new_request(req, &via, src, now),
        }
    }

    fn reject_malformed(&mut self, mut req: Request, src: Flow, why: &str) {
        // Via and CSeq are enough to address an answer (it copies whatever else is there);
        // the answer goes back where the request came from, so even a malformed Via (RFC 4475
        // §3.1.2.1) can be answered, copied as it came.
        let answerable = req.method != Method::Ack
            && req.headers.get("CSeq").is_some()
            && req.headers.get("Via").is_some();
        if !answerable {
            warn!(flow = %src, error = error_class(why), "dropping request that cannot be answered");
            return;
        }
        warn!(flow = %src, error = error_class(why), "answering 400 to a malformed request");
        if let Ok(mut via) = req.top_via() {
            via.set_param("received", Some(&src.addr.ip().to_string()));
            via.set_param("rport", Some(&src.addr.port().to_string()));
            req.headers.pop_first("Via");
            req.headers.push_front("Via", via.to_string());
        }
        // The reason names what is wrong (RFC 3261 §21.4.1: "the reason phrase SHOULD
        // identify the syntax problem in more detail"), without echoing the request's bytes.
        let missing: Vec<&str> = ["From", "To", "Call-ID", "CSeq"]
            .into_iter()
            .filter(|h| req.headers.get(h).is_none())
            .collect();
        let reason = if missing.is_empty() {
            let what: String = error_class(why)
                .chars()
                .filter(|c| !c.is_control())
                .take(60)
                .collect();
            format!("Bad Request ({what})")
        } else {
            format!("Missing {}", missing.join(", "))
        };
        let mut resp = req.response(400, Some(&reason), Some(&new_tag()));
        resp.headers.push("Server", SERVER);
        self.send(src, resp, None);
    }

    fn on_new_request(&mut self, req: Request, via: &Via, src: Flow, now: Instant) {
        let invite = req.method == Method::Invite;
        let key = server_key(&req, via, invite);
        if let Some(tx) = self.servers.get_mut(&key) {
            debug!(flow = %src, "retransmission absorbed");
            // Finished, and not an INVITE failure waiting for its ACK (Timer H runs there).
            let renew =
                tx.linger_until.is_some() && !(key.invite && tx.state == ServerState::Completed);
            if renew {
                let at = now + absorb_window(tx.flow);
                tx.linger_until = tx.linger_until.max(Some(at));
            }
            if let Some(last) = tx.last.clone() {
                let flow = tx.flow;
                self.send(flow, last, None);
            }
            if renew {
                let at = now + absorb_window(src);
                self.schedule(at, Timer::ServerExpire(key));
            }
            return;
        }
        self.servers.insert(
            key.clone(),
            ServerTx {
                request: req.clone(),
                flow: src,
                to_tag: new_tag(),
                last: None,
                state: ServerState::Proceeding,
                retransmit: T1,
                linger_until: None,
                branches: Vec::new(),
                expire_at: now + self.transaction_cap(invite, self.no_answer_timeout),
                fwd: None,
                generation: 0,
                no_answer_after: self.no_answer_timeout,
                no_answer_status: 408,
                stopped: false,
            },
        );
        if invite {
            let trying = req.response(100, None, None);
            self.respond(&key, trying, now);
        }
        let max_forwards = match req.headers.get("Max-Forwards") {
            None => 70,
            Some(v) => match v.trim().parse::<u32>() {
                Ok(n) => n,
                Err(_) => return self.reply(&key, 400, Some("Bad Max-Forwards"), vec![], now),
            },
        };
        if req.method == Method::Register {
            self.on_register(&key, req, now);
        } else {
            self.on_proxy_request(&key, req, max_forwards, now);
        }
        // A leak guard: a transaction that somehow never completes is dropped eventually.
        // Most are answered by now (REGISTER, challenges, local answers) and need none: at
        // thousands of requests a second, a guard each would fill the timer heap for a minute.
        if self.servers.get(&key).is_some_and(|tx| !tx.is_final()) {
            let cap = self.transaction_cap(invite, self.no_answer_timeout);
            self.schedule(now + cap, Timer::ServerExpire(key));
        }
    }

    /// Answer server transaction `key` with a response of our own.
    fn reply(
        &mut self,
        key: &ServerKey,
        status: u16,
        reason: Option<&str>,
        headers: Vec<(&str, String)>,
        now: Instant,
    ) {
        let Some(tx) = self.servers.get(key) else {
            return;
        };
        let mut resp = tx.request.response(status, reason, Some(&tx.to_tag));
        for (n, v) in headers {
            resp.headers.push(n, v);
        }
        resp.headers.push("Server", SERVER);
        self.respond(key, resp, now);
    }

    /// Send a response upstream on server transaction `key`, advancing its state.
    fn respond(&mut self, key: &ServerKey, resp: Response, now: Instant) {
        let Some(tx) = self.servers.get_mut(key) else {
            if key.invite && resp.class() == 2 {
                self.forward_response_statelessly(resp);
            }
            return;
        };
        if tx.is_final() && !(key.invite && resp.class() == 2) {
            return; // only further 2xx to an INVITE pass once a final went up
        }
        let flow = tx.flow;
        let mut linger = None;
        let mut retransmit = false;
        if resp.status >= 200 && tx.state == ServerState::Proceeding {
            tx.state = if key.invite && resp.class() == 2 {
                ServerState::Accepted
            } else {
                ServerState::Completed
            };
            // An INVITE's failure waits for the ACK (Timer H); everything else only absorbs.
            linger = Some(if key.invite && resp.class() != 2 {
                now + TX_LINGER
            } else {
                now + absorb_window(flow)
            });
            tx.linger_until = linger;
            retransmit = key.invite && resp.class() != 2 && flow.transport == TransportKind::Udp;
            tx.retransmit = T1;
        }
        tx.last = Some(resp.clone());
        self.send(flow, resp, None);
        if let Some(at) = linger {
            self.schedule(at, Timer::ServerExpire(key.clone()));
        }
        if retransmit {
            self.schedule(now + T1, Timer::ServerRetransmit(key.clone()));
        }
    }

    fn forward_response_statelessly(&mut self, resp: Response) {
        match resp.top_via().ok().as_ref().and_then(via_destination) {
            Some(flow) => self.send(flow, resp, None),
            None => debug!("stray response without a usable Via dropped"),
        }
    }

    fn on_ack(&mut self, req: Request, via: &Via, src: Flow, now: Instant) {
        let key = server_key(&req, via, true);
        if let Some(tx) = self.servers.get_mut(&key) {
            match tx.state {
                ServerState::Completed => {
                    tx.state = ServerState::Confirmed;
                    // Timer I: absorb ACK retransmissions for a while, then go.
                    let at = now + absorb_window(tx.flow);
                    tx.linger_until = Some(at);
                    debug!(flow = %src, "ACK for a non-2xx absorbed");
                    self.schedule(at, Timer::ServerExpire(key));
                    return;
                }
                ServerState::Confirmed => return,
                _ => {}
            }
        }
        // An ACK for a 2xx: a request of its own in the dialog, routed end to end,
        // statelessly, along our marked route only (like any in-dialog request).
        let mut req = req;
        if req.to().ok().is_none_or(|t| t.tag().is_none()) {
            debug!(flow = %src, "ACK outside a dialog and any transaction dropped");
            return;
        }
        let popped = self.pop_our_routes(&mut req);
        let Some(legs) = self.our_route(&req, popped.as_ref(), Some(src)) else {
            debug!(flow = %src, "ACK without our route dropped");
            return;
        };
        let max_forwards = req
            .headers
            .get("Max-Forwards")
            .and_then(|v| v.trim().parse::<u32>().ok())
            .unwrap_or(70);
        if max_forwards == 0 {
            return;
        }
        match self.choose_hops(&req, Some(&legs), now) {
            Hops::Targets(targets) => {
                let Some((uri, flow)) = targets.into_iter().next() else {
                    return;
                };
                let incoming = via.branch().unwrap_or_default();
                let branch = format!(
                    "{BRANCH_COOKIE}-hfack{}",
                    &hex::encode(hookflash_core::auth::hmac_sha1(
                        self.secret.as_bytes(),
                        incoming.as_bytes()
                    ))[..16]
                );
                req.uri = uri;
                req.headers
                    .set("Max-Forwards", (max_forwards - 1).to_string());
                req.headers
                    .push_front("Via", self.local.via(flow.transport, &branch));
                self.send(flow, req, None);
            }
            _ => debug!(flow = %src, "ACK with nowhere to go dropped"),
        }
    }

    fn on_cancel(&mut self, req: Request, via: &Via, src: Flow, now: Instant) {
        let key = server_key(&req, via, true);
        let matched = self
            .servers
            .get(&key)
            .filter(|tx| tx.flow.addr.ip() == src.addr.ip())
            .map(|tx| (tx.to_tag.clone(), tx.is_final(), tx.branches.clone()));
        let Some((to_tag, is_final, branches)) = matched else {
            let mut resp = req.response(481, None, Some(&new_tag()));
            resp.headers.push("Server", SERVER);
            self.send(src, resp, None);
            return;
        };
        let mut ok = req.response(200, None, Some(&to_tag));
        ok.headers.push("Server", SERVER);
        self.send(src, ok, None);
        if is_final {
            return;
        }
        if let Some(tx) = self.servers.get_mut(&key) {
            tx.stopped = true;
        }
        if branches.is_empty() {
            self.reply(&key, 487, None, vec![], now);
            return;
        }
        for b in &branches {
            self.cancel_branch(b, now);
        }
        self.schedule(now + CANCEL_GRACE, Timer::CancelGrace(key));
    }

    // ---------------------------------------------------------------- authentication

    fn authenticate(&mut self, req: &Request, header: &str, now: Instant) -> AuthOutcome {
        let now_unix = self.unix(now);
        let creds = req
            .headers
            .0
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(header))
            .filter_map(|(_, v)| v.parse::<DigestResponse>().ok())
            .find(|d| d.realm == self.local.domain);
        let Some(d) = creds else {
            return AuthOutcome::Challenge { stale: false };
        };
        match self.nonces.check(&d.nonce, now_unix) {
            NonceCheck::Valid => {}
            NonceCheck::Stale => return AuthOutcome::Challenge { stale: true },
            NonceCheck::Invalid => return AuthOutcome::Challenge { stale: false },
        }
        let method = req.method.as_str();
        let token = d
            .username
            .split_once(':')
            .filter(|(e, _)| !e.is_empty() && e.bytes().all(|b| b.is_ascii_digit()));
        if let Some((expiry, user)) = token {
            // Kamailio auth_ephemeral: the password is derived from the username and the key
            // of the SIP scope, so only a token's `sip` grant signs in here.
            let password = ephemeral_password(&self.sip_key, &d.username);
            if !d.verify(method, &password) {
                warn!(user = %redact(user), "token credentials refused: bad signature");
                return AuthOutcome::Forbidden("Forbidden");
            }
            let expiry = match expiry.parse::<u64>() {
                Ok(e) if e >= now_unix => e,
                _ => {
                    warn!(user = %redact(user), "token credentials refused: expired");
                    return AuthOutcome::Forbidden("Token Expired");
                }
            };
            let user = fold_user(user);
            self.token_users.purge_some(now_unix, PURGE_PER_REGISTER);
            self.token_users.record(&user, expiry);
            return AuthOutcome::Ok(user);
        }
        if d.username == VOICEMAIL_USER {
            // The voicemail account signs in with a token signed by our secret, never with a
            // password from the database.
            warn!("password credentials for the voicemail account refused");
            return AuthOutcome::Forbidden("Forbidden");
        }
        // From memory: nothing on this loop waits for SQLite (see `directory`).
        let record = self.users.directory().user(&d.username).cloned();
        let Some(record) = record else {
            warn!(user = %redact(&d.username), "credentials refused: unknown user");
            return AuthOutcome::Forbidden("Forbidden");
        };
        let ok = record.realm == self.local.domain
            && record
                .ha1
                .as_deref()
                .is_some_and(|h| d.verify_ha1(method, h));
        if !ok {
            warn!(user = %redact(&d.username), "credentials refused: wrong password");
            return AuthOutcome::Forbidden("Forbidden");
        }
        AuthOutcome::Ok(fold_user(&d.username))
    }

    fn challenge(&mut self, key: &ServerKey, proxy: bool, stale: bool, now: Instant) {
        let ch = Challenge {
            realm: self.local.domain.clone(),
            nonce: self.nonces.issue(self.unix(now)),
            opaque: None,
            algorithm: Some("MD5".into()),
            qop: Some("auth".into()),
            stale,
        };
        let (status, header) = if proxy {
            (407, "Proxy-Authenticate")
        } else {
            (401, "WWW-Authenticate")
        };
        self.reply(key, status, None, vec![(header, ch.to_string())], now);
    }

    // ---------------------------------------------------------------- registrar

    fn on_register(&mut self, key: &ServerKey, req: Request, now: Instant) {
        if classify(&req.uri, &self.local) == Destination::Remote {
            return self.reply(key, 403, Some("Domain Not Served"), vec![], now);
        }
        // The registrar supports no extension a REGISTER may require (RFC 3261 §10.3 step 2).
        if let Some(reply) = unsupported(&req, "Require") {
            return self.reply(key, 420, None, reply, now);
        }
        let to = match req.to() {
            Ok(t) => t,
            Err(_) => return self.reply(key, 400, Some("Bad To"), vec![], now),
        };
        let aor_user = match classify(&to.uri, &self.local) {
            Destination::User(u) => u,
            Destination::Local => {
                return self.reply(key, 400, Some("To Without User"), vec![], now)
            }
            Destination::Remote => {
                return self.reply(key, 403, Some("Domain Not Served"), vec![], now)
            }
        };
        let user = match self.authenticate(&req, "Authorization", now) {
            AuthOutcome::Challenge { stale } => return self.challenge(key, false, stale, now),
            AuthOutcome::Forbidden(reason) => {
                return self.reply(key, 403, Some(reason), vec![], now)
            }
            AuthOutcome::Ok(user) => user,
        };
        if user != aor_user {
            warn!(user = %redact(&user), aor = %redact(&aor_user), "REGISTER for someone else refused");
            return self.reply(key, 403, Some("Identity Mismatch"), vec![], now);
        }
        let expires_header = match req.headers.get("Expires") {
            None => None,
            Some(v) => match v.trim().parse::<u64>() {
                Ok(n) => Some(n.min(u64::from(u32::MAX)) as u32),
                Err(_) => return self.reply(key, 400, Some("Bad Expires"), vec![], now),
            },
        };
        let call_id = req.call_id().unwrap_or_default().to_owned();
        let flow = self.servers.get(key).map(|t| t.flow).unwrap_or(Flow {
            transport: TransportKind::Udp,
            addr: ([0, 0, 0, 0], 0).into(),
        });
        let contacts = req.headers.get_all("Contact");
        self.registrar.purge_some(now, PURGE_PER_REGISTER);
        if contacts.iter().any(|c| c.trim() == "*") {
            if contacts.len() != 1 || expires_header != Some(0) {
                return self.reply(key, 400, Some("Bad Wildcard Contact"), vec![], now);
            }
            self.registrar.remove_all(&user);
        } else {
            let mut parsed = Vec::with_capacity(contacts.len());
            for c in &contacts {
                let Ok(addr) = c.parse::<NameAddr>() else {
                    return self.reply(key, 400, Some("Bad Contact"), vec![], now);
                };
                if !matches!(addr.uri.scheme.as_str(), "sip" | "sips") {
                    return self.reply(key, 400, Some("Bad Contact"), vec![], now);
                }
                let expires = match addr.param("expires") {
                    Some(e) => match e.trim().parse::<u64>() {
                        Ok(n) => n.min(u64::from(u32::MAX)) as u32,
                        Err(_) => return self.reply(key, 400, Some("Bad Expires"), vec![], now),
                    },
                    None => expires_header.unwrap_or(DEFAULT_EXPIRES),
                };
                parsed.push((addr, clamp_expires(expires)));
            }
            for (addr, expires) in parsed {
                self.registrar
                    .update(&user, addr, expires, flow, &call_id, now);
            }
        }
        let bindings = self.registrar.lookup(&user, now);
        debug!(user = %redact(&user), %flow, contacts = bindings.len(), "registered");
        let headers = bindings
            .iter()
            .map(|b: &Binding| {
                (
                    "Contact",
                    format!("{};expires={}", b.contact, b.remaining(now)),
                )
            })
            .collect();
        self.reply(key, 200, None, headers, now);
    }

    // ---------------------------------------------------------------- proxy

    /// Pop the Route entries that name us; the last one popped (its transport tells which leg
    /// a double Record-Route faces).
    fn pop_our_routes(&self, req: &mut Request) -> Option<Uri> {
        let mut popped = None;
        while let Some(top) = req.headers.get_all("Route").first().cloned() {
            let Ok(addr) = top.parse::<NameAddr>() else {
                break;
            };
            if addr.uri.user.is_some() || !self.local.is_local_host(&addr.uri.host, addr.uri.port) {
                break;
            }
            req.headers.pop_first("Route");
            popped = Some(addr.uri);
        }
        popped
    }

    /// Whether `popped` (the last Route entry of ours the request carried) is a Record-Route
    /// we made for the request's dialog: the dialog's legs if so (the trunk the mark names,
    /// and whether the request comes from a trunk), `None` if not.
    fn our_route(&self, req: &Request, popped: Option<&Uri>, src: Option<Flow>) -> Option<Legs> {
        let route = popped?;
        let call_id = req.call_id().unwrap_or_default();
        let tag = |h: Result<NameAddr, _>| h.ok().and_then(|a| a.tag().map(str::to_owned));
        let tags: Vec<String> = [tag(req.from()), tag(req.to())]
            .into_iter()
            .flatten()
            .collect();
        let tags: Vec<&str> = tags.iter().map(String::as_str).collect();
        let marked = self.marks.verify(route, call_id, &tags)?;
        Some(Legs {
            marked,
            from_trunk: self.trunk_sending(src).is_some(),
        })
    }

    fn is_known_user(&self, user: &str, now: Instant) -> bool {
        self.token_users.contains(user, self.unix(now))
            || self.users.directory().user(user).is_some()
    }

    /// Where a request goes: out of a dialog (`dialog: None`) to our users, to a device's
    /// registered contact, or to the trunk serving another domain (or named by a Route a
    /// signed-in user preloaded, which the caller checked); in a dialog (along our marked
    /// route) to a registered contact, or to the dialog's own trunk, never back to a trunk
    /// it came from. Nothing else leaves: no open relay.
    fn choose_hops(&mut self, req: &Request, dialog: Option<&Legs>, now: Instant) -> Hops {
        let dialog_trunk = || {
            dialog
                .filter(|d| !d.from_trunk)
                .and_then(|d| d.marked.trunk.as_deref())
                .and_then(|name| trunk_named(&self.trunks, name))
        };
        if req.headers.get("Route").is_some() {
            // Loose routing on to the next hop of a route set: only to a trunk.
            return match (self.top_route_trunk(req), dialog) {
                (Some(t), None) => Hops::Targets(vec![(req.uri.clone(), t.flow)]),
                (Some(t), Some(_)) if dialog_trunk().is_some_and(|d| d.name == t.name) => {
                    Hops::Targets(vec![(req.uri.clone(), t.flow)])
                }
                _ => Hops::Reject(403, "Relaying Denied"),
            };
        }
        match classify(&req.uri, &self.local) {
            Destination::Local => Hops::Local,
            Destination::User(u) => {
                let candidates = number_candidates(&u);
                for c in &candidates {
                    let bindings = self.registrar.lookup(c, now);
                    if !bindings.is_empty() {
                        return Hops::Targets(
                            bindings
                                .into_iter()
                                .map(|b| (b.contact.uri, b.flow))
                                .collect(),
                        );
                    }
                }
                if candidates.iter().any(|c| self.is_known_user(c, now)) {
                    Hops::Reject(480, "Temporarily Unavailable")
                } else {
                    Hops::Reject(404, "Not Found")
                }
            }
            Destination::Remote => {
                let device = is_device_host(&req.uri.host);
                if device || dialog.is_some() {
                    if let Some(b) = self.registrar.find_contact(&req.uri, now) {
                        return Hops::Targets(vec![(req.uri.clone(), b.flow)]);
                    }
                }
                let trunk = match dialog {
                    // The far end of a dialog through a trunk is reached through that trunk,
                    // whatever address its Contact names.
                    Some(_) => dialog_trunk(),
                    // A new request for another domain leaves only through the trunk that
                    // serves it; an unregistered device address, through none.
                    None if device => None,
                    None => trunk_for(&self.trunks, &req.uri.host),
                };
                if let Some(t) = trunk {
                    return Hops::Targets(vec![(req.uri.clone(), t.flow)]);
                }
                // In a dialog, a party that never registered (a client calling out only) is
                // reached at its Contact if that is where one of the dialog's legs is: the
                // mark vouches for the legs, so no other address can be named.
                let leg = dialog.and_then(|d| {
                    let to = resolve(&req.uri, TransportKind::Udp)?;
                    d.marked
                        .flows
                        .iter()
                        .find(|f| f.addr == to.addr && trunk_with_flow(&self.trunks, **f).is_none())
                        .copied()
                });
                match leg {
                    Some(flow) => Hops::Targets(vec![(req.uri.clone(), flow)]),
                    None => Hops::Reject(403, "Relaying Denied"),
                }
            }
        }
    }

    fn on_proxy_request(&mut self, key: &ServerKey, req: Request, max_forwards: u32, now: Instant) {
        let mut req = req;
        let hash = loop_hash(&req);
        let in_dialog = req.to().ok().is_some_and(|t| t.tag().is_some());
        let popped = self.pop_our_routes(&mut req);
        let no_route = req.headers.get("Route").is_none();
        if in_dialog
            && req.method == Method::Subscribe
            && self.on_subscription_refresh(key, &req, now)
        {
            return;
        }
        if !in_dialog && no_route && classify(&req.uri, &self.local) == Destination::Local {
            return self.answer_locally(key, &req, now);
        }
        // No open doors: a request in a dialog is forwarded only along a route we made for
        // that dialog (our Record-Route, marked); a request outside one only to our users, or
        // from our users to a trunk (by the domain it serves, or along a Route naming it).
        // A trunk is trusted by its address, for requests to our users only.
        let src = self.servers.get(key).map(|t| t.flow);
        let legs = if in_dialog {
            let Some(legs) = self.our_route(&req, popped.as_ref(), src) else {
                warn!(method = %req.method, "in-dialog request without our route refused");
                return self.reply(key, 403, Some("Relaying Denied"), vec![], now);
            };
            Some(legs)
        } else {
            None
        };
        let from_trunk = (!in_dialog)
            .then(|| self.trunk_sending(src).map(|t| t.name.clone()))
            .flatten();
        if !in_dialog && !no_route && (from_trunk.is_some() || self.top_route_trunk(&req).is_none())
        {
            warn!(method = %req.method, "request with a preloaded route refused");
            return self.reply(key, 403, Some("Relaying Denied"), vec![], now);
        }
        if let Some(trunk) = &from_trunk {
            if classify(&req.uri, &self.local) == Destination::Remote {
                warn!(trunk = %trunk, method = %req.method, "request from a trunk for another domain refused");
                return self.reply(key, 403, Some("Relaying Denied"), vec![], now);
            }
            // A trunk speaks for other domains only: it cannot pass as one of our users.
            let from = req.from().ok().map(|f| classify(&f.uri, &self.local));
            if from.is_some_and(|d| d != Destination::Remote) {
                warn!(trunk = %trunk, "request from a trunk in the name of our domain refused");
                return self.reply(key, 403, Some("Identity Mismatch"), vec![], now);
            }
        }
        if max_forwards == 0 {
            return self.reply(key, 483, None, vec![], now);
        }
        // We proxy no extension (RFC 3261 §16.3 step 5, RFC 4475 §3.3.5).
        if let Some(reply) = unsupported(&req, "Proxy-Require") {
            return self.reply(key, 420, None, reply, now);
        }
        let prefix = branch_prefix(&hash);
        let looped = req.headers.get_all("Via").iter().any(|v| {
            v.parse::<Via>().is_ok_and(|via| {
                self.local.is_my_via(&via) && via.branch().is_some_and(|b| b.starts_with(&prefix))
            })
        });
        if looped {
            warn!(call = %redact(req.call_id().unwrap_or_default()), "loop detected");
            return self.reply(key, 482, None, vec![], now);
        }
        let mut authenticated = None;
        if !in_dialog && from_trunk.is_none() {
            match self.authenticate(&req, "Proxy-Authorization", now) {
                AuthOutcome::Challenge { stale } => return self.challenge(key, true, stale, now),
                AuthOutcome::Forbidden(reason) => {
                    return self.reply(key, 403, Some(reason), vec![], now)
                }
                AuthOutcome::Ok(user) => {
                    if user_of(req.headers.get("From")).as_deref() != Some(user.as_str()) {
                        warn!(user = %redact(&user), "request with someone else's From refused");
                        return self.reply(key, 403, Some("Identity Mismatch"), vec![], now);
                    }
                    authenticated = Some(user);
                }
            }
        }
        if no_route && (authenticated.is_some() || from_trunk.is_some()) {
            if let Destination::User(target) = classify(&req.uri, &self.local) {
                if req.method == Method::Subscribe
                    && mwi::is_message_summary(req.headers.get("Event"))
                {
                    let Some(user) = authenticated else {
                        return self.reply(key, 403, Some("Not Your Mailbox"), vec![], now);
                    };
                    return self.on_mwi_subscribe(key, &req, &user, &target, now);
                }
                if req.method == Method::Invite {
                    return self.route_invite(key, req, &target, max_forwards - 1, &prefix, now);
                }
            }
        }
        match self.choose_hops(&req, legs.as_ref(), now) {
            Hops::Targets(targets)
                if !in_dialog
                    && req.method == Method::Invite
                    && self.referred_from_elsewhere(&req)
                    && targets
                        .iter()
                        .any(|(_, f)| trunk_with_flow(&self.trunks, *f).is_some()) =>
            {
                // A stranger's REFER must not make our user's phone call out through a
                // trunk on our account (toll fraud); calls to our own users are fine.
                warn!("a call out through a trunk on a stranger's transfer refused");
                self.reply(key, 403, Some("Transfer Out Refused"), vec![], now)
            }
            Hops::Local if in_dialog => self.reply(key, 481, None, vec![], now),
            Hops::Local => self.answer_locally(key, &req, now),
            Hops::Reject(status, reason) => self.reply(key, status, Some(reason), vec![], now),
            Hops::Targets(targets) => {
                let record_route = !in_dialog
                    && matches!(
                        req.method,
                        Method::Invite | Method::Subscribe | Method::Refer
                    );
                self.forward(
                    key,
                    req,
                    targets,
                    max_forwards - 1,
                    record_route,
                    &prefix,
                    now,
                )
            }
        }
    }

    fn answer_locally(&mut self, key: &ServerKey, req: &Request, now: Instant) {
        // As the UAS we support no extension a request may require (RFC 3261 §8.2.2.3).
        if let Some(reply) = unsupported(req, "Require") {
            return self.reply(key, 420, None, reply, now);
        }
        let allow = vec![("Allow", ALLOW.to_owned())];
        if req.method == Method::Options {
            let mut headers = allow;
            headers.push(("Accept", "application/sdp".to_owned()));
            self.reply(key, 200, None, headers, now);
        } else {
            self.reply(key, 405, None, allow, now);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn forward(
        &mut self,
        key: &ServerKey,
        mut req: Request,
        targets: Vec<(Uri, Flow)>,
        max_forwards: u32,
        record_route: bool,
        prefix: &str,
        now: Instant,
    ) {
        let Some(src) = self.servers.get(key).map(|t| t.flow) else {
            return;
        };
        if targets.is_empty() {
            return self.reply(key, 480, None, vec![], now);
        }
        req.headers.set("Max-Forwards", max_forwards.to_string());
        let realm = self.local.domain.clone();
        req.headers.0.retain(|(n, v)| {
            !(n.eq_ignore_ascii_case("Proxy-Authorization")
                && v.parse::<DigestResponse>().is_ok_and(|d| d.realm == realm))
        });
        let invite = req.method == Method::Invite;
        // The trunk that is one of the dialog's legs, if any: where requests in the dialog
        // for the far end will go.
        let trunk = self
            .trunk_sending(Some(src))
            .or_else(|| {
                targets
                    .iter()
                    .find_map(|(_, f)| trunk_with_flow(&self.trunks, *f))
            })
            .map(|t| t.name.clone());
        let tag = req
            .from()
            .ok()
            .and_then(|f| f.tag().map(str::to_owned))
            .unwrap_or_default();
        for (i, (uri, flow)) in targets.into_iter().enumerate() {
            // Each branch's dialog is between the caller's flow and that branch's.
            let legs = DialogLegs {
                trunk: trunk.clone(),
                flows: vec![src, flow],
            };
            let mark = self
                .marks
                .mark(req.call_id().unwrap_or_default(), &tag, &legs);
            let mut r = req.clone();
            r.uri = uri;
            if record_route {
                if src.transport == flow.transport {
                    r.headers.push_front(
                        "Record-Route",
                        self.local.record_route(flow.transport, false, &mark),
                    );
                } else {
                    // RFC 5658 double Record-Route: one entry per leg, the top one faces the
                    // callee, so each side reaches us on its own transport.
                    r.headers.push_front(
                        "Record-Route",
                        self.local.record_route(src.transport, true, &mark),
                    );
                    r.headers.push_front(
                        "Record-Route",
                        self.local.record_route(flow.transport, true, &mark),
                    );
                }
            }
            let branch = format!("{prefix}{}{i}", new_tag());
            r.headers
                .push_front("Via", self.local.via(flow.transport, &branch));
            self.clients.insert(
                branch.clone(),
                ClientTx {
                    server: key.clone(),
                    request: r.clone(),
                    flow,
                    invite,
                    state: ClientState::Calling,
                    final_response: None,
                    retransmit: T1,
                    linger_until: None,
                    cancel: CancelState::None,
                    answered: false,
                    abandoned: false,
                },
            );
            if let Some(tx) = self.servers.get_mut(key) {
                tx.branches.push(branch.clone());
            }
            self.send(flow, r, Some(branch.clone()));
            if flow.transport == TransportKind::Udp {
                self.schedule(now + T1, Timer::ClientRetransmit(branch.clone()));
            }
            self.schedule(now + TX_LINGER, Timer::ClientTimeout(branch));
        }
        if invite {
            let ring = self
                .servers
                .get(key)
                .map(|t| t.no_answer_after)
                .unwrap_or(self.no_answer_timeout);
            let cap = self.transaction_cap(true, ring);
            let generation = match self.servers.get_mut(key) {
                Some(tx) => {
                    tx.expire_at = tx.expire_at.max(now + cap);
                    tx.generation
                }
                None => 0,
            };
            self.schedule(now + cap, Timer::ServerExpire(key.clone()));
            self.schedule(now + ring, Timer::NoAnswer(key.clone(), generation));
        }
    }

    // ---------------------------------------------------------------- forwarding rules

    fn rules_of(&self, user: &str) -> Rules {
        self.users.directory().rules(user)
    }

    /// The user a dialled user part means: the first candidate (see [`number_candidates`])
    /// that is registered, else the first that is known (in the database, signed in with a
    /// token still valid, or with rules stored).
    fn resolve_user(&mut self, dialled: &str, now: Instant) -> Option<String> {
        let candidates = number_candidates(dialled);
        for c in &candidates {
            if !self.registrar.lookup(c, now).is_empty() {
                return Some(c.clone());
            }
        }
        candidates
            .into_iter()
            .find(|c| self.is_known_user(c, now) || !self.rules_of(c).is_empty())
    }

    /// An initial INVITE to one of our users: voicemail URIs, then the user's rules.
    fn route_invite(
        &mut self,
        key: &ServerKey,
        req: Request,
        dialled: &str,
        max_forwards: u32,
        prefix: &str,
        now: Instant,
    ) {
        if dialled == VOICEMAIL_USER {
            return self.route_voicemail_uri(key, req, max_forwards, prefix, now);
        }
        let Some(user) = self.resolve_user(dialled, now) else {
            return self.reply(key, 404, Some("Not Found"), vec![], now);
        };
        let disabled = req
            .headers
            .get(DISABLE_FORWARDING_HEADER)
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
        // An INVITE with Replaces (attended transfer) joins an existing dialog of the target:
        // forwarding it elsewhere could only break the transfer.
        let replaces = req.headers.get("Replaces").is_some();
        let rules = self.rules_of(&user);
        let Some(tx) = self.servers.get_mut(key) else {
            return;
        };
        if disabled {
            tx.no_answer_status = 480;
        }
        let disabled = disabled || replaces;
        tx.fwd = Some(Box::new(Forwarding {
            request: req,
            max_forwards,
            prefix: prefix.to_owned(),
            user: user.clone(),
            rules,
            visited: vec![user],
            disabled,
        }));
        self.ring_current(key, now);
    }

    /// Ring the contacts of the chain's current user, applying their rules.
    fn ring_current(&mut self, key: &ServerKey, now: Instant) {
        let Some(fwd) = self.servers.get(key).and_then(|t| t.fwd.as_ref()) else {
            return;
        };
        let (user, rules, disabled) = (fwd.user.clone(), fwd.rules.clone(), fwd.disabled);
        if !disabled {
            if let Some(always) = &rules.always {
                if self.retarget(key, &always.to, Cause::Always, now) {
                    return;
                }
            }
        }
        let bindings = self.registrar.lookup(&user, now);
        if bindings.is_empty() {
            if !disabled {
                let fallback = rules
                    .no_answer
                    .as_ref()
                    .map(|r| r.to.clone())
                    .or_else(|| rules.busy.as_ref().map(|r| r.to.clone()));
                if let Some(to) = fallback {
                    if self.retarget(key, &to, Cause::Unregistered, now) {
                        return;
                    }
                }
            }
            return self.reply(key, 480, Some("Temporarily Unavailable"), vec![], now);
        }
        let rule_after = rules
            .no_answer
            .as_ref()
            .map(|r| Duration::from_secs(u64::from(r.after)));
        let Some(tx) = self.servers.get_mut(key) else {
            return;
        };
        tx.no_answer_after = match (disabled, rule_after) {
            // Ring only the target, for its own no-answer time.
            (true, Some(after)) => after,
            // The rule fires first; the timeout only matters if the rule cannot be followed.
            (false, Some(after)) => self.no_answer_timeout.max(after + T1),
            _ => self.no_answer_timeout,
        };
        let generation = tx.generation;
        let Some(fwd) = tx.fwd.as_ref() else {
            return;
        };
        let (req, max_forwards, prefix) =
            (fwd.request.clone(), fwd.max_forwards, fwd.prefix.clone());
        let targets = bindings
            .into_iter()
            .map(|b| (b.contact.uri, b.flow))
            .collect();
        self.forward(key, req, targets, max_forwards, true, &prefix, now);
        if let (false, Some(after)) = (disabled, rule_after) {
            self.schedule(now + after, Timer::ForwardNoAnswer(key.clone(), generation));
        }
    }

    /// Forward the call to `target` for `cause`: cancel what rings now, tell the caller
    /// (`181`), and ring the next step. `false` when the rule cannot be followed (an unknown
    /// target, a loop, too many hops, the call is over): the call then goes on as if the rule
    /// did not exist.
    fn retarget(
        &mut self,
        key: &ServerKey,
        target: &ForwardTarget,
        cause: Cause,
        now: Instant,
    ) -> bool {
        let next = match target {
            ForwardTarget::Voicemail => None,
            ForwardTarget::Person(p) => match self.resolve_user(p, now) {
                Some(u) => Some(u),
                None => {
                    warn!(target = %redact(p), "forwarding target unknown: rule ignored");
                    return false;
                }
            },
        };
        let domain = self.local.domain.clone();
        let no_answer_timeout = self.no_answer_timeout;
        let Some(tx) = self.servers.get_mut(key) else {
            return false;
        };
        if tx.is_final() || tx.stopped {
            return false;
        }
        let Some(fwd) = tx.fwd.as_mut() else {
            return false;
        };
        if let Some(u) = &next {
            if u == VOICEMAIL_USER
                || fwd.visited.contains(u)
                || fwd.visited.len() > MAX_FORWARD_HOPS
            {
                warn!(target = %redact(u), hops = fwd.visited.len(), "forwarding loop or too many hops: rule ignored");
                return false;
            }
        }
        let owner = fwd.user.clone();
        let hops = fwd.visited.len();
        fwd.request.headers.push_front(
            "Diversion",
            format!(
                "<sip:{owner}@{domain}>;reason={};counter={hops}",
                cause.diversion_reason()
            ),
        );
        if let Some(u) = &next {
            fwd.visited.push(u.clone());
            fwd.user = u.clone();
        }
        tx.generation += 1;
        tx.no_answer_after = no_answer_timeout;
        let branches = tx.branches.clone();
        for b in &branches {
            if let Some(c) = self.clients.get_mut(b) {
                c.abandoned = true;
            }
            self.cancel_branch(b, now);
        }
        info!(user = %redact(&owner), cause = cause.code(), hops, "call forwarded");
        self.reply(key, 181, None, vec![], now);
        match next {
            Some(u) => {
                let rules = self.rules_of(&u);
                if let Some(f) = self.servers.get_mut(key).and_then(|t| t.fwd.as_mut()) {
                    f.rules = rules;
                }
                self.ring_current(key, now);
            }
            None => {
                if let Some(f) = self.servers.get_mut(key).and_then(|t| t.fwd.as_mut()) {
                    f.rules = Rules::default();
                }
                self.forward_to_voicemail(key, &owner, Some(cause.code()), now);
            }
        }
        true
    }

    /// When every branch of the current step failed: the busy rule on a busy answer, the
    /// no-answer rule when no phone could be reached (408, 480). Whether the call was
    /// forwarded.
    fn forward_on_failure(&mut self, key: &ServerKey, statuses: &[u16], now: Instant) -> bool {
        let Some(tx) = self.servers.get(key) else {
            return false;
        };
        if tx.stopped || statuses.is_empty() || statuses.iter().any(|s| (200..300).contains(s)) {
            return false;
        }
        let Some(fwd) = tx.fwd.as_ref().filter(|f| !f.disabled) else {
            return false;
        };
        let busy = statuses.iter().any(|s| matches!(s, 486 | 600))
            && !statuses.iter().any(|s| matches!(s, 603 | 604 | 606));
        let unreachable = statuses.iter().all(|s| matches!(s, 408 | 480));
        let rule = if busy {
            fwd.rules.busy.as_ref().map(|r| (r.to.clone(), Cause::Busy))
        } else if unreachable {
            fwd.rules
                .no_answer
                .as_ref()
                .map(|r| (r.to.clone(), Cause::NoAnswer))
        } else {
            None
        };
        match rule {
            Some((to, cause)) => self.retarget(key, &to, cause, now),
            None => false,
        }
    }

    /// An INVITE to `sip:voicemail@DOMAIN;target=sip:OWNER%40DOMAIN;cause=N` (RFC 4458), or
    /// with the bare `target=OWNER` that survives clients which mishandle %-escapes.
    fn route_voicemail_uri(
        &mut self,
        key: &ServerKey,
        req: Request,
        max_forwards: u32,
        prefix: &str,
        now: Instant,
    ) {
        let owner = hookflash_core::transfer::voicemail_owner(&req.uri)
            .filter(|u| u.scheme == "tel" || self.local.is_local_host(&u.host, u.port))
            .and_then(|u| u.user);
        let owner = owner
            .and_then(|o| self.resolve_user(&o, now))
            .filter(|o| o != VOICEMAIL_USER);
        let Some(owner) = owner else {
            return self.reply(key, 404, Some("No Such Mailbox"), vec![], now);
        };
        let cause = req
            .uri
            .param("cause")
            .flatten()
            .and_then(|c| c.trim().parse::<u16>().ok())
            .filter(|c| (300..700).contains(c));
        let Some(tx) = self.servers.get_mut(key) else {
            return;
        };
        tx.fwd = Some(Box::new(Forwarding {
            request: req,
            max_forwards,
            prefix: prefix.to_owned(),
            user: owner.clone(),
            rules: Rules::default(),
            visited: vec![owner.clone()],
            disabled: true,
        }));
        self.forward_to_voicemail(key, &owner, cause, now);
    }

    /// Fork to the voicemail agent's contacts, each with `target` (the mailbox) and `cause`
    /// appended, so that the agent reads them in its Request-URI.
    fn forward_to_voicemail(
        &mut self,
        key: &ServerKey,
        owner: &str,
        cause: Option<u16>,
        now: Instant,
    ) {
        let bindings = self.registrar.lookup(VOICEMAIL_USER, now);
        if bindings.is_empty() {
            warn!("voicemail is not registered");
            return self.reply(key, 480, Some("Voicemail Unavailable"), vec![], now);
        }
        let target = escape_uri_header(&format!("sip:{owner}@{}", self.local.domain));
        let targets = bindings
            .into_iter()
            .map(|b| {
                let mut uri = b.contact.uri;
                uri.set_param("target", Some(&target));
                if let Some(c) = cause {
                    uri.set_param("cause", Some(&c.to_string()));
                }
                (uri, b.flow)
            })
            .collect();
        let Some(fwd) = self.servers.get(key).and_then(|t| t.fwd.as_ref()) else {
            return;
        };
        let (req, max_forwards, prefix) =
            (fwd.request.clone(), fwd.max_forwards, fwd.prefix.clone());
        self.forward(key, req, targets, max_forwards, true, &prefix, now);
    }

    // ---------------------------------------------------------------- message waiting

    /// A mailbox changed (a message left, heard or deleted): NOTIFY its subscribers.
    pub fn handle_mailbox_changed(&mut self, owner: &str, now: Instant) {
        let tags: Vec<String> = self
            .subscriptions
            .iter()
            .filter(|(_, s)| s.owner == owner)
            .map(|(t, _)| t.clone())
            .collect();
        for t in tags {
            self.notify(&t, None, now);
        }
    }

    fn our_contact(&self, transport: TransportKind) -> String {
        format!(
            "<sip:{};transport={}>",
            self.local.host_port(),
            transport.as_str().to_ascii_lowercase()
        )
    }

    fn mailbox_counts(&self, owner: &str) -> MailboxCounts {
        self.users.directory().counts(owner)
    }

    /// A SUBSCRIBE to `message-summary` of `target` by the authenticated `user`.
    fn on_mwi_subscribe(
        &mut self,
        key: &ServerKey,
        req: &Request,
        user: &str,
        target: &str,
        now: Instant,
    ) {
        if !number_candidates(target).iter().any(|c| c == user) {
            warn!(user = %redact(user), "subscription to someone else's mailbox refused");
            return self.reply(key, 403, Some("Not Your Mailbox"), vec![], now);
        }
        let Some(expires) = mwi::granted_expires(req.headers.get("Expires")) else {
            return self.reply(key, 400, Some("Bad Expires"), vec![], now);
        };
        let (Ok(from), Ok(mut to), Some(contact)) = (req.from(), req.to(), req.contact()) else {
            return self.reply(key, 400, Some("Missing Contact"), vec![], now);
        };
        let Some(remote_tag) = from.tag().map(str::to_owned) else {
            return self.reply(key, 400, Some("Missing From Tag"), vec![], now);
        };
        if self.subscriptions.len() >= MAX_SUBSCRIPTIONS {
            return self.reply(
                key,
                503,
                Some("Too Many Subscriptions"),
                vec![("Retry-After", "60".into())],
                now,
            );
        }
        let Some(tx) = self.servers.get(key) else {
            return;
        };
        let (tag, flow) = (tx.to_tag.clone(), tx.flow);
        let mine: Vec<(Instant, String)> = self
            .subscriptions
            .iter()
            .filter(|(_, s)| s.owner == user)
            .map(|(t, s)| (s.expires_at, t.clone()))
            .collect();
        if mine.len() >= MAX_SUBSCRIPTIONS_PER_USER {
            if let Some((_, oldest)) = mine.into_iter().min() {
                self.subscriptions.remove(&oldest);
            }
        }
        to.set_param("tag", Some(&tag));
        self.subscriptions.insert(
            tag.clone(),
            Subscription {
                owner: user.to_owned(),
                call_id: req.call_id().unwrap_or_default().to_owned(),
                remote_tag,
                from: to.to_string(),
                to: req.headers.get("From").unwrap_or_default().to_owned(),
                target: contact.uri,
                route_set: req.headers.get_all("Record-Route"),
                flow,
                cseq: 0,
                expires_at: now + Duration::from_secs(u64::from(expires)),
                generation: 0,
            },
        );
        info!(user = %redact(user), expires, "message-summary subscription");
        let contact = self.our_contact(flow.transport);
        self.reply(
            key,
            200,
            None,
            vec![("Expires", expires.to_string()), ("Contact", contact)],
            now,
        );
        self.after_subscribe(&tag, expires, now);
    }

    /// An in-dialog SUBSCRIBE: a refresh or (`Expires: 0`) the end of one of our
    /// subscriptions. `false` when it is not ours.
    fn on_subscription_refresh(&mut self, key: &ServerKey, req: &Request, now: Instant) -> bool {
        let Some(tag) = req.to().ok().and_then(|t| t.tag().map(str::to_owned)) else {
            return false;
        };
        let from_tag = req.from().ok().and_then(|f| f.tag().map(str::to_owned));
        let ours = self.subscriptions.get(&tag).is_some_and(|s| {
            req.call_id().ok() == Some(s.call_id.as_str())
                && from_tag.as_deref() == Some(s.remote_tag.as_str())
        });
        if !ours {
            return false;
        }
        let Some(expires) = mwi::granted_expires(req.headers.get("Expires")) else {
            self.reply(key, 400, Some("Bad Expires"), vec![], now);
            return true;
        };
        let flow = self.servers.get(key).map(|t| t.flow);
        if let Some(s) = self.subscriptions.get_mut(&tag) {
            s.generation += 1;
            s.expires_at = now + Duration::from_secs(u64::from(expires));
            if let Some(f) = flow {
                s.flow = f;
            }
            if let Some(c) = req.contact() {
                s.target = c.uri;
            }
        }
        let contact = self.our_contact(flow.map_or(TransportKind::Udp, |f| f.transport));
        self.reply(
            key,
            200,
            None,
            vec![("Expires", expires.to_string()), ("Contact", contact)],
            now,
        );
        self.after_subscribe(&tag, expires, now);
        true
    }

    /// After a (re)SUBSCRIBE was answered: NOTIFY the state, and end or time the
    /// subscription.
    fn after_subscribe(&mut self, tag: &str, expires: u32, now: Instant) {
        if expires == 0 {
            self.notify(tag, Some("timeout"), now);
            self.subscriptions.remove(tag);
            return;
        }
        self.notify(tag, None, now);
        if let Some(s) = self.subscriptions.get(tag) {
            let (at, generation) = (s.expires_at, s.generation);
            self.schedule(at, Timer::SubscriptionExpire(tag.to_owned(), generation));
        }
    }

    /// Send the mailbox state in a NOTIFY; `terminated` names the reason of a final one.
    fn notify(&mut self, tag: &str, terminated: Option<&str>, now: Instant) {
        let Some((owner, transport)) = self
            .subscriptions
            .get(tag)
            .map(|s| (s.owner.clone(), s.flow.transport))
        else {
            return;
        };
        let counts = self.mailbox_counts(&owner);
        let account = format!("sip:{owner}@{}", self.local.domain);
        let contact = self.our_contact(transport);
        let branch = format!("{BRANCH_COOKIE}-hfn{}", new_tag());
        let via = self.local.via(transport, &branch);
        let Some(s) = self.subscriptions.get_mut(tag) else {
            return;
        };
        s.cseq += 1;
        let state = match terminated {
            Some(reason) => format!("terminated;reason={reason}"),
            None => format!(
                "active;expires={}",
                s.expires_at.saturating_duration_since(now).as_secs()
            ),
        };
        let mut r = Request::new(Method::Notify, s.target.clone());
        r.headers.push("Via", via);
        r.headers.push("Max-Forwards", "70");
        for route in &s.route_set {
            r.headers.push("Route", route.clone());
        }
        r.headers.push("From", s.from.clone());
        r.headers.push("To", s.to.clone());
        r.headers.push("Call-ID", s.call_id.clone());
        r.headers.push("CSeq", format!("{} NOTIFY", s.cseq));
        r.headers.push("Contact", contact);
        r.headers.push("Event", mwi::EVENT);
        r.headers.push("Subscription-State", state);
        r.headers.push("Content-Type", mwi::CONTENT_TYPE);
        r.body = mwi::summary_body(&account, counts).into_bytes();
        let flow = s.flow;
        self.notifies.insert(
            branch.clone(),
            NotifyTx {
                sub: tag.to_owned(),
                request: r.clone(),
                flow,
                retransmit: T1,
                answered: false,
            },
        );
        debug!(user = %redact(&owner), new = counts.new, old = counts.old, "NOTIFY message-summary");
        self.send(flow, r, None);
        if flow.transport == TransportKind::Udp {
            self.schedule(now + T1, Timer::NotifyRetransmit(branch.clone()));
        }
        self.schedule(now + TX_LINGER, Timer::NotifyTimeout(branch));
    }

    fn on_notify_response(&mut self, branch: &str, resp: &Response) {
        if resp.status < 200 {
            return;
        }
        let Some(n) = self.notifies.get_mut(branch) else {
            return;
        };
        if n.answered {
            return;
        }
        n.answered = true;
        if resp.status >= 300 {
            debug!(status = resp.status, "NOTIFY refused: subscription dropped");
            let sub = n.sub.clone();
            self.subscriptions.remove(&sub);
        }
    }

    // ---------------------------------------------------------------- responses

    fn on_response(&mut self, mut resp: Response, src: Flow, now: Instant) {
        let (Ok(via), Ok(cseq)) = (resp.top_via(), resp.cseq()) else {
            warn!(flow = %src, "dropping response without Via or CSeq");
            return;
        };
        debug!(
            dir = "in", flow = %src, status = resp.status, method = %cseq.method,
            call = %redact(resp.headers.get("Call-ID").unwrap_or_default()),
            "response"
        );
        if !self.local.is_my_via(&via) {
            debug!(flow = %src, "response not addressed to us dropped");
            return;
        }
        let branch = via.branch().unwrap_or_default().to_owned();
        resp.headers.pop_first("Via");
        if cseq.method == Method::Notify && self.notifies.contains_key(&branch) {
            return self.on_notify_response(&branch, &resp);
        }
        if cseq.method == Method::Cancel {
            if let Some(c) = self.clients.get_mut(&branch) {
                if let CancelState::Sent { answered, .. } = &mut c.cancel {
                    *answered = true;
                }
            }
            return;
        }
        let Some(c) = self.clients.get_mut(&branch) else {
            if cseq.method == Method::Invite && resp.class() == 2 {
                self.forward_response_statelessly(resp);
            }
            return;
        };
        let server = c.server.clone();
        let invite = c.invite;
        let abandoned = c.abandoned;
        if resp.status >= 200 {
            c.answered = true;
        }
        match resp.status {
            100..=199 => {
                if c.state.is_final() {
                    return;
                }
                c.state = ClientState::Proceeding;
                if !invite {
                    c.retransmit = T2;
                }
                let cancel_now = invite && c.cancel == CancelState::Pending;
                if cancel_now {
                    self.send_cancel(&branch, now);
                }
                if resp.status > 100 && !abandoned {
                    self.respond(&server, resp, now);
                }
            }
            200..=299 => {
                let first = !c.state.is_final();
                // The first 2xx, or a copy of it: (re)start the absorbing window.
                let at = now + absorb_window(c.flow);
                c.linger_until = c.linger_until.max(Some(at));
                if first {
                    c.state = ClientState::Accepted;
                    c.final_response = Some(resp.clone());
                }
                self.schedule(at, Timer::ClientExpire(branch.clone()));
                if invite {
                    // Every 2xx to an INVITE goes upstream (RFC 3261 §16.7 step 5).
                    self.respond(&server, resp, now);
                    if first {
                        self.cancel_other_branches(&server, &branch, now);
                    }
                } else if first {
                    self.respond(&server, resp, now);
                }
            }
            _ => {
                if invite {
                    self.send_ack(&branch, &resp);
                }
                let Some(c) = self.clients.get_mut(&branch) else {
                    return;
                };
                let at = now + absorb_window(c.flow);
                c.linger_until = c.linger_until.max(Some(at));
                let retransmission = c.state.is_final();
                if !retransmission {
                    c.state = ClientState::Completed;
                }
                self.schedule(at, Timer::ClientExpire(branch.clone()));
                if retransmission {
                    return; // re-ACKed above, window renewed
                }
                let six = resp.class() == 6;
                if let Some(c) = self.clients.get_mut(&branch) {
                    c.final_response = Some(resp);
                }
                if invite && six {
                    self.cancel_other_branches(&server, &branch, now);
                }
                self.maybe_finish(&server, now);
            }
        }
    }

    /// When every branch is final and nothing went upstream yet, send the best response.
    fn maybe_finish(&mut self, key: &ServerKey, now: Instant) {
        let Some(tx) = self.servers.get(key) else {
            return;
        };
        if tx.is_final() || tx.branches.is_empty() {
            return;
        }
        let mut finals = Vec::with_capacity(tx.branches.len());
        for b in &tx.branches {
            match self.clients.get(b) {
                Some(c) if c.abandoned => {}
                Some(c) if !c.state.is_final() => return,
                Some(c) => {
                    if let Some(r) = &c.final_response {
                        finals.push(r.clone());
                    }
                }
                None => {}
            }
        }
        let statuses: Vec<u16> = finals.iter().map(|r| r.status).collect();
        if self.forward_on_failure(key, &statuses, now) {
            return;
        }
        match best_response(&statuses).and_then(|i| finals.into_iter().nth(i)) {
            Some(mut best) => {
                if best.status == 503 {
                    // RFC 3261 §16.7 step 6: a 503 from downstream must not stop the caller
                    // from trying other servers of ours.
                    best.status = 500;
                    best.reason = "Server Internal Error".into();
                }
                self.respond(key, best, now);
            }
            None => self.reply(key, 480, None, vec![], now),
        }
    }

    /// Give up on a branch with a synthetic `status` (timeout, transport failure).
    fn branch_gave_up(&mut self, branch: &str, status: u16, now: Instant) {
        let Some(c) = self.clients.get(branch) else {
            return;
        };
        if c.state.is_final() {
            return;
        }
        let server = c.server.clone();
        let synthetic = self
            .servers
            .get(&server)
            .map(|tx| tx.request.response(status, None, Some(&tx.to_tag)));
        if let Some(c) = self.clients.get_mut(branch) {
            c.state = ClientState::Completed;
            c.final_response = synthetic;
            let at = now + absorb_window(c.flow);
            c.linger_until = Some(at);
            self.schedule(at, Timer::ClientExpire(branch.to_owned()));
        }
        debug!(status, "branch given up");
        self.maybe_finish(&server, now);
    }

    fn cancel_other_branches(&mut self, key: &ServerKey, except: &str, now: Instant) {
        let branches = self
            .servers
            .get(key)
            .map(|t| t.branches.clone())
            .unwrap_or_default();
        for b in branches.iter().filter(|b| *b != except) {
            self.cancel_branch(b, now);
        }
    }

    fn cancel_branch(&mut self, branch: &str, now: Instant) {
        let Some(c) = self.clients.get_mut(branch) else {
            return;
        };
        if c.state.is_final() || !c.invite || c.cancel != CancelState::None {
            return;
        }
        if c.state == ClientState::Proceeding {
            self.send_cancel(branch, now);
        } else {
            c.cancel = CancelState::Pending;
        }
    }

    fn build_cancel_or_ack(req: &Request, method: Method, to: Option<&str>) -> Request {
        let mut r = Request::new(method.clone(), req.uri.clone());
        if let Some(v) = req.headers.get_all("Via").first() {
            r.headers.push("Via", v.clone());
        }
        for route in req.headers.get_all("Route") {
            r.headers.push("Route", route);
        }
        r.headers.push("Max-Forwards", "70");
        for h in ["From", "Call-ID"] {
            if let Some(v) = req.headers.get(h) {
                r.headers.push(h, v);
            }
        }
        if let Some(v) = to.or_else(|| req.headers.get("To")) {
            r.headers.push("To", v);
        }
        let seq = req.cseq().map(|c| c.seq).unwrap_or(1);
        r.headers.push("CSeq", format!("{seq} {method}"));
        r
    }

    fn send_cancel(&mut self, branch: &str, now: Instant) {
        let Some(c) = self.clients.get_mut(branch) else {
            return;
        };
        c.cancel = CancelState::Sent {
            answered: false,
            tries: 0,
        };
        let cancel = Self::build_cancel_or_ack(&c.request, Method::Cancel, None);
        let flow = c.flow;
        self.send(flow, cancel, None);
        if flow.transport == TransportKind::Udp {
            self.schedule(now + T1, Timer::CancelRetransmit(branch.to_owned()));
        }
    }

    fn send_ack(&mut self, branch: &str, resp: &Response) {
        let Some(c) = self.clients.get(branch) else {
            return;
        };
        let ack = Self::build_cancel_or_ack(&c.request, Method::Ack, resp.headers.get("To"));
        let flow = c.flow;
        self.send(flow, ack, None);
    }

    // ---------------------------------------------------------------- timers

    fn on_timer(&mut self, timer: Timer, now: Instant) {
        match timer {
            Timer::ServerRetransmit(key) => {
                let Some(tx) = self.servers.get_mut(&key) else {
                    return;
                };
                if tx.state != ServerState::Completed {
                    return;
                }
                tx.retransmit = (tx.retransmit * 2).min(T2);
                let next = now + tx.retransmit;
                let (flow, last) = (tx.flow, tx.last.clone());
                if let Some(last) = last {
                    self.send(flow, last, None);
                }
                self.schedule(next, Timer::ServerRetransmit(key));
            }
            Timer::ServerExpire(key) => {
                let Some(tx) = self.servers.get(&key) else {
                    return;
                };
                let done = match tx.linger_until {
                    Some(at) => at <= now,
                    None => now >= tx.expire_at,
                };
                if done {
                    if !tx.is_final() {
                        warn!("transaction dropped without a final response");
                    }
                    self.servers.remove(&key);
                }
            }
            Timer::ClientRetransmit(branch) => {
                let Some(c) = self.clients.get_mut(&branch) else {
                    return;
                };
                let again = matches!(
                    (c.invite, c.state),
                    (true, ClientState::Calling)
                        | (false, ClientState::Calling | ClientState::Proceeding)
                );
                if !again {
                    return;
                }
                c.retransmit = if c.invite {
                    c.retransmit * 2
                } else {
                    (c.retransmit * 2).min(T2)
                };
                let next = now + c.retransmit;
                let (flow, req) = (c.flow, c.request.clone());
                self.send(flow, req, None);
                self.schedule(next, Timer::ClientRetransmit(branch));
            }
            Timer::ClientTimeout(branch) => {
                let Some(c) = self.clients.get(&branch) else {
                    return;
                };
                let timed_out = match (c.invite, c.state) {
                    (true, ClientState::Calling) => true,
                    (false, s) => !s.is_final(),
                    _ => false,
                };
                if timed_out {
                    self.branch_gave_up(&branch, 408, now);
                }
            }
            Timer::ClientExpire(branch) => {
                let Some(c) = self.clients.get(&branch) else {
                    return;
                };
                if c.linger_until.is_none_or(|at| at > now) {
                    return; // renewed since: a later timer takes it
                }
                // A branch's final answer counts until its transaction has answered upstream
                // (another branch may ring on): keep it while the server transaction waits.
                let waiting = self.servers.get(&c.server).is_some_and(|tx| !tx.is_final());
                if waiting {
                    let at = now + ABSORB;
                    if let Some(c) = self.clients.get_mut(&branch) {
                        c.linger_until = Some(at);
                    }
                    self.schedule(at, Timer::ClientExpire(branch));
                } else {
                    self.clients.remove(&branch);
                }
            }
            Timer::CancelRetransmit(branch) => {
                let Some(c) = self.clients.get_mut(&branch) else {
                    return;
                };
                let CancelState::Sent { answered, tries } = c.cancel else {
                    return;
                };
                if answered || c.answered || tries >= CANCEL_RETRIES {
                    return;
                }
                c.cancel = CancelState::Sent {
                    answered,
                    tries: tries + 1,
                };
                let cancel = Self::build_cancel_or_ack(&c.request, Method::Cancel, None);
                let flow = c.flow;
                self.send(flow, cancel, None);
                self.schedule(
                    now + (T1 * 2u32.pow(tries + 1)).min(T2),
                    Timer::CancelRetransmit(branch),
                );
            }
            Timer::NoAnswer(key, generation) => {
                let Some(tx) = self.servers.get_mut(&key) else {
                    return;
                };
                if tx.is_final() || tx.generation != generation {
                    return;
                }
                debug!("no answer in time: cancelling branches");
                tx.stopped = true;
                let status = tx.no_answer_status;
                let branches = tx.branches.clone();
                for b in &branches {
                    self.cancel_branch(b, now);
                }
                for b in &branches {
                    self.branch_gave_up(b, status, now);
                }
                self.maybe_finish(&key, now);
            }
            Timer::ForwardNoAnswer(key, generation) => {
                let target = self.servers.get(&key).and_then(|tx| {
                    let live = !tx.is_final() && !tx.stopped && tx.generation == generation;
                    tx.fwd
                        .as_ref()
                        .filter(|f| live && !f.disabled)
                        .and_then(|f| f.rules.no_answer.as_ref().map(|r| r.to.clone()))
                });
                if let Some(target) = target {
                    debug!("no answer: forwarding");
                    self.retarget(&key, &target, Cause::NoAnswer, now);
                }
            }
            Timer::NotifyRetransmit(branch) => {
                let Some(n) = self.notifies.get_mut(&branch) else {
                    return;
                };
                if n.answered {
                    return;
                }
                n.retransmit = (n.retransmit * 2).min(T2);
                let next = now + n.retransmit;
                let (flow, req) = (n.flow, n.request.clone());
                self.send(flow, req, None);
                self.schedule(next, Timer::NotifyRetransmit(branch));
            }
            Timer::NotifyTimeout(branch) => {
                if let Some(n) = self.notifies.remove(&branch) {
                    if !n.answered {
                        debug!("NOTIFY unanswered: subscription dropped");
                        self.subscriptions.remove(&n.sub);
                    }
                }
            }
            Timer::SubscriptionExpire(tag, generation) => {
                let due = self
                    .subscriptions
                    .get(&tag)
                    .is_some_and(|s| s.generation == generation && s.expires_at <= now);
                if due {
                    self.notify(&tag, Some("timeout"), now);
                    self.subscriptions.remove(&tag);
                }
            }
            Timer::CancelGrace(key) => {
                if self.servers.get(&key).is_some_and(|tx| !tx.is_final()) {
                    let branches = self
                        .servers
                        .get(&key)
                        .map(|t| t.branches.clone())
                        .unwrap_or_default();
                    for b in &branches {
                        self.branch_gave_up(b, 487, now);
                    }
                    self.reply(&key, 487, None, vec![], now);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hookflash_core::auth::{authorization, Token};

    const SECRET: &str = "engine-test-secret";
    const UNIX0: u64 = 1_700_000_000;

    struct Rig {
        engine: Engine,
        now: Instant,
    }

    fn flow(port: u16) -> Flow {
        Flow {
            transport: TransportKind::Udp,
            addr: ([127, 0, 0, 1], port).into(),
        }
    }

    impl Rig {
        fn new() -> Rig {
            let now = Instant::now();
            let local = Local::new(
                "hookflash.local",
                "127.0.0.1".parse().unwrap(),
                "127.0.0.1".parse().unwrap(),
                5070,
            );
            let users = Arc::new(UserStore::in_memory().unwrap());
            let engine = Engine::new(local, SECRET, users, Duration::from_secs(10), now, UNIX0);
            Rig { engine, now }
        }

        fn input(&mut self, text: &str, from: Flow) -> Vec<Transmit> {
            let msg = Message::parse(text.as_bytes()).expect("test message parses");
            self.engine.handle_message(msg, from, self.now);
            std::iter::from_fn(|| self.engine.poll_transmit()).collect()
        }

        fn advance(&mut self, by: Duration) -> Vec<Transmit> {
            self.now += by;
            self.engine.handle_timeout(self.now);
            std::iter::from_fn(|| self.engine.poll_transmit()).collect()
        }

        /// A request from `user` at `port` with a fresh challenge answered (first run gets it).
        fn authed(
            &mut self,
            user: &str,
            port: u16,
            method: &str,
            ruri: &str,
            hdr: &str,
            extra: &str,
        ) -> Vec<Transmit> {
            let now_unix = self.engine.unix(self.now);
            let token = Token::issue(SECRET, user, Duration::from_secs(3600), now_unix);
            let to = if method == "REGISTER" {
                format!("sip:{user}@hookflash.local")
            } else {
                ruri.to_owned()
            };
            let base = |auth: &str, branch: &str| {
                format!(
                    "{method} {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK{branch};rport\r\n\
From: <sip:{user}@hookflash.local>;tag=f{port}\r\nTo: <{to}>\r\nCall-ID: c{port}{method}\r\n\
CSeq: {} {method}\r\nContact: <sip:{user}@127.0.0.1:{port}>\r\n{auth}{extra}\r\n",
                    if auth.is_empty() { 1 } else { 2 }
                )
            };
            let out = self.input(&base("", &format!("a{port}")), flow(port));
            let challenge = out
                .iter()
                .find_map(|t| match &t.message {
                    Message::Response(r) if r.status == 401 || r.status == 407 => {
                        r.headers.get(if r.status == 401 {
                            "WWW-Authenticate"
                        } else {
                            "Proxy-Authenticate"
                        })
                    }
                    _ => None,
                })
                .expect("challenged first")
                .parse::<Challenge>()
                .unwrap();
            if method == "INVITE" {
                let ack = format!(
                    "ACK {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKa{port};rport\r\n\
From: <sip:{user}@hookflash.local>;tag=f{port}\r\nTo: <{to}>;tag=x\r\nCall-ID: c{port}{method}\r\n\
CSeq: 1 ACK\r\n\r\n"
                );
                assert!(
                    self.input(&ack, flow(port)).is_empty(),
                    "the ACK for 407 is absorbed"
                );
            }
            let value = authorization(
                &challenge,
                method,
                ruri,
                &token.sip_username(),
                token.password(Scope::Sip).expect("the token opens SIP"),
                1,
                "cn",
            );
            self.input(
                &base(&format!("{hdr}: {value}\r\n"), &format!("b{port}")),
                flow(port),
            )
        }
    }

    #[test]
    fn finished_transactions_absorb_retransmissions_only_as_long_as_copies_keep_coming() {
        let register = |transport: &str, port: u16| {
            format!(
                "REGISTER sip:hookflash.local SIP/2.0\r\nVia: SIP/2.0/{transport} 127.0.0.1:{port};branch=z9hG4bKabsorb\r\n\
From: <sip:amy@hookflash.local>;tag=a\r\nTo: <sip:amy@hookflash.local>\r\nCall-ID: absorb\r\n\
CSeq: 1 REGISTER\r\nContact: <sip:amy@127.0.0.1:{port}>\r\nContent-Length: 0\r\n\r\n"
            )
        };
        let mut rig = Rig::new();
        let udp = register("UDP", 4100);
        let first = rig.input(&udp, flow(4100));
        assert_eq!(
            statuses(&first),
            [401],
            "an unauthenticated REGISTER is challenged"
        );
        let tag = |out: &[Transmit]| match &out[0].message {
            Message::Response(r) => r.to().ok().and_then(|t| t.tag().map(str::to_owned)),
            _ => None,
        };
        // A client whose answer was lost sends its next copy at most T2 = 4 s later: each copy
        // gets the same answer (same To-tag) and keeps the transaction for another window.
        for round in 1..=3 {
            rig.advance(Duration::from_secs(4));
            let again = rig.input(&udp, flow(4100));
            assert_eq!(
                tag(&again),
                tag(&first),
                "copy {round}, 4 s after the last, must be absorbed with the first answer"
            );
        }
        rig.advance(ABSORB + Duration::from_millis(1));
        assert!(
            rig.engine.servers.is_empty(),
            "a UDP transaction must be gone one window after its last copy, not 32 s later"
        );

        let tcp_flow = Flow {
            transport: TransportKind::Tcp,
            addr: ([127, 0, 0, 1], 4101).into(),
        };
        let out = rig.input(&register("TCP", 4101), tcp_flow);
        assert_eq!(statuses(&out), [401], "challenged over TCP too");
        rig.advance(Duration::ZERO);
        assert!(
            rig.engine.servers.is_empty(),
            "over TCP nothing is retransmitted, so a finished transaction goes at once"
        );
    }

    impl Rig {
        /// Bob registers at port 4002 with a token.
        fn register_bob(&mut self) {
            let out = self.authed(
                "bob",
                4002,
                "REGISTER",
                "sip:hookflash.local",
                "Authorization",
                "",
            );
            assert_eq!(statuses(&out), [200], "bob registers with a token");
        }

        /// Bob registers at port 4002 (with a token) and Alice, at 4000, calls him with
        /// credentials: what the engine sent for her INVITE.
        fn alice_calls_bob(&mut self) -> Vec<Transmit> {
            self.register_bob();
            self.authed(
                "alice",
                4000,
                "INVITE",
                "sip:bob@hookflash.local",
                "Proxy-Authorization",
                "",
            )
        }
    }

    fn statuses(out: &[Transmit]) -> Vec<u16> {
        out.iter()
            .filter_map(|t| match &t.message {
                Message::Response(r) => Some(r.status),
                _ => None,
            })
            .collect()
    }

    fn requests(out: &[Transmit]) -> Vec<(Method, Flow)> {
        out.iter()
            .filter_map(|t| match &t.message {
                Message::Request(r) => Some((r.method.clone(), t.flow)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn register_retransmission_gets_the_same_answer() {
        let mut rig = Rig::new();
        let reg = "REGISTER sip:hookflash.local SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:4000;branch=z9hG4bKr1\r\n\
From: <sip:bob@hookflash.local>;tag=1\r\nTo: <sip:bob@hookflash.local>\r\nCall-ID: r\r\nCSeq: 1 REGISTER\r\n\r\n";
        let first = rig.input(reg, flow(4000));
        let again = rig.input(reg, flow(4000));
        assert_eq!(
            statuses(&first),
            [401],
            "a REGISTER without credentials is challenged"
        );
        assert_eq!(
            format!("{:?}", first[0].message),
            format!("{:?}", again[0].message),
            "the retransmission is answered from the transaction, same nonce"
        );
    }

    #[test]
    fn an_offline_token_user_is_known_until_the_token_expires_then_forgotten() {
        let mut rig = Rig::new();
        let out = rig.authed(
            "bob",
            4002,
            "REGISTER",
            "sip:hookflash.local",
            "Authorization",
            "Expires: 30\r\n",
        );
        assert_eq!(
            statuses(&out),
            [200],
            "bob registers for 30 s with a 1 h token"
        );
        rig.advance(Duration::from_secs(31));
        let call = |rig: &mut Rig, port: u16| {
            statuses(&rig.authed(
                "alice",
                port,
                "INVITE",
                "sip:bob@hookflash.local",
                "Proxy-Authorization",
                "",
            ))
        };
        assert_eq!(
            call(&mut rig, 4000).last(),
            Some(&480),
            "bob's binding lapsed but his token is valid: he is a user who is away (480), \
             not a stranger (404)"
        );
        rig.advance(Duration::from_secs(3600));
        assert_eq!(
            call(&mut rig, 4010).last(),
            Some(&404),
            "once bob's token expired nothing of him is kept: he is unknown"
        );
        assert!(
            !rig.engine
                .token_users
                .contains("bob", rig.engine.unix(rig.now)),
            "and the set of token users does not keep him"
        );
    }

    #[test]
    fn user_names_are_one_user_whatever_their_case() {
        let mut rig = Rig::new();
        let out = rig.authed(
            "BoB",
            4002,
            "REGISTER",
            "sip:hookflash.local",
            "Authorization",
            "",
        );
        assert_eq!(
            statuses(&out),
            [200],
            "BoB registers with a token issued to BoB"
        );
        let out = rig.authed(
            "alice",
            4000,
            "INVITE",
            "sip:bob@hookflash.local",
            "Proxy-Authorization",
            "",
        );
        assert_eq!(
            requests(&out),
            [(Method::Invite, flow(4002))],
            "a call to bob reaches the user who registered as BoB: one user, not two"
        );
        assert_eq!(
            rig.engine.registrar.len(),
            1,
            "a single binding, kept under the folded name"
        );
    }

    #[test]
    fn timers_of_finished_calls_do_not_pile_up() {
        let mut rig = Rig::new();
        rig.register_bob();
        // Calls answered at once, a few a (virtual) millisecond: each leaves timers meant
        // for a call that rings on (no-answer, transaction timeouts, the leak guard) that
        // would otherwise wait a minute or more in the heap.
        for n in 0..8_000u16 {
            let out = rig.authed(
                "alice",
                10_000 + n,
                "INVITE",
                "sip:bob@hookflash.local",
                "Proxy-Authorization",
                "",
            );
            let Some(Message::Request(inv)) = out
                .iter()
                .map(|t| &t.message)
                .find(|m| matches!(m, Message::Request(_)))
            else {
                panic!("call {n} is forwarded to bob");
            };
            let mut ok = inv.response(200, None, Some("bobtag"));
            ok.headers.push("Contact", "<sip:bob@127.0.0.1:4002>");
            rig.engine.handle_message(ok.into(), flow(4002), rig.now);
            let out: Vec<_> = std::iter::from_fn(|| rig.engine.poll_transmit()).collect();
            assert_eq!(statuses(&out), [200], "call {n} is answered upstream");
            rig.advance(Duration::from_millis(5));
        }
        let live = rig.engine.servers.len() + rig.engine.clients.len();
        assert!(
            rig.engine.timers.len() <= MIN_TIMER_COMPACTION + 4 * live,
            "the timer heap ({} timers for {live} live transactions) must stay within a small \
             multiple of what is live, not grow with every call of the last minute",
            rig.engine.timers.len()
        );
    }

    #[test]
    fn unanswered_invite_is_cancelled_then_answered_408() {
        let mut rig = Rig::new();
        let out = rig.alice_calls_bob();
        assert_eq!(statuses(&out), [100], "the authenticated INVITE is trying");
        let fwd = requests(&out);
        assert_eq!(
            fwd,
            [(Method::Invite, flow(4002))],
            "forwarded to bob's flow"
        );
        let Message::Request(inv) = &out
            .iter()
            .find(|t| matches!(t.message, Message::Request(_)))
            .unwrap()
            .message
        else {
            unreachable!()
        };
        let mut ringing = inv.response(180, None, Some("bobtag"));
        ringing.headers.push("Contact", "<sip:bob@127.0.0.1:4002>");
        rig.engine
            .handle_message(ringing.into(), flow(4002), rig.now);
        let out: Vec<_> = std::iter::from_fn(|| rig.engine.poll_transmit()).collect();
        assert_eq!(statuses(&out), [180], "ringing reaches alice");
        assert_eq!(out[0].flow, flow(4000), "on alice's flow");
        let out = rig.advance(Duration::from_secs(10));
        assert_eq!(
            requests(&out),
            [(Method::Cancel, flow(4002))],
            "bob's ringing is cancelled"
        );
        assert_eq!(statuses(&out), [408], "alice hears the no-answer timeout");
        let out = rig.advance(Duration::from_millis(500));
        assert_eq!(
            statuses(&out),
            [408],
            "the 408 is retransmitted over UDP until ACKed"
        );
    }

    /// A request as a stranger sends it: `headers` after the mandatory ones, no credentials.
    fn stranger(method: &str, ruri: &str, headers: &str, branch: &str) -> String {
        format!(
            "{method} {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:6666;branch=z9hG4bK{branch}\r\n\
From: <sip:mallory@evil.example>;tag=m1\r\nTo: <{ruri}>;tag=t1\r\nCall-ID: relay-{branch}\r\n\
CSeq: 1 {method}\r\nMax-Forwards: 70\r\n{headers}Content-Length: 0\r\n\r\n"
        )
    }

    #[test]
    fn strangers_cannot_relay_anything_through_the_switchboard() {
        let mut rig = Rig::new();
        rig.register_bob();
        let attacker = flow(6666);
        // To-tagged ("in a dialog"), routed through us, aimed anywhere: nothing is relayed,
        // whether the Route is bare, carries a forged mark, or the target is a registered user.
        let routes = [
            "Route: <sip:127.0.0.1:5070;lr>\r\n",
            "Route: <sip:127.0.0.1:5070;transport=udp;lr;hf=00112233445566778899>\r\n",
            "",
        ];
        for (i, route) in routes.iter().enumerate() {
            for method in ["INVITE", "MESSAGE", "OPTIONS", "BYE", "REFER", "NOTIFY"] {
                for ruri in [
                    "sip:victim@192.0.2.9:5060",
                    "sip:bob@hookflash.local",
                    "sip:bob@127.0.0.1:4002",
                ] {
                    let out = rig.input(
                        &stranger(method, ruri, route, &format!("{i}{method}{}", ruri.len())),
                        attacker,
                    );
                    assert!(
                        requests(&out).is_empty(),
                        "a stranger's {method} to {ruri} with {route:?} is not relayed: {out:?}"
                    );
                    assert_eq!(
                        statuses(&out).last(),
                        Some(&403),
                        "and is refused: {method} {ruri} {route:?}"
                    );
                }
            }
        }
        // Nor is a Route preloaded on a new request followed unless it names a trunk (there
        // are none here): refused before any credentials are asked for.
        let preloaded = "INVITE sip:bob@hookflash.local SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:4000;branch=z9hG4bKpre\r\nFrom: <sip:alice@hookflash.local>;tag=a\r\n\
To: <sip:bob@hookflash.local>\r\nCall-ID: pre\r\nCSeq: 1 INVITE\r\n\
Route: <sip:192.0.2.9:5060;lr>\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n";
        let out = rig.input(preloaded, flow(4000));
        assert!(
            requests(&out).is_empty(),
            "a preloaded route is not followed: {out:?}"
        );
        assert_eq!(statuses(&out).last(), Some(&403), "it is refused");
    }

    #[test]
    fn trunks_are_the_only_way_to_other_domains_and_the_only_strangers_let_in() {
        let (mut rig, partner) = rig_with_partner_trunk();

        // Our user calls the partner's domain: relayed to the trunk, record-routed.
        let out = rig.authed(
            "alice",
            4010,
            "INVITE",
            "sip:carol@partner.example",
            "Proxy-Authorization",
            "",
        );
        assert_eq!(
            requests(&out),
            [(Method::Invite, partner)],
            "a user's call to the partner's domain goes to its trunk: {out:?}"
        );
        let Message::Request(sent) = &out.iter().find(|t| t.flow == partner).unwrap().message
        else {
            unreachable!()
        };
        assert!(
            sent.headers.get("Record-Route").is_some(),
            "and we stay on its route, so its BYE can come back through us"
        );
        // A domain no trunk serves: refused, even for our own user.
        let out = rig.authed(
            "alice",
            4011,
            "INVITE",
            "sip:carol@elsewhere.example",
            "Proxy-Authorization",
            "",
        );
        assert!(requests(&out).is_empty(), "no trunk, no relay: {out:?}");
        assert_eq!(statuses(&out).last(), Some(&403), "refused");
        // A Route our user preloads is followed when it names the trunk.
        let out = rig.authed(
            "alice",
            4012,
            "INVITE",
            "sip:carol@hookflash-partner.example",
            "Proxy-Authorization",
            "Route: <sip:192.0.2.50:5060;lr>\r\n",
        );
        assert_eq!(
            requests(&out),
            [(Method::Invite, partner)],
            "a route preloaded to a trunk is followed for a user who signed in: {out:?}"
        );

        // The trunk calls our user: taken without credentials, because of where it comes from.
        let from_partner = |ruri: &str, branch: &str, extra: &str| {
            format!(
                "INVITE {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.50:5060;branch=z9hG4bK{branch}\r\n\
From: <sip:carol@partner.example>;tag=p1\r\nTo: <{ruri}>\r\nCall-ID: in-{branch}\r\n\
CSeq: 1 INVITE\r\nContact: <sip:carol@192.0.2.50:5060>\r\nMax-Forwards: 70\r\n{extra}\
Content-Length: 0\r\n\r\n"
            )
        };
        let out = rig.input(&from_partner("sip:bob@hookflash.local", "in1", ""), partner);
        assert_eq!(
            requests(&out),
            [(Method::Invite, flow(4002))],
            "the partner's call reaches bob without a challenge: {out:?}"
        );
        // But it is let in for our users only: no relay onwards, to any domain or route.
        for (i, (ruri, extra)) in [
            ("sip:victim@elsewhere.example", ""),
            ("sip:victim@partner.example", ""),
            ("sip:victim@192.0.2.9:5060", ""),
            (
                "sip:bob@hookflash.local",
                "Route: <sip:192.0.2.50:5060;lr>\r\n",
            ),
        ]
        .into_iter()
        .enumerate()
        {
            let out = rig.input(&from_partner(ruri, &format!("out{i}"), extra), partner);
            assert!(
                requests(&out).is_empty(),
                "nothing from the trunk is relayed to {ruri} {extra:?}: {out:?}"
            );
            assert_eq!(statuses(&out).last(), Some(&403), "refused: {ruri}");
        }
        // The same IP from another UDP port is not the trunk: challenged like anyone.
        let elsewhere = Flow {
            transport: TransportKind::Udp,
            addr: ([192, 0, 2, 50], 5062).into(),
        };
        let out = rig.input(
            &from_partner("sip:bob@hookflash.local", "in2", ""),
            elsewhere,
        );
        assert!(requests(&out).is_empty(), "not relayed: {out:?}");
        assert_eq!(
            statuses(&out).last(),
            Some(&407),
            "but asked for credentials"
        );
        // Nor may the trunk read our users' mailboxes.
        let subscribe = "SUBSCRIBE sip:bob@hookflash.local SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.50:5060;branch=z9hG4bKmwi\r\nFrom: <sip:carol@partner.example>;tag=p2\r\n\
To: <sip:bob@hookflash.local>\r\nCall-ID: mwi\r\nCSeq: 1 SUBSCRIBE\r\nEvent: message-summary\r\n\
Contact: <sip:carol@192.0.2.50:5060>\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n";
        let out = rig.input(subscribe, partner);
        assert_eq!(statuses(&out), [403], "no mailbox for the trunk: {out:?}");
    }

    /// A rig with bob registered and one UDP trunk `partner` for `partner.example` at
    /// 192.0.2.50:5060.
    fn rig_with_partner_trunk() -> (Rig, Flow) {
        let mut rig = Rig::new();
        let partner = Flow {
            transport: TransportKind::Udp,
            addr: ([192, 0, 2, 50], 5060).into(),
        };
        rig.engine.trunks = vec![Trunk {
            name: "partner".into(),
            domains: vec!["partner.example".into()],
            flow: partner,
        }];
        rig.register_bob();
        (rig, partner)
    }

    #[test]
    fn a_trunk_cannot_relay_through_the_dialogs_it_is_in_nor_pass_as_our_users() {
        let (mut rig, partner) = rig_with_partner_trunk();
        // The trunk calls bob and learns our marked Record-Route from the INVITE we forward.
        let invite = "INVITE sip:bob@hookflash.local SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.50:5060;branch=z9hG4bKt1\r\n\
From: <sip:carol@partner.example>;tag=p1\r\nTo: <sip:bob@hookflash.local>\r\nCall-ID: trunk-call\r\n\
CSeq: 1 INVITE\r\nContact: <sip:carol@192.0.2.50:5060>\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n";
        let out = rig.input(invite, partner);
        let Some(Message::Request(fwd)) = out
            .iter()
            .find(|t| t.flow == flow(4002))
            .map(|t| t.message.clone())
        else {
            panic!("the trunk's call reaches bob: {out:?}")
        };
        let rr = fwd
            .headers
            .get("Record-Route")
            .expect("record-routed")
            .to_owned();
        assert!(
            rr.contains(";ht=partner"),
            "the mark names the trunk leg: {rr}"
        );
        // With that route, its Call-ID and tag, the trunk aims in-dialog requests anywhere.
        let in_dialog = |ruri: &str, extra_route: &str, branch: &str| {
            format!(
                "MESSAGE {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.50:5060;branch=z9hG4bK{branch}\r\n\
From: <sip:carol@partner.example>;tag=p1\r\nTo: <{ruri}>;tag=made-up\r\nCall-ID: trunk-call\r\n\
CSeq: 2 MESSAGE\r\nRoute: {rr}{extra_route}\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
            )
        };
        for (i, (ruri, extra)) in [
            ("sip:victim@198.51.100.7:5060", ""),
            ("sip:victim@elsewhere.example", ""),
            ("sip:victim@partner.example", ""),
            ("sip:bob@127.0.0.1:4002", ", <sip:198.51.100.7:5060;lr>"),
            ("sip:victim@198.51.100.7:5060", ", <sip:192.0.2.50:5060;lr>"),
        ]
        .into_iter()
        .enumerate()
        {
            let out = rig.input(&in_dialog(ruri, extra, &format!("d{i}")), partner);
            assert!(
                requests(&out).is_empty(),
                "nothing the trunk sends in its dialog goes to {ruri} {extra:?}: {out:?}"
            );
        }
        // Its own dialog still works: a request for bob's contact reaches bob.
        let out = rig.input(&in_dialog("sip:bob@127.0.0.1:4002", "", "ok"), partner);
        assert_eq!(
            requests(&out),
            [(Method::Message, flow(4002))],
            "in-dialog requests reach our user's registered contact"
        );
        // ACKs are no way round: outside a dialog, or along a route we did not mark.
        for (i, ack) in [
            "ACK sip:victim@partner.example SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.9:5060;branch=z9hG4bKa1\r\n\
From: <sip:m@evil.example>;tag=m\r\nTo: <sip:victim@partner.example>\r\nCall-ID: ack1\r\nCSeq: 1 ACK\r\n\
Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
            "ACK sip:victim@198.51.100.7:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.9:5060;branch=z9hG4bKa2\r\n\
From: <sip:m@evil.example>;tag=m\r\nTo: <sip:victim@partner.example>;tag=x\r\nCall-ID: ack2\r\nCSeq: 1 ACK\r\n\
Route: <sip:127.0.0.1:5070;lr>\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        ]
        .into_iter()
        .enumerate()
        {
            let from = Flow {
                transport: TransportKind::Udp,
                addr: ([198, 51, 100, 9], 5060 + i as u16).into(),
            };
            let out = rig.input(ack, from);
            assert!(requests(&out).is_empty(), "a stranger's ACK {i} is not relayed: {out:?}");
        }
        // Nor may the trunk speak in the name of our domain.
        let spoof = "INVITE sip:bob@hookflash.local SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.50:5060;branch=z9hG4bKspoof\r\n\
From: <sip:ceo@hookflash.local>;tag=s\r\nTo: <sip:bob@hookflash.local>\r\nCall-ID: spoof\r\n\
CSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n";
        let out = rig.input(spoof, partner);
        assert!(requests(&out).is_empty(), "not forwarded: {out:?}");
        assert_eq!(
            statuses(&out).last(),
            Some(&403),
            "a trunk calling as ceo@our domain"
        );
    }

    #[test]
    fn calls_for_a_trunks_domain_go_to_the_trunk_not_to_whoever_registered_that_address() {
        let (mut rig, partner) = rig_with_partner_trunk();
        // Alice registers a contact in the partner's domain, hoping to take carol's calls.
        let hijack = rig.authed(
            "alice",
            4021,
            "REGISTER",
            "sip:hookflash.local",
            "Authorization",
            "Contact: <sip:carol@partner.example>\r\n",
        );
        assert_eq!(
            statuses(&hijack),
            [200],
            "the registrar takes any contact URI"
        );
        let uri: Uri = "sip:carol@partner.example".parse().unwrap();
        assert!(
            rig.engine.registrar.find_contact(&uri, rig.now).is_some(),
            "so alice now holds a binding for carol's address"
        );
        let out = rig.authed(
            "bob",
            4022,
            "INVITE",
            "sip:carol@partner.example",
            "Proxy-Authorization",
            "",
        );
        assert_eq!(
            requests(&out),
            [(Method::Invite, partner)],
            "bob's call to carol@partner.example goes to the partner's trunk: {out:?}"
        );
        // A call out through the trunk that follows a stranger's transfer is refused; one
        // that follows a colleague's is not.
        let out = rig.authed(
            "bob",
            4023,
            "INVITE",
            "sip:premium@partner.example",
            "Proxy-Authorization",
            "Referred-By: <sip:mallory@evil.example>\r\n",
        );
        assert!(
            requests(&out).is_empty(),
            "no toll call on a stranger's REFER: {out:?}"
        );
        assert_eq!(statuses(&out).last(), Some(&403), "refused");
        let out = rig.authed(
            "bob",
            4024,
            "INVITE",
            "sip:carol@partner.example",
            "Proxy-Authorization",
            "Referred-By: <sip:alice@hookflash.local>\r\n",
        );
        assert_eq!(
            requests(&out),
            [(Method::Invite, partner)],
            "a colleague's transfer to the partner goes out"
        );
    }

    #[test]
    fn in_dialog_requests_follow_the_route_we_marked() {
        let mut rig = Rig::new();
        let out = rig.alice_calls_bob();
        let Some(Message::Request(inv)) = out
            .iter()
            .map(|t| &t.message)
            .find(|m| matches!(m, Message::Request(_)))
        else {
            panic!("the INVITE is forwarded: {out:?}");
        };
        let record_route = inv
            .headers
            .get("Record-Route")
            .expect("we record-route")
            .to_owned();
        assert!(
            record_route.contains(";hf="),
            "our Record-Route carries the dialog's mark: {record_route}"
        );
        let bye = |route: &str, branch: &str| {
            format!(
                "BYE sip:bob@127.0.0.1:4002 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:4000;branch=z9hG4bK{branch}\r\n\
From: <sip:alice@hookflash.local>;tag=f4000\r\nTo: <sip:bob@hookflash.local>;tag=bobtag\r\n\
Call-ID: c4000INVITE\r\nCSeq: 3 BYE\r\nRoute: {route}\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
            )
        };
        let out = rig.input(&bye(&record_route, "bye1"), flow(4000));
        assert_eq!(
            requests(&out),
            [(Method::Bye, flow(4002))],
            "a BYE along our marked route reaches bob"
        );
        // The same mark on another dialog is worth nothing.
        let forged = bye(&record_route, "bye2").replace("Call-ID: c4000INVITE", "Call-ID: another");
        let out = rig.input(&forged, flow(4000));
        assert!(
            requests(&out).is_empty(),
            "a mark is only good for its own dialog"
        );
        assert_eq!(statuses(&out), [403]);
    }

    #[test]
    fn no_answer_rule_cancels_says_181_and_retargets_to_the_voicemail_uri() {
        use crate::rules::{NoAnswer, Rules};
        let mut rig = Rig::new();
        let rule = Rules {
            no_answer: Some(NoAnswer {
                after: 2,
                to: ForwardTarget::Voicemail,
            }),
            ..Rules::default()
        };
        rig.engine.users.rules().set("carol", &rule).unwrap();
        for (user, port) in [("carol", 4002), ("voicemail", 4009)] {
            let out = rig.authed(
                user,
                port,
                "REGISTER",
                "sip:hookflash.local",
                "Authorization",
                "",
            );
            assert_eq!(statuses(&out), [200], "{user} registers");
        }
        let out = rig.authed(
            "alice",
            4000,
            "INVITE",
            "sip:carol@hookflash.local",
            "Proxy-Authorization",
            "",
        );
        assert_eq!(
            requests(&out),
            [(Method::Invite, flow(4002))],
            "carol's phone rings first"
        );
        let Some(Message::Request(inv)) = out
            .into_iter()
            .map(|t| t.message)
            .find(|m| matches!(m, Message::Request(_)))
        else {
            unreachable!()
        };
        let mut ringing = inv.response(180, None, Some("carol"));
        ringing
            .headers
            .push("Contact", "<sip:carol@127.0.0.1:4002>");
        rig.engine
            .handle_message(ringing.into(), flow(4002), rig.now);
        let _ = std::iter::from_fn(|| rig.engine.poll_transmit()).count();
        let out = rig.advance(Duration::from_millis(1900));
        assert!(out.is_empty(), "nothing happens before the rule's 2 s");
        let out = rig.advance(Duration::from_millis(100));
        assert_eq!(
            requests(&out),
            [(Method::Cancel, flow(4002)), (Method::Invite, flow(4009))],
            "at 2 s carol's phone is cancelled and voicemail is called"
        );
        assert_eq!(statuses(&out), [181], "alice hears Call Is Being Forwarded");
        let vm = out
            .iter()
            .find_map(|t| match &t.message {
                Message::Request(r) if r.method == Method::Invite => Some(r.clone()),
                _ => None,
            })
            .unwrap();
        assert_eq!(
            vm.uri.to_string(),
            "sip:voicemail@127.0.0.1:4009;target=sip:carol%40hookflash.local;cause=408",
            "the voicemail contact with the RFC 4458 mailbox and cause appended"
        );
        assert!(
            vm.headers
                .get("Diversion")
                .is_some_and(|d| d.contains("reason=no-answer")),
            "and a Diversion header saying why"
        );
        let out = rig.advance(Duration::from_secs(9));
        assert!(
            statuses(&out).is_empty(),
            "the no-answer timeout restarted with the new step: no 408 at 10 s from the start"
        );
    }

    #[test]
    fn old_nonce_is_challenged_again_as_stale() {
        let mut rig = Rig::new();
        let reg = |auth: &str, branch: &str| {
            format!(
                "REGISTER sip:hookflash.local SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:4000;branch=z9hG4bK{branch}\r\n\
From: <sip:bob@hookflash.local>;tag=1\r\nTo: <sip:bob@hookflash.local>\r\nCall-ID: r\r\nCSeq: 1 REGISTER\r\n{auth}\r\n"
            )
        };
        let out = rig.input(&reg("", "s1"), flow(4000));
        let Message::Response(r) = &out[0].message else {
            panic!("a response")
        };
        let ch: Challenge = r.headers.get("WWW-Authenticate").unwrap().parse().unwrap();
        assert!(!ch.stale, "a first challenge is not stale");
        rig.now += Duration::from_secs(301);
        let token = Token::issue(SECRET, "bob", Duration::from_secs(3600), UNIX0);
        let value = authorization(
            &ch,
            "REGISTER",
            "sip:hookflash.local",
            &token.sip_username(),
            token.password(Scope::Sip).expect("the token opens SIP"),
            1,
            "cn",
        );
        let out = rig.input(
            &reg(&format!("Authorization: {value}\r\n"), "s2"),
            flow(4000),
        );
        let Message::Response(r) = &out[0].message else {
            panic!("a response")
        };
        assert_eq!(
            r.status, 401,
            "right credentials on a 5-minute-old nonce: challenge again"
        );
        let ch: Challenge = r.headers.get("WWW-Authenticate").unwrap().parse().unwrap();
        assert!(
            ch.stale,
            "with stale=true, so the client retries without asking the user"
        );
    }

    #[test]
    fn only_a_tokens_sip_grant_signs_in_over_sip() {
        let mut rig = Rig::new();
        let reg = |auth: &str, branch: &str| {
            format!(
                "REGISTER sip:hookflash.local SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:4000;branch=z9hG4bK{branch}\r\n\
From: <sip:bob@hookflash.local>;tag=1\r\nTo: <sip:bob@hookflash.local>\r\nCall-ID: r\r\nCSeq: 1 REGISTER\r\n\
Contact: <sip:bob@127.0.0.1:4000>\r\n{auth}\r\n"
            )
        };
        let token = Token::issue(SECRET, "bob", Duration::from_secs(3600), UNIX0);
        let mut answers = Vec::new();
        for (i, scope) in [Scope::Turn, Scope::Api, Scope::Sip]
            .into_iter()
            .enumerate()
        {
            let out = rig.input(&reg("", &format!("c{i}")), flow(4000));
            let Message::Response(r) = &out[0].message else {
                panic!("a response")
            };
            let ch: Challenge = r.headers.get("WWW-Authenticate").unwrap().parse().unwrap();
            let value = authorization(
                &ch,
                "REGISTER",
                "sip:hookflash.local",
                &token.sip_username(),
                token.password(scope).expect("the token opens every scope"),
                1,
                "cn",
            );
            let out = rig.input(
                &reg(&format!("Authorization: {value}\r\n"), &format!("a{i}")),
                flow(4000),
            );
            let Message::Response(r) = &out[0].message else {
                panic!("a response")
            };
            answers.push((scope, r.status));
        }
        assert_eq!(
            answers,
            [(Scope::Turn, 403), (Scope::Api, 403), (Scope::Sip, 200)],
            "the TURN and API grants (seen by relays and web servers) are no SIP password"
        );
    }

    #[test]
    fn request_coming_back_unchanged_is_a_loop() {
        let mut rig = Rig::new();
        let out = rig.alice_calls_bob();
        let Some(Message::Request(mut fwd)) = out
            .into_iter()
            .map(|t| t.message)
            .find(|m| matches!(m, Message::Request(_)))
        else {
            panic!("the INVITE was forwarded")
        };
        // A downstream element retargets it back to the AOR and returns it to us.
        fwd.uri = "sip:bob@hookflash.local".parse().unwrap();
        fwd.headers
            .push_front("Via", "SIP/2.0/UDP 127.0.0.1:4002;branch=z9hG4bKback");
        rig.engine.handle_message(fwd.into(), flow(4002), rig.now);
        let out: Vec<_> = std::iter::from_fn(|| rig.engine.poll_transmit()).collect();
        assert_eq!(
            statuses(&out),
            [100, 482],
            "our own branch hash in a Via: 482 Loop Detected"
        );
    }
}
