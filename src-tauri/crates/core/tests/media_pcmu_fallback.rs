//! When the answerer only supports PCMU, the call falls back to G.711 µ-law and
//! both sides still hear each other.

mod media_support;

use std::time::Duration;

use hookflash_core::media::Codec;
use media_support::{call, tone_of, Peer, ALICE_HZ, BOB_HZ};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answerer_with_only_pcmu_gets_pcmu() {
    let mut alice = Peer::new("alice", ALICE_HZ, vec![Codec::Opus, Codec::Pcmu]).await;
    let bob = Peer::new("bob", BOB_HZ, vec![Codec::Pcmu]).await;

    let offer = alice.session.create_offer().await.expect("offer");
    let answer = bob.session.accept_offer(&offer).await.expect("answer");
    assert!(
        answer.contains("PCMU/8000") && !answer.contains("opus"),
        "a PCMU-only answerer must answer with PCMU alone\n{answer}"
    );
    assert!(
        answer.contains("telephone-event"),
        "DTMF must survive the fallback\n{answer}"
    );
    alice
        .session
        .accept_answer(&answer)
        .await
        .expect("apply answer");
    // Re-use the helper's waiting logic by running a second exchange-free wait.
    let connected = alice
        .wait_event(Duration::from_secs(10), |e| {
            *e == hookflash_core::media::MediaEvent::FirstAudioFrame
        })
        .await;
    assert!(connected.is_some(), "audio must flow over PCMU");

    assert_eq!(
        alice.session.negotiated_codec(),
        Some(Codec::Pcmu),
        "the offerer must send what the answer accepted, not its own preference"
    );
    assert_eq!(bob.session.negotiated_codec(), Some(Codec::Pcmu));

    let (heard_by_alice, heard_by_bob) = tokio::join!(
        alice.listen(Duration::from_millis(1000)),
        bob.listen(Duration::from_millis(1000))
    );
    assert_eq!(
        tone_of(&heard_by_alice),
        Some(BOB_HZ),
        "Alice must hear Bob's tone through 8 kHz µ-law and resampling"
    );
    assert_eq!(
        tone_of(&heard_by_bob),
        Some(ALICE_HZ),
        "Bob must hear Alice's tone through 8 kHz µ-law and resampling"
    );
    alice.session.close().await;
    bob.session.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pcmu_only_offerer_and_opus_default_answerer_use_pcmu() {
    let mut alice = Peer::new("alice", ALICE_HZ, vec![Codec::Pcmu]).await;
    let mut bob = Peer::new("bob", BOB_HZ, vec![Codec::Opus, Codec::Pcmu]).await;
    let timings = call(&mut alice, &mut bob).await;
    eprintln!("PCMU timings: {timings:?}");
    assert_eq!(alice.session.negotiated_codec(), Some(Codec::Pcmu));
    assert_eq!(
        bob.session.negotiated_codec(),
        Some(Codec::Pcmu),
        "the answerer must pick from what was offered"
    );
    let heard_by_bob = bob.listen(Duration::from_millis(600)).await;
    assert_eq!(tone_of(&heard_by_bob), Some(ALICE_HZ));
    alice.session.close().await;
    bob.session.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_common_codec_is_incompatible() {
    let alice = Peer::new("alice", ALICE_HZ, vec![Codec::Opus]).await;
    let bob = Peer::new("bob", BOB_HZ, vec![Codec::Pcmu]).await;
    let offer = alice.session.create_offer().await.expect("offer");
    let err = bob
        .session
        .accept_offer(&offer)
        .await
        .expect_err("Opus-only offer to a PCMU-only answerer");
    assert_eq!(
        err.code(),
        "media.incompatible",
        "no common codec must map to 488 Not Acceptable Here, not crash: {err}"
    );
    alice.session.close().await;
    bob.session.close().await;
}
