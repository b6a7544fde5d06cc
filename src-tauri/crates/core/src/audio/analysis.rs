//! Signal analysis for tests and diagnostics: who hears which tone.
//!
//! All levels are normalised to full scale: a sample of `i16::MAX` is 1.0.

use std::f64::consts::TAU;

/// The minimum RMS level (normalised, about -50 dBFS) below which a signal counts
/// as silence and no tone is reported.
const MIN_TONE_RMS: f64 = 0.003_16;

/// The minimum share of the total energy that must sit at a frequency for a tone
/// to count as present. A clean tone scores about 1.0, a tone after Opus or G.711
/// coding well above 0.8, a different tone or noise close to 0.
const MIN_TONE_RATIO: f64 = 0.3;

/// The root-mean-square level of `samples`, normalised so that a full-scale
/// square wave is 1.0 (a full-scale sine is about 0.707). Empty input gives 0.
pub fn rms(samples: &[i16]) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    let sum: f64 = samples
        .iter()
        .map(|&s| {
            let x = f64::from(s) / 32768.0;
            x * x
        })
        .sum();
    (sum / samples.len() as f64).sqrt()
}

/// The power of `samples` at `freq_hz`, measured with a Hann-windowed Goertzel
/// filter and normalised to the mean-square level of a sine: a full-scale sine
/// exactly at `freq_hz` gives about 0.5, a -12 dBFS sine about 0.03, and a signal
/// with no energy near `freq_hz` (or silence) about 0.
///
/// The frequency resolution is about `2 × sample_rate / samples.len()` Hz, so use
/// at least a few hundred milliseconds to tell close tones apart.
pub fn goertzel_power(samples: &[i16], freq_hz: f64, sample_rate: u32) -> f64 {
    let n = samples.len();
    if n < 2 || sample_rate == 0 {
        return 0.0;
    }
    let omega = TAU * freq_hz / f64::from(sample_rate);
    let coeff = 2.0 * omega.cos();
    let window_step = TAU / (n - 1) as f64;
    let (mut s1, mut s2, mut window_sum) = (0.0f64, 0.0f64, 0.0f64);
    for (i, &sample) in samples.iter().enumerate() {
        let w = 0.5 - 0.5 * (window_step * i as f64).cos();
        window_sum += w;
        let s0 = f64::from(sample) / 32768.0 * w + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    let magnitude_sq = (s1 * s1 + s2 * s2 - coeff * s1 * s2).max(0.0);
    2.0 * magnitude_sq / (window_sum * window_sum)
}

/// The share of the total energy of `samples` that sits at `freq_hz`: about 1.0
/// for a pure tone at that frequency, about 0 for anything else. Silence gives 0.
pub fn tone_ratio(samples: &[i16], freq_hz: f64, sample_rate: u32) -> f64 {
    let level = rms(samples);
    if level <= 0.0 {
        return 0.0;
    }
    goertzel_power(samples, freq_hz, sample_rate) / (level * level)
}

/// Whether a tone at `freq_hz` is clearly present: the signal is above about
/// -50 dBFS and at least 30 % of its energy is at that frequency. Robust to
/// Opus and G.711 coding; silence and other tones detect nothing.
pub fn tone_present(samples: &[i16], freq_hz: f64, sample_rate: u32) -> bool {
    rms(samples) >= MIN_TONE_RMS && tone_ratio(samples, freq_hz, sample_rate) >= MIN_TONE_RATIO
}

/// The candidate frequency carrying the most energy in `samples`, if that tone is
/// clearly present (see [`tone_present`]); `None` for silence or when no candidate
/// dominates.
pub fn dominant_tone(samples: &[i16], candidates: &[f64], sample_rate: u32) -> Option<f64> {
    if rms(samples) < MIN_TONE_RMS {
        return None;
    }
    candidates
        .iter()
        .map(|&f| (f, tone_ratio(samples, f, sample_rate)))
        .filter(|&(_, ratio)| ratio >= MIN_TONE_RATIO)
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(f, _)| f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::{AudioSource, ToneSource, SAMPLE_RATE};

    fn tone(freq: f64, samples: usize) -> Vec<i16> {
        let mut out = vec![0i16; samples];
        ToneSource::new(freq)
            .read_frame(&mut out)
            .expect("tone never fails");
        out
    }

    #[test]
    fn a_440_tone_is_detected_as_440_not_880() {
        let samples = tone(440.0, 48_000);
        assert!(tone_present(&samples, 440.0, SAMPLE_RATE));
        assert!(!tone_present(&samples, 880.0, SAMPLE_RATE));
        assert_eq!(
            dominant_tone(&samples, &[880.0, 440.0, 1000.0], SAMPLE_RATE),
            Some(440.0),
            "the dominant candidate must be the one actually played"
        );
    }

    #[test]
    fn goertzel_is_normalised_to_sine_power() {
        let samples: Vec<i16> = (0..48_000)
            .map(|i| ((TAU * 1000.0 * f64::from(i) / 48_000.0).sin() * 32767.0) as i16)
            .collect();
        let p = goertzel_power(&samples, 1000.0, SAMPLE_RATE);
        assert!(
            (p - 0.5).abs() < 0.01,
            "full-scale sine must give ~0.5, got {p}"
        );
        let off = goertzel_power(&samples, 1500.0, SAMPLE_RATE);
        assert!(off < 1e-4, "other frequencies must be ~0, got {off}");
    }

    #[test]
    fn silence_detects_nothing() {
        let samples = vec![0i16; 48_000];
        assert_eq!(rms(&samples), 0.0);
        assert!(!tone_present(&samples, 440.0, SAMPLE_RATE));
        assert_eq!(dominant_tone(&samples, &[440.0, 880.0], SAMPLE_RATE), None);
        assert_eq!(dominant_tone(&[], &[440.0], SAMPLE_RATE), None);
    }

    #[test]
    fn a_mixture_reports_the_stronger_tone() {
        let a = tone(440.0, 48_000);
        let b = tone(880.0, 48_000);
        let mix: Vec<i16> = a
            .iter()
            .zip(&b)
            .map(|(&x, &y)| (i32::from(x) / 4 + i32::from(y)) as i16)
            .collect();
        assert_eq!(
            dominant_tone(&mix, &[440.0, 880.0], SAMPLE_RATE),
            Some(880.0)
        );
    }

    #[test]
    fn rms_of_a_full_scale_sine_is_about_0_707() {
        let samples: Vec<i16> = (0..4800)
            .map(|i| ((TAU * 1000.0 * f64::from(i) / 48_000.0).sin() * 32767.0) as i16)
            .collect();
        assert!((rms(&samples) - std::f64::consts::FRAC_1_SQRT_2).abs() < 0.01);
    }
}
