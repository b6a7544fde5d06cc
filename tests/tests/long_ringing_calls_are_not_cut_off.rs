//! A call may ring longer than the INVITE transaction timeout (Timer B stops at the first
//! provisional answer); and a hang-up before any provisional still cancels the call.

use std::time::Duration;

use hookflash_core::call::{sub_code, CallState};
use hookflash_core::sip::TransportKind;
use hookflash_tests::{end_reason, listen, Rig, TestAgent};

#[tokio::test]
async fn ringing_past_the_transaction_timeout_still_connects() {
    let rig = Rig::start().await;
    let (mut config, ears) = rig.config("alice", 440.0, TransportKind::Udp);
    config.transaction_timeout = Duration::from_millis(500);
    let mut a = TestAgent::create("alice", config, ears).await;
    a.wait_connected().await;
    let mut b = rig.agent("bob", 880.0).await;
    let call = a.agent.start_call("bob").await.unwrap();
    let b_call = b.wait_incoming().await;
    listen(Duration::from_millis(1500)).await; // three transaction timeouts of ringing
    assert_eq!(
        a.agent.call(&call).state(),
        CallState::Ringing,
        "the caller still hears ringing"
    );
    b.agent
        .call(&b_call)
        .accept()
        .await
        .expect("B answers late");
    a.wait_state(&call, CallState::Connected).await;
}

#[tokio::test]
async fn hang_up_at_once_cancels_the_call_everywhere() {
    let rig = Rig::start().await;
    let mut a = rig.agent("alice", 440.0).await;
    let mut b = rig.agent("bob", 880.0).await;
    let call = a.agent.start_call("bob").await.unwrap();
    a.agent
        .call(&call)
        .hang_up()
        .await
        .expect("hang up before any answer");
    let e = a.wait_state(&call, CallState::Disconnected).await;
    assert_eq!(
        end_reason(&e).map(|r| r.sub_code),
        Some(sub_code::LOCAL_CANCEL),
        "the caller cancelled"
    );
    // If B was reached at all, its call ends too: nobody is left ringing.
    if let Ok(b_call) = tokio::time::timeout(Duration::from_millis(300), b.wait_incoming()).await {
        b.wait_state(&b_call, CallState::Disconnected).await;
    }
    assert!(b.agent.calls().is_empty(), "B is not left ringing");
}
