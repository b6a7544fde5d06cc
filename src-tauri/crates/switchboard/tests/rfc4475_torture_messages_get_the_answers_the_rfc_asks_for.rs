//! RFC 4475's torture messages, byte for byte (the corpus in the core crate's
//! `tests/rfc4475`), sent to the real switchboard over its loopback UDP socket: a well-formed
//! request gets a real answer (never a 400, 416 or 505); a malformed one the status the RFC
//! asks for, with a reason; a response, which a proxy never answers, nothing. And after all of
//! them at once the switchboard still registers a user and answers OPTIONS.
//!
//! Many of the messages share a branch, sent-by and method, which makes them one transaction
//! by RFC 3261 §17.2.3; so each is judged by a switchboard that has seen nothing else.

mod common;

use std::time::Duration;

use common::{switchboard, Ua};
use hookflash_core::sip::{Message, Method, Response, TransportKind};
use tokio::net::UdpSocket;

/// What the RFC asks of a proxy and registrar for one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// A well-formed request (or one the RFC lets us be liberal with): a final answer that
    /// is not a complaint about its syntax.
    Handled,
    /// This final status, with a reason phrase.
    Status(u16),
    /// Nothing: a response is never answered, and one with a broken status line is dropped.
    Nothing,
}

use Expect::{Handled, Nothing, Status};

const CASES: &[(&str, Expect)] = &[
    // §3.1.1 valid messages
    ("wsinv", Handled),
    ("intmeth", Handled),
    ("esc01", Handled),
    ("escnull", Handled),
    ("esc02", Handled),
    ("lwsdisp", Handled),
    ("longreq", Handled),
    ("dblreq", Handled),
    ("semiuri", Handled),
    ("transports", Handled),
    ("mpart01", Handled),
    ("unreason", Nothing),
    ("noreason", Nothing),
    // §3.1.2 invalid messages
    ("badinv01", Status(400)),
    ("clerr", Status(400)),
    ("ncl", Status(400)),
    ("scalar02", Status(400)),
    ("scalarlg", Nothing),
    ("quotbal", Status(400)),
    ("ltgtruri", Status(400)),
    ("lwsruri", Status(400)),
    ("lwsstart", Status(400)),
    ("trws", Status(400)),
    ("escruri", Status(400)),
    ("baddate", Handled),
    ("regbadct", Handled),
    ("badaspec", Handled),
    ("baddn", Status(400)),
    ("badvers", Status(505)),
    ("mismatch01", Status(400)),
    ("mismatch02", Status(400)),
    ("bigcode", Nothing),
    // §3.2 transaction layer
    ("badbranch", Handled),
    // §3.3 application layer
    ("insuf", Status(400)),
    ("unkscm", Status(416)),
    ("novelsc", Status(416)),
    ("unksm2", Status(400)),
    ("bext01", Status(420)),
    ("invut", Handled),
    ("regaut01", Handled),
    ("multi01", Status(400)),
    ("mcl01", Status(400)),
    ("bcast", Nothing),
    ("zeromf", Status(483)),
    ("cparam01", Handled),
    ("cparam02", Handled),
    ("regescrt", Handled),
    ("sdp01", Handled),
    // §3.4 backward compatibility
    ("inv2543", Handled),
];

fn load(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/../core/tests/rfc4475/{name}.dat",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("the corpus holds {path}: {e}"))
}

/// Sends `name` from a fresh socket; the first final response to it, if one comes.
async fn final_answer(
    server: std::net::SocketAddr,
    name: &str,
    wait: Duration,
) -> Option<Response> {
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("socket");
    socket.connect(server).await.expect("connect");
    socket.send(&load(name)).await.expect("send");
    let mut buf = vec![0u8; 65536];
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let n = tokio::time::timeout_at(deadline, socket.recv(&mut buf))
            .await
            .ok()?
            .expect("recv");
        match Message::parse(&buf[..n]) {
            Ok(Message::Response(r)) if r.status >= 200 => return Some(r),
            Ok(Message::Response(_)) => continue, // 100 Trying to an INVITE
            Ok(Message::Request(r)) => panic!("{name}: the switchboard sent us a {}", r.method),
            Err(e) => panic!("{name}: the switchboard's answer must parse: {e}"),
        }
    }
}

#[tokio::test]
async fn every_torture_message_gets_the_answer_the_rfc_asks_for() {
    assert_eq!(CASES.len(), 49, "every message of RFC 4475 §3 is sent");
    for &(name, expect) in CASES {
        let sb = switchboard().await;
        let server = sb.local_addr();
        match expect {
            Handled => {
                let r = final_answer(server, name, Duration::from_secs(3))
                    .await
                    .unwrap_or_else(|| panic!("{name} is well-formed and must be answered"));
                assert!(
                    ![400, 416, 505].contains(&r.status),
                    "{name} is well-formed (RFC 4475) yet was refused for its syntax: {} {}",
                    r.status,
                    r.reason
                );
            }
            Status(status) => {
                let r = final_answer(server, name, Duration::from_secs(3))
                    .await
                    .unwrap_or_else(|| panic!("{name} must be answered {status}, not dropped"));
                assert_eq!(
                    r.status, status,
                    "{name}: RFC 4475 asks for {status}, got {} {}",
                    r.status, r.reason
                );
                assert!(
                    !r.reason.trim().is_empty(),
                    "{name}: the {status} has a reason phrase"
                );
                if name == "bext01" {
                    assert_eq!(
                        r.headers.get("Unsupported"),
                        Some("noProxiesSupportThis, norDoAnyProxiesSupportThis"),
                        "bext01: a proxy's 420 lists the Proxy-Require tags it does not support"
                    );
                }
            }
            Nothing => {
                let r = final_answer(server, name, Duration::from_millis(300)).await;
                assert!(
                    r.is_none(),
                    "{name}: a response is never answered, got {:?}",
                    r.map(|r| (r.status, r.reason))
                );
            }
        }
        sb.shutdown().await;
    }
}

#[tokio::test]
async fn after_all_of_them_at_once_the_switchboard_still_serves() {
    let sb = switchboard().await;
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("socket");
    socket.connect(sb.local_addr()).await.expect("connect");
    for &(name, _) in CASES {
        socket.send(&load(name)).await.expect("send");
    }
    let mut ua = Ua::new("alice", TransportKind::Udp, &sb).await;
    let registered = ua.register().await;
    assert_eq!(
        registered.status, 200,
        "after the torture a user still registers"
    );
    let domain = format!("sip:{}", sb.domain());
    let options = ua.request(Method::Options, &domain, &domain);
    ua.send(options).await;
    let r = ua.next_response(Method::Options, false).await;
    assert_eq!(
        r.response().status,
        200,
        "after the torture the switchboard still answers OPTIONS"
    );
    sb.shutdown().await;
}
