//! SIP over TLS with software nobody here wrote on the other end: baresip 1.0 (Debian, libre
//! with OpenSSL) registers to the switchboard's TLS listener, given the test's own authority
//! (`sip_cafile`), and calls a Hookflash agent and is called by one; each side
//! checks by frequency that it hears the other. The switchboard reaches baresip over the
//! connection baresip opened (baresip listens on no TLS port of its own here), and the
//! agent on UDP crosses transports through the switchboard's double Record-Route.
//!
//! It runs in a network namespace of the test's own (baresip offers no loopback ICE
//! candidates); baresip is stopped by PID and the namespace goes with anything left in it.

use std::time::Duration;

use hookflash_tests::baresip::{
    agent_heard_baresip, alice_calls_baresip, baresip, baresip_calls_alice, baresip_dir,
    recorded_agent,
};
use hookflash_tests::certs::TestPki;
use hookflash_tests::netns::{Netns, HOST_A};
use hookflash_tests::process::SwitchboardProcess;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baresip_registers_over_tls_and_calls_both_ways_with_audio() {
    let root = std::env::temp_dir().join(format!("hookflash-baresip-tls-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).expect("test dir");
    let pki = TestPki::issue(&root, "switchboard", &["hookflash.local", HOST_A]);
    let ns = Netns::two_hosts("bstls");
    let (cert, key) = (
        pki.cert.display().to_string(),
        pki.key.display().to_string(),
    );
    let sb = SwitchboardProcess::start_in_with(
        &ns,
        HOST_A,
        "interop secret",
        &["--tls-cert", &cert, "--tls-key", &key, "--tls-port", "0"],
    )
    .await;
    let tls = sb.stream("tls").expect("the switchboard listens on TLS");
    let media = "medianat=ice;mediaenc=dtls_srtp;audio_codecs=opus/48000/2,pcmu";
    let dir = baresip_dir(
        &root,
        &sb.token("bob").await,
        &format!("{tls};transport=tls"),
        media,
    );
    // The authority that issued the switchboard's certificate.
    let mut config = std::fs::read_to_string(dir.join("config")).expect("baresip's config");
    config.push_str(&format!("sip_cafile\t\t{}\n", pki.ca.display()));
    std::fs::write(dir.join("config"), config).expect("baresip's config");

    // Hookflash (UDP) calls baresip (TLS), which answers by itself.
    let (mut registered, printed) = baresip(&ns, &dir, &[], "200 OK").await;
    assert!(
        printed
            .lock()
            .expect("baresip's output")
            .iter()
            .any(|l| l.contains("transport=tls") || l.contains("TLS")),
        "baresip registered over TLS: {:?}",
        printed.lock().expect("baresip's output")
    );
    let recording = root.join("alice-out-{call}.wav");
    let alice =
        alice_calls_baresip(&sb, &recording, "bob", &dir, "a call to baresip over TLS").await;
    alice.sign_out().await;
    let _ = registered.kill().await;
    let _ = registered.wait().await;

    // baresip (TLS) calls Hookflash (UDP), which answers by itself.
    let recording = root.join("alice-in-{call}.wav");
    let mut alice = recorded_agent(&sb, "alice", 440, &recording, true).await;
    let call = baresip_calls_alice(&ns, &dir, "sip:alice@hookflash.local", &mut alice).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        agent_heard_baresip(&recording, &call),
        "Hookflash hears baresip (880 Hz) on a call baresip placed over TLS"
    );
    alice.sign_out().await;
    let _ = std::fs::remove_dir_all(&root);
}
