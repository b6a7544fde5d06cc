//! Media with a peer that writes SDP the way baresip 1.0 and many SIP phones do: no `a=mid`,
//! no `a=group:BUNDLE`, ICE and DTLS attributes at session level, the fingerprint's hash name
//! in upper case (`SHA-256`, RFC 8122 compares it case-insensitively). Two sessions on
//! loopback; one side's SDP is rewritten into that shape on the wire, in both directions of
//! the offer/answer, and each must still hear the other.

mod media_support;

use std::time::Duration;

use hookflash_core::media::Codec;
use media_support::{tone_of, Peer, ALICE_HZ, BOB_HZ};

/// Rewrites one of our SDPs the way baresip writes its own.
fn baresipify(sdp: &str) -> String {
    let lines: Vec<&str> = sdp.lines().map(str::trim_end).collect();
    let moved = |l: &&str| {
        l.starts_with("a=ice-ufrag:")
            || l.starts_with("a=ice-pwd:")
            || l.starts_with("a=setup:")
            || l.starts_with("a=fingerprint:")
    };
    let first_m = lines
        .iter()
        .position(|l| l.starts_with("m="))
        .expect("an m= line");
    let mut out: Vec<String> = lines[..first_m]
        .iter()
        .filter(|l| !l.starts_with("a=group:") && !moved(l))
        .map(|l| l.to_string())
        .collect();
    // Session-level transport attributes, wherever the engine wrote them.
    for l in lines.iter().filter(|l| moved(l)) {
        let l = l.replace("a=fingerprint:sha-256", "a=fingerprint:SHA-256");
        if !out.contains(&l) {
            out.push(l);
        }
    }
    for l in &lines[first_m..] {
        if !moved(l) && !l.starts_with("a=mid:") && !l.starts_with("a=msid") {
            out.push(l.to_string());
        }
    }
    out.join("\r\n") + "\r\n"
}

async fn hear_each_other(alice: &Peer, bob: &Peer, why: &str) {
    let (heard_by_alice, heard_by_bob) = tokio::join!(
        alice.listen(Duration::from_millis(1200)),
        bob.listen(Duration::from_millis(1200))
    );
    assert_eq!(
        tone_of(&heard_by_alice),
        Some(BOB_HZ),
        "Alice hears Bob: {why}"
    );
    assert_eq!(
        tone_of(&heard_by_bob),
        Some(ALICE_HZ),
        "Bob hears Alice: {why}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_midless_offer_is_answered_in_its_own_shape_and_carries_audio() {
    let alice = Peer::new("alice", ALICE_HZ, vec![Codec::Opus, Codec::Pcmu]).await;
    let bob = Peer::new("bob", BOB_HZ, vec![Codec::Opus, Codec::Pcmu]).await;
    let offer = baresipify(&alice.session.create_offer().await.expect("offer"));
    assert!(
        !offer.contains("a=mid:") && offer.contains("SHA-256"),
        "the offer really is in the peer's shape:\n{offer}"
    );
    let answer = bob.session.accept_offer(&offer).await.expect("Bob answers");
    assert_eq!(
        answer.lines().filter(|l| l.starts_with("m=")).count(),
        1,
        "the answer keeps the offer's one m= line (RFC 3264 §6):\n{answer}"
    );
    let m_line = answer
        .lines()
        .find(|l| l.starts_with("m=audio"))
        .expect("m=audio");
    assert_ne!(
        m_line.split_whitespace().nth(1),
        Some("0"),
        "the audio stream is accepted, not rejected with port 0"
    );
    assert!(
        !answer.contains("a=mid:") && !answer.contains("a=group:BUNDLE"),
        "no mid or BUNDLE in the answer to an offer that had none:\n{answer}"
    );
    alice
        .session
        .accept_answer(&answer)
        .await
        .expect("Alice applies the answer");
    hear_each_other(&alice, &bob, "through a midless offer").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_midless_answer_with_an_upper_case_hash_carries_audio() {
    let alice = Peer::new("alice", ALICE_HZ, vec![Codec::Opus, Codec::Pcmu]).await;
    let bob = Peer::new("bob", BOB_HZ, vec![Codec::Opus, Codec::Pcmu]).await;
    let offer = alice.session.create_offer().await.expect("offer");
    let answer = baresipify(&bob.session.accept_offer(&offer).await.expect("answer"));
    assert!(
        !answer.contains("a=mid:") && answer.contains("a=fingerprint:SHA-256"),
        "the answer really is in the peer's shape:\n{answer}"
    );
    alice
        .session
        .accept_answer(&answer)
        .await
        .expect("an upper-case hash name and no mid are accepted");
    hear_each_other(&alice, &bob, "through a midless answer").await;
}
