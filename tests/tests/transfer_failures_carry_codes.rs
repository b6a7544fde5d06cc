//! A transfer that fails says why, with the SIP status, and the original call comes back:
//! target busy (486), target unknown (404), transferee refuses (603); a REFER on a call that
//! is not connected is a typed API error; and REFERs or ghost calls from strangers are refused.

use std::time::Duration;

use hookflash_core::agent::TransferPolicy;
use hookflash_core::api::{Command, Event};
use hookflash_core::call::CallState;
use hookflash_core::sip::{Message, Transport, TransportEvent, TransportKind};
use hookflash_core::transfer::{transfer_sub_code, TransferError, TransferOptions, TransferTarget};
use hookflash_tests::{connect, hears, listen, Rig, TestAgent};

#[tokio::test]
async fn busy_target_fails_with_486_and_the_call_comes_back() {
    let rig = Rig::start().await;
    let mut a = rig.agent("alice", 440.0).await;
    let mut b = rig.agent("bob", 660.0).await;
    let c = rig.agent("carol", 1000.0).await;
    c.agent
        .execute(Command::SetDoNotDisturb { enabled: true })
        .await
        .unwrap();
    let (a_call, b_call) = connect(&mut a, &mut b).await;
    b.transfer(&b_call, TransferTarget::Participant("carol".into()))
        .await;
    let err = b.transfer_outcome().await.unwrap_err();
    assert_eq!(
        err,
        TransferError {
            code: 486,
            sub_code: transfer_sub_code::TARGET_FAILED
        },
        "busy target is 486"
    );
    a.wait_state(&a_call, CallState::Connected).await;
    b.wait_state(&b_call, CallState::Connected).await;
    let mark = b.ears.mark(&b_call);
    listen(Duration::from_millis(800)).await;
    assert!(
        hears(&b.ears.since(&b_call, mark), 440.0),
        "after the failure B hears A again"
    );
}

#[tokio::test]
async fn unknown_target_fails_with_404() {
    let rig = Rig::start().await;
    let mut a = rig.agent("alice", 440.0).await;
    let mut b = rig.agent("bob", 660.0).await;
    let (_a_call, b_call) = connect(&mut a, &mut b).await;
    b.transfer(&b_call, TransferTarget::Participant("nobody".into()))
        .await;
    assert_eq!(
        b.transfer_outcome().await.unwrap_err().code,
        404,
        "an unknown target is 404"
    );
    assert!(
        b.agent.calls().contains_key(&b_call),
        "B still has its call with A"
    );
}

#[tokio::test]
async fn transferee_rejecting_is_603() {
    let rig = Rig::start().await;
    let (mut config, ears) = rig.config("alice", 440.0, TransportKind::Udp);
    config.transfer_policy = TransferPolicy::Ask;
    let mut a = TestAgent::create("alice", config, ears).await;
    a.wait_connected().await;
    let mut b = rig.agent("bob", 660.0).await;
    let _c = rig.agent("carol", 1000.0).await;
    let (a_call, b_call) = connect(&mut a, &mut b).await;
    b.transfer(&b_call, TransferTarget::Participant("carol".into()))
        .await;
    let transfer_id = match a
        .wait_for("transferRequested", |e| {
            matches!(e, Event::TransferRequested { .. })
        })
        .await
    {
        Event::TransferRequested {
            transfer_id,
            auto_accepted,
            transferor,
            ..
        } => {
            assert!(!auto_accepted, "policy Ask leaves the decision to the user");
            assert!(
                transferor.identifier.starts_with("sip:bob@"),
                "the request names B"
            );
            transfer_id
        }
        _ => unreachable!(),
    };
    a.agent
        .execute(Command::RejectTransfer {
            call_id: a_call.clone(),
            transfer_id,
        })
        .await
        .expect("reject");
    assert_eq!(
        b.transfer_outcome().await.unwrap_err().code,
        603,
        "a refused transfer is 603 Decline"
    );
}

#[tokio::test]
async fn a_transfer_nobody_acts_on_fails_408_on_the_transferors_timer() {
    let rig = Rig::start().await;
    // Alice's transfers need her consent, and she never gives it.
    let (mut config, ears) = rig.config("alice", 440.0, TransportKind::Udp);
    config.transfer_policy = TransferPolicy::Ask;
    let mut a = TestAgent::create("alice", config, ears).await;
    a.wait_connected().await;
    let (mut config, ears) = rig.config("bob", 660.0, TransportKind::Udp);
    config.transfer_timeout = Duration::from_secs(2);
    let mut b = TestAgent::create("bob", config, ears).await;
    b.wait_connected().await;
    let _c = rig.agent("carol", 1000.0).await;
    let (_a_call, b_call) = connect(&mut a, &mut b).await;
    b.transfer(&b_call, TransferTarget::Participant("carol".into()))
        .await;
    let error = b.transfer_outcome().await.unwrap_err();
    assert_eq!(
        (error.code, error.sub_code),
        (408, transfer_sub_code::TIMEOUT),
        "a transfer that makes no progress fails on the transferor's own timer"
    );
    assert_eq!(
        b.agent.call(&b_call).state(),
        CallState::Connected,
        "and the transferor keeps the original call"
    );
}

#[tokio::test]
async fn refer_on_a_call_not_connected_is_a_typed_error() {
    let rig = Rig::start().await;
    let a = rig.agent("alice", 440.0).await;
    let mut b = rig.agent("bob", 660.0).await;
    let a_call = a.agent.start_call("bob").await.unwrap();
    let _ = b.wait_incoming().await;
    let err = a
        .agent
        .call(&a_call)
        .transfer(
            TransferTarget::Participant("carol".into()),
            TransferOptions::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        "call.invalid_state",
        "no REFER before the call is connected"
    );
    for json in [
        format!(
            r#"{{"command":"transfer","callId":"{a_call}","targetParticipant":"x","targetCallId":"y"}}"#
        ),
        format!(r#"{{"command":"transfer","callId":"{a_call}"}}"#),
    ] {
        assert!(
            serde_json::from_str::<Command>(&json).is_err(),
            "a transfer names exactly one target; none or two does not even parse: {json}"
        );
    }
}

#[tokio::test]
async fn refers_and_ghost_calls_that_bypass_the_server_are_refused() {
    let rig = Rig::start().await;
    let mut a = rig.agent("alice", 440.0).await;
    let mut b = rig.agent("bob", 660.0).await;
    let _ = connect(&mut a, &mut b).await;
    let binding = rig
        .switchboard
        .bindings("alice")
        .await
        .pop()
        .expect("alice is registered");
    let (stranger, mut rx) = Transport::bind("127.0.0.1".parse().unwrap(), 0, false)
        .await
        .unwrap();
    let me = stranger.local_udp();
    // Out of dialog or claiming a dialog: either way it did not come through our server.
    // A REFER out of dialog, one claiming a dialog, and a "ghost call" INVITE straight to the
    // agent's port: none came through the server, so none is taken.
    let cases = [
        ("REFER", "", 403u16),
        ("REFER", ";tag=bogus", 403),
        ("INVITE", "", 403),
    ];
    for (n, (method, to_tag, expected)) in cases.into_iter().enumerate() {
        let refer = format!(
            "{method} {contact} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKstranger{n}\r\nMax-Forwards: 70\r\n\
From: <sip:mallory@evil.example>;tag=m\r\nTo: <sip:alice@hookflash.local>{to_tag}\r\nCall-ID: stranger-{n}\r\n\
CSeq: {expected} {method}\r\nRefer-To: <sip:premium@evil.example>\r\nContact: <sip:mallory@{me}>\r\nContent-Length: 0\r\n\r\n",
            contact = binding.contact.trim_matches(|c| c == '<' || c == '>'),
        );
        stranger
            .send_raw(TransportKind::Udp, binding.source, refer.into_bytes())
            .await
            .unwrap();
        let status = tokio::time::timeout(Duration::from_secs(3), async {
            loop {
                if let Some(TransportEvent::Message {
                    message: Message::Response(r),
                    ..
                }) = rx.recv().await
                {
                    return r.status;
                }
            }
        })
        .await
        .expect("the agent answers");
        assert_eq!(
            status, expected,
            "a stranger's REFER is refused with {expected}"
        );
    }
    let requested = tokio::time::timeout(Duration::from_millis(300), async {
        loop {
            if let Ok(Event::TransferRequested { .. } | Event::IncomingCall { .. }) =
                a.events.recv().await
            {
                return;
            }
        }
    })
    .await;
    assert!(
        requested.is_err(),
        "no transferRequested, no ringing, for a stranger"
    );
}
