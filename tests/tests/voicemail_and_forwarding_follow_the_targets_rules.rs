//! Transfers meet the target's rules: sent straight to C's voicemail, A hears the greeting's
//! beep, is recorded into C's mailbox (checked by frequency), C gets MWI and fetches the
//! message; when C does not answer, C's no-answer rule takes A to voicemail and the transfer
//! still succeeds; with `disableForwardingAndUnanswered` the rule is ignored, the transfer
//! fails with 480 and A is back with B.

use std::time::Duration;

use hookflash_core::api::Event;
use hookflash_core::audio::{tone_present, AudioSource, WavFileSource, SAMPLE_RATE};
use hookflash_core::call::CallState;
use hookflash_core::transfer::{TransferOptions, TransferState, TransferTarget};
use hookflash_switchboard::{ForwardTarget, NoAnswer, Rules, BEEP_HZ};
use hookflash_tests::{connect, hears, http, listen, Rig, TestAgent};

const A_HZ: f64 = 440.0;

/// Wait until A has heard the greeting's beep on `call` (at most `within`).
async fn hears_beep(a: &TestAgent, call: &str, within: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < deadline {
        listen(Duration::from_millis(200)).await;
        let heard = a.ears.heard(call);
        // Look at 200 ms windows for the beep.
        if heard
            .chunks(9600)
            .any(|w| w.len() == 9600 && hears(w, BEEP_HZ))
        {
            return true;
        }
    }
    false
}

#[tokio::test]
async fn voicemail_transfer_records_the_caller_and_notifies_the_owner() {
    let rig = Rig::start().await;
    let mut a = rig.agent("alice", A_HZ).await;
    let mut b = rig.agent("bob", 660.0).await;
    let mut c = rig.agent("carol", 1000.0).await;
    c.wait_for("initial MWI", |e| {
        matches!(
            e,
            Event::MessageWaiting {
                new_messages: 0,
                ..
            }
        )
    })
    .await;
    let (_a_call, b_call) = connect(&mut a, &mut b).await;

    b.transfer(&b_call, TransferTarget::Voicemail("carol".into()))
        .await;
    let vm_call = a.transfer_accepted().await;
    b.transfer_outcome().await.expect("the transfer succeeds");
    a.wait_state(&vm_call, CallState::Connected).await;
    assert!(
        hears_beep(&a, &vm_call, Duration::from_secs(6)).await,
        "A hears the greeting, ending in the {BEEP_HZ} Hz beep"
    );
    listen(Duration::from_millis(2000)).await; // A "speaks" its 440 Hz tone into the mailbox
    a.agent.call(&vm_call).hang_up().await.unwrap();

    let mwi = c
        .wait_for("MWI with one new message", |e| {
            matches!(
                e,
                Event::MessageWaiting {
                    new_messages: 1,
                    ..
                }
            )
        })
        .await;
    assert!(
        matches!(
            mwi,
            Event::MessageWaiting {
                old_messages: 0,
                ..
            }
        ),
        "one new, none old: {mwi:?}"
    );
    let messages = rig
        .switchboard
        .voicemail("carol")
        .expect("read the mailbox");
    assert_eq!(messages.len(), 1, "one message in C's mailbox");
    assert!(
        messages[0].caller.starts_with("sip:alice@"),
        "left by A: {}",
        messages[0].caller
    );
    assert!(
        messages[0].duration_ms >= 1000,
        "it holds A's words: {} ms",
        messages[0].duration_ms
    );

    // C fetches it over the API with C's own token.
    let api = rig
        .switchboard
        .http_addr()
        .expect("the rig's switchboard serves the API");
    let token = rig.token("carol").to_string();
    let list = http::request(api, "GET", "/api/voicemail", Some(&token), b"").await;
    assert_eq!(list.status, 200, "C lists the mailbox");
    let id = list.json()[0]["id"]
        .as_str()
        .expect("message id")
        .to_owned();
    let wav = http::request(
        api,
        "GET",
        &format!("/api/voicemail/{id}"),
        Some(&token),
        b"",
    )
    .await;
    assert_eq!(wav.status, 200, "C fetches the recording");
    let path = std::env::temp_dir().join(format!("hookflash-vm-{id}.wav"));
    std::fs::write(&path, &wav.body).unwrap();
    let mut src = WavFileSource::open(&path)
        .expect("the body is a WAV file")
        .with_looping(false);
    let mut samples = vec![0i16; src.len_samples()];
    for chunk in samples.chunks_mut(960) {
        src.read_frame(chunk).unwrap();
    }
    let _ = std::fs::remove_file(&path);
    assert!(
        tone_present(&samples[samples.len() / 2..], A_HZ, SAMPLE_RATE),
        "the recording holds A's 440 Hz"
    );
    let stranger = http::request(
        api,
        "GET",
        &format!("/api/voicemail/{id}"),
        Some(&rig.token("bob").to_string()),
        b"",
    )
    .await;
    assert_eq!(
        stranger.status, 404,
        "another user cannot fetch C's message"
    );
    let heard = http::request(
        api,
        "POST",
        &format!("/api/voicemail/{id}/heard"),
        Some(&token),
        b"",
    )
    .await;
    assert_eq!(heard.status, 200, "C marks it heard");
    c.wait_for("MWI after heard", |e| {
        matches!(
            e,
            Event::MessageWaiting {
                new_messages: 0,
                old_messages: 1,
                ..
            }
        )
    })
    .await;
}

#[tokio::test]
async fn unanswered_target_forwards_to_voicemail_and_the_transfer_succeeds() {
    let rig = Rig::start().await;
    let rules = Rules {
        no_answer: Some(NoAnswer {
            after: 1,
            to: ForwardTarget::Voicemail,
        }),
        ..Rules::default()
    };
    rig.switchboard
        .set_rules("carol", &rules)
        .expect("set C's no-answer rule");
    let mut a = rig.agent("alice", A_HZ).await;
    let mut b = rig.agent("bob", 660.0).await;
    let mut c = rig.agent("carol", 1000.0).await;
    let (_a_call, b_call) = connect(&mut a, &mut b).await;
    b.transfer(&b_call, TransferTarget::Participant("carol".into()))
        .await;
    let vm_call = a.transfer_accepted().await;
    let c_call = c.wait_incoming().await; // C rings, and does not answer
    let ended = c.wait_state(&c_call, CallState::Disconnected).await;
    assert!(
        matches!(ended, Event::CallStateChanged { call_end_reason: Some(r), .. } if r.code == 487),
        "C stops ringing when the rule moves the call on: {ended:?}"
    );
    b.transfer_outcome().await.expect("the transfer succeeds");
    a.wait_state(&vm_call, CallState::Connected).await;
    assert!(
        hears_beep(&a, &vm_call, Duration::from_secs(6)).await,
        "A reached C's voicemail"
    );
}

#[tokio::test]
async fn disabled_forwarding_fails_with_480_and_the_call_comes_back() {
    let rig = Rig::start().await;
    let rules = Rules {
        no_answer: Some(NoAnswer {
            after: 1,
            to: ForwardTarget::Voicemail,
        }),
        ..Rules::default()
    };
    rig.switchboard.set_rules("carol", &rules).unwrap();
    let mut a = rig.agent("alice", A_HZ).await;
    let mut b = rig.agent("bob", 660.0).await;
    let mut c = rig.agent("carol", 1000.0).await;
    let (a_call, b_call) = connect(&mut a, &mut b).await;
    let options = TransferOptions {
        disable_forwarding_and_unanswered: true,
        ..TransferOptions::default()
    };
    b.agent
        .call(&b_call)
        .transfer(TransferTarget::Participant("carol".into()), options)
        .await
        .unwrap();
    let _ = c.wait_incoming().await; // only C rings
    let e = b
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
    match e {
        Event::TransferStateChanged {
            error: Some(err), ..
        } => assert_eq!(err.code, 480, "unanswered with forwarding off is 480"),
        other => panic!("a failed transfer carries its error: {other:?}"),
    }
    a.wait_state(&a_call, CallState::Connected).await;
    let mark = b.ears.mark(&b_call);
    listen(Duration::from_millis(800)).await;
    assert!(
        hears(&b.ears.since(&b_call, mark), A_HZ),
        "A is back with B, audio flowing again"
    );
    assert!(
        rig.switchboard.voicemail("carol").unwrap().is_empty(),
        "the rule did not send A to voicemail"
    );
}
