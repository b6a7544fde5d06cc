//! Malformed input: answered 400 when possible, dropped otherwise, and the server keeps going.

mod common;

use std::time::Duration;

use common::*;
use hookflash_core::sip::{Method, TransportKind};

#[tokio::test]
async fn garbage_is_dropped_and_the_next_request_is_answered() {
    let sb = switchboard().await;
    let mut ua = Ua::new("alice", TransportKind::Udp, &sb).await;
    ua.send_raw(b"\x00\xffthis is not SIP\r\n\r\n").await;
    ua.send_raw(b"INVITE sip:bob@hookflash.local SIP/2.0\r\nVia nothing\r\n\r\n")
        .await;
    ua.expect_silence(
        Duration::from_millis(300),
        "unparseable bytes cannot be answered",
    )
    .await;
    let domain = format!("sip:{}", sb.domain());
    let req = ua.request(Method::Options, &domain, &domain);
    ua.send(req).await;
    let r = ua.next_response(Method::Options, false).await;
    assert_eq!(
        r.response().status,
        200,
        "the server still answers the next request"
    );
    sb.shutdown().await;
}

#[tokio::test]
async fn parseable_but_invalid_request_gets_400() {
    let sb = switchboard().await;
    let mut ua = Ua::new("alice", TransportKind::Udp, &sb).await;
    let port = ua.port();
    let bad_cseq = format!(
        "OPTIONS sip:hookflash.local SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKbad1\r\n\
From: <sip:alice@hookflash.local>;tag=1\r\nTo: <sip:hookflash.local>\r\nCall-ID: bad1\r\n\
CSeq: many OPTIONS\r\nContent-Length: 0\r\n\r\n"
    );
    ua.send_raw(bad_cseq.as_bytes()).await;
    let r = ua
        .next_where("a 400", |m| {
            matches!(m, hookflash_core::sip::Message::Response(_))
        })
        .await;
    assert_eq!(r.response().status, 400, "a bad CSeq is answered 400");
    assert_eq!(
        r.response().headers.get("Call-ID"),
        Some("bad1"),
        "the 400 belongs to the bad request"
    );

    let bad_mf = format!(
        "OPTIONS sip:bob@hookflash.local SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKbad2\r\n\
Max-Forwards: lots\r\nFrom: <sip:alice@hookflash.local>;tag=1\r\nTo: <sip:bob@hookflash.local>\r\n\
Call-ID: bad2\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    );
    ua.send_raw(bad_mf.as_bytes()).await;
    let r = ua.next_response(Method::Options, false).await;
    assert_eq!(
        r.response().status,
        400,
        "a bad Max-Forwards is answered 400"
    );

    let no_call_id = format!(
        "OPTIONS sip:hookflash.local SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKbad3\r\n\
From: <sip:alice@hookflash.local>;tag=1\r\nTo: <sip:hookflash.local>\r\nCSeq: 1 OPTIONS\r\n\r\n"
    );
    ua.send_raw(no_call_id.as_bytes()).await;
    let r = ua
        .next_where("a 400 for the missing Call-ID", |m| {
            matches!(m, hookflash_core::sip::Message::Response(_))
        })
        .await;
    assert_eq!(
        (r.response().status, r.response().reason.as_str()),
        (400, "Missing Call-ID"),
        "RFC 3261 wants an answer, and the reason names what is missing"
    );

    let domain = format!("sip:{}", sb.domain());
    let req = ua.request(Method::Options, &domain, &domain);
    ua.send(req).await;
    let r = ua.next_response(Method::Options, false).await;
    assert_eq!(
        r.response().status,
        200,
        "the server still answers afterwards"
    );
    sb.shutdown().await;
}

#[tokio::test]
async fn unframeable_tcp_stream_is_closed_and_a_new_connection_works() {
    let sb = switchboard().await;
    let mut ua = Ua::new("alice", TransportKind::Tcp, &sb).await;
    ua.send_raw(b"OPTIONS sip:hookflash.local SIP/2.0\r\nCall-ID: x\r\n\r\n")
        .await;
    let closed = tokio::time::timeout(WAIT, async {
        loop {
            match ua.events.recv().await {
                Some(hookflash_core::sip::TransportEvent::Closed { .. }) | None => return,
                Some(_) => {}
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "a stream message without Content-Length cannot be framed: the server closes it"
    );
    let domain = format!("sip:{}", sb.domain());
    let req = ua.request(Method::Options, &domain, &domain);
    ua.send(req).await;
    let r = ua.next_response(Method::Options, false).await;
    assert_eq!(
        r.response().status,
        200,
        "a new connection is served normally"
    );
    sb.shutdown().await;
}
