//! Calls that never connect end with the documented codes: a rejected call with 603 on both
//! sides, a call cancelled while ringing with 487 on both sides, an unknown user with 404,
//! and API misuse is a typed error, not a crash.

use hookflash_core::call::{sub_code, CallEndReason, CallState};
use hookflash_tests::{end_reason, Rig};

#[tokio::test]
async fn rejected_call_ends_with_603() {
    let rig = Rig::start().await;
    let mut a = rig.agent("alice", 440.0).await;
    let mut b = rig.agent("bob", 880.0).await;
    let a_call = a.agent.start_call("bob").await.unwrap();
    a.wait_state(&a_call, CallState::Ringing).await;
    let b_call = b.wait_incoming().await;
    b.agent
        .call(&b_call)
        .reject()
        .await
        .expect("a ringing call can be rejected");
    let ea = a.wait_state(&a_call, CallState::Disconnected).await;
    assert_eq!(
        end_reason(&ea),
        Some(CallEndReason {
            code: 603,
            sub_code: sub_code::REMOTE_STATUS
        }),
        "caller sees 603 Decline"
    );
    let eb = b.wait_state(&b_call, CallState::Disconnected).await;
    assert_eq!(
        end_reason(&eb),
        Some(CallEndReason {
            code: 603,
            sub_code: sub_code::LOCAL_REJECT
        }),
        "callee records its own rejection"
    );
}

#[tokio::test]
async fn cancel_while_ringing_ends_both_sides_with_487() {
    let rig = Rig::start().await;
    let mut a = rig.agent("alice", 440.0).await;
    let mut b = rig.agent("bob", 880.0).await;
    let a_call = a.agent.start_call("bob").await.unwrap();
    let b_call = b.wait_incoming().await;
    a.wait_state(&a_call, CallState::Ringing).await;
    a.agent
        .call(&a_call)
        .hang_up()
        .await
        .expect("a ringing call can be cancelled");
    let eb = b.wait_state(&b_call, CallState::Disconnected).await;
    assert_eq!(
        end_reason(&eb),
        Some(CallEndReason {
            code: 487,
            sub_code: sub_code::REMOTE_CANCEL
        }),
        "B's incoming call ends: caller cancelled"
    );
    let ea = a.wait_state(&a_call, CallState::Disconnected).await;
    assert_eq!(
        end_reason(&ea),
        Some(CallEndReason {
            code: 487,
            sub_code: sub_code::LOCAL_CANCEL
        }),
        "A's call ends as cancelled"
    );
}

#[tokio::test]
async fn unknown_user_ends_with_404_and_misuse_is_typed() {
    let rig = Rig::start().await;
    let mut a = rig.agent("alice", 440.0).await;
    let a_call = a.agent.start_call("nobody").await.unwrap();
    let ea = a.wait_state(&a_call, CallState::Disconnected).await;
    assert_eq!(
        end_reason(&ea).map(|r| r.code),
        Some(404),
        "an unknown user is 404"
    );

    let err = a.agent.call("no-such-call").hold().await.unwrap_err();
    assert_eq!(
        err.code(),
        "call.not_found",
        "unknown call ids are a typed error"
    );
    let err = a
        .agent
        .start_call("bad target with spaces")
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        "target.invalid",
        "bad targets are refused before any SIP is sent"
    );

    let mut b = rig.agent("bob", 880.0).await;
    let a_call = a.agent.start_call("bob").await.unwrap();
    let _ = b.wait_incoming().await;
    let err = a.agent.call(&a_call).hold().await.unwrap_err();
    assert_eq!(
        err.code(),
        "call.invalid_state",
        "a ringing call cannot be held"
    );
    let err = a.agent.call(&a_call).accept().await.unwrap_err();
    assert_eq!(
        err.code(),
        "call.invalid_state",
        "an outgoing call cannot be accepted"
    );
}
