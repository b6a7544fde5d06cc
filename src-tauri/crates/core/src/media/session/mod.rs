//! [`MediaSession`]: one call's audio, over the WebRTC profile's peer connection or the
//! classic profile's RTP sockets, through one pipeline.

mod classic;
mod webrtc_transport;

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{Instant, MissedTickBehavior};
use webrtc::rtp::header::Header;
use webrtc::rtp::packet::Packet;

use self::classic::ClassicTransport;
use self::webrtc_transport::WebRtcTransport;
use super::codec::{AudioDecoder, AudioEncoder};
use super::dtmf::{dtmf_event_code, DtmfPlayer, DtmfReceiver, DtmfTick};
use super::profile::MediaProfile;
use super::sdp::{
    audio_codecs, has_ice_and_dtls, normalize_remote, prepare_answer, prepare_offer, sdp_direction,
    Direction, OfferShape, Sdp,
};
use super::sdp_classic::read_remote;
use super::track::Binding;
use super::{Codec, MediaConfig, MediaError, MediaEvent};
use crate::audio::{
    AudioSink, AudioSource, JitterBuffer, JitterConfig, JitterStats, NullSink, Playout,
    PushOutcome, SilenceSource, FRAME_MS, FRAME_SAMPLES,
};

/// The pump's period: one frame.
const FRAME: Duration = Duration::from_millis(FRAME_MS as u64);
/// If the pump falls further behind than this (a stalled runtime, a suspended
/// process), it skips ahead instead of bursting out the backlog.
const MAX_LAG: Duration = Duration::from_millis(200);
/// At most this many missing packets are concealed; a longer gap is a pause
/// (hold, a restarted sender), not loss.
const MAX_CONCEAL: u32 = 5;

/// One call's audio stream: a transport ([`MediaProfile`]) feeding one pipeline (send
/// pump, jitter buffer and playout, DTMF, hold, devices).
///
/// `MediaSession` is a cheap handle: clones share the same session (it wraps an
/// `Arc`). The session stops when [`close`](MediaSession::close) is called or
/// when the last handle is dropped. All methods take `&self`; SDP operations are
/// serialised internally.
///
/// Errors never panic: bad or unsupported SDP, misuse and closed sessions all
/// come back as [`MediaError`]s.
#[derive(Clone)]
pub struct MediaSession {
    inner: Arc<Inner>,
}

struct Inner {
    transport: Transport,
    profile: MediaProfile,
    shared: Arc<Shared>,
    /// Serialises offer/answer operations.
    sdp_lock: tokio::sync::Mutex<()>,
    /// What to restore if our outstanding offer is rolled back.
    pending_offer: Mutex<Option<PendingOffer>>,
}

/// The two transports behind the one pipeline.
enum Transport {
    WebRtc(WebRtcTransport),
    Classic(ClassicTransport),
}

impl Transport {
    fn bindings(&self) -> watch::Receiver<Option<Arc<Binding>>> {
        match self {
            Transport::WebRtc(t) => t.bindings(),
            Transport::Classic(t) => t.bindings(),
        }
    }

    fn binding(&self) -> Option<Arc<Binding>> {
        match self {
            Transport::WebRtc(t) => t.binding(),
            Transport::Classic(t) => t.binding(),
        }
    }

    fn direction(&self) -> Direction {
        match self {
            Transport::WebRtc(t) => t.direction(),
            Transport::Classic(t) => t.direction(),
        }
    }

    fn has_outstanding_offer(&self) -> bool {
        match self {
            Transport::WebRtc(t) => t.has_outstanding_offer(),
            Transport::Classic(t) => t.has_outstanding_offer(),
        }
    }

    async fn offer(&self, direction: Direction) -> Result<String, MediaError> {
        match self {
            Transport::WebRtc(t) => t.offer(direction).await,
            Transport::Classic(t) => t.offer(direction),
        }
    }

    async fn answer(&self, remote: &str) -> Result<(String, String), MediaError> {
        match self {
            Transport::WebRtc(t) => t.answer(remote).await,
            Transport::Classic(t) => t.answer(remote),
        }
    }

    async fn apply_answer(&self, remote: &str) -> Result<(String, String), MediaError> {
        match self {
            Transport::WebRtc(t) => t.apply_answer(remote).await,
            Transport::Classic(t) => t.apply_answer(remote),
        }
    }

    async fn rollback(&self, direction: Direction) -> Result<(), MediaError> {
        match self {
            Transport::WebRtc(t) => t.rollback(direction).await,
            Transport::Classic(t) => t.rollback(direction),
        }
    }

    async fn close(&self) {
        if let Transport::WebRtc(t) = self {
            t.close().await;
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct PendingOffer {
    direction: Direction,
    flow: Flow,
}

/// State shared by the handle, the pump and the receiver.
struct Shared {
    devices: Mutex<Devices>,
    flow: Mutex<Flow>,
    events: mpsc::UnboundedSender<MediaEvent>,
    dtmf: mpsc::UnboundedSender<DtmfRequest>,
    shutdown: watch::Sender<bool>,
    first_audio: AtomicBool,
    /// What each incoming payload type carries, from the negotiated SDPs.
    rx_formats: Mutex<HashMap<u8, RxFormat>>,
    /// Received audio waiting for its playout time.
    jitter: Mutex<JitterBuffer<RxPacket>>,
    /// Wakes the playout task when a talkspurt starts, to align its phase.
    playout_wake: tokio::sync::Notify,
    /// Wakes the send pump when the media path is up: frames sent before that are lost, so
    /// the pump re-phases to send its first frame at once instead of up to 20 ms later.
    connected_wake: tokio::sync::Notify,
}

/// One received audio packet, as the jitter buffer keeps it.
#[derive(Debug, Clone)]
struct RxPacket {
    codec: Codec,
    payload: Bytes,
}

/// What an incoming RTP payload type carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RxFormat {
    Audio(Codec),
    TelephoneEvent,
}

/// The payload-type map for incoming RTP. RFC 3264 has the remote send with the
/// numbers of *our* SDP, so ours win; the remote's fill any gaps (the WebRTC
/// engine sends with the remote's numbers, which it keeps equal to the offer's).
///
/// (The engine's own `TrackRemote::codec()` cannot be used: it never resolves
/// payload type 0, PCMU, because 0 is also its "unset" value.)
fn rx_format_map(local_sdp: &str, remote_sdp: &str) -> HashMap<u8, RxFormat> {
    let mut map = HashMap::new();
    for sdp in [remote_sdp, local_sdp] {
        for c in audio_codecs(sdp) {
            let format = if c.name.eq_ignore_ascii_case("telephone-event") {
                Some(RxFormat::TelephoneEvent)
            } else {
                Codec::from_sdp(&c.name, c.clock_rate).map(RxFormat::Audio)
            };
            if let Some(format) = format {
                map.insert(c.payload_type, format);
            }
        }
    }
    map
}

struct Devices {
    source: Box<dyn AudioSource>,
    sink: Box<dyn AudioSink>,
    source_failed: bool,
    sink_failed: bool,
}

/// Who may send and play, from the negotiated directions and local choices.
#[derive(Debug, Clone, Copy)]
struct Flow {
    /// Our direction in the last SDP we produced.
    local: Direction,
    /// The remote's direction in the last SDP it sent.
    remote: Direction,
    /// At least one offer/answer exchange completed.
    negotiated: bool,
    /// We put the call on hold (our re-offer was sendonly or inactive).
    holding: bool,
    muted: bool,
}

impl Flow {
    /// RTP may be sent: our direction sends and the remote's receives.
    fn can_send(&self) -> bool {
        self.negotiated && self.local.sends() && self.remote.receives()
    }

    /// The microphone goes out (otherwise encoded silence is sent).
    fn transmits_source(&self) -> bool {
        self.can_send() && !self.holding && !self.muted
    }

    /// Received audio is played.
    fn can_play(&self) -> bool {
        self.local.receives() && !self.holding
    }
}

struct DtmfRequest {
    events: Vec<u8>,
    clock_rate: u32,
    done: oneshot::Sender<()>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned lock only means a panic elsewhere; the data is still consistent
    // for our purposes (plain values and devices).
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl MediaSession {
    /// Creates a session with its devices. Nothing is sent until an offer/answer
    /// exchange completes. Returns the session and its event channel.
    pub async fn new(
        config: MediaConfig,
        source: Box<dyn AudioSource>,
        sink: Box<dyn AudioSink>,
    ) -> Result<(Self, mpsc::UnboundedReceiver<MediaEvent>), MediaError> {
        let mut codecs: Vec<Codec> = Vec::new();
        for codec in &config.codecs {
            if !codecs.contains(codec) {
                codecs.push(*codec);
            }
        }
        if codecs.is_empty() {
            return Err(MediaError::InvalidConfig(
                "at least one audio codec is needed".into(),
            ));
        }
        if config.relay_only && config.profile != MediaProfile::WebRtc {
            // Plain and SDES RTP have no ICE: they would send our own address.
            return Err(MediaError::Incompatible(format!(
                "relay-only media needs ICE, which {:?} does not have",
                config.profile
            )));
        }

        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let (dtmf_tx, dtmf_rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            devices: Mutex::new(Devices {
                source,
                sink,
                source_failed: false,
                sink_failed: false,
            }),
            flow: Mutex::new(Flow {
                local: Direction::SendRecv,
                remote: Direction::SendRecv,
                negotiated: false,
                holding: false,
                muted: false,
            }),
            events: events_tx,
            dtmf: dtmf_tx,
            shutdown: watch::Sender::new(false),
            first_audio: AtomicBool::new(false),
            rx_formats: Mutex::new(HashMap::new()),
            jitter: Mutex::new(JitterBuffer::new(JitterConfig {
                max_conceal: MAX_CONCEAL,
                ..JitterConfig::default()
            })),
            playout_wake: tokio::sync::Notify::new(),
            connected_wake: tokio::sync::Notify::new(),
        });

        let transport = match config.profile {
            MediaProfile::WebRtc => {
                Transport::WebRtc(WebRtcTransport::new(&config, codecs, &shared).await?)
            }
            MediaProfile::Sdes | MediaProfile::Rtp => {
                Transport::Classic(ClassicTransport::new(&config, codecs, &shared).await?)
            }
        };
        // A transport that failed above has started nothing of the pipeline; from here on
        // the tasks end with the session's shutdown signal.
        tokio::spawn(run_pump(Arc::clone(&shared), transport.bindings(), dtmf_rx));
        tokio::spawn(run_playout(Arc::clone(&shared)));

        let session = MediaSession {
            inner: Arc::new(Inner {
                transport,
                profile: config.profile,
                shared,
                sdp_lock: tokio::sync::Mutex::new(()),
                pending_offer: Mutex::new(None),
            }),
        };
        Ok((session, events_rx))
    }

    /// The media profile of this session.
    pub fn profile(&self) -> MediaProfile {
        self.inner.profile
    }

    /// Creates the initial offer: a complete SDP (for the WebRTC profile with all candidates
    /// gathered) for an INVITE body or a 200 OK to an offerless INVITE.
    pub async fn create_offer(&self) -> Result<String, MediaError> {
        let _sdp = self.inner.sdp_lock.lock().await;
        self.ensure_open()?;
        let previous = self.pending_snapshot();
        let sdp = self.inner.transport.offer(Direction::SendRecv).await?;
        let mut flow = self.inner.shared.flow();
        flow.local = sdp_direction(&sdp);
        self.inner.shared.set_flow(flow);
        *lock(&self.inner.pending_offer) = Some(previous);
        Ok(sdp)
    }

    /// Answers a remote offer (initial or a re-offer in an established session)
    /// and returns the complete answer SDP.
    ///
    /// The answer's direction follows RFC 3264: a `sendonly` offer (we are put on
    /// hold) is answered `recvonly`, so we stop sending; `sendrecv` resumes.
    /// Fails with [`MediaError::Incompatible`] when there is no common codec or the
    /// offer needs another media profile than this session's, and
    /// [`MediaError::InvalidSdp`] for malformed SDP; the session is unchanged in both cases.
    pub async fn accept_offer(&self, remote_sdp: &str) -> Result<String, MediaError> {
        let _sdp = self.inner.sdp_lock.lock().await;
        self.ensure_open()?;
        if remote_sdp.trim().is_empty() {
            return Err(MediaError::InvalidSdp("the SDP is empty".into()));
        }
        let (local, remote) = self.inner.transport.answer(remote_sdp).await?;
        let mut flow = self.inner.shared.flow();
        flow.remote = sdp_direction(&remote);
        flow.local = sdp_direction(&local);
        flow.negotiated = true;
        self.inner.shared.set_flow(flow);
        *lock(&self.inner.shared.rx_formats) = rx_format_map(&local, &remote);
        tracing::debug!(local = %flow.local, remote = %flow.remote, "answered an offer");
        Ok(local)
    }

    /// Applies the remote answer to our outstanding offer.
    pub async fn accept_answer(&self, remote_sdp: &str) -> Result<(), MediaError> {
        let _sdp = self.inner.sdp_lock.lock().await;
        self.ensure_open()?;
        if !self.inner.transport.has_outstanding_offer() {
            return Err(MediaError::InvalidState(
                "there is no outstanding offer to answer".into(),
            ));
        }
        if remote_sdp.trim().is_empty() {
            return Err(MediaError::InvalidSdp("the SDP is empty".into()));
        }
        let (local, remote) = self.inner.transport.apply_answer(remote_sdp).await?;
        let mut flow = self.inner.shared.flow();
        flow.remote = sdp_direction(&remote);
        flow.negotiated = true;
        self.inner.shared.set_flow(flow);
        *lock(&self.inner.pending_offer) = None;
        *lock(&self.inner.shared.rx_formats) = rx_format_map(&local, &remote);
        tracing::debug!(local = %flow.local, remote = %flow.remote, "applied an answer");
        Ok(())
    }

    /// Creates a re-offer in an established session with our new direction:
    /// `SendOnly` (or `Inactive`) to put the call on hold, `SendRecv` to resume.
    ///
    /// Hold takes effect locally at once: from now on nothing received is played
    /// and the source is replaced by encoded silence (a held party hears nothing
    /// from us; the stream stays alive). The remote stops sending when it answers
    /// `recvonly`/`inactive`. Resuming likewise restores our side at once and the
    /// remote's when it answers `sendrecv`. If the re-offer is rejected, call
    /// [`rollback_offer`](MediaSession::rollback_offer).
    pub async fn create_reoffer(&self, direction: Direction) -> Result<String, MediaError> {
        let _sdp = self.inner.sdp_lock.lock().await;
        self.ensure_open()?;
        if !self.inner.shared.flow().negotiated {
            return Err(MediaError::InvalidState(
                "a re-offer needs an established session".into(),
            ));
        }
        let previous = self.pending_snapshot();
        let sdp = self.inner.transport.offer(direction).await?;
        let mut flow = self.inner.shared.flow();
        flow.local = sdp_direction(&sdp);
        flow.holding = matches!(direction, Direction::SendOnly | Direction::Inactive);
        self.inner.shared.set_flow(flow);
        *lock(&self.inner.pending_offer) = Some(previous);
        tracing::debug!(%direction, "created a re-offer");
        Ok(sdp)
    }

    /// Withdraws our outstanding re-offer (for example after a 488 or 491 to a
    /// re-INVITE): the session returns to the last negotiated state, including
    /// the hold state and direction it had before the offer.
    /// An initial offer cannot be rolled back (there is nothing to return to):
    /// close the session instead.
    pub async fn rollback_offer(&self) -> Result<(), MediaError> {
        let _sdp = self.inner.sdp_lock.lock().await;
        self.ensure_open()?;
        let pending = *lock(&self.inner.pending_offer);
        let (Some(pending), true) = (pending, pending.is_some_and(|p| p.flow.negotiated)) else {
            return Err(MediaError::InvalidState(
                "there is no outstanding re-offer to roll back".into(),
            ));
        };
        self.inner.transport.rollback(pending.direction).await?;
        *lock(&self.inner.pending_offer) = None;
        self.inner.shared.set_flow(pending.flow);
        tracing::debug!("rolled back a re-offer");
        Ok(())
    }

    /// Our direction in the last SDP we produced (offer or answer).
    pub fn local_direction(&self) -> Direction {
        self.inner.shared.flow().local
    }

    /// The remote's direction in the last SDP it sent.
    pub fn remote_direction(&self) -> Direction {
        self.inner.shared.flow().remote
    }

    /// Whether we put the call on hold with [`create_reoffer`](Self::create_reoffer).
    pub fn is_holding(&self) -> bool {
        self.inner.shared.flow().holding
    }

    /// The audio codec we send with, once negotiated.
    pub fn negotiated_codec(&self) -> Option<Codec> {
        self.inner.transport.binding().map(|b| b.audio.codec)
    }

    /// Mutes or unmutes the source. While muted, encoded silence is sent in its
    /// place (the stream, its timing and DTMF keep working).
    pub fn set_muted(&self, muted: bool) {
        let mut flow = self.inner.shared.flow();
        flow.muted = muted;
        self.inner.shared.set_flow(flow);
    }

    /// The receive jitter buffer's counters and current target delay.
    pub fn jitter_stats(&self) -> JitterStats {
        lock(&self.inner.shared.jitter).stats()
    }

    /// Whether the source is muted.
    pub fn is_muted(&self) -> bool {
        self.inner.shared.flow().muted
    }

    /// Sends DTMF digits (`0`-`9`, `*`, `#`, `A`-`D`; whitespace is ignored) as
    /// RFC 4733 telephone events: 100 ms per digit, then about 100 ms of gap.
    /// Returns when the last digit's end packets are sent.
    ///
    /// Fails without sending anything on an invalid digit, when the session is
    /// not negotiated or may not send (held), or when the remote did not
    /// negotiate `telephone-event`.
    pub async fn send_dtmf(&self, digits: &str) -> Result<(), MediaError> {
        self.ensure_open()?;
        let events = digits
            .chars()
            .filter(|c| !c.is_whitespace())
            .map(|c| dtmf_event_code(c).ok_or(MediaError::InvalidDtmf(c)))
            .collect::<Result<Vec<u8>, _>>()?;
        if events.is_empty() {
            return Ok(());
        }
        let binding = self
            .inner
            .transport
            .binding()
            .ok_or_else(|| MediaError::InvalidState("media is not negotiated yet".into()))?;
        let event_codec = binding.telephone_event.ok_or(MediaError::DtmfUnsupported)?;
        if !self.inner.shared.flow().can_send() {
            return Err(MediaError::InvalidState(
                "the negotiated direction does not allow sending (on hold?)".into(),
            ));
        }
        let (done, finished) = oneshot::channel();
        self.inner
            .shared
            .dtmf
            .send(DtmfRequest {
                events,
                clock_rate: event_codec.clock_rate,
                done,
            })
            .map_err(|_| MediaError::Closed)?;
        finished.await.map_err(|_| MediaError::Closed)
    }

    /// Replaces the source (microphone side); the old one is dropped.
    pub fn replace_source(&self, source: Box<dyn AudioSource>) {
        tracing::debug!(source = %source.describe(), "replacing the media source");
        let old = {
            let mut devices = lock(&self.inner.shared.devices);
            devices.source_failed = false;
            std::mem::replace(&mut devices.source, source)
        };
        drop(old);
    }

    /// Replaces the sink (speaker side); the old one is dropped, which finalises
    /// a WAV sink.
    pub fn replace_sink(&self, sink: Box<dyn AudioSink>) {
        tracing::debug!(sink = %sink.describe(), "replacing the media sink");
        let old = {
            let mut devices = lock(&self.inner.shared.devices);
            devices.sink_failed = false;
            std::mem::replace(&mut devices.sink, sink)
        };
        drop(old);
    }

    /// Stops the media: the tasks end, the peer connection closes, and the devices
    /// are released (dropped, which finalises a WAV sink). Idempotent; afterwards
    /// every operation fails with [`MediaError::Closed`].
    pub async fn close(&self) {
        if self.inner.shared.shutdown.send_replace(true) {
            return;
        }
        self.inner.transport.close().await;
        let (source, sink) = {
            let mut devices = lock(&self.inner.shared.devices);
            (
                std::mem::replace(&mut devices.source, Box::new(SilenceSource::new())),
                std::mem::replace(&mut devices.sink, Box::new(NullSink::new())),
            )
        };
        drop((source, sink));
    }

    /// Whether [`close`](Self::close) was called.
    pub fn is_closed(&self) -> bool {
        *self.inner.shared.shutdown.borrow()
    }

    fn ensure_open(&self) -> Result<(), MediaError> {
        if self.is_closed() {
            Err(MediaError::Closed)
        } else {
            Ok(())
        }
    }

    fn pending_snapshot(&self) -> PendingOffer {
        PendingOffer {
            direction: self.inner.transport.direction(),
            flow: self.inner.shared.flow(),
        }
    }

    /// Which media profile a remote offer needs, if `allowed` has it and a session with
    /// `codecs` can answer it; checked without touching any session, for refusing an
    /// incoming call (488) before the user is rung. Where an offer has several audio
    /// streams (SRTP and plain RTP, say), the first one that can be served wins, as RFC 3264
    /// has the offerer list its preference first. The error says why, in words.
    pub fn check_offer(
        sdp: &str,
        codecs: &[Codec],
        allowed: &[MediaProfile],
    ) -> Result<MediaProfile, MediaError> {
        if sdp.trim().is_empty() {
            return Err(MediaError::InvalidSdp("the SDP is empty".into()));
        }
        let classic: Vec<MediaProfile> =
            allowed.iter().copied().filter(|p| p.is_classic()).collect();
        let offered = Sdp::parse(sdp).audio_profiles();
        if offered.is_empty() {
            return Err(MediaError::Incompatible(
                "the SDP has no audio stream".into(),
            ));
        }
        let mut why = None;
        for profile in offered {
            if !allowed.contains(&profile) {
                why.get_or_insert(MediaError::Incompatible(format!(
                    "the caller offers {profile}, which this account's media settings do not allow"
                )));
                continue;
            }
            let result = if profile.is_classic() {
                read_remote(sdp, &classic, codecs)
                    .map(|remote| remote.profile)
                    .map_err(MediaError::Incompatible)
            } else {
                check_webrtc_sdp(sdp, Remote::Offer, "0", codecs).map(|_| MediaProfile::WebRtc)
            };
            match result {
                Ok(profile) => return Ok(profile),
                Err(e) => {
                    why.get_or_insert(e);
                }
            }
        }
        Err(why.unwrap_or_else(|| MediaError::Incompatible("no usable audio stream".into())))
    }
}

/// Checks a remote SDP for the WebRTC profile and prepares it for the engine: an offer is cut
/// to the audio stream we take, with a mid and BUNDLE the engine needs (its shape is
/// returned, to answer in it); an answer gets our offer's mids. Both get their ICE and DTLS
/// attributes where the engine reads them and hash names in lower case. Refused: empty SDP,
/// no audio, no ICE and DTLS-SRTP, no sha-256 fingerprint, no codec in common with `codecs`.
fn check_webrtc_sdp(
    sdp: &str,
    kind: Remote<'_>,
    fallback_mid: &str,
    codecs: &[Codec],
) -> Result<(String, Option<OfferShape>), MediaError> {
    if sdp.trim().is_empty() {
        return Err(MediaError::InvalidSdp("the SDP is empty".into()));
    }
    if !sdp.lines().any(|l| l.starts_with("m=audio ")) {
        return Err(MediaError::Incompatible(
            "the SDP has no audio stream".into(),
        ));
    }
    let (ice, dtls) = has_ice_and_dtls(sdp);
    if !ice || !dtls {
        return Err(MediaError::Incompatible(
            "the peer's DTLS-SRTP stream has no ICE; WebRTC media needs both".into(),
        ));
    }
    let (prepared, shape) = match kind {
        Remote::Offer => {
            let (prepared, shape) =
                prepare_offer(sdp, fallback_mid).map_err(MediaError::Incompatible)?;
            (prepared, Some(shape))
        }
        Remote::Answer { our_offer } => (
            prepare_answer(sdp, our_offer).map_err(MediaError::Incompatible)?,
            None,
        ),
    };
    let normalized = normalize_remote(&prepared);
    let offered = audio_codecs(&normalized);
    let common = offered.iter().any(|c| {
        Codec::from_sdp(&c.name, c.clock_rate).is_some_and(|codec| codecs.contains(&codec))
    });
    if !common {
        let names: Vec<&str> = offered.iter().map(|c| c.name.as_str()).collect();
        return Err(MediaError::Incompatible(format!(
            "no common audio codec (remote: {})",
            names.join(", ")
        )));
    }
    Ok((normalized, shape))
}

/// Which remote description [`check_webrtc_sdp`] prepares.
enum Remote<'a> {
    /// An offer: answered in its own shape.
    Offer,
    /// The answer to our offer.
    Answer {
        /// The offer it answers (its mids name the answer's m= lines).
        our_offer: &'a str,
    },
}

impl fmt::Debug for MediaSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MediaSession")
            .field("profile", &self.inner.profile)
            .field("flow", &self.inner.shared.flow())
            .field("codec", &self.negotiated_codec())
            .field("closed", &self.is_closed())
            .finish()
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if self.shared.shutdown.send_replace(true) {
            return;
        }
        // Dropped without close(): the tasks stop with the shutdown signal; the peer
        // connection closes in the background if a runtime is still around.
        if let Transport::WebRtc(t) = &self.transport {
            t.close_later();
        }
    }
}

impl Shared {
    fn flow(&self) -> Flow {
        *lock(&self.flow)
    }

    fn set_flow(&self, flow: Flow) {
        *lock(&self.flow) = flow;
    }

    /// The media path is up: wake the pump to send at once, and say so.
    fn path_up(&self) {
        self.connected_wake.notify_one();
        self.emit(MediaEvent::Connected);
    }

    fn emit(&self, event: MediaEvent) {
        // The receiver may be gone; events are then simply not wanted.
        let _ = self.events.send(event);
    }

    /// Reads one frame from the source; silence (and one event) on failure.
    fn read_source(&self, frame: &mut [i16]) {
        let mut devices = lock(&self.devices);
        match devices.source.read_frame(frame) {
            Ok(()) => devices.source_failed = false,
            Err(e) => {
                frame.fill(0);
                if !devices.source_failed {
                    devices.source_failed = true;
                    tracing::warn!(error = %e, code = %e.code(), "audio source failed; sending silence");
                    self.emit(MediaEvent::DeviceError(e));
                }
            }
        }
    }

    /// Writes decoded samples to the sink in frames.
    fn play(&self, samples: &[i16]) {
        if samples.is_empty() {
            return;
        }
        let mut devices = lock(&self.devices);
        for chunk in samples.chunks(FRAME_SAMPLES) {
            if let Err(e) = devices.sink.write_frame(chunk) {
                if !devices.sink_failed {
                    devices.sink_failed = true;
                    tracing::warn!(error = %e, code = %e.code(), "audio sink failed");
                    self.emit(MediaEvent::DeviceError(e));
                }
                return;
            }
        }
        devices.sink_failed = false;
        drop(devices);
        if !self.first_audio.swap(true, Ordering::SeqCst) {
            self.emit(MediaEvent::FirstAudioFrame);
        }
    }
}

/// Sequence number, timestamp and marker state of the outgoing stream.
struct RtpClock {
    seq: u16,
    ts: u32,
    marker: bool,
}

/// The send side: one frame every 20 ms, from the source or DTMF, to RTP.
///
/// The interval uses `MissedTickBehavior::Burst`: if a tick is late, the missed
/// frames are sent straight away, so the long-run rate stays exactly 50 frames a
/// second and the receiver's clock does not drift away from ours (`Delay` would
/// lose a little time at every hiccup). A backlog beyond [`MAX_LAG`] is skipped
/// instead: the timestamp jumps forward and the next packet gets the marker bit.
async fn run_pump(
    shared: Arc<Shared>,
    mut bindings: watch::Receiver<Option<Arc<Binding>>>,
    mut dtmf_rx: mpsc::UnboundedReceiver<DtmfRequest>,
) {
    let mut shutdown = shared.shutdown.subscribe();
    let bound = tokio::select! {
        _ = stopped(&mut shutdown) => return,
        bound = bindings.wait_for(Option::is_some) => bound.ok().and_then(|b| b.clone()),
    };
    let Some(binding) = bound else { return };
    let mut encoder = match AudioEncoder::new(binding.audio.codec) {
        Ok(encoder) => encoder,
        Err(e) => {
            shared.emit(MediaEvent::Failed(e.to_string()));
            return;
        }
    };
    let samples_per_frame = binding.audio.codec.samples_per_frame();
    let mut clock = RtpClock {
        seq: rand::random(),
        ts: rand::random(),
        marker: true,
    };
    let mut writer = PacketWriter::new(Arc::clone(&binding));
    let mut frame = vec![0i16; FRAME_SAMPLES];
    let mut interval = tokio::time::interval(FRAME);
    interval.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let mut dtmf: Option<(DtmfPlayer, oneshot::Sender<()>)> = None;
    tracing::debug!(codec = %binding.audio.codec, pt = binding.audio.payload_type, "media pump started");

    loop {
        tokio::select! {
            biased;
            _ = stopped(&mut shutdown) => break,
            request = dtmf_rx.recv(), if dtmf.is_none() => match request {
                Some(r) => dtmf = Some((DtmfPlayer::new(r.events, r.clock_rate), r.done)),
                None => break,
            },
            _ = shared.connected_wake.notified() => {
                // The path is open now: start the 20 ms rhythm from this instant.
                interval.reset_immediately();
                clock.marker = true;
                continue;
            }
            scheduled = interval.tick() => {
                let lag = Instant::now().saturating_duration_since(scheduled);
                if lag > MAX_LAG {
                    let missed = (lag.as_millis() / FRAME.as_millis()) as u32;
                    tracing::warn!(?lag, "media pump fell behind; skipping ahead");
                    clock.ts = clock.ts.wrapping_add(missed.wrapping_mul(samples_per_frame));
                    clock.marker = true;
                    interval.reset();
                }
                shared.read_source(&mut frame);
                let flow = shared.flow();
                let can_send = flow.can_send() && !binding.is_paused();

                let mut event_packet = None;
                if let Some((player, _)) = dtmf.as_mut() {
                    match player.tick(clock.ts) {
                        DtmfTick::Event { payload, timestamp, marker } => {
                            event_packet = Some((payload, timestamp, marker));
                        }
                        DtmfTick::Audio => {}
                        DtmfTick::Done => {
                            if let Some((_, done)) = dtmf.take() {
                                let _ = done.send(());
                            }
                        }
                    }
                }

                match (event_packet, binding.telephone_event) {
                    (Some((payload, timestamp, marker)), Some(event_codec)) => {
                        if can_send {
                            let bytes = Bytes::copy_from_slice(&payload.to_bytes());
                            writer
                                .write(&mut clock, event_codec.payload_type, timestamp, marker, bytes)
                                .await;
                        }
                        // Audio after an event starts a new talkspurt.
                        clock.marker = true;
                    }
                    _ if can_send => {
                        if !flow.transmits_source() {
                            frame.fill(0);
                        }
                        match encoder.encode(&frame) {
                            Ok(payload) => {
                                let (ts, marker) = (clock.ts, clock.marker);
                                writer
                                    .write(&mut clock, binding.audio.payload_type, ts, marker, payload.into())
                                    .await;
                                clock.marker = false;
                            }
                            Err(e) => tracing::warn!(error = %e, "encoding a frame failed"),
                        }
                    }
                    _ => clock.marker = true,
                }
                clock.ts = clock.ts.wrapping_add(samples_per_frame);
            }
        }
    }
    tracing::debug!("media pump stopped");
}

/// Writes complete RTP packets to the bound stream.
struct PacketWriter {
    binding: Arc<Binding>,
    failing: bool,
}

impl PacketWriter {
    fn new(binding: Arc<Binding>) -> Self {
        Self {
            binding,
            failing: false,
        }
    }

    async fn write(
        &mut self,
        clock: &mut RtpClock,
        payload_type: u8,
        timestamp: u32,
        marker: bool,
        payload: Bytes,
    ) {
        let packet = Packet {
            header: Header {
                version: 2,
                marker,
                payload_type,
                sequence_number: clock.seq,
                timestamp,
                ssrc: self.binding.ssrc,
                ..Default::default()
            },
            payload,
        };
        clock.seq = clock.seq.wrapping_add(1);
        match self.binding.writer.send(&packet).await {
            Ok(_) => self.failing = false,
            Err(e) => {
                if !self.failing {
                    self.failing = true;
                    tracing::debug!(error = %e, "writing RTP failed");
                }
            }
        }
    }
}

/// Resolves once the session is shutting down (or its state is gone).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|&stop| stop).await;
}

/// The receive side both transports feed: RTP into the jitter buffer, telephone events
/// into DTMF digits. Decoding happens at playout time ([`run_playout`]).
struct RtpReceiver {
    shared: Arc<Shared>,
    last_seq: Option<u16>,
    dtmf: DtmfReceiver,
}

impl RtpReceiver {
    fn new(shared: Arc<Shared>) -> Self {
        Self {
            shared,
            last_seq: None,
            dtmf: DtmfReceiver::default(),
        }
    }

    /// Takes one received packet.
    fn on_packet(&mut self, packet: Packet, arrival: std::time::Instant) {
        let shared = &self.shared;
        let seq = packet.header.sequence_number;
        let in_order = match self.last_seq {
            Some(prev) => {
                let step = seq.wrapping_sub(prev);
                step != 0 && step < 0x8000
            }
            None => true,
        };
        if in_order {
            self.last_seq = Some(seq);
        }

        let format = lock(&shared.rx_formats)
            .get(&packet.header.payload_type)
            .copied();
        let flow = shared.flow();
        let codec = match format {
            Some(RxFormat::Audio(codec)) => codec,
            Some(RxFormat::TelephoneEvent) => {
                if !in_order {
                    return; // duplicate or late: its slot has passed
                }
                if let Some(digit) = self
                    .dtmf
                    .on_packet(packet.header.timestamp, &packet.payload)
                {
                    if flow.can_play() {
                        tracing::debug!("DTMF received");
                        shared.emit(MediaEvent::Dtmf(digit));
                    }
                }
                return;
            }
            None => return,
        };
        if !flow.can_play() {
            return; // held: drop, do not even play silence
        }
        let outcome = lock(&shared.jitter).push(
            seq,
            packet.header.timestamp,
            codec.clock_rate(),
            RxPacket {
                codec,
                payload: packet.payload,
            },
            arrival,
        );
        if outcome == (PushOutcome::Buffered { started: true }) {
            shared.playout_wake.notify_one();
        }
    }
}

/// The playout clock: every 20 ms, one frame out of the jitter buffer, decoded
/// (or concealed: Opus PLC, or FEC from the next packet) and written to the sink.
///
/// When a talkspurt starts the tick is re-phased to fire just when the first
/// packet has waited out the target delay, so the buffer adds no more delay than
/// the measured jitter needs. Clock drift between the sender and this tick is
/// absorbed by the jitter buffer (whole frames, rarely); drift between this tick
/// and a sound card by the engine's drift buffers (single samples).
async fn run_playout(shared: Arc<Shared>) {
    let mut shutdown = shared.shutdown.subscribe();
    let mut decoder: Option<AudioDecoder> = None;
    let mut interval = tokio::time::interval(FRAME);
    interval.set_missed_tick_behavior(MissedTickBehavior::Burst);
    loop {
        tokio::select! {
            biased;
            _ = stopped(&mut shutdown) => break,
            _ = shared.playout_wake.notified() => {
                let delay = lock(&shared.jitter).target_delay();
                interval.reset_at(Instant::now() + delay);
                continue;
            }
            _ = interval.tick() => {}
        }
        if !shared.flow().can_play() {
            lock(&shared.jitter).reset();
            continue;
        }
        let playout = lock(&shared.jitter).pop(std::time::Instant::now());
        let samples = match playout {
            Playout::Idle => continue,
            Playout::Frame(packet) => {
                if decoder.as_ref().map(AudioDecoder::codec) != Some(packet.codec) {
                    match AudioDecoder::new(packet.codec) {
                        Ok(d) => decoder = Some(d),
                        Err(e) => {
                            tracing::warn!(error = %e, "cannot create a decoder");
                            continue;
                        }
                    }
                }
                let Some(dec) = decoder.as_mut() else {
                    continue;
                };
                match dec.decode(&packet.payload) {
                    Ok(decoded) => decoded,
                    Err(e) => {
                        tracing::debug!(error = %e, "undecodable audio packet");
                        dec.conceal().unwrap_or_default()
                    }
                }
            }
            Playout::Conceal { next } => {
                let Some(dec) = decoder.as_mut() else {
                    continue;
                };
                match next {
                    Some(next) if next.codec == dec.codec() => {
                        dec.recover(&next.payload).unwrap_or_default()
                    }
                    _ => dec.conceal().unwrap_or_default(),
                }
            }
        };
        shared.play(&samples);
    }
}
