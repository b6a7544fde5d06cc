//! A machine with no usable sound device (a server, a container): the headless
//! agent asked to use the sound cards says so with a clear `audioDeviceError`,
//! lists only virtual devices, and still makes a call that connects and
//! carries audio. Nothing panics.
//!
//! "No sound device" is real here, not mocked: the agent runs with an empty ALSA
//! configuration (`ALSA_CONFIG_PATH`), so ALSA, and through it cpal, has no PCM
//! at all, just as on a host without sound hardware or sound server.

use hookflash_tests::process::SwitchboardProcess;
use serde_json::json;

#[tokio::test]
async fn with_no_sound_device_the_user_is_told_and_calls_still_work() {
    let dir = std::env::temp_dir().join(format!("hookflash-nodevice-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temp dir");
    let empty_alsa = dir.join("empty-alsa.conf");
    std::fs::write(&empty_alsa, "# no PCM devices at all\n").expect("an empty ALSA config");
    let settings = dir.join("devices.json");

    let sb = SwitchboardProcess::start("nodevice-secret", &[]).await;
    let mut bob = sb
        .agent("bob", &["--auto-answer", "--mic", "tone:880"])
        .await;
    let mut alice = sb
        .agent_with_env(
            "alice",
            &[
                "--sound-devices",
                "--device-settings",
                settings.to_str().expect("a UTF-8 temp path"),
            ],
            &[
                ("ALSA_CONFIG_PATH", empty_alsa.as_os_str()),
                // No sound server either.
                ("PULSE_SERVER", std::ffi::OsStr::new("unix:/nonexistent")),
            ],
        )
        .await;

    let problem = alice
        .next("audioDeviceError", |v| v["event"] == "audioDeviceError")
        .await;
    eprintln!("{problem}");
    assert_eq!(
        problem["code"], "device.none_available",
        "the problem has the stable code the UI shows: {problem}"
    );
    let message = problem["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("No usable sound device") && message.contains("virtual"),
        "the message says what is wrong and what happens instead: {message}"
    );

    alice
        .send(json!({"command": "getSpeakers", "requestId": "s"}))
        .await;
    let speakers = alice
        .next("audioDevices", |v| v["event"] == "audioDevices")
        .await;
    let list = speakers["devices"].as_array().cloned().unwrap_or_default();
    assert!(
        !list.is_empty() && list.iter().all(|d| d["isVirtual"] == true),
        "only virtual speakers are offered: {speakers}"
    );
    assert!(
        speakers["selected"]
            .as_str()
            .is_some_and(|id| id.starts_with("virtual:")),
        "a virtual speaker is in use: {speakers}"
    );

    let call_id = alice.start_call("bob").await;
    alice.state("Connected").await;
    bob.state("Connected").await;
    alice
        .next("remote audio", |v| {
            v["event"] == "remoteAudioStarted" && v["callId"] == call_id.as_str()
        })
        .await;
    alice.hang_up(&call_id).await;
    assert!(
        alice.child.try_wait().ok().flatten().is_none(),
        "the agent is still running: nothing crashed"
    );
    alice.sign_out().await;
    bob.sign_out().await;
    sb.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}
