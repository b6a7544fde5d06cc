//! A trunk to another domain, with software nobody here wrote on the other end: baresip 1.0
//! plays a partner's server for `partner.example` (it registers nowhere and speaks plain
//! RTP with PCMU, as carriers and PBXes do). The switchboard is configured with one
//! `[[trunk]]` for that domain at baresip's address. A Hookflash user calls
//! `sip:carol@partner.example` and the call goes out through the trunk; baresip calls the
//! user from the trunk's address and is let in without credentials. Each side hears the
//! other. A domain no trunk serves is refused, with a reason the user sees.
//!
//! It runs in a network namespace of the test's own (the switchboard on HOST_A, baresip on
//! HOST_B); baresip and the switchboard are stopped by PID and the namespace goes with
//! anything left in it.

use std::time::Duration;

use hookflash_tests::baresip::{
    agent_heard_baresip, alice_calls_baresip, baresip, baresip_calls_alice, baresip_dir, quit,
    recorded_agent,
};
use hookflash_tests::netns::{Netns, HOST_A, HOST_B};
use hookflash_tests::process::SwitchboardProcess;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_cross_a_trunk_to_and_from_another_domain() {
    let root = std::env::temp_dir().join(format!("hookflash-trunk-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).expect("test dir");
    let ns = Netns::two_hosts("trunk");
    let config = root.join("switchboard.toml");
    std::fs::write(
        &config,
        format!(
            "[[trunk]]\nname = \"partner\"\ndomains = [\"partner.example\"]\n\
             address = \"{HOST_B}:5060\"\ntransport = \"udp\"\n"
        ),
    )
    .expect("switchboard.toml");
    let config = config.display().to_string();
    let sb = SwitchboardProcess::start_in_with(&ns, HOST_A, "trunk secret", &["--config", &config])
        .await;
    let dir = baresip_dir(
        &root,
        "",
        "trunk:carol@partner.example",
        "audio_codecs=pcmu",
    );

    // Out through the trunk: Alice calls carol@partner.example; baresip answers by itself.
    let (partner, _) = baresip(&ns, &dir, &[], "baresip is ready").await;
    let recording = root.join("alice-out-{call}.wav");
    let mut alice = alice_calls_baresip(
        &sb,
        &recording,
        "sip:carol@partner.example",
        &dir,
        "a call out through the trunk to the partner's phone",
    )
    .await;

    // A domain no trunk serves: refused by the switchboard, and Alice is told.
    let refused = alice.start_call("sip:dave@elsewhere.example").await;
    let ended = alice.call_state(&refused, "Disconnected").await;
    assert_eq!(
        ended["callEndReason"]["code"], 403,
        "no trunk for elsewhere.example: the switchboard relays nothing there: {ended}"
    );
    alice.sign_out().await;
    quit(partner).await;

    // In through the trunk: baresip, from the trunk's address and without credentials,
    // calls Alice at the switchboard; she answers by herself.
    let recording = root.join("alice-in-{call}.wav");
    let mut alice = recorded_agent(&sb, "alice", 440, &recording, true).await;
    let uri = format!("sip:alice@{}", sb.server);
    let call = baresip_calls_alice(&ns, &dir, &uri, &mut alice).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        agent_heard_baresip(&recording, &call),
        "Alice hears the partner's phone on a call that came in through the trunk"
    );
    alice.sign_out().await;
    sb.stop().await;
    let _ = std::fs::remove_dir_all(&root);
}
