//! Forwarding rules in the proxy: always to a person, on busy, when not registered, and
//! forward chains that would loop.

mod common;

use std::time::Duration;

use common::agents::{agent, contains_tone, wait_messages};
use common::*;
use hookflash_core::call::CallState;
use hookflash_core::sip::{Method, TransportKind};
use hookflash_switchboard::{ForwardTarget, ForwardTo, NoAnswer, Rules};

const ALICE_HZ: f64 = 440.0;
const BOB_HZ: f64 = 880.0;
const CAROL_HZ: f64 = 660.0;

fn always(to: &str) -> Rules {
    Rules {
        always: Some(ForwardTo {
            to: ForwardTarget::parse(to).unwrap(),
        }),
        ..Rules::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn always_rule_rings_the_other_person_instead() {
    let sb = switchboard().await;
    sb.set_rules("carol", &always("bob")).unwrap();
    let mut alice = agent(&sb, "alice", ALICE_HZ).await;
    let mut bob = agent(&sb, "bob", BOB_HZ).await;
    let mut carol = agent(&sb, "carol", CAROL_HZ).await;

    let a_call = alice.agent.start_call("carol").await.unwrap();
    let b_call = bob.wait_incoming().await;
    bob.agent.call(&b_call).accept().await.unwrap();
    alice.wait_state(&a_call, CallState::Connected).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(
        contains_tone(&alice.heard(&a_call), BOB_HZ),
        "alice dialled carol and talks to bob"
    );
    carol
        .expect_no_incoming(
            Duration::from_millis(200),
            "an always rule must not ring the owner",
        )
        .await;
    alice.agent.call(&a_call).hang_up().await.unwrap();
    bob.wait_state(&b_call, CallState::Disconnected).await;
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn busy_answer_is_forwarded_by_the_busy_rule() {
    let sb = switchboard().await;
    sb.set_rules(
        "carol",
        &Rules {
            busy: Some(ForwardTo {
                to: ForwardTarget::Person("bob".into()),
            }),
            ..Rules::default()
        },
    )
    .unwrap();
    let mut alice = agent(&sb, "alice", ALICE_HZ).await;
    let mut bob = agent(&sb, "bob", BOB_HZ).await;
    let mut carol = Ua::new("carol", TransportKind::Udp, &sb).await;
    assert_eq!(
        carol.register().await.status,
        200,
        "carol's desk phone registers"
    );

    let a_call = alice.agent.start_call("carol").await.unwrap();
    let inv = carol.next_request(Method::Invite).await;
    let busy = answer(&carol, inv.request(), 486, "busytag");
    carol.reply_to(&inv, busy).await;
    let ack = carol.next_request(Method::Ack).await;
    assert!(
        ack.request().cseq().is_ok(),
        "the proxy ACKs carol's 486 itself"
    );
    let b_call = bob.wait_incoming().await;
    bob.agent.call(&b_call).accept().await.unwrap();
    alice.wait_state(&a_call, CallState::Connected).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(
        contains_tone(&alice.heard(&a_call), BOB_HZ),
        "carol was busy, so alice talks to bob, not to a busy tone"
    );
    alice.agent.call(&a_call).hang_up().await.unwrap();
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn busy_rule_to_voicemail_records_a_message() {
    let sb = switchboard().await;
    sb.set_rules(
        "carol",
        &Rules {
            busy: Some(ForwardTo {
                to: ForwardTarget::Voicemail,
            }),
            ..Rules::default()
        },
    )
    .unwrap();
    let mut alice = agent(&sb, "alice", ALICE_HZ).await;
    let mut carol = Ua::new("carol", TransportKind::Udp, &sb).await;
    carol.register().await;
    let a_call = alice.agent.start_call("carol").await.unwrap();
    let inv = carol.next_request(Method::Invite).await;
    let busy = answer(&carol, inv.request(), 486, "busytag");
    carol.reply_to(&inv, busy).await;
    alice.wait_state(&a_call, CallState::Connected).await;
    alice.wait_for_beep(&a_call).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    alice.agent.call(&a_call).hang_up().await.unwrap();
    let list = wait_messages(&sb, "carol", 1).await;
    assert_eq!(
        list[0].caller, "sip:alice@hookflash.local",
        "the busy caller left carol a message"
    );
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn user_not_registered_with_a_rule_is_forwarded_at_once() {
    let sb = switchboard().await;
    sb.set_rules(
        "carol",
        &Rules {
            no_answer: Some(NoAnswer {
                after: 20,
                to: ForwardTarget::Person("bob".into()),
            }),
            ..Rules::default()
        },
    )
    .unwrap();
    let mut alice = agent(&sb, "alice", ALICE_HZ).await;
    let mut bob = agent(&sb, "bob", BOB_HZ).await;
    let a_call = alice.agent.start_call("carol").await.unwrap();
    let b_call = tokio::time::timeout(Duration::from_secs(3), bob.wait_incoming())
        .await
        .expect("carol has no phone on: her rule applies at once, not after 20 s");
    bob.agent.call(&b_call).accept().await.unwrap();
    alice.wait_state(&a_call, CallState::Connected).await;
    alice.agent.call(&a_call).hang_up().await.unwrap();
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forwarding_loop_stops_at_the_first_repeat() {
    let sb = switchboard().await;
    sb.set_rules("carol", &always("bob")).unwrap();
    sb.set_rules("bob", &always("carol")).unwrap();
    let mut alice = agent(&sb, "alice", ALICE_HZ).await;
    let mut bob = agent(&sb, "bob", BOB_HZ).await;
    let mut carol = agent(&sb, "carol", CAROL_HZ).await;
    let a_call = alice.agent.start_call("carol").await.unwrap();
    let b_call = bob.wait_incoming().await;
    carol
        .expect_no_incoming(
            Duration::from_millis(300),
            "bob's rule back to carol would loop, so it is ignored",
        )
        .await;
    bob.agent.call(&b_call).accept().await.unwrap();
    alice.wait_state(&a_call, CallState::Connected).await;
    alice.agent.call(&a_call).hang_up().await.unwrap();
    sb.shutdown().await;
}

#[tokio::test]
async fn forwarded_invite_tells_the_caller_181_and_carries_diversion() {
    let sb = switchboard().await;
    sb.set_rules("carol", &always("bob")).unwrap();
    let mut alice = Ua::new("alice", TransportKind::Udp, &sb).await;
    let mut bob = Ua::new("bob", TransportKind::Udp, &sb).await;
    bob.register().await;
    let mut carol = Ua::new("carol", TransportKind::Udp, &sb).await;
    carol.register().await;
    alice.invite(&carol.aor()).await;
    let r = alice.next_response(Method::Invite, true).await;
    assert_eq!(
        r.response().status,
        181,
        "the caller learns the call is being forwarded"
    );
    let inv = bob.next_request(Method::Invite).await;
    let diversion = inv.request().headers.get("Diversion").unwrap_or_default();
    assert!(
        diversion.contains("sip:carol@hookflash.local") && diversion.contains("unconditional"),
        "bob's INVITE says it was diverted from carol, unconditionally: {diversion}"
    );
    carol
        .expect_silence(Duration::from_millis(200), "carol's phone never rings")
        .await;
    sb.shutdown().await;
}
