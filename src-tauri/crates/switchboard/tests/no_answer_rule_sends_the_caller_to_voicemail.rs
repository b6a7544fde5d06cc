//! A no-answer rule to voicemail: the callee's phone stops ringing after N seconds, the caller
//! hears the greeting, leaves a message, and the owner finds it in the index and over HTTP —
//! and nobody else does.

mod common;

use std::time::{Duration, Instant};

use common::agents::{agent, contains_tone, wait_messages};
use common::http::{bearer, request};
use common::*;
use hookflash_core::audio::{WavFileSource, SAMPLE_RATE};
use hookflash_core::auth::Scope;
use hookflash_core::call::CallState;
use hookflash_switchboard::{ForwardTarget, NoAnswer, Rules};

const ALICE_HZ: f64 = 440.0;
const CAROL_HZ: f64 = 660.0;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unanswered_call_goes_to_voicemail_and_the_message_is_served_to_its_owner_only() {
    let sb = switchboard().await;
    sb.set_rules(
        "carol",
        &Rules {
            no_answer: Some(NoAnswer {
                after: 1,
                to: ForwardTarget::Voicemail,
            }),
            ..Rules::default()
        },
    )
    .expect("carol's rule is stored");
    let mut alice = agent(&sb, "alice", ALICE_HZ).await;
    let mut carol = agent(&sb, "carol", CAROL_HZ).await;

    let a_call = alice.agent.start_call("carol").await.expect("alice calls");
    let c_call = carol.wait_incoming().await;
    let rang = Instant::now();
    assert_eq!(
        carol.end_code(&c_call).await,
        487,
        "after the rule's second carol's phone is cancelled (487), not left ringing"
    );
    let waited = rang.elapsed();
    assert!(
        waited >= Duration::from_millis(700) && waited < Duration::from_secs(5),
        "the phone rang for about the rule's 1 s, not the 30 s timeout: {waited:?}"
    );
    alice.wait_state(&a_call, CallState::Connected).await;
    alice.wait_for_beep(&a_call).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    alice.agent.call(&a_call).hang_up().await.expect("hang up");
    alice.wait_state(&a_call, CallState::Disconnected).await;

    let list = wait_messages(&sb, "carol", 1).await;
    let m = &list[0];
    assert_eq!(
        m.caller, "sip:alice@hookflash.local",
        "the index names the caller"
    );
    assert!(!m.heard, "a new message is unheard");
    assert!(
        (700..6000).contains(&m.duration_ms),
        "about the 1.5 s alice spoke after the beep: {} ms",
        m.duration_ms
    );
    let expected = sb
        .voicemail_dir()
        .join("carol")
        .join(format!("{}.wav", m.id));
    assert_eq!(
        m.path, expected,
        "recordings live in DATA_DIR/voicemail/OWNER/ID.wav"
    );
    let reader = hound::WavReader::open(&m.path).expect("the recording is a WAV file");
    assert_eq!(
        (reader.spec().channels, reader.spec().sample_rate),
        (1, 48_000),
        "48 kHz mono"
    );
    drop(reader);
    let mut src = WavFileSource::open(&m.path).unwrap().with_looping(false);
    let mut samples = vec![0i16; src.len_samples()];
    hookflash_core::audio::AudioSource::read_frame(&mut src, &mut samples).unwrap();
    assert!(
        samples.len() > SAMPLE_RATE as usize / 2 && contains_tone(&samples, ALICE_HZ),
        "alice's {ALICE_HZ} Hz voice is in the recording"
    );

    // The HTTP API: carol's token sees it, bob's does not, no token is 401.
    let http = sb.http_addr().expect("Config::local serves HTTP");
    let carol_auth = bearer(&sb.issue_token("carol", Duration::from_secs(600)));
    let bob_auth = bearer(&sb.issue_token("bob", Duration::from_secs(600)));
    let r = request(http, "GET", "/api/voicemail", Some(&carol_auth), b"").await;
    assert_eq!(r.status, 200, "carol lists her mailbox");
    let listed = r.json();
    assert_eq!(listed[0]["id"], m.id.as_str(), "the message is listed");
    assert_eq!(
        listed[0]["caller"], "sip:alice@hookflash.local",
        "with its caller"
    );
    assert_eq!(listed[0]["heard"], false, "unheard");
    assert!(
        listed[0]["durationMs"].as_u64().is_some(),
        "camelCase fields"
    );
    let path = format!("/api/voicemail/{}", m.id);
    let r = request(http, "GET", &path, Some(&carol_auth), b"").await;
    assert_eq!(r.status, 200, "carol fetches the recording");
    assert_eq!(
        r.headers.get("content-type").map(String::as_str),
        Some("audio/wav"),
        "as audio/wav"
    );
    assert_eq!(
        r.body,
        std::fs::read(&m.path).unwrap(),
        "the very file recorded"
    );
    let r = request(http, "GET", "/api/voicemail", None, b"").await;
    assert_eq!(r.status, 401, "no token, no mailbox");
    assert_eq!(
        r.json()["code"],
        "http.unauthorized",
        "errors are JSON with a code"
    );
    assert!(
        r.headers.contains_key("www-authenticate"),
        "401 says how to authenticate"
    );
    let r = request(
        http,
        "GET",
        "/api/voicemail",
        Some("Bearer 1:carol:api=AAAA"),
        b"",
    )
    .await;
    assert_eq!(r.status, 401, "a forged or expired token is refused");
    let sip_and_turn = sb.issue_scoped_token(
        "carol",
        &[Scope::Sip, Scope::Turn],
        Duration::from_secs(600),
    );
    let r = request(
        http,
        "GET",
        "/api/voicemail",
        Some(&bearer(&sip_and_turn)),
        b"",
    )
    .await;
    assert_eq!(
        r.status, 401,
        "carol's own valid token without the api scope opens no mailbox"
    );
    let api_only = sb
        .issue_token("carol", Duration::from_secs(600))
        .only(Scope::Api)
        .expect("a full token opens the API");
    let r = request(http, "GET", "/api/voicemail", Some(&bearer(&api_only)), b"").await;
    assert_eq!(
        r.status, 200,
        "the api grant alone is enough: the API never needs the SIP password"
    );
    let r = request(http, "GET", "/api/voicemail", Some(&bob_auth), b"").await;
    assert_eq!(r.status, 200, "bob may list his own mailbox");
    assert_eq!(
        r.json(),
        serde_json::json!([]),
        "which holds none of carol's messages"
    );
    let r = request(http, "GET", &path, Some(&bob_auth), b"").await;
    assert_eq!(r.status, 404, "bob cannot fetch carol's message");
    let r = request(http, "DELETE", &path, Some(&bob_auth), b"").await;
    assert_eq!(r.status, 404, "nor delete it");
    let r = request(
        http,
        "POST",
        &format!("{path}/heard"),
        Some(&carol_auth),
        b"",
    )
    .await;
    assert_eq!(r.status, 200, "carol marks it heard");
    assert_eq!(r.json()["heard"], true, "and it says so");
    assert!(
        sb.voicemail("carol").unwrap()[0].heard,
        "the index keeps it"
    );
    let r = request(http, "DELETE", &path, Some(&carol_auth), b"").await;
    assert_eq!(r.status, 204, "carol deletes it");
    assert!(!m.path.exists(), "the recording is gone from disk");
    let r = request(http, "GET", "/api/voicemail", Some(&carol_auth), b"").await;
    assert_eq!(r.json(), serde_json::json!([]), "and from the list");
    let r = request(http, "GET", &path, Some(&carol_auth), b"").await;
    assert_eq!(r.status, 404, "a deleted message is not found");
    sb.shutdown().await;
}

#[tokio::test]
async fn rules_and_errors_over_http() {
    let sb = switchboard().await;
    let http = sb.http_addr().expect("Config::local serves HTTP");
    let auth = bearer(&sb.issue_token("carol", Duration::from_secs(600)));
    let r = request(http, "GET", "/api/rules", Some(&auth), b"").await;
    assert_eq!(
        r.json(),
        serde_json::json!({"always": null, "busy": null, "noAnswer": null}),
        "no rules by default, every key present"
    );
    let body = br#"{"busy": {"to": "bob"}, "noAnswer": {"after": 15, "to": "voicemail"}}"#;
    let r = request(http, "PUT", "/api/rules", Some(&auth), body).await;
    assert_eq!(r.status, 200, "valid rules are stored");
    assert_eq!(
        r.json(),
        serde_json::json!({"always": null, "busy": {"to": "bob"}, "noAnswer": {"after": 15, "to": "voicemail"}}),
        "and echoed as stored"
    );
    assert_eq!(
        sb.rules("carol").unwrap().busy.map(|b| b.to),
        Some(ForwardTarget::Person("bob".into())),
        "the switchboard applies what the API stored"
    );
    let r = request(http, "PUT", "/api/rules", Some(&auth), b"{not json").await;
    assert_eq!(r.status, 400, "bad JSON is 400");
    assert_eq!(r.json()["code"], "http.bad_json", "with a stable code");
    let r = request(
        http,
        "PUT",
        "/api/rules",
        Some(&auth),
        br#"{"always": {"to": "carol"}}"#,
    )
    .await;
    assert_eq!(r.status, 400, "forwarding to oneself is refused");
    let r = request(http, "PUT", "/api/rules", Some(&auth), &vec![b' '; 100_000]).await;
    assert_eq!(r.status, 413, "bodies are bounded");
    let r = request(http, "GET", "/api/nothing", Some(&auth), b"").await;
    assert_eq!(r.status, 404, "unknown paths are 404");
    let r = request(http, "PATCH", "/api/rules", Some(&auth), b"").await;
    assert_eq!(r.status, 405, "a known path with the wrong method is 405");
    let vm = bearer(&sb.issue_token("voicemail", Duration::from_secs(600)));
    let r = request(http, "GET", "/api/voicemail", Some(&vm), b"").await;
    assert_eq!(r.status, 403, "the voicemail account itself has no mailbox");
    let r = request(http, "PUT", "/api/greeting", Some(&auth), b"RIFF nonsense").await;
    assert_eq!(r.status, 400, "a greeting must be a WAV file");
    let greeting = hookflash_switchboard::voicemail::DEFAULT_GREETING;
    let r = request(http, "PUT", "/api/greeting", Some(&auth), greeting).await;
    assert_eq!(r.status, 204, "a WAV greeting is stored");
    let r = request(http, "GET", "/api/greeting", Some(&auth), b"").await;
    assert_eq!(
        (r.status, r.body.as_slice()),
        (200, greeting),
        "and served back"
    );
    sb.shutdown().await;
}
