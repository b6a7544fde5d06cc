//! The headless agent as a child process, driven through stdin/stdout JSON lines, does a call
//! end to end through the switchboard binary; a malformed command gets an error event and the
//! agent carries on.

use std::time::Duration;

use hookflash_core::audio::{tone_present, AudioSource, WavFileSource, SAMPLE_RATE};
use hookflash_tests::process::SwitchboardProcess;

#[tokio::test]
async fn agent_processes_call_through_the_switchboard_process() {
    let dir = std::env::temp_dir().join(format!("hookflash-headless-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sb = SwitchboardProcess::start("cli-secret", &[]).await;
    let bob_wav = dir.join("bob-{call}.wav");
    let mut bob = sb
        .agent(
            "bob",
            &[
                "--auto-answer",
                "--mic",
                "tone:880",
                "--speaker",
                &format!("wav:{}", bob_wav.display()),
            ],
        )
        .await;
    let mut alice = sb.agent("alice", &["--mic", "tone:440"]).await;

    alice
        .send_raw(b"{\"command\":\"dance\",\"requestId\":\"x\"}\nnot json at all\n")
        .await;
    let e = alice.next("error event", |v| v["event"] == "error").await;
    assert_eq!(
        e["code"], "command.malformed",
        "unknown command is a malformed-command error"
    );
    assert_eq!(
        e["requestId"], "x",
        "the error carries the requestId when it could be read"
    );
    alice.next("second error", |v| v["event"] == "error").await;

    let call_id = alice.start_call("bob").await;
    alice.state("Connected").await;
    let bob_call_id = bob.state("Connected").await;
    alice
        .next("remote audio", |v| v["event"] == "remoteAudioStarted")
        .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;

    alice.hang_up(&call_id).await;
    bob.state("Disconnected").await;
    alice.sign_out().await;

    // What bob recorded holds alice's tone.
    let path = dir.join(format!("bob-{bob_call_id}.wav"));
    assert!(path.exists(), "bob's speaker wrote {}", path.display());
    let mut src = WavFileSource::open(&path)
        .expect("a finished WAV file")
        .with_looping(false);
    let mut samples = vec![0i16; src.len_samples()];
    for chunk in samples.chunks_mut(960) {
        src.read_frame(chunk).unwrap();
    }
    assert!(
        samples.len() > SAMPLE_RATE as usize,
        "more than a second was recorded ({} samples)",
        samples.len()
    );
    assert!(
        tone_present(&samples[samples.len() / 2..], 440.0, SAMPLE_RATE),
        "bob's recording holds alice's 440 Hz"
    );
    bob.sign_out().await;
    sb.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}
