//! The demo directory: people on the embedded switchboard who behave like people, so that a
//! new user can call, hold, transfer three ways, and leave and hear voicemail within a minute
//! of the first start, with nothing else installed.
//!
//! Each contact is a headless core agent in the switchboard's process, signed in with a
//! token from the switchboard's own secret, driven by a small task that reacts to its events:
//!
//! | user | role | behaves like |
//! |---|---|---|
//! | `ada` | [`Role::Talker`] | answers at once and talks |
//! | `echo` | [`Role::Echo`] | answers and plays back what you say, half a second later |
//! | `bob` | [`Role::Busy`] | always busy (do-not-disturb: `486 Busy Here`) |
//! | `nora` | [`Role::NoAnswer`] | rings, never answers; after a few seconds her rule sends you to her voicemail |
//! | `theo` | [`Role::Transferrer`] | answers, then transfers you on to Ada (a blind transfer you receive) |
//! | `rita` | [`Role::Receptionist`] | answers, says she will put Ada through, hangs up, then calls Ada and transfers her to you: an incoming call "Ada, transferred by Rita" |
//! | `vera` | [`Role::Voicemail`] | every call goes straight to her voicemail box |
//!
//! A contact who is the transferee of one of *your* transfers follows it (the core's default
//! policy) and, having been sent somewhere by you, talks for [`TRANSFERRED_TALK`] and hangs
//! up: a caller you send to a voicemail box leaves a message there.
//!
//! ```no_run
//! # async fn demo() -> Result<(), hookflash_switchboard::SwitchboardError> {
//! use hookflash_switchboard::{demo::{DemoDirectory, Voices}, Config, Switchboard};
//! let sb = Switchboard::start(Config::local("secret")).await?;
//! let directory = DemoDirectory::start(&sb, Voices::Speech).await?;
//! for contact in directory.contacts() {
//!     println!("{} ({:?})", contact.display_name, contact.role);
//! }
//! directory.shutdown().await;
//! # Ok(()) }
//! ```

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hookflash_core::agent::{AgentConfig, CallAgent, CallClient, Credential};
use hookflash_core::api::{Command, Event};
use hookflash_core::audio::{AudioSink, AudioSource, DeviceError, DeviceSpec};
use hookflash_core::call::CallState;
use hookflash_core::sip::TransportKind;
use hookflash_core::transfer::{TransferOptions, TransferTarget};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use crate::rules::{ForwardTarget, ForwardTo, NoAnswer, Rules};
use crate::{SwitchboardError, SwitchboardHandle};

/// How long a contact you transferred somewhere talks before hanging up (long enough to
/// leave a message after a voicemail greeting).
pub const TRANSFERRED_TALK: Duration = Duration::from_secs(8);
/// How long Theo talks before he transfers you to Ada (and Rita before she hangs up to
/// have Ada call you).
pub const TRANSFERRER_DELAY: Duration = Duration::from_secs(3);
/// How long Nora's phone rings before her rule sends the caller to her voicemail.
pub const NO_ANSWER_AFTER_SECS: u32 = 6;
/// How late the echo contact plays your voice back.
pub const ECHO_DELAY: Duration = Duration::from_millis(500);
/// The token lifetime of the demo contacts (they sign in again at each start).
const TOKEN_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// What a demo contact does when called.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[serde(rename_all = "camelCase")]
pub enum Role {
    /// Answers and talks.
    Talker,
    /// Answers and plays your own voice back to you.
    Echo,
    /// Always busy.
    Busy,
    /// Never answers; forwards to voicemail.
    NoAnswer,
    /// Answers, then transfers you on.
    Transferrer,
    /// Answers, hangs up, and has Ada call you back by transferring Ada to you.
    Receptionist,
    /// A voicemail box: every call goes to voicemail.
    Voicemail,
}

/// A person in the demo directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[serde(rename_all = "camelCase")]
pub struct Contact {
    /// The user name (`sip:USER@DOMAIN`).
    pub user: String,
    /// The name shown.
    pub display_name: String,
    /// How they behave.
    pub role: Role,
}

/// What the talking contacts sound like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Voices {
    /// Speech-like voices, for people.
    Speech,
    /// A pure tone per contact ([`Voices::tone_of`]), so a test can tell by frequency who
    /// it hears.
    Tones,
}

impl Voices {
    /// The tone a contact talks with under [`Voices::Tones`], in Hz.
    pub fn tone_of(user: &str) -> Option<f64> {
        match user {
            "ada" => Some(660.0),
            "theo" => Some(770.0),
            "nora" => Some(990.0),
            _ => None,
        }
    }

    fn microphone(self, user: &str, voice: u32) -> DeviceSpec {
        match (self, Self::tone_of(user)) {
            (Voices::Tones, Some(hz)) => DeviceSpec::Tone(hz),
            _ => DeviceSpec::Speech(voice),
        }
    }
}

/// The demo contacts, signed in and behaving; stop them with [`DemoDirectory::shutdown`].
pub struct DemoDirectory {
    contacts: Vec<Contact>,
    agents: Vec<CallAgent>,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for DemoDirectory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DemoDirectory")
            .field("contacts", &self.contacts)
            .finish_non_exhaustive()
    }
}

fn people() -> Vec<Contact> {
    let c = |user: &str, name: &str, role| Contact {
        user: user.to_owned(),
        display_name: name.to_owned(),
        role,
    };
    vec![
        c("ada", "Ada Lovelace", Role::Talker),
        c("echo", "Echo Test", Role::Echo),
        c("bob", "Bob Busy", Role::Busy),
        c("nora", "Nora Noanswer", Role::NoAnswer),
        c("theo", "Theo Transfer", Role::Transferrer),
        c("rita", "Rita Reception", Role::Receptionist),
        c("vera", "Vera's Voicemail", Role::Voicemail),
    ]
}

impl DemoDirectory {
    /// Signs in every demo contact on `sb`, sets their forwarding rules, and starts their
    /// behaviour; returns once all are registered.
    pub async fn start(
        sb: &SwitchboardHandle,
        voices: Voices,
    ) -> Result<DemoDirectory, SwitchboardError> {
        let mut directory = DemoDirectory {
            contacts: people(),
            agents: Vec::new(),
            tasks: Vec::new(),
        };
        let to_voicemail = || ForwardTo {
            to: ForwardTarget::Voicemail,
        };
        for (voice, contact) in (1u32..).zip(directory.contacts.clone()) {
            let rules = match contact.role {
                Role::NoAnswer => Rules {
                    no_answer: Some(NoAnswer {
                        after: NO_ANSWER_AFTER_SECS,
                        to: ForwardTarget::Voicemail,
                    }),
                    ..Rules::default()
                },
                Role::Voicemail => Rules {
                    always: Some(to_voicemail()),
                    ..Rules::default()
                },
                _ => Rules::default(),
            };
            sb.set_rules(&contact.user, &rules)?;
            if contact.role == Role::Voicemail {
                // Vera is only a mailbox: nobody needs to be signed in for it.
                continue;
            }
            let token = sb.issue_token(&contact.user, TOKEN_TTL);
            let mut config =
                AgentConfig::new(sb.local_addr(), sb.domain(), Credential::Token(token));
            config.transport = TransportKind::Udp;
            config.bind_ip = sb.local_addr().ip();
            config.display_name = Some(contact.display_name.clone());
            config.subscribe_mwi = false;
            match contact.role {
                Role::Echo => {
                    let line = EchoLine::default();
                    config.microphone = line.source_factory();
                    config.speaker = line.sink_factory();
                }
                _ => {
                    let spec = voices.microphone(&contact.user, voice);
                    config.microphone = Arc::new(move |_call: &str| spec.open_source());
                }
            }
            let agent = CallClient::new()
                .create_call_agent(config)
                .await
                .map_err(|e| SwitchboardError::Demo(e.to_string()))?;
            let events = agent.subscribe();
            if !agent.wait_connected(Duration::from_secs(5)).await {
                return Err(SwitchboardError::Demo(format!(
                    "{} could not sign in",
                    contact.display_name
                )));
            }
            if contact.role == Role::Busy {
                agent
                    .execute(Command::SetDoNotDisturb { enabled: true })
                    .await
                    .map_err(|e| SwitchboardError::Demo(e.to_string()))?;
            }
            directory
                .tasks
                .push(tokio::spawn(behave(agent.clone(), contact.role, events)));
            directory.agents.push(agent);
        }
        Ok(directory)
    }

    /// The people in the directory, in the order to show them.
    pub fn contacts(&self) -> &[Contact] {
        &self.contacts
    }

    /// Hangs up, signs out and stops every contact.
    pub async fn shutdown(self) {
        for task in &self.tasks {
            task.abort();
        }
        for agent in &self.agents {
            agent.shutdown().await;
        }
    }
}

/// One contact's behaviour: its reactions to its own events.
async fn behave(agent: CallAgent, role: Role, mut events: broadcast::Receiver<Event>) {
    // Rita's callers, by call: Ada calls them back.
    let mut callers: HashMap<String, String> = HashMap::new();
    loop {
        let event = match events.recv().await {
            Ok(event) => event,
            Err(broadcast::error::RecvError::Lagged(n)) => {
                warn!(skipped = n, "demo contact fell behind its events");
                continue;
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
        match event {
            // Busy contacts never get here: do-not-disturb answers 486 in the core.
            Event::IncomingCall {
                call_id,
                caller_info,
                ..
            } if role != Role::NoAnswer => {
                if role == Role::Receptionist {
                    callers.insert(call_id.clone(), caller_info.identifier);
                }
                let agent = agent.clone();
                tokio::spawn(async move {
                    // A short ring, as a person would take to pick up.
                    tokio::time::sleep(Duration::from_millis(600)).await;
                    if let Err(e) = agent.call(&call_id).accept().await {
                        debug!(error = %e, "demo contact could not answer");
                    }
                });
            }
            Event::CallStateChanged {
                call_id,
                old_state,
                state: CallState::Connected,
                ..
            } if !matches!(old_state, CallState::LocalHold | CallState::RemoteHold) => {
                match (role, callers.remove(&call_id)) {
                    (Role::Transferrer, _) => {
                        tokio::spawn(transfer_on(agent.clone(), call_id));
                    }
                    (Role::Receptionist, Some(caller)) => {
                        tokio::spawn(have_ada_call_back(agent.clone(), call_id, caller));
                    }
                    _ => {}
                }
            }
            Event::TransferAccepted { target_call, .. } => {
                // Sent somewhere by the user: say something, then hang up.
                let agent = agent.clone();
                tokio::spawn(async move {
                    let call = agent.call(&target_call);
                    if connected(&call, Duration::from_secs(40)).await {
                        tokio::time::sleep(TRANSFERRED_TALK).await;
                        let _ = call.hang_up().await;
                    }
                });
            }
            _ => {}
        }
    }
}

/// Waits until `call` is connected; false if it ends first or `within` passes.
async fn connected(call: &hookflash_core::Call, within: Duration) -> bool {
    let step = Duration::from_millis(100);
    let mut waited = Duration::ZERO;
    while waited < within {
        match call.state() {
            CallState::Connected => return true,
            CallState::Disconnected => return false,
            _ => {}
        }
        tokio::time::sleep(step).await;
        waited += step;
    }
    false
}

/// Theo: talks a little, then transfers the caller to Ada.
async fn transfer_on(agent: CallAgent, call_id: String) {
    tokio::time::sleep(TRANSFERRER_DELAY).await;
    let call = agent.call(&call_id);
    if call.state() != CallState::Connected {
        return;
    }
    let target = TransferTarget::Participant("ada".into());
    if let Err(e) = call.transfer(target, TransferOptions::default()).await {
        debug!(error = %e, "demo transfer could not start");
    }
}

/// Rita: talks a little, hangs up, calls Ada, and transfers Ada to the caller, so the
/// caller receives a call from Ada "transferred by Rita".
async fn have_ada_call_back(agent: CallAgent, call_id: String, caller: String) {
    tokio::time::sleep(TRANSFERRER_DELAY).await;
    let _ = agent.call(&call_id).hang_up().await;
    let ada = match agent.start_call("ada").await {
        Ok(id) => agent.call(&id),
        Err(e) => {
            debug!(error = %e, "Rita could not call Ada");
            return;
        }
    };
    if !connected(&ada, Duration::from_secs(20)).await {
        return;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let target = TransferTarget::Participant(caller);
    if let Err(e) = ada.transfer(target, TransferOptions::default()).await {
        debug!(error = %e, "Rita could not transfer Ada");
    }
}

/// The echo contact's audio: what its speaker hears in a call comes back out of its
/// microphone in that call, [`ECHO_DELAY`] later.
#[derive(Clone, Default)]
struct EchoLine {
    calls: Arc<Mutex<HashMap<String, EchoBuffer>>>,
}

/// One call's audio on the echo line, and how many ends (microphone, speaker) are open.
struct EchoBuffer {
    samples: VecDeque<i16>,
    ends: usize,
}

impl EchoLine {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, EchoBuffer>> {
        self.calls.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn buffer(&self, call: &str) -> EchoEnd {
        let delay = (ECHO_DELAY.as_millis() as usize) * 48;
        self.lock()
            .entry(call.to_owned())
            .or_insert_with(|| EchoBuffer {
                samples: VecDeque::from(vec![0; delay]),
                ends: 0,
            })
            .ends += 1;
        EchoEnd {
            line: self.clone(),
            call: call.to_owned(),
        }
    }

    fn source_factory(&self) -> hookflash_core::agent::SourceFactory {
        let line = self.clone();
        Arc::new(move |call: &str| Ok(Box::new(line.buffer(call)) as Box<dyn AudioSource>))
    }

    fn sink_factory(&self) -> hookflash_core::agent::SinkFactory {
        let line = self.clone();
        Arc::new(move |call: &str| Ok(Box::new(line.buffer(call)) as Box<dyn AudioSink>))
    }
}

/// One side (microphone or speaker) of one call on the echo line.
struct EchoEnd {
    line: EchoLine,
    call: String,
}

/// The most an echo buffer holds (2 s): a speaker side that writes while nothing reads
/// (the call on hold) must not grow without bound.
const ECHO_MAX: usize = 2 * 48_000;

impl AudioSource for EchoEnd {
    fn read_frame(&mut self, out: &mut [i16]) -> Result<(), DeviceError> {
        let mut calls = self.line.lock();
        let mut samples = calls.get_mut(&self.call).map(|b| &mut b.samples);
        for o in out.iter_mut() {
            *o = samples.as_mut().and_then(|s| s.pop_front()).unwrap_or(0);
        }
        Ok(())
    }

    fn describe(&self) -> String {
        "echo".into()
    }
}

impl AudioSink for EchoEnd {
    fn write_frame(&mut self, frame: &[i16]) -> Result<(), DeviceError> {
        if let Some(buffer) = self.line.lock().get_mut(&self.call) {
            buffer.samples.extend(frame);
            let excess = buffer.samples.len().saturating_sub(ECHO_MAX);
            buffer.samples.drain(..excess);
        }
        Ok(())
    }

    fn describe(&self) -> String {
        "echo".into()
    }
}

impl Drop for EchoEnd {
    fn drop(&mut self) {
        // The call is over once both of its ends are closed: the last one out cleans up.
        let mut calls = self.line.lock();
        if let Some(buffer) = calls.get_mut(&self.call) {
            buffer.ends -= 1;
            if buffer.ends == 0 {
                calls.remove(&self.call);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_echo_line_plays_a_calls_audio_back_after_the_delay() {
        let line = EchoLine::default();
        let mut speaker = line.buffer("c1");
        let mut microphone = line.buffer("c1");
        let mut other_call = line.buffer("c2");
        let said: Vec<i16> = (0..960).map(|i| (i % 100) as i16 + 1).collect();
        speaker.write_frame(&said).unwrap();
        let delay = ECHO_DELAY.as_millis() as usize * 48;
        let mut heard = vec![0i16; delay + said.len()];
        microphone.read_frame(&mut heard).unwrap();
        assert!(
            heard[..delay].iter().all(|&s| s == 0),
            "nothing comes back before the echo delay"
        );
        assert_eq!(&heard[delay..], &said[..], "then exactly what was said");
        let mut silent = vec![1i16; 960];
        other_call.read_frame(&mut silent[..]).unwrap();
        assert!(
            silent.iter().all(|&s| s == 0),
            "another call does not hear this one"
        );
    }

    #[test]
    fn an_echo_line_nobody_reads_stays_bounded() {
        let line = EchoLine::default();
        let mut speaker = line.buffer("c1");
        for _ in 0..500 {
            speaker.write_frame(&[1; 960]).unwrap();
        }
        let len = line.lock()["c1"].samples.len();
        assert!(
            len <= ECHO_MAX,
            "held at most {ECHO_MAX} samples, held {len}"
        );
        drop(speaker);
        assert!(
            line.lock().is_empty(),
            "a call's buffer goes when its ends close"
        );
    }
}
