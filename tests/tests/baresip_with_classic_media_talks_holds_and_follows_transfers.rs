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

use hookflash_tests::baresip::{
    baresip, baresip_dir, baresip_heard, call_hold_resume_and_send_keys, clear_recordings,
    keys_decoded, middle, quit, recorded_agent, wav, BARESIP_HZ,
};
use hookflash_tests::netns::{Netns, HOST_A};
use hookflash_tests::process::{AgentProcess, SwitchboardProcess};
use hookflash_tests::{hears, mostly_hears, tail};
use serde_json::json;

const HOOKFLASH_HZ: f64 = 440.0;
const CAROL_HZ: f64 = 660.0;

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
    let call = call_hold_resume_and_send_keys(&mut alice, "bob").await;
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
    alice.call_state(&call, "Disconnected").await;
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

/// The next `transferStateChanged` to a final state.
async fn transfer_outcome(agent: &mut AgentProcess) -> serde_json::Value {
    agent
        .next("the transfer's outcome", |v| {
            v["event"] == "transferStateChanged"
                && matches!(v["state"].as_str(), Some("Transferred" | "Failed"))
        })
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_without_an_outbound_proxy_follows_blind_voicemail_and_attended_transfers() {
    let root = std::env::temp_dir().join(format!("hookflash-direct-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).expect("test dir");
    let ns = Netns::two_hosts("direct");
    let sb = SwitchboardProcess::start_in(&ns, HOST_A, "direct secret").await;
    // baresip without an outbound proxy: every request goes where its URI points.
    let direct = format!("direct:{}", sb.server);
    let dir = baresip_dir(&root, &sb.token("bob").await, &direct, "audio_codecs=pcmu");
    let (bob, _) = baresip(&ns, &dir, &[], "200 OK").await;
    let mut alice = recorded_agent(&sb, "alice", 440, &root.join("alice-{call}.wav"), false).await;
    let mut carol = recorded_agent(&sb, "carol", 660, &root.join("carol-{call}.wav"), true).await;

    // Blind: baresip follows a Refer-To it can reach without a proxy.
    let call = alice.start_call("bob").await;
    alice.state("Connected").await;
    alice
        .send(json!({"command": "transfer", "callId": call, "targetParticipant": "carol"}))
        .await;
    let done = transfer_outcome(&mut alice).await;
    assert_eq!(
        done["state"], "Transferred",
        "a client without an outbound proxy reaches the blind transfer's target: {done}"
    );
    let carol_call = carol.state("Connected").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    carol.hang_up(&carol_call).await;
    let heard = wav(&root.join(format!("carol-{carol_call}.wav")));
    assert!(
        mostly_hears(tail(&heard, Duration::from_secs(1)), BARESIP_HZ),
        "Carol hears the transferred baresip"
    );

    // Voicemail: the mailbox URI is reachable and survives baresip's URI handling.
    let call = alice.start_call("bob").await;
    alice.state("Connected").await;
    alice
        .send(json!({"command": "transfer", "callId": call, "targetParticipantVoicemail": "carol"}))
        .await;
    let done = transfer_outcome(&mut alice).await;
    assert_eq!(
        done["state"], "Transferred",
        "baresip reaches Carol's voicemail without a proxy: {done}"
    );
    tokio::time::sleep(Duration::from_secs(6)).await;
    quit(bob).await;
    let waiting = carol
        .next("a message for Carol", |v| {
            v["event"] == "messageWaiting" && v["newMessages"].as_u64().unwrap_or(0) >= 1
        })
        .await;
    assert_eq!(
        waiting["newMessages"], 1,
        "one message in Carol's mailbox: {waiting}"
    );

    // Attended, with baresip as the target: Dave talks to Alice, consults baresip, and joins
    // them; Alice's INVITE carries Replaces for Dave's call with baresip.
    let (bob, printed) = baresip(&ns, &dir, &[], "200 OK").await;
    let mut dave = recorded_agent(&sb, "dave", 770, &root.join("dave-{call}.wav"), false).await;
    let mut alice_answering =
        recorded_agent(&sb, "erin", 440, &root.join("erin-{call}.wav"), true).await;
    let with_erin = dave.start_call("erin").await;
    dave.state("Connected").await;
    let consult = dave.start_call("bob").await;
    dave.call_state(&consult, "Connected").await;
    dave.send(json!({"command": "transfer", "callId": with_erin, "targetCallId": consult}))
        .await;
    let done = transfer_outcome(&mut dave).await;
    assert_eq!(
        done["state"], "Transferred",
        "baresip answers Erin's INVITE with Replaces: {done}"
    );
    let accepted = alice_answering
        .next("Erin follows the REFER", |v| {
            v["event"] == "transferAccepted"
        })
        .await;
    let to_bob = accepted["targetCall"]
        .as_str()
        .expect("the new call")
        .to_owned();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let consult_end = dave.call_state(&consult, "Disconnected").await;
    // What baresip 1.0 does with Replaces: nothing. It answers Erin's INVITE as a second
    // call ("answering call on line 2") and never ends the consultation it replaces; Dave,
    // the transferor, ends it himself once the transfer succeeded (sub-code 1010), so the
    // people end up where they should.
    assert!(
        printed
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("answering call on line 2")),
        "baresip 1.0 takes the replacing INVITE as a new call beside the consultation"
    );
    assert_eq!(
        consult_end["callEndReason"]["subCode"], 1010,
        "the transferor ends the consultation after the transfer: {consult_end}"
    );
    alice_answering.hang_up(&to_bob).await;
    let heard = wav(&root.join(format!("erin-{to_bob}.wav")));
    assert!(
        mostly_hears(tail(&heard, Duration::from_secs(2)), BARESIP_HZ),
        "after the attended transfer Erin hears baresip"
    );
    quit(bob).await;
    let _ = (&mut alice, &mut dave);
    drop(sb);
    drop(ns);
    let _ = std::fs::remove_dir_all(&root);
}
