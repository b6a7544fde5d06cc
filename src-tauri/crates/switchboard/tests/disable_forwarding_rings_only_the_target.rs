//! `X-Disable-Forwarding: true` (a transfer with `disableForwardingAndUnanswered`): the
//! target's rules are skipped, only the target rings, and no answer in the target's
//! no-answer time fails the call with 480; busy passes through as 486.

mod common;

use std::time::{Duration, Instant};

use common::*;
use hookflash_core::sip::{Message, Method, TransportKind};
use hookflash_switchboard::{ForwardTarget, ForwardTo, NoAnswer, Rules};

const DISABLE: (&str, &str) = ("X-Disable-Forwarding", "true");

#[tokio::test]
async fn unanswered_target_fails_with_480_after_its_no_answer_time() {
    let sb = switchboard().await;
    sb.set_rules(
        "carol",
        &Rules {
            no_answer: Some(NoAnswer {
                after: 1,
                to: ForwardTarget::Person("bob".into()),
            }),
            ..Rules::default()
        },
    )
    .unwrap();
    let mut alice = Ua::new("alice", TransportKind::Udp, &sb).await;
    let mut bob = Ua::new("bob", TransportKind::Udp, &sb).await;
    bob.register().await;
    let mut carol = Ua::new("carol", TransportKind::Udp, &sb).await;
    carol.register().await;

    let invite = alice.invite_with(&carol.aor(), &[DISABLE]).await;
    let inv = carol.next_request(Method::Invite).await;
    let started = Instant::now();
    assert_eq!(
        inv.request().headers.get("X-Disable-Forwarding"),
        Some("true"),
        "the header travels on to the target"
    );
    carol
        .reply_to(&inv, answer(&carol, inv.request(), 180, "ctag"))
        .await;
    let cancel = carol.next_request(Method::Cancel).await;
    carol
        .reply_to(&cancel, cancel.request().response(200, None, None))
        .await;
    carol
        .reply_to(&inv, answer(&carol, inv.request(), 487, "ctag"))
        .await;
    let fin = alice
        .next_where("the final answer", |m| {
            matches!(m, Message::Response(r) if r.status >= 181 && r.cseq().is_ok_and(|c| c.method == Method::Invite) && r.status != 180)
        })
        .await;
    assert_eq!(
        fin.response().status,
        480,
        "no 181, no forward: the call fails with 480 when carol does not answer"
    );
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(700) && took < Duration::from_secs(5),
        "after carol's own no-answer time (1 s), not the 30 s timeout: {took:?}"
    );
    alice.send(ack_for(&invite, fin.response())).await;
    bob.expect_silence(
        Duration::from_millis(300),
        "bob, carol's forwarding target, never rings",
    )
    .await;
    sb.shutdown().await;
}

#[tokio::test]
async fn busy_target_passes_486_through_and_no_rule_fires() {
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
    let mut alice = Ua::new("alice", TransportKind::Udp, &sb).await;
    let mut bob = Ua::new("bob", TransportKind::Udp, &sb).await;
    bob.register().await;
    let mut carol = Ua::new("carol", TransportKind::Udp, &sb).await;
    carol.register().await;
    let invite = alice.invite_with(&carol.aor(), &[DISABLE]).await;
    let inv = carol.next_request(Method::Invite).await;
    carol
        .reply_to(&inv, answer(&carol, inv.request(), 486, "ctag"))
        .await;
    let fin = alice.next_response(Method::Invite, false).await;
    assert_eq!(
        fin.response().status,
        486,
        "busy passes through unchanged when forwarding is disabled"
    );
    alice.send(ack_for(&invite, fin.response())).await;
    bob.expect_silence(Duration::from_millis(300), "the busy rule must not fire")
        .await;
    sb.shutdown().await;
}

#[tokio::test]
async fn target_without_rules_rings_for_the_switchboard_timeout_then_480() {
    let sb = switchboard_with(|c| c.no_answer_timeout = Duration::from_millis(800)).await;
    let mut alice = Ua::new("alice", TransportKind::Udp, &sb).await;
    let mut carol = Ua::new("carol", TransportKind::Udp, &sb).await;
    carol.register().await;
    let invite = alice.invite_with(&carol.aor(), &[DISABLE]).await;
    let inv = carol.next_request(Method::Invite).await;
    carol
        .reply_to(&inv, answer(&carol, inv.request(), 180, "ctag"))
        .await;
    let fin = alice.next_response(Method::Invite, false).await;
    assert_eq!(
        fin.response().status,
        480,
        "with no rule the switchboard's no-answer timeout applies, still as 480"
    );
    alice.send(ack_for(&invite, fin.response())).await;
    sb.shutdown().await;
}
