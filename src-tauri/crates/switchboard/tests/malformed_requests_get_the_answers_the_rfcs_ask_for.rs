//! Requests the switchboard cannot take are answered, not dropped, with the status RFC 3261
//! asks for and a reason that says what is wrong: 505 for another SIP version, 416 for an
//! unknown Request-URI scheme, 400 naming a missing header. An ACK and garbage get nothing.
//! Over its real UDP socket, as any client would meet it.

mod common;

use std::time::Duration;

use common::switchboard;
use hookflash_core::sip::Message;
use tokio::net::UdpSocket;

/// Sends `start` plus the usual headers (less any in `without`), returns the answer if any.
async fn ask(socket: &UdpSocket, start: &str, without: &str) -> Option<(u16, String)> {
    let headers = [
        "Via: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKrfc",
        "From: <sip:tester@hookflash.local>;tag=t",
        "To: <sip:bob@hookflash.local>",
        "Call-ID: rfc-answers",
        "CSeq: 1 OPTIONS",
        "Max-Forwards: 70",
    ];
    let mut text = format!("{start}\r\n");
    for h in headers
        .iter()
        .filter(|h| without.is_empty() || !h.starts_with(without))
    {
        text.push_str(h);
        text.push_str("\r\n");
    }
    text.push_str("Content-Length: 0\r\n\r\n");
    socket.send(text.as_bytes()).await.expect("send");
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_millis(500), socket.recv(&mut buf))
        .await
        .ok()?
        .ok()?;
    match Message::parse(&buf[..n]).ok()? {
        Message::Response(r) => Some((r.status, r.reason)),
        Message::Request(_) => None,
    }
}

#[tokio::test]
async fn bad_version_unknown_scheme_and_missing_headers_are_answered() {
    let sb = switchboard().await;
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("socket");
    socket.connect(sb.local_addr()).await.expect("connect");

    let (status, _) = ask(&socket, "OPTIONS sip:bob@hookflash.local SIP/3.0", "")
        .await
        .expect("another SIP version is answered");
    assert_eq!(status, 505, "Version Not Supported (RFC 3261 §21.5.6)");

    let (status, _) = ask(&socket, "OPTIONS gopher:bob@hookflash.local SIP/2.0", "")
        .await
        .expect("an unknown URI scheme is answered");
    assert_eq!(status, 416, "Unsupported URI Scheme (§21.4.9)");

    for header in ["Call-ID", "From", "To"] {
        let (status, reason) = ask(&socket, "OPTIONS sip:bob@hookflash.local SIP/2.0", header)
            .await
            .unwrap_or_else(|| panic!("a request without {header} is answered"));
        assert_eq!(status, 400, "without {header}");
        assert!(
            reason.contains(header),
            "the reason names the missing {header}: {reason:?}"
        );
    }

    assert_eq!(
        ask(&socket, "ACK sip:bob@hookflash.local SIP/3.0", "").await,
        None,
        "an ACK is never answered"
    );
    socket
        .send(b"\x16\x03\x01 not sip at all\r\n\r\n")
        .await
        .expect("send");
    let mut buf = [0u8; 512];
    assert!(
        tokio::time::timeout(Duration::from_millis(300), socket.recv(&mut buf))
            .await
            .is_err(),
        "bytes that are not a request get no answer"
    );
}
