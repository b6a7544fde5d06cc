//! DTMF travels as RFC 4733 telephone-event packets, not as in-band tones, and
//! arrives once per key press, in order.

mod media_support;

use std::time::Duration;

use hookflash_core::media::{Codec, MediaEvent};
use media_support::{call, has_tone, Peer, ALICE_HZ, BOB_HZ};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn digits_arrive_in_order_once_each() {
    let mut alice = Peer::new("alice", ALICE_HZ, vec![Codec::Opus, Codec::Pcmu]).await;
    let mut bob = Peer::new("bob", BOB_HZ, vec![Codec::Opus, Codec::Pcmu]).await;
    call(&mut alice, &mut bob).await;

    let before = bob.heard_len();
    let started = std::time::Instant::now();
    alice.session.send_dtmf("159#").await.expect("send DTMF");
    let sending_took = started.elapsed();
    assert!(
        sending_took >= Duration::from_millis(600),
        "four digits of 100 ms each plus gaps cannot be sent faster: {sending_took:?}"
    );

    let mut digits = String::new();
    while digits.len() < 4 {
        match bob
            .wait_event(Duration::from_secs(3), |e| matches!(e, MediaEvent::Dtmf(_)))
            .await
        {
            Some(MediaEvent::Dtmf(d)) => digits.push(d),
            _ => break,
        }
    }
    assert_eq!(
        digits, "159#",
        "Bob must get exactly Alice's digits, in order"
    );
    assert!(
        bob.wait_event(Duration::from_millis(300), |e| matches!(
            e,
            MediaEvent::Dtmf(_)
        ))
        .await
        .is_none(),
        "the three end-packet retransmissions must not produce repeated digits"
    );

    let during = bob.heard_since(before);
    for (row_hz, digit) in [(697.0, '1'), (770.0, '5'), (852.0, '9'), (941.0, '#')] {
        assert!(
            !has_tone(&during, row_hz),
            "digit {digit} must not be sent in-band ({row_hz} Hz found in the audio)"
        );
    }
    // Between digits (and after) the normal audio resumes.
    let after = bob.listen(Duration::from_millis(400)).await;
    assert!(has_tone(&after, ALICE_HZ), "audio must resume after DTMF");

    alice.session.close().await;
    bob.session.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dtmf_over_pcmu_and_in_the_other_direction() {
    let mut alice = Peer::new("alice", ALICE_HZ, vec![Codec::Pcmu]).await;
    let mut bob = Peer::new("bob", BOB_HZ, vec![Codec::Opus, Codec::Pcmu]).await;
    call(&mut alice, &mut bob).await;
    bob.session
        .send_dtmf("*0D")
        .await
        .expect("answerer sends DTMF");
    let mut digits = String::new();
    while digits.len() < 3 {
        match alice
            .wait_event(Duration::from_secs(3), |e| matches!(e, MediaEvent::Dtmf(_)))
            .await
        {
            Some(MediaEvent::Dtmf(d)) => digits.push(d),
            _ => break,
        }
    }
    assert_eq!(
        digits, "*0D",
        "DTMF must work from the answerer and over PCMU"
    );
    alice.session.close().await;
    bob.session.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_digits_and_unnegotiated_sessions_are_errors() {
    let mut alice = Peer::new("alice", ALICE_HZ, vec![Codec::Opus]).await;
    let mut bob = Peer::new("bob", BOB_HZ, vec![Codec::Opus]).await;
    assert_eq!(
        alice.session.send_dtmf("1").await.unwrap_err().code(),
        "media.invalid_state",
        "DTMF before negotiation must fail cleanly"
    );
    call(&mut alice, &mut bob).await;
    let err = alice.session.send_dtmf("12x").await.unwrap_err();
    assert_eq!(err.code(), "media.dtmf_invalid", "{err}");
    assert!(
        bob.wait_event(Duration::from_millis(500), |e| matches!(
            e,
            MediaEvent::Dtmf(_)
        ))
        .await
        .is_none(),
        "an invalid string must not be partly sent"
    );
    alice.session.close().await;
    bob.session.close().await;
}
