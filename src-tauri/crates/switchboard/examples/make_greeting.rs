//! Writes the default voicemail greeting, `assets/greeting.wav`: 16 kHz mono 16-bit, about
//! 2.6 s — a short pause, a four-note chime, a pause, and the beep that tells the caller to
//! speak: 1400 Hz for 400 ms at -12 dBFS, the last thing in the file (see
//! `hookflash_switchboard::voicemail::BEEP_HZ`).
//!
//! ```text
//! cargo run -p hookflash-switchboard --example make_greeting [-- OUT.wav]
//! ```

use std::f64::consts::TAU;

const RATE: u32 = 16_000;

fn silence(out: &mut Vec<i16>, secs: f64) {
    out.extend(std::iter::repeat_n(0, (secs * f64::from(RATE)) as usize));
}

/// A bell-like note: a sine with a fast attack and an exponential decay.
fn chime(out: &mut Vec<i16>, freq: f64, secs: f64) {
    let n = (secs * f64::from(RATE)) as usize;
    for i in 0..n {
        let t = i as f64 / f64::from(RATE);
        let attack = (t / 0.005).min(1.0);
        let env = attack * (-t / 0.18).exp();
        out.push((6000.0 * env * (TAU * freq * t).sin()).round() as i16);
    }
}

/// The beep: a steady sine with 5 ms raised-cosine ramps.
fn beep(out: &mut Vec<i16>, freq: f64, secs: f64) {
    let n = (secs * f64::from(RATE)) as usize;
    let ramp = (0.005 * f64::from(RATE)) as usize;
    for i in 0..n {
        let t = i as f64 / f64::from(RATE);
        let edge = i.min(n - 1 - i);
        let env = if edge < ramp {
            0.5 - 0.5 * (std::f64::consts::PI * edge as f64 / ramp as f64).cos()
        } else {
            1.0
        };
        out.push((8231.0 * env * (TAU * freq * t).sin()).round() as i16);
    }
}

fn main() {
    let out_path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| concat!(env!("CARGO_MANIFEST_DIR"), "/assets/greeting.wav").into());
    let mut s = Vec::new();
    silence(&mut s, 0.3);
    for f in [659.25, 523.25, 587.33, 392.0] {
        chime(&mut s, f, 0.35);
    }
    silence(&mut s, 0.5);
    beep(&mut s, 1400.0, 0.4);
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: RATE,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(&out_path, spec).expect("create the WAV file");
    for x in s {
        w.write_sample(x).expect("write a sample");
    }
    w.finalize().expect("finish the WAV file");
    println!("wrote {out_path}");
}
