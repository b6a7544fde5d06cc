//! The voicemail agent plays the owner's own greeting when there is one, and hangs up once the
//! longest message has been recorded.

mod common;

use std::time::Duration;

use common::agents::{agent, contains_tone, wait_messages};
use common::*;
use hookflash_core::call::CallState;
use hookflash_switchboard::BEEP_HZ;

/// A WAV file (8 kHz mono) of `secs` seconds of `hz`.
fn tone_wav(hz: f64, secs: f64) -> Vec<u8> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 8000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut cursor = std::io::Cursor::new(Vec::new());
    let mut w = hound::WavWriter::new(&mut cursor, spec).unwrap();
    for i in 0..(secs * 8000.0) as usize {
        let t = i as f64 / 8000.0;
        w.write_sample((8000.0 * (std::f64::consts::TAU * hz * t).sin()) as i16)
            .unwrap();
    }
    w.finalize().unwrap();
    cursor.into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn own_greeting_is_played_and_the_message_stops_at_the_maximum() {
    let sb = switchboard_with(|c| c.voicemail_max = Duration::from_secs(1)).await;
    sb.users().add("carol", sb.domain(), None).unwrap();
    sb.set_greeting("carol", &tone_wav(1000.0, 1.0))
        .expect("a WAV greeting is accepted");
    assert!(
        sb.set_greeting("carol", b"not a wav").is_err(),
        "anything else is refused"
    );
    let mut alice = agent(&sb, "alice", 440.0).await;
    let a_call = alice
        .agent
        .start_call("sip:voicemail@hookflash.local;target=sip:carol%40hookflash.local;cause=302")
        .await
        .unwrap();
    alice.wait_state(&a_call, CallState::Connected).await;
    let code = alice.end_code(&a_call).await;
    assert_eq!(
        code, 200,
        "alice never hangs up: voicemail ends the call (BYE) after 1 s of message"
    );
    let heard = alice.heard(&a_call);
    assert!(
        contains_tone(&heard, 1000.0),
        "alice heard carol's own 1000 Hz greeting"
    );
    assert!(
        !contains_tone(&heard, BEEP_HZ),
        "and not the default greeting's beep"
    );
    let m = &wait_messages(&sb, "carol", 1).await[0];
    assert!(
        (500..=1000).contains(&m.duration_ms),
        "the recording stops at the 1 s maximum: {} ms",
        m.duration_ms
    );
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn caller_who_hangs_up_during_the_greeting_leaves_no_message() {
    let sb = switchboard().await;
    sb.users().add("carol", sb.domain(), None).unwrap();
    let mut alice = agent(&sb, "alice", 440.0).await;
    let a_call = alice
        .agent
        .start_call("sip:voicemail@hookflash.local;target=sip:carol%40hookflash.local")
        .await
        .unwrap();
    alice.wait_state(&a_call, CallState::Connected).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    alice.agent.call(&a_call).hang_up().await.unwrap();
    alice.wait_state(&a_call, CallState::Disconnected).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        sb.voicemail("carol").unwrap().is_empty(),
        "nothing was said after the beep, so there is no message"
    );
    let dir = sb.voicemail_dir().join("carol");
    let files = std::fs::read_dir(&dir)
        .map(|d| d.count())
        .unwrap_or_default();
    assert_eq!(files, 0, "and no empty recording is left on disk");
    sb.shutdown().await;
}
