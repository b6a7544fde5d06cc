//! Voice processing on the microphone: acoustic echo cancellation and noise
//! suppression, both on by default ([`ProcessingSettings`]).
//!
//! The processing is WebRTC's own (AEC3, its noise suppressor and high-pass
//! filter) in the pure-Rust port `sonora`, so there is no C++ to build and no old
//! system library to match. It runs where the sound is:
//!
//! ```text
//!  speaker Mixer ── what it plays ──► EchoReference (≤ 200 ms FIFO)
//!                                          │ drained before each 10 ms block
//!  cpal input cb ──► VoiceProcessor ───────┴──► CaptureHub taps (every call)
//! ```
//!
//! * Only real microphones are processed. A virtual microphone (a tone, a file)
//!   has no room around it, so there is no echo to cancel, and suppressing
//!   "noise" in a test tone would only damage it.
//! * The processor works in 10 ms blocks. A device that delivers 10 ms periods
//!   (what the engine asks for) passes straight through without added delay;
//!   other periods wait for at most one block.
//! * One processor serves every call: the echo comes from the speaker, which
//!   plays the mix of all calls, so it is cancelled once, before the taps.
//! * AEC3 estimates the echo delay itself (the reference is analysed before the
//!   capture it echoes into, as the speaker's buffer delays the real sound), but
//!   only down to about 3 ms. With devices so fast that the echo could come
//!   sooner (low-latency cards, a sound server's monitor), the microphone is held
//!   back by what their latencies lack ([`MIN_ECHO_LAG_MS`]); the first half
//!   second of a stream, while the devices report their latencies, passes
//!   unprocessed.
//!
//! It costs about 2.4 % of one core per open microphone (AEC3 and noise
//! suppression at 48 kHz), whatever the number of calls.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sonora::config::{EchoCanceller, HighPassFilter, NoiseSuppression};
use sonora::{AudioProcessing, Config, StreamConfig};

use super::SAMPLE_RATE;

/// Samples in one processing block: 10 ms at 48 kHz.
pub const BLOCK: usize = (SAMPLE_RATE / 100) as usize;

/// The most reference audio kept while the microphone side does not drain it.
const REFERENCE_CAP: usize = 20 * BLOCK;

/// The delay between playing a sample and capturing its echo that AEC3 starts
/// its own estimation from: two 10 ms device periods and the sound server's
/// buffering.
const INITIAL_DELAY_MS: i32 = 40;

/// The least lag, in ms, between the newest reference block AEC3 has been given
/// and the echo of it in the microphone block it processes, that the devices'
/// latencies must provide.
///
/// AEC3 cannot cancel an echo that reaches it less than about 3 ms after its
/// reference (measured with [`super::SpeechSource`]: echo paths of 0-2 ms stall
/// at 2-4 dB, 3 ms and more reach 75 dB), and the reference reaches it in whole
/// 10 ms blocks, so up to 10 ms late. When the speaker's and the microphone's own latencies add up to less
/// than this (low-latency devices, a sound server's monitor), the microphone is
/// held back by the difference; typical devices need no hold at all.
pub const MIN_ECHO_LAG_MS: u32 = 16;

/// Captured chunks to wait for the speaker's latency before concluding there is
/// no real speaker.
const LATENCY_WATCH_BLOCKS: u32 = 100;

/// Latency reports (captured chunks with both latencies known) to take the least of.
const LATENCY_SAMPLES: u32 = 40;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Which voice processing runs on real microphones; persisted with the device
/// selection. Both are on unless the user turns them off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProcessingSettings {
    /// Remove the far end's voice, played by the speaker, from the microphone.
    #[serde(default = "on")]
    pub echo_cancellation: bool,
    /// Remove steady background noise (fans, hum, hiss) from the microphone.
    #[serde(default = "on")]
    pub noise_suppression: bool,
}

fn on() -> bool {
    true
}

impl Default for ProcessingSettings {
    fn default() -> Self {
        ProcessingSettings {
            echo_cancellation: true,
            noise_suppression: true,
        }
    }
}

impl ProcessingSettings {
    /// Neither echo cancellation nor noise suppression.
    pub const OFF: ProcessingSettings = ProcessingSettings {
        echo_cancellation: false,
        noise_suppression: false,
    };

    fn any(self) -> bool {
        self.echo_cancellation || self.noise_suppression
    }
}

/// What the speaker plays, kept for the echo canceller.
///
/// The speaker's mixer [`feed`](Self::feed)s every mixed chunk; the microphone
/// side takes it in 10 ms blocks. Nothing is kept while no echo canceller listens,
/// and at most 200 ms are kept while one does (older audio is dropped: an echo
/// canceller that stopped draining has lost alignment anyway).
#[derive(Debug)]
pub struct EchoReference {
    listening: AtomicBool,
    queue: Mutex<VecDeque<f32>>,
    /// The speaker's latency (from mixing to playing) in µs; `u32::MAX`: unknown
    /// (no real speaker, so no acoustic echo).
    output_latency_us: AtomicU32,
}

impl Default for EchoReference {
    fn default() -> Self {
        EchoReference {
            listening: AtomicBool::new(false),
            queue: Mutex::new(VecDeque::new()),
            output_latency_us: AtomicU32::new(u32::MAX),
        }
    }
}

impl EchoReference {
    /// An idle reference.
    pub fn new() -> Self {
        Self::default()
    }

    /// What the speaker reports between mixing a sample and playing it.
    pub fn set_output_latency(&self, latency: Duration) {
        let us = latency.as_micros().min(u128::from(u32::MAX - 1)) as u32;
        self.output_latency_us.store(us, Ordering::Relaxed);
    }

    fn output_latency_us(&self) -> Option<u32> {
        Some(self.output_latency_us.load(Ordering::Relaxed)).filter(|&us| us != u32::MAX)
    }

    /// Records samples just handed to the speaker (mono, 48 kHz).
    pub fn feed(&self, played: &[f32]) {
        if !self.listening.load(Ordering::Relaxed) {
            return;
        }
        let mut q = lock(&self.queue);
        q.extend(played.iter().copied());
        let excess = q.len().saturating_sub(REFERENCE_CAP);
        q.drain(..excess);
    }

    fn listen(&self, on: bool) {
        if self.listening.swap(on, Ordering::Relaxed) != on {
            lock(&self.queue).clear();
        }
    }

    /// Takes every whole block queued, in order, into `out` (cleared first).
    fn take_blocks(&self, out: &mut Vec<f32>) {
        out.clear();
        let mut q = lock(&self.queue);
        let whole = q.len() / BLOCK * BLOCK;
        out.extend(q.drain(..whole));
    }
}

/// The microphone's processor: echo cancellation and noise suppression in
/// 10 ms blocks, fed with what the speaker played through an [`EchoReference`].
pub struct VoiceProcessor {
    settings: ProcessingSettings,
    apm: Option<AudioProcessing>,
    reference: std::sync::Arc<EchoReference>,
    /// Captured samples waiting for a whole block.
    pending: Vec<f32>,
    render: Vec<f32>,
    block_out: Vec<f32>,
    scratch: Vec<f32>,
    /// The microphone's latency (from capturing a sample to its callback) in µs.
    input_latency_us: Option<u32>,
    alignment: Alignment,
    /// The microphone samples held back (see [`Alignment`]).
    held: VecDeque<f32>,
}

impl std::fmt::Debug for VoiceProcessor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VoiceProcessor")
            .field("settings", &self.settings)
            .field("pending", &self.pending.len())
            .finish_non_exhaustive()
    }
}

impl VoiceProcessor {
    /// A processor with `settings`, cancelling the echo of what `reference` records.
    pub fn new(reference: std::sync::Arc<EchoReference>, settings: ProcessingSettings) -> Self {
        let mut p = VoiceProcessor {
            settings,
            apm: None,
            reference,
            pending: Vec::with_capacity(4 * BLOCK),
            render: Vec::with_capacity(REFERENCE_CAP),
            block_out: vec![0.0; BLOCK],
            scratch: vec![0.0; BLOCK],
            input_latency_us: None,
            alignment: Alignment::default(),
            held: VecDeque::new(),
        };
        p.rebuild();
        p
    }

    /// The settings in effect.
    pub fn settings(&self) -> ProcessingSettings {
        self.settings
    }

    /// Changes what runs; the processor starts afresh (a few hundred ms for the
    /// echo canceller to converge again).
    pub fn set_settings(&mut self, settings: ProcessingSettings) {
        if settings != self.settings {
            self.settings = settings;
            self.rebuild();
        }
    }

    /// Forgets the stream so far: a new microphone, a new echo path.
    pub fn reset(&mut self) {
        self.rebuild();
    }

    /// What the microphone reports between capturing a sample and handing it over.
    pub fn set_input_latency(&mut self, latency: Duration) {
        self.input_latency_us = Some(latency.as_micros().min(u128::from(u32::MAX)) as u32);
    }

    /// How long the microphone is held back for the echo canceller (`None`: not decided yet).
    pub fn hold(&self) -> Option<Duration> {
        self.alignment
            .hold
            .map(|samples| Duration::from_secs_f64(samples as f64 / f64::from(SAMPLE_RATE)))
    }

    fn rebuild(&mut self) {
        self.pending.clear();
        self.held.clear();
        // Latencies are measured afresh: the devices may have changed.
        self.reference
            .output_latency_us
            .store(u32::MAX, Ordering::Relaxed);
        self.input_latency_us = None;
        self.alignment = Alignment::default();
        self.apm = self.build_apm();
        self.reference.listen(self.settings.echo_cancellation);
    }

    fn build_apm(&self) -> Option<AudioProcessing> {
        self.settings.any().then(|| {
            let config = Config {
                high_pass_filter: Some(HighPassFilter::default()),
                echo_canceller: self.settings.echo_cancellation.then(EchoCanceller::default),
                noise_suppression: self
                    .settings
                    .noise_suppression
                    .then(NoiseSuppression::default),
                ..Default::default()
            };
            let stream = StreamConfig::new(SAMPLE_RATE, 1);
            let mut apm = AudioProcessing::builder()
                .config(config)
                .capture_config(stream)
                .render_config(stream)
                .build();
            let _ = apm.set_stream_delay_ms(INITIAL_DELAY_MS);
            apm
        })
    }

    /// Processes captured samples (mono, 48 kHz, any count) and appends the
    /// result to `out`: at once when nothing is enabled, otherwise in whole
    /// 10 ms blocks (the rest waits for the next call).
    pub fn process(&mut self, captured: &[f32], out: &mut Vec<f32>) {
        let Some(apm) = self.apm.as_mut() else {
            out.extend_from_slice(captured);
            return;
        };
        let hold = if self.settings.echo_cancellation {
            self.alignment
                .observe(self.reference.output_latency_us(), self.input_latency_us)
        } else {
            Some(0)
        };
        let Some(hold) = hold else {
            // AEC3 must not start before the alignment is known: it does not
            // recover from starting on too short an echo path.
            self.reference.take_blocks(&mut self.render);
            out.extend_from_slice(captured);
            return;
        };
        self.held.extend(captured.iter().copied());
        let ready = self.held.len().saturating_sub(hold);
        self.pending.extend(self.held.drain(..ready));
        let whole = self.pending.len() / BLOCK * BLOCK;
        for start in (0..whole).step_by(BLOCK) {
            if self.settings.echo_cancellation {
                self.reference.take_blocks(&mut self.render);
                for block in self.render.chunks_exact(BLOCK) {
                    if let Err(e) = apm.process_render_f32(&[block], &mut [&mut self.scratch]) {
                        tracing::debug!(error = ?e, "echo reference rejected");
                    }
                }
            }
            let block = &self.pending[start..start + BLOCK];
            match apm.process_capture_f32(&[block], &mut [&mut self.block_out]) {
                Ok(()) => out.extend_from_slice(&self.block_out),
                Err(e) => {
                    tracing::debug!(error = ?e, "voice processing failed; passing audio through");
                    out.extend_from_slice(block);
                }
            }
        }
        self.pending.drain(..whole);
    }
}

/// How long to hold the microphone back so that AEC3 sees every echo at least
/// [`MIN_ECHO_LAG_MS`] after its reference: decided once per stream from the
/// latencies the devices report.
#[derive(Debug, Default)]
struct Alignment {
    /// Captured chunks seen while deciding, and how many came with both latencies.
    watched: u32,
    measured: u32,
    /// The least speaker + microphone latency seen, in µs.
    least_us: Option<u32>,
    /// The decision, in samples.
    hold: Option<usize>,
}

impl Alignment {
    /// Takes one captured chunk's latencies (speaker, microphone; µs) and returns
    /// the hold once decided. The least sum counts (a stream's first reports
    /// include its start-up buffering); with no speaker latency for a while the
    /// speaker is virtual and there is nothing to wait for.
    fn observe(&mut self, output_us: Option<u32>, input_us: Option<u32>) -> Option<usize> {
        if self.hold.is_some() {
            return self.hold;
        }
        self.watched += 1;
        if let (Some(out), Some(input)) = (output_us, input_us) {
            let sum = out.saturating_add(input);
            self.least_us = Some(self.least_us.map_or(sum, |m| m.min(sum)));
            self.measured += 1;
        }
        if self.measured < LATENCY_SAMPLES && self.watched < LATENCY_WATCH_BLOCKS {
            return None;
        }
        let hold_us = self
            .least_us
            .map_or(0, |least| (MIN_ECHO_LAG_MS * 1_000).saturating_sub(least));
        let hold = (hold_us as usize * SAMPLE_RATE as usize / 1_000_000).min(BLOCK * 2);
        tracing::info!(
            device_latency_ms = self.least_us.map(|us| us as f32 / 1_000.0),
            hold_ms = hold as f32 / 48.0,
            "echo canceller aligned to the devices"
        );
        self.hold = Some(hold);
        self.hold
    }
}

impl Drop for VoiceProcessor {
    fn drop(&mut self) {
        self.reference.listen(false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn speech(seconds: usize, seed: u32) -> Vec<f32> {
        crate::audio::SpeechSource::new(seed).samples(seconds * SAMPLE_RATE as usize)
    }

    fn energy(x: &[f32]) -> f32 {
        x.iter().map(|s| s * s).sum::<f32>() / x.len().max(1) as f32
    }

    fn db(ratio: f32) -> f32 {
        10.0 * ratio.max(1e-12).log10()
    }

    /// Plays `far` on a simulated speaker whose sound reaches the microphone
    /// 35 ms later at -4.4 dB, adds `near`, and runs it all through a processor
    /// in device periods of `period` samples. Returns (microphone, processed).
    fn run(
        settings: ProcessingSettings,
        far: &[f32],
        near: &[f32],
        period: usize,
    ) -> (Vec<f32>, Vec<f32>) {
        let reference = Arc::new(EchoReference::new());
        let mut processor = VoiceProcessor::new(Arc::clone(&reference), settings);
        let delay = 48 * 35;
        let mic: Vec<f32> = (0..far.len())
            .map(|i| {
                near[i]
                    + if i >= delay {
                        0.6 * far[i - delay]
                    } else {
                        0.0
                    }
            })
            .collect();
        let mut out = Vec::with_capacity(mic.len());
        for (played, captured) in far.chunks(period).zip(mic.chunks(period)) {
            reference.feed(played);
            processor.process(captured, &mut out);
        }
        (mic, out)
    }

    #[test]
    fn the_far_ends_voice_is_cancelled_from_the_microphone() {
        let far = speech(12, 7);
        let silence = vec![0.0; far.len()];
        let (mic, out) = run(ProcessingSettings::default(), &far, &silence, 480);
        assert_eq!(out.len(), mic.len(), "10 ms periods pass without delay");
        let settled = 4 * 48_000..12 * 48_000;
        let erle = db(energy(&mic[settled.clone()]) / energy(&out[settled]));
        eprintln!("echo return loss enhancement after 4 s: {erle:.1} dB");
        assert!(
            erle >= 25.0,
            "after convergence the echo must be at least 25 dB quieter: {erle:.1} dB"
        );
    }

    #[test]
    fn the_near_ends_voice_survives_while_both_talk() {
        let far = speech(12, 7);
        // The near end talks (a different voice) from 6 s to 9 s, over the echo.
        let near: Vec<f32> = speech(12, 99)
            .into_iter()
            .enumerate()
            .map(|(i, s)| {
                if (6 * 48_000..9 * 48_000).contains(&i) {
                    s
                } else {
                    0.0
                }
            })
            .collect();
        let (_, out) = run(ProcessingSettings::default(), &far, &near, 441);
        // Compare the output with the near-end voice alone over the double talk.
        let talk = 6 * 48_000 + 24_000..9 * 48_000;
        let kept = db(energy(&out[talk.clone()]) / energy(&near[talk]));
        eprintln!("near-end level during double talk: {kept:.1} dB");
        assert!(
            kept > -8.0,
            "the near end must not be suppressed along with the echo: {kept:.1} dB"
        );
    }

    #[test]
    fn a_very_short_echo_path_is_cancelled_by_holding_the_microphone_back() {
        // A speaker and microphone that report 2 ms between them, and an echo 2 ms
        // behind its reference: too close for AEC3 unless the microphone waits.
        let far = speech(12, 7);
        let reference = Arc::new(EchoReference::new());
        let mut processor =
            VoiceProcessor::new(Arc::clone(&reference), ProcessingSettings::default());
        reference.set_output_latency(Duration::from_millis(2));
        processor.set_input_latency(Duration::ZERO);
        let delay = 48 * 2;
        let mic: Vec<f32> = (0..far.len())
            .map(|i| {
                if i >= delay {
                    0.6 * far[i - delay]
                } else {
                    0.0
                }
            })
            .collect();
        let mut out = Vec::new();
        for (played, captured) in far.chunks(480).zip(mic.chunks(480)) {
            reference.feed(played);
            processor.process(captured, &mut out);
        }
        assert_eq!(
            processor.hold(),
            Some(Duration::from_millis(u64::from(MIN_ECHO_LAG_MS) - 2)),
            "the microphone is held back by what the devices' latencies lack"
        );
        let hold = processor.alignment.hold.unwrap_or(0);
        // Compare like with like: the output lags the microphone by the hold.
        let settled = 4 * 48_000..11 * 48_000;
        let shifted = &out[settled.start + hold..settled.end + hold];
        let erle = db(energy(&mic[settled]) / energy(shifted));
        eprintln!("2 ms echo path, held back: {erle:.1} dB");
        assert!(
            erle >= 25.0,
            "with the hold, even a 2 ms echo path is cancelled: {erle:.1} dB"
        );
    }

    #[test]
    fn the_hold_follows_the_least_latency_the_devices_report() {
        let mut a = Alignment::default();
        // Start-up buffering first (30 ms), then the steady 6 ms.
        for n in 0..LATENCY_SAMPLES - 1 {
            let out = if n < 5 { 30_000 } else { 4_000 };
            assert_eq!(a.observe(Some(out), Some(2_000)), None, "still measuring");
        }
        let hold = a.observe(Some(4_000), Some(2_000));
        assert_eq!(
            hold,
            Some((MIN_ECHO_LAG_MS as usize - 6) * 48),
            "the steady latency, not the start-up one, sets the hold"
        );
        assert_eq!(
            a.observe(Some(100), Some(100)),
            hold,
            "decided once per stream: later reports do not move the echo path"
        );
    }

    #[test]
    fn no_hold_without_a_real_speaker() {
        let far = speech(1, 7);
        let reference = Arc::new(EchoReference::new());
        let mut processor =
            VoiceProcessor::new(Arc::clone(&reference), ProcessingSettings::default());
        processor.set_input_latency(Duration::from_millis(1));
        let mut out = Vec::new();
        for chunk in far.chunks(480) {
            reference.feed(chunk);
            processor.process(chunk, &mut out);
        }
        assert_eq!(
            processor.hold(),
            Some(Duration::ZERO),
            "a speaker that reports no latency is virtual: nothing to wait for"
        );
        assert_eq!(out.len(), far.len(), "and no delay is added");
    }

    #[test]
    fn off_passes_the_microphone_through_untouched() {
        let far = speech(2, 7);
        let near = speech(2, 3);
        let (mic, out) = run(ProcessingSettings::OFF, &far, &near, 441);
        assert_eq!(
            out, mic,
            "with processing off, the microphone is delivered bit for bit and at once"
        );
    }

    #[test]
    fn the_reference_is_bounded_when_nobody_drains_it() {
        let reference = Arc::new(EchoReference::new());
        let _processor = VoiceProcessor::new(Arc::clone(&reference), ProcessingSettings::default());
        for _ in 0..1_000 {
            reference.feed(&[0.1; 480]);
        }
        let mut out = Vec::new();
        reference.take_blocks(&mut out);
        assert_eq!(
            out.len(),
            REFERENCE_CAP,
            "an undrained reference keeps at most 200 ms, not the whole call"
        );
        drop(_processor);
        reference.feed(&[0.1; 480]);
        reference.take_blocks(&mut out);
        assert!(out.is_empty(), "nothing is kept once no processor listens");
    }
}
