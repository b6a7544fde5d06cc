//! Media through a TURN relay: coturn (Debian, `use-auth-secret`, the switchboard's secret)
//! on loopback, and two agents whose policy is relay-only (WebRTC profile). They sign in to
//! the TURN server with their switchboard token (the TURN REST scheme), gather relay
//! candidates only, and hear each other through coturn. Without a usable relay (coturn with
//! another secret refuses them) the call does not stay Connected and silent: it ends with
//! the media failure.

use std::time::Duration;

use hookflash_core::agent::TurnConfig;
use hookflash_core::auth::{scope_key, Scope};
use hookflash_core::call::{sub_code, CallState};
use hookflash_tests::turn::Coturn;
use hookflash_tests::{
    assert_hear_each_other, connect, end_reason, listen, Rig, TestAgent, SECRET,
};

const A_HZ: f64 = 440.0;
const B_HZ: f64 = 660.0;

fn dir(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("hookflash-turn-{name}-{}", std::process::id()))
}

/// A relay-only agent of `rig`'s, signed in, relaying through `turn`.
async fn relayed(rig: &Rig, turn: &Coturn, user: &str, hz: f64) -> TestAgent {
    let (mut config, ears) = rig.config(user, hz, hookflash_core::sip::TransportKind::Udp);
    config.turn = Some(TurnConfig {
        urls: vec![turn.url()],
        credentials: None,
        relay_only: true,
    });
    config.media_setup_timeout = Duration::from_secs(3);
    let mut agent = TestAgent::create(user, config, ears).await;
    agent.wait_connected().await;
    agent
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_only_call_has_audio_both_ways_through_turn() {
    let rig = Rig::start().await;
    // coturn holds the TURN scope's key only, as a deployment gives it.
    let turn = Coturn::start(&dir("ok"), &scope_key(SECRET, Scope::Turn)).await;
    let mut a = relayed(&rig, &turn, "alice", A_HZ).await;
    let mut b = relayed(&rig, &turn, "bob", B_HZ).await;
    let (a_call, b_call) = connect(&mut a, &mut b).await;
    listen(Duration::from_millis(1500)).await;
    assert_hear_each_other(
        (&a, &a_call, A_HZ),
        (&b, &b_call, B_HZ),
        Duration::from_millis(800),
        "a relay-only call through coturn",
    );
    for user in ["alice", "bob"] {
        assert!(
            turn.allocations_of(user) >= 1,
            "{user} signed in to coturn with the switchboard token and got a relay:\n{}",
            turn.log()
        );
    }
    a.agent.call(&a_call).hang_up().await.expect("A hangs up");
    b.wait_state(&b_call, CallState::Disconnected).await;
    a.agent.shutdown().await;
    b.agent.shutdown().await;
    turn.stop().await;
    let _ = std::fs::remove_dir_all(dir("ok"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_usable_relay_a_relay_only_call_ends_with_the_media_failure() {
    let rig = Rig::start().await;
    // A relay keyed with the SIP scope's key: the tokens' TURN grants are signed with another
    // key, so every one is refused (a SIP key opens no relay, and the SIP grant, which
    // Kamailio sees, is no TURN password).
    let turn = Coturn::start(&dir("refused"), &scope_key(SECRET, Scope::Sip)).await;
    let mut a = relayed(&rig, &turn, "alice", A_HZ).await;
    let mut b = relayed(&rig, &turn, "bob", B_HZ).await;
    let a_call = a
        .agent
        .start_call("bob")
        .await
        .expect("startCall is accepted");
    let b_call = b.wait_incoming().await;
    b.agent.call(&b_call).accept().await.expect("B answers");
    let a_end = end_reason(&a.wait_state(&a_call, CallState::Disconnected).await);
    let b_end = end_reason(&b.wait_state(&b_call, CallState::Disconnected).await);
    let subs = [a_end.map(|r| r.sub_code), b_end.map(|r| r.sub_code)];
    assert!(
        subs.contains(&Some(sub_code::MEDIA_FAILED)),
        "with no relay candidate there is no media path: the call ends for it, it does not \
         stay Connected and silent (A {a_end:?}, B {b_end:?})"
    );
    assert!(
        subs.iter()
            .all(|s| matches!(*s, Some(sub_code::MEDIA_FAILED | sub_code::REMOTE_HANGUP))),
        "the side that found it hangs up, the other hears the BYE (A {a_end:?}, B {b_end:?})"
    );
    assert!(
        turn.refusals_of("alice") >= 1,
        "coturn refused alice's token (another secret):\n{}",
        turn.log()
    );
    a.agent.shutdown().await;
    b.agent.shutdown().await;
    turn.stop().await;
    let _ = std::fs::remove_dir_all(dir("refused"));
}

#[tokio::test]
async fn turn_settings_that_cannot_work_are_refused_when_the_agent_is_made() {
    let rig = Rig::start().await;
    let client = hookflash_core::agent::CallClient::new();
    let make = |turn: TurnConfig, password: bool| {
        let (mut config, _) = rig.config("alice", A_HZ, hookflash_core::sip::TransportKind::Udp);
        if password {
            config.credential = hookflash_core::agent::Credential::Password {
                user: "alice".into(),
                password: "secret".into(),
            };
        }
        config.turn = Some(turn);
        client.create_call_agent(config)
    };
    let url = |u: &str| TurnConfig {
        urls: vec![u.to_owned()],
        credentials: None,
        relay_only: true,
    };
    let e = make(url("stun:127.0.0.1:3478"), false)
        .await
        .err()
        .expect("a STUN URL is no relay");
    assert_eq!(
        e.code().as_str(),
        "media.failed",
        "said as a media setting: {e}"
    );
    assert!(
        e.to_string().contains("turn:HOST:PORT"),
        "and how to write it: {e}"
    );
    let e = make(url("turn:127.0.0.1:3478"), true)
        .await
        .err()
        .expect("no token and no TURN credentials");
    assert_eq!(
        e.code().as_str(),
        "credential.invalid",
        "a password account needs TURN credentials of its own: {e}"
    );
}
