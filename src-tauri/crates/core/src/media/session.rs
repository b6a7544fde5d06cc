//! [`MediaSession`]: one call's audio over an `RTCPeerConnection`.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{Instant, MissedTickBehavior};
use webrtc::api::interceptor_registry::configure_rtcp_reports;
use webrtc::api::media_engine::MediaEngine;
use webrtc::api::setting_engine::SettingEngine;
use webrtc::api::APIBuilder;
use webrtc::ice::mdns::MulticastDnsMode;
use webrtc::ice::network_type::NetworkType;
use webrtc::interceptor::registry::Registry;
use webrtc::peer_connection::configuration::RTCConfiguration;
use webrtc::peer_connection::peer_connection_state::RTCPeerConnectionState;
use webrtc::peer_connection::sdp::session_description::RTCSessionDescription;
use webrtc::peer_connection::signaling_state::RTCSignalingState;
use webrtc::peer_connection::RTCPeerConnection;
use webrtc::rtp::header::Header;
use webrtc::rtp::packet::Packet;
use webrtc::rtp_transceiver::rtp_codec::RTPCodecType;
use webrtc::rtp_transceiver::rtp_transceiver_direction::RTCRtpTransceiverDirection;
use webrtc::rtp_transceiver::{RTCRtpTransceiver, RTCRtpTransceiverInit};
use webrtc::track::track_local::TrackLocal;
use webrtc::track::track_remote::TrackRemote;

use super::codec::{telephone_event_parameters, AudioDecoder, AudioEncoder};
use super::dtmf::{dtmf_event_code, DtmfPlayer, DtmfReceiver, DtmfTick};
use super::sdp::{
    audio_codecs, has_ice_and_dtls, normalize_remote, prepare_answer, prepare_offer, sdp_direction,
    shape_answer, with_default_candidate, Direction, OfferShape,
};
use super::track::{Binding, RawRtpTrack};
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
/// Upper bound for ICE candidate gathering (host candidates take milliseconds).
const GATHER_TIMEOUT: Duration = Duration::from_secs(5);
/// At most this many missing packets are concealed; a longer gap is a pause
/// (hold, a restarted sender), not loss.
const MAX_CONCEAL: u32 = 5;
/// Consecutive recoverable read errors tolerated before the receiver gives up.
const MAX_READ_ERRORS: u32 = 50;

/// One call's audio stream: a WebRTC peer connection with one audio
/// transceiver, a send pump and a receive task.
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
    pc: Arc<RTCPeerConnection>,
    transceiver: Arc<RTCRtpTransceiver>,
    track: Arc<RawRtpTrack>,
    shared: Arc<Shared>,
    /// Serialises offer/answer operations.
    sdp_lock: tokio::sync::Mutex<()>,
    /// What to restore if our outstanding offer is rolled back.
    pending_offer: Mutex<Option<PendingOffer>>,
}

#[derive(Debug, Clone, Copy)]
struct PendingOffer {
    transceiver_direction: RTCRtpTransceiverDirection,
    flow: Flow,
}

/// State shared by the handle, the pump and the receiver.
struct Shared {
    codecs: Vec<Codec>,
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
    /// Wakes the send pump when DTLS-SRTP is up: frames sent before that are lost, so the
    /// pump re-phases to send its first frame at once instead of up to 20 ms later.
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

fn engine(context: &str) -> impl FnOnce(webrtc::Error) -> MediaError + '_ {
    move |e| MediaError::Engine(format!("{context}: {e}"))
}

/// Maps an error from applying a remote description.
fn remote_description_error(e: webrtc::Error) -> MediaError {
    use webrtc::Error as E;
    match e {
        E::ErrConnectionClosed => MediaError::Closed,
        E::ErrSignalingStateProposedTransitionInvalid { .. }
        | E::ErrSignalingStateCannotRollback
        | E::ErrIncorrectSignalingState => {
            MediaError::InvalidState(format!("unexpected SDP at this point: {e}"))
        }
        other => MediaError::InvalidSdp(other.to_string()),
    }
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
        for codec in config.codecs {
            if !codecs.contains(&codec) {
                codecs.push(codec);
            }
        }
        if codecs.is_empty() {
            return Err(MediaError::InvalidConfig(
                "at least one audio codec is needed".into(),
            ));
        }

        let mut media_engine = MediaEngine::default();
        for codec in &codecs {
            media_engine
                .register_codec(codec.parameters(), RTPCodecType::Audio)
                .map_err(engine("registering a codec"))?;
        }
        media_engine
            .register_codec(telephone_event_parameters(), RTPCodecType::Audio)
            .map_err(engine("registering telephone-event"))?;
        let registry = configure_rtcp_reports(Registry::new());

        let mut settings = SettingEngine::default();
        let bind_ip = config.bind_ip;
        settings.set_network_types(vec![if bind_ip.is_ipv4() {
            NetworkType::Udp4
        } else {
            NetworkType::Udp6
        }]);
        settings.set_ice_multicast_dns_mode(MulticastDnsMode::Disabled);
        // The remote's first connectivity check often arrives before its SDP
        // candidates are applied, so its address is first learnt as peer-reflexive;
        // the default 1 s wait before nominating such a pair then delays about one
        // call in ten by a second. Candidates come complete in the SDP here, so
        // there is nothing better to wait for.
        settings.set_prflx_acceptance_min_wait(Some(Duration::ZERO));
        settings.set_include_loopback_candidate(bind_ip.is_loopback());
        if !bind_ip.is_unspecified() {
            settings.set_ip_filter(Box::new(move |ip| ip == bind_ip));
        }

        let api = APIBuilder::new()
            .with_media_engine(media_engine)
            .with_interceptor_registry(registry)
            .with_setting_engine(settings)
            .build();
        let pc = Arc::new(
            api.new_peer_connection(RTCConfiguration::default())
                .await
                .map_err(engine("creating the peer connection"))?,
        );

        let track = Arc::new(RawRtpTrack::new(
            codecs.clone(),
            format!("hookflash-{:08x}", rand::random::<u32>()),
        ));
        let transceiver = pc
            .add_transceiver_from_track(
                Arc::clone(&track) as Arc<dyn TrackLocal + Send + Sync>,
                Some(RTCRtpTransceiverInit {
                    direction: RTCRtpTransceiverDirection::Sendrecv,
                    send_encodings: vec![],
                }),
            )
            .await
            .map_err(engine("adding the audio transceiver"))?;

        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let (dtmf_tx, dtmf_rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            codecs,
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

        let state_shared = Arc::clone(&shared);
        pc.on_peer_connection_state_change(Box::new(move |state| {
            tracing::debug!(%state, "media connection state");
            match state {
                RTCPeerConnectionState::Connected => {
                    state_shared.connected_wake.notify_one();
                    state_shared.emit(MediaEvent::Connected)
                }
                RTCPeerConnectionState::Disconnected => state_shared.emit(MediaEvent::Disconnected),
                RTCPeerConnectionState::Failed => state_shared.emit(MediaEvent::Failed(
                    "the ICE/DTLS connection failed".to_owned(),
                )),
                _ => {}
            }
            Box::pin(async {})
        }));

        let track_shared = Arc::clone(&shared);
        pc.on_track(Box::new(move |remote, _receiver, _transceiver| {
            if remote.kind() == RTPCodecType::Audio {
                tracing::debug!(ssrc = remote.ssrc(), "remote audio track");
                tokio::spawn(run_receiver(Arc::clone(&track_shared), remote));
            }
            Box::pin(async {})
        }));

        tokio::spawn(run_pump(Arc::clone(&shared), Arc::clone(&track), dtmf_rx));
        tokio::spawn(run_playout(Arc::clone(&shared)));
        tokio::spawn(drain_rtcp(Arc::clone(&shared), Arc::clone(&transceiver)));

        let session = MediaSession {
            inner: Arc::new(Inner {
                pc,
                transceiver,
                track,
                shared,
                sdp_lock: tokio::sync::Mutex::new(()),
                pending_offer: Mutex::new(None),
            }),
        };
        Ok((session, events_rx))
    }

    /// Creates the initial offer: a complete SDP (all candidates gathered) for an
    /// INVITE body or a 200 OK to an offerless INVITE.
    pub async fn create_offer(&self) -> Result<String, MediaError> {
        let _sdp = self.inner.sdp_lock.lock().await;
        self.ensure_open()?;
        let previous = self.pending_snapshot();
        let sdp = self.offer_and_gather().await?;
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
    /// peer does not speak ICE/DTLS-SRTP, and [`MediaError::InvalidSdp`] for
    /// malformed SDP; the session is unchanged in both cases.
    pub async fn accept_offer(&self, remote_sdp: &str) -> Result<String, MediaError> {
        let _sdp = self.inner.sdp_lock.lock().await;
        self.ensure_open()?;
        let (remote, shape) = self.check_remote(remote_sdp, Remote::Offer)?;
        let desc = RTCSessionDescription::offer(remote.clone())
            .map_err(|e| MediaError::InvalidSdp(e.to_string()))?;
        // The engine pairs an initial remote `sendonly` offer only with a local
        // `recvonly` transceiver (otherwise it adds a second, trackless one and
        // ours would never be used). Present ours as recvonly for the pairing; the
        // answer is then recvonly either way (offer reversed ∩ sendrecv).
        let transceiver = &self.inner.transceiver;
        let pair_as_recvonly =
            transceiver.mid().is_none() && sdp_direction(&remote) == Direction::SendOnly;
        let previous = transceiver.direction();
        if pair_as_recvonly {
            transceiver
                .set_direction(RTCRtpTransceiverDirection::Recvonly)
                .await;
        }
        let applied = self.inner.pc.set_remote_description(desc).await;
        if pair_as_recvonly {
            transceiver.set_direction(previous).await;
        }
        applied.map_err(remote_description_error)?;
        let answer = self
            .inner
            .pc
            .create_answer(None)
            .await
            .map_err(engine("creating the answer"))?;
        let engine_answer = self.set_local_and_gather(answer).await?;
        // The peer gets an answer in its offer's shape (RFC 3264 §6), not the engine's.
        let local = match &shape {
            Some(shape) => shape_answer(&engine_answer, shape),
            None => engine_answer,
        };
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
        if self.inner.pc.signaling_state() != RTCSignalingState::HaveLocalOffer {
            return Err(MediaError::InvalidState(
                "there is no outstanding offer to answer".into(),
            ));
        }
        let our_offer = self
            .inner
            .pc
            .pending_local_description()
            .await
            .map(|d| d.sdp)
            .unwrap_or_default();
        let (remote, _) = self.check_remote(
            remote_sdp,
            Remote::Answer {
                our_offer: &our_offer,
            },
        )?;
        let desc = RTCSessionDescription::answer(remote.clone())
            .map_err(|e| MediaError::InvalidSdp(e.to_string()))?;
        self.inner
            .pc
            .set_remote_description(desc)
            .await
            .map_err(remote_description_error)?;
        let mut flow = self.inner.shared.flow();
        flow.remote = sdp_direction(&remote);
        flow.negotiated = true;
        self.inner.shared.set_flow(flow);
        *lock(&self.inner.pending_offer) = None;
        let local = self.inner.pc.local_description().await.map(|d| d.sdp);
        *lock(&self.inner.shared.rx_formats) =
            rx_format_map(local.as_deref().unwrap_or_default(), &remote);
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
        self.inner
            .transceiver
            .set_direction(direction.to_rtc())
            .await;
        match self.offer_and_gather().await {
            Ok(sdp) => {
                let mut flow = self.inner.shared.flow();
                flow.local = sdp_direction(&sdp);
                flow.holding = matches!(direction, Direction::SendOnly | Direction::Inactive);
                self.inner.shared.set_flow(flow);
                *lock(&self.inner.pending_offer) = Some(previous);
                tracing::debug!(%direction, "created a re-offer");
                Ok(sdp)
            }
            Err(e) => {
                self.inner
                    .transceiver
                    .set_direction(previous.transceiver_direction)
                    .await;
                Err(e)
            }
        }
    }

    /// Withdraws our outstanding re-offer (for example after a 488 or 491 to a
    /// re-INVITE): the session returns to the last negotiated state, including
    /// the hold state and direction it had before the offer.
    ///
    /// webrtc 0.14 cannot apply an SDP rollback from `have-local-offer`, so the
    /// previously negotiated remote description is applied again as the answer
    /// to the withdrawn offer, which re-establishes exactly the old directions.
    /// An initial offer cannot be rolled back (there is nothing to return to):
    /// close the session instead.
    pub async fn rollback_offer(&self) -> Result<(), MediaError> {
        let _sdp = self.inner.sdp_lock.lock().await;
        self.ensure_open()?;
        let pc = &self.inner.pc;
        let previous_remote = pc.current_remote_description().await;
        let pending = *lock(&self.inner.pending_offer);
        let (Some(pending), Some(previous_remote), RTCSignalingState::HaveLocalOffer) =
            (pending, previous_remote, pc.signaling_state())
        else {
            return Err(MediaError::InvalidState(
                "there is no outstanding re-offer to roll back".into(),
            ));
        };
        self.inner
            .transceiver
            .set_direction(pending.transceiver_direction)
            .await;
        let answer = RTCSessionDescription::answer(previous_remote.sdp)
            .map_err(engine("re-reading the negotiated description"))?;
        pc.set_remote_description(answer)
            .await
            .map_err(engine("restoring the negotiated description"))?;
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
        self.inner.track.binding().map(|b| b.audio.codec)
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
            .track
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
        if let Err(e) = self.inner.pc.close().await {
            tracing::debug!(error = %e, "closing the peer connection");
        }
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
            transceiver_direction: self.inner.transceiver.direction(),
            flow: self.inner.shared.flow(),
        }
    }

    /// Checks and normalises a remote SDP before handing it to the engine (see
    /// [`check_sdp`]); a re-offer from a peer without mids keeps the mid our transceiver has.
    fn check_remote(
        &self,
        sdp: &str,
        kind: Remote<'_>,
    ) -> Result<(String, Option<OfferShape>), MediaError> {
        let fallback = self
            .inner
            .transceiver
            .mid()
            .map(|m| m.to_string())
            .unwrap_or_else(|| "0".into());
        check_sdp(sdp, kind, &fallback, &self.inner.shared.codecs)
    }

    /// Whether a remote offer is one a session with these codecs can answer, without
    /// touching any session: for refusing an incoming call (488) before the user is rung.
    /// The error says why, in words.
    pub fn check_offer(sdp: &str, codecs: &[Codec]) -> Result<(), MediaError> {
        check_sdp(sdp, Remote::Offer, "0", codecs).map(drop)
    }

    async fn offer_and_gather(&self) -> Result<String, MediaError> {
        let offer = self
            .inner
            .pc
            .create_offer(None)
            .await
            .map_err(engine("creating the offer"))?;
        self.set_local_and_gather(offer).await
    }

    /// Applies a local description and returns it once ICE gathering is complete
    /// (no trickle: SIP needs every candidate in the one body).
    async fn set_local_and_gather(
        &self,
        desc: RTCSessionDescription,
    ) -> Result<String, MediaError> {
        let started = Instant::now();
        let pc = &self.inner.pc;
        let mut gathered = pc.gathering_complete_promise().await;
        pc.set_local_description(desc)
            .await
            .map_err(engine("applying the local description"))?;
        tokio::time::timeout(GATHER_TIMEOUT, gathered.recv())
            .await
            .map_err(|_| MediaError::Timeout("ICE candidate gathering".into()))?;
        let local = pc
            .local_description()
            .await
            .ok_or_else(|| MediaError::Engine("no local description after gathering".into()))?;
        tracing::debug!(elapsed = ?started.elapsed(), "local SDP ready");
        Ok(with_default_candidate(&local.sdp))
    }
}

/// Checks a remote SDP and prepares it for the engine: an offer is cut to the audio stream
/// we take, with a mid and BUNDLE the engine needs (its shape is returned, to answer in it);
/// an answer gets our offer's mids. Both get their ICE and DTLS attributes where the engine
/// reads them and hash names in lower case. Refused: empty SDP, no audio, no ICE and
/// DTLS-SRTP, no sha-256 fingerprint, no codec in common with `codecs`.
fn check_sdp(
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
            "the peer offers plain RTP without ICE and DTLS-SRTP; a media gateway is needed".into(),
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

/// Which remote description [`check_sdp`] prepares.
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
        // Dropped without close(): stop the tasks and close the connection in the
        // background if a runtime is still around.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let pc = Arc::clone(&self.pc);
            runtime.spawn(async move {
                if let Err(e) = pc.close().await {
                    tracing::debug!(error = %e, "closing a dropped media session");
                }
            });
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
    track: Arc<RawRtpTrack>,
    mut dtmf_rx: mpsc::UnboundedReceiver<DtmfRequest>,
) {
    let mut shutdown = shared.shutdown.subscribe();
    let mut bindings = track.subscribe();
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
        match self.binding.writer.write_rtp(&packet).await {
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

/// Whether a read error on the remote track is worth continuing after.
fn recoverable(e: &webrtc::Error) -> bool {
    matches!(e, webrtc::Error::ErrCodecNotFound | webrtc::Error::Rtp(_))
}

/// The receive side: RTP from the remote track into the jitter buffer, and DTMF
/// events. Decoding happens at playout time ([`run_playout`]).
async fn run_receiver(shared: Arc<Shared>, track: Arc<TrackRemote>) {
    let mut shutdown = shared.shutdown.subscribe();
    let mut last_seq: Option<u16> = None;
    let mut dtmf = DtmfReceiver::default();
    let mut errors = 0u32;
    loop {
        let read = tokio::select! {
            _ = stopped(&mut shutdown) => break,
            read = track.read_rtp() => read,
        };
        let packet = match read {
            Ok((packet, _)) => {
                errors = 0;
                packet
            }
            Err(e) if recoverable(&e) && errors < MAX_READ_ERRORS => {
                errors += 1;
                tracing::debug!(error = %e, "skipping an unreadable RTP packet");
                continue;
            }
            Err(e) => {
                tracing::debug!(error = %e, "remote audio track ended");
                break;
            }
        };
        let arrival = std::time::Instant::now();

        let seq = packet.header.sequence_number;
        let in_order = match last_seq {
            Some(prev) => {
                let step = seq.wrapping_sub(prev);
                step != 0 && step < 0x8000
            }
            None => true,
        };
        if in_order {
            last_seq = Some(seq);
        }

        let format = lock(&shared.rx_formats)
            .get(&packet.header.payload_type)
            .copied();
        let flow = shared.flow();
        let codec = match format {
            Some(RxFormat::Audio(codec)) => codec,
            Some(RxFormat::TelephoneEvent) => {
                if !in_order {
                    continue; // duplicate or late: its slot has passed
                }
                if let Some(digit) = dtmf.on_packet(packet.header.timestamp, &packet.payload) {
                    if flow.can_play() {
                        tracing::debug!("DTMF received");
                        shared.emit(MediaEvent::Dtmf(digit));
                    }
                }
                continue;
            }
            None => continue,
        };
        if !flow.can_play() {
            continue; // held: drop, do not even play silence
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

/// Reads (and so lets the interceptors process) the RTCP sent back to our sender.
async fn drain_rtcp(shared: Arc<Shared>, transceiver: Arc<RTCRtpTransceiver>) {
    let sender = transceiver.sender().await;
    drop(transceiver);
    let mut shutdown = shared.shutdown.subscribe();
    drop(shared);
    loop {
        tokio::select! {
            _ = stopped(&mut shutdown) => break,
            read = sender.read_rtcp() => if read.is_err() { break },
        }
    }
}
