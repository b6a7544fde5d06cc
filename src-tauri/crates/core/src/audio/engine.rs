//! The audio engine: one [`Mixer`] per output role (speaker, ringer), one
//! [`CaptureHub`] for the microphone, and one runner thread per role that opens
//! and closes the device behind it.
//!
//! ```text
//!  cpal input cb ──► CaptureHub ──(echo cancellation, noise suppression)──►
//!                        CaptureTap (per call, DriftBuffer) ──► media pump (20 ms)
//!  media playout (20 ms) ──► MixerInput (per call, DriftBuffer) ─┐
//!                               tones (Generator) ──────────────┼─► Mixer ──► cpal output cb
//!                                    what the speaker plays ◄───┘ (the echo reference)
//! ```
//!
//! Voice processing runs on real microphones only; see [`super::processing`].
//!
//! A runner opens its device only while something wants it (a call, a tone, a
//! level meter) and closes it when idle. It reports a device that fails — an
//! error from cpal, a virtual device that returns an error, or a stream whose
//! callbacks stopped for 1.5 s (watchdog) — to the device manager, which picks
//! the fallback and tells the runner to open that instead. Calls hold mixer
//! inputs and capture taps, never devices, so none of this touches them.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::cpal_backend::{self, now_ms, CpalDevice};
use super::mixer::{CaptureHub, Mixer};
use super::processing::{EchoReference, ProcessingSettings};
use super::{AudioSink, AudioSource, DeviceError, FRAME_MS, FRAME_SAMPLES};

/// What a device is used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum DeviceRole {
    /// Call audio in.
    Microphone,
    /// Call audio out, ringback, key tones.
    Speaker,
    /// The ringtone for incoming calls.
    Ringer,
}

/// Opens a virtual source device.
pub type SourceOpener = Arc<dyn Fn() -> Result<Box<dyn AudioSource>, DeviceError> + Send + Sync>;
/// Opens a virtual sink device.
pub type SinkOpener = Arc<dyn Fn() -> Result<Box<dyn AudioSink>, DeviceError> + Send + Sync>;

/// How to open a device.
#[derive(Clone)]
pub(crate) enum Backend {
    Cpal(CpalDevice),
    Source(SourceOpener),
    Sink(SinkOpener),
}

/// A device to open for a role.
#[derive(Clone)]
pub(crate) struct Target {
    pub id: String,
    pub backend: Backend,
}

/// Reports from runners: (role, device id, error).
pub(crate) type FailureHook = Arc<dyn Fn(DeviceRole, String, DeviceError) + Send + Sync>;

enum Msg {
    Select(Option<Target>),
    Demand(bool),
    Failed { generation: u64, error: DeviceError },
    Shutdown,
}

/// A virtual device pumped by a thread at 20 ms.
struct VirtualStream {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for VirtualStream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// An open device; held only to keep it open (dropping closes it).
#[allow(dead_code)]
enum Active {
    Cpal(cpal_backend::OpenStream),
    Virtual(VirtualStream),
}

struct RunnerState {
    role: DeviceRole,
    mixer: Option<Arc<Mixer>>,
    hub: Option<Arc<CaptureHub>>,
    tx: mpsc::Sender<Msg>,
    hook: FailureHook,
    selected: Option<Target>,
    demand: bool,
    active: Option<(String, Active, Instant)>,
    /// A device that failed is not reopened until selected again.
    failed: Option<String>,
    generation: u64,
    heartbeat: Arc<AtomicU64>,
    /// Silent reopenings after a stall, before the device is reported as failed
    /// (a transient stall, e.g. a sound server restarting, should not cost the
    /// user their device). Streams are not expected to stall on opening: the
    /// first PulseAudio stalls seen in tests came from the test's null sink,
    /// which renders 2 s ahead while idle (see `tests/src/pulse.rs`).
    stall_retries: u32,
}

/// One role's device thread.
pub(crate) struct Runner {
    tx: mpsc::Sender<Msg>,
    thread: Option<JoinHandle<()>>,
}

impl Runner {
    fn spawn(
        role: DeviceRole,
        mixer: Option<Arc<Mixer>>,
        hub: Option<Arc<CaptureHub>>,
        hook: FailureHook,
    ) -> Runner {
        let (tx, rx) = mpsc::channel();
        let own_tx = tx.clone();
        let thread = std::thread::Builder::new()
            .name(format!("hookflash-audio-{role:?}").to_ascii_lowercase())
            .spawn(move || {
                // Built on the thread: an open cpal stream must not cross threads.
                let mut state = RunnerState {
                    role,
                    mixer,
                    hub,
                    tx: own_tx,
                    hook,
                    selected: None,
                    demand: false,
                    active: None,
                    failed: None,
                    generation: 0,
                    heartbeat: Arc::new(AtomicU64::new(0)),
                    stall_retries: 0,
                };
                state.run(rx)
            })
            .ok();
        if thread.is_none() {
            tracing::error!(?role, "cannot start the audio device thread");
        }
        Runner { tx, thread }
    }

    fn send(&self, msg: Msg) {
        let _ = self.tx.send(msg);
    }

    fn demand_hook(&self) -> Arc<dyn Fn(bool) + Send + Sync> {
        let tx = std::sync::Mutex::new(self.tx.clone());
        Arc::new(move |on| {
            if let Ok(tx) = tx.lock() {
                let _ = tx.send(Msg::Demand(on));
            }
        })
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        let _ = self.tx.send(Msg::Shutdown);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl RunnerState {
    fn run(&mut self, rx: mpsc::Receiver<Msg>) {
        loop {
            match rx.recv_timeout(Duration::from_millis(250)) {
                Ok(Msg::Select(target)) => {
                    self.failed = None;
                    self.stall_retries = 0;
                    self.selected = target;
                }
                Ok(Msg::Demand(on)) => self.demand = on,
                Ok(Msg::Failed { generation, error }) => {
                    if generation == self.generation && self.active.is_some() {
                        self.fail(error);
                    }
                }
                Ok(Msg::Shutdown) | Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => self.watchdog(),
            }
            self.reconcile();
        }
        self.active = None;
    }

    fn watchdog(&mut self) {
        let stalled = match &self.active {
            Some((_, Active::Cpal(_), opened)) => {
                let last = self.heartbeat.load(Ordering::Relaxed);
                opened.elapsed() > Duration::from_millis(1_500)
                    && now_ms().saturating_sub(last) > 1_500
            }
            _ => false,
        };
        if stalled && self.stall_retries < 2 {
            self.stall_retries += 1;
            tracing::warn!(role = ?self.role, "audio stream stalled; reopening it");
            self.active = None;
        } else if stalled {
            self.fail(DeviceError::Io(
                "the device stopped delivering audio".into(),
            ));
        }
    }

    fn fail(&mut self, error: DeviceError) {
        if let Some((id, _, _)) = self.active.take() {
            tracing::warn!(role = ?self.role, device = %id, error = %error, "audio device failed");
            self.failed = Some(id.clone());
            (self.hook)(self.role, id, error);
        }
    }

    fn reconcile(&mut self) {
        let want = if self.demand {
            self.selected
                .as_ref()
                .filter(|t| self.failed.as_deref() != Some(t.id.as_str()))
                .cloned()
        } else {
            None
        };
        let current = self.active.as_ref().map(|(id, _, _)| id.clone());
        match (want, current) {
            (None, Some(_)) => {
                tracing::debug!(role = ?self.role, "closing the idle audio device");
                self.active = None;
            }
            (Some(t), current) if current.as_deref() != Some(t.id.as_str()) => {
                self.active = None;
                self.generation += 1;
                match self.open(&t) {
                    Ok(active) => {
                        match (&self.hub, self.role) {
                            // A new microphone: a fresh stream for every tap.
                            (Some(hub), DeviceRole::Microphone) => hub.flush(),
                            // A new speaker: a new echo path for the canceller.
                            (Some(hub), DeviceRole::Speaker) => hub.reset_processing(),
                            _ => {}
                        }
                        self.active = Some((t.id.clone(), active, Instant::now()));
                    }
                    Err(e) => {
                        tracing::warn!(role = ?self.role, device = %t.id, error = %e, "cannot open the audio device");
                        self.failed = Some(t.id.clone());
                        (self.hook)(self.role, t.id, e);
                    }
                }
            }
            _ => {}
        }
    }

    fn open(&mut self, target: &Target) -> Result<Active, DeviceError> {
        let generation = self.generation;
        let tx = std::sync::Mutex::new(self.tx.clone());
        let fail: cpal_backend::FailFn = Arc::new(move |error| {
            if let Ok(tx) = tx.lock() {
                let _ = tx.send(Msg::Failed { generation, error });
            }
        });
        self.heartbeat.store(now_ms(), Ordering::Relaxed);
        match (&target.backend, &self.mixer, &self.hub) {
            (Backend::Cpal(dev), Some(mixer), _) => {
                let s = cpal_backend::open_output(
                    dev,
                    Arc::clone(mixer),
                    fail,
                    Arc::clone(&self.heartbeat),
                )?;
                tracing::info!(role = ?self.role, stream = %s.description, "audio output open");
                Ok(Active::Cpal(s))
            }
            (Backend::Cpal(dev), None, Some(hub)) => {
                let s = cpal_backend::open_input(
                    dev,
                    Arc::clone(hub),
                    fail,
                    Arc::clone(&self.heartbeat),
                )?;
                tracing::info!(role = ?self.role, stream = %s.description, "audio input open");
                Ok(Active::Cpal(s))
            }
            (Backend::Sink(open), Some(mixer), _) => {
                let sink = open()?;
                Ok(Active::Virtual(virtual_output(
                    sink,
                    Arc::clone(mixer),
                    fail,
                )))
            }
            (Backend::Source(open), None, Some(hub)) => {
                let source = open()?;
                Ok(Active::Virtual(virtual_input(
                    source,
                    Arc::clone(hub),
                    fail,
                )))
            }
            _ => Err(DeviceError::Spec {
                spec: target.id.clone(),
                reason: format!("cannot be used as the {:?}", self.role).to_ascii_lowercase(),
            }),
        }
    }
}

/// Runs `tick` every 20 ms on absolute deadlines until stopped or it fails.
fn clocked(
    name: &str,
    mut tick: impl FnMut() -> Result<(), DeviceError> + Send + 'static,
    fail: cpal_backend::FailFn,
) -> VirtualStream {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    let thread = std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            let period = Duration::from_millis(u64::from(FRAME_MS));
            let mut next = Instant::now();
            while !flag.load(Ordering::Relaxed) {
                if let Err(e) = tick() {
                    fail(e);
                    return;
                }
                next += period;
                let now = Instant::now();
                if next > now {
                    std::thread::sleep(next - now);
                } else if now - next > Duration::from_millis(200) {
                    next = now;
                }
            }
        })
        .ok();
    VirtualStream { stop, thread }
}

fn virtual_output(
    mut sink: Box<dyn AudioSink>,
    mixer: Arc<Mixer>,
    fail: cpal_backend::FailFn,
) -> VirtualStream {
    mixer.set_device_period(FRAME_SAMPLES);
    let mut buf = vec![0f32; FRAME_SAMPLES];
    let mut pcm = vec![0i16; FRAME_SAMPLES];
    clocked(
        "hookflash-virtual-out",
        move || {
            mixer.mix(&mut buf);
            for (p, s) in pcm.iter_mut().zip(&buf) {
                *p = (s * 32_768.0).round().clamp(-32_768.0, 32_767.0) as i16;
            }
            sink.write_frame(&pcm)
        },
        fail,
    )
}

fn virtual_input(
    mut source: Box<dyn AudioSource>,
    hub: Arc<CaptureHub>,
    fail: cpal_backend::FailFn,
) -> VirtualStream {
    hub.set_device_period(FRAME_SAMPLES);
    let mut pcm = vec![0i16; FRAME_SAMPLES];
    let mut buf = vec![0f32; FRAME_SAMPLES];
    clocked(
        "hookflash-virtual-in",
        move || {
            source.read_frame(&mut pcm)?;
            for (b, &s) in buf.iter_mut().zip(&pcm) {
                *b = f32::from(s) / 32_768.0;
            }
            hub.push(&buf);
            Ok(())
        },
        fail,
    )
}

/// The mixers, the capture hub and their device threads.
pub(crate) struct Engine {
    pub speaker: Arc<Mixer>,
    pub ringer: Arc<Mixer>,
    pub hub: Arc<CaptureHub>,
    microphone_runner: Runner,
    speaker_runner: Runner,
    ringer_runner: Runner,
}

impl Engine {
    pub fn new(hook: FailureHook, processing: ProcessingSettings) -> Engine {
        let echo = Arc::new(EchoReference::new());
        let speaker = Mixer::with_echo_reference("speaker", Arc::clone(&echo));
        let ringer = Mixer::new("ringer");
        let hub = CaptureHub::with_processing(echo, processing);
        let microphone_runner = Runner::spawn(
            DeviceRole::Microphone,
            None,
            Some(Arc::clone(&hub)),
            Arc::clone(&hook),
        );
        let speaker_runner = Runner::spawn(
            DeviceRole::Speaker,
            Some(Arc::clone(&speaker)),
            Some(Arc::clone(&hub)),
            Arc::clone(&hook),
        );
        let ringer_runner =
            Runner::spawn(DeviceRole::Ringer, Some(Arc::clone(&ringer)), None, hook);
        hub.set_demand_hook(microphone_runner.demand_hook());
        speaker.set_demand_hook(speaker_runner.demand_hook());
        ringer.set_demand_hook(ringer_runner.demand_hook());
        Engine {
            speaker,
            ringer,
            hub,
            microphone_runner,
            speaker_runner,
            ringer_runner,
        }
    }

    /// Puts `target` behind `role` (`None`: nothing; the role is idle).
    pub fn select(&self, role: DeviceRole, target: Option<Target>) {
        let runner = match role {
            DeviceRole::Microphone => &self.microphone_runner,
            DeviceRole::Speaker => &self.speaker_runner,
            DeviceRole::Ringer => &self.ringer_runner,
        };
        runner.send(Msg::Select(target));
    }
}
