//! Call-progress and feedback tones, generated straight into the engine's
//! mixers: ringtone, ringback, call-waiting beep, DTMF key tones, the speaker
//! test tone.
//!
//! They are [`Generator`]s, pulled by the output device's callback exactly when
//! samples are needed, so a key tone starts within one device period and a
//! ringtone follows the ringer device across a device switch or a fallback.
//! (rodio's playback would open a second cpal stream of its own per output: on
//! ALSA `hw:` devices that stream and ours would fight over the card, and tones
//! would not follow our device selection and fallback. Generating them here
//! costs a few dozen lines and no second stream. rodio does decode the user's
//! own ringtone file, which then plays through the same mixer: see
//! [`super::ringtone`].)
//!
//! Envelopes are smoothed (3 ms), so tones start and stop without clicks.

use std::f32::consts::TAU;

use serde::{Deserialize, Serialize};

use super::mixer::Generator;
use super::SAMPLE_RATE;

/// A tone the device manager can play.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "tone", content = "digit")]
pub enum Tone {
    /// An incoming call, on the ringer: a 1 s warble (800/1000 Hz at 16 Hz)
    /// every 3 s, until stopped.
    Ringtone,
    /// The far end is ringing, on the speaker: 440 + 480 Hz, 2 s on, 4 s off
    /// (North American ringback), until stopped.
    Ringback,
    /// Another call arrives during a call, on the speaker: two short 440 Hz beeps
    /// every 10 s, until stopped.
    CallWaiting,
    /// A dial-pad key: its DTMF pair for 120 ms.
    Key(char),
    /// The settings page's speaker test: 1 s of 440 Hz, then 1 s of 880 Hz.
    SpeakerTest,
}

/// One piece of a tone pattern: up to two frequencies (none = silence).
#[derive(Debug, Clone, Copy)]
struct Segment {
    freqs: [f32; 2],
    samples: usize,
}

fn ms(ms: u32) -> usize {
    (SAMPLE_RATE / 1000 * ms) as usize
}

fn seg(f1: f32, f2: f32, dur_ms: u32) -> Segment {
    Segment {
        freqs: [f1, f2],
        samples: ms(dur_ms),
    }
}

fn silence(dur_ms: u32) -> Segment {
    seg(0.0, 0.0, dur_ms)
}

/// The DTMF frequency pair of a key (ITU-T Q.23).
pub fn dtmf_pair(key: char) -> Option<(f32, f32)> {
    let (row, col) = match key.to_ascii_uppercase() {
        '1' => (0, 0),
        '2' => (0, 1),
        '3' => (0, 2),
        'A' => (0, 3),
        '4' => (1, 0),
        '5' => (1, 1),
        '6' => (1, 2),
        'B' => (1, 3),
        '7' => (2, 0),
        '8' => (2, 1),
        '9' => (2, 2),
        'C' => (2, 3),
        '*' => (3, 0),
        '0' => (3, 1),
        '#' => (3, 2),
        'D' => (3, 3),
        _ => return None,
    };
    const ROWS: [f32; 4] = [697.0, 770.0, 852.0, 941.0];
    const COLS: [f32; 4] = [1209.0, 1336.0, 1477.0, 1633.0];
    Some((ROWS[row], COLS[col]))
}

/// A tone pattern being played.
pub struct ToneGenerator {
    segments: Vec<Segment>,
    looping: bool,
    index: usize,
    pos: usize,
    phases: [f32; 2],
    env: f32,
    amplitude: f32,
    finished: bool,
}

impl ToneGenerator {
    /// The generator for a tone; `None` for a key that is not a DTMF digit.
    pub fn new(tone: Tone) -> Option<Self> {
        let (segments, looping, amplitude) = match tone {
            Tone::Ringtone => {
                let mut s: Vec<Segment> = (0..16)
                    .map(|i| {
                        if i % 2 == 0 {
                            seg(800.0, 0.0, 62)
                        } else {
                            seg(1000.0, 0.0, 63)
                        }
                    })
                    .collect();
                s.push(silence(2_000));
                (s, true, 0.3)
            }
            Tone::Ringback => (vec![seg(440.0, 480.0, 2_000), silence(4_000)], true, 0.12),
            Tone::CallWaiting => (
                vec![
                    seg(440.0, 0.0, 200),
                    silence(200),
                    seg(440.0, 0.0, 200),
                    silence(9_400),
                ],
                true,
                0.15,
            ),
            Tone::Key(key) => {
                let (lo, hi) = dtmf_pair(key)?;
                (vec![seg(lo, hi, 120), silence(10)], false, 0.1)
            }
            Tone::SpeakerTest => (
                vec![seg(440.0, 0.0, 1_000), seg(880.0, 0.0, 1_000), silence(10)],
                false,
                0.25,
            ),
        };
        Some(ToneGenerator {
            segments,
            looping,
            index: 0,
            pos: 0,
            phases: [0.0; 2],
            env: 0.0,
            amplitude,
            finished: false,
        })
    }
}

impl Generator for ToneGenerator {
    fn add_to(&mut self, out: &mut [f32]) -> bool {
        // One-pole envelope smoothing with a ~3 ms time constant.
        let k = 1.0 - (-1.0 / (0.003 * SAMPLE_RATE as f32)).exp();
        for o in out.iter_mut() {
            if self.finished {
                return false;
            }
            let segment = self.segments[self.index];
            let voices = segment.freqs.iter().filter(|f| **f > 0.0).count();
            let target = if voices > 0 { 1.0 } else { 0.0 };
            self.env += (target - self.env) * k;
            let mut s = 0.0;
            for (phase, &f) in self.phases.iter_mut().zip(&segment.freqs) {
                if f > 0.0 {
                    *phase = (*phase + TAU * f / SAMPLE_RATE as f32) % TAU;
                    s += phase.sin();
                }
            }
            if voices > 1 {
                s *= 0.5;
            }
            *o += s * self.env * self.amplitude;
            self.pos += 1;
            if self.pos >= segment.samples {
                self.pos = 0;
                self.index += 1;
                if self.index >= self.segments.len() {
                    if self.looping {
                        self.index = 0;
                    } else {
                        self.finished = true;
                    }
                }
            }
        }
        !self.finished
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::tone_present;

    fn render(tone: Tone, samples: usize) -> Vec<i16> {
        let mut g = ToneGenerator::new(tone).expect("a known tone");
        let mut out = vec![0f32; samples];
        for chunk in out.chunks_mut(480) {
            g.add_to(chunk);
        }
        out.iter().map(|s| (s * 32_767.0) as i16).collect()
    }

    #[test]
    fn key_tones_are_the_dtmf_pairs_and_end_by_themselves() {
        let pcm = render(Tone::Key('5'), 9_600);
        assert!(tone_present(&pcm[..4_800], 770.0, SAMPLE_RATE));
        assert!(tone_present(&pcm[..4_800], 1_336.0, SAMPLE_RATE));
        assert!(
            pcm[7_200..].iter().all(|&s| s == 0),
            "a key tone is short: silence after 120 ms"
        );
        assert!(ToneGenerator::new(Tone::Key('x')).is_none());
    }

    #[test]
    fn ringback_follows_its_cadence() {
        let pcm = render(Tone::Ringback, 48_000 * 6);
        let on = &pcm[4_800..48_000];
        let off = &pcm[48_000 * 3..48_000 * 5];
        assert!(tone_present(on, 440.0, SAMPLE_RATE) && tone_present(on, 480.0, SAMPLE_RATE));
        assert!(
            off.iter().all(|&s| s.abs() < 2),
            "ringback is silent between rings"
        );
    }

    #[test]
    fn tones_start_without_a_click() {
        let pcm = render(Tone::SpeakerTest, 480);
        let first_ms_peak = pcm[..48].iter().map(|s| s.unsigned_abs()).max().unwrap();
        assert!(
            first_ms_peak < 3_000,
            "the envelope ramps up instead of jumping: {first_ms_peak}"
        );
        let pcm = render(Tone::Ringtone, 48_000);
        assert!(
            tone_present(&pcm[300..2_900], 800.0, SAMPLE_RATE)
                && tone_present(&pcm[3_300..5_900], 1_000.0, SAMPLE_RATE),
            "the ringtone warbles between 800 and 1000 Hz"
        );
    }
}
