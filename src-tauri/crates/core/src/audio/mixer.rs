//! The engine's meeting points between calls and devices: the [`Mixer`] on the
//! playback side and the [`CaptureHub`] on the capture side.
//!
//! * Each call gets a [`MixerInput`] (an [`AudioSink`]): its decoded frames go
//!   into the input's own [`DriftBuffer`]. The output device's callback asks the
//!   mixer for as many samples as it needs; the mixer pulls that much from every
//!   input and from every tone generator and adds them up (with a soft limiter).
//!   A held call writes nothing, so its input is silent.
//! * Each call gets a [`CaptureTap`] (an [`AudioSource`]): the input device's
//!   callback pushes every captured chunk into every tap; the media pump pulls a
//!   20 ms frame from its tap.
//!
//! Both sides lock only short critical sections (copying a few hundred samples),
//! never across I/O, so the sound card's real-time thread is not held up. The
//! device behind a mixer or hub can change at any time; calls keep their input
//! and tap and notice nothing.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use super::drift::{DriftBuffer, DriftStats};
use super::processing::{EchoReference, ProcessingSettings, VoiceProcessor};
use super::{AudioSink, AudioSource, DeviceError, FRAME_SAMPLES};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Something the mixer can pull samples from directly, at the device's pace
/// (tones: generated exactly when needed, with no buffering delay).
pub trait Generator: Send {
    /// Adds the next `out.len()` samples into `out` (mixing, not overwriting).
    /// Returns false once the generator is finished and can be removed.
    fn add_to(&mut self, out: &mut [f32]) -> bool;
}

/// Called with the number of active inputs whenever it changes between zero and
/// non-zero (the engine opens the device on demand and closes it when idle).
pub(crate) type DemandHook = Arc<dyn Fn(bool) + Send + Sync>;

/// What a mixer or a capture hub shares with the device behind it: the device's period,
/// which sizes each call's drift buffer, and the hook that opens the device on demand.
struct DeviceLink {
    /// The device period in samples at 48 kHz.
    period: AtomicU32,
    demand: Mutex<Option<DemandHook>>,
}

impl DeviceLink {
    fn new() -> Self {
        DeviceLink {
            period: AtomicU32::new(480),
            demand: Mutex::new(None),
        }
    }

    fn set_demand_hook(&self, hook: DemandHook, active: bool) {
        *lock(&self.demand) = Some(Arc::clone(&hook));
        hook(active);
    }

    fn set_period(&self, samples: usize) {
        self.period
            .store(samples.clamp(64, 9_600) as u32, Ordering::Relaxed);
    }

    /// A call's buffer: the device moves a period at a time, the call 20 ms at a time on the
    /// system clock with a few ms of scheduling jitter, so keep half a period plus 3 ms.
    fn drift_buffer(&self) -> DriftBuffer {
        let period = self.period.load(Ordering::Relaxed) as usize;
        DriftBuffer::new(period / 2 + 144, 1_440, 48_000)
    }

    /// Tell the device side when demand starts or stops.
    fn changed(&self, was: bool, now: bool) {
        if was != now {
            let hook = lock(&self.demand).clone();
            if let Some(hook) = hook {
                hook(now);
            }
        }
    }
}

struct InputSlot {
    id: u64,
    buffer: Arc<Mutex<DriftBuffer>>,
}

struct GeneratorSlot {
    id: u64,
    generator: Box<dyn Generator>,
}

#[derive(Default)]
struct MixerState {
    inputs: Vec<InputSlot>,
    generators: Vec<GeneratorSlot>,
    scratch: Vec<f32>,
}

/// Sums every call's audio and every tone for one output device.
pub struct Mixer {
    name: &'static str,
    state: Mutex<MixerState>,
    next_id: AtomicU64,
    link: DeviceLink,
    /// Where what this mixer plays is recorded for the echo canceller (the speaker's).
    echo: Option<Arc<EchoReference>>,
}

impl Mixer {
    /// An empty mixer; `name` is for logs (`speaker`, `ringer`).
    pub fn new(name: &'static str) -> Arc<Mixer> {
        Self::build(name, None)
    }

    /// An empty mixer whose output is also recorded in `echo` (the speaker's
    /// mixer: its sound is what the microphone's echo canceller removes).
    pub fn with_echo_reference(name: &'static str, echo: Arc<EchoReference>) -> Arc<Mixer> {
        Self::build(name, Some(echo))
    }

    fn build(name: &'static str, echo: Option<Arc<EchoReference>>) -> Arc<Mixer> {
        Arc::new(Mixer {
            name,
            state: Mutex::new(MixerState::default()),
            next_id: AtomicU64::new(1),
            link: DeviceLink::new(),
            echo,
        })
    }

    pub(crate) fn set_demand_hook(&self, hook: DemandHook) {
        self.link.set_demand_hook(hook, self.is_active());
    }

    /// Tells the mixer the output device's period (48 kHz samples per callback);
    /// input buffers then keep just enough in reserve for it.
    pub(crate) fn set_device_period(&self, samples: usize) {
        self.link.set_period(samples);
    }

    /// Tells the echo canceller (if this mixer feeds one) how long the device
    /// takes from a mixed sample to its playing.
    pub(crate) fn set_output_latency(&self, latency: std::time::Duration) {
        if let Some(echo) = &self.echo {
            echo.set_output_latency(latency);
        }
    }

    /// Whether anything is connected (a call or a tone).
    pub fn is_active(&self) -> bool {
        let s = lock(&self.state);
        !s.inputs.is_empty() || !s.generators.is_empty()
    }

    fn notify(&self, was: bool) {
        self.link.changed(was, self.is_active());
    }

    /// A new input for one call's decoded audio.
    pub fn add_input(self: &Arc<Self>, label: &str) -> MixerInput {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let buffer = Arc::new(Mutex::new(self.link.drift_buffer()));
        let was = self.is_active();
        lock(&self.state).inputs.push(InputSlot {
            id,
            buffer: Arc::clone(&buffer),
        });
        self.notify(was);
        tracing::debug!(mixer = self.name, input = id, "mixer input added");
        MixerInput {
            mixer: Arc::downgrade(self),
            id,
            buffer,
            label: format!("{}:{label}", self.name),
            scratch: Vec::with_capacity(FRAME_SAMPLES),
        }
    }

    /// Adds a generator (a tone); returns its id for [`remove_generator`](Self::remove_generator).
    pub fn add_generator(&self, generator: Box<dyn Generator>) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let was = self.is_active();
        lock(&self.state)
            .generators
            .push(GeneratorSlot { id, generator });
        self.notify(was);
        id
    }

    /// Removes a generator (a no-op if it already finished).
    pub fn remove_generator(&self, id: u64) {
        let was = self.is_active();
        lock(&self.state).generators.retain(|g| g.id != id);
        self.notify(was);
    }

    /// Whether a generator is still playing.
    pub fn has_generator(&self, id: u64) -> bool {
        lock(&self.state).generators.iter().any(|g| g.id == id)
    }

    fn remove_input(&self, id: u64) {
        let was = self.is_active();
        lock(&self.state).inputs.retain(|i| i.id != id);
        self.notify(was);
    }

    /// Fills `out` with the mix of every input and generator (mono, 48 kHz).
    pub fn mix(&self, out: &mut [f32]) {
        out.fill(0.0);
        let was;
        let finished;
        {
            let mut guard = lock(&self.state);
            let state = &mut *guard;
            was = !state.inputs.is_empty() || !state.generators.is_empty();
            state.scratch.resize(out.len(), 0.0);
            for input in &state.inputs {
                lock(&input.buffer).pull(&mut state.scratch);
                for (o, s) in out.iter_mut().zip(&state.scratch) {
                    *o += s;
                }
            }
            let before = state.generators.len();
            state.generators.retain_mut(|g| g.generator.add_to(out));
            finished = before != state.generators.len();
        }
        if finished {
            self.notify(was);
        }
        for o in out.iter_mut() {
            // Soft limiter: transparent below about -6 dBFS, never clips.
            let x = *o;
            *o = if x.abs() <= 0.5 {
                x
            } else {
                x.signum() * (0.5 + 0.5 * ((x.abs() - 0.5) / 0.5).tanh())
            };
        }
        if let Some(echo) = &self.echo {
            echo.feed(out);
        }
    }
}

/// One call's way into a [`Mixer`]: an [`AudioSink`]. Dropping it disconnects.
pub struct MixerInput {
    mixer: Weak<Mixer>,
    id: u64,
    buffer: Arc<Mutex<DriftBuffer>>,
    label: String,
    scratch: Vec<f32>,
}

impl MixerInput {
    /// What the input's drift buffer did so far.
    pub fn stats(&self) -> DriftStats {
        lock(&self.buffer).stats()
    }
}

impl AudioSink for MixerInput {
    fn write_frame(&mut self, frame: &[i16]) -> Result<(), DeviceError> {
        if self.mixer.strong_count() == 0 {
            return Err(DeviceError::Closed);
        }
        self.scratch.clear();
        self.scratch
            .extend(frame.iter().map(|&s| f32::from(s) / 32_768.0));
        lock(&self.buffer).push(&self.scratch);
        Ok(())
    }

    fn describe(&self) -> String {
        self.label.clone()
    }
}

impl Drop for MixerInput {
    fn drop(&mut self) {
        tracing::debug!(input = %self.label, stats = ?self.stats(), "mixer input closed");
        if let Some(mixer) = self.mixer.upgrade() {
            mixer.remove_input(self.id);
        }
    }
}

struct TapSlot {
    id: u64,
    buffer: Arc<Mutex<DriftBuffer>>,
}

/// Hands every captured chunk to every tap, and measures the level.
pub struct CaptureHub {
    taps: Mutex<Vec<TapSlot>>,
    next_id: AtomicU64,
    /// Meters keep the device open without a call (the settings page).
    meters: AtomicU32,
    /// The recent peak level, as f32 bits (linear, 0..1), decaying.
    level: AtomicU32,
    link: DeviceLink,
    /// Echo cancellation and noise suppression for real microphones, and its output.
    processor: Mutex<(VoiceProcessor, Vec<f32>)>,
}

impl CaptureHub {
    /// A hub with no taps, whose real microphones are not processed.
    pub fn new() -> Arc<CaptureHub> {
        Self::with_processing(Arc::new(EchoReference::new()), ProcessingSettings::OFF)
    }

    /// A hub with no taps that processes real microphones with `settings`,
    /// cancelling the echo of what `echo` records.
    pub fn with_processing(
        echo: Arc<EchoReference>,
        settings: ProcessingSettings,
    ) -> Arc<CaptureHub> {
        Arc::new(CaptureHub {
            taps: Mutex::new(Vec::new()),
            next_id: AtomicU64::new(1),
            meters: AtomicU32::new(0),
            level: AtomicU32::new(0),
            link: DeviceLink::new(),
            processor: Mutex::new((VoiceProcessor::new(echo, settings), Vec::new())),
        })
    }

    /// The voice processing applied to real microphones.
    pub fn processing(&self) -> ProcessingSettings {
        lock(&self.processor).0.settings()
    }

    /// Changes the voice processing for real microphones, also mid-call.
    pub fn set_processing(&self, settings: ProcessingSettings) {
        lock(&self.processor).0.set_settings(settings);
    }

    pub(crate) fn set_demand_hook(&self, hook: DemandHook) {
        self.link.set_demand_hook(hook, self.is_active());
    }

    /// Tells the hub the input device's period, so that taps keep just enough in reserve.
    pub(crate) fn set_device_period(&self, samples: usize) {
        self.link.set_period(samples);
    }

    /// Whether a tap or a meter wants capture.
    pub fn is_active(&self) -> bool {
        !lock(&self.taps).is_empty() || self.meters.load(Ordering::Relaxed) > 0
    }

    fn notify(&self, was: bool) {
        self.link.changed(was, self.is_active());
    }

    /// A new tap for one call's microphone.
    pub fn add_tap(self: &Arc<Self>, label: &str) -> CaptureTap {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let buffer = Arc::new(Mutex::new(self.link.drift_buffer()));
        let was = self.is_active();
        lock(&self.taps).push(TapSlot {
            id,
            buffer: Arc::clone(&buffer),
        });
        self.notify(was);
        CaptureTap {
            hub: Arc::downgrade(self),
            id,
            buffer,
            label: format!("microphone:{label}"),
            scratch: vec![0.0; FRAME_SAMPLES],
        }
    }

    pub(crate) fn add_meter(&self) {
        let was = self.is_active();
        self.meters.fetch_add(1, Ordering::Relaxed);
        self.notify(was);
    }

    pub(crate) fn remove_meter(&self) {
        let was = self.is_active();
        let _ = self
            .meters
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |m| m.checked_sub(1));
        self.notify(was);
    }

    fn remove_tap(&self, id: u64) {
        let was = self.is_active();
        lock(&self.taps).retain(|t| t.id != id);
        self.notify(was);
    }

    /// The microphone level: a peak meter with a 300 ms decay, 0.0..=1.0 linear.
    pub fn level(&self) -> f32 {
        f32::from_bits(self.level.load(Ordering::Relaxed))
    }

    /// Delivers mono 48 kHz samples from a real microphone to every tap, after
    /// voice processing (echo cancellation, noise suppression) if it is on.
    /// `latency`: how long ago the first of them was captured, when the device says.
    pub(crate) fn push_captured(&self, samples: &[f32], latency: Option<std::time::Duration>) {
        self.meter(samples);
        if lock(&self.taps).is_empty() {
            return;
        }
        let mut guard = lock(&self.processor);
        let (processor, out) = &mut *guard;
        if let Some(latency) = latency {
            processor.set_input_latency(latency);
        }
        out.clear();
        processor.process(samples, out);
        self.deliver(out);
    }

    /// Delivers mono 48 kHz samples to every tap as they are (virtual
    /// microphones: there is no room, so no echo and no noise).
    pub fn push(&self, samples: &[f32]) {
        self.meter(samples);
        self.deliver(samples);
    }

    fn meter(&self, samples: &[f32]) {
        let peak = samples.iter().fold(0f32, |m, s| m.max(s.abs())).min(1.0);
        let decay = 0.5f32.powf(samples.len() as f32 / (0.3 * 48_000.0) * 3.3);
        let old = self.level() * decay;
        self.level.store(old.max(peak).to_bits(), Ordering::Relaxed);
    }

    fn deliver(&self, samples: &[f32]) {
        for tap in lock(&self.taps).iter() {
            lock(&tap.buffer).push(samples);
        }
    }

    /// Starts the voice processing afresh (a new speaker: a new echo path, and
    /// new latencies to align the echo canceller with).
    pub(crate) fn reset_processing(&self) {
        lock(&self.processor).0.reset();
    }

    /// Forgets what the taps hold (after a device switch: the new device starts
    /// a fresh stream).
    pub(crate) fn flush(&self) {
        for tap in lock(&self.taps).iter() {
            lock(&tap.buffer).clear();
        }
        lock(&self.processor).0.reset();
    }
}

/// One call's microphone: an [`AudioSource`] fed by whatever device the engine
/// has open. Silence while no device delivers. Dropping it disconnects.
pub struct CaptureTap {
    hub: Weak<CaptureHub>,
    id: u64,
    buffer: Arc<Mutex<DriftBuffer>>,
    label: String,
    scratch: Vec<f32>,
}

impl CaptureTap {
    /// What the tap's drift buffer did so far.
    pub fn stats(&self) -> DriftStats {
        lock(&self.buffer).stats()
    }
}

impl AudioSource for CaptureTap {
    fn read_frame(&mut self, out: &mut [i16]) -> Result<(), DeviceError> {
        if self.hub.strong_count() == 0 {
            return Err(DeviceError::Closed);
        }
        self.scratch.resize(out.len(), 0.0);
        lock(&self.buffer).pull(&mut self.scratch);
        for (o, s) in out.iter_mut().zip(&self.scratch) {
            *o = (s * 32_768.0).round().clamp(-32_768.0, 32_767.0) as i16;
        }
        Ok(())
    }

    fn describe(&self) -> String {
        self.label.clone()
    }
}

impl Drop for CaptureTap {
    fn drop(&mut self) {
        tracing::debug!(tap = %self.label, stats = ?self.stats(), "capture tap closed");
        if let Some(hub) = self.hub.upgrade() {
            hub.remove_tap(self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::{dominant_tone, AudioSource, ToneSource};

    #[test]
    fn two_calls_are_mixed_and_a_silent_one_adds_nothing() {
        let mixer = Mixer::new("speaker");
        let mut a = mixer.add_input("a");
        let mut b = mixer.add_input("b");
        let _held = mixer.add_input("held");
        let mut ta = ToneSource::new(440.0);
        let mut tb = ToneSource::new(1_000.0);
        let mut frame = vec![0i16; FRAME_SAMPLES];
        let mut heard = Vec::new();
        let mut out = vec![0f32; 480];
        for _ in 0..50 {
            ta.read_frame(&mut frame).unwrap();
            a.write_frame(&frame).unwrap();
            tb.read_frame(&mut frame).unwrap();
            b.write_frame(&frame).unwrap();
            for _ in 0..2 {
                mixer.mix(&mut out);
                heard.extend(out.iter().map(|s| (s * 32_767.0) as i16));
            }
        }
        let tail = &heard[heard.len() / 2..];
        assert!(crate::audio::tone_present(tail, 440.0, 48_000));
        assert!(
            crate::audio::tone_present(tail, 1_000.0, 48_000),
            "both calls are heard at once"
        );
        drop(a);
        drop(b);
        assert!(
            mixer.is_active(),
            "the held call's input is still connected"
        );
        let _ = dominant_tone(tail, &[440.0], 48_000);
    }

    #[test]
    fn a_tap_delivers_what_the_device_captured_and_demand_follows_taps() {
        let hub = CaptureHub::new();
        let demand = Arc::new(Mutex::new(Vec::new()));
        let d = Arc::clone(&demand);
        hub.set_demand_hook(Arc::new(move |on| d.lock().unwrap().push(on)));
        let mut tap = hub.add_tap("c1");
        let mut tone = ToneSource::new(700.0);
        let mut frame = vec![0i16; FRAME_SAMPLES];
        let mut got = Vec::new();
        for _ in 0..25 {
            tone.read_frame(&mut frame).unwrap();
            let f: Vec<f32> = frame.iter().map(|&s| f32::from(s) / 32_768.0).collect();
            hub.push(&f[..480]);
            hub.push(&f[480..]);
            let mut out = vec![0i16; FRAME_SAMPLES];
            tap.read_frame(&mut out).unwrap();
            got.extend(out);
        }
        assert!(crate::audio::tone_present(&got[4_800..], 700.0, 48_000));
        assert!(
            hub.level() > 0.1,
            "the meter sees the tone: {}",
            hub.level()
        );
        drop(tap);
        assert_eq!(
            *demand.lock().unwrap(),
            vec![false, true, false],
            "the device is wanted while a tap exists and released after"
        );
    }
}
