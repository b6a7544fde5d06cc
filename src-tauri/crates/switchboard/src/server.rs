//! The async driver: sockets, timers and the engine.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use hookflash_core::sip::{Transport, TransportEvent, TransportKind};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::engine::{BindingInfo, Engine};
use crate::routing::Flow;

/// Requests from the handle to the running switchboard.
pub(crate) enum Command {
    Bindings(String, oneshot::Sender<Vec<BindingInfo>>),
    /// A mailbox changed: NOTIFY its message-summary subscribers.
    MailboxChanged(String),
}

/// The address to advertise when bound to a wildcard: the interface of the default route,
/// found without sending anything; loopback when there is none.
pub(crate) fn advertised_ip(bind: IpAddr) -> IpAddr {
    if !bind.is_unspecified() {
        return bind;
    }
    let probe = || -> std::io::Result<IpAddr> {
        let s = std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
        s.connect((Ipv4Addr::new(192, 0, 2, 1), 9))?;
        Ok(s.local_addr()?.ip())
    };
    probe()
        .ok()
        .filter(|ip| !ip.is_unspecified())
        .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

/// Run until `stop` fires or the transport goes away.
pub(crate) async fn run(
    mut engine: Engine,
    transport: Transport,
    mut events: mpsc::UnboundedReceiver<TransportEvent>,
    mut commands: mpsc::UnboundedReceiver<Command>,
    mut stop: oneshot::Receiver<()>,
) {
    let (fail_tx, mut fail_rx) = mpsc::unbounded_channel::<String>();
    let mut connecting = JoinSet::new();
    loop {
        flush(&mut engine, &transport, &fail_tx, &mut connecting).await;
        while connecting.try_join_next().is_some() {}
        let deadline = engine.poll_timeout();
        let timer = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(Instant::from_std(at)).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = &mut stop => break,
            ev = events.recv() => {
                let now = std::time::Instant::now();
                match ev {
                    None => break,
                    Some(TransportEvent::Message { message, source, transport }) => {
                        engine.handle_message(message, Flow { transport, addr: source }, now)
                    }
                    Some(TransportEvent::Malformed { source, transport, error, reply }) => {
                        engine.handle_malformed(Flow { transport, addr: source }, &error, reply.map(|r| *r))
                    }
                    Some(TransportEvent::Closed { peer, transport }) => engine.handle_closed(Flow { transport, addr: peer }, now),
                }
            }
            Some(branch) = fail_rx.recv() => {
                engine.handle_send_error(&branch, std::time::Instant::now());
            }
            Some(cmd) = commands.recv() => match cmd {
                Command::Bindings(user, reply) => {
                    let _ = reply.send(engine.bindings(&user, std::time::Instant::now()));
                }
                Command::MailboxChanged(owner) => {
                    engine.handle_mailbox_changed(&owner, std::time::Instant::now());
                }
            },
            _ = timer => engine.handle_timeout(std::time::Instant::now()),
        }
    }
    debug!("switchboard loop ends");
    transport.shutdown();
    connecting.shutdown().await;
}

/// Send everything the engine has queued. UDP and open TCP connections are sent inline (in
/// order); a TCP connection still to be opened is sent from a task so the loop never waits
/// for a connect.
async fn flush(
    engine: &mut Engine,
    transport: &Transport,
    fail_tx: &mpsc::UnboundedSender<String>,
    connecting: &mut JoinSet<()>,
) {
    while let Some(t) = engine.poll_transmit() {
        let Flow {
            transport: kind,
            addr,
        } = t.flow;
        let bytes = t.message.to_bytes();
        if kind == TransportKind::Udp || transport.has_connection(kind, addr) {
            if let Err(e) = transport.send_raw(kind, addr, bytes).await {
                warn!(flow = %t.flow, error = %e, "send failed");
                if let Some(b) = t.branch {
                    engine.handle_send_error(&b, std::time::Instant::now());
                }
            }
        } else {
            let tr = transport.clone();
            let fail = fail_tx.clone();
            let flow = t.flow;
            let branch = t.branch;
            connecting.spawn(async move {
                if let Err(e) = tr.send_raw(kind, addr, bytes).await {
                    warn!(%flow, error = %e, "send failed");
                    if let Some(b) = branch {
                        let _ = fail.send(b);
                    }
                }
            });
        }
    }
}

/// Wait (briefly, bounded) until `addr` can be bound again for UDP and TCP: the transport's
/// reader tasks drop their sockets asynchronously after being aborted.
pub(crate) async fn wait_ports_free(addr: SocketAddr) {
    for _ in 0..200 {
        let udp = std::net::UdpSocket::bind(addr);
        let tcp = std::net::TcpListener::bind(addr);
        if udp.is_ok() && tcp.is_ok() {
            return;
        }
        drop((udp, tcp));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    warn!(%addr, "ports still busy after shutdown");
}
