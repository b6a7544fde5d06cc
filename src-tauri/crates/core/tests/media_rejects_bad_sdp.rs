//! Bad, unsupported or mistimed SDP is refused with a clear error, never a panic,
//! and leaves the session usable.

mod media_support;

use hookflash_core::media::{Codec, Direction};
use media_support::{call, Peer, ALICE_HZ, BOB_HZ};

const PLAIN_RTP: &str = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\n\
    t=0 0\r\nm=audio 4000 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_sdp_is_an_error_not_a_panic() {
    let mut alice = Peer::new("alice", ALICE_HZ, vec![Codec::Opus, Codec::Pcmu]).await;
    let mut bob = Peer::new("bob", BOB_HZ, vec![Codec::Opus, Codec::Pcmu]).await;

    for garbage in ["", "hello", "v=0\r\nm=audio x y z\r\n"] {
        let err = bob.session.accept_offer(garbage).await.unwrap_err();
        assert!(
            matches!(err.code(), "media.sdp_invalid" | "media.incompatible"),
            "garbage {garbage:?} must be rejected as bad SDP, got {err}"
        );
    }
    let err = bob.session.accept_offer(PLAIN_RTP).await.unwrap_err();
    assert_eq!(
        err.code(),
        "media.incompatible",
        "a WebRTC session cannot answer plain RTP/AVP (the agent picks a classic session for \
         such offers; a session of the wrong profile refuses with 488): {err}"
    );
    assert_eq!(
        alice
            .session
            .accept_answer(PLAIN_RTP)
            .await
            .unwrap_err()
            .code(),
        "media.invalid_state",
        "an answer without an outstanding offer is API misuse"
    );
    assert_eq!(
        alice
            .session
            .create_reoffer(Direction::SendOnly)
            .await
            .unwrap_err()
            .code(),
        "media.invalid_state",
        "hold needs an established session"
    );
    assert_eq!(
        alice.session.rollback_offer().await.unwrap_err().code(),
        "media.invalid_state"
    );

    // Both sessions are still fine for a real call after all that.
    call(&mut alice, &mut bob).await;
    alice.session.close().await;
    bob.session.close().await;
}
