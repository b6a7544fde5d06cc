//! An incoming call rings on the ringer device, with the ringtone file the user
//! chose (decoded by rodio), until it is answered; a file that is not audio is
//! refused and the chosen ringtone stays.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use hookflash_core::audio::{
    dominant_tone, AudioSink, CaptureSink, DeviceManager, DeviceManagerConfig, SAMPLE_RATE,
};
use hookflash_core::call::CallState;
use hookflash_core::sip::TransportKind;
use hookflash_tests::{Rig, TestAgent};

const RING_HZ: f32 = 660.0;

/// A virtual speaker that keeps what it plays in `buffer`.
fn capture(buffer: &Arc<Mutex<Vec<i16>>>) -> hookflash_core::audio::SinkOpener {
    let b = Arc::clone(buffer);
    Arc::new(move || Ok(Box::new(CaptureSink::with_buffer(Arc::clone(&b))) as Box<dyn AudioSink>))
}

fn write_ringtone(path: &std::path::Path) {
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: 44_100,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).expect("create the ringtone");
    for i in 0..26_460 {
        let v = (std::f32::consts::TAU * RING_HZ * i as f32 / 44_100.0).sin() * 12_000.0;
        w.write_sample(v as i16).expect("left");
        w.write_sample(v as i16).expect("right");
    }
    w.finalize().expect("finish the ringtone");
}

#[tokio::test]
async fn an_incoming_call_rings_with_the_chosen_file_until_answered() {
    hookflash_tests::init_logging();
    let dir = std::env::temp_dir().join(format!("hookflash-ringtone-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temp dir");
    let ring_file = dir.join("ring.wav");
    write_ringtone(&ring_file);
    let not_audio = dir.join("notes.mp3");
    std::fs::write(&not_audio, "not audio at all").expect("write");

    let devices = DeviceManager::new(DeviceManagerConfig::virtual_only());
    let bell = Arc::new(Mutex::new(Vec::new()));
    devices.add_virtual_speaker("virtual:bell", "Desk bell", capture(&bell));
    devices
        .select_ringer(Some("virtual:bell"))
        .expect("ring on the desk bell");
    devices
        .set_ringtone(Some(&ring_file))
        .expect("a WAV ringtone is accepted");
    let refused = devices
        .set_ringtone(Some(&not_audio))
        .expect_err("a file that is not audio is refused");
    assert_eq!(refused.code(), "device.format", "a stable code: {refused}");
    assert_eq!(
        devices.ringtone().as_deref(),
        Some(ring_file.as_path()),
        "a refused file leaves the chosen ringtone in place"
    );

    let rig = Rig::start().await;
    let mut alice = rig.agent("alice", 440.0).await;
    let (config, ears) = rig.config("bob", 880.0, TransportKind::Udp);
    let mut bob = TestAgent::create("bob", config.with_devices(devices.clone()), ears).await;
    bob.wait_connected().await;

    let a_call = alice.agent.start_call("bob").await.expect("call bob");
    let b_call = bob.wait_incoming().await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let rung: Vec<i16> = bell.lock().unwrap().clone();
    assert!(
        rung.len() > SAMPLE_RATE as usize,
        "the ringer played while the call was ringing: {} samples",
        rung.len()
    );
    let first_ring = &rung[..(SAMPLE_RATE as usize / 2).min(rung.len())];
    assert_eq!(
        dominant_tone(
            first_ring,
            &[440.0, 660.0, 800.0, 880.0, 1_000.0],
            SAMPLE_RATE
        ),
        Some(f64::from(RING_HZ)),
        "it rang with the chosen file, not the built-in warble"
    );

    bob.agent
        .call(&b_call)
        .accept()
        .await
        .expect("answer the call");
    bob.wait_state(&b_call, CallState::Connected).await;
    alice.wait_state(&a_call, CallState::Connected).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let at_answer = bell.lock().unwrap().len();
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let after: Vec<i16> = bell.lock().unwrap()[at_answer..].to_vec();
    assert!(
        after.iter().all(|&s| s == 0),
        "the ringing stops once the call is answered ({} samples after, peak {})",
        after.len(),
        after.iter().map(|s| s.unsigned_abs()).max().unwrap_or(0)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
