//! The end-to-end suite against both servers, chosen by a parameter ([`Server`]): the
//! switchboard binary, and Kamailio 5.6 with the repository's `deploy/kamailio/kamailio.cfg`
//! in front of the switchboard's voicemail service. Each scenario runs once per server
//! (`switchboard::NAME`, `kamailio::NAME`; `cargo test --test THIS kamailio::` picks one):
//! a call over UDP and TCP with audio both ways; blind, attended and voicemail transfers;
//! an unanswered and a busy call going to voicemail, the message recorded, indexed and
//! announced to its owner (MWI); `disableForwardingAndUnanswered` keeping an unanswered
//! transfer out of voicemail (480); transfer failures with their codes.
//!
//! Calls over TLS, WS and WSS with audio both ways, across transports; sign-in over them
//! refused for an untrusted certificate (unknown authority, another name), and over UDP, TLS,
//! WS and WSS for a token signed with another secret (every agent here also sends keep-alive
//! probes every 300 ms, and stays Connected through them on both servers).
//!
//! Kamailio alone: a static password user; no relaying in a dialog for a stranger (a made-up
//! To-tag and a Route naming Kamailio, without credentials, reach nobody).
//!
//! Every server process runs on loopback ports the test picks and is stopped by its PID
//! (Kamailio with all its children) when the test ends, also when it fails; each test checks
//! at its end that nothing it started is left running.

use std::time::Duration;

use hookflash_core::agent::Credential;
use hookflash_core::api::{Command, Event};
use hookflash_core::audio::{tone_present, AudioSource, WavFileSource, SAMPLE_RATE};
use hookflash_core::auth::{unix_now, Token};
use hookflash_core::call::{sub_code, CallState};
use hookflash_core::registration::{ConnectionReason, ConnectionState};
use hookflash_core::sip::TransportKind;
use hookflash_core::transfer::{TransferOptions, TransferState, TransferTarget};
use hookflash_switchboard::BEEP_HZ;
use hookflash_tests::servers::{
    alive, processes_mentioning, uid_of, Deployment, Server, DOMAIN, STATIC_USER,
};
use hookflash_tests::{
    agent_config, assert_hear_each_other, connect, end_reason, hears, listen, tail, TestAgent,
};

const A_HZ: f64 = 440.0;
const B_HZ: f64 = 660.0;
const C_HZ: f64 = 1000.0;

/// Each scenario as one test per server.
macro_rules! on_both_servers {
    ($($name:ident),* $(,)?) => {
        mod switchboard {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Server::Switchboard).await
                }
            )*
        }
        mod kamailio {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Server::Kamailio).await
                }
            )*
        }
    };
}

on_both_servers!(
    a_call_over_udp_and_tcp_has_audio_both_ways,
    blind_transfer_moves_the_caller_to_the_target,
    attended_transfer_joins_transferee_and_target,
    transfer_to_voicemail_records_the_caller_and_notifies_the_owner,
    an_unanswered_call_goes_to_voicemail_and_leaves_a_message,
    a_busy_callee_sends_the_caller_to_voicemail,
    disabled_forwarding_fails_an_unanswered_transfer_with_480,
    failed_transfers_report_their_codes_and_the_call_comes_back,
    calls_over_tls_and_websockets_have_audio_both_ways,
    tls_and_websocket_sign_in_checks_certificates_and_tokens,
);

/// Sign the agents out, then stop the servers and check nothing is left running.
async fn finish(d: Deployment, agents: Vec<TestAgent>) {
    for a in agents {
        a.agent.shutdown().await;
    }
    d.stop().await;
}

/// Whether A heard the greeting's beep on `call` (waiting at most `within`).
async fn hears_beep(a: &TestAgent, call: &str, within: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < deadline {
        listen(Duration::from_millis(200)).await;
        if a.ears
            .heard(call)
            .chunks(9600)
            .any(|w| w.len() == 9600 && hears(w, BEEP_HZ))
        {
            return true;
        }
    }
    false
}

async fn wait_mwi(agent: &mut TestAgent, new: u32, old: u32) {
    agent
        .wait_for(&format!("MWI {new} new, {old} old"), move |e| {
            matches!(e, Event::MessageWaiting { new_messages, old_messages, .. }
                if *new_messages == new && *old_messages == old)
        })
        .await;
}

/// Waits (at most 5 s) for `owner` to have `n` messages; returns them.
async fn messages(d: &Deployment, owner: &str, n: usize) -> Vec<serde_json::Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let list = d.voicemail(owner).await;
        if list.len() == n || tokio::time::Instant::now() >= deadline {
            return list;
        }
        listen(Duration::from_millis(100)).await;
    }
}

/// The recording of `owner`'s message `id`, fetched over the HTTP API with the owner's token.
async fn recording(d: &Deployment, owner: &str, id: &str) -> Vec<i16> {
    let token = d.token(owner).to_string();
    let wav = d
        .api("GET", &format!("/api/voicemail/{id}"), Some(&token), b"")
        .await;
    assert_eq!(wav.status, 200, "{owner} fetches the recording");
    let path = std::env::temp_dir().join(format!("hookflash-both-{id}.wav"));
    std::fs::write(&path, &wav.body).expect("write the recording");
    let mut src = WavFileSource::open(&path)
        .expect("the body is a WAV file")
        .with_looping(false);
    let mut samples = vec![0i16; src.len_samples()];
    for chunk in samples.chunks_mut(960) {
        src.read_frame(chunk).expect("read the recording");
    }
    let _ = std::fs::remove_file(&path);
    samples
}

async fn a_call_over_udp_and_tcp_has_audio_both_ways(server: Server) {
    let d = Deployment::start(server).await;
    let mut a = d.agent("alice", A_HZ).await;
    let mut b = d.agent_on("bob", B_HZ, TransportKind::Tcp).await;
    let (a_call, b_call) = connect(&mut a, &mut b).await;
    listen(Duration::from_millis(1500)).await;
    assert_hear_each_other(
        (&a, &a_call, A_HZ),
        (&b, &b_call, B_HZ),
        Duration::from_millis(800),
        &format!("{server:?}, A on UDP and B on TCP"),
    );
    a.agent.call(&a_call).hang_up().await.expect("A hangs up");
    let ended = b.wait_state(&b_call, CallState::Disconnected).await;
    assert_eq!(
        end_reason(&ended).map(|r| r.code),
        Some(200),
        "{server:?}: B's call ends normally when A hangs up"
    );
    finish(d, vec![a, b]).await;
}

async fn blind_transfer_moves_the_caller_to_the_target(server: Server) {
    let d = Deployment::start(server).await;
    let mut a = d.agent("alice", A_HZ).await;
    let mut b = d.agent("bob", B_HZ).await;
    let mut c = d.agent("carol", C_HZ).await;
    let (a_call, b_call) = connect(&mut a, &mut b).await;
    b.transfer(&b_call, TransferTarget::Participant("carol".into()))
        .await;
    let new_call = a.transfer_accepted().await;
    let c_call = match c
        .wait_for("incomingCall", |e| matches!(e, Event::IncomingCall { .. }))
        .await
    {
        Event::IncomingCall {
            call_id,
            transferor_info,
            ..
        } => {
            let t = transferor_info.expect("a transferred call names its transferor");
            assert!(
                t.identifier.starts_with("sip:bob@"),
                "{server:?}: C's call names B as the transferor: {}",
                t.identifier
            );
            call_id
        }
        _ => unreachable!(),
    };
    c.agent.call(&c_call).accept().await.expect("C answers");
    b.transfer_outcome()
        .await
        .expect("the blind transfer succeeds");
    let ended = b.wait_state(&b_call, CallState::Disconnected).await;
    assert_eq!(
        end_reason(&ended).map(|r| r.sub_code),
        Some(sub_code::TRANSFERRED),
        "{server:?}: B's call ends as transferred"
    );
    a.wait_state(&a_call, CallState::Disconnected).await;
    a.wait_state(&new_call, CallState::Connected).await;
    listen(Duration::from_millis(1200)).await;
    assert!(
        hears(
            tail(&a.ears.heard(&new_call), Duration::from_millis(600)),
            C_HZ
        ),
        "{server:?}: A hears C"
    );
    assert!(
        hears(
            tail(&c.ears.heard(&c_call), Duration::from_millis(600)),
            A_HZ
        ),
        "{server:?}: C hears A"
    );
    finish(d, vec![a, b, c]).await;
}

async fn attended_transfer_joins_transferee_and_target(server: Server) {
    let d = Deployment::start(server).await;
    let mut a = d.agent("alice", A_HZ).await;
    let mut b = d.agent("bob", B_HZ).await;
    let mut c = d.agent("carol", C_HZ).await;
    let (a_call, b_to_a) = connect(&mut a, &mut b).await;
    b.agent.call(&b_to_a).hold().await.expect("B holds A");
    b.wait_state(&b_to_a, CallState::LocalHold).await;
    let (b_to_c, c_from_b) = connect(&mut b, &mut c).await;
    b.transfer(&b_to_a, TransferTarget::Call(b_to_c.clone()))
        .await;
    let new_call = a.transfer_accepted().await;
    let c_new = match c
        .wait_for("callReplaced", |e| matches!(e, Event::CallReplaced { .. }))
        .await
    {
        Event::CallReplaced {
            call_id,
            new_call_id,
        } => {
            assert_eq!(
                call_id, c_from_b,
                "{server:?}: the call with B is the one replaced"
            );
            new_call_id
        }
        _ => unreachable!(),
    };
    b.transfer_outcome()
        .await
        .expect("the attended transfer succeeds");
    b.wait_state(&b_to_a, CallState::Disconnected).await;
    b.wait_state(&b_to_c, CallState::Disconnected).await;
    a.wait_state(&a_call, CallState::Disconnected).await;
    a.wait_state(&new_call, CallState::Connected).await;
    c.wait_state(&c_new, CallState::Connected).await;
    listen(Duration::from_millis(1200)).await;
    assert!(
        hears(
            tail(&a.ears.heard(&new_call), Duration::from_millis(600)),
            C_HZ
        ),
        "{server:?}: A hears C after the attended transfer"
    );
    assert!(
        hears(
            tail(&c.ears.heard(&c_new), Duration::from_millis(600)),
            A_HZ
        ),
        "{server:?}: C hears A after the attended transfer"
    );
    c.assert_no_further_incoming("the replacing INVITE must not ring C");
    finish(d, vec![a, b, c]).await;
}

async fn transfer_to_voicemail_records_the_caller_and_notifies_the_owner(server: Server) {
    let d = Deployment::start(server).await;
    let mut a = d.agent("alice", A_HZ).await;
    let mut b = d.agent("bob", B_HZ).await;
    let mut c = d.agent("carol", C_HZ).await;
    wait_mwi(&mut c, 0, 0).await;
    let (_a_call, b_call) = connect(&mut a, &mut b).await;
    b.transfer(&b_call, TransferTarget::Voicemail("carol".into()))
        .await;
    let vm_call = a.transfer_accepted().await;
    b.transfer_outcome()
        .await
        .expect("the transfer to voicemail succeeds");
    a.wait_state(&vm_call, CallState::Connected).await;
    assert!(
        hears_beep(&a, &vm_call, Duration::from_secs(6)).await,
        "{server:?}: A hears C's greeting end in the {BEEP_HZ} Hz beep"
    );
    listen(Duration::from_millis(2000)).await; // A "speaks" its tone into the mailbox
    a.agent.call(&vm_call).hang_up().await.expect("A hangs up");
    wait_mwi(&mut c, 1, 0).await;
    let list = messages(&d, "carol", 1).await;
    assert_eq!(list.len(), 1, "{server:?}: one message for C: {list:?}");
    assert!(
        list[0]["caller"]
            .as_str()
            .is_some_and(|s| s.starts_with("sip:alice@")),
        "{server:?}: left by A: {}",
        list[0]
    );
    assert!(
        list[0]["durationMs"].as_u64().is_some_and(|ms| ms >= 1000),
        "{server:?}: it holds A's words: {}",
        list[0]
    );
    let id = list[0]["id"].as_str().expect("a message id").to_owned();
    let samples = recording(&d, "carol", &id).await;
    assert!(
        tone_present(&samples[samples.len() / 2..], A_HZ, SAMPLE_RATE),
        "{server:?}: the recording holds A's {A_HZ} Hz"
    );
    let token = d.token("carol").to_string();
    let heard = d
        .api(
            "POST",
            &format!("/api/voicemail/{id}/heard"),
            Some(&token),
            b"",
        )
        .await;
    assert_eq!(heard.status, 200, "{server:?}: C marks it heard");
    wait_mwi(&mut c, 0, 1).await;
    finish(d, vec![a, b, c]).await;
}

async fn an_unanswered_call_goes_to_voicemail_and_leaves_a_message(server: Server) {
    let d = Deployment::start(server).await;
    let mut a = d.agent("alice", A_HZ).await;
    let mut c = d.agent("carol", C_HZ).await;
    wait_mwi(&mut c, 0, 0).await;
    let a_call = a.agent.start_call("carol").await.expect("A calls C");
    let c_call = c.wait_incoming().await; // C rings, and does not answer
    let ended = c.wait_state(&c_call, CallState::Disconnected).await;
    assert_eq!(
        end_reason(&ended).map(|r| r.code),
        Some(487),
        "{server:?}: C stops ringing when the call moves on to voicemail"
    );
    a.wait_state(&a_call, CallState::Connected).await;
    assert!(
        hears_beep(&a, &a_call, Duration::from_secs(6)).await,
        "{server:?}: A reached C's voicemail"
    );
    listen(Duration::from_millis(1500)).await;
    a.agent.call(&a_call).hang_up().await.expect("A hangs up");
    wait_mwi(&mut c, 1, 0).await;
    let list = messages(&d, "carol", 1).await;
    assert_eq!(
        list.len(),
        1,
        "{server:?}: the message is indexed in C's mailbox: {list:?}"
    );
    assert!(
        list[0]["caller"]
            .as_str()
            .is_some_and(|s| s.starts_with("sip:alice@")),
        "{server:?}: left by A: {}",
        list[0]
    );
    finish(d, vec![a, c]).await;
}

async fn a_busy_callee_sends_the_caller_to_voicemail(server: Server) {
    let d = Deployment::start(server).await;
    let mut a = d.agent("alice", A_HZ).await;
    let c = d.agent("carol", C_HZ).await;
    c.agent
        .execute(Command::SetDoNotDisturb { enabled: true })
        .await
        .expect("C is busy");
    let a_call = a.agent.start_call("carol").await.expect("A calls C");
    a.wait_state(&a_call, CallState::Connected).await;
    assert!(
        hears_beep(&a, &a_call, Duration::from_secs(6)).await,
        "{server:?}: a busy C sends A to C's voicemail"
    );
    a.agent.call(&a_call).hang_up().await.expect("A hangs up");
    finish(d, vec![a, c]).await;
}

async fn disabled_forwarding_fails_an_unanswered_transfer_with_480(server: Server) {
    let d = Deployment::start(server).await;
    let mut a = d.agent("alice", A_HZ).await;
    let mut b = d.agent("bob", B_HZ).await;
    let mut c = d.agent("carol", C_HZ).await;
    let (a_call, b_call) = connect(&mut a, &mut b).await;
    let options = TransferOptions {
        disable_forwarding_and_unanswered: true,
        ..TransferOptions::default()
    };
    b.agent
        .call(&b_call)
        .transfer(TransferTarget::Participant("carol".into()), options)
        .await
        .expect("B transfers A");
    let _ = c.wait_incoming().await; // only C rings, and does not answer
    let failed = b
        .wait_for("Failed", |e| {
            matches!(
                e,
                Event::TransferStateChanged {
                    state: TransferState::Failed,
                    ..
                }
            )
        })
        .await;
    match failed {
        Event::TransferStateChanged {
            error: Some(err), ..
        } => assert_eq!(
            err.code, 480,
            "{server:?}: unanswered with forwarding off is 480"
        ),
        other => panic!("a failed transfer carries its error: {other:?}"),
    }
    a.wait_state(&a_call, CallState::Connected).await;
    let mark = b.ears.mark(&b_call);
    listen(Duration::from_millis(800)).await;
    assert!(
        hears(&b.ears.since(&b_call, mark), A_HZ),
        "{server:?}: A is back with B, audio flowing again"
    );
    assert!(
        d.voicemail("carol").await.is_empty(),
        "{server:?}: nothing went to C's voicemail"
    );
    finish(d, vec![a, b, c]).await;
}

async fn failed_transfers_report_their_codes_and_the_call_comes_back(server: Server) {
    let d = Deployment::start(server).await;
    let mut a = d.agent("alice", A_HZ).await;
    let mut b = d.agent("bob", B_HZ).await;
    let c = d.agent("carol", C_HZ).await;
    let (a_call, b_call) = connect(&mut a, &mut b).await;

    b.transfer(&b_call, TransferTarget::Participant("nobody".into()))
        .await;
    assert_eq!(
        b.transfer_outcome().await.map_err(|e| e.code),
        Err(404),
        "{server:?}: a transfer to an unknown target fails with 404"
    );
    // A held the call while it tried; it takes it back.
    a.wait_state(&a_call, CallState::Connected).await;
    b.wait_state(&b_call, CallState::Connected).await;

    // Busy, with forwarding off (else the busy target's voicemail would take the call).
    c.agent
        .execute(Command::SetDoNotDisturb { enabled: true })
        .await
        .expect("C is busy");
    let options = TransferOptions {
        disable_forwarding_and_unanswered: true,
        ..TransferOptions::default()
    };
    b.agent
        .call(&b_call)
        .transfer(TransferTarget::Participant("carol".into()), options)
        .await
        .expect("B transfers A again");
    assert_eq!(
        b.transfer_outcome().await.map_err(|e| e.code),
        Err(486),
        "{server:?}: a busy target with forwarding off fails with 486"
    );
    a.wait_state(&a_call, CallState::Connected).await;
    b.wait_state(&b_call, CallState::Connected).await;
    let mark = b.ears.mark(&b_call);
    listen(Duration::from_millis(800)).await;
    assert!(
        hears(&b.ears.since(&b_call, mark), A_HZ),
        "{server:?}: after the failures B hears A again"
    );
    finish(d, vec![a, b, c]).await;
}

/// X calls Y; each hears the other's tone; Y hangs up (a BYE along the route the other way)
/// and X's call ends normally.
async fn talk_and_hang_up(
    (x, x_hz): (&mut TestAgent, f64),
    (y, y_hz): (&mut TestAgent, f64),
    leg: &str,
) {
    let (x_call, y_call) = connect(x, y).await;
    listen(Duration::from_millis(1200)).await;
    assert_hear_each_other(
        (x, &x_call, x_hz),
        (y, &y_call, y_hz),
        Duration::from_millis(600),
        leg,
    );
    y.agent
        .call(&y_call)
        .hang_up()
        .await
        .expect("the callee hangs up");
    let ended = x.wait_state(&x_call, CallState::Disconnected).await;
    assert_eq!(
        end_reason(&ended).map(|r| r.code),
        Some(200),
        "{leg}: the caller's call ends normally when the callee hangs up"
    );
}

async fn calls_over_tls_and_websockets_have_audio_both_ways(server: Server) {
    let d = Deployment::start(server).await;
    let mut a = d.agent_on("alice", A_HZ, TransportKind::Tls).await;
    let mut b = d.agent_on("bob", B_HZ, TransportKind::Ws).await;
    let mut c = d.agent_on("carol", C_HZ, TransportKind::Wss).await;
    let mut u = d.agent_on("ursula", B_HZ, TransportKind::Udp).await;
    // Each pair crosses transports, so the proxy stays on both legs (double Record-Route)
    // and every in-dialog request must find the leg's own connection.
    let leg = |l: &str| format!("{server:?}, {l}");
    talk_and_hang_up((&mut a, A_HZ), (&mut b, B_HZ), &leg("TLS → WS")).await;
    talk_and_hang_up((&mut c, C_HZ), (&mut a, A_HZ), &leg("WSS → TLS")).await;
    talk_and_hang_up((&mut u, B_HZ), (&mut c, C_HZ), &leg("UDP → WSS")).await;
    finish(d, vec![a, b, c, u]).await;
}

/// Signs in over `transport` with `config` changed by `change`, and returns why it was refused.
async fn refused_sign_in(
    d: &Deployment,
    user: &str,
    transport: TransportKind,
    change: impl FnOnce(&mut hookflash_core::agent::AgentConfig),
) -> (ConnectionReason, TestAgent) {
    let (mut config, ears) = d.config(user, A_HZ, transport);
    change(&mut config);
    let agent = TestAgent::create(user, config, ears).await;
    // A refusal without a round trip (a certificate) can come before anyone subscribed:
    // the agent's state says it all the same.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let (ConnectionState::Disconnected, Some(reason)) = (
            agent.agent.connection_state(),
            agent.agent.connection_reason(),
        ) {
            return (reason, agent);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{user} over {transport:?}: no refusal within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn tls_and_websocket_sign_in_checks_certificates_and_tokens(server: Server) {
    let mut d = Deployment::start(server).await;
    // Our refusals of its certificate (TLS alerts: unknown CA, bad certificate) are errors
    // to Kamailio's TLS layer and the connection it was reading.
    d.expect_log_errors(" tls [tls_");
    d.expect_log_errors("tcp_read_req");
    if let Some(k) = &d.kamailio {
        for pid in hookflash_tests::procstat::process_tree(k.pid()) {
            assert_ne!(
                uid_of(pid),
                Some(0),
                "Kamailio's processes run unprivileged (pid {pid})"
            );
        }
    }
    let mut agents = Vec::new();
    for transport in [TransportKind::Tls, TransportKind::Wss] {
        let (reason, a) = refused_sign_in(&d, "erin", transport, |c| c.tls_roots.clear()).await;
        assert_eq!(
            reason,
            ConnectionReason::CertificateNotTrusted,
            "{server:?}, {transport:?}: a certificate from an authority we do not trust is \
             refused, and said so"
        );
        agents.push(a);
        let (reason, a) = refused_sign_in(&d, "erin", transport, |c| {
            c.tls_server_name = Some("another.example".into())
        })
        .await;
        assert_eq!(
            reason,
            ConnectionReason::CertificateNotTrusted,
            "{server:?}, {transport:?}: a trusted certificate for another name is refused too"
        );
        agents.push(a);
    }
    for transport in [
        TransportKind::Udp,
        TransportKind::Tls,
        TransportKind::Ws,
        TransportKind::Wss,
    ] {
        let forged = Token::issue(
            "not-the-secret",
            "erin",
            Duration::from_secs(3600),
            unix_now(),
        );
        let (reason, a) = refused_sign_in(&d, "erin", transport, |c| {
            c.credential = Credential::Token(forged)
        })
        .await;
        assert_eq!(
            reason,
            ConnectionReason::InvalidToken,
            "{server:?}, {transport:?}: a token signed with another secret is refused"
        );
        agents.push(a);
    }
    finish(d, agents).await;
}

// ---- Kamailio alone: static users ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_static_password_user_signs_in_to_kamailio_and_calls() {
    let d = Deployment::start(Server::Kamailio).await;
    let (user, password) = STATIC_USER;
    let credential = Credential::Password {
        user: user.into(),
        password: password.into(),
    };
    let (config, ears) = agent_config(d.sip, DOMAIN, credential, B_HZ, TransportKind::Udp);
    let mut dora = TestAgent::create(user, config, ears).await;
    dora.wait_connection(ConnectionState::Connected, ConnectionReason::Registered)
        .await;
    let mut a = d.agent("alice", A_HZ).await;
    let (a_call, dora_call) = connect(&mut a, &mut dora).await;
    listen(Duration::from_millis(1200)).await;
    assert!(
        hears(
            tail(&a.ears.heard(&a_call), Duration::from_millis(600)),
            B_HZ
        ),
        "a token user hears a static user"
    );
    assert!(
        hears(
            tail(&dora.ears.heard(&dora_call), Duration::from_millis(600)),
            A_HZ
        ),
        "the static user hears the token user"
    );
    // And the other way round: the static user's INVITE is authenticated too.
    dora.agent
        .call(&dora_call)
        .hang_up()
        .await
        .expect("hang up");
    a.wait_state(&a_call, CallState::Disconnected).await;
    let (_, _) = connect(&mut dora, &mut a).await;

    let wrong = Credential::Password {
        user: user.into(),
        password: "not dora's password".into(),
    };
    let (config, ears) = agent_config(d.sip, DOMAIN, wrong, B_HZ, TransportKind::Udp);
    let mut impostor = TestAgent::create(user, config, ears).await;
    let refused = impostor
        .wait_for("refused", |e| {
            matches!(
                e,
                Event::ConnectionStateChanged {
                    new_value: ConnectionState::Disconnected,
                    ..
                }
            )
        })
        .await;
    assert!(
        matches!(
            refused,
            Event::ConnectionStateChanged {
                reason: ConnectionReason::InvalidToken,
                ..
            }
        ),
        "a wrong password is refused as bad credentials: {refused:?}"
    );
    finish(d, vec![a, dora, impostor]).await;
}

// ---- Kamailio alone: no relay for strangers ----

/// A request a stranger writes by hand, from `me`, with `extra` header lines (each ending in
/// CRLF): no credentials, whatever tags and Route it likes.
fn stranger_request(
    method: &str,
    ruri: &str,
    me: std::net::SocketAddr,
    (call_id, from_tag, to_tag): (&str, &str, Option<&str>),
    extra: &str,
) -> String {
    let to_tag = to_tag.map(|t| format!(";tag={t}")).unwrap_or_default();
    let body_headers = match method {
        "INVITE" | "SUBSCRIBE" | "REFER" | "NOTIFY" | "UPDATE" => {
            format!("Contact: <sip:stranger@{me}>\r\n")
        }
        _ => String::new(),
    };
    let method_headers = match method {
        "REFER" => format!("Refer-To: <sip:victim@{me}>\r\n"),
        "NOTIFY" => "Event: message-summary\r\nSubscription-State: active\r\n".to_owned(),
        _ => String::new(),
    };
    format!(
        "{method} {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK{call_id}{method}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:stranger@example.com>;tag={from_tag}\r\n\
         To: <sip:victim@example.com>{to_tag}\r\nCall-ID: {call_id}\r\n\
         CSeq: 7 {method}\r\n{body_headers}{method_headers}{extra}Content-Length: 0\r\n\r\n"
    )
}

/// The response to the request with `call_id` and CSeq method `method` that `socket` receives
/// within 2 s, if any.
async fn response_to(
    socket: &tokio::net::UdpSocket,
    call_id: &str,
    method: &str,
) -> Option<String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    let mut buf = vec![0u8; 65536];
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let Ok(Ok((len, _))) = tokio::time::timeout(left, socket.recv_from(&mut buf)).await else {
            return None;
        };
        let text = String::from_utf8_lossy(&buf[..len]).into_owned();
        let header = |name: &str| {
            text.lines()
                .find(|l| {
                    l.split_once(':')
                        .is_some_and(|(n, _)| n.trim().eq_ignore_ascii_case(name))
                })
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
                .unwrap_or_default()
        };
        // Provisional responses (none are expected) are skipped; the final one counts.
        if text.starts_with("SIP/2.0 ")
            && !text.starts_with("SIP/2.0 1")
            && header("Call-ID") == call_id
            && header("CSeq").ends_with(method)
        {
            return Some(text);
        }
    }
}

/// What arrives at the victim's socket within `within`, if anything.
async fn anything_at(victim: &tokio::net::UdpSocket, within: Duration) -> Option<String> {
    let mut buf = vec![0u8; 65536];
    match tokio::time::timeout(within, victim.recv_from(&mut buf)).await {
        Ok(Ok((len, from))) => Some(format!(
            "from {from}:\n{}",
            String::from_utf8_lossy(&buf[..len])
        )),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kamailio_relays_nothing_in_dialog_for_a_stranger() {
    let d = Deployment::start(Server::Kamailio).await;
    let kamailio = d.sip;
    let victim = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("the victim's socket");
    let target = victim.local_addr().expect("the victim's address");
    let stranger = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("the stranger's socket");
    let me = stranger.local_addr().expect("the stranger's address");
    let ruri = format!("sip:victim@{target}");

    // "In a dialog" (a To-tag made up), routed through Kamailio, aimed at the victim: with a
    // bare Route naming Kamailio, with a forged mark for the stranger's own From-tag, and
    // with no Route at all. None is relayed; each is refused with 403.
    let routes = [
        format!("Route: <sip:{kamailio};lr>\r\n"),
        format!("Route: <sip:{kamailio};lr;ftag=s0;hf=AAAAAAAAAAAAAAAAAAAAAA>\r\n"),
        String::new(),
    ];
    for (i, route) in routes.iter().enumerate() {
        for method in ["INVITE", "MESSAGE", "OPTIONS", "BYE", "REFER", "NOTIFY"] {
            let call_id = format!("stranger-{i}-{method}");
            let request =
                stranger_request(method, &ruri, me, (&call_id, "s0", Some("madeup")), route);
            stranger
                .send_to(request.as_bytes(), kamailio)
                .await
                .expect("send the stranger's request");
            let response = response_to(&stranger, &call_id, method).await;
            assert!(
                response
                    .as_deref()
                    .is_some_and(|r| r.starts_with("SIP/2.0 403")),
                "a stranger's {method} to {ruri} with {route:?} is refused with 403: \
                 {response:?}"
            );
            if let Some(relayed) = anything_at(&victim, Duration::from_millis(50)).await {
                panic!("a stranger's {method} with {route:?} reached the victim {relayed}");
            }
        }
        // An ACK is answered by nobody; it must not be relayed either.
        let call_id = format!("stranger-{i}-ACK");
        let ack = stranger_request("ACK", &ruri, me, (&call_id, "s0", Some("madeup")), route);
        stranger
            .send_to(ack.as_bytes(), kamailio)
            .await
            .expect("send the stranger's ACK");
    }

    // A stranger's message-summary SUBSCRIBE is record-routed to the switchboard without
    // credentials (the switchboard challenges it): the challenge must not hand the stranger
    // Kamailio's marked route for its own Call-ID and tag, or it could relay along it.
    let call_id = "stranger-subscribe";
    let subscribe = stranger_request(
        "SUBSCRIBE",
        &format!("sip:carol@{DOMAIN}"),
        me,
        (call_id, "s1", None),
        "Event: message-summary\r\nExpires: 60\r\n",
    );
    stranger
        .send_to(subscribe.as_bytes(), kamailio)
        .await
        .expect("send the stranger's SUBSCRIBE");
    let challenge = response_to(&stranger, call_id, "SUBSCRIBE")
        .await
        .expect("the unauthenticated SUBSCRIBE is answered");
    assert!(
        challenge.starts_with("SIP/2.0 401") || challenge.starts_with("SIP/2.0 407"),
        "the unauthenticated SUBSCRIBE is challenged: {challenge}"
    );
    let handed: Vec<&str> = challenge
        .lines()
        .filter(|l| l.to_ascii_lowercase().starts_with("record-route:"))
        .collect();
    // Whatever route came back, the stranger tries it (a BYE in "its" dialog to the victim).
    for (n, record_route) in handed.iter().enumerate() {
        let route = record_route
            .split_once(':')
            .map(|(_, v)| format!("Route: {}\r\n", v.trim()))
            .unwrap_or_default();
        let bye = stranger_request(
            "BYE",
            &ruri,
            me,
            (call_id, "s1", Some(&format!("madeup{n}"))),
            &route,
        );
        stranger
            .send_to(bye.as_bytes(), kamailio)
            .await
            .expect("send the stranger's BYE");
    }

    if let Some(relayed) = anything_at(&victim, Duration::from_secs(1)).await {
        panic!("a stranger's request reached the victim {relayed}");
    }
    assert!(
        handed.iter().all(|l| !l.contains("hf=")),
        "a challenge hands the stranger no marked route of Kamailio's: {challenge}"
    );
    finish(d, Vec::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_test_leaves_no_kamailio_process_behind() {
    // A test body that starts Kamailio and then fails: its guard must kill the whole tree.
    let (tx, rx) = tokio::sync::oneshot::channel();
    let failing = tokio::spawn(async move {
        let d = Deployment::start(Server::Kamailio).await;
        let k = d.kamailio.as_ref().expect("a Kamailio deployment");
        let tree = hookflash_tests::procstat::process_tree(k.pid());
        let _ = tx.send((tree, k.dir.display().to_string()));
        panic!("a test fails with Kamailio running");
    });
    assert!(
        failing.await.is_err(),
        "the failing body did fail (its panic is expected)"
    );
    let (tree, dir) = rx.await.expect("the body reported Kamailio's processes");
    assert!(
        tree.len() > 1,
        "Kamailio runs as a tree of processes (main and workers): {tree:?}"
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while tree.iter().any(|p| alive(*p)) && tokio::time::Instant::now() < deadline {
        listen(Duration::from_millis(50)).await;
    }
    let left: Vec<u32> = tree.iter().copied().filter(|p| alive(*p)).collect();
    assert!(
        left.is_empty(),
        "every Kamailio process of a failed test is gone: {left:?}"
    );
    assert!(
        processes_mentioning(&dir).is_empty(),
        "nothing started with the failed test's directory is left"
    );
}
