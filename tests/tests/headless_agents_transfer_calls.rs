//! Blind, attended and voicemail transfers driven entirely through `hookflash-agent`
//! processes: the same JSON commands a script or bot would send. Once against the switchboard
//! binary and once against Kamailio with `deploy/kamailio/kamailio.cfg` and the switchboard's
//! voicemail service ([`Server`]); every server process is stopped by its PID at the end, and
//! none may be left.

use hookflash_tests::process::AgentProcess;
use hookflash_tests::servers::{Deployment, Server};
use serde_json::json;

async fn answer(bob: &mut AgentProcess) -> String {
    let v = bob
        .next("incomingCall", |v| v["event"] == "incomingCall")
        .await;
    let id = v["callId"].as_str().unwrap().to_owned();
    bob.send(json!({"command": "accept", "callId": id})).await;
    id
}

/// The transferee's side of a transfer: the new call `transferAccepted` names, once its
/// audio flows. (Waiting for any `remoteAudioStarted` could pick up the original call's.)
async fn transferred_call(alice: &mut AgentProcess, what: &str) -> String {
    let accepted = alice
        .next("transferAccepted", |v| v["event"] == "transferAccepted")
        .await;
    let call = accepted["targetCall"]
        .as_str()
        .expect("transferAccepted names the new call")
        .to_owned();
    alice
        .next(what, |v| {
            v["event"] == "remoteAudioStarted" && v["callId"] == call.as_str()
        })
        .await;
    call
}

#[tokio::test]
async fn blind_attended_and_voicemail_transfers_through_processes_on_the_switchboard() {
    transfers_through_processes(Server::Switchboard).await;
}

#[tokio::test]
async fn blind_attended_and_voicemail_transfers_through_processes_on_kamailio() {
    transfers_through_processes(Server::Kamailio).await;
}

async fn transfers_through_processes(server: Server) {
    let d = Deployment::start(server).await;
    let mut alice = d.agent_process("alice", &["--mic", "tone:440"]).await;
    let mut bob = d.agent_process("bob", &["--mic", "tone:660"]).await;
    let mut carol = d
        .agent_process("carol", &["--auto-answer", "--mic", "tone:1000"])
        .await;

    // Blind.
    alice
        .send(json!({"command": "startCall", "target": "bob"}))
        .await;
    let b_call = answer(&mut bob).await;
    bob.state("Connected").await;
    bob.send(json!({"command": "transfer", "callId": b_call, "targetParticipant": "carol", "requestId": "t1"})).await;
    let ok = bob
        .next("commandSucceeded", |v| {
            v["event"] == "commandSucceeded" && v["requestId"] == "t1"
        })
        .await;
    assert!(
        ok["callId"].is_string(),
        "transfer answers with the transfer id"
    );
    bob.next("Transferring", |v| {
        v["event"] == "transferStateChanged" && v["state"] == "Transferring"
    })
    .await;
    let a_new = transferred_call(&mut alice, "alice's new call connects").await;
    let carol_in = carol
        .next("carol's incoming call", |v| v["event"] == "incomingCall")
        .await;
    assert!(
        carol_in["transferorInfo"]["identifier"]
            .as_str()
            .unwrap_or("")
            .starts_with("sip:bob@"),
        "carol's incoming call names bob as transferor: {carol_in}"
    );
    bob.next("Transferred", |v| {
        v["event"] == "transferStateChanged" && v["state"] == "Transferred"
    })
    .await;
    let ended = bob
        .next("bob's call ends", |v| {
            v["event"] == "callStateChanged" && v["state"] == "Disconnected"
        })
        .await;
    assert_eq!(
        ended["callEndReason"]["subCode"], 1010,
        "bob's call ends as transferred"
    );
    alice
        .send(json!({"command": "hangUp", "callId": a_new}))
        .await;
    carol.state("Disconnected").await;

    // Attended: bob holds alice, calls carol, then joins them.
    alice
        .send(json!({"command": "startCall", "target": "bob"}))
        .await;
    let b_to_a = answer(&mut bob).await;
    bob.next("connected to alice", |v| {
        v["event"] == "callStateChanged" && v["callId"] == b_to_a && v["state"] == "Connected"
    })
    .await;
    bob.send(json!({"command": "hold", "callId": b_to_a})).await;
    bob.next("LocalHold", |v| {
        v["event"] == "callStateChanged" && v["state"] == "LocalHold"
    })
    .await;
    bob.send(json!({"command": "startCall", "target": "carol", "requestId": "c"}))
        .await;
    let b_to_c = bob
        .next("consult call id", |v| {
            v["event"] == "commandSucceeded" && v["requestId"] == "c"
        })
        .await;
    let b_to_c = b_to_c["callId"].as_str().unwrap().to_owned();
    bob.next("connected to carol", |v| {
        v["event"] == "callStateChanged" && v["callId"] == b_to_c && v["state"] == "Connected"
    })
    .await;
    bob.send(json!({"command": "transfer", "callId": b_to_a, "targetCallId": b_to_c}))
        .await;
    bob.next("Transferred", |v| {
        v["event"] == "transferStateChanged" && v["state"] == "Transferred"
    })
    .await;
    carol
        .next("callReplaced", |v| v["event"] == "callReplaced")
        .await;
    for id in [&b_to_a, &b_to_c] {
        bob.next("both of bob's calls end", |v| {
            v["event"] == "callStateChanged" && v["callId"] == *id && v["state"] == "Disconnected"
        })
        .await;
    }
    let joined = transferred_call(&mut alice, "alice hears carol").await;
    alice
        .send(json!({"command": "hangUp", "callId": joined}))
        .await;
    carol.state("Disconnected").await;

    // Voicemail: bob sends alice to carol's mailbox.
    alice
        .send(json!({"command": "startCall", "target": "bob"}))
        .await;
    let b_call = answer(&mut bob).await;
    bob.next("connected again", |v| {
        v["event"] == "callStateChanged" && v["callId"] == b_call && v["state"] == "Connected"
    })
    .await;
    bob.send(
        json!({"command": "transfer", "callId": b_call, "targetParticipantVoicemail": "carol"}),
    )
    .await;
    bob.next("Transferred to voicemail", |v| {
        v["event"] == "transferStateChanged" && v["state"] == "Transferred"
    })
    .await;
    let vm = transferred_call(&mut alice, "alice reaches the voicemail").await;
    tokio::time::sleep(std::time::Duration::from_millis(3500)).await; // greeting, beep, a message
    alice.send(json!({"command": "hangUp", "callId": vm})).await;
    let mwi = carol
        .next("carol's MWI", |v| {
            v["event"] == "messageWaiting" && v["newMessages"] == 1
        })
        .await;
    assert_eq!(mwi["oldMessages"], 0, "one new message for carol");

    alice.sign_out().await;
    bob.sign_out().await;
    carol.sign_out().await;
    d.stop().await;
}
