//! Interop on the classic media profile with software nobody here wrote: baresip 1.0
//! (Debian) without ICE or DTLS, once with plain RTP (RTP/AVP, G.722) and once with
//! SDES-SRTP (`mediaenc=srtp-mand`, RTP/SAVP with `a=crypto`, PCMA), registered to our
//! switchboard. A Hookflash agent with the default media policy calls it (WebRTC is refused,
//! the next profile is offered), holds and resumes, sends DTMF that baresip decodes, and
//! hands it on to a third party by blind transfer; baresip also calls Hookflash. Every call
//! is checked by frequency in both directions.
//!
//! Runs in a network namespace of its own, as the WebRTC-style baresip suite does (baresip
//! binds its media to the namespace's interface); baresip is stopped by PID.

use std::time::Duration;

use hookflash_tests::baresip::{baresip, baresip_dir, baresip_heard, quit, wav, BARESIP_HZ};
use hookflash_tests::netns::{Netns, HOST_A};
use hookflash_tests::process::{AgentProcess, SwitchboardProcess};
use hookflash_tests::{hears, mostly_hears, tail};
use serde_json::json;

const HOOKFLASH_HZ: f64 = 440.0;
const CAROL_HZ: f64 = 660.0;

async fn recorded_agent(
    sb: &SwitchboardProcess,
    user: &str,
    hz: u32,
    wav: &std::path::Path,
    auto_answer: bool,
) -> AgentProcess {
    let mic = format!("tone:{hz}");
    let speaker = format!("wav:{}", wav.display());
    let mut args = vec!["--mic", mic.as_str(), "--speaker", speaker.as_str()];
    if auto_answer {
        args.push("--auto-answer");
    }
    sb.agent(user, &args).await
}

fn middle(samples: &[i16]) -> &[i16] {
    let n = samples.len();
    &samples[n / 4..n * 3 / 4]
}

fn clear_recordings(dir: &std::path::Path) {
    for f in std::fs::read_dir(dir.join("heard")).expect("dir").flatten() {
        let _ = std::fs::remove_file(f.path());
    }
}

/// The keys baresip says it decoded ("received event: '1' (end=1)").
fn keys_decoded(printed: &hookflash_tests::baresip::Output) -> String {
    printed
        .lock()
        .unwrap()
        .iter()
        .flat_map(|l| l.split('\r'))
        .filter_map(|l| l.split("received event: '").nth(1))
        .filter(|rest| rest.contains("(end=1)"))
        .filter_map(|rest| rest.chars().next())
        .collect()
}

async fn talks_holds_and_follows_a_transfer(
    ns: &Netns,
    sb: &SwitchboardProcess,
    root: &std::path::Path,
    name: &str,
    media: &str,
) {
    let dir = baresip_dir(root, &sb.token("bob").await, &sb.server, media);

    // Hookflash (default policy: WebRTC, SDES, plain RTP) calls baresip, which answers.
    let (callee, printed) = baresip(ns, &dir, &[], "200 OK").await;
    let mut alice = recorded_agent(
        sb,
        "alice",
        440,
        &root.join(format!("alice-{name}-{{call}}.wav")),
        false,
    )
    .await;
    let call = alice.start_call("bob").await;
    alice.state("Connected").await;
    alice
        .next("audio from baresip", |v| v["event"] == "remoteAudioStarted")
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    alice.send(json!({"command": "hold", "callId": call})).await;
    alice.state("LocalHold").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    alice
        .send(json!({"command": "resume", "callId": call}))
        .await;
    alice.state("Connected").await;
    alice
        .send(json!({"command": "sendDtmf", "callId": call, "tones": "159", "requestId": "keys"}))
        .await;
    let sent = alice
        .next("the keys are sent", |v| v["requestId"] == "keys")
        .await;
    assert_eq!(sent["event"], "commandSucceeded", "{name}: {sent}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    alice.hang_up(&call).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        keys_decoded(&printed),
        "159",
        "{name}: baresip decoded our DTMF keys once each, in order"
    );
    let heard = wav(&root.join(format!("alice-{name}-{call}.wav")));
    assert!(
        mostly_hears(tail(&heard, Duration::from_secs(2)), BARESIP_HZ),
        "{name}: Hookflash hears baresip (880 Hz) after hold and resume"
    );
    assert!(
        hears(middle(&baresip_heard(&dir)), HOOKFLASH_HZ),
        "{name}: baresip hears Hookflash (440 Hz)"
    );
    clear_recordings(&dir);

    // baresip as the transferee of our blind transfer to Carol.
    let mut carol = recorded_agent(
        sb,
        "carol",
        660,
        &root.join(format!("carol-{name}-{{call}}.wav")),
        true,
    )
    .await;
    let call = alice.start_call("bob").await;
    alice.state("Connected").await;
    alice
        .send(json!({"command": "transfer", "callId": call, "targetParticipant": "carol"}))
        .await;
    let done = alice
        .next("the transfer's outcome", |v| {
            v["event"] == "transferStateChanged"
                && matches!(v["state"].as_str(), Some("Transferred" | "Failed"))
        })
        .await;
    assert_eq!(
        done["state"], "Transferred",
        "{name}: baresip follows our REFER: {done}"
    );
    let carol_call = carol.state("Connected").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    carol.hang_up(&carol_call).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let heard = wav(&root.join(format!("carol-{name}-{carol_call}.wav")));
    assert!(
        mostly_hears(tail(&heard, Duration::from_secs(2)), BARESIP_HZ),
        "{name}: Carol hears the transferred baresip"
    );
    assert!(
        hears(middle(&baresip_heard(&dir)), CAROL_HZ),
        "{name}: the transferred baresip hears Carol"
    );
    carol.sign_out().await;
    alice.sign_out().await;
    quit(callee).await;
    clear_recordings(&dir);

    // baresip calls Hookflash: we answer its classic offer.
    let mut alice = recorded_agent(
        sb,
        "alice",
        440,
        &root.join(format!("alice-in-{name}-{{call}}.wav")),
        true,
    )
    .await;
    let (mut caller, _) = baresip(
        ns,
        &dir,
        &["-t", "7", "-e", "/dial sip:alice@hookflash.local"],
        "Call established",
    )
    .await;
    let call = alice.state("Connected").await;
    alice
        .next("audio from baresip", |v| v["event"] == "remoteAudioStarted")
        .await;
    let _ = tokio::time::timeout(Duration::from_secs(15), caller.wait()).await;
    alice
        .next("baresip hangs up", |v| {
            v["event"] == "callStateChanged"
                && v["callId"] == call.as_str()
                && v["state"] == "Disconnected"
        })
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let heard = wav(&root.join(format!("alice-in-{name}-{call}.wav")));
    assert!(
        mostly_hears(tail(&heard, Duration::from_secs(2)), BARESIP_HZ),
        "{name}: Hookflash hears baresip on the call baresip placed"
    );
    assert!(
        hears(middle(&baresip_heard(&dir)), HOOKFLASH_HZ),
        "{name}: baresip hears Hookflash on the call it placed"
    );
    alice.sign_out().await;
    quit(caller).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baresip_on_plain_rtp_and_sdes_srtp_talks_holds_and_follows_transfers() {
    let root = std::env::temp_dir().join(format!("hookflash-classic-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).expect("test dir");
    let ns = Netns::two_hosts("classic");
    let sb = SwitchboardProcess::start_in(&ns, HOST_A, "classic secret").await;
    talks_holds_and_follows_a_transfer(&ns, &sb, &root, "rtp", "audio_codecs=g722/16000/1").await;
    talks_holds_and_follows_a_transfer(
        &ns,
        &sb,
        &root,
        "sdes",
        "mediaenc=srtp-mand;audio_codecs=pcma",
    )
    .await;
    drop(sb);
    drop(ns);
    let _ = std::fs::remove_dir_all(&root);
}
