//! `CallClient` and `CallAgent`: the async driver around the protocol state machines.
//!
//! One task per agent owns everything — the SIP transport, the [`Registration`] machine, the
//! calls (each a [`CallMachine`] plus its [`Dialog`] and media session), the client
//! transactions and their timers — so there are no locks on the call path. The public handle,
//! [`CallAgent`], talks to that task through a command channel and hears from it through a
//! broadcast of [`Event`]s.
//!
//! ```no_run
//! # async fn demo(server: std::net::SocketAddr, token: &str) -> Result<(), hookflash_core::AgentError> {
//! use hookflash_core::agent::{AgentConfig, CallClient, Credential};
//! let config = AgentConfig::new(server, "hookflash.local", Credential::parse(token)?);
//! let agent = CallClient::new().create_call_agent(config).await?;
//! let mut events = agent.subscribe();
//! let call_id = agent.start_call("bob").await?;
//! while let Ok(event) = events.recv().await {
//!     println!("{}", serde_json::to_string(&event).unwrap());
//! }
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::time::Instant;

use crate::api::{CallSummary, CallerInfo, Command, CommandEnvelope, Event, TransferRequest};
use crate::audio::{AudioSink, AudioSource, DeviceError, DeviceSpec};
use crate::auth::{self, Challenge, Scope, Token};
use crate::call::{
    has_sdp, sub_code, CallDirection, CallEndReason, CallInput, CallMachine, CallOp, CallState,
    Dialog,
};
use crate::error::{AgentError, CallError, ErrorCode};
use crate::media::{sdp_direction, Direction, MediaConfig, MediaEvent, MediaProfile, MediaSession};
use crate::privacy::redact;
use crate::registration::{
    ConnectionState, KeepAlivePolicy, RegisterOutcome, Registration, RegistrationAction,
    RegistrationPolicy,
};
use crate::sip::{
    new_branch, new_call_id, new_tag, Message, Method, NameAddr, Request, Response, Transport,
    TransportEvent, TransportKind, Uri, Via,
};
use crate::transfer::{TransferOptions, TransferTarget};

mod devices;
mod media_setup;
mod mwi;
mod transferring;

pub use transferring::TransferPolicy;

/// Opens the microphone side for a call (the argument is the call id).
pub type SourceFactory =
    Arc<dyn Fn(&str) -> Result<Box<dyn AudioSource>, DeviceError> + Send + Sync>;
/// Opens the speaker side for a call (the argument is the call id).
pub type SinkFactory = Arc<dyn Fn(&str) -> Result<Box<dyn AudioSink>, DeviceError> + Send + Sync>;

/// A microphone factory from a device spec (`tone:440`, `wav:in.wav`, `silence`).
pub fn source_from_spec(spec: DeviceSpec) -> SourceFactory {
    Arc::new(move |_call| spec.open_source())
}

/// A speaker factory from a device spec. For `wav:` paths, `{call}` in the path is replaced by
/// the call id so that several calls record to several files.
pub fn sink_from_spec(spec: DeviceSpec) -> SinkFactory {
    Arc::new(move |call| match &spec {
        DeviceSpec::Wav(p) => {
            let path = p.to_string_lossy().replace("{call}", call);
            DeviceSpec::Wav(path.into()).open_sink()
        }
        other => other.open_sink(),
    })
}

/// How the agent signs in. `Debug` shows no password.
#[derive(Clone)]
pub enum Credential {
    /// A user access token `EXPIRY:USER:SCOPE=PASSWORD[,…]` (DESIGN §2; [`Token`]); it must
    /// open the `sip` scope.
    Token(Token),
    /// A SIP user name and password.
    Password {
        /// The user name.
        user: String,
        /// The password.
        password: String,
    },
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            // The token's own Debug hides its passwords.
            Credential::Token(t) => f.debug_tuple("Token").field(t).finish(),
            Credential::Password { user, .. } => f
                .debug_struct("Password")
                .field("user", &crate::privacy::redact(user))
                .finish_non_exhaustive(),
        }
    }
}

impl std::fmt::Debug for TurnConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TurnConfig")
            .field("urls", &self.urls)
            .field("user", &self.credentials.as_ref().map(|(u, _)| u))
            .field("relay_only", &self.relay_only)
            .finish_non_exhaustive()
    }
}

impl Credential {
    /// Parse a token string, or `user:password` is not accepted here (use [`Credential::Password`]).
    pub fn parse(token: &str) -> Result<Credential, AgentError> {
        Token::parse(token)
            .map(Credential::Token)
            .map_err(|e| AgentError::InvalidCredential(e.to_string()))
    }

    /// The user this credential signs in.
    pub fn user(&self) -> &str {
        match self {
            Credential::Token(t) => &t.user,
            Credential::Password { user, .. } => user,
        }
    }

    fn auth_username(&self) -> String {
        match self {
            Credential::Token(t) => t.sip_username(),
            Credential::Password { user, .. } => user.clone(),
        }
    }

    fn auth_password(&self) -> &str {
        match self {
            // Checked when the agent is created: a token without the SIP grant is refused.
            Credential::Token(t) => t.password(Scope::Sip).unwrap_or_default(),
            Credential::Password { password, .. } => password,
        }
    }
}

/// Everything an agent needs to sign in and call.
#[derive(Clone)]
pub struct AgentConfig {
    /// The server (switchboard or Kamailio): every out-of-dialog request goes there.
    pub server: SocketAddr,
    /// The SIP domain of our address of record.
    pub domain: String,
    /// How we reach the server: UDP, TCP, TLS, WS or WSS. Over TLS and WSS the server's
    /// certificate must be trusted ([`tls_roots`](Self::tls_roots)) and issued to
    /// [`tls_server_name`](Self::tls_server_name).
    pub transport: TransportKind,
    /// CA certificates (PEM files) trusted besides the system's, for TLS and WSS.
    pub tls_roots: Vec<std::path::PathBuf>,
    /// The name the server's certificate must carry; `None` is the SIP domain (RFC 5922
    /// §7.2).
    pub tls_server_name: Option<String>,
    /// How we sign in.
    pub credential: Credential,
    /// Our display name on calls.
    pub display_name: Option<String>,
    /// The local address to bind SIP and media to.
    pub bind_ip: IpAddr,
    /// Registration timing.
    pub registration: RegistrationPolicy,
    /// How long one REGISTER attempt may take before it counts as failed.
    pub register_timeout: Duration,
    /// Timer B/F: how long any other transaction may take.
    pub transaction_timeout: Duration,
    /// How long the server may be silent before it is probed: a CRLF ping on TCP (RFC 5626
    /// §4.4.1), an OPTIONS on UDP. Any message from the server restarts the period.
    /// Default 5 s; see [`crate::registration`] for the numbers behind it.
    pub keepalive_interval: Duration,
    /// How long a probe may go unanswered before the server counts as gone and
    /// `connectionState` becomes `Disconnected{connectionIssue}`. Default 4 s: a dead server
    /// is noticed within `keepalive_interval + keepalive_timeout` = 9 s.
    pub keepalive_timeout: Duration,
    /// The microphone for each call.
    pub microphone: SourceFactory,
    /// The speaker for each call.
    pub speaker: SinkFactory,
    /// What to do with transfer requests (REFER) from the party we are in a call with.
    pub transfer_policy: TransferPolicy,
    /// How long a transfer may take before it fails with 408.
    pub transfer_timeout: Duration,
    /// How long after answer the media path (ICE + DTLS-SRTP) may take before the call is
    /// ended with `media.failed` and a reason, instead of staying Connected and silent.
    pub media_setup_timeout: Duration,
    /// The account's media policy: the profiles it may use, in order. Calls are offered with
    /// the first; a call refused for its media (488, 606) is tried again with the next, each
    /// once. Incoming offers in any listed profile are answered; others are refused with
    /// 488 before the user is rung. Default: WebRTC, SDES-SRTP, plain RTP.
    pub media_profiles: Vec<MediaProfile>,
    /// TURN relays for call media (WebRTC profile); `None`: host candidates only.
    pub turn: Option<TurnConfig>,
    /// The account's voicemail URI pattern (`{user}`, `{domain}`); `None` is RFC 4458.
    pub voicemail_pattern: Option<String>,
    /// Subscribe to our mailbox's message-summary (RFC 3842) once registered.
    pub subscribe_mwi: bool,
    /// Take requests only from the server we registered with (default): anything sent
    /// straight to our port by someone else — a scanner's "ghost call", a REFER from a
    /// stranger — skipped the server's authentication and is refused with 403. Turn off only
    /// for peer-to-peer use without a server.
    pub accept_only_from_server: bool,
    /// The sound devices (set by [`AgentConfig::with_devices`]); `None`: device commands fail.
    pub devices: Option<crate::audio::DeviceManager>,
}

/// A TURN server for call media (RFC 8656), with the TURN REST scheme's credentials by default.
/// `Debug` shows no password.
#[derive(Clone, PartialEq, Eq)]
pub struct TurnConfig {
    /// `turn:HOST:PORT` URLs (UDP relays).
    pub urls: Vec<String>,
    /// A user name and password of its own; `None` signs in with the account's token (the
    /// TURN REST scheme: user `EXPIRY:USER`, password the token's `turn` grant, which
    /// coturn's `use-auth-secret` checks against the TURN scope's key).
    pub credentials: Option<(String, String)>,
    /// Use relay candidates only: the peer and the network between never see our address.
    /// Only the WebRTC profile has ICE, so the account's other profiles are dropped.
    pub relay_only: bool,
}

impl AgentConfig {
    /// Defaults: UDP, loopback, silence in, nothing out.
    pub fn new(server: SocketAddr, domain: &str, credential: Credential) -> Self {
        AgentConfig {
            server,
            domain: domain.to_owned(),
            transport: TransportKind::Udp,
            tls_roots: Vec::new(),
            tls_server_name: None,
            credential,
            display_name: None,
            bind_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            registration: RegistrationPolicy::default(),
            register_timeout: Duration::from_secs(4),
            transaction_timeout: Duration::from_secs(32),
            keepalive_interval: KeepAlivePolicy::default().interval,
            keepalive_timeout: KeepAlivePolicy::default().timeout,
            microphone: source_from_spec(DeviceSpec::Silence),
            speaker: sink_from_spec(DeviceSpec::Null),
            transfer_policy: TransferPolicy::AcceptFromPeer,
            transfer_timeout: Duration::from_secs(60),
            media_setup_timeout: Duration::from_secs(8),
            media_profiles: MediaProfile::ALL.to_vec(),
            voicemail_pattern: None,
            turn: None,
            subscribe_mwi: true,
            accept_only_from_server: true,
            devices: None,
        }
    }
}

impl std::fmt::Debug for AgentConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentConfig")
            .field("server", &self.server)
            .field("transport", &self.transport)
            .field("user", &redact(self.credential.user()))
            .finish_non_exhaustive()
    }
}

/// The entry point (ACS `CallClient`).
#[derive(Debug, Default, Clone)]
pub struct CallClient {}

impl CallClient {
    /// A new client.
    pub fn new() -> Self {
        CallClient {}
    }

    /// Bind the SIP transport, start registering, and hand back the agent.
    pub async fn create_call_agent(&self, config: AgentConfig) -> Result<CallAgent, AgentError> {
        let mut config = config;
        if let Credential::Token(t) = &config.credential {
            if !t.opens(Scope::Sip) {
                return Err(AgentError::InvalidCredential(
                    "this token does not open SIP sign-in: ask for one issued with the sip \
                     scope"
                        .into(),
                ));
            }
        }
        if let Some(turn) = &config.turn {
            if let Some(bad) = turn.urls.iter().find(|u| !u.starts_with("turn:")) {
                return Err(AgentError::Media(format!(
                    "TURN server {bad:?}: give turn:HOST:PORT (UDP relays)"
                )));
            }
            let token_opens_turn =
                matches!(&config.credential, Credential::Token(t) if t.opens(Scope::Turn));
            if turn.credentials.is_none() && !token_opens_turn {
                return Err(AgentError::InvalidCredential(
                    "TURN needs a user name and password of its own, or a token that opens \
                     turn"
                        .into(),
                ));
            }
            if turn.relay_only {
                config.media_profiles.retain(|p| *p == MediaProfile::WebRtc);
                if config.media_profiles.is_empty() {
                    return Err(AgentError::Media(
                        "relay-only media needs the WebRTC profile, which this account does \
                         not allow"
                            .into(),
                    ));
                }
            }
        }
        let (transport, transport_rx) = Transport::bind(config.bind_ip, 0, true)
            .await
            .map_err(|e| AgentError::Transport(e.to_string()))?;
        if config.transport.is_secure() {
            let name = config.tls_server_name.as_deref().unwrap_or(&config.domain);
            let client = crate::sip::tls::TlsClient::new(name, &config.tls_roots)
                .map_err(|e| AgentError::Transport(e.to_string()))?;
            transport.set_tls_client(client);
        }
        let (events, _) = broadcast::channel(4096);
        devices::forward_events(&config, &events);
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Mutex::new(Snapshot {
            connection_state: ConnectionState::Disconnected,
            connection_reason: None,
            calls: HashMap::new(),
        }));
        let now = Instant::now();
        let credential_expiry = match &config.credential {
            Credential::Token(t) => {
                let left = t.expiry.saturating_sub(auth::unix_now());
                // An expiry beyond what the clock can hold is no expiry at all.
                now.checked_add(Duration::from_secs(left))
                    .map(Instant::into_std)
            }
            Credential::Password { .. } => None,
        };
        let (media_tx, media_rx) = mpsc::unbounded_channel();
        let (setup_tx, setup_rx) = mpsc::unbounded_channel();
        let core = Core {
            user: config.credential.user().to_owned(),
            reg: Registration::new(config.registration.clone(), credential_expiry).with_keepalive(
                KeepAlivePolicy {
                    interval: config.keepalive_interval,
                    timeout: config.keepalive_timeout,
                },
            ),
            reg_txn: RegisterState {
                call_id: new_call_id(),
                from_tag: new_tag(),
                cseq: 0,
                auth_sent: false,
                answering_challenge: false,
                challenge: None,
            },
            cfg: config,
            transport,
            events: events.clone(),
            shared: shared.clone(),
            calls: HashMap::new(),
            txns: HashMap::new(),
            answered: HashMap::new(),
            uas_2xx: HashMap::new(),
            media_tx,
            nc: 0,
            stopped: false,
            deferred: Vec::new(),
            dnd: false,
            mwi: mwi::MwiState::default(),
            answer_later: None,
            setup_tx,
            setup_attempts: 0,
            ws_host: format!("{}.invalid", crate::sip::new_tag()),
        };
        let pongs = core.transport.pongs();
        tokio::spawn(core.run(transport_rx, pongs, cmd_rx, media_rx, setup_rx));
        Ok(CallAgent {
            cmd_tx,
            events,
            shared,
        })
    }
}

struct Snapshot {
    connection_state: ConnectionState,
    connection_reason: Option<crate::registration::ConnectionReason>,
    calls: HashMap<String, CallState>,
}

type Reply = oneshot::Sender<Result<Option<String>, AgentError>>;

/// A command's answer that work beside the loop will give (DTMF takes ~200 ms a digit).
type LaterAnswer = tokio::task::JoinHandle<Result<Option<String>, AgentError>>;

/// A signed-in user (ACS `CallAgent`); cheap to clone.
#[derive(Clone)]
pub struct CallAgent {
    cmd_tx: mpsc::UnboundedSender<(Command, Reply)>,
    events: broadcast::Sender<Event>,
    shared: Arc<Mutex<Snapshot>>,
}

impl CallAgent {
    /// Hear every event from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// `connectionState`.
    pub fn connection_state(&self) -> ConnectionState {
        self.snapshot().connection_state
    }

    /// Why `connectionState` last changed (`None` before the first change): what a window
    /// opened after the event, or a caller that subscribed late, shows.
    pub fn connection_reason(&self) -> Option<crate::registration::ConnectionReason> {
        self.snapshot().connection_reason
    }

    /// Waits until the agent is registered (`Connected`), at most `within`; whether it is.
    pub async fn wait_connected(&self, within: Duration) -> bool {
        let mut events = self.subscribe();
        let _ = tokio::time::timeout(within, async {
            while self.connection_state() != ConnectionState::Connected {
                match events.recv().await {
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        })
        .await;
        self.connection_state() == ConnectionState::Connected
    }

    /// The live calls and their states.
    pub fn calls(&self) -> HashMap<String, CallState> {
        self.snapshot().calls.clone()
    }

    fn snapshot(&self) -> std::sync::MutexGuard<'_, Snapshot> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Run one command; the call id it concerns comes back (for `startCall`: the new call).
    pub async fn execute(&self, command: Command) -> Result<Option<String>, AgentError> {
        let (tx, rx) = oneshot::channel();
        self.cmd_tx
            .send((command, tx))
            .map_err(|_| AgentError::ShutDown)?;
        rx.await.map_err(|_| AgentError::ShutDown)?
    }

    /// Run a command from an adapter (IPC, JSON lines) and publish its answer as an event.
    pub async fn execute_envelope(
        &self,
        env: CommandEnvelope,
    ) -> Result<Option<String>, AgentError> {
        let result = self.execute(env.command).await;
        let event = match &result {
            Ok(call_id) => Event::CommandSucceeded {
                request_id: env.request_id,
                call_id: call_id.clone(),
            },
            Err(e) => Event::from_error(env.request_id, e),
        };
        let _ = self.events.send(event);
        result
    }

    /// Call a user name, SIP URI or `tel:` number; returns the call id.
    pub async fn start_call(&self, target: &str) -> Result<String, AgentError> {
        self.execute(Command::StartCall {
            target: target.to_owned(),
        })
        .await?
        .ok_or(AgentError::ShutDown)
    }

    /// A handle on one call.
    pub fn call(&self, call_id: &str) -> Call {
        Call {
            agent: self.clone(),
            id: call_id.to_owned(),
        }
    }

    /// Hang up every call, unregister and stop.
    pub async fn shutdown(&self) {
        let _ = self.execute(Command::SignOut {}).await;
    }
}

/// One call (ACS `Call`).
#[derive(Clone)]
pub struct Call {
    agent: CallAgent,
    id: String,
}

impl Call {
    /// The call id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// `Call.state`, or `Disconnected` once the call is gone.
    pub fn state(&self) -> CallState {
        self.agent
            .calls()
            .get(&self.id)
            .copied()
            .unwrap_or(CallState::Disconnected)
    }

    async fn run(&self, make: fn(String) -> Command) -> Result<(), AgentError> {
        self.agent.execute(make(self.id.clone())).await.map(|_| ())
    }

    /// Accept (incoming calls).
    pub async fn accept(&self) -> Result<(), AgentError> {
        self.run(|call_id| Command::Accept { call_id }).await
    }
    /// Reject (incoming calls).
    pub async fn reject(&self) -> Result<(), AgentError> {
        self.run(|call_id| Command::Reject { call_id }).await
    }
    /// Hang up or cancel.
    pub async fn hang_up(&self) -> Result<(), AgentError> {
        self.run(|call_id| Command::HangUp { call_id }).await
    }
    /// Hold.
    pub async fn hold(&self) -> Result<(), AgentError> {
        self.run(|call_id| Command::Hold { call_id }).await
    }
    /// Resume.
    pub async fn resume(&self) -> Result<(), AgentError> {
        self.run(|call_id| Command::Resume { call_id }).await
    }
    /// Mute.
    pub async fn mute(&self) -> Result<(), AgentError> {
        self.run(|call_id| Command::Mute { call_id }).await
    }
    /// Unmute.
    pub async fn unmute(&self) -> Result<(), AgentError> {
        self.run(|call_id| Command::Unmute { call_id }).await
    }
    /// Transfer this call (`call.feature(Transfer).transfer`); returns the transfer id whose
    /// progress `transferStateChanged` reports.
    pub async fn transfer(
        &self,
        target: TransferTarget,
        options: TransferOptions,
    ) -> Result<String, AgentError> {
        self.agent
            .execute(Command::Transfer(TransferRequest {
                call_id: self.id.clone(),
                target,
                options,
            }))
            .await?
            .ok_or(AgentError::ShutDown)
    }

    /// Send DTMF.
    pub async fn send_dtmf(&self, tones: &str) -> Result<(), AgentError> {
        self.agent
            .execute(Command::SendDtmf {
                call_id: self.id.clone(),
                tones: tones.to_owned(),
            })
            .await
            .map(|_| ())
    }
}

// ---------------------------------------------------------------------------------------------
// The driver task.

/// What a client transaction is for.
#[derive(Debug, Clone)]
enum Purpose {
    Register {
        expires: u32,
    },
    Invite {
        call_id: String,
    },
    Cancel,
    Bye {
        call_id: String,
        /// Why we hung up (the `subCode` the call ends with).
        sub: u32,
    },
    ReInvite {
        call_id: String,
        hold: bool,
    },
    /// An OPTIONS ping to the server over UDP: no answer means the server is gone.
    KeepAlive,
    /// A REFER on this call.
    Refer {
        call_id: String,
    },
    /// A NOTIFY we sent (transfer progress).
    Notify,
    /// Our message-summary SUBSCRIBE.
    Subscribe,
    /// A BYE for a dialog we never wanted (a late 2xx).
    Stray,
}

struct ClientTxn {
    purpose: Purpose,
    request: Request,
    dest: SocketAddr,
    kind: TransportKind,
    /// Next UDP retransmission (None: reliable transport or no more retransmissions).
    retransmit_at: Option<Instant>,
    interval: Duration,
    deadline: Instant,
    /// For a completed INVITE: the ACK to repeat if the 2xx is retransmitted.
    ack: Option<Request>,
    /// The status reported if the deadline passes: 408, or 503 after a transport error.
    fail_status: u16,
    /// The transport error was the peer's certificate, which we do not trust.
    untrusted: bool,
    /// When it went out: a timeout says the server is gone only if it was silent since.
    sent_at: Instant,
}

struct RegisterState {
    call_id: String,
    from_tag: String,
    cseq: u32,
    /// The REGISTER in flight answers a challenge received in this same attempt (not a
    /// cached nonce): a 401 to it means the credential itself is wrong.
    auth_sent: bool,
    /// The next REGISTER is the retry that answers a fresh challenge.
    answering_challenge: bool,
    challenge: Option<(Challenge, bool)>,
}

struct CallEntry {
    machine: CallMachine,
    dialog: Option<Dialog>,
    /// Our INVITE (outgoing) or theirs (incoming).
    invite: Request,
    /// For incoming calls: where the INVITE came from.
    invite_source: Option<(SocketAddr, TransportKind)>,
    media: Option<Arc<MediaSession>>,
    /// Outgoing: the answer SDP was applied (from a 183 or the 2xx).
    answer_applied: bool,
    /// An INVITE with credentials was already sent after a challenge.
    auth_sent: bool,
    /// A re-INVITE of ours is pending.
    reinvite_pending: bool,
    muted: bool,
    /// Transferor side: the transfer under way on this call.
    transfer_out: Option<transferring::OutgoingTransfer>,
    /// Transferee side: the REFER we received on this call.
    transfer_in: Option<transferring::IncomingTransfer>,
    /// This call was placed on behalf of a REFER received on that call.
    on_behalf: Option<String>,
    /// Outgoing: a provisional response (even 100) arrived, so a CANCEL may be sent (§9.1).
    provisional_seen: bool,
    /// Outgoing: hung up before any provisional; the CANCEL goes out with the first one.
    cancel_pending: bool,
    /// Outgoing: rang too long (Timer C); the CANCEL's 487 ends the call as a 408 timeout.
    timed_out: bool,
    /// Incoming: a re-INVITE without SDP got our offer in the 2xx; the answer comes in the ACK.
    offer_in_2xx: bool,
    /// Our hold/resume met glare (491): when to try again, and which of the two it was.
    glare_retry: Option<(Instant, bool)>,
    /// The media path (ICE + DTLS-SRTP) is up.
    media_up: bool,
    /// Connected in SIP but no media path yet: when to give up and say so.
    media_deadline: Option<Instant>,
    /// The media profile of this call's session (outgoing: the one being tried).
    media_profile: MediaProfile,
    /// Outgoing: the profiles still to try if the far end refuses this one (488).
    profiles_left: Vec<MediaProfile>,
    /// The media set-up under way beside the loop (its attempt number): outgoing, the
    /// INVITE waits for its offer; incoming, the 200 for its answer.
    setup: Option<u64>,
}

struct Retransmit {
    bytes: Vec<u8>,
    dest: SocketAddr,
    kind: TransportKind,
    next: Instant,
    interval: Duration,
    deadline: Instant,
}

struct Core {
    cfg: AgentConfig,
    user: String,
    transport: Transport,
    events: broadcast::Sender<Event>,
    shared: Arc<Mutex<Snapshot>>,
    reg: Registration,
    reg_txn: RegisterState,
    calls: HashMap<String, CallEntry>,
    txns: HashMap<String, ClientTxn>,
    /// Server transactions we answered: (branch|method) → last response, for retransmissions.
    answered: HashMap<String, (Vec<u8>, SocketAddr, TransportKind, Instant)>,
    /// 2xx to INVITEs retransmitted until the ACK arrives (UDP).
    uas_2xx: HashMap<String, Retransmit>,
    media_tx: mpsc::UnboundedSender<(String, MediaEvent)>,
    nc: u32,
    stopped: bool,
    /// Follow-up work queued by synchronous code (transfer progress, hang-ups after a transfer).
    deferred: Vec<transferring::Deferred>,
    /// Do not disturb: new calls get 486.
    dnd: bool,
    /// Our message-summary subscription.
    mwi: mwi::MwiState,
    /// Set by a command whose answer comes once work beside the loop is done.
    answer_later: Option<LaterAnswer>,
    /// Media set-ups beside the loop report here.
    setup_tx: mpsc::UnboundedSender<media_setup::MediaReady>,
    /// Numbers every media set-up, so that one whose call moved on is recognised.
    setup_attempts: u64,
    /// The made-up host a WebSocket client names itself by (RFC 7118 §5).
    ws_host: String,
}

const T1: Duration = Duration::from_millis(500);
const T2: Duration = Duration::from_secs(4);
/// How long an outgoing call may ring before we give up on it (a Timer C of our own).
const RING_LIMIT: Duration = Duration::from_secs(180);
const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, REFER, NOTIFY";

/// The digest challenge of a 401/407, and whether it is a proxy's (407).
fn challenge_of(resp: &Response) -> Option<(Challenge, bool)> {
    let proxy = resp.status == 407;
    let header = if proxy {
        "Proxy-Authenticate"
    } else {
        "WWW-Authenticate"
    };
    let challenge = resp.headers.get(header)?.parse::<Challenge>().ok()?;
    Some((challenge, proxy))
}

/// The header that answers a challenge: `Proxy-Authorization` for a proxy's 407.
fn authorization_header(proxy: bool) -> &'static str {
    if proxy {
        "Proxy-Authorization"
    } else {
        "Authorization"
    }
}

/// Whether a NOTIFY ends its subscription (`Subscription-State: terminated`).
fn subscription_terminated(req: &Request) -> bool {
    req.headers
        .get("Subscription-State")
        .is_some_and(|s| s.trim().to_ascii_lowercase().starts_with("terminated"))
}

fn txn_key(branch: &str, method: &Method) -> String {
    format!("{branch}|{method}")
}

impl Core {
    async fn run(
        mut self,
        mut transport_rx: mpsc::UnboundedReceiver<TransportEvent>,
        mut pongs: mpsc::UnboundedReceiver<SocketAddr>,
        mut cmd_rx: mpsc::UnboundedReceiver<(Command, Reply)>,
        mut media_rx: mpsc::UnboundedReceiver<(String, MediaEvent)>,
        mut setup_rx: mpsc::UnboundedReceiver<media_setup::MediaReady>,
    ) {
        self.reg.start(Instant::now().into_std());
        self.drive_registration().await;
        while !self.stopped {
            let deadline = self.next_deadline();
            tokio::select! {
                ev = transport_rx.recv() => match ev {
                    Some(ev) => self.on_transport(ev).await,
                    None => break,
                },
                cmd = cmd_rx.recv() => match cmd {
                    Some((cmd, reply)) => {
                        let result = self.on_command(cmd).await;
                        match (result, self.answer_later.take()) {
                            // Work beside the loop (DTMF) answers the command when it is done.
                            (Ok(_), Some(later)) => {
                                tokio::spawn(async move {
                                    let answer = later.await.unwrap_or(Err(AgentError::ShutDown));
                                    let _ = reply.send(answer);
                                });
                            }
                            (result, _) => {
                                let _ = reply.send(result);
                            }
                        }
                    }
                    None => self.sign_out().await,
                },
                Some(peer) = pongs.recv() => {
                    if peer == self.cfg.server {
                        self.reg.handle_heard(Instant::now().into_std());
                    }
                }
                Some((call_id, ev)) = media_rx.recv() => self.on_media(&call_id, ev).await,
                Some(ready) = setup_rx.recv() => self.on_media_ready(ready).await,
                _ = tokio::time::sleep_until(deadline) => self.on_timers().await,
            }
            self.drive_registration().await;
            self.drive_deferred().await;
        }
        self.transport.shutdown();
    }

    fn emit(&self, event: Event) {
        let _ = self.events.send(event);
    }

    fn snapshot(&self) -> std::sync::MutexGuard<'_, Snapshot> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    // ---- addresses --------------------------------------------------------------------------

    fn local_addr(&self) -> SocketAddr {
        match self.cfg.transport {
            TransportKind::Udp => self.transport.local_udp(),
            _ => self
                .transport
                .local_tcp()
                .unwrap_or_else(|| self.transport.local_udp()),
        }
    }

    /// Our host and port for Via and Contact. A WebSocket client cannot be reached but over
    /// its connection, so it names itself with a made-up `.invalid` host (RFC 7118 §5).
    fn sent_by(&self) -> (String, Option<u16>) {
        if self.cfg.transport.is_websocket() {
            return (self.ws_host.clone(), None);
        }
        let a = self.local_addr();
        (a.ip().to_string(), Some(a.port()))
    }

    fn via(&self) -> Via {
        let (host, port) = self.sent_by();
        Via {
            transport: self.cfg.transport.as_str().to_owned(),
            host,
            port,
            params: vec![
                ("branch".into(), Some(new_branch())),
                ("rport".into(), None),
            ],
        }
    }

    fn contact(&self) -> NameAddr {
        let (host, port) = self.sent_by();
        let mut uri = Uri::sip(Some(&self.user), &host, port);
        match self.cfg.transport {
            TransportKind::Udp => {}
            // A contact reached over TLS only (RFC 5630 §3.1.1: sips, no transport=tls).
            TransportKind::Tls => uri.scheme = "sips".into(),
            // RFC 7118 §5.2: `ws` for WSS too.
            TransportKind::Ws | TransportKind::Wss => uri.set_param("transport", Some("ws")),
            TransportKind::Tcp => uri.set_param("transport", Some("tcp")),
        }
        NameAddr::new(uri)
    }

    fn aor(&self) -> Uri {
        Uri::sip(Some(&self.user), &self.cfg.domain, None)
    }

    fn target_uri(&self, target: &str) -> Result<Uri, AgentError> {
        let t = target.trim();
        if t.is_empty() {
            return Err(AgentError::InvalidTarget(target.to_owned()));
        }
        if t.contains(':') {
            return t
                .parse()
                .map_err(|_| AgentError::InvalidTarget(target.to_owned()));
        }
        let ok = t
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.!~*'()+%".contains(c));
        if !ok {
            return Err(AgentError::InvalidTarget(target.to_owned()));
        }
        Ok(Uri::sip(Some(t), &self.cfg.domain, None))
    }

    /// Where a URI points: its host and port, and its transport: `;transport=`, else TLS for
    /// a `sips:` URI (RFC 3261 §26.2.2), else ours.
    async fn resolve(&self, uri: &Uri) -> Result<(SocketAddr, TransportKind), AgentError> {
        let (kind, port) = uri.transport_and_port(self.cfg.transport).ok_or_else(|| {
            AgentError::InvalidTarget(format!(
                "{uri}: its transport is not one we speak, or it needs TLS all the way"
            ))
        })?;
        let host = uri.host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok((SocketAddr::new(ip, port), kind));
        }
        let addr = tokio::net::lookup_host((host, port))
            .await
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(|| AgentError::Transport(format!("cannot resolve {}", redact(host))))?;
        Ok((addr, kind))
    }

    // ---- sending ----------------------------------------------------------------------------

    async fn send_request(
        &mut self,
        purpose: Purpose,
        request: Request,
        dest: SocketAddr,
        kind: TransportKind,
    ) {
        let now = Instant::now();
        let branch = request
            .top_via()
            .ok()
            .and_then(|v| v.branch().map(str::to_owned))
            .unwrap_or_default();
        let timeout = match purpose {
            Purpose::Register { .. } => self.cfg.register_timeout,
            Purpose::KeepAlive => self.cfg.keepalive_timeout,
            _ => self.cfg.transaction_timeout,
        };
        let key = txn_key(&branch, &request.method);
        let result = self
            .transport
            .send(kind, dest, &Message::Request(request.clone()))
            .await;
        let failed = result.is_err();
        let untrusted = result.as_ref().is_err_and(crate::sip::tls::is_untrusted);
        if let Err(e) = result {
            tracing::warn!(method = %request.method, error = %e, "send failed");
        }
        self.txns.insert(
            key.clone(),
            ClientTxn {
                purpose,
                request,
                dest,
                kind,
                retransmit_at: (kind == TransportKind::Udp && !failed).then(|| now + T1),
                interval: T1,
                // A transport error is a final failure, like a timeout but at once
                // (RFC 3261 §8.1.3.1): the timer fires on the next turn of the loop.
                deadline: if failed { now } else { now + timeout },
                ack: None,
                fail_status: if failed { 503 } else { 408 },
                untrusted,
                sent_at: now,
            },
        );
    }

    async fn send_response(&mut self, resp: Response, dest: SocketAddr, kind: TransportKind) {
        let key = resp
            .top_via()
            .ok()
            .and_then(|v| v.branch().map(str::to_owned))
            .zip(resp.cseq().ok())
            .map(|(b, c)| txn_key(&b, &c.method));
        let bytes = Message::Response(resp).to_bytes();
        if let Some(key) = key {
            let keep = Instant::now() + Duration::from_secs(32);
            self.answered.insert(key, (bytes.clone(), dest, kind, keep));
        }
        if let Err(e) = self.transport.send_raw(kind, dest, bytes).await {
            tracing::warn!(error = %e, "sending a response failed");
        }
    }

    async fn reply(&mut self, req: &Request, status: u16, source: SocketAddr, kind: TransportKind) {
        let resp = req.response(status, None, Some(&new_tag()));
        self.send_response(resp, source, kind).await;
    }

    // ---- registration -----------------------------------------------------------------------

    async fn drive_registration(&mut self) {
        while let Some(action) = self.reg.poll_action() {
            match action {
                RegistrationAction::SendRegister { expires } => self.send_register(expires).await,
                RegistrationAction::SendKeepAlive => self.send_keepalive().await,
                RegistrationAction::StateChanged { old, new, reason } => {
                    tracing::info!(?old, ?new, ?reason, "connection state");
                    if new == ConnectionState::Connected {
                        self.deferred.push(transferring::Deferred::SubscribeMwi);
                    }
                    {
                        let mut snapshot = self.snapshot();
                        snapshot.connection_state = new;
                        snapshot.connection_reason = Some(reason);
                    }
                    self.emit(Event::ConnectionStateChanged {
                        old_value: old,
                        new_value: new,
                        reason,
                    });
                }
            }
        }
    }

    fn authorization(&mut self, method: &Method, uri: &Uri, challenge: &Challenge) -> String {
        self.nc += 1;
        let cnonce = new_tag();
        auth::authorization(
            challenge,
            method.as_str(),
            &uri.to_string(),
            &self.cfg.credential.auth_username(),
            self.cfg.credential.auth_password(),
            self.nc,
            &cnonce,
        )
    }

    async fn send_register(&mut self, expires: u32) {
        // Drop any REGISTER still in flight: the newest attempt is the one that counts.
        self.txns
            .retain(|_, t| !matches!(t.purpose, Purpose::Register { .. }));
        self.reg_txn.cseq += 1;
        let uri = Uri::sip(None, &self.cfg.domain, None);
        let mut req = Request::new(Method::Register, uri.clone());
        let aor = self.aor();
        let mut from = NameAddr::new(aor.clone());
        from.display = self.cfg.display_name.clone();
        from.set_param("tag", Some(&self.reg_txn.from_tag));
        let h = &mut req.headers;
        h.push("Via", self.via().to_string());
        h.push("Max-Forwards", "70");
        h.push("From", from.to_string());
        h.push("To", NameAddr::new(aor).to_string());
        h.push("Call-ID", self.reg_txn.call_id.clone());
        h.push("CSeq", format!("{} REGISTER", self.reg_txn.cseq));
        h.push("Contact", self.contact().to_string());
        h.push("Expires", expires.to_string());
        h.push("Allow", ALLOW);
        h.push(
            "User-Agent",
            concat!("Hookflash/", env!("CARGO_PKG_VERSION")),
        );
        let answering = std::mem::take(&mut self.reg_txn.answering_challenge);
        self.reg_txn.auth_sent = false;
        if let Some((challenge, proxy)) = self.reg_txn.challenge.clone() {
            let value = self.authorization(&Method::Register, &uri, &challenge);
            req.headers.push(authorization_header(proxy), value);
            self.reg_txn.auth_sent = answering;
        }
        self.send_request(
            Purpose::Register { expires },
            req,
            self.cfg.server,
            self.cfg.transport,
        )
        .await;
    }

    async fn on_register_response(&mut self, txn: ClientTxn, resp: Response, expires: u32) {
        let now = Instant::now().into_std();
        match resp.status {
            200..=299 => {
                let ours = self.contact().uri;
                let granted = resp
                    .headers
                    .get_all("Contact")
                    .iter()
                    .filter_map(|c| c.parse::<NameAddr>().ok())
                    .find(|c| c.uri.without_params() == ours.without_params())
                    .and_then(|c| c.param("expires").and_then(|e| e.parse().ok()))
                    .or_else(|| {
                        resp.headers
                            .get("Expires")
                            .and_then(|e| e.trim().parse().ok())
                    })
                    .unwrap_or(expires);
                if expires == 0 {
                    return;
                }
                self.reg
                    .handle_outcome(now, RegisterOutcome::Registered { expires: granted });
            }
            401 | 407 => {
                let challenge = challenge_of(&resp);
                match challenge {
                    Some((ch, proxy)) if !self.reg_txn.auth_sent || ch.stale => {
                        // A first challenge, or one to a cached nonce the server no longer
                        // knows (it restarted): answer it once before judging the credential.
                        self.reg_txn.challenge = Some((ch, proxy));
                        self.reg_txn.answering_challenge = true;
                        let _ = txn;
                        self.send_register(expires).await;
                    }
                    _ => {
                        self.reg_txn.challenge = None;
                        self.reg.handle_outcome(
                            now,
                            RegisterOutcome::Rejected {
                                status: resp.status,
                            },
                        );
                    }
                }
            }
            403 => {
                self.reg_txn.challenge = None;
                self.reg.handle_outcome(
                    now,
                    RegisterOutcome::Rejected {
                        status: resp.status,
                    },
                );
            }
            423 => {
                // Interval Too Brief (RFC 3261 §10.2.8): ask again for at least Min-Expires.
                let min = resp
                    .headers
                    .get("Min-Expires")
                    .and_then(|m| m.trim().parse::<u32>().ok())
                    .filter(|m| *m > expires && *m <= 86_400);
                match min {
                    Some(min) => {
                        self.reg.raise_expires(min);
                        self.send_register(min).await;
                    }
                    None => self
                        .reg
                        .handle_outcome(now, RegisterOutcome::Failed { status: 423 }),
                }
            }
            status => self
                .reg
                .handle_outcome(now, RegisterOutcome::Failed { status }),
        }
    }

    // ---- commands ---------------------------------------------------------------------------

    async fn on_command(&mut self, cmd: Command) -> Result<Option<String>, AgentError> {
        match cmd {
            Command::StartCall { target } => self.start_call(&target).await.map(Some),
            Command::Accept { call_id } => self.accept(&call_id).await.map(|_| Some(call_id)),
            Command::Reject { call_id } => {
                self.check(&call_id, CallOp::Reject)?;
                self.answer_incoming_with(&call_id, 603, sub_code::LOCAL_REJECT)
                    .await;
                Ok(Some(call_id))
            }
            Command::HangUp { call_id } => {
                self.check(&call_id, CallOp::HangUp)?;
                self.hang_up(&call_id, sub_code::LOCAL_HANGUP).await;
                Ok(Some(call_id))
            }
            Command::Hold { call_id } => self.set_hold(&call_id, true).await.map(|_| Some(call_id)),
            Command::Resume { call_id } => {
                self.set_hold(&call_id, false).await.map(|_| Some(call_id))
            }
            Command::Mute { call_id } => self.set_muted(&call_id, true).map(|_| Some(call_id)),
            Command::Unmute { call_id } => self.set_muted(&call_id, false).map(|_| Some(call_id)),
            Command::SendDtmf { call_id, tones } => {
                self.check(&call_id, CallOp::SendDtmf)?;
                let valid =
                    !tones.is_empty() && tones.chars().all(|c| "0123456789*#ABCDabcd".contains(c));
                if !valid {
                    return Err(AgentError::InvalidDtmf(tones));
                }
                let media = self.calls.get(&call_id).and_then(|c| c.media.clone());
                let media = media.ok_or_else(|| AgentError::Media("no media session".into()))?;
                // DTMF takes ~200 ms a digit: run it beside the loop, not in it.
                let tones = tones.to_ascii_uppercase();
                if self.cfg.devices.is_some() {
                    // The user hears their own keys, as on a desk phone.
                    let _ = self.on_device_command(Command::PlayKeyTone {
                        tones: tones.clone(),
                    });
                }
                // The command succeeds only once the digits were sent (the run loop answers
                // when this finishes).
                let id = call_id.clone();
                self.answer_later = Some(tokio::spawn(async move {
                    match media.send_dtmf(&tones).await {
                        Ok(()) => Ok(Some(id)),
                        Err(e) => {
                            tracing::warn!(error = %e, "DTMF failed");
                            Err(AgentError::Media(e.to_string()))
                        }
                    }
                }));
                Ok(Some(call_id))
            }
            Command::Transfer(TransferRequest {
                call_id,
                target,
                options,
            }) => self.transfer(&call_id, target, options).await.map(Some),
            Command::AcceptTransfer {
                call_id,
                transfer_id,
            } => {
                self.answer_transfer_request(&call_id, &transfer_id, true)
                    .await?;
                Ok(Some(call_id))
            }
            Command::RejectTransfer {
                call_id,
                transfer_id,
            } => {
                self.answer_transfer_request(&call_id, &transfer_id, false)
                    .await?;
                Ok(Some(call_id))
            }
            Command::SetDoNotDisturb { enabled } => {
                if self.dnd != enabled {
                    self.dnd = enabled;
                    self.emit(Event::DoNotDisturbChanged { enabled });
                }
                Ok(None)
            }
            c @ (Command::GetMicrophones {}
            | Command::GetSpeakers {}
            | Command::SelectMicrophone { .. }
            | Command::SelectSpeaker { .. }
            | Command::SelectRinger { .. }
            | Command::StartMicrophoneLevelMeter {}
            | Command::StopMicrophoneLevelMeter {}
            | Command::PlaySpeakerTestTone {}
            | Command::PlayKeyTone { .. }
            | Command::SetRingtone { .. }
            | Command::PlayAudioFile { .. }
            | Command::StopAudioFile {}
            | Command::GetAudioProcessing {}
            | Command::SetAudioProcessing { .. }) => self.on_device_command(c),
            Command::SignOut {} => {
                self.sign_out().await;
                Ok(None)
            }
        }
    }

    fn check(&self, call_id: &str, op: CallOp) -> Result<(), AgentError> {
        let call = self
            .calls
            .get(call_id)
            .ok_or_else(|| CallError::NotFound(call_id.to_owned()))?;
        call.machine.check(op)?;
        Ok(())
    }

    async fn sign_out(&mut self) {
        let ids: Vec<String> = self.calls.keys().cloned().collect();
        for id in ids {
            let incoming_ringing = self.calls.get(&id).is_some_and(|c| {
                c.machine.direction() == CallDirection::Incoming
                    && c.machine.state() == CallState::Ringing
            });
            if incoming_ringing {
                self.answer_incoming_with(&id, 480, sub_code::AGENT_SHUTDOWN)
                    .await;
            } else {
                self.hang_up(&id, sub_code::AGENT_SHUTDOWN).await;
            }
        }
        self.reg.sign_out();
        self.drive_registration().await;
        // Give the BYEs / un-REGISTER a moment on the wire before the sockets go.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let ids: Vec<String> = self.calls.keys().cloned().collect();
        for id in ids {
            self.end_call(
                &id,
                CallEndReason {
                    code: 200,
                    sub_code: sub_code::AGENT_SHUTDOWN,
                },
            )
            .await;
        }
        self.stopped = true;
    }

    fn set_muted(&mut self, call_id: &str, muted: bool) -> Result<(), AgentError> {
        self.check(call_id, CallOp::Mute)?;
        let Some(call) = self.calls.get_mut(call_id) else {
            return Err(CallError::NotFound(call_id.to_owned()).into());
        };
        if let Some(m) = &call.media {
            m.set_muted(muted);
        }
        if call.muted != muted {
            call.muted = muted;
            self.emit(Event::IsMutedChanged {
                call_id: call_id.to_owned(),
                is_muted: muted,
            });
        }
        Ok(())
    }

    fn forward_media_events(&self, call_id: &str, mut rx: mpsc::UnboundedReceiver<MediaEvent>) {
        let tx = self.media_tx.clone();
        let id = call_id.to_owned();
        tokio::spawn(async move {
            while let Some(ev) = rx.recv().await {
                if tx.send((id.clone(), ev)).is_err() {
                    break;
                }
            }
        });
    }

    async fn start_call(&mut self, target: &str) -> Result<String, AgentError> {
        let target = self.target_uri(target)?;
        self.start_call_to(target, &[], None).await
    }

    /// Place a call to `target` with extra INVITE headers (Replaces, Referred-By, ...);
    /// `on_behalf` names the call whose REFER this call carries out.
    async fn start_call_to(
        &mut self,
        target: Uri,
        extra_headers: &[(String, String)],
        on_behalf: Option<String>,
    ) -> Result<String, AgentError> {
        if self.reg.state() != ConnectionState::Connected {
            return Err(AgentError::NotConnected);
        }
        let call_id = new_call_id();
        let Some((&profile, rest)) = self.cfg.media_profiles.split_first() else {
            return Err(AgentError::Media(
                "this account allows no media profile; choose one in its settings".into(),
            ));
        };
        let profiles_left = rest.to_vec();
        let mut from = NameAddr::new(self.aor());
        from.display = self.cfg.display_name.clone();
        from.set_param("tag", Some(&new_tag()));
        let mut req = Request::new(Method::Invite, target.clone());
        let h = &mut req.headers;
        h.push("Via", self.via().to_string());
        h.push("Max-Forwards", "70");
        h.push("From", from.to_string());
        h.push("To", NameAddr::new(target.clone()).to_string());
        h.push("Call-ID", call_id.clone());
        h.push("CSeq", "1 INVITE");
        h.push("Contact", self.contact().to_string());
        h.push("Allow", ALLOW);
        h.push("Supported", "replaces");
        h.push(
            "User-Agent",
            concat!("Hookflash/", env!("CARGO_PKG_VERSION")),
        );
        for (name, value) in extra_headers {
            h.push(name.clone(), value.clone());
        }
        h.push("Content-Type", "application/sdp");
        let mut machine = CallMachine::new(CallDirection::Outgoing);
        let transition = machine.apply(CallInput::Dialed);
        self.calls.insert(
            call_id.clone(),
            CallEntry {
                machine,
                dialog: None,
                invite: req,
                invite_source: None,
                media: None,
                answer_applied: false,
                auth_sent: false,
                reinvite_pending: false,
                muted: false,
                transfer_out: None,
                transfer_in: None,
                on_behalf,
                provisional_seen: false,
                cancel_pending: false,
                timed_out: false,
                offer_in_2xx: false,
                glare_retry: None,
                media_up: false,
                media_deadline: None,
                media_profile: profile,
                profiles_left,
                setup: None,
            },
        );
        self.emit(Event::CallsUpdated {
            added: vec![CallSummary {
                id: call_id.clone(),
                direction: CallDirection::Outgoing,
                remote: target.aor(),
            }],
            removed: vec![],
        });
        self.publish_transition(&call_id, transition);
        tracing::info!(call = %redact(&call_id), to = %redact(&target.aor()), "calling");
        // The INVITE goes out when its offer is ready (media set-up runs beside the loop).
        self.start_media_setup(&call_id, profile, media_setup::SetupKind::Offer, None);
        Ok(call_id)
    }

    fn publish_transition(&self, call_id: &str, t: Option<(CallState, CallState)>) {
        let Some((old, new)) = t else { return };
        let reason = self.calls.get(call_id).and_then(|c| c.machine.end_reason());
        self.snapshot().calls.insert(call_id.to_owned(), new);
        self.emit(Event::CallStateChanged {
            call_id: call_id.to_owned(),
            old_state: old,
            state: new,
            call_end_reason: if new == CallState::Disconnected {
                reason
            } else {
                None
            },
        });
    }

    fn apply(&mut self, call_id: &str, input: CallInput) {
        let setup = self.cfg.media_setup_timeout;
        let t = self.calls.get_mut(call_id).and_then(|c| {
            let t = c.machine.apply(input);
            if let Some((_, CallState::Connected)) = t {
                if !c.media_up && c.media_deadline.is_none() {
                    // Answered in SIP: the media path must follow within seconds.
                    c.media_deadline = Some(Instant::now() + setup);
                }
            }
            t
        });
        self.publish_transition(call_id, t);
        if let (Some((_, new)), Some(call)) = (t, self.calls.get(call_id)) {
            if let Some(orig) = call.on_behalf.clone() {
                // The transferee reports the new call's progress to the transferor.
                self.deferred.push(transferring::Deferred::Progress {
                    original: orig,
                    state: new,
                    end: call.machine.end_reason(),
                });
            }
        }
    }

    async fn end_call(&mut self, call_id: &str, reason: CallEndReason) {
        self.transfer_call_ended(call_id);
        self.apply(call_id, CallInput::Ended(reason));
        self.uas_2xx.remove(call_id);
        if let Some(call) = self.calls.remove(call_id) {
            if let Some(m) = call.media {
                m.close().await;
            }
            self.snapshot().calls.remove(call_id);
            self.emit(Event::CallsUpdated {
                added: vec![],
                removed: vec![call_id.to_owned()],
            });
            tracing::info!(call = %redact(call_id), code = reason.code, sub_code = reason.sub_code, "call ended");
        }
    }

    async fn accept(&mut self, call_id: &str) -> Result<(), AgentError> {
        self.check(call_id, CallOp::Accept)?;
        self.answer(call_id).await
    }

    /// Answer an incoming INVITE with our media: 200 with the SDP answer.
    async fn answer(&mut self, call_id: &str) -> Result<(), AgentError> {
        self.start_answer(call_id, None)
    }

    /// Starts answering a ringing call: the 200 goes out when the answer SDP is ready (media
    /// set-up runs beside the loop). Accepting a call already being answered does nothing.
    pub(super) fn start_answer(
        &mut self,
        call_id: &str,
        replacing: Option<String>,
    ) -> Result<(), AgentError> {
        let c = self
            .calls
            .get(call_id)
            .ok_or_else(|| CallError::NotFound(call_id.to_owned()))?;
        if c.invite_source.is_none() {
            return Err(CallError::Protocol("incoming call without source".into()).into());
        }
        if c.setup.is_some() {
            return Ok(());
        }
        let (offer, profile) = (c.invite.body_str().into_owned(), c.media_profile);
        self.start_media_setup(
            call_id,
            profile,
            media_setup::SetupKind::Answer { replacing },
            Some(offer),
        );
        Ok(())
    }

    /// Answer a ringing incoming call with a final failure and end it.
    async fn answer_incoming_with(&mut self, call_id: &str, status: u16, sub: u32) {
        let Some(c) = self.calls.get(call_id) else {
            return;
        };
        let (invite, source) = (c.invite.clone(), c.invite_source);
        let tag = c.dialog.as_ref().map(|d| d.local_tag().to_owned());
        if let Some((source, kind)) = source {
            let resp = invite.response(status, None, tag.as_deref());
            self.send_response(resp, source, kind).await;
        }
        self.end_call(
            call_id,
            CallEndReason {
                code: status,
                sub_code: sub,
            },
        )
        .await;
    }

    async fn hang_up(&mut self, call_id: &str, sub: u32) {
        let Some(call) = self.calls.get(call_id) else {
            return;
        };
        let state = call.machine.state();
        let direction = call.machine.direction();
        match (direction, state) {
            (CallDirection::Incoming, CallState::Ringing) => {
                self.answer_incoming_with(call_id, 603, sub_code::LOCAL_REJECT)
                    .await;
            }
            (
                CallDirection::Outgoing,
                CallState::None
                | CallState::Connecting
                | CallState::Ringing
                | CallState::EarlyMedia,
            ) if call.dialog.is_none() || !call.machine.is_established() => {
                self.cancel(call_id).await;
            }
            _ => self.send_bye(call_id, sub).await,
        }
    }

    /// Hang up an outgoing call that is not answered yet: CANCEL it, or, before any
    /// provisional response, remember to CANCEL it when the first one arrives (§9.1).
    async fn cancel(&mut self, call_id: &str) {
        let Some(call) = self.calls.get_mut(call_id) else {
            return;
        };
        if call.setup.is_some() {
            // No INVITE of ours is out (its offer is still being made): nothing to CANCEL.
            self.apply(call_id, CallInput::HangingUp);
            let reason = CallEndReason {
                code: 487,
                sub_code: sub_code::LOCAL_CANCEL,
            };
            self.end_call(call_id, reason).await;
            return;
        }
        let seen = call.provisional_seen;
        if !seen {
            call.cancel_pending = true;
        }
        self.apply(call_id, CallInput::HangingUp);
        if seen {
            self.send_cancel(call_id).await;
        }
    }

    /// Send the CANCEL for our INVITE; its 487 (or its timer) ends the call.
    async fn send_cancel(&mut self, call_id: &str) {
        let Some(call) = self.calls.get(call_id) else {
            return;
        };
        let invite = call.invite.clone();
        let mut cancel = Request::new(Method::Cancel, invite.uri.clone());
        for name in ["Via", "Route", "From", "To", "Call-ID"] {
            for v in invite
                .headers
                .0
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            {
                cancel.headers.push(v.0.clone(), v.1.clone());
            }
        }
        cancel.headers.push("Max-Forwards", "70");
        let seq = invite.cseq().map(|c| c.seq).unwrap_or(1);
        cancel.headers.push("CSeq", format!("{seq} CANCEL"));
        self.send_request(Purpose::Cancel, cancel, self.cfg.server, self.cfg.transport)
            .await;
    }

    async fn send_bye(&mut self, call_id: &str, sub: u32) {
        let via = self.via();
        let Some(call) = self.calls.get_mut(call_id) else {
            return;
        };
        let Some(dialog) = call.dialog.as_mut() else {
            self.end_call(
                call_id,
                CallEndReason {
                    code: 200,
                    sub_code: sub,
                },
            )
            .await;
            return;
        };
        let bye = dialog.request(Method::Bye, &via);
        let hop = dialog.next_hop();
        self.apply(call_id, CallInput::HangingUp);
        if let Some(m) = self.calls.get(call_id).and_then(|c| c.media.clone()) {
            m.close().await;
        }
        match hop {
            Ok(hop) => match self.resolve(&hop).await {
                Ok((dest, kind)) => {
                    self.send_request(
                        Purpose::Bye {
                            call_id: call_id.to_owned(),
                            sub,
                        },
                        bye,
                        dest,
                        kind,
                    )
                    .await
                }
                Err(_) => {
                    self.end_call(
                        call_id,
                        CallEndReason {
                            code: 503,
                            sub_code: sub,
                        },
                    )
                    .await
                }
            },
            Err(_) => {
                self.end_call(
                    call_id,
                    CallEndReason {
                        code: 503,
                        sub_code: sub,
                    },
                )
                .await
            }
        }
    }

    async fn set_hold(&mut self, call_id: &str, hold: bool) -> Result<(), AgentError> {
        self.check(call_id, if hold { CallOp::Hold } else { CallOp::Resume })?;
        let via = self.via();
        let contact = self.contact();
        let Some(call) = self.calls.get_mut(call_id) else {
            return Err(CallError::NotFound(call_id.to_owned()).into());
        };
        if call.reinvite_pending {
            return Err(CallError::InvalidState {
                operation: if hold { CallOp::Hold } else { CallOp::Resume },
                state: call.machine.state(),
            }
            .into());
        }
        let media = call
            .media
            .clone()
            .ok_or_else(|| AgentError::Media("no media session".into()))?;
        let dir = if hold {
            Direction::SendOnly
        } else {
            Direction::SendRecv
        };
        let offer = media
            .create_reoffer(dir)
            .await
            .map_err(|e| AgentError::Media(e.to_string()))?;
        let Some(dialog) = call.dialog.as_mut() else {
            return Err(CallError::Protocol("no dialog".into()).into());
        };
        let mut req = dialog.request(Method::Invite, &via);
        req.headers.push("Contact", contact.to_string());
        req.headers.push("Allow", ALLOW);
        req.headers.push("Content-Type", "application/sdp");
        req.body = offer.into_bytes();
        let hop = dialog.next_hop();
        let target = match hop {
            Ok(hop) => self.resolve(&hop).await,
            Err(e) => Err(e.into()),
        };
        let (dest, kind) = match target {
            Ok(t) => t,
            Err(e) => {
                // Nothing went out: undo the local half of the offer so audio flows as before.
                let _ = media.rollback_offer().await;
                return Err(e);
            }
        };
        if let Some(c) = self.calls.get_mut(call_id) {
            c.reinvite_pending = true;
        }
        self.send_request(
            Purpose::ReInvite {
                call_id: call_id.to_owned(),
                hold,
            },
            req,
            dest,
            kind,
        )
        .await;
        Ok(())
    }

    // ---- incoming ---------------------------------------------------------------------------

    async fn on_transport(&mut self, ev: TransportEvent) {
        if let TransportEvent::Message { source, .. } | TransportEvent::Malformed { source, .. } =
            &ev
        {
            if *source == self.cfg.server {
                // Whatever it says, the server is there.
                self.reg.handle_heard(Instant::now().into_std());
            }
        }
        match ev {
            TransportEvent::Message {
                message,
                source,
                transport,
            } => match message {
                Message::Request(req) => self.on_request(req, source, transport).await,
                Message::Response(resp) => self.on_response(resp).await,
            },
            TransportEvent::Malformed {
                source,
                error,
                reply,
                transport,
            } => {
                // Answered as RFC 3261 asks (505, 416, 400), to our server; strangers'
                // garbage is only logged, as their requests are refused.
                let ours = !self.cfg.accept_only_from_server || source == self.cfg.server;
                match reply {
                    Some(resp) if ours => {
                        tracing::warn!(%source, %error, status = resp.status, "answering malformed SIP");
                        let _ = self
                            .transport
                            .send(transport, source, &Message::Response(*resp))
                            .await;
                    }
                    _ => tracing::warn!(%source, %error, "dropped malformed SIP"),
                }
            }
            TransportEvent::Closed { peer, transport } => {
                if peer == self.cfg.server && transport == self.cfg.transport {
                    tracing::info!("connection to the server closed");
                    self.reg.handle_transport_closed(Instant::now().into_std());
                }
            }
        }
    }

    async fn on_response(&mut self, resp: Response) {
        let (Ok(via), Ok(cseq)) = (resp.top_via(), resp.cseq()) else {
            tracing::warn!("response without Via/CSeq dropped");
            return;
        };
        let key = txn_key(via.branch().unwrap_or_default(), &cseq.method);
        if resp.status < 200 {
            if let Some(t) = self.txns.get_mut(&key) {
                if t.dest == self.cfg.server {
                    self.reg.handle_heard(Instant::now().into_std());
                }
                if t.request.method == Method::Invite {
                    // A provisional answer stops retransmissions and Timer B; from now on the
                    // far end may ring as long as Timer C allows (RFC 3261 §16.6 step 11).
                    t.retransmit_at = None;
                    t.deadline = Instant::now() + RING_LIMIT;
                } else {
                    t.interval = T2;
                }
                if let Purpose::Invite { call_id } = t.purpose.clone() {
                    let pending = self.calls.get_mut(&call_id).is_some_and(|c| {
                        c.provisional_seen = true;
                        std::mem::take(&mut c.cancel_pending)
                    });
                    if pending {
                        self.send_cancel(&call_id).await;
                    }
                    self.on_invite_provisional(&call_id, &resp).await;
                }
            }
            return;
        }
        let Some(txn) = self.txns.remove(&key) else {
            // A retransmitted 2xx to an INVITE we already ACKed is handled via the kept ACK.
            return;
        };
        if txn.dest == self.cfg.server {
            // An answer to a request sent to the server, even from another of its addresses.
            self.reg.handle_heard(Instant::now().into_std());
        }
        if let Some(ack) = &txn.ack {
            let _ = self
                .transport
                .send(txn.kind, txn.dest, &Message::Request(ack.clone()))
                .await;
            self.txns.insert(key, txn);
            return;
        }
        match txn.purpose.clone() {
            Purpose::Register { expires } => self.on_register_response(txn, resp, expires).await,
            Purpose::Invite { call_id } => self.on_invite_final(&key, txn, &call_id, resp).await,
            Purpose::ReInvite { call_id, hold } => {
                self.on_reinvite_final(&key, txn, &call_id, hold, resp)
                    .await
            }
            Purpose::Bye { call_id, sub } => {
                self.end_call(
                    &call_id,
                    CallEndReason {
                        code: resp.status,
                        sub_code: sub,
                    },
                )
                .await
            }
            Purpose::Refer { call_id } => {
                self.transfer_input(
                    &call_id,
                    crate::transfer::TransferInput::ReferAnswered(resp.status),
                )
                .await
            }
            Purpose::Subscribe => self.on_subscribe_response(txn.request, resp).await,
            Purpose::Cancel | Purpose::KeepAlive | Purpose::Notify | Purpose::Stray => {}
        }
    }

    async fn on_invite_provisional(&mut self, call_id: &str, resp: &Response) {
        if resp.status == 100 {
            return;
        }
        let sdp = has_sdp(&resp.headers, &resp.body);
        if sdp {
            let media = self
                .calls
                .get(call_id)
                .filter(|c| !c.answer_applied)
                .and_then(|c| c.media.clone());
            if let Some(media) = media {
                if media.accept_answer(&resp.body_str()).await.is_ok() {
                    if let Some(c) = self.calls.get_mut(call_id) {
                        c.answer_applied = true;
                    }
                }
            }
        }
        self.apply(
            call_id,
            CallInput::Provisional {
                status: resp.status,
                sdp,
            },
        );
    }

    /// A 2xx for a call we no longer have (it timed out, or we gave up): confirm and end the
    /// dialog at once with ACK and BYE, so the far end does not talk to nobody.
    async fn refuse_stray_answer(&mut self, txn: &ClientTxn, resp: &Response) {
        let Ok(mut dialog) = Dialog::from_uac(&txn.request, resp) else {
            return;
        };
        let via = self.via();
        let seq = txn.request.cseq().map(|c| c.seq).unwrap_or(1);
        let ack = dialog.request_with_cseq(Method::Ack, seq, &via);
        let bye = dialog.request(Method::Bye, &via);
        let Ok(hop) = dialog.next_hop() else { return };
        let Ok((dest, kind)) = self.resolve(&hop).await else {
            return;
        };
        let _ = self
            .transport
            .send(kind, dest, &Message::Request(ack))
            .await;
        self.send_request(Purpose::Stray, bye, dest, kind).await;
    }

    fn ack_for(&self, invite: &Request, resp: &Response) -> Request {
        // ACK for a non-2xx: same branch, same Request-URI, To from the response (§17.1.1.3).
        let mut ack = Request::new(Method::Ack, invite.uri.clone());
        for name in ["Via", "Route", "From", "Call-ID"] {
            for v in invite
                .headers
                .0
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            {
                ack.headers.push(v.0.clone(), v.1.clone());
            }
        }
        if let Some(to) = resp.headers.get("To") {
            ack.headers.push("To", to);
        }
        let seq = invite.cseq().map(|c| c.seq).unwrap_or(1);
        ack.headers.push("CSeq", format!("{seq} ACK"));
        ack.headers.push("Max-Forwards", "70");
        ack
    }

    /// Our INVITE again, as a new transaction of the same call (after a challenge, or with
    /// another offer): the next CSeq and a new branch (RFC 3261 §8.1.3.5, §22.2).
    fn invite_again(&self, invite: &Request) -> Request {
        let mut req = invite.clone();
        let seq = req.cseq().map(|c| c.seq).unwrap_or(1) + 1;
        req.headers.set("CSeq", format!("{seq} INVITE"));
        let mut via = self.via();
        via.set_param("branch", Some(&new_branch()));
        req.headers.set("Via", via.to_string());
        req
    }

    /// The far end refused our offer's media (488/606): offer the account's next media
    /// profile in a new INVITE of the same call (a new CSeq, RFC 3261 §8.1.3.5 as for a
    /// challenge). `false` if no new offer could be made; the call then ends as refused.
    fn retry_with_next_profile(&mut self, call_id: &str, txn: &ClientTxn) -> bool {
        let Some(call) = self.calls.get_mut(call_id) else {
            return false;
        };
        let refused = call.media_profile;
        let next = call.profiles_left.remove(0);
        tracing::info!(call = %redact(call_id), %refused, %next, "media refused; offering the next profile");
        let mut req = self.invite_again(&txn.request);
        // A new challenge, if any, is answered afresh.
        req.headers.remove("Authorization");
        req.headers.remove("Proxy-Authorization");
        req.body.clear();
        if let Some(c) = self.calls.get_mut(call_id) {
            c.invite = req;
            c.auth_sent = false;
            c.provisional_seen = false;
            c.media_profile = next;
        }
        self.start_media_setup(call_id, next, media_setup::SetupKind::Offer, None);
        true
    }

    /// Tells the user, in words, that the far end took none of the media we could offer.
    fn report_refused_media(&self, call_id: &str, resp: &Response) {
        let Some(call) = self.calls.get(call_id) else {
            return;
        };
        let tried: Vec<String> = self
            .cfg
            .media_profiles
            .iter()
            .take_while(|p| **p != call.media_profile)
            .chain(std::iter::once(&call.media_profile))
            .map(ToString::to_string)
            .collect();
        // RFC 3261 §20.43: `Warning: code agent "text"`; the text is what a person can read.
        let why = resp
            .headers
            .get("Warning")
            .and_then(|w| w.split_once('"'))
            .map(|(_, text)| text.trim_end_matches('"').to_owned())
            .filter(|t| !t.is_empty());
        self.emit(Event::Error {
            request_id: None,
            code: ErrorCode::MediaIncompatible,
            message: format!(
                "The other side cannot take this call's audio in any way this account allows \
                 (tried: {}){}.",
                tried.join(", "),
                why.map(|w| format!("; it says: {w}")).unwrap_or_default()
            ),
        });
    }

    async fn on_invite_final(
        &mut self,
        key: &str,
        mut txn: ClientTxn,
        call_id: &str,
        resp: Response,
    ) {
        if resp.status >= 300 {
            // The ACK for a failure is hop-by-hop and due whether or not the call still exists.
            let ack = self.ack_for(&txn.request, &resp);
            let _ = self
                .transport
                .send(txn.kind, txn.dest, &Message::Request(ack))
                .await;
        }
        let Some(call) = self.calls.get(call_id) else {
            if resp.class() == 2 {
                self.refuse_stray_answer(&txn, &resp).await;
            }
            return;
        };
        if resp.status >= 300 {
            if call.machine.state() == CallState::Disconnecting {
                // We hung up (or rang out): whatever the final failure — the CANCEL's 487, a
                // challenge, a rejection — the call is over; never retry it.
                let reason = if call.timed_out {
                    CallEndReason {
                        code: 408,
                        sub_code: sub_code::TIMEOUT,
                    }
                } else {
                    CallEndReason {
                        code: 487,
                        sub_code: sub_code::LOCAL_CANCEL,
                    }
                };
                self.end_call(call_id, reason).await;
                return;
            }
            if matches!(resp.status, 401 | 407) && !call.auth_sent {
                if let Some((ch, proxy)) = challenge_of(&resp) {
                    let mut req = self.invite_again(&txn.request);
                    let value = self.authorization(&Method::Invite, &req.uri, &ch);
                    req.headers.push(authorization_header(proxy), value);
                    if let Some(c) = self.calls.get_mut(call_id) {
                        c.auth_sent = true;
                        c.invite = req.clone();
                    }
                    self.send_request(
                        Purpose::Invite {
                            call_id: call_id.to_owned(),
                        },
                        req,
                        txn.dest,
                        txn.kind,
                    )
                    .await;
                    return;
                }
            }
            if matches!(resp.status, 488 | 606) && !call.answer_applied {
                if !call.profiles_left.is_empty() {
                    if self.retry_with_next_profile(call_id, &txn) {
                        return;
                    }
                } else {
                    self.report_refused_media(call_id, &resp);
                }
            }
            let reason = CallEndReason {
                code: resp.status,
                sub_code: sub_code::REMOTE_STATUS,
            };
            self.end_call(call_id, reason).await;
            return;
        }
        // 2xx: the dialog is confirmed.
        let dialog = match Dialog::from_uac(&txn.request, &resp) {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "unusable 2xx");
                self.end_call(
                    call_id,
                    CallEndReason {
                        code: 502,
                        sub_code: sub_code::REMOTE_STATUS,
                    },
                )
                .await;
                return;
            }
        };
        let via = self.via();
        let seq = txn.request.cseq().map(|c| c.seq).unwrap_or(1);
        let ack = dialog.request_with_cseq(Method::Ack, seq, &via);
        let hop = dialog.next_hop().ok();
        let dest = match hop {
            Some(h) => self.resolve(&h).await.ok(),
            None => None,
        }
        .unwrap_or((txn.dest, txn.kind));
        let _ = self
            .transport
            .send(dest.1, dest.0, &Message::Request(ack.clone()))
            .await;
        // Keep the transaction 32 s so that a retransmitted 2xx gets the ACK again.
        txn.ack = Some(ack);
        txn.retransmit_at = None;
        txn.dest = dest.0;
        txn.kind = dest.1;
        txn.deadline = Instant::now() + Duration::from_secs(32);
        self.txns.insert(key.to_owned(), txn);

        let cancelled = call.machine.state() == CallState::Disconnecting;
        let (media, applied) = (call.media.clone(), call.answer_applied);
        if let Some(c) = self.calls.get_mut(call_id) {
            c.dialog = Some(dialog);
        }
        if cancelled {
            // Answered while we cancelled: the 2xx won the race, so hang up with BYE.
            self.send_bye(call_id, sub_code::LOCAL_CANCEL).await;
            return;
        }
        if !applied {
            if let Some(m) = media {
                if let Err(e) = m.accept_answer(&resp.body_str()).await {
                    tracing::warn!(error = %e, "answer SDP refused");
                    self.send_bye(call_id, sub_code::MEDIA_FAILED).await;
                    return;
                }
            }
        }
        self.apply(call_id, CallInput::Answered);
    }

    async fn on_reinvite_final(
        &mut self,
        key: &str,
        mut txn: ClientTxn,
        call_id: &str,
        hold: bool,
        resp: Response,
    ) {
        let via = self.via();
        if resp.status >= 300 {
            let ack = self.ack_for(&txn.request, &resp);
            let _ = self
                .transport
                .send(txn.kind, txn.dest, &Message::Request(ack))
                .await;
        }
        let Some(call) = self.calls.get_mut(call_id) else {
            return;
        };
        call.reinvite_pending = false;
        if resp.status >= 300 {
            if matches!(resp.status, 481 | 408) {
                self.send_bye(call_id, sub_code::REMOTE_STATUS).await;
                return;
            }
            // Refused: the call stays as it was, audio included.
            if let Some(m) = call.media.clone() {
                let _ = m.rollback_offer().await;
            }
            if resp.status == 491 && call.glare_retry.is_none() {
                // Glare: both sides re-INVITEd at once. Try again after a random pause, longer
                // for the side that owns the Call-ID so the two retries do not collide again
                // (RFC 3261 §14.1).
                let owner = call.machine.direction() == CallDirection::Outgoing;
                let ms = if owner {
                    rand::random::<u64>() % 1900 + 2100
                } else {
                    rand::random::<u64>() % 2000
                };
                call.glare_retry = Some((Instant::now() + Duration::from_millis(ms), hold));
                return;
            }
            // Anything else (488, 5xx, a second 491): the user learns that it did not happen.
            call.glare_retry = None;
            self.emit(Event::Error {
                request_id: None,
                code: if hold {
                    ErrorCode::CallHoldFailed
                } else {
                    ErrorCode::CallResumeFailed
                },
                message: format!("the far end answered {} {}", resp.status, resp.reason),
            });
            self.deferred.push(transferring::Deferred::HoldSettled {
                call_id: call_id.to_owned(),
            });
            return;
        }
        let seq = txn.request.cseq().map(|c| c.seq).unwrap_or(1);
        if let Some(d) = call.dialog.as_ref() {
            let ack = d.request_with_cseq(Method::Ack, seq, &via);
            let _ = self
                .transport
                .send(txn.kind, txn.dest, &Message::Request(ack.clone()))
                .await;
            // Keep the ACK 32 s: a retransmitted 2xx (our ACK lost) gets it again.
            txn.ack = Some(ack);
            txn.retransmit_at = None;
            txn.deadline = Instant::now() + Duration::from_secs(32);
            self.txns.insert(key.to_owned(), txn);
        }
        let Some(call) = self.calls.get_mut(call_id) else {
            return;
        };
        if let Some(m) = call.media.clone() {
            if let Err(e) = m.accept_answer(&resp.body_str()).await {
                tracing::warn!(error = %e, "re-INVITE answer refused");
            }
        }
        if let Some(c) = self.calls.get_mut(call_id) {
            c.glare_retry = None;
        }
        self.apply(call_id, CallInput::LocalHold(hold));
        self.deferred.push(transferring::Deferred::HoldSettled {
            call_id: call_id.to_owned(),
        });
    }

    fn find_call_by_dialog(&self, req: &Request) -> Option<String> {
        self.calls
            .iter()
            .find(|(_, c)| c.dialog.as_ref().is_some_and(|d| d.matches(req)))
            .map(|(id, _)| id.clone())
    }

    /// Whether `req` belongs to one of our dialogs, or is an INVITE that replaces one
    /// (RFC 3891): such requests may come straight from the peer instead of through the server
    /// (a transferee without our outbound proxy, a peer whose requests the proxy does not
    /// record-route). Knowing a dialog's Call-ID and both tags is what authorises them (RFC
    /// 3891 §6); a stranger's new call or out-of-dialog REFER knows none.
    fn knows_dialog_of(&self, req: &Request) -> bool {
        if self.find_call_by_dialog(req).is_some() {
            return true;
        }
        req.method == Method::Invite
            && req
                .headers
                .get("Replaces")
                .is_some_and(|r| self.find_replaced_call(r).is_some())
    }

    async fn on_request(&mut self, req: Request, source: SocketAddr, kind: TransportKind) {
        if self.cfg.accept_only_from_server
            && source != self.cfg.server
            && !self.knows_dialog_of(&req)
        {
            tracing::warn!(%source, method = %req.method, "request not from our server refused");
            if req.method != Method::Ack && req.top_via().is_ok() && req.cseq().is_ok() {
                self.reply(&req, 403, source, kind).await;
            }
            return;
        }
        if let Err(e) = req.validate() {
            tracing::warn!(%source, error = %e, "malformed request");
            if req.top_via().is_ok() && req.cseq().is_ok() && req.method != Method::Ack {
                self.reply(&req, 400, source, kind).await;
            }
            return;
        }
        // A retransmission of a request we already answered: answer again.
        if let Some(branch) = req
            .top_via()
            .ok()
            .and_then(|v| v.branch().map(str::to_owned))
        {
            if req.method != Method::Ack {
                if let Some((bytes, dest, k, _)) = self.answered.get(&txn_key(&branch, &req.method))
                {
                    let (bytes, dest, k) = (bytes.clone(), *dest, *k);
                    let _ = self.transport.send_raw(k, dest, bytes).await;
                    return;
                }
            }
        }
        let in_dialog = req
            .to()
            .ok()
            .and_then(|t| t.tag().map(str::to_owned))
            .is_some();
        match req.method {
            Method::Invite if !in_dialog => self.on_new_invite(req, source, kind).await,
            Method::Invite => self.on_reinvite(req, source, kind).await,
            Method::Ack => {
                if let Some(id) = self.find_call_by_dialog(&req) {
                    self.uas_2xx.remove(&id);
                    let answer_due = self
                        .calls
                        .get_mut(&id)
                        .is_some_and(|c| std::mem::take(&mut c.offer_in_2xx));
                    let media = self.calls.get(&id).and_then(|c| c.media.clone());
                    if let (true, Some(media)) = (answer_due, media) {
                        let applied = if has_sdp(&req.headers, &req.body) {
                            media.accept_answer(&req.body_str()).await.is_ok()
                        } else {
                            false
                        };
                        if !applied {
                            tracing::warn!("ACK without a usable answer to our offer");
                            let _ = media.rollback_offer().await;
                        }
                    }
                    let connecting = self
                        .calls
                        .get(&id)
                        .is_some_and(|c| c.machine.state() == CallState::Connecting);
                    if connecting {
                        self.apply(&id, CallInput::Acked);
                    }
                }
            }
            Method::Bye => match self.find_call_by_dialog(&req) {
                Some(id) => {
                    self.reply(&req, 200, source, kind).await;
                    let ringing = self.calls.get(&id).is_some_and(|c| {
                        c.machine.direction() == CallDirection::Incoming
                            && c.machine.state() == CallState::Ringing
                    });
                    if ringing {
                        // A BYE on the early dialog: the INVITE still needs its final answer.
                        self.answer_incoming_with(&id, 487, sub_code::REMOTE_CANCEL)
                            .await;
                        return;
                    }
                    // BYEs that cross (both ends hung up at once, say both found the media
                    // path dead): ours went first from where we stand, so our reason stands.
                    let ours = self.txns.values().find_map(|t| match &t.purpose {
                        Purpose::Bye { call_id, sub } if *call_id == id => Some(*sub),
                        _ => None,
                    });
                    self.end_call(
                        &id,
                        CallEndReason {
                            code: 200,
                            sub_code: ours.unwrap_or(sub_code::REMOTE_HANGUP),
                        },
                    )
                    .await;
                }
                None => self.reply(&req, 481, source, kind).await,
            },
            Method::Cancel => self.on_cancel(req, source, kind).await,
            Method::Options => {
                let mut resp = req.response(200, None, Some(&new_tag()));
                resp.headers.push("Allow", ALLOW);
                self.send_response(resp, source, kind).await;
            }
            Method::Refer => {
                let id = if in_dialog {
                    self.find_call_by_dialog(&req)
                } else {
                    None
                };
                self.on_refer(req, id, in_dialog, source, kind).await;
            }
            Method::Notify if self.is_mwi_notify(&req) => {
                self.on_mwi_notify(req, source, kind).await
            }
            Method::Info | Method::Notify
                if in_dialog && self.find_call_by_dialog(&req).is_some() =>
            {
                self.reply(&req, 200, source, kind).await;
                let is_refer = req
                    .headers
                    .get("Event")
                    .is_some_and(|e| e.trim().to_ascii_lowercase().starts_with("refer"));
                if req.method == Method::Notify && is_refer {
                    if let Some(id) = self.find_call_by_dialog(&req) {
                        self.on_refer_notify(&id, &req).await;
                    }
                }
            }
            _ if in_dialog && self.find_call_by_dialog(&req).is_none() => {
                self.reply(&req, 481, source, kind).await;
            }
            _ => {
                let mut resp = req.response(501, None, Some(&new_tag()));
                resp.headers.push("Allow", ALLOW);
                self.send_response(resp, source, kind).await;
            }
        }
    }

    async fn on_new_invite(&mut self, req: Request, source: SocketAddr, kind: TransportKind) {
        let Ok(call_id) = req.call_id().map(str::to_owned) else {
            return;
        };
        if self.calls.contains_key(&call_id) {
            // Same Call-ID, no To tag, new branch: a loop or a fork back to us.
            self.reply(&req, 482, source, kind).await;
            return;
        }
        if !has_sdp(&req.headers, &req.body) {
            // We need the offer in the INVITE; late offers are not supported.
            let mut resp = req.response(488, Some("Offer Required"), Some(&new_tag()));
            resp.headers
                .push("Warning", "399 hookflash \"INVITE without SDP offer\"");
            self.send_response(resp, source, kind).await;
            return;
        }
        // An offer we could never answer is refused now, with the reason, before the user
        // is rung (RFC 3261 §21.4.26 488; Warning 305 "incompatible media format").
        let body = String::from_utf8_lossy(&req.body).into_owned();
        let offer_profile = match MediaSession::check_offer(
            &body,
            &MediaConfig::default().codecs,
            &self.cfg.media_profiles,
        ) {
            Ok(profile) => profile,
            Err(e) => {
                tracing::info!(call = %redact(&call_id), reason = %e, "offer refused before ringing");
                let mut resp = req.response(488, None, Some(&new_tag()));
                let reason: String = e
                    .to_string()
                    .chars()
                    .filter(|c| *c != '"' && *c != '\\' && !c.is_control())
                    .collect();
                resp.headers
                    .push("Warning", format!("305 hookflash \"{reason}\""));
                self.send_response(resp, source, kind).await;
                return;
            }
        };
        // Replaces (RFC 3891): which of our calls this one takes over, if any.
        let replaces = match req.headers.get("Replaces") {
            None => None,
            Some(value) => match self.find_replaced_call(value) {
                Some(old) => Some(old),
                None => {
                    self.reply(&req, 481, source, kind).await;
                    return;
                }
            },
        };
        if self.dnd && replaces.is_none() {
            tracing::info!(call = %redact(&call_id), "do not disturb: 486");
            self.reply(&req, 486, source, kind).await;
            return;
        }
        let tag = new_tag();
        let dialog = match Dialog::from_uas(&req, &tag) {
            Ok(d) => d,
            Err(_) => {
                self.reply(&req, 400, source, kind).await;
                return;
            }
        };
        let called = req.uri.to_string();
        let transferor_info = req
            .headers
            .get("Referred-By")
            .and_then(|r| r.parse::<NameAddr>().ok())
            .map(|r| CallerInfo {
                identifier: r.uri.aor(),
                display_name: r.display,
            });
        let from = dialog.remote.clone();
        let caller = CallerInfo {
            identifier: from.uri.aor(),
            display_name: from.display.clone(),
        };
        let mut ringing = req.response(180, None, Some(&tag));
        ringing.headers.push("Contact", self.contact().to_string());
        let mut machine = CallMachine::new(CallDirection::Incoming);
        let t = if replaces.is_none() {
            machine.apply(CallInput::IncomingRinging)
        } else {
            None
        };
        self.calls.insert(
            call_id.clone(),
            CallEntry {
                machine,
                dialog: Some(dialog),
                invite: req,
                invite_source: Some((source, kind)),
                media: None,
                answer_applied: true,
                auth_sent: false,
                reinvite_pending: false,
                muted: false,
                transfer_out: None,
                transfer_in: None,
                on_behalf: None,
                provisional_seen: false,
                cancel_pending: false,
                timed_out: false,
                offer_in_2xx: false,
                glare_retry: None,
                media_up: false,
                media_deadline: None,
                media_profile: offer_profile,
                profiles_left: Vec::new(),
                setup: None,
            },
        );
        if let Some(old) = replaces {
            // An attended transfer's target: take over without ringing, then end the old call.
            self.emit(Event::CallsUpdated {
                added: vec![CallSummary {
                    id: call_id.clone(),
                    direction: CallDirection::Incoming,
                    remote: caller.identifier.clone(),
                }],
                removed: vec![],
            });
            self.accept_replacing(&call_id, &old).await;
            return;
        }
        self.send_response(ringing, source, kind).await;
        tracing::info!(call = %redact(&call_id), from = %redact(&caller.identifier), "incoming call");
        self.emit(Event::CallsUpdated {
            added: vec![CallSummary {
                id: call_id.clone(),
                direction: CallDirection::Incoming,
                remote: caller.identifier.clone(),
            }],
            removed: vec![],
        });
        self.emit(Event::IncomingCall {
            call_id: call_id.clone(),
            caller_info: caller,
            transferor_info,
            called,
        });
        self.publish_transition(&call_id, t);
    }

    async fn on_reinvite(&mut self, req: Request, source: SocketAddr, kind: TransportKind) {
        let Some(id) = self.find_call_by_dialog(&req) else {
            self.reply(&req, 481, source, kind).await;
            return;
        };
        let contact = self.contact();
        let call = self.calls.get_mut(&id).expect("found above");
        if call.reinvite_pending {
            let tag = call.dialog.as_ref().map(|d| d.local_tag().to_owned());
            let resp = req.response(491, None, tag.as_deref());
            self.send_response(resp, source, kind).await;
            return;
        }
        let tag = call.dialog.as_ref().map(|d| d.local_tag().to_owned());
        if let (Some(d), Ok(cseq)) = (call.dialog.as_mut(), req.cseq()) {
            d.remote_cseq = Some(cseq.seq);
            if let Some(c) = req.contact() {
                d.remote_target = c.uri; // a target refresh (RFC 3261 §12.2.2)
            }
        }
        let Some(media) = call.media.clone() else {
            let resp = req.response(500, None, tag.as_deref());
            self.send_response(resp, source, kind).await;
            return;
        };
        if req.body.is_empty() {
            // No offer (a PBX refreshing the session after a transfer): we offer in the 2xx,
            // as things stand now, and take the answer from the ACK (RFC 3261 §14.2).
            match media.create_reoffer(media.local_direction()).await {
                Ok(offer) => {
                    let mut resp = req.response(200, None, tag.as_deref());
                    resp.headers.push("Contact", contact.to_string());
                    resp.headers.push("Content-Type", "application/sdp");
                    resp.body = offer.into_bytes();
                    if let Some(c) = self.calls.get_mut(&id) {
                        c.offer_in_2xx = true;
                    }
                    self.send_response(resp, source, kind).await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot offer in a 2xx");
                    let resp = req.response(500, None, tag.as_deref());
                    self.send_response(resp, source, kind).await;
                }
            }
            return;
        }
        let offer = req.body_str().into_owned();
        match media.accept_offer(&offer).await {
            Ok(answer) => {
                let mut resp = req.response(200, None, tag.as_deref());
                resp.headers.push("Contact", contact.to_string());
                resp.headers.push("Content-Type", "application/sdp");
                resp.body = answer.into_bytes();
                self.send_response(resp, source, kind).await;
                let held = matches!(
                    sdp_direction(&offer),
                    Direction::SendOnly | Direction::Inactive
                );
                self.apply(&id, CallInput::RemoteHold(held));
            }
            Err(e) => {
                tracing::warn!(error = %e, "re-offer refused");
                let resp = req.response(488, None, tag.as_deref());
                self.send_response(resp, source, kind).await;
            }
        }
    }

    async fn on_cancel(&mut self, req: Request, source: SocketAddr, kind: TransportKind) {
        let branch = req
            .top_via()
            .ok()
            .and_then(|v| v.branch().map(str::to_owned));
        let found = self.calls.iter().find(|(_, c)| {
            c.machine.direction() == CallDirection::Incoming
                && c.invite
                    .top_via()
                    .ok()
                    .and_then(|v| v.branch().map(str::to_owned))
                    == branch
                && req.call_id().ok() == c.invite.call_id().ok()
        });
        let Some((id, call)) = found else {
            self.reply(&req, 481, source, kind).await;
            return;
        };
        let id = id.clone();
        let ringing = call.machine.state() == CallState::Ringing;
        self.reply(&req, 200, source, kind).await;
        if ringing {
            self.answer_incoming_with(&id, 487, sub_code::REMOTE_CANCEL)
                .await;
        }
    }

    async fn on_media(&mut self, call_id: &str, ev: MediaEvent) {
        if !self.calls.contains_key(call_id) {
            return;
        }
        match ev {
            MediaEvent::FirstAudioFrame => self.emit(Event::RemoteAudioStarted {
                call_id: call_id.to_owned(),
            }),
            MediaEvent::Connected => {
                if let Some(c) = self.calls.get_mut(call_id) {
                    c.media_up = true;
                    c.media_deadline = None;
                }
            }
            MediaEvent::Dtmf(tone) => self.emit(Event::DtmfReceived {
                call_id: call_id.to_owned(),
                tone: tone.to_string(),
            }),
            MediaEvent::Failed(reason) => {
                tracing::warn!(call = %redact(call_id), %reason, "media failed");
                self.emit(Event::Error {
                    request_id: None,
                    code: ErrorCode::MediaFailed,
                    message: reason,
                });
                self.hang_up(call_id, sub_code::MEDIA_FAILED).await;
            }
            MediaEvent::DeviceError(e) => self.emit(Event::Error {
                request_id: None,
                code: e.code(),
                message: e.to_string(),
            }),
            _ => {}
        }
    }

    // ---- timers -----------------------------------------------------------------------------

    fn next_deadline(&self) -> Instant {
        let far = Instant::now() + Duration::from_secs(3600);
        let reg = self.reg.poll_timeout().map(Instant::from_std);
        let txns = self
            .txns
            .values()
            .flat_map(|t| [t.retransmit_at, Some(t.deadline)])
            .flatten();
        let retx = self.uas_2xx.values().map(|r| r.next.min(r.deadline));
        let glare = self
            .calls
            .values()
            .filter_map(|c| c.glare_retry.map(|(at, _)| at))
            .chain(self.calls.values().filter_map(|c| c.media_deadline));
        let transfers: Vec<Instant> = self
            .transfer_deadlines()
            .chain(self.mwi_deadline())
            .collect();
        reg.into_iter()
            .chain(txns)
            .chain(retx)
            .chain(glare)
            .chain(transfers)
            .min()
            .unwrap_or(far)
            .min(far)
    }

    async fn on_timers(&mut self) {
        let now = Instant::now();
        self.reg.handle_timeout(now.into_std());
        self.on_transfer_timers(now).await;
        self.on_mwi_timer(now).await;
        // Answered, but no media path came: say so and end the call rather than keep a
        // silent call on screen as Connected.
        let silent: Vec<String> = self
            .calls
            .iter()
            .filter(|(_, c)| c.media_deadline.is_some_and(|at| now >= at))
            .map(|(id, _)| id.clone())
            .collect();
        for id in silent {
            if let Some(c) = self.calls.get_mut(&id) {
                c.media_deadline = None;
            }
            let secs = self.cfg.media_setup_timeout.as_secs();
            tracing::warn!(call = %redact(&id), "no media path after answer");
            self.emit(Event::Error {
                request_id: None,
                code: ErrorCode::MediaFailed,
                message: format!(
                    "The call was answered but no audio could flow within {secs} s \
                     (the network path or encryption to the other side could not be set up)."
                ),
            });
            self.hang_up(&id, sub_code::MEDIA_FAILED).await;
        }
        let retries: Vec<(String, bool)> = self
            .calls
            .iter()
            .filter_map(|(id, c)| {
                c.glare_retry
                    .filter(|(at, _)| now >= *at)
                    .map(|(_, hold)| (id.clone(), hold))
            })
            .collect();
        for (id, hold) in retries {
            if let Some(c) = self.calls.get_mut(&id) {
                // Keep the marker (with no time) so that a second 491 is reported, not retried.
                c.glare_retry = Some((now + Duration::from_secs(3600), hold));
            }
            if let Err(e) = self.set_hold(&id, hold).await {
                tracing::info!(error = %e, "hold retry after glare not possible any more");
                if let Some(c) = self.calls.get_mut(&id) {
                    c.glare_retry = None;
                }
            }
        }
        // Retransmissions and timeouts of client transactions.
        let mut expired = Vec::new();
        let mut resend = Vec::new();
        for (key, t) in self.txns.iter_mut() {
            if now >= t.deadline {
                expired.push((key.clone(), t.fail_status));
            } else if let Some(at) = t.retransmit_at {
                if now >= at {
                    t.interval = (t.interval * 2).min(if t.request.method == Method::Invite {
                        Duration::MAX
                    } else {
                        T2
                    });
                    t.retransmit_at = Some(now + t.interval);
                    resend.push((t.kind, t.dest, Message::Request(t.request.clone())));
                }
            }
        }
        for (kind, dest, msg) in resend {
            let _ = self.transport.send(kind, dest, &msg).await;
        }
        for (key, status) in expired {
            self.fail_txn(&key, status).await;
        }
        // 2xx retransmissions until ACK.
        let mut gone = Vec::new();
        let mut resend = Vec::new();
        for (id, r) in self.uas_2xx.iter_mut() {
            if now >= r.deadline {
                gone.push(id.clone());
            } else if now >= r.next {
                r.interval = (r.interval * 2).min(T2);
                r.next = now + r.interval;
                if r.kind == TransportKind::Udp {
                    resend.push((r.kind, r.dest, r.bytes.clone()));
                }
            }
        }
        for (kind, dest, bytes) in resend {
            let _ = self.transport.send_raw(kind, dest, bytes).await;
        }
        for id in gone {
            self.uas_2xx.remove(&id);
            // No ACK in 64*T1: the dialog is dead (RFC 3261 §13.3.1.4).
            if self
                .calls
                .get(&id)
                .is_some_and(|c| c.machine.state() == CallState::Connecting)
            {
                self.send_bye(&id, sub_code::TIMEOUT).await;
            }
        }
        self.answered.retain(|_, (_, _, _, keep)| *keep > now);
    }

    /// A transaction ended without a final response: a timeout (408) or transport error (503).
    async fn fail_txn(&mut self, key: &str, status: u16) {
        let Some(mut txn) = self.txns.remove(key) else {
            return;
        };
        if txn.ack.is_some() {
            return; // a completed INVITE whose 2xx-retransmission window ended
        }
        if let Purpose::Invite { call_id } = &txn.purpose {
            let ringing = self.calls.get_mut(call_id).filter(|c| {
                c.provisional_seen && !c.timed_out && c.machine.state() != CallState::Disconnecting
            });
            if let Some(call) = ringing {
                // Rang too long: CANCEL it (the callee must stop ringing too) and let the 487,
                // or the INVITE's last 32 s, end the call as a timeout.
                call.timed_out = true;
                let call_id = call_id.clone();
                txn.deadline = Instant::now() + Duration::from_secs(32);
                self.txns.insert(key.to_owned(), txn);
                self.cancel(&call_id).await;
                return;
            }
        }
        let sub = if status == 408 {
            sub_code::TIMEOUT
        } else {
            sub_code::TRANSPORT_FAILED
        };
        let now = Instant::now().into_std();
        if txn.dest == self.cfg.server && !matches!(txn.purpose, Purpose::Register { .. }) {
            // No answer at all from the server (a timeout, or a send error such as a refused
            // connection): it is gone, unless it was heard from since this went out.
            self.reg
                .handle_request_unanswered(now, txn.sent_at.into_std());
        }
        match txn.purpose {
            Purpose::Register { .. } if txn.untrusted => {
                self.reg.handle_outcome(now, RegisterOutcome::Untrusted)
            }
            Purpose::Register { .. } => self
                .reg
                .handle_outcome(now, RegisterOutcome::NoAnswer { status }),
            Purpose::Bye {
                call_id,
                sub: hangup,
            } => {
                // The BYE got no answer: the call is over all the same, for the reason we hung up.
                self.end_call(
                    &call_id,
                    CallEndReason {
                        code: status,
                        sub_code: hangup,
                    },
                )
                .await
            }
            Purpose::Invite { call_id } => {
                self.end_call(
                    &call_id,
                    CallEndReason {
                        code: status,
                        sub_code: sub,
                    },
                )
                .await
            }
            Purpose::ReInvite { call_id, .. } => {
                if let Some(c) = self.calls.get_mut(&call_id) {
                    c.reinvite_pending = false;
                }
                self.send_bye(&call_id, sub).await;
            }
            // Reported above as unanswered; the registration machine also times its probes.
            Purpose::KeepAlive => {}
            Purpose::Refer { call_id } => {
                self.transfer_input(
                    &call_id,
                    crate::transfer::TransferInput::ReferAnswered(status),
                )
                .await
            }
            Purpose::Subscribe => self.mwi_retry_later(),
            Purpose::Cancel | Purpose::Notify | Purpose::Stray => {}
        }
    }

    /// The probe the registration machine asked for ([`crate::registration`] explains when
    /// and why): on a connection (TCP, TLS) a CRLFCRLF ping, answered by a CRLF pong (RFC
    /// 5626 §4.4.1), on a WebSocket a ping frame, answered by a pong frame; an OPTIONS to the
    /// server on UDP, answered by any response (a 404 or 405 will do). Its answer reaches the
    /// machine as a sign of life; its silence is the machine's timeout.
    async fn send_keepalive(&mut self) {
        match self.cfg.transport {
            kind @ (TransportKind::Tcp
            | TransportKind::Tls
            | TransportKind::Ws
            | TransportKind::Wss) => {
                let sent = self.transport.ping(kind, self.cfg.server).is_ok();
                if !sent {
                    // The connection is gone: register again over a new one.
                    self.reg.handle_transport_closed(Instant::now().into_std());
                }
            }
            TransportKind::Udp => {
                if self
                    .txns
                    .values()
                    .any(|t| matches!(t.purpose, Purpose::KeepAlive))
                {
                    return;
                }
                self.reg_txn.cseq += 1;
                let uri = Uri::sip(None, &self.cfg.domain, None);
                let mut req = Request::new(Method::Options, uri);
                let mut from = NameAddr::new(self.aor());
                from.set_param("tag", Some(&self.reg_txn.from_tag));
                let h = &mut req.headers;
                h.push("Via", self.via().to_string());
                h.push("Max-Forwards", "70");
                h.push("From", from.to_string());
                h.push(
                    "To",
                    NameAddr::new(Uri::sip(None, &self.cfg.domain, None)).to_string(),
                );
                h.push("Call-ID", self.reg_txn.call_id.clone());
                h.push("CSeq", format!("{} OPTIONS", self.reg_txn.cseq));
                self.send_request(Purpose::KeepAlive, req, self.cfg.server, TransportKind::Udp)
                    .await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_never_reach_a_log() {
        let password = Credential::Password {
            user: "alice".into(),
            password: "hunter2-sip".into(),
        };
        let turn = TurnConfig {
            urls: vec!["turn:192.0.2.7:3478".into()],
            credentials: Some(("relay-alice".into(), "hunter2-turn".into())),
            relay_only: true,
        };
        let printed = format!("{password:?} {turn:?}");
        assert!(
            !printed.contains("hunter2"),
            "Debug (what tracing prints) shows no password: {printed}"
        );
        assert!(
            printed.contains("turn:192.0.2.7:3478"),
            "but still says which relay: {printed}"
        );
    }
}
