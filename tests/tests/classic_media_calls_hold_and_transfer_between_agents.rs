//! Agents whose accounts allow only the classic media profiles (plain RTP, or SRTP with SDES
//! keys) call, hold, resume and transfer through the switchboard with audio both ways; a
//! call refused for its media is offered again with the next profile the account allows, and
//! when none is left the caller is told why.

use std::time::Duration;

use hookflash_core::api::Event;
use hookflash_core::call::CallState;
use hookflash_core::media::MediaProfile;
use hookflash_core::transfer::{TransferOptions, TransferTarget};
use hookflash_core::ErrorCode;
use hookflash_tests::{connect, end_reason, listen, mostly_hears, tail, Rig};

const A_HZ: f64 = 440.0;
const B_HZ: f64 = 660.0;
const C_HZ: f64 = 1000.0;
const WINDOW: Duration = Duration::from_millis(800);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn classic_calls_hold_resume_and_blind_transfer_with_audio() {
    for profile in [MediaProfile::Rtp, MediaProfile::Sdes] {
        let rig = Rig::start().await;
        let only = [profile];
        let mut a = rig.agent_with_media("alice", A_HZ, &only).await;
        let mut b = rig.agent_with_media("bob", B_HZ, &only).await;
        let mut c = rig.agent_with_media("carol", C_HZ, &only).await;
        let (a_call, b_call) = connect(&mut a, &mut b).await;
        listen(WINDOW).await;
        assert!(
            mostly_hears(tail(&a.ears.heard(&a_call), WINDOW), B_HZ),
            "over {profile} Alice hears Bob"
        );
        assert!(
            mostly_hears(tail(&b.ears.heard(&b_call), WINDOW), A_HZ),
            "over {profile} Bob hears Alice"
        );

        a.agent.call(&a_call).hold().await.expect("hold");
        a.wait_state(&a_call, CallState::LocalHold).await;
        b.wait_state(&b_call, CallState::RemoteHold).await;
        listen(Duration::from_millis(300)).await;
        let mark = b.ears.mark(&b_call);
        listen(WINDOW).await;
        assert!(
            !mostly_hears(&b.ears.since(&b_call, mark), A_HZ),
            "over {profile} Bob hears nothing of Alice while she holds"
        );
        a.agent.call(&a_call).resume().await.expect("resume");
        a.wait_state(&a_call, CallState::Connected).await;
        b.wait_state(&b_call, CallState::Connected).await;
        listen(WINDOW).await;
        assert!(
            mostly_hears(tail(&b.ears.heard(&b_call), WINDOW), A_HZ),
            "over {profile} Bob hears Alice again after resume"
        );

        // Bob hands Alice on to Carol.
        b.agent
            .call(&b_call)
            .transfer(
                TransferTarget::Participant("carol".into()),
                TransferOptions::default(),
            )
            .await
            .expect("a connected call can be transferred");
        let new_call = a.transfer_accepted().await;
        let c_call = c.wait_incoming().await;
        c.agent.call(&c_call).accept().await.expect("Carol answers");
        a.wait_state(&new_call, CallState::Connected).await;
        b.wait_state(&b_call, CallState::Disconnected).await;
        listen(WINDOW).await;
        assert!(
            mostly_hears(tail(&a.ears.heard(&new_call), WINDOW), C_HZ),
            "over {profile} the transferred Alice hears Carol"
        );
        assert!(
            mostly_hears(tail(&c.ears.heard(&c_call), WINDOW), A_HZ),
            "over {profile} Carol hears Alice"
        );
        a.agent.call(&new_call).hang_up().await.expect("hang up");
        c.wait_state(&c_call, CallState::Disconnected).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_refused_for_its_media_is_offered_again_with_the_next_profile() {
    let rig = Rig::start().await;
    // Alice prefers WebRTC but may fall back to plain RTP; Bob's desk phone has only RTP.
    let mut a = rig
        .agent_with_media("alice", A_HZ, &[MediaProfile::WebRtc, MediaProfile::Rtp])
        .await;
    let mut b = rig
        .agent_with_media("bob", B_HZ, &[MediaProfile::Rtp])
        .await;
    let (a_call, b_call) = connect(&mut a, &mut b).await;
    listen(WINDOW).await;
    assert!(
        mostly_hears(tail(&a.ears.heard(&a_call), WINDOW), B_HZ),
        "after the retry Alice hears Bob"
    );
    assert!(
        mostly_hears(tail(&b.ears.heard(&b_call), WINDOW), A_HZ),
        "after the retry Bob hears Alice"
    );
    b.assert_no_further_incoming(
        "Bob rang once: the WebRTC offer was refused before ringing, the RTP one rang",
    );
    a.agent.call(&a_call).hang_up().await.expect("hang up");
    b.wait_state(&b_call, CallState::Disconnected).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_with_no_media_in_common_says_why() {
    let rig = Rig::start().await;
    let mut a = rig
        .agent_with_media("alice", A_HZ, &[MediaProfile::WebRtc])
        .await;
    let mut b = rig
        .agent_with_media("bob", B_HZ, &[MediaProfile::Rtp])
        .await;
    let a_call = a.agent.start_call("bob").await.expect("the call starts");
    let error = a
        .wait_for("the media error", |e| matches!(e, Event::Error { .. }))
        .await;
    let Event::Error { code, message, .. } = error else {
        unreachable!()
    };
    assert_eq!(code, ErrorCode::MediaIncompatible, "{message}");
    assert!(
        message.contains("tried: WebRTC") && message.contains("do not allow"),
        "the user learns what was tried and what the far end said: {message}"
    );
    let ended = a.wait_state(&a_call, CallState::Disconnected).await;
    assert_eq!(
        end_reason(&ended).map(|r| r.code),
        Some(488),
        "the call ends with the far end's 488"
    );
    b.assert_no_further_incoming("Bob is never rung for a call he could not hear");
}
