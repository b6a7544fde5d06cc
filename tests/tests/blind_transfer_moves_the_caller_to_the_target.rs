//! Blind transfer: A (transferee) and B (transferor) talk; B transfers A to C. B sees
//! Transferring then Transferred; A gets transferAccepted with its new call; C's incoming call
//! names B as the transferor; then A and C hear each other and B's call with A is over.

use std::time::Duration;

use hookflash_core::api::Event;
use hookflash_core::call::{sub_code, CallState};
use hookflash_core::transfer::{TransferOptions, TransferState, TransferTarget};
use hookflash_tests::{connect, hears, listen, tail, Rig};

const A_HZ: f64 = 440.0;
const B_HZ: f64 = 660.0;
const C_HZ: f64 = 1000.0;

#[tokio::test]
async fn transferee_ends_up_talking_to_the_target() {
    let rig = Rig::start().await;
    let mut a = rig.agent("alice", A_HZ).await;
    let mut b = rig.agent("bob", B_HZ).await;
    let mut c = rig.agent("carol", C_HZ).await;
    let (a_call, b_call) = connect(&mut a, &mut b).await;

    let transfer_id = b
        .agent
        .call(&b_call)
        .transfer(
            TransferTarget::Participant("carol".into()),
            TransferOptions::default(),
        )
        .await
        .expect("a connected call can be transferred");
    let e = b
        .wait_for("Transferring", |e| {
            matches!(
                e,
                Event::TransferStateChanged {
                    state: TransferState::Transferring,
                    ..
                }
            )
        })
        .await;
    assert!(
        matches!(e, Event::TransferStateChanged { transfer_id: ref t, .. } if *t == transfer_id),
        "events carry the transfer id"
    );

    let new_call = match a
        .wait_for("transferAccepted", |e| {
            matches!(e, Event::TransferAccepted { .. })
        })
        .await
    {
        Event::TransferAccepted {
            call_id,
            target_call,
            ..
        } => {
            assert_eq!(
                call_id, a_call,
                "the accepted transfer names A's original call"
            );
            target_call
        }
        _ => unreachable!(),
    };
    let c_call = match c
        .wait_for("incomingCall", |e| matches!(e, Event::IncomingCall { .. }))
        .await
    {
        Event::IncomingCall {
            call_id,
            transferor_info,
            caller_info,
            ..
        } => {
            let t = transferor_info.expect("a transferred call names its transferor");
            assert!(
                t.identifier.starts_with("sip:bob@"),
                "the transferor is B: {}",
                t.identifier
            );
            assert!(
                caller_info.identifier.starts_with("sip:alice@"),
                "the caller is A: {}",
                caller_info.identifier
            );
            call_id
        }
        _ => unreachable!(),
    };
    let still = b.agent.calls().get(&b_call).copied();
    assert!(
        matches!(still, Some(CallState::RemoteHold | CallState::Connected)),
        "B is still Transferring while C rings ({still:?}): the 202 alone is not success"
    );
    c.agent.call(&c_call).accept().await.expect("C answers");
    b.wait_for("Transferred", |e| {
        matches!(
            e,
            Event::TransferStateChanged {
                state: TransferState::Transferred,
                ..
            }
        )
    })
    .await;
    let ended = b.wait_state(&b_call, CallState::Disconnected).await;
    assert!(
        matches!(ended, Event::CallStateChanged { call_end_reason: Some(r), .. } if r.sub_code == sub_code::TRANSFERRED),
        "B's call ends as transferred: {ended:?}"
    );
    a.wait_state(&a_call, CallState::Disconnected).await;
    a.wait_state(&new_call, CallState::Connected).await;

    listen(Duration::from_millis(1000)).await;
    let a_heard = a.ears.heard(&new_call);
    let c_heard = c.ears.heard(&c_call);
    assert!(
        hears(tail(&a_heard, Duration::from_millis(600)), C_HZ),
        "A hears C after the transfer"
    );
    assert!(
        hears(tail(&c_heard, Duration::from_millis(600)), A_HZ),
        "C hears A"
    );
    assert!(
        !hears(tail(&a_heard, Duration::from_millis(600)), B_HZ),
        "A no longer hears B on the new call"
    );
}
