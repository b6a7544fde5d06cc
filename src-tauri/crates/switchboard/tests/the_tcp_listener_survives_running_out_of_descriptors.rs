//! When the process runs out of file descriptors, `accept` fails; the SIP TCP listener must
//! log, back off and keep listening, so that service comes back once descriptors are free.
//!
//! This test lowers its own process's descriptor limit (with util-linux's `prlimit`), so it
//! lives alone in its test binary.

mod common;

use std::time::Duration;

use common::{switchboard_with, Ua};
use hookflash_core::sip::{StreamLimits, TransportKind};
use tokio::net::TcpStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_out_of_descriptors_does_not_stop_the_listener() {
    let sb = switchboard_with(|c| {
        c.tcp_limits = StreamLimits {
            max_connections: 10_000,
            ..StreamLimits::default()
        };
    })
    .await;
    let addr = sb.local_addr();
    let open_now = std::fs::read_dir("/proc/self/fd").expect("fds").count();
    let limit = open_now + 40;
    let status = std::process::Command::new("prlimit")
        .args([
            "--pid",
            &std::process::id().to_string(),
            &format!("--nofile={limit}:{limit}"),
        ])
        .status()
        .expect("prlimit (util-linux)");
    assert!(status.success(), "the test lowers its own descriptor limit");

    // Connect until the system refuses: both ends of each connection are ours, so the
    // switchboard's accepts start failing with EMFILE well before our connects do.
    let mut held = Vec::new();
    for _ in 0..200 {
        match tokio::time::timeout(Duration::from_millis(300), TcpStream::connect(addr)).await {
            Ok(Ok(s)) => held.push(s),
            _ => break,
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        held.len() >= 20,
        "enough connections to exhaust the descriptors: {}",
        held.len()
    );
    // Free everything; the listener must still be there.
    drop(held);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut alice = Ua::new("alice", TransportKind::Tcp, &sb).await;
    assert_eq!(
        alice.register().await.status,
        200,
        "once descriptors are free again, a user registers over TCP"
    );
}
