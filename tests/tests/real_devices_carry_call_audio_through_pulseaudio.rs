//! With a real sound server (a private PulseAudio with a null sink, reached by
//! cpal through ALSA's pulse plugin): the devices are listed, a call's audio is
//! played through the real output path and captured back from the sink's
//! monitor, and when the selected speaker dies mid-call the call carries on on
//! the system default, with events that say so.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hookflash_core::api::Event;
use hookflash_core::audio::{
    tone_present, AudioSink, AudioSource, DeviceError, DeviceManager, DeviceManagerConfig,
    NullSink, ProcessingSettings, SilenceSource, ToneSource, FRAME_SAMPLES, SAMPLE_RATE,
};
use hookflash_core::media::{MediaConfig, MediaSession};
use hookflash_tests::pulse::Pulse;
use hookflash_tests::wait_event;

const CALLER_HZ: f64 = 1_000.0;

/// The share of 100 ms windows of `samples` in which `freq` is clearly present
/// (robust to the sample slips that absorb clock drift, which smear a long
/// Goertzel window).
fn presence(samples: &[i16], freq: f64) -> f64 {
    let windows: Vec<&[i16]> = samples.chunks_exact(4_800).collect();
    let hits = windows
        .iter()
        .filter(|w| tone_present(w, freq, SAMPLE_RATE))
        .count();
    hits as f64 / windows.len().max(1) as f64
}

/// Reads a source in real time for `secs` seconds.
async fn record(source: &mut dyn AudioSource, secs: f64) -> Vec<i16> {
    let mut out = Vec::new();
    let mut frame = vec![0i16; FRAME_SAMPLES];
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    for _ in 0..(secs * 50.0) as usize {
        tick.tick().await;
        source
            .read_frame(&mut frame)
            .expect("a capture tap never fails");
        out.extend_from_slice(&frame);
    }
    out
}

/// A speaker that works for `frames` frames and then reports an error, as a
/// USB headset does when it is pulled out.
struct FlakySink {
    left: Arc<AtomicUsize>,
}

impl AudioSink for FlakySink {
    fn write_frame(&mut self, _frame: &[i16]) -> Result<(), DeviceError> {
        if self.left.fetch_sub(1, Ordering::SeqCst) == 0 {
            self.left.store(0, Ordering::SeqCst);
            return Err(DeviceError::Io("the USB headset was unplugged".into()));
        }
        Ok(())
    }
    fn describe(&self) -> String {
        "flaky".into()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_is_heard_on_the_real_output_and_survives_losing_its_speaker() {
    hookflash_tests::init_logging();
    let Some(pulse) = Pulse::start() else { return };
    let settings = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("hookflash-devices.json");
    let _ = std::fs::remove_file(&settings);
    let devices = DeviceManager::new(DeviceManagerConfig {
        system_devices: true,
        settings_path: Some(settings.clone()),
        poll_interval: None,
    });
    let mut events = devices.subscribe();

    // 1. Enumeration: real devices, a default among them, the virtual ones beside.
    let speakers = devices.get_speakers();
    let microphones = devices.get_microphones();
    eprintln!("speakers: {speakers:#?}\nmicrophones: {microphones:#?}");
    assert!(
        speakers
            .iter()
            .any(|d| d.is_system_default && !d.is_virtual),
        "one real speaker is the system default: {speakers:?}"
    );
    assert!(
        speakers.iter().any(|d| d.is_virtual) && microphones.iter().any(|d| d.is_virtual),
        "virtual devices are listed beside the real ones"
    );
    let (real_speaker, _) = hookflash_tests::pulse::select_pulse_devices(&devices);
    // This test measures the raw path from the speaker back into the microphone;
    // echo cancellation (on by default) would rightly remove it (that is proven
    // in `echo_is_cancelled_on_a_real_microphone`).
    devices.set_audio_processing(ProcessingSettings::OFF);
    assert!(
        std::fs::read_to_string(&settings)
            .unwrap_or_default()
            .contains(&real_speaker.id),
        "the selection is persisted by id"
    );

    // 2. A call: the caller says 1 kHz; the callee plays the call on the real speaker.
    let (caller, _caller_events) = MediaSession::new(
        MediaConfig::default(),
        Box::new(ToneSource::new(CALLER_HZ)),
        Box::new(NullSink::new()),
    )
    .await
    .expect("caller media");
    let speaker = (devices.sink_factory())("call-1").expect("a mixer input");
    let (callee, _callee_events) = MediaSession::new(
        MediaConfig::default(),
        Box::new(SilenceSource::new()),
        speaker,
    )
    .await
    .expect("callee media");
    hookflash_tests::negotiate(&caller, &callee).await;

    // The microphone is the null sink's monitor: what the speaker plays comes back.
    let mut mic = (devices.source_factory())("probe").expect("a capture tap");
    let heard = record(mic.as_mut(), 4.0).await;
    let path = hookflash_tests::save_wav("pulse-loopback.wav", &heard);
    // The first streams of the process start at once: the caller is heard well
    // within the first half second, not after the watchdog (1.5 s) reopened a
    // stream that never ran.
    let first_heard_ms = heard
        .chunks_exact(4_800)
        .position(|w| tone_present(w, CALLER_HZ, SAMPLE_RATE))
        .map(|i| i * 100);
    eprintln!("the caller is first heard after {first_heard_ms:?} ms");
    assert!(
        first_heard_ms.is_some_and(|ms| ms <= 500),
        "the first call through PulseAudio must be heard within 500 ms of opening the \
         devices, not after a stall: first heard after {first_heard_ms:?} ms (recording: {})",
        path.display()
    );
    let tail = &heard[heard.len() - 2 * SAMPLE_RATE as usize..];
    let share = presence(tail, CALLER_HZ);
    assert!(
        share >= 0.9,
        "the caller's 1 kHz must come out of the real speaker and back in through the \
         monitor in at least 90 % of 100 ms windows: {:.0} % (recording: {})",
        share * 100.0,
        path.display()
    );

    // 3. The selected speaker dies mid-call: fallback to the system default.
    let left = Arc::new(AtomicUsize::new(50));
    let l = Arc::clone(&left);
    devices.add_virtual_speaker(
        "virtual:flaky",
        "Flaky USB headset (virtual)",
        Arc::new(move || {
            Ok(Box::new(FlakySink {
                left: Arc::clone(&l),
            }) as _)
        }),
    );
    devices
        .select_speaker("virtual:flaky")
        .expect("select the flaky speaker");
    let lost = wait_event(
        &mut events,
        "audioDeviceError",
        |e| matches!(e, Event::AudioDeviceError { code, .. } if code == "device.lost.speaker"),
    )
    .await;
    eprintln!("{}", serde_json::to_string(&lost).unwrap_or_default());
    let Event::AudioDeviceError {
        message,
        fallback_device_id,
        ..
    } = lost
    else {
        unreachable!()
    };
    assert!(
        message.contains("Flaky"),
        "the user is told which device failed: {message}"
    );
    let fallback = fallback_device_id.expect("the event names the fallback device");
    assert!(
        !fallback.starts_with("virtual:"),
        "a real default device is the fallback, not a virtual one: {fallback}"
    );
    // The explanation comes first, then the selection change it explains.
    wait_event(
        &mut events,
        "selectedSpeakerChanged to the fallback",
        |e| matches!(e, Event::SelectedSpeakerChanged { device } if device.id == fallback),
    )
    .await;
    assert_eq!(
        devices.selected_speaker().map(|d| d.id),
        Some(fallback.clone()),
        "the fallback is in use"
    );
    let heard = record(mic.as_mut(), 3.0).await;
    let path = hookflash_tests::save_wav("pulse-after-fallback.wav", &heard);
    let share = presence(&heard[heard.len() - SAMPLE_RATE as usize..], CALLER_HZ);
    assert!(
        share >= 0.9,
        "after the fallback the call is heard again on the default device: {:.0} % of \
         windows (recording: {})",
        share * 100.0,
        path.display()
    );
    assert!(!callee.is_closed(), "the call was never dropped");

    caller.close().await;
    callee.close().await;
    drop(mic);
    drop(devices);
    eprintln!("stopping PulseAudio (pid {})", pulse.pid());
}
