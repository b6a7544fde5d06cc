//! The signed-in session: one `CallAgent` from `hookflash-core`, and — on first run, or
//! whenever no account is configured — the embedded switchboard with its demo directory,
//! in this process on loopback.
//!
//! Every core event goes to the window unchanged, as the typed `coreEvent`; the desktop
//! integration (tray, notifications) watches the same stream. No call logic lives here.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hookflash_core::agent::{AgentConfig, CallAgent, CallClient, Credential, TurnConfig};
use hookflash_core::api::Event;
use hookflash_core::audio::DeviceManager;
use hookflash_core::mailbox::Mailbox;
use hookflash_core::registration::ConnectionState;
use hookflash_core::sip::TransportKind;
use hookflash_core::ErrorCode;
use hookflash_switchboard::demo::{Contact, DemoDirectory, Voices};
use hookflash_switchboard::{Config, Switchboard, SwitchboardHandle};
use serde::{Deserialize, Serialize};
use specta::Type;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use crate::ipc::ApiError;
use crate::settings::{Secret, StoredAccount, Transport};

/// The demo user's name on the embedded switchboard.
pub const DEMO_USER: &str = "you";
/// How long the demo user's token lasts (issued again at every start).
const DEMO_TOKEN_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// Which server the session is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Type)]
#[serde(rename_all = "camelCase")]
pub enum ServerKind {
    /// The embedded switchboard with the demo directory.
    Demo,
    /// A real server from the settings.
    Remote,
}

/// Who is signed in, where, and whom they can call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type)]
#[serde(rename_all = "camelCase")]
pub struct SessionInfo {
    /// The user name.
    pub user: String,
    /// The display name.
    pub display_name: Option<String>,
    /// The SIP domain.
    pub domain: String,
    /// Demo or a real server.
    pub server: ServerKind,
    /// Registered or not, now.
    pub connection_state: ConnectionState,
    /// The directory (the demo contacts; empty on a real server).
    pub directory: Vec<Contact>,
    /// Whether voicemail, rules and greeting can be managed here (a Hookflash switchboard).
    pub mailbox: bool,
}

/// Where a session's audio goes: the app's device manager.
#[derive(Clone)]
pub struct Environment {
    /// The sound devices (shared by every session of the app).
    pub devices: DeviceManager,
    /// The app's data directory (the demo switchboard keeps its database and voicemail here).
    pub data_dir: std::path::PathBuf,
    /// How the demo contacts sound (tones for tests, speech for people).
    pub voices: Voices,
}

struct Embedded {
    switchboard: SwitchboardHandle,
    directory: DemoDirectory,
}

/// A signed-in session.
pub struct Session {
    agent: CallAgent,
    info: SessionInfo,
    mailbox: Option<Mailbox>,
    embedded: Option<Embedded>,
    forward: JoinHandle<()>,
}

impl Session {
    /// Starts the embedded switchboard and its demo directory on loopback and signs in as
    /// the demo user.
    pub async fn demo(env: &Environment, on_event: EventSink) -> Result<Session, ApiError> {
        let dir = env.data_dir.join("demo");
        std::fs::create_dir_all(&dir).map_err(|e| {
            ApiError::new(
                ErrorCode::SettingsFailed,
                format!("The demo server's folder could not be made: {e}"),
            )
        })?;
        let mut config = Config::local(&random_secret());
        config.db_path = Some(dir.join("switchboard.db"));
        config.data_dir = Some(dir);
        config.no_answer_timeout = Duration::from_secs(25);
        let server_failed = |e: hookflash_switchboard::SwitchboardError| {
            ApiError::new(
                ErrorCode::TransportFailed,
                format!("The built-in demo server could not start: {e}"),
            )
        };
        let switchboard = Switchboard::start(config).await.map_err(server_failed)?;
        let directory = DemoDirectory::start(&switchboard, env.voices)
            .await
            .map_err(server_failed)?;
        let token = switchboard.issue_token(DEMO_USER, DEMO_TOKEN_TTL);
        let mut agent_config = AgentConfig::new(
            switchboard.local_addr(),
            switchboard.domain(),
            Credential::Token(token.clone()),
        );
        agent_config.display_name = Some("You".into());
        let mailbox = switchboard
            .http_addr()
            .and_then(|api| Mailbox::new(api, &token).ok());
        let info = SessionInfo {
            user: DEMO_USER.into(),
            display_name: Some("You".into()),
            domain: switchboard.domain().to_owned(),
            server: ServerKind::Demo,
            connection_state: ConnectionState::Disconnected,
            directory: directory.contacts().to_vec(),
            mailbox: mailbox.is_some(),
        };
        let embedded = Embedded {
            switchboard,
            directory,
        };
        Self::sign_in(env, agent_config, info, mailbox, Some(embedded), on_event).await
    }

    /// Signs in to a real server with a saved account.
    pub async fn remote(
        env: &Environment,
        account: &StoredAccount,
        on_event: EventSink,
    ) -> Result<Session, ApiError> {
        let server = resolve(&account.server).await?;
        let credential = match &account.secret {
            Secret::Token { token } => Credential::parse(token.trim()).map_err(|e| {
                ApiError::new(
                    e.code(),
                    "That token is not valid: check it and sign in again.",
                )
            })?,
            Secret::Password { password } => Credential::Password {
                user: account.user.clone(),
                password: password.clone(),
            },
        };
        let mut config = AgentConfig::new(server, &account.domain, credential);
        config.transport = match account.transport {
            Transport::Udp => TransportKind::Udp,
            Transport::Tcp => TransportKind::Tcp,
            Transport::Tls => TransportKind::Tls,
            Transport::Ws => TransportKind::Ws,
            Transport::Wss => TransportKind::Wss,
        };
        config.display_name = account.display_name.clone();
        config.media_profiles = account.media_profiles.clone();
        if let Some(pem) = &account.tls_ca {
            // The core trusts authorities from files: the one the user chose, kept beside
            // the settings.
            let path = env.data_dir.join("account-authority.pem");
            std::fs::write(&path, pem).map_err(|e| {
                ApiError::new(
                    ErrorCode::SettingsFailed,
                    format!("The trusted authority could not be kept: {e}"),
                )
            })?;
            config.tls_roots = vec![path];
        }
        config.turn = account.turn.as_ref().map(|t| TurnConfig {
            urls: vec![t.server.clone()],
            credentials: t.user.clone().zip(t.password.clone()),
            relay_only: t.relay_only,
        });
        if !server.ip().is_loopback() {
            // Bind where the route to the server leaves, not loopback.
            config.bind_ip = local_ip_towards(server).unwrap_or(config.bind_ip);
        }
        let info = SessionInfo {
            user: account.user.clone(),
            display_name: account.display_name.clone(),
            domain: account.domain.clone(),
            server: ServerKind::Remote,
            connection_state: ConnectionState::Disconnected,
            directory: Vec::new(),
            mailbox: false,
        };
        Self::sign_in(env, config, info, None, None, on_event).await
    }

    async fn sign_in(
        env: &Environment,
        config: AgentConfig,
        info: SessionInfo,
        mailbox: Option<Mailbox>,
        embedded: Option<Embedded>,
        on_event: EventSink,
    ) -> Result<Session, ApiError> {
        let config = config.with_devices(env.devices.clone());
        let agent = match CallClient::new().create_call_agent(config).await {
            Ok(agent) => agent,
            Err(e) => {
                if let Some(embedded) = embedded {
                    embedded.shutdown().await;
                }
                return Err(ApiError::from(&e));
            }
        };
        let mut events = agent.subscribe();
        // Problems found before anyone listened (no sound device at all) are told first.
        for problem in env.devices.problems() {
            on_event(problem);
        }
        let forward = tokio::spawn(async move {
            loop {
                match events.recv().await {
                    Ok(event) => on_event(event),
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(skipped = n, "the window fell behind the core's events");
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                }
            }
        });
        Ok(Session {
            agent,
            info,
            mailbox,
            embedded,
            forward,
        })
    }

    /// The agent.
    pub fn agent(&self) -> &CallAgent {
        &self.agent
    }

    /// Who, where, whom; with the connection state as it is now.
    pub fn info(&self) -> SessionInfo {
        SessionInfo {
            connection_state: self.agent.connection_state(),
            ..self.info.clone()
        }
    }

    /// The voicemail service, where the server has one.
    pub fn mailbox(&self) -> Result<&Mailbox, ApiError> {
        self.mailbox.as_ref().ok_or_else(|| {
            ApiError::new(
                ErrorCode::VoicemailUnavailable,
                "This server offers no voicemail management.",
            )
        })
    }

    /// Hangs up, signs out, and stops the embedded server if there is one.
    pub async fn shutdown(self) {
        self.agent.shutdown().await;
        // The last events (signed out) reach the window before the stream closes.
        tokio::time::sleep(Duration::from_millis(50)).await;
        self.forward.abort();
        if let Some(embedded) = self.embedded {
            embedded.shutdown().await;
        }
    }
}

impl Embedded {
    async fn shutdown(self) {
        self.directory.shutdown().await;
        self.switchboard.shutdown().await;
    }
}

/// Where each core event goes.
pub type EventSink = Arc<dyn Fn(Event) + Send + Sync>;

fn random_secret() -> String {
    use rand::Rng;
    let bytes: [u8; 24] = rand::thread_rng().gen();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Resolves `host:port` (a name or an address; 5060 when the port is left out) without
/// blocking the runtime.
async fn resolve(server: &str) -> Result<SocketAddr, ApiError> {
    let with_port = if server
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        && !server.ends_with(']')
    {
        server.to_owned()
    } else {
        format!("{server}:5060")
    };
    let unknown = || {
        ApiError::new(
            ErrorCode::TransportFailed,
            format!("The server {server:?} could not be found: check its name and port."),
        )
    };
    let found = tokio::time::timeout(Duration::from_secs(5), tokio::net::lookup_host(with_port))
        .await
        .map_err(|_| unknown())?
        .map_err(|_| unknown())?;
    let mut found: Vec<SocketAddr> = found.collect();
    found.sort_by_key(|a| !a.is_ipv4());
    found.into_iter().next().ok_or_else(unknown)
}

/// The local address the system would use to reach `server` (no packet is sent).
fn local_ip_towards(server: SocketAddr) -> Option<std::net::IpAddr> {
    let any: SocketAddr = if server.is_ipv4() {
        "0.0.0.0:0".parse().ok()?
    } else {
        "[::]:0".parse().ok()?
    };
    let socket = std::net::UdpSocket::bind(any).ok()?;
    socket.connect(server).ok()?;
    socket.local_addr().ok().map(|a| a.ip())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_server_without_a_port_means_5060() {
        assert_eq!(
            resolve("127.0.0.1").await.unwrap(),
            "127.0.0.1:5060".parse().unwrap(),
            "SIP's default port"
        );
        assert_eq!(
            resolve("127.0.0.1:5070").await.unwrap(),
            "127.0.0.1:5070".parse().unwrap(),
            "a given port is kept"
        );
        let err = resolve("no-such-host.invalid").await.unwrap_err();
        assert_eq!(err.code, ErrorCode::TransportFailed, "{}", err.message);
    }
}
