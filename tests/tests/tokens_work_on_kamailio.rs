//! The user access token is Kamailio `auth_ephemeral`'s credential, byte for byte: an agent
//! signs in to a real Kamailio (started here, on loopback, stopped by PID) with a token that
//! our switchboard code issued, and a token signed with another secret is `invalidToken`.

use std::process::Stdio;
use std::time::Duration;

use hookflash_core::agent::{AgentConfig, Credential};
use hookflash_core::auth::{unix_now, Token};
use hookflash_core::registration::{ConnectionReason, ConnectionState, RegistrationPolicy};
use hookflash_tests::{Ears, TestAgent};

const SECRET: &str = "shared-with-kamailio";
const DOMAIN: &str = "hookflash.local";

fn config(port: u16, modules: &str) -> String {
    // Kamailio holds the SIP scope's key only, as deploy/kamailio does.
    let sip_key = hookflash_core::auth::scope_key(SECRET, hookflash_core::auth::Scope::Sip);
    format!(
        r#"#!KAMAILIO
debug=2
log_stderror=yes
children=1
auto_aliases=no
listen=udp:127.0.0.1:{port}
alias="{DOMAIN}"
alias="127.0.0.1:{port}"
mpath="{modules}"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "textops.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
loadmodule "auth.so"
loadmodule "auth_ephemeral.so"
modparam("auth_ephemeral", "secret", "{sip_key}")
modparam("auth_ephemeral", "username_format", 1)
request_route {{
    if (is_method("REGISTER")) {{
        if (!autheph_www("$td")) {{
            auth_challenge("$td", "0");
            exit;
        }}
        # The token's user must be the one registering (the whole auth user is EXPIRY:USER).
        if (!autheph_check_to()) {{
            sl_send_reply("403", "Identity Mismatch");
            exit;
        }}
        if (!save("location")) sl_reply_error();
        exit;
    }}
    sl_send_reply("404", "Not Here");
}}
"#
    )
}

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn agent(port: u16, token: Token) -> TestAgent {
    let mut config = AgentConfig::new(
        format!("127.0.0.1:{port}").parse().unwrap(),
        DOMAIN,
        Credential::Token(token),
    );
    config.registration = RegistrationPolicy {
        retry_initial: Duration::from_millis(200),
        ..RegistrationPolicy::default()
    };
    config.register_timeout = Duration::from_millis(800);
    // Probe often and give up soon, so that a few seconds show how Kamailio takes probes.
    config.keepalive_interval = Duration::from_millis(300);
    config.keepalive_timeout = Duration::from_secs(1);
    TestAgent::create("alice", config, Ears::default()).await
}

#[tokio::test]
async fn a_switchboard_token_signs_in_to_kamailio() {
    let kamailio = ["/usr/sbin/kamailio", "/usr/local/sbin/kamailio"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists());
    let (Some(kamailio), Some(modules)) = (kamailio, hookflash_tests::kamailio_module_dir()) else {
        eprintln!(
            "\n*** SKIPPED: kamailio is not installed (scripts/deps and .ci/run install it) ***\n"
        );
        return;
    };
    let dir = std::env::temp_dir().join(format!("hookflash-kamailio-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let port = free_udp_port();
    let cfg = dir.join("kamailio.cfg");
    std::fs::write(&cfg, config(port, &modules)).unwrap();
    let mut child =
        hookflash_tests::kamailio_args(&mut tokio::process::Command::new(kamailio), &cfg, &dir)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start kamailio");
    let stderr = child.stderr.take().unwrap();
    let log = tokio::spawn(async move {
        use tokio::io::AsyncReadExt;
        let mut s = String::new();
        let mut stderr = stderr;
        let _ = stderr.read_to_string(&mut s).await;
        s
    });
    tokio::time::sleep(Duration::from_millis(700)).await; // kamailio binds its port

    let token = Token::issue(SECRET, "alice", Duration::from_secs(3600), unix_now());
    let mut a = agent(port, token).await;
    a.wait_connection(ConnectionState::Connected, ConnectionReason::Registered)
        .await;

    let forged = Token::issue(
        "not-the-secret",
        "alice",
        Duration::from_secs(3600),
        unix_now(),
    );
    let mut b = agent(port, forged).await;
    b.wait_connection(
        ConnectionState::Disconnected,
        ConnectionReason::InvalidToken,
    )
    .await;

    // Kamailio answers our keep-alive OPTIONS as its configuration says, here with 404: an
    // answer all the same, so it is alive and the agent stays Connected through the probes.
    tokio::time::sleep(Duration::from_secs(3)).await;
    while let Ok(e) = a.events.try_recv() {
        assert!(
            !matches!(e, hookflash_core::api::Event::ConnectionStateChanged { .. }),
            "a 404 to the keep-alive OPTIONS proves Kamailio alive; the agent must not leave \
             Connected: {e:?}"
        );
    }
    assert_eq!(
        a.agent.connection_state(),
        ConnectionState::Connected,
        "still Connected to Kamailio after several keep-alive probes"
    );

    a.agent.shutdown().await;
    b.agent.shutdown().await;
    let pid = child.id().expect("kamailio's pid");
    // Stop it by its PID (and its children with it), never by name.
    let _ = std::process::Command::new("kill")
        .arg(pid.to_string())
        .status();
    let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
    let _ = child.kill().await;
    let log = tokio::time::timeout(Duration::from_secs(2), log)
        .await
        .ok()
        .and_then(|r| r.ok())
        .unwrap_or_default();
    assert!(
        !log.contains("ERROR: <core>"),
        "kamailio ran cleanly:\n{log}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
