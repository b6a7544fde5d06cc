//! Interop with software nobody here wrote: baresip 1.0 (Debian) with WebRTC-style media
//! (ICE, DTLS-SRTP, Opus; modules `ice`, `dtls_srtp`, `opus`, `g711`; `rtcp_mux yes`),
//! registered to our switchboard with a user access token, calls a Hookflash agent and is
//! called by one; each side checks by frequency that it hears the other. On the way: hold
//! and resume, RFC 4733 DTMF that baresip decodes, baresip following our blind transfer to
//! a third party (who hears it), and a plain-RTP baresip refused with 488 before ringing by
//! an account that allows only encrypted media.
//!
//! baresip writes SDP without `a=mid` or BUNDLE, with ICE and DTLS attributes at session
//! level and the hash name `SHA-256`, and offers only non-loopback ICE candidates: everything
//! runs in a network namespace of the test's own with two addresses on a veth pair
//! ([`hookflash_tests::netns`]); baresip is stopped by PID and the namespace removed with
//! whatever is left in it.

use std::time::Duration;

use hookflash_tests::baresip::{
    agent_heard_baresip, baresip, baresip_calls_alice, baresip_dir, baresip_heard,
    call_hold_resume_and_send_keys, clear_recordings, control, keys_decoded, middle,
    recorded_agent, wav, BARESIP_HZ,
};
use hookflash_tests::netns::{Netns, HOST_A};
use hookflash_tests::process::SwitchboardProcess;
use hookflash_tests::{hears, mostly_hears, tail};
use serde_json::json;

const HOOKFLASH_HZ: f64 = 440.0;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baresip_and_hookflash_call_hold_send_dtmf_and_transfer() {
    let root = std::env::temp_dir().join(format!("hookflash-baresip-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).expect("test dir");
    let ns = Netns::two_hosts("baresip");
    let sb = SwitchboardProcess::start_in(&ns, HOST_A, "interop secret").await;
    let webrtc_media = "medianat=ice;mediaenc=dtls_srtp;audio_codecs=opus/48000/2,pcmu";
    let dir = baresip_dir(&root, &sb.token("bob").await, &sb.server, webrtc_media);

    // Hookflash calls baresip (answers automatically): baresip answers our offer.
    let (mut registered, printed) = baresip(&ns, &dir, &[], "200 OK").await;
    let mut alice =
        recorded_agent(&sb, "alice", 440, &root.join("alice-out-{call}.wav"), false).await;
    let call = call_hold_resume_and_send_keys(&mut alice, "bob").await;
    alice.hang_up(&call).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let keys = keys_decoded(&printed);
    assert_eq!(
        keys, "159",
        "baresip decoded our DTMF keys once each, in order"
    );
    let heard = wav(&root.join(format!("alice-out-{call}.wav")));
    assert!(
        mostly_hears(&heard, BARESIP_HZ),
        "Hookflash hears baresip (880 Hz) on a call it placed"
    );
    assert!(
        mostly_hears(tail(&heard, Duration::from_secs(2)), BARESIP_HZ),
        "and again after hold and resume"
    );
    assert!(
        hears(middle(&baresip_heard(&dir)), HOOKFLASH_HZ),
        "baresip hears Hookflash (440 Hz) on that call"
    );
    // baresip as the transferee of our blind transfer: on the next call Alice sends baresip
    // to Carol (a Hookflash agent), baresip follows the REFER, and Carol hears it.
    let mut carol = recorded_agent(&sb, "carol", 660, &root.join("carol-{call}.wav"), true).await;
    let call = alice.start_call("bob").await;
    alice.state("Connected").await;
    alice
        .send(
            json!({"command": "transfer", "callId": call, "targetParticipant": "carol",
            "requestId": "xfer"}),
        )
        .await;
    let done = alice
        .next("the transfer's outcome", |v| {
            v["event"] == "transferStateChanged"
                && matches!(v["state"].as_str(), Some("Transferred" | "Failed"))
        })
        .await;
    assert_eq!(
        done["state"], "Transferred",
        "baresip follows our REFER and reports the target's answer: {done}"
    );
    let carol_call = carol.state("Connected").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    carol.hang_up(&carol_call).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let heard = wav(&root.join(format!("carol-{carol_call}.wav")));
    assert!(
        mostly_hears(tail(&heard, Duration::from_secs(2)), BARESIP_HZ),
        "Carol hears baresip (880 Hz): the transferred call carries audio"
    );

    // ...and to Carol's voicemail: baresip follows the REFER to the voicemail URI, talks
    // after the greeting, and Carol's mailbox gets the message (she is told: MWI).
    let call = alice.start_call("bob").await;
    alice.state("Connected").await;
    alice
        .send(json!({"command": "transfer", "callId": call, "targetParticipantVoicemail": "carol"}))
        .await;
    let done = alice
        .next("the voicemail transfer's outcome", |v| {
            v["event"] == "transferStateChanged"
                && matches!(v["state"].as_str(), Some("Transferred" | "Failed"))
        })
        .await;
    assert_eq!(
        done["state"], "Transferred",
        "baresip reaches Carol's voicemail through our REFER: {done}"
    );
    // The greeting (about 3 s), then baresip talks into the mailbox; then it quits, which
    // hangs up (SIGTERM: baresip ends its calls with a BYE).
    tokio::time::sleep(Duration::from_secs(6)).await;
    if let Some(pid) = registered.id() {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), registered.wait()).await;
    let waiting = carol
        .next("a message for Carol", |v| {
            v["event"] == "messageWaiting" && v["newMessages"].as_u64().unwrap_or(0) >= 1
        })
        .await;
    assert_eq!(
        waiting["newMessages"], 1,
        "one new message in Carol's mailbox: {waiting}"
    );
    carol.sign_out().await;
    alice.sign_out().await;
    let _ = registered.kill().await;
    clear_recordings(&dir);

    // baresip calls Hookflash (which answers automatically): we answer baresip's offer.
    let recording = root.join("alice-in-{call}.wav");
    let mut alice = recorded_agent(&sb, "alice", 440, &recording, true).await;
    let call = baresip_calls_alice(&ns, &dir, "sip:alice@hookflash.local", &mut alice).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        agent_heard_baresip(&recording, &call),
        "Hookflash hears baresip (880 Hz) on a call baresip placed (an offer without mid or BUNDLE)"
    );
    assert!(
        hears(middle(&baresip_heard(&dir)), HOOKFLASH_HZ),
        "baresip hears Hookflash (440 Hz) on the call it placed"
    );

    // baresip as the transferor: Alice calls baresip, baresip transfers her to Carol (REFER
    // with no Referred-By, as baresip sends it); Alice follows, says who sent her, and
    // hears Carol.
    let mut carol = recorded_agent(&sb, "carol", 660, &root.join("carol-2-{call}.wav"), true).await;
    let (mut transferor, _) = baresip(&ns, &dir, &[], "200 OK").await;
    let first = alice.start_call("bob").await;
    alice.state("Connected").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    control(&ns, "transfer", "sip:carol@hookflash.local").await;
    let accepted = alice
        .next("Alice follows baresip's REFER", |v| {
            v["event"] == "transferAccepted" && v["callId"] == first.as_str()
        })
        .await;
    let to_carol = accepted["targetCall"]
        .as_str()
        .expect("the new call")
        .to_owned();
    let incoming = carol
        .next("Carol is called by Alice", |v| v["event"] == "incomingCall")
        .await;
    assert_eq!(
        incoming["transferorInfo"]["identifier"], "sip:bob@hookflash.local",
        "Carol learns who transferred the call (Alice's Referred-By): {incoming}"
    );
    alice.call_state(&to_carol, "Connected").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    alice.hang_up(&to_carol).await;
    let heard = wav(&root.join(format!("alice-in-{to_carol}.wav")));
    assert!(
        mostly_hears(tail(&heard, Duration::from_secs(2)), 660.0),
        "after baresip's transfer Alice hears Carol (660 Hz)"
    );
    carol.sign_out().await;
    let _ = transferor.kill().await;

    // An account that allows only encrypted media, and a peer with plain RTP (RTP/AVP):
    // the call is refused with 488 and a Warning that says why, and nobody is rung.
    let mut dave = sb
        .agent("dave", &["--media", "webrtc,sdes", "--auto-answer"])
        .await;
    let plain = baresip_dir(
        &root,
        &sb.token("bob").await,
        &sb.server,
        "audio_codecs=pcmu",
    );
    let (mut refused, _) = baresip(
        &ns,
        &plain,
        &["-t", "6", "-e", "/dial sip:dave@hookflash.local"],
        "488",
    )
    .await;
    let _ = refused.kill().await;
    dave.send(json!({"command": "hangUp", "callId": "none", "requestId": "probe"}))
        .await;
    dave.next("the probe's answer", |v| v["requestId"] == "probe")
        .await;
    dave.assert_no_event(
        |v| v["event"] == "incomingCall",
        "a call refused for its media never rings",
    );
    dave.sign_out().await;
    alice.send(json!({"command": "signOut"})).await;
    drop(sb);
    drop(ns);
    let _ = std::fs::remove_dir_all(&root);
}
