//! Sample-rate conversion between the 48 kHz pipeline and 8 kHz G.711.
//!
//! Both directions use the same 95-tap windowed-sinc low-pass filter (Hamming
//! window, cut-off 3.5 kHz at 48 kHz, about -50 dB in the stop band):
//!
//! * [`Downsampler48kTo8k`] filters and keeps every 6th sample, so that nothing
//!   above 4 kHz folds back into the telephone band;
//! * [`Upsampler8kTo48k`] inserts 5 zeros after every sample and filters (with a
//!   gain of 6), which removes the spectral images that plain sample repetition or
//!   linear interpolation would leave.
//!
//! Each keeps its filter history between calls, so a stream converted frame by
//! frame has no discontinuities at frame boundaries. The delay is 47 samples at
//! 48 kHz (about 1 ms) each way. This is a simple, dependency-free converter
//! sized for telephony, not a general-purpose resampler.

use std::f64::consts::PI;
use std::sync::OnceLock;

/// The conversion ratio between 48 kHz and 8 kHz.
const RATIO: usize = 6;
const TAPS: usize = 95;
const CUTOFF_HZ: f64 = 3_500.0;

fn filter() -> &'static [f32; TAPS] {
    static FILTER: OnceLock<[f32; TAPS]> = OnceLock::new();
    FILTER.get_or_init(|| {
        let fc = CUTOFF_HZ / 48_000.0;
        let middle = (TAPS - 1) as f64 / 2.0;
        let mut taps = [0f64; TAPS];
        for (n, tap) in taps.iter_mut().enumerate() {
            let x = n as f64 - middle;
            let sinc = if x == 0.0 {
                2.0 * fc
            } else {
                (2.0 * PI * fc * x).sin() / (PI * x)
            };
            let window = 0.54 - 0.46 * (2.0 * PI * n as f64 / (TAPS - 1) as f64).cos();
            *tap = sinc * window;
        }
        let sum: f64 = taps.iter().sum();
        let mut out = [0f32; TAPS];
        for (o, t) in out.iter_mut().zip(taps) {
            *o = (t / sum) as f32;
        }
        out
    })
}

fn to_i16(x: f32) -> i16 {
    x.round().clamp(-32_768.0, 32_767.0) as i16
}

/// Converts 48 kHz samples to 8 kHz (low-pass, then keep every 6th sample).
#[derive(Debug, Clone)]
pub struct Downsampler48kTo8k {
    /// The last `TAPS - 1` input samples, oldest first.
    history: Vec<f32>,
}

impl Default for Downsampler48kTo8k {
    fn default() -> Self {
        Self::new()
    }
}

impl Downsampler48kTo8k {
    /// A converter with silent history.
    pub fn new() -> Self {
        Self {
            history: vec![0.0; TAPS - 1],
        }
    }

    /// Converts `input` (a multiple of 6 samples long, e.g. a 960-sample frame)
    /// to `input.len() / 6` samples at 8 kHz. Trailing samples beyond a multiple of
    /// 6 are filtered but produce no output.
    pub fn process(&mut self, input: &[i16]) -> Vec<i16> {
        let h = filter();
        let mut buf = std::mem::take(&mut self.history);
        buf.extend(input.iter().map(|&s| f32::from(s)));
        let offset = TAPS - 1;
        let out = (0..input.len() / RATIO)
            .map(|j| {
                // The newest input sample contributing to output j.
                to_i16(fir(h, &buf, offset + j * RATIO + RATIO - 1))
            })
            .collect();
        self.history = buf.split_off(buf.len() - (TAPS - 1));
        out
    }
}

/// The filter's output for the input window ending at `buf[newest]`.
fn fir(h: &[f32; TAPS], buf: &[f32], newest: usize) -> f32 {
    h.iter()
        .enumerate()
        .map(|(k, &c)| c * buf[newest - k])
        .sum()
}

/// Converts 8 kHz samples to 48 kHz (zero-stuff by 6, then low-pass).
#[derive(Debug, Clone)]
pub struct Upsampler8kTo48k {
    /// The last `TAPS - 1` zero-stuffed (48 kHz) samples, oldest first.
    history: Vec<f32>,
}

impl Default for Upsampler8kTo48k {
    fn default() -> Self {
        Self::new()
    }
}

impl Upsampler8kTo48k {
    /// A converter with silent history.
    pub fn new() -> Self {
        Self {
            history: vec![0.0; TAPS - 1],
        }
    }

    /// Converts `input` to `input.len() × 6` samples at 48 kHz.
    pub fn process(&mut self, input: &[i16]) -> Vec<i16> {
        let h = filter();
        let mut buf = std::mem::take(&mut self.history);
        for &s in input {
            buf.push(f32::from(s) * RATIO as f32);
            buf.extend(std::iter::repeat_n(0.0, RATIO - 1));
        }
        let offset = TAPS - 1;
        let out = (0..input.len() * RATIO)
            .map(|m| to_i16(fir(h, &buf, offset + m)))
            .collect();
        self.history = buf.split_off(buf.len() - (TAPS - 1));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::{tone_present, AudioSource, ToneSource, FRAME_SAMPLES};

    fn tone_frames(freq: f64, frames: usize) -> Vec<Vec<i16>> {
        let mut tone = ToneSource::new(freq);
        (0..frames)
            .map(|_| {
                let mut f = vec![0i16; FRAME_SAMPLES];
                tone.read_frame(&mut f).expect("tone never fails");
                f
            })
            .collect()
    }

    #[test]
    fn a_telephone_band_tone_survives_the_round_trip() {
        let mut down = Downsampler48kTo8k::new();
        let mut up = Upsampler8kTo48k::new();
        let mut narrow = Vec::new();
        let mut wide = Vec::new();
        for frame in tone_frames(1000.0, 50) {
            let n = down.process(&frame);
            assert_eq!(n.len(), 160, "a 20 ms frame is 160 samples at 8 kHz");
            let w = up.process(&n);
            assert_eq!(w.len(), FRAME_SAMPLES);
            narrow.extend(n);
            wide.extend(w);
        }
        assert!(
            tone_present(&narrow, 1000.0, 8000),
            "1 kHz must pass 48k→8k"
        );
        assert!(
            tone_present(&wide, 1000.0, 48_000),
            "1 kHz must pass 8k→48k"
        );
        let level = crate::audio::rms(&wide[4800..]);
        let expected = crate::audio::TONE_AMPLITUDE / 32768.0 / 2f64.sqrt();
        assert!(
            (level - expected).abs() / expected < 0.1,
            "the pass band must keep the level ({level} vs {expected})"
        );
    }

    #[test]
    fn frequencies_above_4khz_do_not_alias_into_the_band() {
        let mut down = Downsampler48kTo8k::new();
        let narrow: Vec<i16> = tone_frames(6000.0, 50)
            .iter()
            .flat_map(|f| down.process(f))
            .collect();
        // Without a low-pass, 6 kHz would fold to 2 kHz at full level.
        assert!(
            !tone_present(&narrow, 2000.0, 8000),
            "6 kHz must be filtered, not folded to 2 kHz"
        );
        assert!(crate::audio::rms(&narrow[800..]) < 0.01);
    }
}
