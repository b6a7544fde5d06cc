//! SIP over UDP, TCP and TLS (RFC 3261 §18, §26.2) and over WebSocket (RFC 7118, plain or
//! secure), with CRLF keep-alives on streams (RFC 5626 §3.5.1) and ping frames on WebSockets.
//!
//! Pings (CRLFCRLF) on any connection are answered with a pong (CRLF). On a connection we
//! opened we are the side that pings (RFC 5626 §4.4.1), so a CRLF from the other end there
//! is a pong; those are handed to whoever asked through [`Transport::pongs`], as the proof of
//! life that the server's silence otherwise hides. On a WebSocket the ping is a ping frame and
//! its pong frame the proof.
//!
//! One [`Transport`] owns a UDP socket and, optionally, a TCP listener on the same port, a TLS
//! listener and a WebSocket listener. Connections — accepted or opened by us — are indexed by
//! transport and the peer's address, so that a request for a peer that reached us over a
//! connection goes back over the same connection (the only way through NATs, the only way at
//! all to a WebSocket client, and what a registrar must do for clients that registered over
//! a stream).

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::{self, handshake::server as ws_server, Message as WsMessage};

use super::message::{next_stream_frame, Message, StreamFrame};
use super::tls::TlsClient;

/// Which transport a message travels on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[serde(rename_all = "lowercase")]
pub enum TransportKind {
    /// Datagrams.
    #[default]
    Udp,
    /// A TCP connection.
    Tcp,
    /// A TLS connection (`sips:`).
    Tls,
    /// A WebSocket over TCP (RFC 7118).
    Ws,
    /// A WebSocket over TLS (RFC 7118).
    Wss,
}

impl TransportKind {
    /// The Via token.
    pub fn as_str(self) -> &'static str {
        match self {
            TransportKind::Udp => "UDP",
            TransportKind::Tcp => "TCP",
            TransportKind::Tls => "TLS",
            TransportKind::Ws => "WS",
            TransportKind::Wss => "WSS",
        }
    }

    /// The `;transport=` value.
    pub fn param(self) -> &'static str {
        match self {
            TransportKind::Udp => "udp",
            TransportKind::Tcp => "tcp",
            TransportKind::Tls => "tls",
            TransportKind::Ws => "ws",
            TransportKind::Wss => "wss",
        }
    }

    /// Whether messages travel on a connection (everything but UDP).
    pub fn is_stream(self) -> bool {
        self != TransportKind::Udp
    }

    /// Whether the connection is encrypted and the peer's certificate checked.
    pub fn is_secure(self) -> bool {
        matches!(self, TransportKind::Tls | TransportKind::Wss)
    }

    /// Whether SIP messages travel as WebSocket messages.
    pub fn is_websocket(self) -> bool {
        matches!(self, TransportKind::Ws | TransportKind::Wss)
    }
}

impl std::str::FromStr for TransportKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "udp" => Ok(TransportKind::Udp),
            "tcp" => Ok(TransportKind::Tcp),
            "tls" => Ok(TransportKind::Tls),
            "ws" => Ok(TransportKind::Ws),
            "wss" => Ok(TransportKind::Wss),
            other => Err(format!(
                "unknown transport {other:?} (udp, tcp, tls, ws or wss)"
            )),
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
        /// Where it came from (for a connection: its peer address).
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
    /// A connection to this peer closed.
    Closed {
        /// The peer.
        peer: SocketAddr,
        /// Which transport the connection was.
        transport: TransportKind,
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

/// What a connection's writer is asked to send.
#[derive(Debug)]
enum Outgoing {
    /// Bytes of a message (or a CRLF pong).
    Bytes(Vec<u8>),
    /// A keep-alive ping: CRLFCRLF on a stream, a ping frame on a WebSocket.
    Ping,
}

type ConnKey = (TransportKind, SocketAddr);

struct Inner {
    /// Taken out on shutdown so that the port is released even while clones live on.
    udp: Mutex<Option<Arc<UdpSocket>>>,
    udp_local: SocketAddr,
    /// The address of each listener, by transport.
    listening: Mutex<HashMap<TransportKind, SocketAddr>>,
    conns: Mutex<HashMap<ConnKey, mpsc::UnboundedSender<Outgoing>>>,
    events: mpsc::UnboundedSender<TransportEvent>,
    tasks: Mutex<Vec<tokio::task::AbortHandle>>,
    limits: StreamLimits,
    /// Accepted connections open now.
    accepted: AtomicUsize,
    /// Where pongs on our own connections are reported ([`Transport::pongs`]).
    pongs: Mutex<Option<mpsc::UnboundedSender<SocketAddr>>>,
    /// How TLS and WSS connections we open are verified.
    tls_client: Mutex<Option<TlsClient>>,
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

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A poisoned lock only means another task panicked mid-update; the data is still usable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Inner {
    fn track(&self, handle: tokio::task::AbortHandle) {
        let mut tasks = lock(&self.tasks);
        tasks.retain(|t| !t.is_finished());
        tasks.push(handle);
    }

    fn abort_all(&self) {
        for t in lock(&self.tasks).drain(..) {
            t.abort();
        }
        lock(&self.conns).clear();
        lock(&self.udp).take();
    }

    fn report_pong(&self, peer: SocketAddr) {
        if let Some(tx) = lock(&self.pongs).as_ref() {
            let _ = tx.send(peer);
        }
    }

    /// Forget the connection `key` if it is still the one `tx` feeds, and say it closed.
    fn closed(&self, key: ConnKey, tx: &mpsc::UnboundedSender<Outgoing>) {
        let mut conns = lock(&self.conns);
        if conns.get(&key).is_some_and(|c| c.same_channel(tx)) {
            conns.remove(&key);
        }
        drop(conns);
        let _ = self.events.send(TransportEvent::Closed {
            peer: key.1,
            transport: key.0,
        });
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.abort_all();
    }
}

/// How long opening a connection (TCP connect plus TLS and WebSocket handshakes) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The WebSocket subprotocol of SIP (RFC 7118 §4.1).
const WS_PROTOCOL: &str = "sip";

/// A UDP socket plus optional TCP, TLS and WebSocket listeners; cheap to clone.
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

    /// [`bind`](Self::bind) with limits on the connections it accepts.
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
            listening: Mutex::new(HashMap::new()),
            conns: Mutex::new(HashMap::new()),
            events: tx,
            tasks: Mutex::new(Vec::new()),
            limits,
            accepted: AtomicUsize::new(0),
            pongs: Mutex::new(None),
            tls_client: Mutex::new(None),
        });
        let t = Transport { inner };
        let h = tokio::spawn(udp_reader(udp, t.inner.events.clone()));
        t.inner.track(h.abort_handle());
        if let Some(listener) = listener {
            t.serve(listener, TransportKind::Tcp, None)?;
        }
        Ok((t, rx))
    }

    /// Also accept SIP over TLS on `addr` (port 0 picks one), with this certificate
    /// ([`super::tls::server_config`]): the address it listens on.
    pub async fn listen_tls(
        &self,
        addr: SocketAddr,
        config: Arc<rustls::ServerConfig>,
    ) -> io::Result<SocketAddr> {
        let listener = TcpListener::bind(addr).await?;
        self.serve(listener, TransportKind::Tls, Some(config))
    }

    /// Also accept SIP over WebSocket on `addr` (RFC 7118; port 0 picks one): secure (WSS)
    /// with a certificate, plain (WS) without. The address it listens on.
    pub async fn listen_ws(
        &self,
        addr: SocketAddr,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> io::Result<SocketAddr> {
        let listener = TcpListener::bind(addr).await?;
        let kind = if tls.is_some() {
            TransportKind::Wss
        } else {
            TransportKind::Ws
        };
        self.serve(listener, kind, tls)
    }

    /// Verify the TLS and WSS connections we open with `client`.
    pub fn set_tls_client(&self, client: TlsClient) {
        *lock(&self.inner.tls_client) = Some(client);
    }

    /// Accept connections of `kind` on `listener`, each held to the [`StreamLimits`]; the
    /// handshakes (TLS, WebSocket) run in the connection's own task, within the message
    /// timeout, so that a slow one holds up nobody.
    fn serve(
        &self,
        listener: TcpListener,
        kind: TransportKind,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> io::Result<SocketAddr> {
        let local = listener.local_addr()?;
        lock(&self.inner.listening).insert(kind, local);
        let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
        let weak = Arc::downgrade(&self.inner);
        let h = tokio::spawn(async move {
            let mut backoff = ACCEPT_BACKOFF.0;
            let mut refused = 0u64;
            loop {
                let (stream, peer) = match listener.accept().await {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Out of descriptors, a connection reset before accept...: keep
                        // listening, after a pause so as not to spin.
                        tracing::warn!(error = %e, ?backoff, ?kind, "accept failed; listening on");
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
                            ?kind, "connection refused: too many open");
                    }
                    drop(stream);
                    continue;
                }
                let slot = AcceptedSlot(Arc::downgrade(&inner));
                let _ = stream.set_nodelay(true);
                let t = Transport { inner };
                if kind == TransportKind::Tcp {
                    t.adopt_stream(stream, kind, peer, Some(slot));
                    continue;
                }
                let acceptor = acceptor.clone();
                let handshake = tokio::spawn(async move {
                    let within = t.inner.limits.message_timeout;
                    let done = tokio::time::timeout(within, async {
                        match (kind, acceptor) {
                            (TransportKind::Tls, Some(a)) => {
                                let s = a.accept(stream).await?;
                                t.adopt_stream(s, kind, peer, Some(slot));
                            }
                            (TransportKind::Wss, Some(a)) => {
                                let s = a.accept(stream).await?;
                                let ws = accept_websocket(s).await?;
                                t.adopt_websocket(ws, kind, peer, Some(slot));
                            }
                            _ => {
                                let ws = accept_websocket(stream).await?;
                                t.adopt_websocket(ws, kind, peer, Some(slot));
                            }
                        }
                        io::Result::Ok(())
                    })
                    .await;
                    match done {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => tracing::debug!(%peer, ?kind, error = %e, "handshake failed"),
                        Err(_) => tracing::debug!(%peer, ?kind, "handshake timed out"),
                    }
                });
                weak.upgrade()
                    .inspect(|i| i.track(handshake.abort_handle()));
            }
        });
        self.inner.track(h.abort_handle());
        Ok(local)
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
        self.local(TransportKind::Tcp)
    }

    /// The address we receive `kind` on: the UDP socket, or that transport's listener.
    pub fn local(&self, kind: TransportKind) -> Option<SocketAddr> {
        match kind {
            TransportKind::Udp => Some(self.inner.udp_local),
            _ => lock(&self.inner.listening).get(&kind).copied(),
        }
    }

    /// Hear of every pong on a connection we opened: the peer it came from. A keep-alive
    /// that only the pong answers needs this to know that the peer is alive. A new call
    /// replaces the previous receiver.
    pub fn pongs(&self) -> mpsc::UnboundedReceiver<SocketAddr> {
        let (tx, rx) = mpsc::unbounded_channel();
        *lock(&self.inner.pongs) = Some(tx);
        rx
    }

    /// Whether a connection of `kind` to this peer is open.
    pub fn has_connection(&self, kind: TransportKind, peer: SocketAddr) -> bool {
        lock(&self.inner.conns)
            .get(&(kind, peer))
            .is_some_and(|c| !c.is_closed())
    }

    /// Close the connection of `kind` to this peer, if any.
    pub fn close_connection(&self, kind: TransportKind, peer: SocketAddr) {
        lock(&self.inner.conns).remove(&(kind, peer));
    }

    /// Send a keep-alive ping on the open connection of `kind` to `peer` (RFC 5626 §4.4.1:
    /// CRLFCRLF; on a WebSocket a ping frame). Its pong is reported by [`pongs`](Self::pongs).
    /// Fails when no such connection is open.
    pub fn ping(&self, kind: TransportKind, peer: SocketAddr) -> io::Result<()> {
        let tx = lock(&self.inner.conns).get(&(kind, peer)).cloned();
        tx.ok_or_else(|| io::Error::new(io::ErrorKind::NotConnected, "no connection"))?
            .send(Outgoing::Ping)
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "connection closed"))
    }

    /// Send a message. Over a stream, an open connection to `dest` is reused, otherwise one
    /// is opened.
    pub async fn send(
        &self,
        kind: TransportKind,
        dest: SocketAddr,
        msg: &Message,
    ) -> io::Result<()> {
        self.send_raw(kind, dest, msg.to_bytes()).await
    }

    /// Send raw bytes (a pre-serialized message).
    pub async fn send_raw(
        &self,
        kind: TransportKind,
        dest: SocketAddr,
        bytes: Vec<u8>,
    ) -> io::Result<()> {
        if kind == TransportKind::Udp {
            let udp = lock(&self.inner.udp).clone();
            let udp = udp.ok_or_else(|| {
                io::Error::new(io::ErrorKind::NotConnected, "transport shut down")
            })?;
            udp.send_to(&bytes, dest).await?;
            return Ok(());
        }
        let existing = lock(&self.inner.conns).get(&(kind, dest)).cloned();
        let tx = match existing {
            Some(tx) if !tx.is_closed() => tx,
            _ => tokio::time::timeout(CONNECT_TIMEOUT, self.connect(kind, dest))
                .await
                .map_err(|_| {
                    io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("{} connection timed out", kind.as_str()),
                    )
                })??,
        };
        tx.send(Outgoing::Bytes(bytes))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "connection closed"))
    }

    /// Open a connection of `kind` to `dest`, with its handshakes.
    async fn connect(
        &self,
        kind: TransportKind,
        dest: SocketAddr,
    ) -> io::Result<mpsc::UnboundedSender<Outgoing>> {
        let stream = TcpStream::connect(dest).await?;
        let _ = stream.set_nodelay(true);
        let tls = || {
            lock(&self.inner.tls_client).clone().ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::Unsupported,
                    "no TLS client configured for this transport",
                )
            })
        };
        Ok(match kind {
            TransportKind::Udp | TransportKind::Tcp => {
                self.adopt_stream(stream, TransportKind::Tcp, dest, None)
            }
            TransportKind::Tls => {
                let s = tls()?.connect(stream).await?;
                self.adopt_stream(s, kind, dest, None)
            }
            TransportKind::Ws => {
                let ws = connect_websocket(stream, &format!("ws://{dest}/")).await?;
                self.adopt_websocket(ws, kind, dest, None)
            }
            TransportKind::Wss => {
                let client = tls()?;
                let host = client.server_name();
                let s = client.connect(stream).await?;
                let ws = connect_websocket(s, &format!("wss://{host}:{}/", dest.port())).await?;
                self.adopt_websocket(ws, kind, dest, None)
            }
        })
    }

    /// Register a connected byte stream (TCP or TLS): a writer task fed by a channel and a
    /// framing reader task. An accepted stream (`slot`) is held to the [`StreamLimits`]:
    /// closed when idle too long or when a message takes too long to arrive.
    fn adopt_stream<S>(
        &self,
        stream: S,
        kind: TransportKind,
        peer: SocketAddr,
        slot: Option<AcceptedSlot>,
    ) -> mpsc::UnboundedSender<Outgoing>
    where
        S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let (tx, mut rx) = mpsc::unbounded_channel::<Outgoing>();
        lock(&self.inner.conns).insert((kind, peer), tx.clone());
        let (mut rd, mut wr) = tokio::io::split(stream);
        let w = tokio::spawn(async move {
            while let Some(out) = rx.recv().await {
                let bytes: &[u8] = match &out {
                    Outgoing::Bytes(b) => b,
                    Outgoing::Ping => b"\r\n\r\n",
                };
                if wr.write_all(bytes).await.is_err() || wr.flush().await.is_err() {
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
                                tracing::debug!(%peer, partial = started.is_some(), "connection timed out");
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
                        inner.report_pong(peer);
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
                                let _ = pong.send(Outgoing::Bytes(b"\r\n".to_vec()));
                            }
                        }
                        StreamFrame::Message(len) => {
                            let event = parsed(&buf[..len], peer, kind);
                            buf.drain(..len);
                            started = None;
                            let _ = inner.events.send(event);
                        }
                        StreamFrame::Invalid(error) => {
                            let _ = inner.events.send(TransportEvent::Malformed {
                                source: peer,
                                transport: kind,
                                error,
                                reply: None,
                            });
                            break 'read;
                        }
                    }
                }
            }
            if let Some(inner) = weak.upgrade() {
                inner.closed((kind, peer), &pong);
            }
        });
        self.inner.track(w.abort_handle());
        self.inner.track(r.abort_handle());
        tx
    }

    /// Register a WebSocket (RFC 7118): each SIP message is one WebSocket message, sent as
    /// text; keep-alives are ping frames. Accepted ones (`slot`) are held to the
    /// [`StreamLimits`] idle timeout.
    fn adopt_websocket<S>(
        &self,
        ws: tokio_tungstenite::WebSocketStream<S>,
        kind: TransportKind,
        peer: SocketAddr,
        slot: Option<AcceptedSlot>,
    ) -> mpsc::UnboundedSender<Outgoing>
    where
        S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let (tx, mut rx) = mpsc::unbounded_channel::<Outgoing>();
        lock(&self.inner.conns).insert((kind, peer), tx.clone());
        let (mut sink, mut stream) = ws.split();
        let w = tokio::spawn(async move {
            while let Some(out) = rx.recv().await {
                let frame = match out {
                    Outgoing::Bytes(b) => match String::from_utf8(b) {
                        Ok(text) => WsMessage::text(text),
                        Err(e) => WsMessage::binary(e.into_bytes()),
                    },
                    Outgoing::Ping => WsMessage::Ping(Vec::new().into()),
                };
                if sink.send(frame).await.is_err() {
                    break;
                }
            }
            let _ = sink.close().await;
        });
        let weak = Arc::downgrade(&self.inner);
        let own = tx.clone();
        let idle = slot.as_ref().map(|_| self.inner.limits.idle_timeout);
        let r = tokio::spawn(async move {
            let _slot = slot;
            loop {
                let next = match idle {
                    None => stream.next().await,
                    Some(idle) => match tokio::time::timeout(idle, stream.next()).await {
                        Ok(next) => next,
                        Err(_) => {
                            tracing::debug!(%peer, "WebSocket timed out");
                            break;
                        }
                    },
                };
                let Some(Ok(frame)) = next else { break };
                let Some(inner) = weak.upgrade() else { break };
                let data: &[u8] = match &frame {
                    WsMessage::Text(t) => t.as_bytes(),
                    WsMessage::Binary(b) => b,
                    WsMessage::Pong(_) => {
                        inner.report_pong(peer);
                        continue;
                    }
                    // Pings are answered by the WebSocket layer itself.
                    WsMessage::Ping(_) | WsMessage::Frame(_) => continue,
                    WsMessage::Close(_) => break,
                };
                if data.iter().all(|b| *b == b'\r' || *b == b'\n') {
                    continue;
                }
                let _ = inner.events.send(parsed(data, peer, kind));
            }
            if let Some(inner) = weak.upgrade() {
                inner.closed((kind, peer), &own);
            }
        });
        self.inner.track(w.abort_handle());
        self.inner.track(r.abort_handle());
        tx
    }
}

/// The event for one whole message's bytes.
fn parsed(data: &[u8], source: SocketAddr, transport: TransportKind) -> TransportEvent {
    match Message::parse(data) {
        Ok(message) => TransportEvent::Message {
            message,
            source,
            transport,
        },
        Err(e) => TransportEvent::Malformed {
            source,
            transport,
            reply: Message::reply_to_unparsable(data, &e.0).map(Box::new),
            error: e.0,
        },
    }
}

fn ws_error(e: tungstenite::Error) -> io::Error {
    match e {
        tungstenite::Error::Io(e) => e,
        other => io::Error::new(io::ErrorKind::InvalidData, other),
    }
}

/// The WebSocket opening handshake as a client, asking for the `sip` subprotocol, which the
/// server must grant (RFC 7118 §4.1).
async fn connect_websocket<S>(
    stream: S,
    url: &str,
) -> io::Result<tokio_tungstenite::WebSocketStream<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    use tungstenite::client::IntoClientRequest;
    let mut request = url.into_client_request().map_err(ws_error)?;
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        tungstenite::http::HeaderValue::from_static(WS_PROTOCOL),
    );
    let (ws, response) = tokio_tungstenite::client_async(request, stream)
        .await
        .map_err(ws_error)?;
    let granted = response
        .headers()
        .get("Sec-WebSocket-Protocol")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case(WS_PROTOCOL));
    if !granted {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "the WebSocket server did not agree to carry SIP (no `sip` subprotocol)",
        ));
    }
    Ok(ws)
}

/// The WebSocket opening handshake as a server: only clients that ask for `sip` are taken.
async fn accept_websocket<S>(stream: S) -> io::Result<tokio_tungstenite::WebSocketStream<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    #[allow(clippy::result_large_err)] // the callback's signature is tungstenite's
    fn pick_sip(
        request: &ws_server::Request,
        mut response: ws_server::Response,
    ) -> Result<ws_server::Response, ws_server::ErrorResponse> {
        let asks_sip = request
            .headers()
            .get_all("Sec-WebSocket-Protocol")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|p| p.trim().eq_ignore_ascii_case(WS_PROTOCOL));
        if !asks_sip {
            let mut refusal = ws_server::ErrorResponse::new(Some(
                "SIP over WebSocket needs the `sip` subprotocol (RFC 7118)".into(),
            ));
            *refusal.status_mut() = tungstenite::http::StatusCode::BAD_REQUEST;
            return Err(refusal);
        }
        response.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            tungstenite::http::HeaderValue::from_static(WS_PROTOCOL),
        );
        Ok(response)
    }
    tokio_tungstenite::accept_hdr_async(stream, pick_sip)
        .await
        .map_err(ws_error)
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
        let event = parsed(data, source, TransportKind::Udp);
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
        let udp = lock(&t.inner.udp).clone().expect("bound");
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
            if round == 0 {
                // The first ping opens the connection.
                client
                    .send_raw(TransportKind::Tcp, to, b"\r\n\r\n".to_vec())
                    .await
                    .expect("the connection opens");
            } else {
                client
                    .ping(TransportKind::Tcp, to)
                    .expect("the ping goes out on the open connection");
            }
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
