//! Two media sessions in one process, offer/answer on loopback: each hears the
//! other's tone through Opus over ICE + DTLS-SRTP.

mod media_support;

use std::time::Duration;

use hookflash_core::media::{Codec, Direction};
use media_support::{call, has_tone, tone_of, Peer, ALICE_HZ, BOB_HZ};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sessions_hear_each_other_over_opus() {
    let mut alice = Peer::new("alice", ALICE_HZ, vec![Codec::Opus, Codec::Pcmu]).await;
    let mut bob = Peer::new("bob", BOB_HZ, vec![Codec::Opus, Codec::Pcmu]).await;

    let timings = call(&mut alice, &mut bob).await;
    eprintln!("loopback timings (from the start of create_offer): {timings:#?}");

    assert_eq!(
        alice.session.negotiated_codec(),
        Some(Codec::Opus),
        "Opus is preferred by both sides, so it must be the codec in use"
    );
    assert_eq!(bob.session.negotiated_codec(), Some(Codec::Opus));
    assert_eq!(alice.session.local_direction(), Direction::SendRecv);
    assert_eq!(bob.session.remote_direction(), Direction::SendRecv);

    let (heard_by_alice, heard_by_bob) = tokio::join!(
        alice.listen(Duration::from_millis(1000)),
        bob.listen(Duration::from_millis(1000))
    );
    assert!(
        heard_by_alice.len() >= 40_000,
        "about a second of audio must reach Alice's speaker, got {} samples",
        heard_by_alice.len()
    );
    assert_eq!(
        tone_of(&heard_by_alice),
        Some(BOB_HZ),
        "Alice must hear Bob's 880 Hz: the audio path B→A works and is not a loop-back of her own"
    );
    assert_eq!(
        tone_of(&heard_by_bob),
        Some(ALICE_HZ),
        "Bob must hear Alice's 440 Hz: the audio path A→B works"
    );
    assert!(
        !has_tone(&heard_by_alice, ALICE_HZ),
        "Alice must not hear herself (no echo/cross-talk between sessions)"
    );

    alice.session.close().await;
    bob.session.close().await;
    assert!(alice.session.is_closed());
    assert_eq!(
        alice.session.create_offer().await.unwrap_err().code(),
        "media.closed",
        "a closed session must refuse work instead of panicking"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdp_is_complete_for_sip() {
    let alice = Peer::new("alice", ALICE_HZ, vec![Codec::Opus, Codec::Pcmu]).await;
    let offer = alice.session.create_offer().await.expect("offer");
    assert!(
        offer.contains("a=candidate:") && offer.contains("127.0.0.1"),
        "SIP has no trickle ICE: the offer must already carry the loopback host candidate\n{offer}"
    );
    assert!(
        offer.contains("a=rtpmap:111 opus/48000/2")
            && offer.contains("a=rtpmap:0 PCMU/8000")
            && offer.contains("a=rtpmap:101 telephone-event/8000"),
        "the offer must list Opus (111), PCMU (0) and telephone-event (101)\n{offer}"
    );
    let m_line = offer
        .lines()
        .find(|l| l.starts_with("m=audio"))
        .expect("an audio m-line");
    assert!(
        m_line.contains(" 111 0 101"),
        "Opus must be preferred over PCMU: {m_line}"
    );
    assert!(
        !m_line.starts_with("m=audio 9 "),
        "the m-line must carry the default candidate's port, not the discard port: {m_line}"
    );
    assert!(offer.contains("c=IN IP4 127.0.0.1"), "{offer}");
    assert!(
        offer.contains("a=fingerprint:"),
        "DTLS-SRTP needs a fingerprint"
    );
    alice.session.close().await;
}
