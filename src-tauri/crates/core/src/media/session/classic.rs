//! The classic profile's transport: RTP/AVP, or RTP/SAVP with SDES keys (RFC 4568), on a
//! pair of UDP sockets (RTP on an even port, RTCP on the next, or muxed, RFC 5761), with
//! symmetric RTP (RFC 4961) and periodic RTCP reports, feeding the shared pipeline.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket as StdUdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::net::UdpSocket;
use tokio::sync::watch;
use webrtc::rtcp::receiver_report::ReceiverReport;
use webrtc::rtcp::sender_report::SenderReport;
use webrtc::rtp::packet::Packet;
use webrtc::srtp::context::Context as SrtpContext;
use webrtc::srtp::option::{srtcp_replay_protection, srtp_replay_protection};
use webrtc::util::{Marshal, Unmarshal};

use super::{lock, stopped, RtpReceiver, Shared};
use crate::media::profile::MediaProfile;
use crate::media::sdp::Direction;
use crate::media::sdp_classic::{
    answer_formats, read_remote, CryptoSuite, LocalMedia, RemoteMedia, SdesKey,
};
use crate::media::track::{choose_send, Binding, BoxFuture, RtpOut};
use crate::media::{Codec, MediaConfig, MediaError};

/// How often RTCP reports go out (RFC 3550 §6.2: about 5 s for a two-party call).
const RTCP_INTERVAL: Duration = Duration::from_secs(5);
/// The largest datagram we read.
const MAX_DATAGRAM: usize = 1500;
/// SRTP replay windows (RFC 3711 §3.3.2 asks for at least 64).
const REPLAY_WINDOW: usize = 128;
/// Attempts at finding a free even/odd port pair.
const PORT_ATTEMPTS: usize = 64;

/// The classic transport of one call.
pub(super) struct ClassicTransport {
    profile: MediaProfile,
    codecs: Vec<Codec>,
    ip: IpAddr,
    port: u16,
    session_id: u64,
    /// Our keys, one per offered suite (tags 1, 2, ...).
    keys: Vec<SdesKey>,
    path: Arc<Path>,
    state: Mutex<State>,
    binding: watch::Sender<Option<Arc<Binding>>>,
}

/// Where we are in offer/answer.
struct State {
    /// The `o=` version of our last SDP.
    version: u64,
    /// Our stream's direction, as our next SDP starts from (sendonly while we hold).
    direction: Direction,
    /// Our offer awaiting an answer.
    outstanding: Option<String>,
}

/// What the socket tasks and the sender share: sockets, where the peer is, the keys.
struct Path {
    rtp: UdpSocket,
    rtcp: UdpSocket,
    shared: Arc<Shared>,
    remote: Mutex<Remote>,
    /// The path was reported up (first valid packet, or a peer that does not send).
    up: AtomicBool,
    sent_packets: AtomicU32,
    sent_octets: AtomicU32,
    last_rtp_time: AtomicU32,
    ssrc: u32,
}

/// The peer, as negotiated and as learnt from its packets.
#[derive(Default)]
struct Remote {
    rtp: Option<SocketAddr>,
    rtcp: Option<SocketAddr>,
    mux: bool,
    /// RTP (and muxed RTCP) go to where the peer's RTP comes from, once it comes.
    rtp_latched: bool,
    rtcp_latched: bool,
    /// Encryption towards the peer, and of what it sends (SDES).
    outbound: Option<SrtpContext>,
    inbound: Option<SrtpContext>,
    /// The keys those were made from, to rebuild only when a re-offer changes them.
    keys: Option<(SdesKey, SdesKey)>,
    /// SSRC of the peer's stream once seen (for our receiver reports).
    peer_ssrc: Option<u32>,
}

impl ClassicTransport {
    pub(super) async fn new(
        config: &MediaConfig,
        codecs: Vec<Codec>,
        shared: &Arc<Shared>,
    ) -> Result<Self, MediaError> {
        let (rtp, rtcp) = bind_pair(config.bind_ip)?;
        let port = rtp
            .local_addr()
            .map_err(|e| MediaError::Engine(format!("reading the RTP port: {e}")))?
            .port();
        let ip = advertised_ip(config.bind_ip);
        let keys = CryptoSuite::OFFERED
            .into_iter()
            .zip(1..)
            .map(|(suite, tag)| SdesKey::random(tag, suite))
            .collect();
        let path = Arc::new(Path {
            rtp,
            rtcp,
            shared: Arc::clone(shared),
            remote: Mutex::new(Remote::default()),
            up: AtomicBool::new(false),
            sent_packets: AtomicU32::new(0),
            sent_octets: AtomicU32::new(0),
            last_rtp_time: AtomicU32::new(0),
            ssrc: rand::random(),
        });
        tokio::spawn(receive_rtp(Arc::clone(&path)));
        tokio::spawn(receive_rtcp(Arc::clone(&path)));
        tokio::spawn(send_reports(Arc::clone(&path)));
        tracing::debug!(%ip, port, profile = %config.profile, "classic media bound");
        Ok(Self {
            profile: config.profile,
            codecs,
            ip,
            port,
            session_id: u64::from(rand::random::<u32>()),
            keys,
            path,
            state: Mutex::new(State {
                version: 0,
                direction: Direction::SendRecv,
                outstanding: None,
            }),
            binding: watch::Sender::new(None),
        })
    }

    pub(super) fn bindings(&self) -> watch::Receiver<Option<Arc<Binding>>> {
        self.binding.subscribe()
    }

    pub(super) fn binding(&self) -> Option<Arc<Binding>> {
        self.binding.borrow().clone()
    }

    pub(super) fn direction(&self) -> Direction {
        lock(&self.state).direction
    }

    pub(super) fn has_outstanding_offer(&self) -> bool {
        lock(&self.state).outstanding.is_some()
    }

    fn local(&self, version: u64) -> LocalMedia {
        let (codecs, events) = LocalMedia::offered_formats(&self.codecs);
        LocalMedia {
            session_id: self.session_id,
            version,
            ip: self.ip,
            port: self.port,
            profile: self.profile,
            codecs,
            events,
            direction: Direction::SendRecv,
            crypto: if self.profile == MediaProfile::Sdes {
                self.keys.clone()
            } else {
                Vec::new()
            },
            rtcp_mux: true,
        }
    }

    /// An offer (initial or re-offer) with our stream in `direction`.
    pub(super) fn offer(&self, direction: Direction) -> Result<String, MediaError> {
        let mut state = lock(&self.state);
        if state.outstanding.is_some() {
            return Err(MediaError::InvalidState(
                "an offer is already outstanding".into(),
            ));
        }
        state.version += 1;
        let offer = LocalMedia {
            direction,
            ..self.local(state.version)
        }
        .offer();
        state.direction = direction;
        state.outstanding = Some(offer.clone());
        Ok(offer)
    }

    /// Answers a remote offer; returns our answer and the stream of the offer we took.
    pub(super) fn answer(&self, remote_sdp: &str) -> Result<(String, String), MediaError> {
        let mut state = lock(&self.state);
        if state.outstanding.is_some() {
            return Err(MediaError::InvalidState(
                "an offer of ours is outstanding (glare)".into(),
            ));
        }
        let remote = read_remote(remote_sdp, &[self.profile], &self.codecs)
            .map_err(MediaError::Incompatible)?;
        let (codecs, events) = answer_formats(&remote.codecs, &self.codecs);
        let ours = state.direction;
        let theirs = remote.direction.reverse();
        let direction = intersect(ours, theirs);
        let (crypto, keys) = match self.profile {
            MediaProfile::Sdes => {
                // Their first key in a suite we have (its order is its preference), answered
                // under its tag with our key for that suite (RFC 4568 §7.1.2).
                let theirs = remote.crypto.first().cloned().ok_or_else(|| {
                    MediaError::Incompatible("the offer has no usable SRTP key".into())
                })?;
                let ours = self
                    .key_for(theirs.suite)
                    .retagged(theirs.tag, theirs.suite);
                (vec![ours.clone()], Some((ours, theirs)))
            }
            _ => (Vec::new(), None),
        };
        state.version += 1;
        let answer = LocalMedia {
            codecs,
            events,
            direction,
            crypto,
            rtcp_mux: remote.rtcp_mux,
            ..self.local(state.version)
        }
        .answer(remote_sdp, remote.index);
        drop(state);
        self.apply_remote(&remote, keys)?;
        Ok((answer, remote.section_sdp))
    }

    /// Applies the answer to our outstanding offer; returns our offer and the answer's stream.
    pub(super) fn apply_answer(&self, remote_sdp: &str) -> Result<(String, String), MediaError> {
        let mut state = lock(&self.state);
        let Some(offer) = state.outstanding.clone() else {
            return Err(MediaError::InvalidState(
                "there is no outstanding offer to answer".into(),
            ));
        };
        let remote = read_remote(remote_sdp, &[self.profile], &self.codecs)
            .map_err(|e| MediaError::Incompatible(format!("the answer cannot be used: {e}")))?;
        if remote.index != 0 {
            return Err(MediaError::Incompatible(
                "the far end rejected the audio stream (port 0)".into(),
            ));
        }
        let keys = match self.profile {
            MediaProfile::Sdes => {
                let [theirs] = &remote.crypto[..] else {
                    return Err(MediaError::Incompatible(
                        "an SRTP answer must carry exactly one usable key".into(),
                    ));
                };
                let ours = self
                    .keys
                    .iter()
                    .find(|k| k.tag == theirs.tag && k.suite == theirs.suite)
                    .cloned()
                    .ok_or_else(|| {
                        MediaError::Incompatible(format!(
                            "the answer's key (tag {}) answers none of ours",
                            theirs.tag
                        ))
                    })?;
                Some((ours, theirs.clone()))
            }
            _ => None,
        };
        self.apply_remote(&remote, keys)?;
        state.outstanding = None;
        Ok((offer, remote.section_sdp))
    }

    /// Withdraws our outstanding offer, back to `direction`.
    pub(super) fn rollback(&self, direction: Direction) -> Result<(), MediaError> {
        let mut state = lock(&self.state);
        if state.outstanding.take().is_none() {
            return Err(MediaError::InvalidState(
                "there is no outstanding re-offer to roll back".into(),
            ));
        }
        state.direction = direction;
        Ok(())
    }

    fn key_for(&self, suite: CryptoSuite) -> &SdesKey {
        self.keys
            .iter()
            .find(|k| k.suite == suite)
            .unwrap_or(&self.keys[0])
    }

    /// Points the path at the peer: addresses, RTCP mux, keys; binds the sender on the first
    /// negotiation.
    fn apply_remote(
        &self,
        remote: &RemoteMedia,
        keys: Option<(SdesKey, SdesKey)>,
    ) -> Result<(), MediaError> {
        let (audio, telephone_event) = choose_send(&remote.codecs, &self.codecs)
            .ok_or_else(|| MediaError::Incompatible("no common audio codec".into()))?;
        {
            let mut path = lock(&self.path.remote);
            if path.rtp != remote.rtp {
                path.rtp_latched = false;
                path.rtcp_latched = false;
            }
            path.rtp = remote.rtp;
            path.rtcp = remote.rtcp;
            path.mux = remote.rtcp_mux;
            if path.keys != keys {
                match &keys {
                    Some((ours, theirs)) => {
                        path.outbound = Some(srtp_context(ours, false)?);
                        path.inbound = Some(srtp_context(theirs, true)?);
                    }
                    None => {
                        path.outbound = None;
                        path.inbound = None;
                    }
                }
                path.keys = keys;
            }
        }
        if self.binding.borrow().is_none() {
            let binding = Binding::new(
                self.path.ssrc,
                Arc::new(ClassicOut(Arc::clone(&self.path))),
                audio,
                telephone_event,
            );
            tracing::debug!(?binding, rtp = ?remote.rtp, "classic media negotiated");
            self.binding.send_replace(Some(Arc::new(binding)));
        }
        if !remote.direction.sends() {
            // Nothing will come from this peer: the path is as up as it gets.
            self.path.mark_up();
        }
        Ok(())
    }
}

fn srtp_context(key: &SdesKey, inbound: bool) -> Result<SrtpContext, MediaError> {
    let (rtp, rtcp) = if inbound {
        (
            Some(srtp_replay_protection(REPLAY_WINDOW)),
            Some(srtcp_replay_protection(REPLAY_WINDOW)),
        )
    } else {
        (None, None)
    };
    SrtpContext::new(key.key(), key.salt(), key.suite.profile(), rtp, rtcp)
        .map_err(|e| MediaError::Engine(format!("setting up SRTP: {e}")))
}

/// The directions both sides allow: we send only if we want to and they receive, and so on.
fn intersect(ours: Direction, theirs: Direction) -> Direction {
    match (
        ours.sends() && theirs.sends(),
        ours.receives() && theirs.receives(),
    ) {
        (true, true) => Direction::SendRecv,
        (true, false) => Direction::SendOnly,
        (false, true) => Direction::RecvOnly,
        (false, false) => Direction::Inactive,
    }
}

/// An even RTP port and the odd port after it (RFC 3550 §11), on `ip`.
fn bind_pair(ip: IpAddr) -> Result<(UdpSocket, UdpSocket), MediaError> {
    let mut last = None;
    for _ in 0..PORT_ATTEMPTS {
        // Let the system pick a free port, then ask for its neighbour.
        let probe = match StdUdpSocket::bind(SocketAddr::new(ip, 0)) {
            Ok(s) => s,
            Err(e) => {
                last = Some(e);
                continue;
            }
        };
        let Ok(port) = probe.local_addr().map(|a| a.port()) else {
            continue;
        };
        let (rtp, rtcp) = if port % 2 == 0 {
            let Ok(rtcp) = StdUdpSocket::bind(SocketAddr::new(ip, port.wrapping_add(1))) else {
                continue;
            };
            (probe, rtcp)
        } else {
            let Ok(rtp) = StdUdpSocket::bind(SocketAddr::new(ip, port.wrapping_sub(1))) else {
                continue;
            };
            (rtp, probe)
        };
        if rtp.local_addr().map(|a| a.port()).unwrap_or(1) == 0 {
            continue;
        }
        let tokio = |s: StdUdpSocket| {
            s.set_nonblocking(true)?;
            UdpSocket::from_std(s)
        };
        return match (tokio(rtp), tokio(rtcp)) {
            (Ok(rtp), Ok(rtcp)) => Ok((rtp, rtcp)),
            (Err(e), _) | (_, Err(e)) => Err(MediaError::Engine(format!("RTP socket: {e}"))),
        };
    }
    Err(MediaError::Engine(format!(
        "no free RTP port pair on {ip}{}",
        last.map(|e| format!(": {e}")).unwrap_or_default()
    )))
}

/// The address to write into `c=`: the bound one, or for a wildcard bind the one the system
/// would send from (no packet is sent: connecting a UDP socket only picks a route).
fn advertised_ip(bind_ip: IpAddr) -> IpAddr {
    if !bind_ip.is_unspecified() {
        return bind_ip;
    }
    let (any, probe): (SocketAddr, SocketAddr) = if bind_ip.is_ipv4() {
        (
            (Ipv4Addr::UNSPECIFIED, 0).into(),
            (Ipv4Addr::new(192, 0, 2, 1), 9).into(),
        )
    } else {
        (
            (Ipv6Addr::UNSPECIFIED, 0).into(),
            (
                "2001:db8::1"
                    .parse::<Ipv6Addr>()
                    .unwrap_or(Ipv6Addr::LOCALHOST),
                9,
            )
                .into(),
        )
    };
    StdUdpSocket::bind(any)
        .and_then(|s| {
            s.connect(probe)?;
            s.local_addr()
        })
        .map(|a| a.ip())
        .unwrap_or(if bind_ip.is_ipv4() {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        } else {
            IpAddr::V6(Ipv6Addr::LOCALHOST)
        })
}

/// RTCP and RTP share a port under RFC 5761: RTCP's packet types 200-223 land where RTP's
/// marker bit and payload types 72-95 would be, which RTP does not use.
fn is_rtcp(datagram: &[u8]) -> bool {
    datagram.len() >= 8 && (192..=223).contains(&datagram[1])
}

impl Path {
    fn mark_up(&self) {
        if !self.up.swap(true, Ordering::SeqCst) {
            self.shared.path_up();
        }
    }

    /// Decrypts (SDES) and parses one RTP datagram from `from`, and latches onto its
    /// source: `None` if it is not a packet of our peer's.
    fn open_rtp(&self, from: SocketAddr, datagram: &[u8]) -> Option<Packet> {
        let mut remote = lock(&self.remote);
        let plain = match remote.inbound.as_mut() {
            Some(ctx) => match ctx.decrypt_rtp(datagram) {
                Ok(p) => p,
                Err(e) => {
                    tracing::trace!(error = %e, %from, "dropping an SRTP packet that fails authentication");
                    return None;
                }
            },
            None => Bytes::copy_from_slice(datagram),
        };
        let packet = Packet::unmarshal(&mut plain.clone()).ok()?;
        if packet.header.version != 2 {
            return None;
        }
        let authenticated = remote.inbound.is_some();
        match remote.rtp {
            // Symmetric RTP: answer to where the peer really is. Without SRTP only the first
            // source after a negotiation is believed, so that nobody else can take the
            // stream over; with SRTP any authenticated packet proves the peer.
            Some(dest) if dest != from && (authenticated || !remote.rtp_latched) => {
                tracing::debug!(signalled = %dest, actual = %from, "latching RTP onto the peer's source");
                remote.rtp = Some(from);
                remote.rtp_latched = true;
            }
            Some(dest) if dest == from => remote.rtp_latched = true,
            Some(_) => return None, // plain RTP from a stranger
            None => return None,    // the peer holds old-style: nothing is expected
        }
        remote.peer_ssrc = Some(packet.header.ssrc);
        Some(packet)
    }

    /// Checks one RTCP datagram from `from` (decrypting it under SDES) and latches RTCP.
    fn open_rtcp(&self, from: SocketAddr, datagram: &[u8], muxed: bool) -> bool {
        let mut remote = lock(&self.remote);
        let authenticated = match remote.inbound.as_mut() {
            Some(ctx) => match ctx.decrypt_rtcp(datagram) {
                Ok(_) => true,
                Err(_) => return false,
            },
            None => false,
        };
        if !muxed && (authenticated || !remote.rtcp_latched) && remote.rtcp.is_some() {
            remote.rtcp = Some(from);
            remote.rtcp_latched = true;
        }
        true
    }

    /// Encrypts (SDES) and sends one RTP packet.
    async fn send_rtp(&self, packet: &Packet) -> Result<(), String> {
        let raw = packet.marshal().map_err(|e| e.to_string())?;
        let (datagram, dest) = {
            let mut remote = lock(&self.remote);
            let Some(dest) = remote.rtp else {
                return Ok(()); // the peer holds old-style: nowhere to send
            };
            let datagram = match remote.outbound.as_mut() {
                Some(ctx) => ctx.encrypt_rtp(&raw).map_err(|e| e.to_string())?,
                None => raw,
            };
            (datagram, dest)
        };
        self.rtp
            .send_to(&datagram, dest)
            .await
            .map_err(|e| e.to_string())?;
        self.sent_packets.fetch_add(1, Ordering::Relaxed);
        self.sent_octets
            .fetch_add(packet.payload.len() as u32, Ordering::Relaxed);
        self.last_rtp_time
            .store(packet.header.timestamp, Ordering::Relaxed);
        Ok(())
    }

    /// One RTCP report: a sender report once we have sent, else a receiver report.
    async fn send_report(&self) {
        let packets = self.sent_packets.load(Ordering::Relaxed);
        let raw = if packets > 0 {
            SenderReport {
                ssrc: self.ssrc,
                ntp_time: ntp_now(),
                rtp_time: self.last_rtp_time.load(Ordering::Relaxed),
                packet_count: packets,
                octet_count: self.sent_octets.load(Ordering::Relaxed),
                ..Default::default()
            }
            .marshal()
        } else {
            ReceiverReport {
                ssrc: self.ssrc,
                ..Default::default()
            }
            .marshal()
        };
        let Ok(raw) = raw else { return };
        let (datagram, dest, muxed) = {
            let mut remote = lock(&self.remote);
            let dest = if remote.mux { remote.rtp } else { remote.rtcp };
            let Some(dest) = dest else { return };
            let datagram = match remote.outbound.as_mut() {
                Some(ctx) => match ctx.encrypt_rtcp(&raw) {
                    Ok(d) => d,
                    Err(_) => return,
                },
                None => raw,
            };
            (datagram, dest, remote.mux)
        };
        let socket = if muxed { &self.rtp } else { &self.rtcp };
        if let Err(e) = socket.send_to(&datagram, dest).await {
            tracing::debug!(error = %e, "sending RTCP failed");
        }
    }
}

/// The time in NTP format (RFC 3550 §4): seconds since 1900 and a binary fraction.
fn ntp_now() -> u64 {
    const UNIX_TO_NTP: u64 = 2_208_988_800;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let seconds = now.as_secs() + UNIX_TO_NTP;
    let fraction = (u64::from(now.subsec_nanos()) << 32) / 1_000_000_000;
    (seconds << 32) | fraction
}

/// The pump's way out: our socket.
struct ClassicOut(Arc<Path>);

impl RtpOut for ClassicOut {
    fn send<'a>(&'a self, packet: &'a Packet) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(self.0.send_rtp(packet))
    }
}

/// Reads the RTP socket (and RTCP muxed onto it) into the shared receive side.
async fn receive_rtp(path: Arc<Path>) {
    let mut shutdown = path.shared.shutdown.subscribe();
    let mut receiver = RtpReceiver::new(Arc::clone(&path.shared));
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let (len, from) = tokio::select! {
            _ = stopped(&mut shutdown) => break,
            read = path.rtp.recv_from(&mut buf) => match read {
                Ok(read) => read,
                Err(e) => {
                    // ICMP port unreachable surfaces here on some systems: not fatal.
                    tracing::trace!(error = %e, "RTP socket read");
                    continue;
                }
            },
        };
        let datagram = &buf[..len];
        if is_rtcp(datagram) {
            if path.open_rtcp(from, datagram, true) {
                path.mark_up();
            }
            continue;
        }
        if let Some(packet) = path.open_rtp(from, datagram) {
            path.mark_up();
            receiver.on_packet(packet, std::time::Instant::now());
        }
    }
}

/// Reads the RTCP socket: reports prove the path and teach us where the peer's RTCP is.
async fn receive_rtcp(path: Arc<Path>) {
    let mut shutdown = path.shared.shutdown.subscribe();
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let (len, from) = tokio::select! {
            _ = stopped(&mut shutdown) => break,
            read = path.rtcp.recv_from(&mut buf) => match read {
                Ok(read) => read,
                Err(_) => continue,
            },
        };
        if is_rtcp(&buf[..len]) && path.open_rtcp(from, &buf[..len], false) {
            path.mark_up();
        }
    }
}

/// Sends an RTCP report every [`RTCP_INTERVAL`], the first one soon after negotiation.
async fn send_reports(path: Arc<Path>) {
    let mut shutdown = path.shared.shutdown.subscribe();
    let mut interval = tokio::time::interval_at(
        tokio::time::Instant::now() + Duration::from_secs(1),
        RTCP_INTERVAL,
    );
    loop {
        tokio::select! {
            _ = stopped(&mut shutdown) => break,
            _ = interval.tick() => path.send_report().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directions_intersect_as_rfc_3264_answers_them() {
        use Direction::*;
        assert_eq!(
            intersect(SendRecv, SendOnly.reverse()),
            RecvOnly,
            "held by the peer"
        );
        assert_eq!(intersect(SendOnly, SendRecv), SendOnly, "we hold");
        assert_eq!(
            intersect(SendOnly, SendOnly.reverse()),
            Inactive,
            "both hold"
        );
        assert_eq!(intersect(SendRecv, Inactive), Inactive);
    }

    #[test]
    fn rtcp_is_told_from_rtp_on_a_shared_port() {
        let sr = SenderReport::default().marshal().expect("marshal");
        assert!(is_rtcp(&sr));
        let rtp = Packet {
            header: webrtc::rtp::header::Header {
                version: 2,
                payload_type: 0,
                marker: true,
                ..Default::default()
            },
            payload: Bytes::from_static(&[0; 160]),
        }
        .marshal()
        .expect("marshal");
        assert!(!is_rtcp(&rtp), "PCMU with the marker bit is RTP");
    }

    #[tokio::test]
    async fn ports_come_in_even_odd_pairs() {
        let (rtp, rtcp) = bind_pair(IpAddr::V4(Ipv4Addr::LOCALHOST)).expect("a free pair");
        let (a, b) = (
            rtp.local_addr().expect("rtp").port(),
            rtcp.local_addr().expect("rtcp").port(),
        );
        assert_eq!(a % 2, 0, "RTP on an even port (RFC 3550 §11)");
        assert_eq!(b, a + 1, "RTCP on the next one");
    }
}
