//! The two servers the end-to-end suites run against, chosen by a parameter ([`Server`]):
//!
//! - [`Server::Switchboard`]: the `hookflash-switchboard serve` binary alone, registrar,
//!   proxy, voicemail and MWI in one process;
//! - [`Server::Kamailio`]: Kamailio 5.6 with the repository's `deploy/kamailio/kamailio.cfg`
//!   as registrar and proxy, and the switchboard binary beside it as the voicemail service
//!   (`serve --voicemail-registrar`, registered to Kamailio as user `voicemail`) and the
//!   notifier of message-summary subscriptions.
//!
//! Both have the same forwarding policy: a busy or unanswered call goes to the callee's
//! voicemail, unless the INVITE says `X-Disable-Forwarding: true`. Kamailio's configuration
//! does that for every user; on the switchboard [`Deployment::agent_on`] gives every user the
//! same two rules.
//!
//! Every process a deployment starts is stopped by its PID — Kamailio together with all its
//! children, whose PIDs are read from `/proc` — when the deployment is dropped, so also when
//! a test fails; [`Deployment::stop`] stops them and checks that none is left.

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use hookflash_core::agent::{AgentConfig, Credential};
use hookflash_core::auth::{unix_now, Token};
use hookflash_core::sip::TransportKind;

use crate::certs::TestPki;
use crate::process::{AgentProcess, SwitchboardProcess};
use crate::procstat::process_tree;
use crate::{agent_config, http, Ears, TestAgent};

/// The secret both servers check tokens with.
pub const SECRET: &str = "deployment-secret";
/// The SIP domain (and digest realm) of both.
pub const DOMAIN: &str = "hookflash.local";
/// How long a call rings before it goes to voicemail, on both servers (Kamailio's
/// `NO_ANSWER_TIMEOUT`, the switchboard users' noAnswer rule).
pub const NO_ANSWER: Duration = Duration::from_secs(2);
/// A static (password) user of the Kamailio deployment and its password.
pub const STATIC_USER: (&str, &str) = ("dora", "dora's password");

/// Which server a suite runs against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Server {
    /// The switchboard binary.
    Switchboard,
    /// Kamailio with `deploy/kamailio/kamailio.cfg`, and the switchboard's voicemail service.
    Kamailio,
}

/// The repository's Kamailio configuration.
pub fn kamailio_cfg() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/kamailio/kamailio.cfg")
}

/// A loopback port free for both UDP and TCP.
pub fn free_port() -> u16 {
    loop {
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a TCP port");
        let port = tcp.local_addr().expect("local address").port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// Whether `pid` is a live process (not gone, not a zombie).
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next().map(|st| st != "Z"))
        })
        .unwrap_or(false)
}

/// The live processes whose command line mentions `needle` (a test's own directory).
pub fn processes_mentioning(needle: &str) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(needle))
                .unwrap_or(false)
        })
        .filter(|pid| alive(*pid))
        .collect()
}

/// The user and group id Kamailio runs as when the tests run as root.
const NOBODY: u32 = 65534;

/// Whether this process runs as root (its real uid, from `/proc/self/status`).
fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// The user id `pid` runs as (its effective uid).
pub fn uid_of(pid: u32) -> Option<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find(|l| l.starts_with("Uid:"))?
        .split_whitespace()
        .nth(2)?
        .parse()
        .ok()
}

fn kill(signal: &str, pids: &[u32]) {
    if pids.is_empty() {
        return;
    }
    let _ = std::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .args(pids.iter().map(u32::to_string))
        .stderr(Stdio::null())
        .status();
}

/// Kamailio with the repository's configuration, on loopback ports of its own, with TLS,
/// WebSocket and static users on. Dropping it kills it and all its children by PID.
pub struct Kamailio {
    child: tokio::process::Child,
    pid: u32,
    /// Its working directory: configuration inputs, certificate, log, PID file.
    pub dir: PathBuf,
    /// SIP over UDP and TCP.
    pub sip: SocketAddr,
    /// SIP over TLS.
    pub tls: SocketAddr,
    /// SIP over WebSocket.
    pub ws: SocketAddr,
    /// SIP over secure WebSocket.
    pub wss: SocketAddr,
    /// The authority that issued its certificate (for the domain and 127.0.0.1).
    pub pki: TestPki,
}

impl Kamailio {
    /// Start Kamailio in `dir` (created) with message-summary SUBSCRIBEs going to
    /// `mwi_server`, and wait until it answers an OPTIONS.
    pub async fn start(dir: &Path, mwi_server: SocketAddr) -> Kamailio {
        let modules = crate::kamailio_module_dir().expect(
            "kamailio and kamailio-autheph-modules are installed (scripts/deps installs them)",
        );
        for module in ["websocket.so", "tls.so"] {
            assert!(
                Path::new(&modules).join(module).exists(),
                "{module} is installed (kamailio-websocket-modules, kamailio-tls-modules; \
                 scripts/deps installs them)"
            );
        }
        std::fs::create_dir_all(dir).expect("kamailio's directory");
        // A certificate from an authority of the test's own, for the domain and the address,
        // so that clients verify it as they would a real one.
        let pki = TestPki::issue(dir, "kamailio", &[DOMAIN, "127.0.0.1"]);
        let (cert, key) = (pki.cert.clone(), pki.key.clone());
        let users = dir.join("users");
        std::fs::create_dir_all(&users).expect("users directory");
        let (user, password) = STATIC_USER;
        std::fs::write(
            users.join("subscriber"),
            format!(
                "id(int,auto) username(str) domain(str) ha1(str)\n1:{user}:{DOMAIN}:{}\n",
                hookflash_core::auth::ha1(user, DOMAIN, password)
            ),
        )
        .expect("subscriber table");
        std::fs::write(
            users.join("version"),
            "table_name(str) table_version(int)\nsubscriber:7\n",
        )
        .expect("version table");

        // As root (CI), Kamailio drops to `nobody` after binding: it runs unprivileged, and
        // reads its key and users as that user.
        let unprivileged = running_as_root();
        if unprivileged {
            for path in [
                dir,
                &users,
                &users.join("subscriber"),
                &users.join("version"),
                &cert,
                &key,
            ] {
                std::os::unix::fs::chown(path, Some(NOBODY), Some(NOBODY))
                    .expect("hand kamailio's files to nobody");
            }
        }
        let port = free_port();
        let (tls, ws, wss) = (free_port(), free_port(), free_port());
        let log = std::fs::File::create(dir.join("kamailio.log")).expect("log file");
        let defines = [
            "LISTEN_IP=127.0.0.1".to_owned(),
            format!("SIP_PORT={port}"),
            format!("DOMAIN=\"{DOMAIN}\""),
            format!("MPATH=\"{modules}\""),
            "CHILDREN=2".to_owned(),
            format!("NO_ANSWER_TIMEOUT={}", NO_ANSWER.as_millis()),
            format!("MWI_SERVER=\"sip:{mwi_server}\""),
            "WITH_TLS".to_owned(),
            format!("TLS_PORT={tls}"),
            format!("TLS_CERT=\"{}\"", cert.display()),
            format!("TLS_KEY=\"{}\"", key.display()),
            "WITH_WEBSOCKET".to_owned(),
            format!("WS_PORT={ws}"),
            format!("WSS_PORT={wss}"),
            "WITH_STATIC_USERS".to_owned(),
            format!("USERS_DB=\"text://{}\"", users.display()),
        ];
        let mut command = tokio::process::Command::new("kamailio");
        crate::kamailio_args(&mut command, &kamailio_cfg(), dir);
        for d in &defines {
            command.arg("-A").arg(d);
        }
        if unprivileged {
            command.args(["-u", &NOBODY.to_string(), "-g", &NOBODY.to_string()]);
        }
        let child = command
            .env(
                "HOOKFLASH_SIP_KEY",
                hookflash_core::auth::scope_key(SECRET, hookflash_core::auth::Scope::Sip),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("kamailio is installed (scripts/deps installs it)");
        let pid = child.id().expect("kamailio's pid");
        let ip = [127, 0, 0, 1];
        let mut k = Kamailio {
            child,
            pid,
            dir: dir.to_owned(),
            sip: SocketAddr::from((ip, port)),
            tls: SocketAddr::from((ip, tls)),
            ws: SocketAddr::from((ip, ws)),
            wss: SocketAddr::from((ip, wss)),
            pki,
        };
        k.wait_ready().await;
        k
    }

    /// Wait (at most 10 s) until Kamailio answers an OPTIONS over UDP with 200.
    async fn wait_ready(&mut self) {
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("a probe socket");
        let me = socket.local_addr().expect("probe address");
        let deadline = Instant::now() + Duration::from_secs(10);
        for n in 0.. {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("kamailio exited ({status}):\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "kamailio answers OPTIONS within 10 s:\n{}",
                self.log()
            );
            let probe = format!(
                "OPTIONS sip:{sip} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKready{n}\r\n\
                 Max-Forwards: 70\r\nFrom: <sip:probe@{DOMAIN}>;tag=p{n}\r\nTo: <sip:{sip}>\r\n\
                 Call-ID: ready-{n}@{me}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
                sip = self.sip
            );
            let _ = socket.send_to(probe.as_bytes(), self.sip).await;
            let mut buf = [0u8; 2048];
            if let Ok(Ok((len, _))) =
                tokio::time::timeout(Duration::from_millis(200), socket.recv_from(&mut buf)).await
            {
                if buf[..len].starts_with(b"SIP/2.0 200") {
                    return;
                }
            }
        }
    }

    /// Kamailio's PID.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// What Kamailio logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("kamailio.log")).unwrap_or_default()
    }

    /// Stop Kamailio (SIGTERM, then SIGKILL to whatever of its tree is left after 5 s) and
    /// return the PIDs of its tree that are still alive after that (none, normally).
    pub async fn stop(mut self) -> Vec<u32> {
        let tree = process_tree(self.pid);
        kill("TERM", &[self.pid]);
        let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
        kill("KILL", &tree);
        let _ = self.child.wait().await;
        let deadline = Instant::now() + Duration::from_secs(5);
        while tree.iter().any(|p| alive(*p)) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tree.into_iter().filter(|p| alive(*p)).collect()
    }
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        // Its children too: Kamailio forks workers that would outlive a killed parent.
        let tree = process_tree(self.pid);
        kill("KILL", &tree);
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            eprintln!(
                "--- kamailio log (last lines) ---\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
    }
}

/// A server to call through: its SIP address, its HTTP API, and the processes behind it.
pub struct Deployment {
    /// Which server this is.
    pub server: Server,
    /// Where agents send SIP (UDP and TCP).
    pub sip: SocketAddr,
    /// Where agents send SIP over TLS, WS and WSS.
    pub streams: Vec<(TransportKind, SocketAddr)>,
    /// The authority agents trust for TLS and WSS (it issued the server's certificate).
    pub ca: PathBuf,
    /// The switchboard's HTTP API (voicemail, rules): HTTPS on a switchboard with a certificate.
    pub http: SocketAddr,
    /// How to verify the API's certificate, when it is served over HTTPS.
    pub http_tls: Option<hookflash_core::sip::tls::TlsClient>,
    /// Kamailio, in a [`Server::Kamailio`] deployment.
    pub kamailio: Option<Kamailio>,
    switchboard: Option<SwitchboardProcess>,
    dir: PathBuf,
    /// Kamailio log errors the test provokes on purpose (substrings of the lines).
    expected_errors: Vec<&'static str>,
}

impl Deployment {
    /// Start `server` on loopback ports of its own.
    pub async fn start(server: Server) -> Deployment {
        crate::init_logging();
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "hookflash-deployment-{}-{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("the deployment's directory");
        let data = dir.join("data");
        let data = data.to_str().expect("a UTF-8 temporary directory");
        let (switchboard, kamailio) = match server {
            Server::Switchboard => {
                let pki = TestPki::issue(&dir, "switchboard", &[DOMAIN, "127.0.0.1"]);
                let (cert, key) = (
                    pki.cert.display().to_string(),
                    pki.key.display().to_string(),
                );
                let sb = SwitchboardProcess::start_on_port_with(
                    SECRET,
                    0,
                    &[
                        "--http-port",
                        "0",
                        "--data-dir",
                        data,
                        "--tls-cert",
                        &cert,
                        "--tls-key",
                        &key,
                        "--tls-port",
                        "0",
                        "--ws-port",
                        "0",
                        "--wss-port",
                        "0",
                    ],
                )
                .await;
                (sb, None)
            }
            Server::Kamailio => {
                // The switchboard's port is chosen first: Kamailio sends it the
                // message-summary SUBSCRIBEs, and its voicemail agent registers to Kamailio.
                let sb_port = free_port();
                let kamailio = Kamailio::start(
                    &dir.join("kamailio"),
                    SocketAddr::from(([127, 0, 0, 1], sb_port)),
                )
                .await;
                let registrar = kamailio.sip.to_string();
                let sb = SwitchboardProcess::start_on_port_with(
                    SECRET,
                    sb_port,
                    &[
                        "--http-port",
                        "0",
                        "--data-dir",
                        data,
                        "--voicemail-registrar",
                        &registrar,
                    ],
                )
                .await;
                (sb, Some(kamailio))
            }
        };
        let (sip, streams, ca) = match &kamailio {
            Some(k) => (
                k.sip,
                vec![
                    (TransportKind::Tls, k.tls),
                    (TransportKind::Ws, k.ws),
                    (TransportKind::Wss, k.wss),
                ],
                k.pki.ca.clone(),
            ),
            None => (
                switchboard
                    .server
                    .parse()
                    .expect("the switchboard's address"),
                switchboard
                    .streams
                    .iter()
                    .map(|(kind, addr)| {
                        (
                            kind.parse().expect("a transport"),
                            addr.parse().expect("an address"),
                        )
                    })
                    .collect(),
                dir.join("switchboard-ca.pem"),
            ),
        };
        let http = switchboard
            .http
            .as_deref()
            .expect("the switchboard serves its HTTP API")
            .parse()
            .expect("the HTTP API's address");
        // The switchboard serves its API over HTTPS with the certificate it has for SIP.
        let http_tls = (server == Server::Switchboard).then(|| {
            hookflash_core::sip::tls::TlsClient::new(DOMAIN, std::slice::from_ref(&ca))
                .expect("a client trusting the deployment's authority")
        });
        Deployment {
            server,
            sip,
            streams,
            ca,
            http,
            http_tls,
            kamailio,
            switchboard: Some(switchboard),
            dir,
            expected_errors: Vec::new(),
        }
    }

    /// A token for `user`, valid for an hour.
    pub fn token(&self, user: &str) -> Token {
        Token::issue(SECRET, user, Duration::from_secs(3600), unix_now())
    }

    /// Errors in Kamailio's log that the test provokes on purpose: lines containing
    /// `pattern` do not fail [`Deployment::stop`].
    pub fn expect_log_errors(&mut self, pattern: &'static str) {
        self.expected_errors.push(pattern);
    }

    /// Where agents reach the server over `transport`.
    pub fn addr(&self, transport: TransportKind) -> SocketAddr {
        if !transport.is_stream() || transport == TransportKind::Tcp {
            return self.sip;
        }
        self.streams
            .iter()
            .find(|(k, _)| *k == transport)
            .map(|(_, a)| *a)
            .unwrap_or_else(|| panic!("{:?} serves {transport:?}", self.server))
    }

    /// An agent config for `user` signed in with a token, over `transport`, trusting the
    /// deployment's authority.
    pub fn config(
        &self,
        user: &str,
        tone_hz: f64,
        transport: TransportKind,
    ) -> (AgentConfig, Ears) {
        let (mut config, ears) = agent_config(
            self.addr(transport),
            DOMAIN,
            Credential::Token(self.token(user)),
            tone_hz,
            transport,
        );
        config.tls_roots = vec![self.ca.clone()];
        (config, ears)
    }

    /// A signed-in agent for `user` over UDP whose microphone plays `tone_hz`.
    pub async fn agent(&self, user: &str, tone_hz: f64) -> TestAgent {
        self.agent_on(user, tone_hz, TransportKind::Udp).await
    }

    /// A signed-in agent over `transport`. On the switchboard the user's busy and
    /// unanswered calls go to voicemail first, as Kamailio's configuration does for everyone.
    pub async fn agent_on(&self, user: &str, tone_hz: f64, transport: TransportKind) -> TestAgent {
        let (config, ears) = self.config(user, tone_hz, transport);
        self.forward_to_voicemail(user).await;
        let mut a = TestAgent::create(user, config, ears).await;
        a.wait_connected().await;
        a
    }

    /// A `hookflash-agent` process for `user` with extra flags, signed in with a token and
    /// Connected (the same rules as [`Deployment::agent_on`] on the switchboard).
    pub async fn agent_process(&self, user: &str, extra: &[&str]) -> AgentProcess {
        self.forward_to_voicemail(user).await;
        let mut command = tokio::process::Command::new(crate::process::bin("hookflash-agent"));
        command.args(["--server", &self.sip.to_string(), "--domain", DOMAIN]);
        AgentProcess::spawn(command, user, &self.token(user).to_string(), extra, &[]).await
    }

    /// On the switchboard: `user`'s busy and unanswered (after [`NO_ANSWER`]) calls go to
    /// voicemail (rules set over the HTTP API with the user's token). Kamailio does that for
    /// every user.
    pub async fn forward_to_voicemail(&self, user: &str) {
        if self.server != Server::Switchboard {
            return;
        }
        let rules = serde_json::json!({
            "busy": {"to": "voicemail"},
            "noAnswer": {"after": NO_ANSWER.as_secs(), "to": "voicemail"},
        });
        let token = self.token(user).to_string();
        let put = self
            .api(
                "PUT",
                "/api/rules",
                Some(&token),
                rules.to_string().as_bytes(),
            )
            .await;
        assert_eq!(put.status, 200, "the switchboard stores {user}'s rules");
    }

    /// A request to the switchboard's HTTP API (over HTTPS when it serves that).
    pub async fn api(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: &[u8],
    ) -> http::HttpResponse {
        http::request_over(self.http, self.http_tls.as_ref(), method, path, token, body).await
    }

    /// `owner`'s voicemail messages from the HTTP API (with the owner's token), newest first.
    pub async fn voicemail(&self, owner: &str) -> Vec<serde_json::Value> {
        let token = self.token(owner).to_string();
        let list = self.api("GET", "/api/voicemail", Some(&token), b"").await;
        assert_eq!(list.status, 200, "{owner} lists the mailbox");
        list.json().as_array().cloned().unwrap_or_default()
    }

    /// Stop every process this deployment started, and check that none is left: Kamailio
    /// and each of its children, the switchboard, anything naming the deployment's directory.
    pub async fn stop(mut self) {
        let mut left = Vec::new();
        if let Some(k) = self.kamailio.take() {
            let pid = k.pid();
            let log = k.log();
            let errors: Vec<&str> = log
                .lines()
                .filter(|l| l.contains(" ERROR: "))
                .filter(|l| !self.expected_errors.iter().any(|e| l.contains(e)))
                .collect();
            assert!(
                errors.is_empty(),
                "kamailio ran its configuration without errors:\n{}",
                errors.join("\n")
            );
            left.extend(k.stop().await);
            assert!(!alive(pid), "kamailio ({pid}) is stopped");
        }
        if let Some(sb) = self.switchboard.take() {
            let pid = sb.pid();
            sb.stop().await;
            if let Some(pid) = pid {
                let deadline = Instant::now() + Duration::from_secs(5);
                while alive(pid) && Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                if alive(pid) {
                    left.push(pid);
                }
            }
        }
        left.extend(processes_mentioning(&self.dir.display().to_string()));
        assert!(
            left.is_empty(),
            "nothing the test started is left running: {left:?}"
        );
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Drop for Deployment {
    fn drop(&mut self) {
        // The processes go with their guards (Kamailio's tree by PID, the switchboard by
        // kill-on-drop); the directory stays after a failure, for its logs.
        if !std::thread::panicking() && self.kamailio.is_none() && self.switchboard.is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
