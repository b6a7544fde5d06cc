//! Shutdown: the port is free again when `shutdown` returns, even with TCP clients connected.

mod common;

use common::*;
use hookflash_core::sip::TransportKind;

#[tokio::test]
async fn port_can_be_bound_again_right_after_shutdown() {
    let sb = switchboard().await;
    let port = sb.local_addr().port();
    let mut bob = Ua::new("bob", TransportKind::Tcp, &sb).await;
    assert_eq!(
        bob.register().await.status,
        200,
        "a TCP client is connected and registered"
    );
    sb.shutdown().await;
    let again = switchboard_with(|c| c.port = port).await;
    assert_eq!(
        again.local_addr().port(),
        port,
        "a new switchboard binds the same port for UDP and TCP at once"
    );
    let mut alice = Ua::new("alice", TransportKind::Tcp, &again).await;
    assert_eq!(
        alice.register().await.status,
        200,
        "and serves on it: the old connection state is gone"
    );
    again.shutdown().await;
}
