//! The headless agent as a child process, driven through stdin/stdout JSON lines, does a call
//! end to end through the switchboard binary; a malformed command gets an error event and the
//! agent carries on.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use hookflash_core::audio::{tone_present, AudioSource, WavFileSource, SAMPLE_RATE};
use hookflash_tests::bin_dir;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

const SECRET: &str = "cli-secret";

fn bin(name: &str) -> std::path::PathBuf {
    let p = bin_dir().join(name);
    assert!(
        p.exists(),
        "{} must be built (cargo test --workspace builds it)",
        p.display()
    );
    p
}

async fn token(user: &str) -> String {
    let out = Command::new(bin("hookflash-switchboard"))
        .args(["token", user, "--ttl", "1h", "--secret", SECRET])
        .output()
        .await
        .expect("run the token command");
    assert!(
        out.status.success(),
        "token command succeeds: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

async fn next_event(
    lines: &mut Lines<BufReader<ChildStdout>>,
    what: &str,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    let fut = async {
        loop {
            let line = lines
                .next_line()
                .await
                .expect("read stdout")
                .unwrap_or_else(|| panic!("agent exited before {what}"));
            let v: Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("stdout line is JSON ({e}): {line}"));
            if pred(&v) {
                return v;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(15), fut)
        .await
        .unwrap_or_else(|_| panic!("no {what} in time"))
}

fn agent(server: &str, token: &str, extra: &[&str]) -> Child {
    Command::new(bin("hookflash-agent"))
        .args(["--server", server, "--token", token])
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn hookflash-agent")
}

#[tokio::test]
async fn agent_processes_call_through_the_switchboard_process() {
    let dir = std::env::temp_dir().join(format!("hookflash-headless-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut sb = Command::new(bin("hookflash-switchboard"))
        .args([
            "serve",
            "--bind",
            "127.0.0.1",
            "--port",
            "0",
            "--secret",
            SECRET,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn the switchboard");
    let mut sb_out = BufReader::new(sb.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(10), sb_out.next_line())
        .await
        .expect("switchboard announces itself")
        .unwrap()
        .unwrap();
    let server = line
        .split_whitespace()
        .find(|w| w.starts_with("127.0.0.1:"))
        .unwrap_or_else(|| panic!("listening line names the address: {line}"))
        .to_owned();

    let bob_wav = dir.join("bob-{call}.wav");
    let mut bob = agent(
        &server,
        &token("bob").await,
        &[
            "--auto-answer",
            "--mic",
            "tone:880",
            "--speaker",
            &format!("wav:{}", bob_wav.display()),
        ],
    );
    let mut bob_out = BufReader::new(bob.stdout.take().unwrap()).lines();
    next_event(&mut bob_out, "bob Connected", |v| {
        v["event"] == "connectionStateChanged" && v["newValue"] == "Connected"
    })
    .await;

    let mut alice = agent(&server, &token("alice").await, &["--mic", "tone:440"]);
    let mut stdin = alice.stdin.take().unwrap();
    let mut out = BufReader::new(alice.stdout.take().unwrap()).lines();
    next_event(&mut out, "alice Connected", |v| {
        v["event"] == "connectionStateChanged" && v["newValue"] == "Connected"
    })
    .await;

    stdin
        .write_all(b"{\"command\":\"dance\",\"requestId\":\"x\"}\nnot json at all\n")
        .await
        .unwrap();
    let e = next_event(&mut out, "error event", |v| v["event"] == "error").await;
    assert_eq!(
        e["code"], "command.malformed",
        "unknown command is a malformed-command error"
    );
    assert_eq!(
        e["requestId"], "x",
        "the error carries the requestId when it could be read"
    );
    next_event(&mut out, "second error", |v| v["event"] == "error").await;

    stdin
        .write_all(b"{\"command\":\"startCall\",\"target\":\"bob\",\"requestId\":\"1\"}\n")
        .await
        .unwrap();
    let ok = next_event(&mut out, "commandSucceeded", |v| {
        v["event"] == "commandSucceeded" && v["requestId"] == "1"
    })
    .await;
    let call_id = ok["callId"]
        .as_str()
        .expect("startCall answers with the call id")
        .to_owned();
    next_event(&mut out, "Connected", |v| {
        v["event"] == "callStateChanged" && v["state"] == "Connected"
    })
    .await;
    let bob_call = next_event(&mut bob_out, "bob Connected call", |v| {
        v["event"] == "callStateChanged" && v["state"] == "Connected"
    })
    .await;
    let bob_call_id = bob_call["callId"].as_str().unwrap().to_owned();
    next_event(&mut out, "remote audio", |v| {
        v["event"] == "remoteAudioStarted"
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;

    stdin
        .write_all(format!("{{\"command\":\"hangUp\",\"callId\":\"{call_id}\"}}\n").as_bytes())
        .await
        .unwrap();
    let end = next_event(&mut out, "Disconnected", |v| {
        v["event"] == "callStateChanged" && v["state"] == "Disconnected"
    })
    .await;
    assert_eq!(
        end["callEndReason"]["code"], 200,
        "a normal hang-up ends with 200"
    );
    next_event(&mut bob_out, "bob Disconnected", |v| {
        v["event"] == "callStateChanged" && v["state"] == "Disconnected"
    })
    .await;

    stdin
        .write_all(b"{\"command\":\"signOut\"}\n")
        .await
        .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(10), alice.wait())
        .await
        .expect("agent exits after signOut")
        .unwrap();
    assert!(status.success(), "signOut is a clean exit");

    // What bob recorded holds alice's tone.
    let path = dir.join(format!("bob-{bob_call_id}.wav"));
    assert!(
        Path::new(&path).exists(),
        "bob's speaker wrote {}",
        path.display()
    );
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
    let _ = bob.kill().await;
    let _ = sb.kill().await;
    let _ = std::fs::remove_dir_all(&dir);
}
