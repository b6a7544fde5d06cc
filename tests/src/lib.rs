//! The end-to-end rig: a switchboard on loopback and agents with virtual audio whose ears a
//! test can read. Each test file under `tests/` is named for the behaviour it proves.
//!
//! Every agent's microphone is a tone at its own frequency and its speaker is a capture buffer
//! per call, so a test can say "B hears A" by finding A's frequency in B's buffer (Goertzel),
//! not merely that bytes arrived.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hookflash_core::agent::{AgentConfig, CallAgent, CallClient, Credential};
use hookflash_core::api::Event;
use hookflash_core::audio::{self, AudioSink, CaptureSink, DeviceSpec, SAMPLE_RATE};
use hookflash_core::auth::Token;
use hookflash_core::call::CallState;
use hookflash_core::registration::{ConnectionReason, ConnectionState, RegistrationPolicy};
use hookflash_core::sip::TransportKind;
use hookflash_switchboard::{Config, Switchboard, SwitchboardHandle};
use tokio::sync::broadcast;

pub mod baresip;
pub mod certs;
pub mod desktop;
pub mod http;
pub mod netns;
pub mod process;
pub mod procstat;
pub mod pulse;
pub mod servers;
pub mod turn;

/// The secret the rig's switchboard signs tokens with.
pub const SECRET: &str = "rig-secret";

/// How long a test waits for any one event before it fails.
pub const EVENT_TIMEOUT: Duration = Duration::from_secs(10);

/// Log to stderr when `RUST_LOG` is set (shown for failing tests).
pub fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .try_init();
}

/// A switchboard on loopback.
pub struct Rig {
    /// The running switchboard.
    pub switchboard: SwitchboardHandle,
}

impl Rig {
    /// Start a switchboard on a free loopback port.
    pub async fn start() -> Rig {
        init_logging();
        let switchboard = Switchboard::start(Config::local(SECRET))
            .await
            .expect("the switchboard starts on loopback");
        Rig { switchboard }
    }

    /// A valid token for `user`.
    pub fn token(&self, user: &str) -> Token {
        self.switchboard
            .issue_token(user, Duration::from_secs(3600))
    }

    /// An agent config for `user` whose microphone plays `tone_hz`.
    pub fn config(
        &self,
        user: &str,
        tone_hz: f64,
        transport: TransportKind,
    ) -> (AgentConfig, Ears) {
        agent_config(
            self.switchboard.local_addr(),
            self.switchboard.domain(),
            Credential::Token(self.token(user)),
            tone_hz,
            transport,
        )
    }

    /// A signed-in agent for `user` whose microphone plays `tone_hz`.
    pub async fn agent(&self, user: &str, tone_hz: f64) -> TestAgent {
        self.agent_on(user, tone_hz, TransportKind::Udp).await
    }

    /// Like [`Rig::agent`] with a media policy: the profiles it may use, in order.
    pub async fn agent_with_media(
        &self,
        user: &str,
        tone_hz: f64,
        profiles: &[hookflash_core::media::MediaProfile],
    ) -> TestAgent {
        let (mut config, ears) = self.config(user, tone_hz, TransportKind::Udp);
        config.media_profiles = profiles.to_vec();
        let mut a = TestAgent::create(user, config, ears).await;
        a.wait_connected().await;
        a
    }

    /// Like [`Rig::agent`] over a chosen transport.
    pub async fn agent_on(&self, user: &str, tone_hz: f64, transport: TransportKind) -> TestAgent {
        let (config, ears) = self.config(user, tone_hz, transport);
        let mut a = TestAgent::create(user, config, ears).await;
        a.wait_connected().await;
        a
    }
}

/// An agent config for any server: `credential` signs in to `domain` through `server`, the
/// microphone plays `tone_hz`, the speaker fills the returned [`Ears`]; quick retries and
/// keep-alives, as tests want them.
pub fn agent_config(
    server: std::net::SocketAddr,
    domain: &str,
    credential: Credential,
    tone_hz: f64,
    transport: TransportKind,
) -> (AgentConfig, Ears) {
    let mut config = AgentConfig::new(server, domain, credential);
    config.transport = transport;
    config.microphone = hookflash_core::agent::source_from_spec(DeviceSpec::Tone(tone_hz));
    config.registration = RegistrationPolicy {
        retry_initial: Duration::from_millis(200),
        slow_retry: Duration::from_millis(500),
        ..RegistrationPolicy::default()
    };
    config.register_timeout = Duration::from_millis(800);
    config.keepalive_interval = Duration::from_millis(300);
    let ears = Ears::default();
    let e = ears.clone();
    config.speaker = Arc::new(move |call_id: &str| {
        let buf = e.buffer(call_id);
        Ok(Box::new(CaptureSink::with_buffer(buf)) as Box<dyn AudioSink>)
    });
    (config, ears)
}

/// One call's received audio, shared with the capture sink that fills it.
type Heard = Arc<Mutex<Vec<i16>>>;

/// What an agent heard, per call.
#[derive(Clone, Default)]
pub struct Ears(Arc<Mutex<HashMap<String, Heard>>>);

impl Ears {
    fn buffer(&self, call_id: &str) -> Arc<Mutex<Vec<i16>>> {
        self.0
            .lock()
            .unwrap()
            .entry(call_id.to_owned())
            .or_default()
            .clone()
    }

    /// All samples heard on this call so far.
    pub fn heard(&self, call_id: &str) -> Vec<i16> {
        self.buffer(call_id).lock().unwrap().clone()
    }

    /// How many samples were heard on this call so far.
    pub fn mark(&self, call_id: &str) -> usize {
        self.buffer(call_id).lock().unwrap().len()
    }

    /// The samples heard since `mark`.
    pub fn since(&self, call_id: &str, mark: usize) -> Vec<i16> {
        let b = self.buffer(call_id);
        let b = b.lock().unwrap();
        b[mark.min(b.len())..].to_vec()
    }
}

/// An agent plus its event stream and ears.
pub struct TestAgent {
    /// Its user name.
    pub user: String,
    /// The agent.
    pub agent: CallAgent,
    /// Its events.
    pub events: broadcast::Receiver<Event>,
    /// What it heard.
    pub ears: Ears,
    /// Events received while waiting for others, so that waits need not follow arrival order.
    backlog: std::collections::VecDeque<Event>,
}

impl TestAgent {
    /// Create (not waiting for registration).
    pub async fn create(user: &str, config: AgentConfig, ears: Ears) -> TestAgent {
        let agent = CallClient::new()
            .create_call_agent(config)
            .await
            .expect("an agent binds on loopback");
        let events = agent.subscribe();
        TestAgent {
            user: user.to_owned(),
            agent,
            events,
            ears,
            backlog: Default::default(),
        }
    }

    /// Wait for the first event matching `pred`, failing the test after [`EVENT_TIMEOUT`].
    ///
    /// Events that arrived earlier and did not match an earlier wait count too, so a test can
    /// wait for several outcomes in any order.
    pub async fn wait_for(&mut self, what: &str, pred: impl Fn(&Event) -> bool) -> Event {
        if let Some(i) = self.backlog.iter().position(&pred) {
            return self.backlog.remove(i).expect("index from position");
        }
        let user = self.user.clone();
        let backlog = &mut self.backlog;
        let events = &mut self.events;
        let fut = async {
            loop {
                match events.recv().await {
                    Ok(e) if pred(&e) => return e,
                    Ok(e) => backlog.push_back(e),
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => {
                        panic!("{user}: events closed while waiting for {what}")
                    }
                }
            }
        };
        tokio::time::timeout(EVENT_TIMEOUT, fut)
            .await
            .unwrap_or_else(|_| panic!("{user}: no {what} within {EVENT_TIMEOUT:?}"))
    }

    /// Wait until `connectionState` is Connected.
    pub async fn wait_connected(&mut self) {
        if self.agent.connection_state() == ConnectionState::Connected {
            return;
        }
        self.wait_for("Connected", |e| {
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

    /// Wait for a `connectionStateChanged` to `new` with `reason`.
    pub async fn wait_connection(
        &mut self,
        new: ConnectionState,
        reason: ConnectionReason,
    ) -> Event {
        self.wait_for(&format!("{new:?}/{reason:?}"), move |e| {
            matches!(e, Event::ConnectionStateChanged { new_value, reason: r, .. } if *new_value == new && *r == reason)
        })
        .await
    }

    /// Wait for `call_id` to reach `state`; returns the event (with `callEndReason` if ended).
    pub async fn wait_state(&mut self, call_id: &str, state: CallState) -> Event {
        let id = call_id.to_owned();
        self.wait_for(&format!("call state {state:?}"), move |e| {
            matches!(e, Event::CallStateChanged { call_id, state: s, .. } if *call_id == id && *s == state)
        })
        .await
    }

    /// Wait for an incoming call; returns its id.
    pub async fn wait_incoming(&mut self) -> String {
        match self
            .wait_for("incomingCall", |e| matches!(e, Event::IncomingCall { .. }))
            .await
        {
            Event::IncomingCall { call_id, .. } => call_id,
            _ => unreachable!(),
        }
    }
}

/// The first event on `rx` matching `pred`, failing the test after 10 s (for event streams
/// that are not a [`TestAgent`]'s, such as a `DeviceManager`'s).
pub async fn wait_event(
    rx: &mut broadcast::Receiver<Event>,
    what: &str,
    pred: impl Fn(&Event) -> bool,
) -> Event {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Ok(ev)) if pred(&ev) => return ev,
            Ok(Ok(_)) | Ok(Err(broadcast::error::RecvError::Lagged(_))) => continue,
            _ => panic!("no {what} event within 10 s"),
        }
    }
}

/// The `callEndReason` of a `callStateChanged` event.
pub fn end_reason(e: &Event) -> Option<hookflash_core::call::CallEndReason> {
    match e {
        Event::CallStateChanged {
            call_end_reason, ..
        } => *call_end_reason,
        _ => None,
    }
}

impl TestAgent {
    /// Fails if an incoming call is announced among the events not yet read: `why` says
    /// what that would mean.
    pub fn assert_no_further_incoming(&mut self, why: &str) {
        while let Ok(e) = self.events.try_recv() {
            assert!(!matches!(e, Event::IncomingCall { .. }), "{why}: {e:?}");
        }
    }
}

impl TestAgent {
    /// Wait for the transfer on this agent to end; returns its error when it `Failed`.
    pub async fn transfer_outcome(
        &mut self,
    ) -> Result<(), hookflash_core::transfer::TransferError> {
        use hookflash_core::transfer::TransferState;
        match self
            .wait_for("final transfer state", |e| {
                matches!(
                    e,
                    Event::TransferStateChanged {
                        state: TransferState::Transferred | TransferState::Failed,
                        ..
                    }
                )
            })
            .await
        {
            Event::TransferStateChanged {
                state: TransferState::Transferred,
                ..
            } => Ok(()),
            Event::TransferStateChanged { error, .. } => {
                Err(error.expect("a failed transfer carries its error"))
            }
            _ => unreachable!(),
        }
    }

    /// Transfer `call_id` to `target` with the default options; returns the transfer id.
    pub async fn transfer(
        &self,
        call_id: &str,
        target: hookflash_core::transfer::TransferTarget,
    ) -> String {
        self.agent
            .call(call_id)
            .transfer(target, hookflash_core::transfer::TransferOptions::default())
            .await
            .expect("a connected call can be transferred")
    }

    /// Wait for `transferAccepted` (transferee side); returns the new call's id.
    pub async fn transfer_accepted(&mut self) -> String {
        match self
            .wait_for("transferAccepted", |e| {
                matches!(e, Event::TransferAccepted { .. })
            })
            .await
        {
            Event::TransferAccepted { target_call, .. } => target_call,
            _ => unreachable!(),
        }
    }
}

/// Whether `samples` carry `freq` clearly (more than half the energy near it).
pub fn hears(samples: &[i16], freq: f64) -> bool {
    audio::tone_present(samples, freq, SAMPLE_RATE)
}

/// One side of a call in [`assert_hear_each_other`]: the agent, its call id, its tone.
pub type Side<'a> = (&'a TestAgent, &'a str, f64);

/// Fails the test unless each side heard the other's tone in its last `window` of audio;
/// `what` names the call in the message.
pub fn assert_hear_each_other(
    (a, a_call, a_hz): Side,
    (b, b_call, b_hz): Side,
    window: Duration,
    what: &str,
) {
    assert!(
        hears(tail(&a.ears.heard(a_call), window), b_hz),
        "{what}: {} hears {} ({b_hz} Hz)",
        a.user,
        b.user
    );
    assert!(
        hears(tail(&b.ears.heard(b_call), window), a_hz),
        "{what}: {} hears {} ({a_hz} Hz)",
        b.user,
        a.user
    );
}

/// Whether most half-second stretches of `samples` hold the tone: a hold, a re-INVITE or a
/// jitter-buffer gap breaks the phase, which one long Goertzel window would count against it.
pub fn mostly_hears(samples: &[i16], freq: f64) -> bool {
    let half_second = SAMPLE_RATE as usize / 2;
    let chunks: Vec<&[i16]> = samples
        .chunks(half_second)
        .filter(|c| c.len() == half_second)
        .collect();
    let with_tone = chunks.iter().filter(|c| hears(c, freq)).count();
    !chunks.is_empty() && with_tone * 4 >= chunks.len() * 3
}

/// Debian's Kamailio module directory, whatever the architecture
/// (`/usr/lib/<triplet>/kamailio/modules`), if Kamailio and its `auth_ephemeral` module are
/// installed.
pub fn kamailio_module_dir() -> Option<String> {
    std::fs::read_dir("/usr/lib")
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path().join("kamailio/modules"))
        .find(|p| p.join("auth_ephemeral.so").exists())
        .map(|p| p.display().to_string())
}

/// Puts Kamailio's arguments on `command`: configuration `cfg`, in the foreground with
/// logs to stderr (`-DD -E`), working directory and PID file in `dir`.
pub fn kamailio_args<'a>(
    command: &'a mut tokio::process::Command,
    cfg: &std::path::Path,
    dir: &std::path::Path,
) -> &'a mut tokio::process::Command {
    command
        .arg("-f")
        .arg(cfg)
        .args(["-DD", "-E", "-w"])
        .arg(dir)
        .arg("-P")
        .arg(dir.join("kamailio.pid"))
        .kill_on_drop(true)
}

/// Audio heard over the last `window` of a call.
pub fn tail(samples: &[i16], window: Duration) -> &[i16] {
    let n = (window.as_secs_f64() * f64::from(SAMPLE_RATE)) as usize;
    &samples[samples.len().saturating_sub(n)..]
}

/// A call between two agents: `a` calls `b`, `b` accepts, both Connected. Returns
/// (a's call id, b's call id).
pub async fn connect(a: &mut TestAgent, b: &mut TestAgent) -> (String, String) {
    let a_call = a
        .agent
        .start_call(&b.user)
        .await
        .expect("startCall is accepted");
    let b_call = b.wait_incoming().await;
    b.agent
        .call(&b_call)
        .accept()
        .await
        .expect("accept works on a ringing call");
    a.wait_state(&a_call, CallState::Connected).await;
    b.wait_state(&b_call, CallState::Connected).await;
    (a_call, b_call)
}

/// Let audio flow for a while.
pub async fn listen(d: Duration) {
    tokio::time::sleep(d).await;
}

/// The directory holding this workspace's built binaries (`target/debug`).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let mut dir = exe.parent().expect("deps dir").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir
}

/// Writes `samples` (mono, 48 kHz) as `hookflash-<name>` in the temporary directory,
/// to listen to after a run; returns its path. Never fails a test (a warning at most).
pub fn save_wav(name: &str, samples: &[i16]) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("hookflash-{name}"));
    match hound::WavWriter::create(
        &path,
        hound::WavSpec {
            channels: 1,
            sample_rate: hookflash_core::audio::SAMPLE_RATE,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        },
    ) {
        Ok(mut w) => {
            for &s in samples {
                let _ = w.write_sample(s);
            }
            let _ = w.finalize();
        }
        Err(e) => eprintln!("warning: cannot save {}: {e}", path.display()),
    }
    path
}

/// A media session for the call `call` on `devices`' engine: its microphone is a
/// capture tap and its speaker a mixer input, as the agent gives every call.
pub async fn media_on(
    devices: &hookflash_core::audio::DeviceManager,
    call: &str,
) -> hookflash_core::media::MediaSession {
    let (session, _events) = hookflash_core::media::MediaSession::new(
        hookflash_core::media::MediaConfig::default(),
        (devices.source_factory())(call).expect("a capture tap"),
        (devices.sink_factory())(call).expect("a mixer input"),
    )
    .await
    .expect("media session");
    session
}

/// Offer from `caller`, answer from `callee`, answer applied: media flows between them.
pub async fn negotiate(
    caller: &hookflash_core::media::MediaSession,
    callee: &hookflash_core::media::MediaSession,
) {
    let offer = caller.create_offer().await.expect("offer");
    let answer = callee.accept_offer(&offer).await.expect("answer");
    caller
        .accept_answer(&answer)
        .await
        .expect("apply the answer");
}
