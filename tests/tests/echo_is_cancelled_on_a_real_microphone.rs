//! Echo cancellation on a real microphone, on by default: the far end talks,
//! its voice comes out of the near end's real speaker (a PulseAudio null sink)
//! and back in through the near end's real microphone (the sink's monitor: a
//! hard echo path, every word returned at full level and only a few ms after
//! it was mixed, sooner than AEC3 can follow unless the microphone is held
//! back). With processing on, the far end does not hear itself; turned off
//! mid-call, it does.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use hookflash_core::api::Event;
use hookflash_core::audio::{
    CaptureSink, DeviceManager, DeviceManagerConfig, ProcessingSettings, SpeechSource, SAMPLE_RATE,
};
use hookflash_core::media::{MediaConfig, MediaSession};
use hookflash_tests::pulse::Pulse;
use hookflash_tests::wait_event;

/// The far end's voice.
const VOICE: u32 = 7;

/// Mean power of `samples` in dB relative to full scale.
fn level_db(samples: &[i16]) -> f64 {
    let power = samples
        .iter()
        .map(|&s| (f64::from(s) / 32_768.0).powi(2))
        .sum::<f64>()
        / samples.len().max(1) as f64;
    10.0 * power.max(1e-12).log10()
}

/// What the far end heard in the last `seconds`, after waiting `wait`.
async fn far_end_hears(heard: &Arc<Mutex<Vec<i16>>>, wait: Duration, seconds: f64) -> Vec<i16> {
    tokio::time::sleep(wait).await;
    let all = heard.lock().unwrap();
    let n = (seconds * f64::from(SAMPLE_RATE)) as usize;
    all[all.len().saturating_sub(n)..].to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_far_end_does_not_hear_itself_unless_echo_cancellation_is_off() {
    hookflash_tests::init_logging();
    let Some(pulse) = Pulse::start() else { return };
    let devices = DeviceManager::new(DeviceManagerConfig {
        system_devices: true,
        settings_path: None,
        poll_interval: None,
    });
    let mut events = devices.subscribe();
    assert_eq!(
        devices.audio_processing(),
        ProcessingSettings {
            echo_cancellation: true,
            noise_suppression: true
        },
        "echo cancellation and noise suppression are on unless the user turns them off"
    );
    hookflash_tests::pulse::select_pulse_devices(&devices);

    // The far end talks and records what comes back.
    let heard = Arc::new(Mutex::new(Vec::new()));
    let (far, _far_events) = MediaSession::new(
        MediaConfig::default(),
        Box::new(SpeechSource::new(VOICE)),
        Box::new(CaptureSink::with_buffer(Arc::clone(&heard))),
    )
    .await
    .expect("far-end media");
    // The near end is a call on the real devices.
    let near = hookflash_tests::media_on(&devices, "call-1").await;
    hookflash_tests::negotiate(&far, &near).await;

    // What the far end says, for scale.
    let voice: Vec<i16> = SpeechSource::new(VOICE)
        .samples(3 * SAMPLE_RATE as usize)
        .iter()
        .map(|s| (s * 32_767.0) as i16)
        .collect();
    let voice_db = level_db(&voice);

    // On (the default): after a few seconds to converge, the echo is gone.
    let cancelled = far_end_hears(&heard, Duration::from_secs(7), 3.0).await;
    let on_db = level_db(&cancelled);
    hookflash_tests::save_wav("echo-cancelled.wav", &cancelled);

    // Another speaker mid-call (ALSA's `default`, a second way into the same
    // sound server: a new stream, new latencies): the canceller starts afresh and
    // catches up.
    let other = devices
        .get_speakers()
        .into_iter()
        .find(|d| d.id == "alsa:default")
        .expect("ALSA's default device is listed beside alsa:pulse");
    devices
        .select_speaker(&other.id)
        .expect("switch speakers mid-call");
    let switched = far_end_hears(&heard, Duration::from_secs(6), 3.0).await;
    let switched_db = level_db(&switched);

    // Off, mid-call: the far end hears itself.
    devices.set_audio_processing(ProcessingSettings::OFF);
    wait_event(&mut events, "audioProcessingChanged", |e| {
        matches!(
            e,
            Event::AudioProcessingChanged {
                echo_cancellation: false,
                noise_suppression: false
            }
        )
    })
    .await;
    let echoed = far_end_hears(&heard, Duration::from_secs(3), 2.0).await;
    let off_db = level_db(&echoed);
    let path = hookflash_tests::save_wav("echo-uncancelled.wav", &echoed);
    eprintln!(
        "far end says {voice_db:.1} dBFS; hears back {on_db:.1} dBFS with echo cancellation, \
         {switched_db:.1} dBFS after a speaker switch, {off_db:.1} dBFS without ({})",
        path.display()
    );
    assert!(
        off_db > voice_db - 12.0,
        "without echo cancellation the monitor returns the far end's voice nearly whole \
         (else this setup proves nothing): {off_db:.1} dBFS vs {voice_db:.1} dBFS said"
    );
    assert!(
        on_db < off_db - 25.0,
        "with echo cancellation the far end must hear its voice at least 25 dB quieter: \
         {on_db:.1} dBFS vs {off_db:.1} dBFS without"
    );
    assert!(
        switched_db < off_db - 25.0,
        "after a speaker switch the echo is cancelled again: {switched_db:.1} dBFS vs \
         {off_db:.1} dBFS without"
    );
    assert!(
        !near.is_closed(),
        "switching processing never touches the call"
    );

    far.close().await;
    near.close().await;
    drop(devices);
    eprintln!("stopping PulseAudio (pid {})", pulse.pid());
}
