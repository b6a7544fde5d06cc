//! Mouth-to-ear latency through the whole audio pipeline on loopback, and the
//! CPU and memory one call costs.
//!
//! The sender's microphone is a virtual device that says a 1 kHz burst every
//! 500 ms and notes when each burst's first sample was captured; it goes through
//! the sender's engine (capture hub, tap), the media pump, Opus, RTP on
//! loopback, the receiver's jitter buffer, decoder, playout, mixer input and
//! mixer, to the receiver's speaker:
//!
//! * `virtual`: a virtual speaker that notes when each burst's first sample is
//!   due to be played (an ideal DAC: no device buffer);
//! * `pulse` (when `pulseaudio` is installed): the real speaker path through
//!   cpal/ALSA/PulseAudio into a null sink, heard back through its monitor
//!   (so this also includes the monitor's capture latency: an upper bound),
//!   with voice processing off (it would cancel the burst: the monitor is an
//!   echo path), and then the cost of one call with it on, as users run it.
//!
//! Run: `cargo bench -p hookflash-tests --bench audio_latency`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hookflash_core::audio::{
    AudioSink, AudioSource, DeviceError, DeviceManager, DeviceManagerConfig, ProcessingSettings,
    FRAME_SAMPLES, SAMPLE_RATE,
};
use hookflash_tests::pulse::Pulse;
use hookflash_tests::{media_on, negotiate};

type Times = Arc<Mutex<Vec<Instant>>>;

/// Says a 20 ms 1 kHz burst every 500 ms; notes each burst's capture time.
struct ClickSource {
    frame: u64,
    mouths: Times,
}

impl AudioSource for ClickSource {
    fn read_frame(&mut self, out: &mut [i16]) -> Result<(), DeviceError> {
        if self.frame.is_multiple_of(25) {
            for (i, s) in out.iter_mut().enumerate() {
                let t = i as f64 / f64::from(SAMPLE_RATE);
                *s = ((2.0 * std::f64::consts::PI * 1_000.0 * t).sin() * 16_000.0) as i16;
            }
            self.mouths.lock().unwrap().push(Instant::now());
        } else {
            out.fill(0);
        }
        self.frame += 1;
        Ok(())
    }
    fn describe(&self) -> String {
        "clicks".into()
    }
}

/// Finds burst onsets in what it is given; `at` is when `samples[0]` plays.
#[derive(Default)]
struct OnsetDetector {
    quiet: usize,
}

impl OnsetDetector {
    fn feed(&mut self, samples: &[i16], at: Instant, ears: &Times) {
        for (i, &s) in samples.iter().enumerate() {
            if s.unsigned_abs() > 3_000 {
                if self.quiet > 9_600 {
                    let offset = Duration::from_secs_f64(i as f64 / f64::from(SAMPLE_RATE));
                    ears.lock().unwrap().push(at + offset);
                }
                self.quiet = 0;
            } else {
                self.quiet += 1;
            }
        }
    }
}

struct EarSink {
    detector: OnsetDetector,
    ears: Times,
}

impl AudioSink for EarSink {
    fn write_frame(&mut self, frame: &[i16]) -> Result<(), DeviceError> {
        self.detector.feed(frame, Instant::now(), &self.ears);
        Ok(())
    }
    fn describe(&self) -> String {
        "ear".into()
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx]
}

fn latencies(mouths: &[Instant], ears: &[Instant]) -> Vec<f64> {
    let mut out = Vec::new();
    for &m in mouths.iter().skip(2) {
        if let Some(&e) = ears
            .iter()
            .find(|&&e| e > m && e - m < Duration::from_millis(450))
        {
            out.push((e - m).as_secs_f64() * 1_000.0);
        }
    }
    out.sort_by(f64::total_cmp);
    out
}

fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or_default();
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    ticks / 100.0
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

/// One measurement: `calls` simultaneous calls from the sender's engine to the
/// receiver's, all saying the bursts. Prints latency (first call's bursts, when
/// readable) and returns the CPU both processes' worth of work took, as a
/// fraction of one core.
async fn run(
    label: &str,
    real: bool,
    processing: ProcessingSettings,
    calls: usize,
    seconds: u64,
) -> f64 {
    let mouths: Times = Arc::default();
    let ears: Times = Arc::default();
    let sender = DeviceManager::new(DeviceManagerConfig::virtual_only());
    let m = Arc::clone(&mouths);
    sender.add_virtual_microphone(
        "virtual:clicks",
        "Clicks",
        Arc::new(move || {
            Ok(Box::new(ClickSource {
                frame: 0,
                mouths: Arc::clone(&m),
            }) as _)
        }),
    );
    sender.select_microphone("virtual:clicks").expect("clicks");
    let receiver = DeviceManager::new(DeviceManagerConfig {
        system_devices: real,
        settings_path: None,
        poll_interval: None,
    });
    receiver.set_audio_processing(processing);
    if !real {
        let e = Arc::clone(&ears);
        receiver.add_virtual_speaker(
            "virtual:ear",
            "Ear",
            Arc::new(move || {
                Ok(Box::new(EarSink {
                    detector: OnsetDetector::default(),
                    ears: Arc::clone(&e),
                }) as _)
            }),
        );
        receiver.select_speaker("virtual:ear").expect("ear");
    }
    let rss_before = rss_kib();
    let mut sessions = Vec::new();
    for n in 0..calls {
        let call = format!("bench-{n}");
        let a = media_on(&sender, &call).await;
        let b = media_on(&receiver, &call).await;
        negotiate(&a, &b).await;
        sessions.push((a, b));
    }

    // With real devices the ear is the monitor of the null sink, read through
    // the receiver's microphone (another tap; the call's own tap also reads it).
    let listener = if real {
        let mut tap = (receiver.source_factory())("ear").expect("ear tap");
        let e = Arc::clone(&ears);
        Some(tokio::spawn(async move {
            let mut detector = OnsetDetector::default();
            let mut frame = vec![0i16; FRAME_SAMPLES];
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            loop {
                tick.tick().await;
                if tap.read_frame(&mut frame).is_err() {
                    break;
                }
                // The frame just read ends now: its first sample played 20 ms ago.
                let start = Instant::now() - Duration::from_millis(20);
                detector.feed(&frame, start, &e);
            }
        }))
    } else {
        None
    };

    tokio::time::sleep(Duration::from_secs(2)).await;
    let cpu0 = cpu_seconds();
    let wall0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let cpu = (cpu_seconds() - cpu0) / wall0.elapsed().as_secs_f64();
    let rss_after = rss_kib();
    if let Some(l) = listener {
        l.abort();
    }
    let stats = sessions[0].1.jitter_stats();
    for (a, b) in &sessions {
        a.close().await;
        b.close().await;
    }

    let lat = latencies(&mouths.lock().unwrap(), &ears.lock().unwrap());
    if calls > 1 {
        // Several calls' bursts overlap at the ear: no latency to read.
    } else if real && processing != ProcessingSettings::OFF {
        // The ear is the receiver's microphone, and the echo canceller removes the
        // speaker's sound from it, as it should: no latency to read here.
        println!(
            "{label:<10} (echo cancellation and noise suppression on the receiver's microphone)"
        );
    } else {
        println!(
            "{label:<10} mouth-to-ear over {} bursts: median {:.1} ms, p95 {:.1} ms, min {:.1}, max {:.1}",
            lat.len(),
            percentile(&lat, 0.5),
            percentile(&lat, 0.95),
            percentile(&lat, 0.0),
            percentile(&lat, 1.0),
        );
        println!(
            "{label:<10} jitter buffer: target {} ms, played {}, concealed {}, dropped {}, stretched {}",
            stats.target_ms, stats.played, stats.concealed, stats.dropped, stats.stretched
        );
    }
    println!(
        "{label:<10} CPU with {calls} Opus call(s), both ends in this process: {:.2} % of one \
         core; RSS {} MiB, +{} KiB for the call(s)",
        cpu * 100.0,
        rss_after / 1024,
        rss_after.saturating_sub(rss_before)
    );
    cpu
}

/// Prints what one more call costs, from runs with one call and with `many`.
fn marginal(label: &str, one: f64, many: f64, calls: usize) {
    let per_call = (many - one) / (calls - 1) as f64;
    println!(
        "{label:<10} => each call adds {:.2} % of one core ({:.2} % per end); the engine with \
         its devices open and one call: {:.2} %",
        per_call * 100.0,
        per_call * 50.0,
        one * 100.0
    );
}

fn main() {
    let seconds: u64 = std::env::var("HOOKFLASH_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    const MANY: usize = 5;
    let off = ProcessingSettings::OFF;
    let one = runtime.block_on(run("virtual", false, off, 1, seconds));
    let many = runtime.block_on(run("virtual", false, off, MANY, seconds));
    marginal("virtual", one, many, MANY);
    match Pulse::start() {
        Some(pulse) => {
            // Latency is read through the microphone (the sink's monitor), so the
            // echo canceller must be off for it; then the cost with it on.
            let one = runtime.block_on(run("pulse", true, off, 1, seconds));
            let many = runtime.block_on(run("pulse", true, off, MANY, seconds));
            marginal("pulse", one, many, MANY);
            let on = ProcessingSettings::default();
            let one = runtime.block_on(run("pulse+apm", true, on, 1, seconds));
            let many = runtime.block_on(run("pulse+apm", true, on, MANY, seconds));
            marginal("pulse+apm", one, many, MANY);
            drop(pulse);
        }
        None => println!("pulse    skipped: pulseaudio is not installed"),
    }
}
