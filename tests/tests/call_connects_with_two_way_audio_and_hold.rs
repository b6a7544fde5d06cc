//! A calls B, B accepts: each hears the other's tone (by frequency). Hold silences the held
//! side and both see the hold states; resume brings the tones back. Either side can hang up,
//! with the documented `callEndReason`.

use std::time::Duration;

use hookflash_core::api::Event;
use hookflash_core::call::{sub_code, CallEndReason, CallState};
use hookflash_core::sip::TransportKind;
use hookflash_tests::{connect, end_reason, hears, listen, tail, Rig};

const A_HZ: f64 = 440.0;
const B_HZ: f64 = 1000.0;

#[tokio::test]
async fn both_sides_hear_each_other_then_hold_and_resume() {
    let rig = Rig::start().await;
    let mut a = rig.agent("alice", A_HZ).await;
    let mut b = rig.agent("bob", B_HZ).await;
    let (a_call, b_call) = connect(&mut a, &mut b).await;
    listen(Duration::from_millis(1200)).await;
    let a_heard = a.ears.heard(&a_call);
    let b_heard = b.ears.heard(&b_call);
    assert!(
        hears(tail(&a_heard, Duration::from_millis(800)), B_HZ),
        "A hears B's 1000 Hz tone"
    );
    assert!(
        !hears(tail(&a_heard, Duration::from_millis(800)), A_HZ),
        "A does not hear its own tone back"
    );
    assert!(
        hears(tail(&b_heard, Duration::from_millis(800)), A_HZ),
        "B hears A's 440 Hz tone"
    );

    // A holds B.
    a.agent
        .call(&a_call)
        .hold()
        .await
        .expect("a connected call can be held");
    a.wait_state(&a_call, CallState::LocalHold).await;
    b.wait_state(&b_call, CallState::RemoteHold).await;
    let (a_mark, b_mark) = (a.ears.mark(&a_call), b.ears.mark(&b_call));
    listen(Duration::from_millis(800)).await;
    let b_during = b.ears.since(&b_call, b_mark);
    let a_during = a.ears.since(&a_call, a_mark);
    assert!(
        !hears(&b_during, A_HZ),
        "the held side hears no tone ({} samples)",
        b_during.len()
    );
    assert!(
        !hears(&a_during, B_HZ),
        "the holding side does not play the held party either"
    );

    a.agent
        .call(&a_call)
        .resume()
        .await
        .expect("a held call can be resumed");
    a.wait_state(&a_call, CallState::Connected).await;
    b.wait_state(&b_call, CallState::Connected).await;
    let b_mark = b.ears.mark(&b_call);
    let a_mark = a.ears.mark(&a_call);
    listen(Duration::from_millis(1000)).await;
    assert!(
        hears(&b.ears.since(&b_call, b_mark), A_HZ),
        "after resume B hears A again"
    );
    assert!(
        hears(&a.ears.since(&a_call, a_mark), B_HZ),
        "after resume A hears B again"
    );

    // B hangs up: both see Disconnected with the documented reasons.
    b.agent.call(&b_call).hang_up().await.expect("hang up");
    let eb = b.wait_state(&b_call, CallState::Disconnected).await;
    let ea = a.wait_state(&a_call, CallState::Disconnected).await;
    assert_eq!(
        end_reason(&eb),
        Some(CallEndReason {
            code: 200,
            sub_code: sub_code::LOCAL_HANGUP
        }),
        "B hung up itself"
    );
    assert_eq!(
        end_reason(&ea),
        Some(CallEndReason {
            code: 200,
            sub_code: sub_code::REMOTE_HANGUP
        }),
        "A was hung up on"
    );
    assert!(
        a.agent.calls().is_empty() && b.agent.calls().is_empty(),
        "ended calls leave CallAgent.calls"
    );
}

#[tokio::test]
async fn caller_hangs_up_over_tcp() {
    let rig = Rig::start().await;
    let mut a = rig.agent_on("alice", A_HZ, TransportKind::Tcp).await;
    let mut b = rig.agent_on("bob", B_HZ, TransportKind::Udp).await;
    let (a_call, b_call) = connect(&mut a, &mut b).await;
    listen(Duration::from_millis(800)).await;
    assert!(
        hears(
            tail(&b.ears.heard(&b_call), Duration::from_millis(500)),
            A_HZ
        ),
        "a TCP caller to a UDP callee has audio"
    );
    a.agent.call(&a_call).hang_up().await.expect("hang up");
    let ea = a.wait_state(&a_call, CallState::Disconnected).await;
    let eb = b.wait_state(&b_call, CallState::Disconnected).await;
    assert_eq!(
        end_reason(&ea).map(|r| r.sub_code),
        Some(sub_code::LOCAL_HANGUP),
        "A hung up"
    );
    assert_eq!(
        end_reason(&eb).map(|r| r.sub_code),
        Some(sub_code::REMOTE_HANGUP),
        "B was hung up on"
    );
}

#[tokio::test]
async fn mute_stops_our_voice_reaching_the_far_end() {
    let rig = Rig::start().await;
    let mut a = rig.agent("alice", A_HZ).await;
    let mut b = rig.agent("bob", B_HZ).await;
    let (a_call, b_call) = connect(&mut a, &mut b).await;
    listen(Duration::from_millis(600)).await;
    a.agent
        .call(&a_call)
        .mute()
        .await
        .expect("mute a connected call");
    a.wait_for("isMutedChanged", |e| {
        matches!(e, Event::IsMutedChanged { is_muted: true, .. })
    })
    .await;
    listen(Duration::from_millis(200)).await;
    let mark = b.ears.mark(&b_call);
    listen(Duration::from_millis(600)).await;
    assert!(
        !hears(&b.ears.since(&b_call, mark), A_HZ),
        "B no longer hears muted A"
    );
    a.agent.call(&a_call).unmute().await.expect("unmute");
    listen(Duration::from_millis(200)).await;
    let mark = b.ears.mark(&b_call);
    listen(Duration::from_millis(600)).await;
    assert!(
        hears(&b.ears.since(&b_call, mark), A_HZ),
        "B hears A again after unmute"
    );
}

#[tokio::test]
async fn both_sides_holding_at_once_both_end_up_holding() {
    let rig = Rig::start().await;
    let mut a = rig.agent("alice", A_HZ).await;
    let mut b = rig.agent("bob", B_HZ).await;
    let (a_call, b_call) = connect(&mut a, &mut b).await;
    // Both press hold in the same instant: their re-INVITEs cross (glare, 491 both ways) and
    // each side retries after its own random pause (RFC 3261 §14.1).
    let (a_handle, b_handle) = (a.agent.call(&a_call), b.agent.call(&b_call));
    let (ra, rb) = tokio::join!(a_handle.hold(), b_handle.hold());
    ra.expect("A's hold is accepted");
    rb.expect("B's hold is accepted");
    a.wait_state(&a_call, CallState::LocalHold).await;
    b.wait_state(&b_call, CallState::LocalHold).await;
    let failed = tokio::time::timeout(Duration::from_millis(300), async {
        loop {
            if let Ok(Event::Error { code, .. }) = a.events.recv().await {
                return code;
            }
        }
    })
    .await;
    assert!(
        failed.is_err(),
        "glare is resolved by retrying, not reported as a failed hold: {failed:?}"
    );
}
