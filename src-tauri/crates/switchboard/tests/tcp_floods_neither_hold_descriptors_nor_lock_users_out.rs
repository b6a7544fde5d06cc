//! SIP over TCP under abuse: connections beyond the cap are closed as they arrive, idle ones
//! and ones that trickle a message too slowly (slowloris) are closed on their timers, and a
//! user who connects afterwards registers as usual.

mod common;

use std::time::Duration;

use common::{switchboard_with, Ua};
use hookflash_core::sip::{StreamLimits, TransportKind};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Whether the server closed `stream` within `within` (a read returns end of file or fails).
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut byte = [0u8; 1];
    matches!(
        tokio::time::timeout(within, stream.read(&mut byte)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn floods_of_idle_and_slow_connections_are_shed_and_users_still_get_in() {
    let sb = switchboard_with(|c| {
        c.tcp_limits = StreamLimits {
            max_connections: 20,
            idle_timeout: Duration::from_secs(1),
            message_timeout: Duration::from_secs(1),
        };
    })
    .await;
    let addr = sb.local_addr();

    // 30 idle connections: the 10 beyond the cap are closed at once.
    let mut flood = Vec::new();
    for _ in 0..30 {
        flood.push(TcpStream::connect(addr).await.expect("connect"));
    }
    // Well inside the idle timeout, look at each one briefly.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut shut_at_once = 0;
    for s in flood.iter_mut() {
        if closed_within(s, Duration::from_millis(5)).await {
            shut_at_once += 1;
        }
    }
    assert_eq!(
        shut_at_once, 10,
        "connections beyond the cap of 20 are closed as they come"
    );
    // The rest are closed once idle for a second.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    for (i, s) in flood.iter_mut().enumerate() {
        assert!(
            closed_within(s, Duration::from_millis(500)).await,
            "idle connection {i} is closed after the idle timeout"
        );
    }

    // A slowloris: a byte every 200 ms keeps the connection busy but never completes a
    // message; it is closed a second after the message began, not kept forever.
    let mut slow = TcpStream::connect(addr).await.expect("connect");
    let started = std::time::Instant::now();
    let mut cut = false;
    for b in b"REGISTER sip:hookflash.local SIP/2.0\r\nVia: "
        .iter()
        .cycle()
        .take(40)
    {
        if slow.write_all(&[*b]).await.is_err()
            || closed_within(&mut slow, Duration::from_millis(200)).await
        {
            cut = true;
            break;
        }
    }
    assert!(cut, "a message trickled byte by byte is cut off");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "within about its message timeout, not after the whole trickle"
    );

    // And a real user gets in over TCP.
    let mut alice = Ua::new("alice", TransportKind::Tcp, &sb).await;
    assert_eq!(
        alice.register().await.status,
        200,
        "a user registers over TCP after the floods"
    );
}
