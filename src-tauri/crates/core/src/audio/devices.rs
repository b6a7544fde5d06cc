//! The virtual audio devices.

use std::f64::consts::TAU;
use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::{AudioSink, AudioSource, DeviceError, SAMPLE_RATE};

/// The peak amplitude of a [`ToneSource`]: -12 dBFS, i.e. `32767 × 10^(-12/20)`.
///
/// Loud enough to be unmistakable after lossy coding, with headroom so that
/// codecs never clip it.
pub const TONE_AMPLITUDE: f64 = 8231.0;

/// A sine-wave generator: a virtual microphone that "says" one frequency.
///
/// The phase is continuous across frames, so the output is a clean tone with no
/// clicks at frame boundaries. The amplitude is [`TONE_AMPLITUDE`] (-12 dBFS).
#[derive(Debug, Clone)]
pub struct ToneSource {
    freq_hz: f64,
    phase: f64,
    step: f64,
}

impl ToneSource {
    /// A tone at `freq_hz` (which should be between 0 and 24 kHz to be representable).
    pub fn new(freq_hz: f64) -> Self {
        Self {
            freq_hz,
            phase: 0.0,
            step: TAU * freq_hz / f64::from(SAMPLE_RATE),
        }
    }

    /// The tone's frequency in Hz.
    pub fn frequency(&self) -> f64 {
        self.freq_hz
    }
}

impl AudioSource for ToneSource {
    fn read_frame(&mut self, out: &mut [i16]) -> Result<(), DeviceError> {
        for sample in out.iter_mut() {
            *sample = (self.phase.sin() * TONE_AMPLITUDE).round() as i16;
            self.phase += self.step;
            if self.phase >= TAU {
                self.phase -= TAU;
            }
        }
        Ok(())
    }

    fn describe(&self) -> String {
        format!("tone:{}", self.freq_hz)
    }
}

/// Speech-like test audio: a virtual microphone that "talks".
///
/// A source-filter model of a voice: a glottal pulse train whose pitch glides
/// (90-230 Hz, with intonation and a little jitter) through three formant
/// resonators that move from vowel to vowel every 200 ms, an unvoiced
/// (fricative) syllable now and then, and a 200 ms pause after every second
/// syllable; about -20 dBFS RMS while talking. Unlike a steady tone it is what
/// echo cancellers and noise suppressors are built for: harmonic-rich, varying,
/// with pauses, and without the one-period ambiguity a pure sine would give a
/// delay estimator. The same `seed` gives the same "voice" sample for sample.
#[derive(Debug, Clone)]
pub struct SpeechSource {
    seed: u32,
    state: u32,
    n: u64,
    phase: f64,
    /// Formant resonators: (y1, y2) per formant.
    memory: [(f32, f32); 3],
}

/// Vowel formants (F1, F2, F3) in Hz: a, i, u, e, o.
const VOWELS: [[f32; 3]; 5] = [
    [730.0, 1090.0, 2440.0],
    [270.0, 2290.0, 3010.0],
    [300.0, 870.0, 2240.0],
    [530.0, 1840.0, 2480.0],
    [570.0, 840.0, 2410.0],
];

impl SpeechSource {
    /// A voice; different seeds give different, uncorrelated voices.
    pub fn new(seed: u32) -> Self {
        SpeechSource {
            seed,
            state: seed.wrapping_mul(2_654_435_761).wrapping_add(1),
            n: 0,
            phase: 0.0,
            memory: [(0.0, 0.0); 3],
        }
    }

    fn noise(&mut self) -> f32 {
        self.state = self
            .state
            .wrapping_mul(1_664_525)
            .wrapping_add(1_013_904_223);
        (self.state >> 8) as f32 / (1u32 << 24) as f32 * 2.0 - 1.0
    }

    /// The next sample, -1.0..1.0.
    pub fn next_sample(&mut self) -> f32 {
        let rate = f64::from(SAMPLE_RATE);
        let t = self.n as f64 / rate;
        let syllable = self.n / 9_600;
        self.n += 1;
        let noise = self.noise();
        // A per-syllable pseudo-random pick, stable for the whole syllable.
        let pick = (syllable as u32 ^ self.seed)
            .wrapping_mul(2_246_822_519)
            .rotate_left(13)
            .wrapping_mul(3_266_489_917);
        if syllable % 3 == 2 {
            self.memory = [(0.0, 0.0); 3];
            return 0.0;
        }
        let fricative = pick.is_multiple_of(7);
        let excitation = if fricative {
            0.3 * noise
        } else {
            let base = 90.0 + f64::from(pick % 140);
            let f0 = base * (1.0 + 0.08 * (TAU * 2.5 * t).sin()) * (1.0 + 0.01 * f64::from(noise));
            self.phase += f0 / rate;
            let pulse = if self.phase >= 1.0 {
                self.phase -= 1.0;
                1.0
            } else {
                0.0
            };
            pulse + 0.02 * noise
        };
        let formants = if fricative {
            [2_500.0, 4_000.0, 5_500.0]
        } else {
            VOWELS[(pick >> 8) as usize % VOWELS.len()]
        };
        let mut out = 0.0;
        for (k, (&f, mem)) in formants.iter().zip(self.memory.iter_mut()).enumerate() {
            let bandwidth = 80.0 + 40.0 * k as f32;
            let r = (-std::f32::consts::PI * bandwidth / SAMPLE_RATE as f32).exp();
            let c = 2.0 * r * (std::f32::consts::TAU * f / SAMPLE_RATE as f32).cos();
            let y = (1.0 - r) * excitation + c * mem.0 - r * r * mem.1;
            *mem = (y, mem.0);
            out += y / (1.0 + k as f32);
        }
        (out * 2.4).clamp(-1.0, 1.0)
    }

    /// The next `len` samples.
    pub fn samples(&mut self, len: usize) -> Vec<f32> {
        (0..len).map(|_| self.next_sample()).collect()
    }
}

impl AudioSource for SpeechSource {
    fn read_frame(&mut self, out: &mut [i16]) -> Result<(), DeviceError> {
        for sample in out.iter_mut() {
            *sample = (self.next_sample() * 32_767.0).round() as i16;
        }
        Ok(())
    }

    fn describe(&self) -> String {
        format!("speech:{}", self.seed)
    }
}

/// Digital silence: a virtual microphone that says nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct SilenceSource;

impl SilenceSource {
    /// A new silence source.
    pub fn new() -> Self {
        Self
    }
}

impl AudioSource for SilenceSource {
    fn read_frame(&mut self, out: &mut [i16]) -> Result<(), DeviceError> {
        out.fill(0);
        Ok(())
    }

    fn describe(&self) -> String {
        "silence".to_owned()
    }
}

/// A virtual microphone that plays a WAV file.
///
/// The whole file is read into memory when it is opened (prompts and test
/// signals are short) and converted once to 48 kHz mono: channels are averaged,
/// any integer or float sample format is scaled to 16 bits, and any other sample
/// rate is converted by **linear interpolation** (adequate for prompts and test
/// tones; not a studio-grade resampler).
///
/// By default the file **loops** forever, so a call can outlast it; with
/// [`with_looping(false)`](WavFileSource::with_looping) it plays once and then
/// produces silence.
#[derive(Debug, Clone)]
pub struct WavFileSource {
    path: PathBuf,
    samples: Vec<i16>,
    pos: usize,
    looping: bool,
}

impl WavFileSource {
    /// Opens and decodes `path`; the source loops by default.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, DeviceError> {
        let path = path.as_ref().to_path_buf();
        let reader = hound::WavReader::open(&path).map_err(|e| match e {
            hound::Error::IoError(io) => {
                DeviceError::Unavailable(format!("cannot open {}: {io}", path.display()))
            }
            other => DeviceError::Format(format!("{}: {other}", path.display())),
        })?;
        let spec = reader.spec();
        let channels = usize::from(spec.channels.max(1));
        let interleaved = read_as_f32(reader, &path)?;
        let mono: Vec<f32> = interleaved
            .chunks(channels)
            .map(|frame| frame.iter().sum::<f32>() / frame.len() as f32)
            .collect();
        let resampled = resample_linear(&mono, spec.sample_rate, SAMPLE_RATE);
        let samples = resampled
            .into_iter()
            .map(|s| (s * 32768.0).round().clamp(-32768.0, 32767.0) as i16)
            .collect();
        Ok(Self {
            path,
            samples,
            pos: 0,
            looping: true,
        })
    }

    /// Chooses whether the file loops (`true`, the default) or plays once and then
    /// produces silence (`false`).
    pub fn with_looping(mut self, looping: bool) -> Self {
        self.looping = looping;
        self
    }

    /// The file's length after conversion, in 48 kHz samples.
    pub fn len_samples(&self) -> usize {
        self.samples.len()
    }
}

fn read_as_f32(
    mut reader: hound::WavReader<std::io::BufReader<File>>,
    path: &Path,
) -> Result<Vec<f32>, DeviceError> {
    let spec = reader.spec();
    let format_err = |e: hound::Error| DeviceError::Format(format!("{}: {e}", path.display()));
    match spec.sample_format {
        hound::SampleFormat::Float => reader
            .samples::<f32>()
            .collect::<Result<Vec<_>, _>>()
            .map_err(format_err),
        hound::SampleFormat::Int => {
            let bits = spec.bits_per_sample;
            if bits == 0 || bits > 32 {
                return Err(DeviceError::Format(format!(
                    "{}: {bits}-bit samples are not supported",
                    path.display()
                )));
            }
            let scale = 1.0 / f64::from(1u32 << (bits - 1)) as f32;
            reader
                .samples::<i32>()
                .map(|s| s.map(|v| v as f32 * scale))
                .collect::<Result<Vec<_>, _>>()
                .map_err(format_err)
        }
    }
}

/// Linear-interpolation resampling of a whole buffer.
fn resample_linear(input: &[f32], from_rate: u32, to_rate: u32) -> Vec<f32> {
    if from_rate == to_rate || input.is_empty() || from_rate == 0 {
        return input.to_vec();
    }
    let out_len = (input.len() as u64 * u64::from(to_rate) / u64::from(from_rate)) as usize;
    let step = f64::from(from_rate) / f64::from(to_rate);
    (0..out_len)
        .map(|i| {
            let pos = i as f64 * step;
            let idx = pos.floor() as usize;
            let frac = (pos - idx as f64) as f32;
            let a = input[idx.min(input.len() - 1)];
            let b = input[(idx + 1).min(input.len() - 1)];
            a + (b - a) * frac
        })
        .collect()
}

impl AudioSource for WavFileSource {
    fn read_frame(&mut self, out: &mut [i16]) -> Result<(), DeviceError> {
        for sample in out.iter_mut() {
            if self.pos >= self.samples.len() {
                if self.looping && !self.samples.is_empty() {
                    self.pos = 0;
                } else {
                    *sample = 0;
                    continue;
                }
            }
            *sample = self.samples[self.pos];
            self.pos += 1;
        }
        Ok(())
    }

    fn describe(&self) -> String {
        format!("wav:{}", self.path.display())
    }
}

/// A virtual speaker that records to a 48 kHz mono 16-bit WAV file.
///
/// The header is rewritten every second as the file grows, so that a process killed
/// mid-recording leaves a playable file (all but the last second at most). It is completed by
/// [`finish`](WavFileSink::finish) or, failing that, when the sink is dropped (errors on drop
/// can only be logged). A write that fails (a full disk) is reported, never hidden.
pub struct WavFileSink {
    path: PathBuf,
    writer: Option<hound::WavWriter<BufWriter<File>>>,
    /// Frames written since the header was last brought up to date.
    since_header: u32,
}

/// How many 20 ms frames go by between header updates: one second.
const HEADER_EVERY_FRAMES: u32 = 50;

impl std::fmt::Debug for WavFileSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WavFileSink")
            .field("path", &self.path)
            .field("finished", &self.writer.is_none())
            .finish()
    }
}

impl WavFileSink {
    /// Creates (or truncates) the WAV file at `path`.
    pub fn create(path: impl AsRef<Path>) -> Result<Self, DeviceError> {
        let path = path.as_ref().to_path_buf();
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: SAMPLE_RATE,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let writer = hound::WavWriter::create(&path, spec).map_err(|e| {
            DeviceError::Unavailable(format!("cannot create {}: {e}", path.display()))
        })?;
        Ok(Self {
            path,
            writer: Some(writer),
            since_header: 0,
        })
    }

    /// Completes the WAV header and closes the file. Later writes fail with
    /// [`DeviceError::Closed`]; calling `finish` again is a no-op.
    pub fn finish(&mut self) -> Result<(), DeviceError> {
        match self.writer.take() {
            Some(writer) => writer
                .finalize()
                .map_err(|e| DeviceError::Io(format!("{}: {e}", self.path.display()))),
            None => Ok(()),
        }
    }
}

impl AudioSink for WavFileSink {
    fn write_frame(&mut self, frame: &[i16]) -> Result<(), DeviceError> {
        let writer = self.writer.as_mut().ok_or(DeviceError::Closed)?;
        let mut w = writer.get_i16_writer(frame.len() as u32);
        for &s in frame {
            w.write_sample(s);
        }
        let io = |e: hound::Error| DeviceError::Io(format!("{}: {e}", self.path.display()));
        w.flush().map_err(io)?;
        self.since_header += 1;
        if self.since_header >= HEADER_EVERY_FRAMES {
            self.since_header = 0;
            // hound writes the sizes into the header and flushes: valid up to here.
            writer.flush().map_err(io)?;
        }
        Ok(())
    }

    fn describe(&self) -> String {
        format!("wav:{}", self.path.display())
    }
}

impl Drop for WavFileSink {
    fn drop(&mut self) {
        if let Err(e) = self.finish() {
            tracing::warn!(error = %e, "failed to finalize WAV sink on drop");
        }
    }
}

/// A virtual speaker that discards everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct NullSink;

impl NullSink {
    /// A new null sink.
    pub fn new() -> Self {
        Self
    }
}

impl AudioSink for NullSink {
    fn write_frame(&mut self, _frame: &[i16]) -> Result<(), DeviceError> {
        Ok(())
    }

    fn describe(&self) -> String {
        "null".to_owned()
    }
}

/// A virtual speaker that appends everything it is given to a shared buffer.
///
/// Tests keep a clone of [`buffer`](CaptureSink::buffer), hand the sink to a media
/// session, and later analyse what was heard (for example with
/// [`tone_present`](super::tone_present)).
#[derive(Debug, Clone, Default)]
pub struct CaptureSink {
    buffer: Arc<Mutex<Vec<i16>>>,
}

impl CaptureSink {
    /// A capture sink with a new, empty buffer.
    pub fn new() -> Self {
        Self::default()
    }

    /// A capture sink appending to an existing buffer.
    pub fn with_buffer(buffer: Arc<Mutex<Vec<i16>>>) -> Self {
        Self { buffer }
    }

    /// The shared buffer of everything written so far.
    pub fn buffer(&self) -> Arc<Mutex<Vec<i16>>> {
        Arc::clone(&self.buffer)
    }
}

impl AudioSink for CaptureSink {
    fn write_frame(&mut self, frame: &[i16]) -> Result<(), DeviceError> {
        // A poisoned lock only means another holder panicked; the samples are still valid.
        let mut buffer = self.buffer.lock().unwrap_or_else(|e| e.into_inner());
        buffer.extend_from_slice(frame);
        Ok(())
    }

    fn describe(&self) -> String {
        "capture".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::{dominant_tone, tone_present, FRAME_SAMPLES};

    fn temp_path(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("hookflash-audio-{}-{name}", std::process::id()))
    }

    fn read_frames(source: &mut dyn AudioSource, frames: usize) -> Vec<i16> {
        let mut out = vec![0i16; FRAME_SAMPLES * frames];
        for chunk in out.chunks_mut(FRAME_SAMPLES) {
            source
                .read_frame(chunk)
                .expect("virtual source must not fail");
        }
        out
    }

    #[test]
    fn tone_source_has_continuous_phase_and_expected_level() {
        let mut tone = ToneSource::new(440.0);
        let samples = read_frames(&mut tone, 50);
        let peak = samples.iter().map(|s| s.unsigned_abs()).max().unwrap_or(0);
        assert!(
            (8000..=8231).contains(&peak),
            "the tone must peak at about -12 dBFS so codecs never clip it, got {peak}"
        );
        // A phase jump at a frame boundary would show as a step larger than the
        // largest step of a 440 Hz sine at this amplitude.
        let max_step = TAU * 440.0 / 48_000.0 * TONE_AMPLITUDE + 2.0;
        for w in samples.windows(2) {
            let step = (f64::from(w[1]) - f64::from(w[0])).abs();
            assert!(step <= max_step, "phase must be continuous (no clicks)");
        }
        assert_eq!(
            dominant_tone(&samples, &[440.0, 880.0], SAMPLE_RATE),
            Some(440.0)
        );
    }

    #[test]
    fn silence_source_is_silent() {
        let samples = read_frames(&mut SilenceSource::new(), 5);
        assert!(samples.iter().all(|&s| s == 0), "silence must be all zeros");
    }

    #[test]
    fn wav_sink_then_source_round_trip_at_48k() {
        let path = temp_path("roundtrip.wav");
        let mut sink = WavFileSink::create(&path).expect("create temp wav");
        let mut tone = ToneSource::new(1000.0);
        let written = read_frames(&mut tone, 10);
        for chunk in written.chunks(FRAME_SAMPLES) {
            sink.write_frame(chunk).expect("write wav frame");
        }
        sink.finish().expect("finalize wav");
        assert_eq!(
            sink.write_frame(&written[..10]),
            Err(DeviceError::Closed),
            "writes after finish must be refused, not silently lost"
        );

        let mut source = WavFileSource::open(&path)
            .expect("reopen wav")
            .with_looping(false);
        assert_eq!(source.len_samples(), written.len());
        let read = read_frames(&mut source, 11);
        assert_eq!(
            &read[..written.len()],
            &written[..],
            "48 kHz mono is lossless"
        );
        assert!(
            read[written.len()..].iter().all(|&s| s == 0),
            "a non-looping source turns to silence at the end"
        );
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn wav_source_converts_rate_and_channels() {
        let path = temp_path("stereo8k.wav");
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate: 8000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        {
            let mut w = hound::WavWriter::create(&path, spec).expect("create wav");
            for i in 0..8000 {
                let v = ((TAU * 600.0 * f64::from(i) / 8000.0).sin() * 8000.0) as i16;
                w.write_sample(v).expect("left");
                w.write_sample(v).expect("right");
            }
            w.finalize().expect("finalize");
        }
        let mut source = WavFileSource::open(&path).expect("open wav");
        assert_eq!(
            source.len_samples(),
            48_000,
            "1 s at 8 kHz is 1 s at 48 kHz"
        );
        let samples = read_frames(&mut source, 50);
        assert!(
            tone_present(&samples, 600.0, SAMPLE_RATE),
            "the converted file must keep its 600 Hz tone"
        );
        let looped = read_frames(&mut source, 5);
        assert!(
            tone_present(&looped, 600.0, SAMPLE_RATE),
            "a looping source starts again at the end"
        );
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn wav_source_missing_file_is_unavailable() {
        let err = WavFileSource::open(temp_path("does-not-exist.wav")).unwrap_err();
        assert_eq!(err.code(), "device.unavailable", "{err}");
    }

    #[test]
    fn capture_sink_shares_its_buffer() {
        let mut sink = CaptureSink::new();
        let buffer = sink.buffer();
        sink.write_frame(&[1, 2, 3]).expect("capture never fails");
        sink.write_frame(&[4]).expect("capture never fails");
        assert_eq!(*buffer.lock().unwrap(), vec![1, 2, 3, 4]);
    }
}
