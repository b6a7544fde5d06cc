//! Hookflash switchboard: the embedded SIP registrar and stateful proxy.
//!
//! One process (or one task inside a test) that Hookflash clients register with and call
//! through, so Hookflash runs on one machine with nothing else installed. It speaks SIP over
//! UDP and TCP on one port, authenticates with the same ephemeral tokens as Kamailio
//! `auth_ephemeral`, applies per-user forwarding rules, runs voicemail (a headless core agent
//! in the same process), notifies waiting messages (RFC 3842), serves a small HTTP API, and
//! keeps users, rules and the voicemail index in SQLite.
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
//! let rules = serde_json::from_str(r#"{"noAnswer": {"after": 15, "to": "voicemail"}}"#).unwrap();
//! sb.set_rules("alice", &rules)?;      // forwarding rules apply from the next call
//! let api = sb.http_addr();            // the HTTP API (Config::local picks a port)
//! let messages = sb.voicemail("alice")?;
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
//! `users add|list|remove`, `rules get|set|clear USER`, `voicemail list USER` (see `--help`).
//!
//! # Authentication
//!
//! - REGISTER is challenged with `401` + `WWW-Authenticate`; out-of-dialog INVITE, SUBSCRIBE,
//!   MESSAGE, REFER, OPTIONS (and any other method) with `407` + `Proxy-Authenticate`. Digest
//!   is MD5 with `qop=auth`. Nonces are stateless, HMAC-signed and carry their issue time; after
//!   5 minutes they are answered with a new challenge carrying `stale=true`.
//! - A digest username of the form `EXPIRY:USER` (digits, colon, user) is a token: its
//!   password must be the token's `sip` grant, `base64(HMAC-SHA1(key, "EXPIRY:USER"))` with
//!   `key` the SIP scope's key (`hookflash_core::auth::scope_key`), and `EXPIRY` must not be
//!   past, exactly like Kamailio `auth_ephemeral` with `username_format=1` and that key as its
//!   secret. Any other username is a
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
//!   USER, each over its flow — for an INVITE, subject to USER's forwarding rules (below);
//!   `sip:voicemail@DOMAIN;target=...` goes to the voicemail agent. Not registered but known (in the database, or signed in with a
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
//! # Forwarding rules
//!
//! Each user may have three rules ([`Rules`], stored in SQLite, set with
//! [`SwitchboardHandle::set_rules`], `PUT /api/rules` or `rules set`): **always**, **busy**
//! and **noAnswer** (after N seconds), each to a person (a user name or a number, routed like
//! a dialled one) or to `voicemail`. They apply to an out-of-dialog INVITE whose Request-URI
//! is one of our users:
//!
//! - *always*: the call is retargeted at once; the user's phones do not ring.
//! - *noAnswer*: the user's contacts ring for `after` seconds; then they are CANCELled and the
//!   call is retargeted. The same happens at once when every contact fails with 408 or 480
//!   (unreachable), and when the user has **no registered contact at all** and a noAnswer (or
//!   else a busy) rule: then that rule's target is rung straight away (cause 404).
//! - *busy*: when the contacts' final answers include `486` or `600` (and no `603`/`604`/
//!   `606` decline) the call is retargeted instead of passing the busy answer upstream.
//!
//! A retarget is sequential forking inside the same server transaction: the caller gets
//! `181 Call Is Being Forwarded`, the new branches carry a `Diversion` header (RFC 5806:
//! `<sip:USER@DOMAIN>;reason=unconditional|user-busy|no-answer|unavailable;counter=N`), the
//! next person's own rules apply in turn, and [`Config::no_answer_timeout`] restarts for the
//! new step. Answers of the abandoned branches no longer count (a late `2xx` still goes
//! upstream and wins). Loops are bounded: a rule whose target was already rung in this call,
//! or one more than [`MAX_FORWARD_HOPS`] forwards, is **ignored** (logged) and the call goes
//! on as if that rule did not exist — A→B→A rings B. A rule naming an unknown user is ignored
//! the same way. A caller's CANCEL, or the no-answer timeout, stops all forwarding.
//!
//! A retarget to voicemail uses the RFC 4458 URI
//! `sip:voicemail@DOMAIN;target=sip:USER%40DOMAIN;cause=CAUSE`, with cause `302` (always),
//! `486` (busy), `408` (no answer) or `404` (not registered).
//!
//! **`X-Disable-Forwarding: true`** on an INVITE (a transfer with
//! `disableForwardingAndUnanswered`) skips every rule of the target: only the target's
//! contacts ring, for the target's own noAnswer time if it has such a rule, else
//! [`Config::no_answer_timeout`]; unanswered, the call fails upstream with **`480`** (not
//! `408`); a busy answer passes through as `486`. The header is forwarded unchanged. An
//! INVITE with a `Replaces` header (attended transfer) is never forwarded by rules either.
//!
//! # Voicemail
//!
//! Voicemail is a headless core agent in the switchboard process ([`voicemail`]), signed in
//! as [`VOICEMAIL_USER`] with a token signed by the switchboard's secret (that account never
//! signs in with a database password, and `users add voicemail` is refused). Any INVITE whose
//! Request-URI user is `voicemail` is routed to the agent's registered contact with the
//! `target` and `cause` parameters appended (so the agent reads the mailbox owner from its
//! `IncomingCall.called`); the target must be one of our users (`404 No Such Mailbox`
//! before anything rings otherwise, and for a missing target); no agent registered is `480`.
//! The agent answers, plays the owner's greeting — their own (`PUT /api/greeting`, at most
//! 60 s) or the default one, which ends with a beep of [`BEEP_HZ`] Hz for [`BEEP_MS`] ms —
//! then records the caller **after the greeting** into `DATA_DIR/voicemail/OWNER/ID.wav`
//! (48 kHz mono; `OWNER` with unsafe characters `%XX`-escaped) until the caller hangs up or
//! [`Config::voicemail_max`] has been recorded (then it hangs up). The message is indexed
//! ([`VoicemailMessage`]: id, owner, caller, created, duration, heard, path); a caller who
//! hangs up before the beep leaves none.
//!
//! # Message waiting (RFC 3842)
//!
//! The switchboard is the notifier of every mailbox. An out-of-dialog `SUBSCRIBE` with
//! `Event: message-summary` to a user's AOR is authenticated like any request (`407`); only
//! the owner may subscribe (`403 Not Your Mailbox` otherwise). It is answered `200` with the
//! granted `Expires` (default and maximum 3600 s, minimum 60 s; `0` fetches once) and our
//! Contact, then at once a NOTIFY (`Subscription-State: active;expires=N`,
//! `application/simple-message-summary`: `Messages-Waiting`, `Message-Account`,
//! `Voice-Message: NEW/OLD (0/0)`), and another NOTIFY whenever the mailbox changes (a
//! message left, heard or deleted). NOTIFYs go over the flow the SUBSCRIBE came on, to its
//! Contact, retransmitted over UDP; a NOTIFY refused or unanswered for 32 s ends the
//! subscription. In-dialog SUBSCRIBEs refresh it (and NOTIFY); `Expires: 0` ends it with a
//! final `terminated` NOTIFY; so does expiry. At most 16 subscriptions per mailbox.
//!
//! # Behind Kamailio
//!
//! At scale Kamailio 5.6 can be the SIP server, with `deploy/kamailio/kamailio.cfg`
//! (registrar, record-routing stateful proxy, the same tokens through `auth_ephemeral`, UDP,
//! TCP, TLS and WebSocket, busy and unanswered calls to voicemail unless
//! `X-Disable-Forwarding: true`), and the switchboard beside it serves voicemail, MWI and
//! the HTTP API. With [`Config::voicemail_registrar`] (`serve --voicemail-registrar
//! HOST:PORT`) the voicemail agent registers as [`VOICEMAIL_USER`] to that registrar
//! instead of to the switchboard, with a token signed by the shared secret; Kamailio sends
//! it calls for `sip:voicemail@DOMAIN;target=...;cause=...` with those parameters appended to
//! its contact, as the switchboard would. Kamailio forwards message-summary SUBSCRIBEs
//! (record-routed, not authenticated by Kamailio) to the switchboard's SIP port
//! (`-A 'MWI_SERVER="sip:IP:PORT"'`), where the switchboard challenges and checks them as
//! above; its NOTIFYs follow the route set back through Kamailio to the owner. Recording,
//! indexing and the HTTP API are unchanged. The switchboard's SIP port then needs to be
//! reachable from Kamailio only. The switchboard's forwarding rules do not apply there:
//! Kamailio's configuration forwards every user's busy and unanswered calls to voicemail.
//!
//! # Trunks
//!
//! Other domains are reached only through [`Config::trunks`] (`[[trunk]]` in the file): a
//! signed-in user's request for a domain a trunk serves (or for any domain, with a `*`
//! trunk) goes to that trunk, record-routed; a Route a user preloads is followed only when it
//! names a trunk. A request from a trunk's address (over UDP, its address and port) is taken
//! without credentials when it is for one of our users, and refused (403) for anything else,
//! or when its From names our domain: a trunk cannot relay through us nor pass as one of our
//! users. In a dialog, requests go only along our marked Record-Route, whose mark (an HMAC
//! over the Call-ID, the creator's tag and the trunk leg's name) says which trunk the dialog
//! runs through: they reach a registered contact, or that trunk — never an address the
//! request names, and never back to a trunk they came from. A registered contact is reached
//! by its own URI outside a dialog only if its host is an IP address or `.invalid`, so that
//! registering `Contact: <sip:carol@partner.example>` does not take carol's calls. A call
//! out through a trunk that follows a transfer by someone outside our domain (Referred-By) is
//! refused (`403 Transfer Out Refused`): a stranger's REFER does not buy calls on our account.
//! Trust in a trunk rests on its address: over UDP a spoofed source can pass as the trunk
//! for requests to our users (answers go to the real trunk), so keep trunks on networks
//! where source addresses are filtered. Without trunks every foreign domain is `403
//! Relaying Denied`.
//!
//! # HTTP API
//!
//! With [`Config::http_port`] set (`Config::local` picks a port; see
//! [`SwitchboardHandle::http_addr`]) a small JSON API serves each user their own data,
//! authenticated with `Authorization: Bearer EXPIRY:USER:api=PASSWORD` (a token's `api`
//! grant: a token issued without that scope is refused) or HTTP `Basic` with a database user's password. No path names a user, so a
//! user only ever reaches their own mailbox: another user's message id is `404`.
//!
//! | request | answer |
//! |---|---|
//! | `GET /api/voicemail` | `200` `[{id, caller, created, durationMs, heard}]`, newest first |
//! | `GET /api/voicemail/{id}` | `200` `audio/wav` |
//! | `POST /api/voicemail/{id}/heard` | `200` the message, now heard (MWI NOTIFY) |
//! | `DELETE /api/voicemail/{id}` | `204`, the file deleted too (MWI NOTIFY) |
//! | `GET /api/rules` | `200` `{"always": null\|{"to": T}, "busy": ..., "noAnswer": null\|{"after": N, "to": T}}` |
//! | `PUT /api/rules` | `200` the rules as stored (same JSON; missing keys are null) |
//! | `GET`/`PUT`/`DELETE /api/greeting` | the greeting callers hear (`audio/wav`); set (WAV body) → `204`; back to the default → `204` |
//!
//! Errors are JSON `{"code": "http.…", "message": …}`: `401` (no, malformed or refused
//! credentials, with `WWW-Authenticate: Bearer`), `403` (the voicemail account), `404`, `405`,
//! `400` (`http.bad_json`, `http.invalid_rules`, `http.invalid_greeting`), `413` (bodies over
//! 64 KiB of JSON or 12 MiB of WAV), `408` (a body slower than 30 s). See
//! `docs/switchboard-api.md`.
//!
//! # Blocking work
//!
//! The engine reads the database on its own task for authentication, for a user's rules
//! (once per initial INVITE) and for mailbox counts (once per SUBSCRIBE or mailbox change):
//! primary-key and indexed reads of a local SQLite file, tens of microseconds. Everything that
//! writes — rules, the voicemail index, recordings, greetings, HTTP bodies — runs on the
//! blocking pool (`spawn_blocking`) or in the media tasks of the voicemail agent.
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
//! A request that does not parse is answered as RFC 3261 asks (`505` for another SIP
//! version, `416` for an unknown Request-URI scheme, `400` naming the fault), and one that
//! parses but fails validation (a bad CSeq or Via, a second From, headers in the
//! Request-URI, a missing mandatory header) `400`, whenever it has a Via and a CSeq to address
//! the answer with; other bytes are logged (the kind of fault only) and dropped. RFC 4475's
//! torture messages each get the answer the RFC asks for. A `Proxy-Require` (or, where we
//! answer ourselves, a `Require`) is answered `420` with the tags in `Unsupported`: we support
//! no extension there. Nothing from the wire is unwrapped. Log lines carry user names, URIs, Call-IDs
//! and tokens only through [`hookflash_core::privacy::redact`]: one `debug` line per message in
//! and out, `warn` for faults. Set `RUST_LOG=hookflash_switchboard=debug` to see them.
//!
//! # Transports
//!
//! UDP and TCP on one port; with [`Config::tls`] SIP over TLS, and with [`Config::ws_port`] /
//! [`Config::wss_port`] SIP over WebSocket (RFC 7118), plain or secure. Each leg is
//! record-routed with its own listener (double Record-Route when the transports differ), and
//! requests reach a client over the connection it registered on. The HTTP API is served over
//! HTTPS with the same certificate, and refused in clear text beyond loopback.
//!
//! # Not (yet) here
//!
//! Trunks to other domains (a foreign domain is refused with 403), DNS resolution of
//! other domains, RFC 5626 outbound flow tokens, the registrar's Call-ID/CSeq ordering check
//! (RFC 3261 §10.3 step 7), other voicemail URI styles than RFC 4458, and a way for users to
//! call in and listen to their messages (the HTTP API serves them).
#![warn(missing_docs)]

pub mod config;
pub mod demo;
pub mod directory;
mod engine;
mod http;
pub mod login_limits;
pub mod mailbox;
pub mod mwi;
pub mod nonce;
pub mod registrar;
pub mod routing;
pub mod rules;
mod server;
mod service;
pub mod users;
pub mod voicemail;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hookflash_core::auth::{unix_now, Scope, Token};
use hookflash_core::sip::{Transport, TransportKind};
use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};

pub use config::{parse_duration, Config, FileConfig, Trunk, TrunkFile, DEFAULT_DOMAIN};
pub use engine::{BindingInfo, DISABLE_FORWARDING_HEADER, MAX_FORWARD_HOPS};
pub use http::MAX_CONNECTIONS as HTTP_MAX_CONNECTIONS;
pub use mailbox::{MailboxCounts, VoicemailMessage};
pub use rules::{ForwardTarget, ForwardTo, NoAnswer, Rules};
pub use users::{UserRecord, UserStore, VOICEMAIL_USER};
pub use voicemail::{BEEP_HZ, BEEP_MS};

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
    /// Forwarding rules that cannot be stored (the detail says why).
    #[error("invalid forwarding rules: {0}")]
    InvalidRules(String),
    /// A greeting that is not a usable WAV file.
    #[error("invalid greeting: {0}")]
    InvalidGreeting(String),
    /// A file of the data directory could not be read, written or removed.
    #[error("data directory: {0}")]
    Io(String),
    /// The voicemail agent could not be started.
    #[error("voicemail: {0}")]
    Voicemail(String),
    /// A demo contact ([`demo`]) could not be started.
    #[error("demo directory: {0}")]
    Demo(String),
}

impl SwitchboardError {
    /// A stable code for scripts and the UI.
    pub fn code(&self) -> &'static str {
        match self {
            SwitchboardError::Bind(_) => "switchboard.bind",
            SwitchboardError::Database(_) => "switchboard.database",
            SwitchboardError::Config(_) => "switchboard.config",
            SwitchboardError::InvalidUser(_) => "switchboard.invalid_user",
            SwitchboardError::InvalidRules(_) => "switchboard.invalid_rules",
            SwitchboardError::InvalidGreeting(_) => "switchboard.invalid_greeting",
            SwitchboardError::Io(_) => "switchboard.io",
            SwitchboardError::Voicemail(_) => "switchboard.voicemail",
            SwitchboardError::Demo(_) => "switchboard.demo",
        }
    }
}

/// The switchboard; see [`Switchboard::start`].
#[derive(Debug)]
pub struct Switchboard;

/// Create (if needed) the data directory: the configured one, or a new temporary one.
fn make_data_dir(config: &Config) -> Result<(PathBuf, bool), SwitchboardError> {
    let (dir, temporary) = match &config.data_dir {
        Some(d) => (d.clone(), false),
        None => (
            std::env::temp_dir().join(format!(
                "hookflash-switchboard-{}-{:016x}",
                std::process::id(),
                rand::random::<u64>()
            )),
            true,
        ),
    };
    std::fs::create_dir_all(&dir)
        .map_err(|e| SwitchboardError::Io(format!("{}: {e}", dir.display())))?;
    Ok((dir, temporary))
}

/// Start the TLS and WebSocket listeners the configuration asks for: what listens where, and
/// the TLS configuration (which the HTTP API serves with too).
async fn listen_streams(
    config: &Config,
    transport: &Transport,
) -> Result<
    (
        Vec<(TransportKind, SocketAddr)>,
        Option<Arc<rustls::ServerConfig>>,
    ),
    SwitchboardError,
> {
    let tls = config
        .tls
        .as_ref()
        .map(|t| hookflash_core::sip::tls::server_config(&t.cert, &t.key))
        .transpose()
        .map_err(|e| SwitchboardError::Config(e.to_string()))?;
    let mut out = Vec::new();
    let at = |port: u16| SocketAddr::new(config.bind, port);
    if let (Some(t), Some(tls)) = (&config.tls, &tls) {
        let addr = transport
            .listen_tls(at(t.port), tls.clone())
            .await
            .map_err(SwitchboardError::Bind)?;
        out.push((TransportKind::Tls, addr));
    }
    if let Some(port) = config.ws_port {
        let addr = transport
            .listen_ws(at(port), None)
            .await
            .map_err(SwitchboardError::Bind)?;
        out.push((TransportKind::Ws, addr));
    }
    if let Some(port) = config.wss_port {
        let tls = tls.clone().ok_or_else(|| {
            SwitchboardError::Config("secure WebSocket needs a TLS certificate and key".into())
        })?;
        let addr = transport
            .listen_ws(at(port), Some(tls))
            .await
            .map_err(SwitchboardError::Bind)?;
        out.push((TransportKind::Wss, addr));
    }
    Ok((out, tls))
}

impl Switchboard {
    /// Bind UDP and TCP (and the HTTP API when configured), open the database, start the
    /// voicemail agent, and serve in background tasks.
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
        let (data_dir, temporary) = make_data_dir(&config)?;
        let temp_dir = temporary.then(|| data_dir.clone());
        let (transport, events) =
            Transport::bind_with(config.bind, config.port, true, config.tcp_limits)
                .await
                .map_err(SwitchboardError::Bind)?;
        let port = transport.local_udp().port();
        let advertised = server::advertised_ip(config.bind);
        let mut local = routing::Local::new(&config.domain, config.bind, advertised, port);
        let (streams, http_tls) = listen_streams(&config, &transport).await?;
        if config.http_port.is_some() && !config.bind.is_loopback() && http_tls.is_none() {
            // Passwords and tokens travel on it, and a voicemail message is private.
            return Err(SwitchboardError::Config(format!(
                "the HTTP API would be open on {} in clear text: keep it on loopback \
                 (--bind 127.0.0.1), or give a certificate (--tls-cert, --tls-key) to serve \
                 it over HTTPS",
                config.bind
            )));
        }
        for (kind, addr) in &streams {
            local = local.with_port(*kind, addr.port());
        }
        let engine = engine::Engine::new(
            local,
            &config.secret,
            users.clone(),
            config.no_answer_timeout,
            std::time::Instant::now(),
            unix_now(),
        )
        .with_trunks(config.trunks.clone());
        let (stop_tx, stop_rx) = oneshot::channel();
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(server::run(engine, transport, events, cmd_rx, stop_rx));
        if config.db_path.is_some() {
            // Another process may write the file (the CLI beside a running switchboard).
            tokio::spawn(watch_directory(users.clone(), cmd_tx.clone()));
        }
        let local_addr = SocketAddr::new(advertised, port);
        let services = Arc::new(service::Services {
            users: (*users).clone(),
            data_dir: data_dir.clone(),
            default_greeting: voicemail::default_greeting_path(&data_dir),
            commands: cmd_tx.clone(),
        });
        let mut handle = SwitchboardHandle {
            streams: streams
                .into_iter()
                .map(|(kind, addr)| (kind, SocketAddr::new(advertised, addr.port())))
                .collect(),
            local_addr,
            bind_addr: SocketAddr::new(config.bind, port),
            domain: config.domain.clone(),
            secret: config.secret.clone(),
            users: users.clone(),
            commands: cmd_tx.clone(),
            stop: Some(stop_tx),
            task: Some(task),
            data_dir: data_dir.clone(),
            temp_dir,
            services: services.clone(),
            voicemail: None,
            http: None,
            http_addr: None,
        };
        let setup = voicemail::Setup {
            server: config.voicemail_registrar.unwrap_or(local_addr),
            bind_ip: advertised,
            domain: config.domain.clone(),
            secret: config.secret.clone(),
            data_dir,
            store: users.voicemail(),
            max: config.voicemail_max,
            commands: cmd_tx,
        };
        match voicemail::Voicemail::start(setup).await {
            Ok(vm) => handle.voicemail = Some(vm),
            Err(e) => {
                handle.shutdown().await;
                return Err(e);
            }
        }
        if let Some(http_port) = config.http_port {
            let api = http::Api {
                services,
                secret: config.secret.clone(),
                domain: config.domain.clone(),
                limits: Default::default(),
            };
            match http::HttpServer::start(config.bind, http_port, api, http_tls.clone()).await {
                Ok(server) => {
                    handle.http_addr = Some(SocketAddr::new(advertised, server.addr.port()));
                    handle.http = Some(server);
                }
                Err(e) => {
                    handle.shutdown().await;
                    return Err(e);
                }
            }
        }
        info!(addr = %local_addr, streams = ?handle.streams, http = ?handle.http_addr, domain = %config.domain, "switchboard started");
        Ok(handle)
    }
}

/// Reload the directory when another process changed the database, off the proxy's loop,
/// until the switchboard stops (its command channel closes).
async fn watch_directory(users: Arc<UserStore>, alive: mpsc::UnboundedSender<server::Command>) {
    let mut tick = tokio::time::interval(directory::REFRESH_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !alive.is_closed() {
        tick.tick().await;
        let users = users.clone();
        match tokio::task::spawn_blocking(move || users.refresh_if_changed()).await {
            Ok(Ok(true)) => info!("database changed by another process: directory reloaded"),
            Ok(Ok(false)) => {}
            Ok(Err(e)) => warn!(error = %e, "directory not reloaded"),
            Err(_) => return,
        }
    }
}

/// A running switchboard. Dropping it stops the switchboard too, but only
/// [`SwitchboardHandle::shutdown`] waits until the port is free.
pub struct SwitchboardHandle {
    /// The TLS and WebSocket listeners' addresses.
    streams: Vec<(TransportKind, SocketAddr)>,
    local_addr: SocketAddr,
    bind_addr: SocketAddr,
    domain: String,
    secret: String,
    users: Arc<UserStore>,
    commands: mpsc::UnboundedSender<server::Command>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    data_dir: PathBuf,
    /// The data directory, when it is a temporary one to remove.
    temp_dir: Option<PathBuf>,
    services: Arc<service::Services>,
    voicemail: Option<voicemail::Voicemail>,
    http: Option<http::HttpServer>,
    http_addr: Option<SocketAddr>,
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

    /// Where clients reach SIP over TLS, WS or WSS, when configured ([`Config::tls`],
    /// [`Config::ws_port`], [`Config::wss_port`]).
    pub fn stream_addr(&self, kind: TransportKind) -> Option<SocketAddr> {
        self.streams
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, a)| *a)
    }

    /// The SIP domain (and digest realm).
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// Issue a token for `user` that opens every scope, valid for `ttl` from now.
    pub fn issue_token(&self, user: &str, ttl: Duration) -> Token {
        Token::issue(&self.secret, user, ttl, unix_now())
    }

    /// Issue a token for `user` that opens only `scopes`, valid for `ttl` from now.
    pub fn issue_scoped_token(&self, user: &str, scopes: &[Scope], ttl: Duration) -> Token {
        Token::issue_scoped(&self.secret, user, scopes, ttl, unix_now())
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

    /// Where the HTTP API listens, when it is enabled ([`Config::http_port`]).
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_addr
    }

    /// The data directory: voicemail recordings and greetings.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Where recordings live: `DATA_DIR/voicemail/OWNER/ID.wav`.
    pub fn voicemail_dir(&self) -> PathBuf {
        self.data_dir.join("voicemail")
    }

    /// The forwarding rules of `user` (none by default). Blocks on SQLite briefly.
    pub fn rules(&self, user: &str) -> Result<Rules, SwitchboardError> {
        self.services.rules(user)
    }

    /// Replace the forwarding rules of `user` (validated; empty rules remove them). They
    /// apply to the next call. Blocks on SQLite briefly.
    pub fn set_rules(&self, user: &str, rules: &Rules) -> Result<(), SwitchboardError> {
        self.services.set_rules(user, rules)
    }

    /// The voicemail messages of `user`, newest first. Blocks on SQLite briefly.
    pub fn voicemail(&self, user: &str) -> Result<Vec<VoicemailMessage>, SwitchboardError> {
        self.services.messages(user)
    }

    /// Mark a message of `user` heard (message-summary subscribers are notified); whether
    /// `user` has that message.
    pub fn mark_heard(&self, user: &str, id: &str) -> Result<bool, SwitchboardError> {
        Ok(self.services.mark_heard(user, id)?.is_some())
    }

    /// Delete a message of `user` and its recording (subscribers are notified); whether
    /// `user` had it.
    pub fn delete_voicemail(&self, user: &str, id: &str) -> Result<bool, SwitchboardError> {
        self.services.delete_message(user, id)
    }

    /// Set the greeting callers of `user` hear (a WAV file of at most 60 s).
    pub fn set_greeting(&self, user: &str, wav: &[u8]) -> Result<(), SwitchboardError> {
        self.services.set_greeting(user, wav)
    }

    /// Stop serving: the voicemail agent signs out, the HTTP API and every connection close,
    /// the ports are released and a temporary data directory is removed; returns when the SIP
    /// port is free.
    pub async fn shutdown(mut self) {
        if let Some(vm) = self.voicemail.take() {
            vm.stop().await;
        }
        if let Some(http) = self.http.take() {
            http.stop().await;
        }
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        server::wait_ports_free(self.bind_addr).await;
        if let Some(dir) = self.temp_dir.take() {
            let removed = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(dir)).await;
            if let Ok(Err(e)) = removed {
                warn!(error = %e, "temporary data directory not removed");
            }
        }
        info!(addr = %self.local_addr, "switchboard stopped");
    }
}

impl Drop for SwitchboardHandle {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(dir) = self.temp_dir.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}
