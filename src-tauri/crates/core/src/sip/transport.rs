//! SIP over UDP and TCP (RFC 3261 §18), with CRLF keep-alives on streams (RFC 5626 §3.5.1).
//!
//! Pings (CRLFCRLF) on any connection are answered with a pong (CRLF). On a connection we
//! opened we are the side that pings (RFC 5626 §4.4.1), so a CRLF from the other end there
//! is a pong; those are handed to whoever asked through [`Transport::pongs`], as the proof of
//! life that the server's silence otherwise hides.
//!
//! One [`Transport`] owns a UDP socket and, optionally, a TCP listener on the same port. TCP
//! connections — accepted or opened by us — are indexed by the peer's address, so that a
//! request for a peer that reached us over TCP goes back over the same connection (the only
//! way through NATs, and what a registrar must do for clients that registered over TCP).

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;

use super::message::{next_stream_frame, Message, StreamFrame};

/// Which transport a message travels on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[serde(rename_all = "lowercase")]
pub enum TransportKind {
    /// Datagrams.
    #[default]
    Udp,
    /// A stream connection.
    Tcp,
}

impl TransportKind {
    /// The Via / `;transport=` token.
    pub fn as_str(self) -> &'static str {
        match self {
            TransportKind::Udp => "UDP",
            TransportKind::Tcp => "TCP",
        }
    }
}

impl std::str::FromStr for TransportKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "udp" => Ok(TransportKind::Udp),
            "tcp" => Ok(TransportKind::Tcp),
            other => Err(format!("unknown transport {other:?} (udp or tcp)")),
        }
    }
}

/// What the transport hands up.
#[derive(Debug)]
pub enum TransportEvent {
    /// A well-formed message.
    Message {
        /// The message.
        message: Message,
        /// Where it came from (for TCP: the connection's peer address).
        source: SocketAddr,
        /// Which transport.
        transport: TransportKind,
    },
    /// Bytes that did not parse as SIP.
    Malformed {
        /// Where they came from.
        source: SocketAddr,
        /// Which transport.
        transport: TransportKind,
        /// Why they did not parse.
        error: String,
        /// The answer to send back, when they were a request that can be answered
        /// ([`Message::reply_to_unparsable`]: 505, 416 or 400).
        reply: Option<Box<super::Response>>,
    },
    /// A TCP connection to this peer closed.
    Closed {
        /// The peer.
        peer: SocketAddr,
    },
}

/// Limits on the TCP connections a transport *accepts* (the ones it opens are its own): so that
/// idle or half-sent connections cannot hold its descriptors for as long as someone likes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamLimits {
    /// The most accepted connections open at once; more are closed as they arrive.
    pub max_connections: usize,
    /// An accepted connection that sends nothing for this long is closed. Clients keep
    /// theirs open with CRLF pings (RFC 5626 §4.4.1 suggests every 95-120 s; ours after 5 s
    /// of silence, to notice a dead server within 10 s).
    pub idle_timeout: Duration,
    /// A message must be complete this long after its first byte arrived.
    pub message_timeout: Duration,
}

impl Default for StreamLimits {
    fn default() -> Self {
        StreamLimits {
            max_connections: 1024,
            idle_timeout: Duration::from_secs(180),
            message_timeout: Duration::from_secs(10),
        }
    }
}

/// How long an accept loop waits after a failed `accept` (out of descriptors, say), at first
/// and at most: it keeps listening, it only stops spinning.
const ACCEPT_BACKOFF: (Duration, Duration) = (Duration::from_millis(10), Duration::from_secs(1));

struct Inner {
    /// Taken out on shutdown so that the port is released even while clones live on.
    udp: Mutex<Option<Arc<UdpSocket>>>,
    udp_local: SocketAddr,
    tcp_local: Option<SocketAddr>,
    conns: Mutex<HashMap<SocketAddr, mpsc::UnboundedSender<Vec<u8>>>>,
    events: mpsc::UnboundedSender<TransportEvent>,
    tasks: Mutex<Vec<tokio::task::AbortHandle>>,
    limits: StreamLimits,
    /// Accepted connections open now.
    accepted: AtomicUsize,
    /// Where pongs on our own connections are reported ([`Transport::pongs`]).
    pongs: Mutex<Option<mpsc::UnboundedSender<SocketAddr>>>,
}

/// Counts an accepted connection while it lives.
struct AcceptedSlot(std::sync::Weak<Inner>);

impl Drop for AcceptedSlot {
    fn drop(&mut self) {
        if let Some(inner) = self.0.upgrade() {
            inner.accepted.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

impl Inner {
    fn track(&self, handle: tokio::task::AbortHandle) {
        let mut tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        tasks.retain(|t| !t.is_finished());
        tasks.push(handle);
    }

    fn abort_all(&self) {
        for t in self
            .tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            t.abort();
        }
        self.conns.lock().unwrap_or_else(|e| e.into_inner()).clear();
        self.udp.lock().unwrap_or_else(|e| e.into_inner()).take();
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.abort_all();
    }
}

/// A UDP socket plus an optional TCP listener; cheap to clone.
#[derive(Clone)]
pub struct Transport {
    inner: Arc<Inner>,
}

impl Transport {
    /// Bind UDP on `ip:port` (0 picks a port) and, with `tcp`, a TCP listener on the same port
    /// with the default [`StreamLimits`].
    pub async fn bind(
        ip: IpAddr,
        port: u16,
        tcp: bool,
    ) -> io::Result<(Transport, mpsc::UnboundedReceiver<TransportEvent>)> {
        Self::bind_with(ip, port, tcp, StreamLimits::default()).await
    }

    /// [`bind`](Self::bind) with limits on the TCP connections it accepts.
    pub async fn bind_with(
        ip: IpAddr,
        port: u16,
        tcp: bool,
        limits: StreamLimits,
    ) -> io::Result<(Transport, mpsc::UnboundedReceiver<TransportEvent>)> {
        let (udp, listener) = bind_pair(ip, port, tcp).await?;
        let (tx, rx) = mpsc::unbounded_channel();
        let udp = Arc::new(udp);
        let inner = Arc::new(Inner {
            udp_local: udp.local_addr()?,
            udp: Mutex::new(Some(udp.clone())),
            tcp_local: listener.as_ref().map(|l| l.local_addr()).transpose()?,
            conns: Mutex::new(HashMap::new()),
            events: tx,
            tasks: Mutex::new(Vec::new()),
            limits,
            accepted: AtomicUsize::new(0),
            pongs: Mutex::new(None),
        });
        let t = Transport { inner };
        let h = tokio::spawn(udp_reader(udp, t.inner.events.clone()));
        t.inner.track(h.abort_handle());
        if let Some(listener) = listener {
            let weak = Arc::downgrade(&t.inner);
            let h = tokio::spawn(async move {
                let mut backoff = ACCEPT_BACKOFF.0;
                let mut refused = 0u64;
                loop {
                    let (stream, peer) = match listener.accept().await {
                        Ok(accepted) => accepted,
                        Err(e) => {
                            // Out of descriptors, a connection reset before accept...: keep
                            // listening, after a pause so as not to spin.
                            tracing::warn!(error = %e, ?backoff, "TCP accept failed; listening on");
                            tokio::time::sleep(backoff).await;
                            backoff = (backoff * 2).min(ACCEPT_BACKOFF.1);
                            continue;
                        }
                    };
                    backoff = ACCEPT_BACKOFF.0;
                    let Some(inner) = weak.upgrade() else { break };
                    let open = inner.accepted.fetch_add(1, Ordering::SeqCst);
                    if open >= inner.limits.max_connections {
                        inner.accepted.fetch_sub(1, Ordering::SeqCst);
                        refused += 1;
                        if refused.is_power_of_two() {
                            tracing::warn!(%peer, refused, max = inner.limits.max_connections,
                                "TCP connection refused: too many open");
                        }
                        drop(stream);
                        continue;
                    }
                    let slot = AcceptedSlot(Arc::downgrade(&inner));
                    let _ = stream.set_nodelay(true);
                    Transport { inner }.adopt(stream, peer, Some(slot));
                }
            });
            t.inner.track(h.abort_handle());
        }
        Ok((t, rx))
    }

    /// Stop reading, close every connection and release the ports, even while clones live on.
    pub fn shutdown(&self) {
        self.inner.abort_all();
    }

    /// The UDP socket's address.
    pub fn local_udp(&self) -> SocketAddr {
        self.inner.udp_local
    }

    /// The TCP listener's address, if listening.
    pub fn local_tcp(&self) -> Option<SocketAddr> {
        self.inner.tcp_local
    }

    /// Hear of every CRLF pong on a connection we opened: the peer it came from. A keep-alive
    /// that only the pong answers needs this to know that the peer is alive. A new call
    /// replaces the previous receiver.
    pub fn pongs(&self) -> mpsc::UnboundedReceiver<SocketAddr> {
        let (tx, rx) = mpsc::unbounded_channel();
        *self.inner.pongs.lock().unwrap_or_else(|e| e.into_inner()) = Some(tx);
        rx
    }

    /// Whether a TCP connection to this peer is open.
    pub fn has_connection(&self, peer: SocketAddr) -> bool {
        self.conns().contains_key(&peer)
    }

    /// Close the TCP connection to this peer, if any.
    pub fn close_connection(&self, peer: SocketAddr) {
        self.conns().remove(&peer);
    }

    fn conns(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<SocketAddr, mpsc::UnboundedSender<Vec<u8>>>> {
        // A poisoned lock only means another task panicked mid-insert; the map is still usable.
        self.inner.conns.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Send a message. Over TCP, an open connection to `dest` is reused, otherwise one is opened.
    pub async fn send(
        &self,
        kind: TransportKind,
        dest: SocketAddr,
        msg: &Message,
    ) -> io::Result<()> {
        self.send_raw(kind, dest, msg.to_bytes()).await
    }

    /// Send raw bytes (a keep-alive, or a pre-serialized message).
    pub async fn send_raw(
        &self,
        kind: TransportKind,
        dest: SocketAddr,
        bytes: Vec<u8>,
    ) -> io::Result<()> {
        match kind {
            TransportKind::Udp => {
                let udp = self
                    .inner
                    .udp
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone();
                let udp = udp.ok_or_else(|| {
                    io::Error::new(io::ErrorKind::NotConnected, "transport shut down")
                })?;
                udp.send_to(&bytes, dest).await?;
                Ok(())
            }
            TransportKind::Tcp => {
                let existing = self.conns().get(&dest).cloned();
                let tx = match existing {
                    Some(tx) if !tx.is_closed() => tx,
                    _ => {
                        let stream = tokio::time::timeout(
                            std::time::Duration::from_secs(5),
                            TcpStream::connect(dest),
                        )
                        .await
                        .map_err(|_| {
                            io::Error::new(io::ErrorKind::TimedOut, "TCP connect timed out")
                        })??;
                        let _ = stream.set_nodelay(true);
                        self.adopt(stream, dest, None)
                    }
                };
                tx.send(bytes)
                    .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "connection closed"))
            }
        }
    }

    /// Register a connected stream: a writer task fed by a channel and a framing reader task.
    /// An accepted stream (`slot`) is held to the [`StreamLimits`]: closed when idle too long
    /// or when a message takes too long to arrive.
    fn adopt(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
        slot: Option<AcceptedSlot>,
    ) -> mpsc::UnboundedSender<Vec<u8>> {
        let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
        self.conns().insert(peer, tx.clone());
        let (mut rd, mut wr) = stream.into_split();
        let w = tokio::spawn(async move {
            while let Some(bytes) = rx.recv().await {
                if wr.write_all(&bytes).await.is_err() {
                    break;
                }
            }
            let _ = wr.shutdown().await;
        });
        let weak = Arc::downgrade(&self.inner);
        let pong = tx.clone();
        let limits = slot.as_ref().map(|_| self.inner.limits);
        // We opened it: we ping, the other end only pongs (RFC 5626 §4.4.1).
        let ours = slot.is_none();
        let r = tokio::spawn(async move {
            let _slot = slot;
            let mut buf = Vec::with_capacity(8192);
            let mut chunk = vec![0u8; 16384];
            // When the message being received started (its first byte), for the timeout.
            let mut started: Option<tokio::time::Instant> = None;
            'read: loop {
                let read = match limits {
                    None => rd.read(&mut chunk).await,
                    Some(l) => {
                        let deadline = match started {
                            Some(at) => at + l.message_timeout,
                            None => tokio::time::Instant::now() + l.idle_timeout,
                        };
                        match tokio::time::timeout_at(deadline, rd.read(&mut chunk)).await {
                            Ok(read) => read,
                            Err(_) => {
                                tracing::debug!(%peer, partial = started.is_some(), "TCP connection timed out");
                                break;
                            }
                        }
                    }
                };
                let n = match read {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                buf.extend_from_slice(&chunk[..n]);
                loop {
                    let Some(inner) = weak.upgrade() else {
                        break 'read;
                    };
                    if ours && buf.starts_with(b"\r\n") {
                        // A pong. (The framing would hold a lone CRLF back as the possible
                        // start of a ping, which the other end of our connection never sends.)
                        buf.drain(..2);
                        started = None;
                        if let Some(tx) = inner
                            .pongs
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .as_ref()
                        {
                            let _ = tx.send(peer);
                        }
                        continue;
                    }
                    match next_stream_frame(&buf) {
                        StreamFrame::Incomplete => {
                            if buf.is_empty() {
                                started = None;
                            } else {
                                started.get_or_insert_with(tokio::time::Instant::now);
                            }
                            break;
                        }
                        StreamFrame::KeepAlive { len, ping } => {
                            buf.drain(..len);
                            started = None;
                            if ping {
                                let _ = pong.send(b"\r\n".to_vec());
                            }
                        }
                        StreamFrame::Message(len) => {
                            let event = match Message::parse(&buf[..len]) {
                                Ok(message) => TransportEvent::Message {
                                    message,
                                    source: peer,
                                    transport: TransportKind::Tcp,
                                },
                                Err(e) => TransportEvent::Malformed {
                                    source: peer,
                                    transport: TransportKind::Tcp,
                                    reply: Message::reply_to_unparsable(&buf[..len], &e.0)
                                        .map(Box::new),
                                    error: e.0,
                                },
                            };
                            buf.drain(..len);
                            started = None;
                            let _ = inner.events.send(event);
                        }
                        StreamFrame::Invalid(error) => {
                            let _ = inner.events.send(TransportEvent::Malformed {
                                source: peer,
                                transport: TransportKind::Tcp,
                                error,
                                reply: None,
                            });
                            break 'read;
                        }
                    }
                }
            }
            if let Some(inner) = weak.upgrade() {
                let mut conns = inner.conns.lock().unwrap_or_else(|e| e.into_inner());
                if conns.get(&peer).is_some_and(|c| c.same_channel(&pong)) {
                    conns.remove(&peer);
                }
                drop(conns);
                let _ = inner.events.send(TransportEvent::Closed { peer });
            }
        });
        self.inner.track(w.abort_handle());
        self.inner.track(r.abort_handle());
        tx
    }
}

/// The UDP socket buffers we ask for, each way. Linux's default (208 KiB) holds about 400
/// requests: a burst of a few hundred REGISTERs arriving while the engine is busy for a
/// millisecond overflows it, and each lost datagram costs its sender a retransmission 500 ms
/// later. The kernel caps the request at `net.core.rmem_max` / `wmem_max` (raise those on a
/// busy server); an agent only ever fills a sliver of it.
pub const UDP_SOCKET_BUFFER: usize = 4 << 20;

/// Ask for [`UDP_SOCKET_BUFFER`] both ways; what the kernel grants is logged, never fatal.
fn size_udp_buffers(udp: &UdpSocket) {
    let sock = socket2::SockRef::from(udp);
    let _ = sock.set_recv_buffer_size(UDP_SOCKET_BUFFER);
    let _ = sock.set_send_buffer_size(UDP_SOCKET_BUFFER);
    tracing::debug!(
        receive = sock.recv_buffer_size().unwrap_or(0),
        send = sock.send_buffer_size().unwrap_or(0),
        "UDP socket buffers"
    );
}

async fn bind_pair(
    ip: IpAddr,
    port: u16,
    tcp: bool,
) -> io::Result<(UdpSocket, Option<TcpListener>)> {
    // With port 0 the UDP port is picked first and TCP takes the same number; retry on a clash.
    for _ in 0..20 {
        let udp = UdpSocket::bind(SocketAddr::new(ip, port)).await?;
        size_udp_buffers(&udp);
        if !tcp {
            return Ok((udp, None));
        }
        let actual = udp.local_addr()?;
        match TcpListener::bind(actual).await {
            Ok(l) => return Ok((udp, Some(l))),
            Err(e) if port == 0 && e.kind() == io::ErrorKind::AddrInUse => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AddrInUse,
        "no port free for both UDP and TCP",
    ))
}

async fn udp_reader(sock: Arc<UdpSocket>, events: mpsc::UnboundedSender<TransportEvent>) {
    let mut buf = vec![0u8; 65536];
    loop {
        let (n, source) = match sock.recv_from(&mut buf).await {
            Ok(r) => r,
            // ICMP port unreachable surfaces as ConnectionReset on some platforms: keep reading.
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => continue,
            // Anything else (out of buffers, say) passes: log, pause, keep reading.
            Err(e) => {
                tracing::warn!(error = %e, "UDP receive failed; reading on");
                tokio::time::sleep(ACCEPT_BACKOFF.0).await;
                continue;
            }
        };
        let data = &buf[..n];
        if data.iter().all(|b| *b == b'\r' || *b == b'\n') {
            continue; // UDP keep-alive
        }
        let event = match Message::parse(data) {
            Ok(message) => TransportEvent::Message {
                message,
                source,
                transport: TransportKind::Udp,
            },
            Err(e) => TransportEvent::Malformed {
                source,
                transport: TransportKind::Udp,
                reply: Message::reply_to_unparsable(data, &e.0).map(Box::new),
                error: e.0,
            },
        };
        if events.send(event).is_err() {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WAIT: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn udp_sockets_get_buffers_sized_for_bursts() {
        let (t, _events) = Transport::bind(IpAddr::from([127, 0, 0, 1]), 0, false)
            .await
            .unwrap();
        let udp = t.inner.udp.lock().unwrap().clone().expect("bound");
        let sock = socket2::SockRef::from(udp.as_ref());
        let cap = |f: &str| {
            std::fs::read_to_string(format!("/proc/sys/net/core/{f}"))
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(UDP_SOCKET_BUFFER)
        };
        // Linux reports twice what was granted (its bookkeeping overhead).
        assert!(
            sock.recv_buffer_size().unwrap() >= UDP_SOCKET_BUFFER.min(cap("rmem_max")),
            "the receive buffer must be raised to what the system allows, not left at the \
             default that overflows under a burst of requests"
        );
        assert!(
            sock.send_buffer_size().unwrap() >= UDP_SOCKET_BUFFER.min(cap("wmem_max")),
            "the send buffer likewise"
        );
    }

    #[tokio::test]
    async fn a_ping_on_our_connection_is_answered_and_the_pong_reported() {
        let lo = IpAddr::from([127, 0, 0, 1]);
        let (server, _server_events) = Transport::bind(lo, 0, true).await.unwrap();
        let (client, _client_events) = Transport::bind(lo, 0, true).await.unwrap();
        let mut pongs = client.pongs();
        let to = server.local_tcp().expect("the server listens on TCP");
        for round in 0..3 {
            client
                .send_raw(TransportKind::Tcp, to, b"\r\n\r\n".to_vec())
                .await
                .expect("the ping goes out");
            let pong = tokio::time::timeout(WAIT, pongs.recv()).await;
            assert_eq!(
                pong.ok().flatten(),
                Some(to),
                "ping {round}: the server's lone CRLF pong must be reported at once, not held \
                 back as the possible start of a ping (RFC 5626 §4.4.1)"
            );
        }
    }
}
