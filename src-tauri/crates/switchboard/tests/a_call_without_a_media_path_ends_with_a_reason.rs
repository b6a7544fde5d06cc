//! A call answered in SIP whose media path never comes up (the far end's ICE candidate
//! answers nothing) does not stay on screen as Connected and silent: within seconds of the
//! answer the agent says why (`media.failed`, in words), ends the call with the media
//! sub-code, and the far end gets a BYE.

mod common;

use std::time::{Duration, Instant};

use common::agents::agent;
use common::*;
use hookflash_core::api::Event;
use hookflash_core::call::{sub_code, CallState};
use hookflash_core::sip::{Method, TransportKind};

/// An answer that is well formed for the WebRTC profile (ICE, DTLS-SRTP, Opus), whose only
/// candidate is a port where nothing listens.
fn dead_end_answer(mid: &str) -> String {
    let fingerprint = (0..32)
        .map(|i| format!("{:02X}", i * 7 % 256))
        .collect::<Vec<_>>()
        .join(":");
    format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
         m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 127.0.0.1\r\na=mid:{mid}\r\n\
         a=ice-ufrag:dead\r\na=ice-pwd:deadendpasswordpassword\r\n\
         a=fingerprint:sha-256 {fingerprint}\r\na=setup:active\r\n\
         a=rtpmap:111 opus/48000/2\r\na=sendrecv\r\na=rtcp-mux\r\n\
         a=candidate:1 1 udp 2130706431 127.0.0.1 9 typ host\r\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_without_a_media_path_ends_with_a_reason_within_seconds() {
    let sb = switchboard().await;
    let mut bob = Ua::new("bob", TransportKind::Udp, &sb).await;
    assert_eq!(bob.register().await.status, 200, "bob registers");
    let mut alice = agent(&sb, "alice", 440.0).await;
    let call_id = alice
        .agent
        .start_call("bob")
        .await
        .expect("alice calls bob");

    let inv = bob.next_request(Method::Invite).await;
    let invite = inv.request().clone();
    let offer = String::from_utf8_lossy(&invite.body).into_owned();
    let mid = offer
        .lines()
        .find_map(|l| l.strip_prefix("a=mid:"))
        .unwrap_or("0")
        .trim()
        .to_owned();
    let mut ok = answer(&bob, &invite, 200, "bobtag");
    ok.headers.push("Content-Type", "application/sdp");
    ok.body = dead_end_answer(&mid).into_bytes();
    bob.reply_to(&inv, ok).await;
    let _ack = bob.next_request(Method::Ack).await;

    let mut events = alice.agent.subscribe();
    alice.wait_state(&call_id, CallState::Connected).await;
    let answered = Instant::now();
    let mut reason = None;
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match events.recv().await.expect("events") {
                Event::Error { code, message, .. } if code == "media.failed" => {
                    reason = Some(message);
                }
                Event::CallStateChanged {
                    call_id: id,
                    state: CallState::Disconnecting,
                    ..
                } if id == call_id => return,
                _ => {}
            }
        }
    })
    .await
    .expect("the silent call is ended, not left Connected");
    let waited = answered.elapsed();
    assert!(
        waited < Duration::from_secs(15),
        "within seconds of the answer, not after ICE's own 30 s: {waited:?}"
    );
    let reason = reason.expect("the user is told why, before the call goes");
    assert!(
        reason.contains("no audio"),
        "in words a person understands: {reason}"
    );
    let bye = bob.next_request(Method::Bye).await;
    bob.reply_to(&bye, bye.request().response(200, None, None))
        .await;
    let end = alice.wait_state(&call_id, CallState::Disconnected).await;
    let sub = match end {
        Event::CallStateChanged {
            call_end_reason, ..
        } => call_end_reason.map(|r| r.sub_code),
        _ => None,
    };
    assert_eq!(
        sub,
        Some(sub_code::MEDIA_FAILED),
        "the end reason says media failed"
    );
}
