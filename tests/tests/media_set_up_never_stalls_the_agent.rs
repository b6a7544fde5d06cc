//! Setting up a call's media (opening its devices, creating its session, gathering ICE
//! candidates for the first offer or answer) runs beside the agent's loop: while one call's
//! set-up is stuck, the agent still answers commands and serves other calls' SIP.
//!
//! The stuck set-up is a microphone that takes 2 s to open, as a sound server or a USB
//! headset waking up can; what is checked is the order of events, not their timing.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hookflash_core::agent::{source_from_spec, SourceFactory};
use hookflash_core::api::Event;
use hookflash_core::audio::DeviceSpec;
use hookflash_core::call::CallState;
use hookflash_core::sip::TransportKind;
use hookflash_tests::{listen, mostly_hears, tail, Rig, TestAgent};

const A_HZ: f64 = 440.0;
const B_HZ: f64 = 660.0;

/// A microphone whose first opening takes two seconds.
fn slow_first_microphone(hz: f64, released: Arc<AtomicBool>) -> SourceFactory {
    let inner = source_from_spec(DeviceSpec::Tone(hz));
    Arc::new(move |call_id: &str| {
        if !released.swap(true, Ordering::SeqCst) {
            std::thread::sleep(Duration::from_secs(2));
        }
        inner(call_id)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_media_set_up_stalls_neither_commands_nor_other_calls() {
    let rig = Rig::start().await;
    let stuck = Arc::new(AtomicBool::new(false));
    let (mut config, ears) = rig.config("alice", A_HZ, TransportKind::Udp);
    config.microphone = slow_first_microphone(A_HZ, stuck.clone());
    let mut a = TestAgent::create("alice", config, ears).await;
    a.wait_connected().await;
    let mut b = rig.agent("bob", B_HZ).await;
    let mut c = rig.agent("carol", 1000.0).await;

    // Alice calls Bob: her microphone takes 2 s to open, so the INVITE waits.
    let to_bob = a.agent.start_call("bob").await.expect("the call starts");
    // Meanwhile a command goes through Alice's loop and is answered...
    let unknown = a.agent.call("no-such-call").hold().await;
    assert!(
        unknown.is_err(),
        "a command is answered (here: refused) while a set-up is stuck"
    );
    // ...and Carol's call to Alice is served: Alice is rung.
    let from_carol = c.agent.start_call("alice").await.expect("Carol calls");
    let ringing = a.wait_incoming().await;
    assert!(
        b.agent.calls().is_empty(),
        "Alice was rung by Carol before her own INVITE to Bob went out"
    );
    assert_eq!(
        a.agent.calls().get(&to_bob).copied(),
        Some(CallState::Connecting),
        "Alice's call to Bob is still being set up"
    );
    a.agent
        .call(&ringing)
        .reject()
        .await
        .expect("Alice declines Carol");
    c.wait_state(&from_carol, CallState::Disconnected).await;

    // The stuck set-up completes and the call goes on as usual.
    let at_bob = b.wait_incoming().await;
    b.agent.call(&at_bob).accept().await.expect("Bob answers");
    a.wait_state(&to_bob, CallState::Connected).await;
    listen(Duration::from_millis(800)).await;
    assert!(
        mostly_hears(
            tail(&b.ears.heard(&at_bob), Duration::from_millis(800)),
            A_HZ
        ),
        "Bob hears Alice once her microphone opened"
    );
    a.wait_for("Bob's audio", |e| {
        matches!(e, Event::RemoteAudioStarted { .. })
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hanging_up_while_the_offer_is_made_ends_the_call_at_once() {
    let rig = Rig::start().await;
    let (mut config, ears) = rig.config("alice", A_HZ, TransportKind::Udp);
    config.microphone = slow_first_microphone(A_HZ, Arc::new(AtomicBool::new(false)));
    let mut a = TestAgent::create("alice", config, ears).await;
    a.wait_connected().await;
    let b = rig.agent("bob", B_HZ).await;
    let call = a.agent.start_call("bob").await.expect("the call starts");
    a.agent.call(&call).hang_up().await.expect("hang up");
    let ended = a.wait_state(&call, CallState::Disconnected).await;
    assert_eq!(
        hookflash_tests::end_reason(&ended).map(|r| r.code),
        Some(487),
        "a call hung up before its INVITE went out ends as cancelled: {ended:?}"
    );
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(
        b.agent.calls().is_empty(),
        "and no INVITE goes out once the media is ready"
    );
}
