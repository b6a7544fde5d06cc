//! Hookflash switchboard: the embedded SIP registrar and stateful proxy.
//!
//! One process (or one task inside a test) that Hookflash clients register with and call
//! through, so Hookflash runs on one machine with nothing else installed. It speaks SIP over
//! UDP and TCP on one port, authenticates with the same ephemeral tokens as Kamailio
//! `auth_ephemeral`, and keeps its users in SQLite.
//!
//! # Driving it
//!
//! ```no_run
//! # async fn demo() -> Result<(), hookflash_switchboard::SwitchboardError> {
//! use std::time::Duration;
//! use hookflash_switchboard::{Config, Switchboard};
//!
//! let sb = Switchboard::start(Config::local("a shared secret")).await?;
//! let addr = sb.local_addr();          // UDP and TCP, same port
//! let token = sb.issue_token("alice", Duration::from_secs(3600));
//! sb.users().add("bob", sb.domain(), Some("bob's password"))?;
//! // ... clients register as sip:alice@hookflash.local, sending to `addr` ...
//! sb.shutdown().await;                 // the port is free again when this returns
//! # Ok(()) }
//! ```
//!
//! [`Config::local`] uses the domain `hookflash.local`: clients must use it in their AORs
//! (`sip:alice@hookflash.local`), as the REGISTER Request-URI (`sip:hookflash.local`) and it is
//! the digest realm. Because the domain does not resolve, every request is *sent* to
//! [`SwitchboardHandle::local_addr`] (the client's outbound proxy). `sip:alice@IP:PORT` with the
//! switchboard's own address is accepted as an alias of the domain.
//!
//! The binary `hookflash-switchboard` wraps the same library: `serve`, `token USER --ttl 1h`,
//! `users add|list|remove` (see `--help`).
//!
//! # Authentication
//!
//! - REGISTER is challenged with `401` + `WWW-Authenticate`; out-of-dialog INVITE, SUBSCRIBE,
//!   MESSAGE, REFER, OPTIONS (and any other method) with `407` + `Proxy-Authenticate`. Digest
//!   is MD5 with `qop=auth`. Nonces are stateless, HMAC-signed and carry their issue time; after
//!   5 minutes they are answered with a new challenge carrying `stale=true`.
//! - A digest username of the form `EXPIRY:USER` (digits, colon, user) is a token: its
//!   password must be `base64(HMAC-SHA1(secret, "EXPIRY:USER"))` and `EXPIRY` must not be past,
//!   exactly like Kamailio `auth_ephemeral` with `username_format=1`. Any other username is a
//!   database user whose stored HA1 (`MD5(user:realm:password)`) must verify.
//! - The authenticated user must be the To user of a REGISTER and the From user of a proxied
//!   request, else `403 Identity Mismatch`.
//! - Wrong credentials are `403 Forbidden`, not a second `401`/`407` (clients would retry for
//!   ever); an expired token is `403 Token Expired`; an unknown user `403 Forbidden`. A nonce
//!   that is not ours earns a fresh challenge.
//! - Not challenged: requests with a To tag (in dialog), ACK, CANCEL, and OPTIONS addressed to
//!   the switchboard itself (`sip:hookflash.local`, `sip:IP:PORT`), which get `200` at once.
//!   A `Route` to us does **not** exempt a request without a To tag: clients with an outbound
//!   proxy pre-load that Route on their initial requests, so exempting it would open the door.
//! - Replays of a captured answer are possible within the nonce lifetime (no nonce counts are
//!   kept); the digest `uri` is not compared with the Request-URI.
//!
//! # Registrar
//!
//! Bindings live in memory. The interval is the contact's `expires` parameter, else the
//! `Expires` header, else 3600 s, clamped to 30..=3600 s (no `423`); `expires=0` removes a
//! contact, `Contact: *` with `Expires: 0` removes all. At most 10 contacts per user. Each
//! binding remembers its *flow* — the transport and source address of the REGISTER — and
//! requests for it go back over that flow (the same TCP connection, or the UDP source address,
//! which works through NAT). When a TCP connection closes, its bindings are dropped. The `200`
//! lists every contact with its remaining `expires`.
//!
//! # Routing
//!
//! On the Request-URI, after popping the `Route` entries that name us:
//! - `sip:USER@DOMAIN` (or our `IP:PORT` as host): parallel fork to every registered contact of
//!   USER, each over its flow. Not registered but known (in the database, or signed in with a
//!   token since start) → `480`; unknown → `404`.
//! - `tel:NUMBER` and `sip:NUMBER@DOMAIN;user=phone`: the number without visual separators
//!   (`-.() `) is tried as a user name, first as written (`+15551234`), then without the `+`
//!   (`15551234`); if no such user exists → `404`.
//! - A URI that is a registered contact: forwarded over that contact's flow (in-dialog requests
//!   whose remote target is one of our users).
//! - Any other host: in-dialog requests that came through our Record-Route are forwarded to the
//!   URI's host:port (IP literals only, no DNS; transport from `;transport=`, else from the
//!   Route entry we popped); everything else is `403 Relaying Denied`. The switchboard is not a
//!   gateway to other domains.
//! - A remaining `Route` beyond us is followed (loose routing) to its IP literal host.
//!
//! Record-Route is added to INVITE, SUBSCRIBE and REFER that start a dialog:
//! `<sip:IP:PORT;transport=udp|tcp;lr>` with the transport of the leg. When the caller's and
//! callee's legs use different transports, two entries are added (RFC 5658 double
//! Record-Route, marked `r2=on`): the top one names the callee's transport and the other the
//! caller's, so each side reaches us on its own transport and the one we pop last tells the
//! onward transport. `Max-Forwards` is decremented (`483` at zero); a request that comes back
//! with our own loop-hash branch in a Via is a loop (`482`). Our Proxy-Authorization is removed
//! before forwarding.
//!
//! # Transactions
//!
//! A stateful proxy per RFC 3261 §16: INVITE gets `100 Trying` at once; provisionals go
//! upstream; every 2xx goes upstream at once and the other branches are cancelled; otherwise
//! the best final response goes up when all branches are final (2xx > 6xx > lowest class,
//! lowest code, synthetic 408/503 last; 503 becomes 500). CANCEL is matched by branch and
//! source IP → `200`, CANCEL downstream (after a provisional, as RFC 3261 §9.1 requires), and
//! the downstream `487` goes up; if none comes within 4 s the switchboard answers `487` itself.
//! ACK for a non-2xx is absorbed (the proxy ACKs downstream non-2xx itself); ACK for a 2xx is
//! routed end to end like an in-dialog request. No final answer within
//! [`Config::no_answer_timeout`] → CANCEL downstream and `408` upstream. Over UDP, requests we
//! forward are retransmitted (Timers A/E) and given up after 32 s (`408`), non-2xx finals we
//! send upstream are retransmitted until the ACK (Timer G), and retransmitted requests are
//! answered with the last response. A send failure (connection refused, connection closed)
//! fails its branch with `480`.
//!
//! Responses go upstream on the flow the request came from. `received` and `rport` are added
//! to the top Via of every request (rport even when not asked for, like Kamailio
//! `force_rport`), so stateless forwarding by Via (stray 2xx) reaches the same place.
//!
//! # Robustness and privacy
//!
//! Bytes that do not parse are logged (the kind of fault only) and dropped. A request that
//! parses but fails validation (a bad CSeq, a bad Max-Forwards, a missing mandatory header)
//! is answered `400` when it has a Via and the From, To, Call-ID and CSeq headers, and dropped
//! otherwise. Nothing from the wire is unwrapped. Log lines carry user names, URIs, Call-IDs
//! and tokens only through [`hookflash_core::privacy::redact`]: one `debug` line per message in
//! and out, `warn` for faults. Set `RUST_LOG=hookflash_switchboard=debug` to see them.
//!
//! # Not (yet) here
//!
//! Forwarding and no-answer rules, voicemail and MWI (DESIGN §4), TLS/WebSocket transports,
//! DNS resolution of other domains, RFC 5626 outbound flow tokens, and the registrar's
//! Call-ID/CSeq ordering check (RFC 3261 §10.3 step 7).
#![warn(missing_docs)]

pub mod config;
mod engine;
pub mod nonce;
pub mod registrar;
pub mod routing;
mod server;
pub mod users;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hookflash_core::auth::{unix_now, Token};
use hookflash_core::sip::Transport;
use tokio::sync::{mpsc, oneshot};
use tracing::info;

pub use config::{parse_duration, Config, FileConfig, DEFAULT_DOMAIN};
pub use engine::BindingInfo;
pub use users::{UserRecord, UserStore};

/// Why the switchboard could not start or do what was asked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SwitchboardError {
    /// The UDP socket or TCP listener could not be bound (port in use, no such address).
    #[error("cannot bind: {0}")]
    Bind(#[source] std::io::Error),
    /// The user database failed (cannot open, corrupt, locked).
    #[error("user database: {0}")]
    Database(String),
    /// A configuration value is missing or invalid (the detail says which).
    #[error("configuration: {0}")]
    Config(String),
    /// A user name that cannot be a SIP user part or a token user.
    #[error("invalid user name: {0}")]
    InvalidUser(String),
}

impl SwitchboardError {
    /// A stable code for scripts and the UI.
    pub fn code(&self) -> &'static str {
        match self {
            SwitchboardError::Bind(_) => "switchboard.bind",
            SwitchboardError::Database(_) => "switchboard.database",
            SwitchboardError::Config(_) => "switchboard.config",
            SwitchboardError::InvalidUser(_) => "switchboard.invalid_user",
        }
    }
}

/// The switchboard; see [`Switchboard::start`].
#[derive(Debug)]
pub struct Switchboard;

impl Switchboard {
    /// Bind UDP and TCP, open the user database and start serving in a background task.
    pub async fn start(config: Config) -> Result<SwitchboardHandle, SwitchboardError> {
        if config.secret.is_empty() {
            return Err(SwitchboardError::Config(
                "the secret must not be empty".into(),
            ));
        }
        if config.domain.is_empty() || config.domain.contains([' ', '@', ':', ';']) {
            return Err(SwitchboardError::Config(format!(
                "bad domain {:?}",
                config.domain
            )));
        }
        let users = Arc::new(match &config.db_path {
            Some(p) => UserStore::open(p)?,
            None => UserStore::in_memory()?,
        });
        let (transport, events) = Transport::bind(config.bind, config.port, true)
            .await
            .map_err(SwitchboardError::Bind)?;
        let port = transport.local_udp().port();
        let advertised = server::advertised_ip(config.bind);
        let local = routing::Local::new(&config.domain, config.bind, advertised, port);
        let engine = engine::Engine::new(
            local,
            &config.secret,
            users.clone(),
            config.no_answer_timeout,
            std::time::Instant::now(),
            unix_now(),
        );
        let (stop_tx, stop_rx) = oneshot::channel();
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(server::run(engine, transport, events, cmd_rx, stop_rx));
        let local_addr = SocketAddr::new(advertised, port);
        info!(addr = %local_addr, domain = %config.domain, "switchboard started");
        Ok(SwitchboardHandle {
            local_addr,
            bind_addr: SocketAddr::new(config.bind, port),
            domain: config.domain,
            secret: config.secret,
            users,
            commands: cmd_tx,
            stop: Some(stop_tx),
            task: Some(task),
        })
    }
}

/// A running switchboard. Dropping it stops the switchboard too, but only
/// [`SwitchboardHandle::shutdown`] waits until the port is free.
pub struct SwitchboardHandle {
    local_addr: SocketAddr,
    bind_addr: SocketAddr,
    domain: String,
    secret: String,
    users: Arc<UserStore>,
    commands: mpsc::UnboundedSender<server::Command>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for SwitchboardHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SwitchboardHandle")
            .field("local_addr", &self.local_addr)
            .field("domain", &self.domain)
            .finish_non_exhaustive()
    }
}

impl SwitchboardHandle {
    /// Where clients send SIP: the same port serves UDP and TCP.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The SIP domain (and digest realm).
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// Issue a token for `user`, valid for `ttl` from now, signed with the secret.
    pub fn issue_token(&self, user: &str, ttl: Duration) -> Token {
        Token::issue(&self.secret, user, ttl, unix_now())
    }

    /// The user database.
    pub fn users(&self) -> &UserStore {
        &self.users
    }

    /// The live registrations of `user` (empty if the switchboard has stopped).
    pub async fn bindings(&self, user: &str) -> Vec<BindingInfo> {
        let (tx, rx) = oneshot::channel();
        if self
            .commands
            .send(server::Command::Bindings(user.to_owned(), tx))
            .is_err()
        {
            return Vec::new();
        }
        rx.await.unwrap_or_default()
    }

    /// Stop serving, close every connection and release the port; returns when it is free.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        server::wait_ports_free(self.bind_addr).await;
        info!(addr = %self.local_addr, "switchboard stopped");
    }
}

impl Drop for SwitchboardHandle {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
