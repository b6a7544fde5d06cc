//! A dead server is noticed within ten seconds, on UDP, TCP and TLS: a real switchboard process
//! is killed with SIGKILL (as a crash or an OOM kill would) under a signed-in agent, whose
//! `connectionState` must leave Connected within ~10 s (12 s allowed here for a loaded
//! machine), and come back to Connected by itself once a switchboard listens on the same port
//! again (after a few seconds down, when the agent's retries have slowed down).
//!
//! The agent runs with the product's keep-alive defaults, so the figures printed are the ones a
//! user would see: on UDP the unanswered OPTIONS probe (5 s of silence, then 4 s without an
//! answer: 4-9 s depending on when the server dies); on TCP and TLS the closed connection (at
//! once). A live server's answers to the probes (the OPTIONS's response, the CRLF pong on TCP
//! and TLS, the pong frame on WebSocket) keep an agent Connected on every transport.
//!
//! Needs the switchboard binary: `cargo build -p hookflash-switchboard --bins`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hookflash_core::agent::{AgentConfig, Credential};
use hookflash_core::api::Event;
use hookflash_core::registration::{ConnectionReason, ConnectionState};
use hookflash_core::sip::TransportKind;
use hookflash_tests::certs::TestPki;
use hookflash_tests::process::SwitchboardProcess;
use hookflash_tests::servers::free_port;
use hookflash_tests::{Ears, TestAgent};
use tokio::sync::broadcast::error::RecvError;

const SECRET: &str = "dead-server-secret";
/// The switchboard's default domain.
const DOMAIN: &str = "hookflash.local";
/// How long the agent may take to notice: the ten seconds asked for, plus slack for a machine
/// busy building.
const NOTICE_WITHIN: Duration = Duration::from_secs(12);
/// How long the server stays down after the agent noticed.
const STAYS_DOWN: Duration = Duration::from_secs(6);
/// How long it may take to be back: one slow retry (15 s) plus a REGISTER timeout (4 s),
/// plus slack.
const BACK_WITHIN: Duration = Duration::from_secs(30);

/// The next `connectionStateChanged` on `a`, or `None` after `within`.
async fn next_connection_change(
    a: &mut TestAgent,
    within: Duration,
) -> Option<(ConnectionState, ConnectionReason)> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, a.events.recv()).await {
            Err(_) => return None,
            Ok(Ok(Event::ConnectionStateChanged {
                new_value, reason, ..
            })) => return Some((new_value, reason)),
            Ok(Ok(_)) | Ok(Err(RecvError::Lagged(_))) => {}
            Ok(Err(RecvError::Closed)) => panic!("the agent's events ended"),
        }
    }
}

/// A test authority and the switchboard flags for TLS on `tls_port`, WS and WSS (any port).
fn secure_flags(pki: &TestPki, tls_port: u16) -> Vec<String> {
    [
        "--tls-cert",
        &pki.cert.display().to_string(),
        "--tls-key",
        &pki.key.display().to_string(),
        "--tls-port",
        &tls_port.to_string(),
        "--ws-port",
        "0",
        "--wss-port",
        "0",
    ]
    .map(str::to_owned)
    .to_vec()
}

fn pki(name: &str) -> TestPki {
    let dir = std::env::temp_dir().join(format!("hookflash-dead-{name}-{}", std::process::id()));
    TestPki::issue(&dir, name, &[DOMAIN, "127.0.0.1"])
}

/// `user` signed in to `sb` over `transport` (trusting `ca` for TLS and WSS), with `tune`
/// applied to the default config.
async fn connected_agent(
    sb: &SwitchboardProcess,
    user: &str,
    (transport, ca): (TransportKind, Option<&TestPki>),
    tune: impl FnOnce(&mut AgentConfig),
) -> TestAgent {
    let server: SocketAddr = match transport {
        TransportKind::Udp | TransportKind::Tcp => sb.server.clone(),
        other => sb
            .stream(other.param())
            .unwrap_or_else(|| panic!("the switchboard listens on {other:?}")),
    }
    .parse()
    .expect("the switchboard names IP:PORT");
    let token = sb.token(user).await;
    let mut config = AgentConfig::new(
        server,
        DOMAIN,
        Credential::parse(&token).expect("the token command issues a valid token"),
    );
    config.transport = transport;
    config.tls_roots = ca.iter().map(|p| p.ca.clone()).collect();
    tune(&mut config);
    let mut a = TestAgent::create(user, config, Ears::default()).await;
    assert_eq!(
        next_connection_change(&mut a, Duration::from_secs(10)).await,
        Some((ConnectionState::Connected, ConnectionReason::Registered)),
        "{transport:?}: the agent signs in to the running switchboard"
    );
    a
}

/// Kill the server under a connected agent on `transport`; returns how long the agent took to
/// notice and how long it took to be Connected again after the restart.
async fn kill_and_restart_under_an_agent(transport: TransportKind) -> (Duration, Duration) {
    let pki = pki(transport.param());
    let flags = secure_flags(&pki, free_port());
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let sb = SwitchboardProcess::start(SECRET, &flags).await;
    let server: SocketAddr = sb.server.parse().expect("the switchboard names IP:PORT");
    // Everything at its defaults: the figures measured are the product's.
    let mut a = connected_agent(&sb, "alice", (transport, Some(&pki)), |_| {}).await;
    // Idle for a while, as a signed-in user waiting for calls is.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let killed = Instant::now();
    sb.kill_hard().await;
    let change = next_connection_change(&mut a, NOTICE_WITHIN).await;
    let noticed = killed.elapsed();
    assert_eq!(
        change,
        Some((
            ConnectionState::Disconnected,
            ConnectionReason::ConnectionIssue
        )),
        "{transport:?}: a killed server must turn the agent Disconnected{{connectionIssue}} \
         within {NOTICE_WITHIN:?} so that the user sees it (waited {noticed:?})"
    );
    assert_eq!(
        a.agent.connection_state(),
        ConnectionState::Disconnected,
        "{transport:?}: the getter agrees with the event"
    );

    // Down a while longer, so that the agent's retries are well into their back-off.
    tokio::time::sleep(STAYS_DOWN).await;
    let back = SwitchboardProcess::start_on_port_with(SECRET, server.port(), &flags).await;
    let restarted = Instant::now();
    let change = next_connection_change(&mut a, BACK_WITHIN).await;
    let recovered = restarted.elapsed();
    assert_eq!(
        change,
        Some((ConnectionState::Connected, ConnectionReason::Registered)),
        "{transport:?}: once a server listens on the same address again the agent must be \
         Connected by itself, without user action, within {BACK_WITHIN:?}"
    );
    a.agent.shutdown().await;
    back.kill_hard().await;
    (noticed, recovered)
}

#[tokio::test]
async fn a_killed_server_is_noticed_within_ten_seconds_over_udp_tcp_and_tls() {
    hookflash_tests::init_logging();
    // The transports at once: the waits overlap, and no agent sees another's server.
    let (udp, tcp, tls) = tokio::join!(
        kill_and_restart_under_an_agent(TransportKind::Udp),
        kill_and_restart_under_an_agent(TransportKind::Tcp),
        kill_and_restart_under_an_agent(TransportKind::Tls),
    );
    eprintln!(
        "dead server noticed after: UDP {:.2} s, TCP {:.2} s, TLS {:.2} s; Connected again \
         after the restart: UDP {:.2} s, TCP {:.2} s, TLS {:.2} s",
        udp.0.as_secs_f64(),
        tcp.0.as_secs_f64(),
        tls.0.as_secs_f64(),
        udp.1.as_secs_f64(),
        tcp.1.as_secs_f64(),
        tls.1.as_secs_f64()
    );
    for (name, noticed) in [("TCP", tcp.0), ("TLS", tls.0)] {
        assert!(
            noticed < Duration::from_secs(2),
            "{name}: a killed server's connection closes at once, and a refused reconnection \
             is the dead server: noticed at once, not after a probe cycle (took {noticed:?})"
        );
    }
}

#[tokio::test]
async fn a_live_server_that_answers_the_probes_is_not_flagged() {
    hookflash_tests::init_logging();
    let pki = pki("live");
    let flags = secure_flags(&pki, 0);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let sb = SwitchboardProcess::start(SECRET, &flags).await;
    // Probe after 300 ms of silence, give up after 1 s: a dozen probes in the 4 s below, each
    // of which would turn the agent Disconnected if its answer (the switchboard's 200 to the
    // OPTIONS on UDP, its CRLF pong on TCP and TLS, its pong frame on WebSocket) were not heard.
    let often = |c: &mut AgentConfig| {
        c.keepalive_interval = Duration::from_millis(300);
        c.keepalive_timeout = Duration::from_secs(1);
    };
    let mut agents = Vec::new();
    for (user, transport) in [
        ("alice", TransportKind::Udp),
        ("bob", TransportKind::Tcp),
        ("carol", TransportKind::Tls),
        ("dave", TransportKind::Ws),
        ("erin", TransportKind::Wss),
    ] {
        agents.push((
            connected_agent(&sb, user, (transport, Some(&pki)), often).await,
            transport,
        ));
    }
    tokio::time::sleep(Duration::from_secs(4)).await;
    for (a, transport) in &mut agents {
        assert_eq!(
            next_connection_change(a, Duration::ZERO).await,
            None,
            "{transport:?}: a server that answers every probe is alive; the agent must not \
             leave Connected"
        );
        assert_eq!(
            a.agent.connection_state(),
            ConnectionState::Connected,
            "{transport:?}: still Connected after a dozen probes"
        );
        a.agent.shutdown().await;
    }
    sb.kill_hard().await;
}
