//! The WebRTC profile's transport: one `RTCPeerConnection` with one audio transceiver (ICE,
//! DTLS-SRTP, RTCP reports), feeding the shared pipeline.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use webrtc::api::interceptor_registry::configure_rtcp_reports;
use webrtc::api::media_engine::MediaEngine;
use webrtc::api::setting_engine::SettingEngine;
use webrtc::api::APIBuilder;
use webrtc::ice::mdns::MulticastDnsMode;
use webrtc::ice::network_type::NetworkType;
use webrtc::ice_transport::ice_server::RTCIceServer;
use webrtc::interceptor::registry::Registry;
use webrtc::peer_connection::configuration::RTCConfiguration;
use webrtc::peer_connection::peer_connection_state::RTCPeerConnectionState;
use webrtc::peer_connection::policy::ice_transport_policy::RTCIceTransportPolicy;
use webrtc::peer_connection::sdp::session_description::RTCSessionDescription;
use webrtc::peer_connection::signaling_state::RTCSignalingState;
use webrtc::peer_connection::RTCPeerConnection;
use webrtc::rtp_transceiver::rtp_codec::RTPCodecType;
use webrtc::rtp_transceiver::rtp_transceiver_direction::RTCRtpTransceiverDirection;
use webrtc::rtp_transceiver::{RTCRtpTransceiver, RTCRtpTransceiverInit};
use webrtc::track::track_local::TrackLocal;
use webrtc::track::track_remote::TrackRemote;

use super::{check_webrtc_sdp, stopped, Remote, RtpReceiver, Shared};
use crate::media::codec::telephone_event_parameters;
use crate::media::sdp::{sdp_direction, shape_answer, with_default_candidate, Direction};
use crate::media::track::{Binding, RawRtpTrack};
use crate::media::{Codec, MediaConfig, MediaError, MediaEvent};

/// Upper bound for ICE candidate gathering (host candidates take milliseconds).
const GATHER_TIMEOUT: Duration = Duration::from_secs(5);
/// Consecutive recoverable read errors tolerated before the receiver gives up.
const MAX_READ_ERRORS: u32 = 50;

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

fn from_rtc(direction: RTCRtpTransceiverDirection) -> Direction {
    match direction {
        RTCRtpTransceiverDirection::Sendonly => Direction::SendOnly,
        RTCRtpTransceiverDirection::Recvonly => Direction::RecvOnly,
        RTCRtpTransceiverDirection::Inactive => Direction::Inactive,
        _ => Direction::SendRecv,
    }
}

/// The peer connection's ICE servers and policy.
fn rtc_configuration(config: &MediaConfig) -> RTCConfiguration {
    RTCConfiguration {
        ice_servers: config
            .ice_servers
            .iter()
            .map(|s| RTCIceServer {
                urls: s.urls.clone(),
                username: s.username.clone(),
                credential: s.credential.clone(),
            })
            .collect(),
        ice_transport_policy: if config.relay_only {
            RTCIceTransportPolicy::Relay
        } else {
            RTCIceTransportPolicy::All
        },
        ..RTCConfiguration::default()
    }
}

/// One peer connection and its audio transceiver.
pub(super) struct WebRtcTransport {
    pc: Arc<RTCPeerConnection>,
    transceiver: Arc<RTCRtpTransceiver>,
    track: Arc<RawRtpTrack>,
    codecs: Vec<Codec>,
}

impl WebRtcTransport {
    pub(super) async fn new(
        config: &MediaConfig,
        codecs: Vec<Codec>,
        shared: &Arc<Shared>,
    ) -> Result<Self, MediaError> {
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
        if config.relay_only {
            // Only relay pairs exist: nothing better to wait for before nominating one.
            settings.set_relay_acceptance_min_wait(Some(Duration::ZERO));
        }
        if !bind_ip.is_unspecified() {
            settings.set_ip_filter(Box::new(move |ip| ip == bind_ip));
        }

        let api = APIBuilder::new()
            .with_media_engine(media_engine)
            .with_interceptor_registry(registry)
            .with_setting_engine(settings)
            .build();
        let pc = Arc::new(
            api.new_peer_connection(rtc_configuration(config))
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

        let state_shared = Arc::clone(shared);
        pc.on_peer_connection_state_change(Box::new(move |state| {
            tracing::debug!(%state, "media connection state");
            match state {
                RTCPeerConnectionState::Connected => state_shared.path_up(),
                RTCPeerConnectionState::Disconnected => state_shared.emit(MediaEvent::Disconnected),
                RTCPeerConnectionState::Failed => state_shared.emit(MediaEvent::Failed(
                    "the ICE/DTLS connection failed".to_owned(),
                )),
                _ => {}
            }
            Box::pin(async {})
        }));

        let track_shared = Arc::clone(shared);
        pc.on_track(Box::new(move |remote, _receiver, _transceiver| {
            if remote.kind() == RTPCodecType::Audio {
                tracing::debug!(ssrc = remote.ssrc(), "remote audio track");
                tokio::spawn(read_track(Arc::clone(&track_shared), remote));
            }
            Box::pin(async {})
        }));
        tokio::spawn(drain_rtcp(Arc::clone(shared), Arc::clone(&transceiver)));

        Ok(Self {
            pc,
            transceiver,
            track,
            codecs,
        })
    }

    pub(super) fn bindings(&self) -> watch::Receiver<Option<Arc<Binding>>> {
        self.track.subscribe()
    }

    pub(super) fn binding(&self) -> Option<Arc<Binding>> {
        self.track.binding()
    }

    /// The direction our next offer or answer starts from.
    pub(super) fn direction(&self) -> Direction {
        from_rtc(self.transceiver.direction())
    }

    pub(super) fn has_outstanding_offer(&self) -> bool {
        self.pc.signaling_state() == RTCSignalingState::HaveLocalOffer
    }

    /// An offer (initial or re-offer) with our stream in `direction`.
    pub(super) async fn offer(&self, direction: Direction) -> Result<String, MediaError> {
        let previous = self.transceiver.direction();
        self.transceiver.set_direction(direction.to_rtc()).await;
        let result = async {
            let offer = self
                .pc
                .create_offer(None)
                .await
                .map_err(engine("creating the offer"))?;
            self.set_local_and_gather(offer).await
        }
        .await;
        if result.is_err() {
            self.transceiver.set_direction(previous).await;
        }
        result
    }

    /// Answers a remote offer; returns our answer and the remote SDP as the engine read it.
    pub(super) async fn answer(&self, remote_sdp: &str) -> Result<(String, String), MediaError> {
        let fallback = self
            .transceiver
            .mid()
            .map(|m| m.to_string())
            .unwrap_or_else(|| "0".into());
        let (remote, shape) = check_webrtc_sdp(remote_sdp, Remote::Offer, &fallback, &self.codecs)?;
        let desc = RTCSessionDescription::offer(remote.clone())
            .map_err(|e| MediaError::InvalidSdp(e.to_string()))?;
        // The engine pairs an initial remote `sendonly` offer only with a local
        // `recvonly` transceiver (otherwise it adds a second, trackless one and
        // ours would never be used). Present ours as recvonly for the pairing; the
        // answer is then recvonly either way (offer reversed ∩ sendrecv).
        let transceiver = &self.transceiver;
        let pair_as_recvonly =
            transceiver.mid().is_none() && sdp_direction(&remote) == Direction::SendOnly;
        let previous = transceiver.direction();
        if pair_as_recvonly {
            transceiver
                .set_direction(RTCRtpTransceiverDirection::Recvonly)
                .await;
        }
        let applied = self.pc.set_remote_description(desc).await;
        if pair_as_recvonly {
            transceiver.set_direction(previous).await;
        }
        applied.map_err(remote_description_error)?;
        let answer = self
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
        Ok((local, remote))
    }

    /// Applies the remote answer to our outstanding offer; returns our offer and the answer
    /// as the engine read them.
    pub(super) async fn apply_answer(
        &self,
        remote_sdp: &str,
    ) -> Result<(String, String), MediaError> {
        let our_offer = self
            .pc
            .pending_local_description()
            .await
            .map(|d| d.sdp)
            .unwrap_or_default();
        let fallback = "0";
        let (remote, _) = check_webrtc_sdp(
            remote_sdp,
            Remote::Answer {
                our_offer: &our_offer,
            },
            fallback,
            &self.codecs,
        )?;
        let desc = RTCSessionDescription::answer(remote.clone())
            .map_err(|e| MediaError::InvalidSdp(e.to_string()))?;
        self.pc
            .set_remote_description(desc)
            .await
            .map_err(remote_description_error)?;
        let local = self.pc.local_description().await.map(|d| d.sdp);
        Ok((local.unwrap_or_default(), remote))
    }

    /// Withdraws our outstanding re-offer, back to `direction`.
    ///
    /// webrtc 0.14 cannot apply an SDP rollback from `have-local-offer`, so the
    /// previously negotiated remote description is applied again as the answer
    /// to the withdrawn offer, which re-establishes exactly the old directions.
    pub(super) async fn rollback(&self, direction: Direction) -> Result<(), MediaError> {
        let previous_remote = self.pc.current_remote_description().await;
        let (Some(previous_remote), RTCSignalingState::HaveLocalOffer) =
            (previous_remote, self.pc.signaling_state())
        else {
            return Err(MediaError::InvalidState(
                "there is no outstanding re-offer to roll back".into(),
            ));
        };
        self.transceiver.set_direction(direction.to_rtc()).await;
        let answer = RTCSessionDescription::answer(previous_remote.sdp)
            .map_err(engine("re-reading the negotiated description"))?;
        self.pc
            .set_remote_description(answer)
            .await
            .map_err(engine("restoring the negotiated description"))
    }

    pub(super) async fn close(&self) {
        if let Err(e) = self.pc.close().await {
            tracing::debug!(error = %e, "closing the peer connection");
        }
    }

    /// Closes the connection in the background (a session dropped without `close`).
    pub(super) fn close_later(&self) {
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let pc = Arc::clone(&self.pc);
            runtime.spawn(async move {
                if let Err(e) = pc.close().await {
                    tracing::debug!(error = %e, "closing a dropped media session");
                }
            });
        }
    }

    /// Applies a local description and returns it once ICE gathering is complete
    /// (no trickle: SIP needs every candidate in the one body).
    async fn set_local_and_gather(
        &self,
        desc: RTCSessionDescription,
    ) -> Result<String, MediaError> {
        let started = Instant::now();
        let pc = &self.pc;
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

/// Whether a read error on the remote track is worth continuing after.
fn recoverable(e: &webrtc::Error) -> bool {
    matches!(e, webrtc::Error::ErrCodecNotFound | webrtc::Error::Rtp(_))
}

/// Reads the remote track into the shared receive side.
async fn read_track(shared: Arc<Shared>, track: Arc<TrackRemote>) {
    let mut shutdown = shared.shutdown.subscribe();
    let mut receiver = RtpReceiver::new(shared);
    let mut errors = 0u32;
    loop {
        let read = tokio::select! {
            _ = stopped(&mut shutdown) => break,
            read = track.read_rtp() => read,
        };
        match read {
            Ok((packet, _)) => {
                errors = 0;
                receiver.on_packet(packet, std::time::Instant::now());
            }
            Err(e) if recoverable(&e) && errors < MAX_READ_ERRORS => {
                errors += 1;
                tracing::debug!(error = %e, "skipping an unreadable RTP packet");
            }
            Err(e) => {
                tracing::debug!(error = %e, "remote audio track ended");
                break;
            }
        }
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
