//! Core agents (the app's own call agent) as callers and callees: each microphone plays a
//! tone of its own, each call's received audio is captured, so a test can say by frequency
//! who heard what.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hookflash_core::agent::{AgentConfig, CallAgent, CallClient, Credential};
use hookflash_core::api::Event;
use hookflash_core::audio::{self, AudioSink, CaptureSink, DeviceSpec, SAMPLE_RATE};
use hookflash_core::call::CallState;
use hookflash_core::registration::{ConnectionState, RegistrationPolicy};
use hookflash_switchboard::{SwitchboardHandle, BEEP_HZ};
use tokio::sync::broadcast;

/// How long a test waits for any one event.
pub const EVENT_WAIT: Duration = Duration::from_secs(10);

type Heard = Arc<Mutex<Vec<i16>>>;

/// A signed-in core agent.
pub struct Agent {
    pub user: String,
    pub agent: CallAgent,
    pub events: broadcast::Receiver<Event>,
    ears: Arc<Mutex<HashMap<String, Heard>>>,
}

/// Sign `user` in at `sb` with a microphone playing `tone_hz`; waits until Connected.
pub async fn agent(sb: &SwitchboardHandle, user: &str, tone_hz: f64) -> Agent {
    let token = sb.issue_token(user, Duration::from_secs(3600));
    let mut config = AgentConfig::new(sb.local_addr(), sb.domain(), Credential::Token(token));
    config.microphone = hookflash_core::agent::source_from_spec(DeviceSpec::Tone(tone_hz));
    config.registration = RegistrationPolicy {
        retry_initial: Duration::from_millis(200),
        slow_retry: Duration::from_millis(500),
        ..RegistrationPolicy::default()
    };
    config.register_timeout = Duration::from_millis(800);
    let ears: Arc<Mutex<HashMap<String, Heard>>> = Arc::default();
    let e = ears.clone();
    config.speaker = Arc::new(move |call_id: &str| {
        let buf = e
            .lock()
            .unwrap()
            .entry(call_id.to_owned())
            .or_default()
            .clone();
        Ok(Box::new(CaptureSink::with_buffer(buf)) as Box<dyn AudioSink>)
    });
    let agent = CallClient::new()
        .create_call_agent(config)
        .await
        .expect("an agent binds on loopback");
    let events = agent.subscribe();
    let mut a = Agent {
        user: user.to_owned(),
        agent,
        events,
        ears,
    };
    if a.agent.connection_state() != ConnectionState::Connected {
        a.wait_for("Connected", |e| {
            matches!(
                e,
                Event::ConnectionStateChanged {
                    new_value: ConnectionState::Connected,
                    ..
                }
            )
        })
        .await;
    }
    a
}

impl Agent {
    /// The first event matching `pred` (panics after [`EVENT_WAIT`]).
    pub async fn wait_for(&mut self, what: &str, pred: impl Fn(&Event) -> bool) -> Event {
        let user = self.user.clone();
        let fut = async {
            loop {
                match self.events.recv().await {
                    Ok(e) if pred(&e) => return e,
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => {
                        panic!("{user}: events closed while waiting for {what}")
                    }
                }
            }
        };
        tokio::time::timeout(EVENT_WAIT, fut)
            .await
            .unwrap_or_else(|_| panic!("{user}: no {what} within {EVENT_WAIT:?}"))
    }

    /// Wait for `call_id` to reach `state`; the event (with `callEndReason` when ended).
    pub async fn wait_state(&mut self, call_id: &str, state: CallState) -> Event {
        let id = call_id.to_owned();
        self.wait_for(&format!("call state {state:?}"), move |e| {
            matches!(e, Event::CallStateChanged { call_id, state: s, .. } if *call_id == id && *s == state)
        })
        .await
    }

    /// The end code of a call that ended (waits for Disconnected).
    pub async fn end_code(&mut self, call_id: &str) -> u16 {
        match self.wait_state(call_id, CallState::Disconnected).await {
            Event::CallStateChanged {
                call_end_reason: Some(r),
                ..
            } => r.code,
            other => panic!("{}: ended without a reason: {other:?}", self.user),
        }
    }

    /// Wait for an incoming call; its id.
    pub async fn wait_incoming(&mut self) -> String {
        match self
            .wait_for("incomingCall", |e| matches!(e, Event::IncomingCall { .. }))
            .await
        {
            Event::IncomingCall { call_id, .. } => call_id,
            _ => unreachable!(),
        }
    }

    /// No incoming call arrives for `d`.
    pub async fn expect_no_incoming(&mut self, d: Duration, why: &str) {
        let user = self.user.clone();
        let _ = tokio::time::timeout(d, async {
            loop {
                match self.events.recv().await {
                    Ok(Event::IncomingCall { .. }) => panic!("{user}: {why}"),
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        })
        .await;
    }

    /// Everything heard on `call_id` so far.
    pub fn heard(&self, call_id: &str) -> Vec<i16> {
        let buf = self
            .ears
            .lock()
            .unwrap()
            .entry(call_id.to_owned())
            .or_default()
            .clone();
        let v = buf.lock().unwrap().clone();
        v
    }

    /// Wait until the voicemail greeting's beep has been heard on `call_id`.
    pub async fn wait_for_beep(&self, call_id: &str) {
        let deadline = tokio::time::Instant::now() + EVENT_WAIT;
        loop {
            if contains_tone(&self.heard(call_id), BEEP_HZ) {
                return;
            }
            if tokio::time::Instant::now() > deadline {
                panic!(
                    "{}: never heard the greeting's {BEEP_HZ} Hz beep on {call_id}",
                    self.user
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Whether some 100 ms stretch of `samples` (48 kHz) is clearly `freq`.
pub fn contains_tone(samples: &[i16], freq: f64) -> bool {
    let win = SAMPLE_RATE as usize / 10;
    samples
        .windows(win)
        .step_by(win / 2)
        .any(|w| audio::tone_present(w, freq, SAMPLE_RATE))
}

/// Poll `sb` until `user` has `n` voicemail messages (panics after [`EVENT_WAIT`]).
pub async fn wait_messages(
    sb: &SwitchboardHandle,
    user: &str,
    n: usize,
) -> Vec<hookflash_switchboard::VoicemailMessage> {
    let deadline = tokio::time::Instant::now() + EVENT_WAIT;
    loop {
        let list = sb.voicemail(user).expect("the voicemail index reads");
        if list.len() == n {
            return list;
        }
        if tokio::time::Instant::now() > deadline {
            panic!(
                "{user} never had {n} voicemail messages (has {})",
                list.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
