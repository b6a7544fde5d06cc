//! Shared helpers for the `media_*` integration tests: two media sessions in one
//! process, on loopback, with tone sources and capture sinks.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hookflash_core::audio::{CaptureSink, ToneSource, SAMPLE_RATE};
use hookflash_core::media::{Codec, MediaConfig, MediaEvent, MediaProfile, MediaSession};
use tokio::sync::mpsc::UnboundedReceiver;

/// Alice's tone.
pub const ALICE_HZ: f64 = 440.0;
/// Bob's tone.
pub const BOB_HZ: f64 = 880.0;
/// The tones a capture is checked against.
pub const CANDIDATES: [f64; 2] = [ALICE_HZ, BOB_HZ];

/// One side of a call: a session saying `tone_hz` into a capture sink.
pub struct Peer {
    pub name: &'static str,
    pub session: MediaSession,
    pub events: UnboundedReceiver<MediaEvent>,
    pub heard: Arc<Mutex<Vec<i16>>>,
}

/// Logs to the test output when `RUST_LOG` is set (e.g. `RUST_LOG=hookflash_core=debug`).
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

impl Peer {
    /// A peer on the WebRTC profile.
    pub async fn new(name: &'static str, tone_hz: f64, codecs: Vec<Codec>) -> Peer {
        Self::with_profile(name, tone_hz, codecs, MediaProfile::WebRtc).await
    }

    /// A peer on the given media profile.
    pub async fn with_profile(
        name: &'static str,
        tone_hz: f64,
        codecs: Vec<Codec>,
        profile: MediaProfile,
    ) -> Peer {
        init_tracing();
        let sink = CaptureSink::new();
        let heard = sink.buffer();
        let config = MediaConfig {
            codecs,
            profile,
            ..MediaConfig::default()
        };
        let (session, events) =
            MediaSession::new(config, Box::new(ToneSource::new(tone_hz)), Box::new(sink))
                .await
                .expect("a media session on loopback must start");
        Peer {
            name,
            session,
            events,
            heard,
        }
    }

    /// How many samples the sink has received so far.
    pub fn heard_len(&self) -> usize {
        self.heard.lock().unwrap().len()
    }

    /// Everything the sink received after sample `from`.
    pub fn heard_since(&self, from: usize) -> Vec<i16> {
        let heard = self.heard.lock().unwrap();
        heard[from.min(heard.len())..].to_vec()
    }

    /// Waits for an event matching `pred`, skipping others; `None` on timeout.
    pub async fn wait_event(
        &mut self,
        timeout: Duration,
        mut pred: impl FnMut(&MediaEvent) -> bool,
    ) -> Option<MediaEvent> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(ev)) if pred(&ev) => return Some(ev),
                Ok(Some(_)) => continue,
                Ok(None) | Err(_) => return None,
            }
        }
    }

    /// Listens for `duration` and returns what was heard in that window.
    pub async fn listen(&self, duration: Duration) -> Vec<i16> {
        let start = self.heard_len();
        tokio::time::sleep(duration).await;
        self.heard_since(start)
    }
}

/// Time from the start of the offer to the first `Connected` and the first
/// decoded audio frame, as seen by each side.
#[derive(Debug)]
pub struct Timings {
    pub offer_created: Duration,
    pub negotiated: Duration,
    pub connected: [Duration; 2],
    pub first_audio: [Duration; 2],
}

/// Runs the offer/answer exchange (A offers, B answers) and waits until both
/// sides are connected and have decoded audio.
pub async fn call(a: &mut Peer, b: &mut Peer) -> Timings {
    let start = Instant::now();
    let offer = a.session.create_offer().await.expect("A's offer");
    let offer_created = start.elapsed();
    let answer = b.session.accept_offer(&offer).await.expect("B's answer");
    a.session
        .accept_answer(&answer)
        .await
        .expect("A applies the answer");
    let negotiated = start.elapsed();

    let (ta, tb) = tokio::join!(milestones(a, start), milestones(b, start));
    let connected = [ta.0, tb.0];
    let first_audio = [ta.1, tb.1];
    Timings {
        offer_created,
        negotiated,
        connected,
        first_audio,
    }
}

/// Waits for `Connected` and then `FirstAudioFrame` on one peer; returns the
/// time since `start` at which each arrived.
async fn milestones(peer: &mut Peer, start: Instant) -> (Duration, Duration) {
    let (mut connected, mut first_audio) = (None, None);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while connected.is_none() || first_audio.is_none() {
        match tokio::time::timeout_at(deadline, peer.events.recv()).await {
            Ok(Some(MediaEvent::Connected)) => connected = connected.or(Some(start.elapsed())),
            Ok(Some(MediaEvent::FirstAudioFrame)) => first_audio = Some(start.elapsed()),
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
    let connected =
        connected.unwrap_or_else(|| panic!("{} must see its media path up on loopback", peer.name));
    let first_audio = first_audio
        .unwrap_or_else(|| panic!("{} must decode audio from the other side", peer.name));
    (connected, first_audio)
}

/// Which of the two tones dominates `samples`, if any.
pub fn tone_of(samples: &[i16]) -> Option<f64> {
    hookflash_core::audio::dominant_tone(samples, &CANDIDATES, SAMPLE_RATE)
}

/// Whether `samples` contain the tone at `hz`.
pub fn has_tone(samples: &[i16], hz: f64) -> bool {
    hookflash_core::audio::tone_present(samples, hz, SAMPLE_RATE)
}
