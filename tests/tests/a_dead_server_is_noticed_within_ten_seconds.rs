//! A dead server is noticed within ten seconds, on UDP and on TCP: a real switchboard process
//! is killed with SIGKILL (as a crash or an OOM kill would) under a signed-in agent, whose
//! `connectionState` must leave Connected within ~10 s (12 s allowed here for a loaded
//! machine), and come back to Connected by itself once a switchboard listens on the same port
//! again (after a few seconds down, when the agent's retries have slowed down).
//!
//! The agent runs with the product's keep-alive defaults, so the figures printed are the ones a
//! user would see: on UDP the unanswered OPTIONS probe (5 s of silence, then 4 s without an
//! answer: 4-9 s depending on when the server dies); on TCP the closed connection (at once).
//!
//! Needs the switchboard binary: `cargo build -p hookflash-switchboard --bins`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hookflash_core::agent::{AgentConfig, Credential};
use hookflash_core::api::Event;
use hookflash_core::registration::{ConnectionReason, ConnectionState};
use hookflash_core::sip::TransportKind;
use hookflash_tests::process::SwitchboardProcess;
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

/// `user` signed in to `sb` over `transport`, with `tune` applied to the default config.
async fn connected_agent(
    sb: &SwitchboardProcess,
    user: &str,
    transport: TransportKind,
    tune: impl FnOnce(&mut AgentConfig),
) -> TestAgent {
    let server: SocketAddr = sb.server.parse().expect("the switchboard names IP:PORT");
    let token = sb.token(user).await;
    let mut config = AgentConfig::new(
        server,
        DOMAIN,
        Credential::parse(&token).expect("the token command issues a valid token"),
    );
    config.transport = transport;
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
    let sb = SwitchboardProcess::start(SECRET, &[]).await;
    let server: SocketAddr = sb.server.parse().expect("the switchboard names IP:PORT");
    // Everything at its defaults: the figures measured are the product's.
    let mut a = connected_agent(&sb, "alice", transport, |_| {}).await;
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
    let back = SwitchboardProcess::start_on_port(SECRET, server.port()).await;
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
async fn a_killed_server_is_noticed_within_ten_seconds_over_udp_and_tcp() {
    hookflash_tests::init_logging();
    // Both transports at once: the two waits overlap, and neither agent sees the other's
    // server.
    let (udp, tcp) = tokio::join!(
        kill_and_restart_under_an_agent(TransportKind::Udp),
        kill_and_restart_under_an_agent(TransportKind::Tcp),
    );
    eprintln!(
        "dead server noticed after: UDP {:.2} s, TCP {:.2} s; Connected again after the \
         restart: UDP {:.2} s, TCP {:.2} s",
        udp.0.as_secs_f64(),
        tcp.0.as_secs_f64(),
        udp.1.as_secs_f64(),
        tcp.1.as_secs_f64()
    );
    assert!(
        tcp.0 < Duration::from_secs(2),
        "a killed server's TCP connection closes at once, and a refused reconnection is the \
         dead server: noticed at once, not after a probe cycle (took {:?})",
        tcp.0
    );
}

#[tokio::test]
async fn a_live_server_that_answers_the_probes_is_not_flagged() {
    hookflash_tests::init_logging();
    let sb = SwitchboardProcess::start(SECRET, &[]).await;
    // Probe after 300 ms of silence, give up after 1 s: a dozen probes in the 4 s below, each
    // of which would turn the agent Disconnected if its answer (the switchboard's 200 to the
    // OPTIONS on UDP, its CRLF pong on TCP) were not heard.
    let often = |c: &mut AgentConfig| {
        c.keepalive_interval = Duration::from_millis(300);
        c.keepalive_timeout = Duration::from_secs(1);
    };
    let mut udp = connected_agent(&sb, "alice", TransportKind::Udp, often).await;
    let mut tcp = connected_agent(&sb, "bob", TransportKind::Tcp, often).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    for (a, transport) in [(&mut udp, "UDP"), (&mut tcp, "TCP")] {
        assert_eq!(
            next_connection_change(a, Duration::ZERO).await,
            None,
            "{transport}: a server that answers every probe is alive; the agent must not \
             leave Connected"
        );
        assert_eq!(
            a.agent.connection_state(),
            ConnectionState::Connected,
            "{transport}: still Connected after a dozen probes"
        );
        a.agent.shutdown().await;
    }
    sb.kill_hard().await;
}
