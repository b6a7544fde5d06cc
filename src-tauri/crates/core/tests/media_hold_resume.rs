//! Hold and resume by renegotiation: a sendonly re-offer answered recvonly
//! silences both directions for the users; a sendrecv re-offer restores audio.

mod media_support;

use std::time::Duration;

use hookflash_core::media::{sdp_direction, Codec, Direction, MediaEvent};
use media_support::{call, has_tone, tone_of, Peer, ALICE_HZ, BOB_HZ};

/// Time for packets already in flight to drain after a renegotiation.
const SETTLE: Duration = Duration::from_millis(150);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hold_with_sendonly_then_resume() {
    let mut alice = Peer::new("alice", ALICE_HZ, vec![Codec::Opus, Codec::Pcmu]).await;
    let mut bob = Peer::new("bob", BOB_HZ, vec![Codec::Opus, Codec::Pcmu]).await;
    call(&mut alice, &mut bob).await;
    assert_eq!(
        tone_of(&bob.listen(Duration::from_millis(500)).await),
        Some(ALICE_HZ),
        "before hold Bob hears Alice"
    );

    // Alice puts Bob on hold.
    let renegotiation = std::time::Instant::now();
    let hold = alice
        .session
        .create_reoffer(Direction::SendOnly)
        .await
        .expect("hold re-offer");
    assert_eq!(
        sdp_direction(&hold),
        Direction::SendOnly,
        "hold is offered a=sendonly"
    );
    let hold_answer = bob.session.accept_offer(&hold).await.expect("hold answer");
    assert_eq!(
        sdp_direction(&hold_answer),
        Direction::RecvOnly,
        "RFC 3264: a sendonly offer is answered recvonly"
    );
    alice
        .session
        .accept_answer(&hold_answer)
        .await
        .expect("apply hold answer");
    eprintln!("hold offer/answer took {:?}", renegotiation.elapsed());
    assert!(alice.session.is_holding());
    assert_eq!(alice.session.local_direction(), Direction::SendOnly);
    assert_eq!(alice.session.remote_direction(), Direction::RecvOnly);
    assert_eq!(bob.session.local_direction(), Direction::RecvOnly);
    assert_eq!(bob.session.remote_direction(), Direction::SendOnly);
    assert!(
        bob.session.send_dtmf("1").await.is_err(),
        "a recvonly (held) side may not send, not even DTMF"
    );

    tokio::time::sleep(SETTLE).await;
    let (alice_on_hold, bob_on_hold) = tokio::join!(
        alice.listen(Duration::from_millis(1000)),
        bob.listen(Duration::from_millis(1000))
    );
    assert!(
        !has_tone(&bob_on_hold, ALICE_HZ),
        "the held side (Bob) must not hear Alice while she holds the call"
    );
    assert!(
        !has_tone(&alice_on_hold, BOB_HZ),
        "the holding side (Alice) must not hear Bob: he is recvonly and she does not play"
    );

    // Alice resumes.
    let resume = alice
        .session
        .create_reoffer(Direction::SendRecv)
        .await
        .expect("resume re-offer");
    assert_eq!(sdp_direction(&resume), Direction::SendRecv);
    let resume_answer = bob
        .session
        .accept_offer(&resume)
        .await
        .expect("resume answer");
    assert_eq!(sdp_direction(&resume_answer), Direction::SendRecv);
    alice
        .session
        .accept_answer(&resume_answer)
        .await
        .expect("apply resume answer");
    assert!(!alice.session.is_holding());

    tokio::time::sleep(SETTLE).await;
    let (alice_resumed, bob_resumed) = tokio::join!(
        alice.listen(Duration::from_millis(1000)),
        bob.listen(Duration::from_millis(1000))
    );
    assert_eq!(
        tone_of(&bob_resumed),
        Some(ALICE_HZ),
        "after resume Bob must hear Alice again"
    );
    assert_eq!(
        tone_of(&alice_resumed),
        Some(BOB_HZ),
        "after resume Alice must hear Bob again"
    );
    assert!(
        alice
            .wait_event(Duration::from_millis(50), |e| matches!(
                e,
                MediaEvent::Failed(_)
            ))
            .await
            .is_none(),
        "renegotiation must not break the connection"
    );
    alice.session.close().await;
    bob.session.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answerer_holds_with_inactive_and_rollback_restores() {
    let mut alice = Peer::new("alice", ALICE_HZ, vec![Codec::Opus]).await;
    let mut bob = Peer::new("bob", BOB_HZ, vec![Codec::Opus]).await;
    call(&mut alice, &mut bob).await;

    // A rejected re-offer (e.g. 491) is rolled back without touching the media.
    let withdrawn = bob
        .session
        .create_reoffer(Direction::SendOnly)
        .await
        .expect("re-offer");
    assert_eq!(sdp_direction(&withdrawn), Direction::SendOnly);
    bob.session.rollback_offer().await.expect("rollback");
    assert!(
        !bob.session.is_holding(),
        "rollback restores the previous state"
    );
    assert_eq!(bob.session.local_direction(), Direction::SendRecv);
    tokio::time::sleep(SETTLE).await;
    let (a, b) = tokio::join!(
        alice.listen(Duration::from_millis(500)),
        bob.listen(Duration::from_millis(500))
    );
    assert_eq!(
        tone_of(&a),
        Some(BOB_HZ),
        "after a rollback Alice must hear Bob as before"
    );
    assert_eq!(
        tone_of(&b),
        Some(ALICE_HZ),
        "after a rollback Bob must hear Alice as before (his hold was withdrawn)"
    );

    // The answerer can renegotiate too: Bob holds with a=inactive.
    let hold = bob
        .session
        .create_reoffer(Direction::Inactive)
        .await
        .expect("inactive re-offer");
    let answer = alice.session.accept_offer(&hold).await.expect("answer");
    assert_eq!(sdp_direction(&answer), Direction::Inactive);
    bob.session.accept_answer(&answer).await.expect("apply");
    tokio::time::sleep(SETTLE).await;
    let (a, b) = tokio::join!(
        alice.listen(Duration::from_millis(800)),
        bob.listen(Duration::from_millis(800))
    );
    assert!(
        !has_tone(&a, BOB_HZ),
        "inactive: Alice hears nothing of Bob"
    );
    assert!(
        !has_tone(&b, ALICE_HZ),
        "inactive: Bob hears nothing of Alice"
    );
    alice.session.close().await;
    bob.session.close().await;
}
