//! Attended transfer: B holds A, calls C, then transfers A into that call. A's INVITE carries
//! Replaces, so C takes it without ringing; both of B's calls end; A and C hear each other.

use std::time::Duration;

use hookflash_core::api::Event;
use hookflash_core::call::CallState;
use hookflash_core::transfer::TransferTarget;
use hookflash_tests::{connect, hears, listen, tail, Rig};

const A_HZ: f64 = 440.0;
const B_HZ: f64 = 660.0;
const C_HZ: f64 = 1000.0;

#[tokio::test]
async fn replaces_joins_a_and_c_without_ringing() {
    let rig = Rig::start().await;
    let mut a = rig.agent("alice", A_HZ).await;
    let mut b = rig.agent("bob", B_HZ).await;
    let mut c = rig.agent("carol", C_HZ).await;
    let (a_call, b_to_a) = connect(&mut a, &mut b).await;
    b.agent.call(&b_to_a).hold().await.expect("B holds A");
    b.wait_state(&b_to_a, CallState::LocalHold).await;
    let (b_to_c, c_from_b) = connect(&mut b, &mut c).await;

    b.transfer(&b_to_a, TransferTarget::Call(b_to_c.clone()))
        .await;
    let new_call = a.transfer_accepted().await;
    let replaced = c
        .wait_for("callReplaced", |e| matches!(e, Event::CallReplaced { .. }))
        .await;
    let c_new = match replaced {
        Event::CallReplaced {
            call_id,
            new_call_id,
        } => {
            assert_eq!(call_id, c_from_b, "the call with B is the one replaced");
            new_call_id
        }
        _ => unreachable!(),
    };
    b.transfer_outcome()
        .await
        .expect("the attended transfer succeeds");
    b.wait_state(&b_to_a, CallState::Disconnected).await;
    b.wait_state(&b_to_c, CallState::Disconnected).await;
    assert!(b.agent.calls().is_empty(), "both of B's calls are over");
    a.wait_state(&a_call, CallState::Disconnected).await;
    a.wait_state(&new_call, CallState::Connected).await;
    c.wait_state(&c_new, CallState::Connected).await;

    listen(Duration::from_millis(1000)).await;
    assert!(
        hears(
            tail(&a.ears.heard(&new_call), Duration::from_millis(600)),
            C_HZ
        ),
        "A hears C"
    );
    assert!(
        hears(
            tail(&c.ears.heard(&c_new), Duration::from_millis(600)),
            A_HZ
        ),
        "C hears A"
    );
    // C never rang for the replacing call.
    let rang = tokio::time::timeout(Duration::from_millis(200), async {
        loop {
            if let Ok(Event::IncomingCall { .. }) = c.events.recv().await {
                return;
            }
        }
    })
    .await;
    assert!(rang.is_err(), "the Replaces INVITE does not ring C");
}
