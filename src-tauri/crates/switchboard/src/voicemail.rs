//! Voicemail: a headless core agent inside the switchboard process (DESIGN §4).
//!
//! At start the switchboard signs in a [`CallAgent`] as [`VOICEMAIL_USER`] (a token signed
//! with its own secret; its server is the switchboard itself). The proxy routes RFC 4458
//! voicemail URIs (`sip:voicemail@DOMAIN;target=sip:OWNER%40DOMAIN;cause=408`) to that
//! agent's contact with `target` and `cause` appended, so the agent's
//! `IncomingCall.called` names the mailbox owner. For each call the agent:
//!
//! 1. accepts at once;
//! 2. plays the owner's greeting (their own, set through the HTTP API, else the default one
//!    shipped in `assets/greeting.wav`), which ends with a beep of [`BEEP_HZ`] for
//!    [`BEEP_MS`] ms; then silence;
//! 3. records what the caller says **after the greeting** (the greeting time is not
//!    recorded) into `DATA_DIR/voicemail/OWNER/ID.wav`, 48 kHz mono 16-bit;
//! 4. stops when the caller hangs up, or hangs up itself after `Config::voicemail_max` of
//!    recording;
//! 5. indexes the message in SQLite and notifies the owner's message-summary subscribers.
//!
//! A caller who hangs up before the beep leaves no message. File and database work runs on
//! the blocking pool (`spawn_blocking`), never on the agent's or the engine's task.
//!
//! Nothing is lost silently. The recording's header is kept valid as it grows and the caller
//! and time are written beside it (`ID.json`) before the call is answered, so a switchboard
//! killed mid-message leaves a playable file that the next start indexes ([`recover`]);
//! files that cannot be played are removed then. A recording that cannot be written (a full
//! disk) is never indexed: the caller hears the reorder tone ([`REORDER_HZ`], 250 ms on and
//! off) for [`REFUSAL_MS`] ms instead of silence, then the voicemail hangs up.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hookflash_core::agent::{
    AgentConfig, CallAgent, CallClient, Credential, SinkFactory, SourceFactory, TransferPolicy,
};
use hookflash_core::api::Event;
use hookflash_core::audio::{
    AudioSink, AudioSource, DeviceError, NullSink, SilenceSource, WavFileSink, WavFileSource,
    SAMPLE_RATE,
};
use hookflash_core::auth::{unix_now, Scope, Token};
use hookflash_core::call::CallState;
use hookflash_core::privacy::redact;
use hookflash_core::sip::{TransportKind, Uri};
use tokio::sync::{broadcast, mpsc, watch};
use tracing::{debug, info, warn};

use crate::mailbox::{
    greeting_path, mailbox_dir, new_message_id, owner_of_dir_name, VoicemailMessage, VoicemailStore,
};
use crate::server::Command;
use crate::users::VOICEMAIL_USER;
use crate::SwitchboardError;

/// The default greeting (16 kHz mono WAV, about 2.6 s: a chime, then the beep).
pub const DEFAULT_GREETING: &[u8] = include_bytes!("../assets/greeting.wav");
/// The frequency of the beep that ends every default greeting, in Hz.
pub const BEEP_HZ: f64 = 1400.0;
/// How long that beep lasts, in milliseconds.
pub const BEEP_MS: u64 = 400;
/// The two frequencies of the reorder ("fast busy") tone a caller hears when their message
/// could not be kept.
pub const REORDER_HZ: [f64; 2] = [480.0, 620.0];
/// How long the caller hears it before the voicemail hangs up, in milliseconds.
pub const REFUSAL_MS: u64 = 3000;
/// The longest greeting a user may upload, in seconds.
pub const MAX_GREETING_SECS: u32 = 60;
/// How long the voicemail agent's token is valid (it is issued again at every start).
const TOKEN_TTL: Duration = Duration::from_secs(10 * 365 * 86_400);

/// Everything the voicemail agent needs.
pub(crate) struct Setup {
    /// Where the switchboard listens (the agent's server).
    pub server: SocketAddr,
    /// The address the agent binds SIP and media to.
    pub bind_ip: IpAddr,
    pub domain: String,
    pub secret: String,
    pub data_dir: PathBuf,
    pub store: VoicemailStore,
    pub max: Duration,
    pub commands: mpsc::UnboundedSender<Command>,
}

/// What the service knows about one call it answers.
struct Plan {
    owner: String,
    id: String,
    caller: String,
    path: PathBuf,
    created: u64,
    greeting: WavFileSource,
    greeting_done: Arc<AtomicBool>,
    recording: Arc<Mutex<Recording>>,
}

/// The recording of one call: the WAV writer and how much went into it.
struct Recording {
    sink: Option<WavFileSink>,
    samples: u64,
    max_samples: u64,
    /// Writing failed (a full disk): nothing of this message is kept.
    failed: bool,
}

/// What is known of a message before its call is answered, kept beside its recording so
/// that a message recovered after a crash still says who left it and when.
#[derive(serde::Serialize, serde::Deserialize)]
struct Sidecar {
    caller: String,
    created: u64,
}

fn sidecar_path(recording: &Path) -> PathBuf {
    recording.with_extension("json")
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

type Plans = Arc<Mutex<HashMap<String, Arc<Plan>>>>;

/// The greeting as a microphone: plays once, then silence; says when it is done. If the
/// recording fails, the reorder tone, so that the caller knows the message is not kept.
struct GreetingSource {
    inner: WavFileSource,
    left: usize,
    done: Arc<AtomicBool>,
    recording: Arc<Mutex<Recording>>,
    /// Samples of reorder tone played so far.
    refusal: u64,
}

impl GreetingSource {
    fn reorder(&mut self, out: &mut [i16]) {
        let rate = f64::from(SAMPLE_RATE);
        for s in out.iter_mut() {
            let t = self.refusal as f64 / rate;
            // 250 ms on, 250 ms off.
            let on = (self.refusal * 4 / u64::from(SAMPLE_RATE)).is_multiple_of(2);
            *s = if on {
                let v: f64 = REORDER_HZ
                    .iter()
                    .map(|f| (std::f64::consts::TAU * f * t).sin())
                    .sum();
                (v * 6000.0) as i16
            } else {
                0
            };
            self.refusal += 1;
        }
    }
}

impl AudioSource for GreetingSource {
    fn read_frame(&mut self, out: &mut [i16]) -> Result<(), DeviceError> {
        if lock(&self.recording).failed {
            self.reorder(out);
            return Ok(());
        }
        self.inner.read_frame(out)?;
        self.left = self.left.saturating_sub(out.len());
        if self.left == 0 {
            self.done.store(true, Ordering::Release);
        }
        Ok(())
    }

    fn describe(&self) -> String {
        "voicemail greeting".into()
    }
}

/// The caller's voice as a speaker: written to the message file once the greeting is over,
/// up to the maximum length.
struct RecordingSink {
    recording: Arc<Mutex<Recording>>,
    gate: Arc<AtomicBool>,
}

impl AudioSink for RecordingSink {
    fn write_frame(&mut self, frame: &[i16]) -> Result<(), DeviceError> {
        if !self.gate.load(Ordering::Acquire) {
            return Ok(());
        }
        let mut r = lock(&self.recording);
        let room = r.max_samples.saturating_sub(r.samples) as usize;
        let take = frame.len().min(room);
        if take == 0 {
            return Ok(());
        }
        let Some(sink) = r.sink.as_mut() else {
            return Ok(());
        };
        if let Err(e) = sink.write_frame(&frame[..take]) {
            // A full disk, say: keep nothing of this message, and let the caller know.
            warn!(error = %e.code(), "voicemail recording failed; the message will not be kept");
            r.failed = true;
            r.sink = None;
            return Ok(());
        }
        r.samples += take as u64;
        Ok(())
    }

    fn describe(&self) -> String {
        "voicemail recording".into()
    }
}

/// The mailbox owner named by a voicemail Request-URI (`...;target=sip:OWNER%40DOMAIN`,
/// or `...;target=OWNER`; see [`hookflash_core::transfer::voicemail_owner`]), folded.
pub fn mailbox_owner(called: &str) -> Option<String> {
    let uri: Uri = called.parse().ok()?;
    hookflash_core::transfer::voicemail_owner(&uri)?
        .user
        .filter(|u| !u.is_empty())
        .map(|u| hookflash_core::auth::fold_user(&u))
}

/// `DATA_DIR/greeting-default.wav`: where the default greeting is written at start.
pub(crate) fn default_greeting_path(data_dir: &Path) -> PathBuf {
    data_dir.join("greeting-default.wav")
}

/// Write the default greeting into the data directory; its path.
pub(crate) fn install_default_greeting(data_dir: &Path) -> Result<PathBuf, SwitchboardError> {
    let path = default_greeting_path(data_dir);
    std::fs::write(&path, DEFAULT_GREETING)
        .map_err(|e| SwitchboardError::Io(format!("{}: {e}", path.display())))?;
    Ok(path)
}

/// The running voicemail agent.
pub(crate) struct Voicemail {
    agent: CallAgent,
    task: tokio::task::JoinHandle<()>,
    /// Dropped to stop the per-call timers (which hold the agent).
    _alive: watch::Sender<()>,
}

impl Drop for Voicemail {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Service {
    agent: CallAgent,
    plans: Plans,
    data_dir: PathBuf,
    default_greeting: PathBuf,
    store: VoicemailStore,
    max: Duration,
    commands: mpsc::UnboundedSender<Command>,
    alive: watch::Receiver<()>,
}

impl Voicemail {
    /// Sign the agent in and start answering. Waits (up to 5 s) for the registration, so that
    /// calls forwarded right after start find it.
    pub async fn start(setup: Setup) -> Result<Voicemail, SwitchboardError> {
        let data_dir = setup.data_dir.clone();
        let default_greeting =
            tokio::task::spawn_blocking(move || install_default_greeting(&data_dir))
                .await
                .map_err(|e| SwitchboardError::Io(e.to_string()))??;
        let (dir, store) = (setup.data_dir.clone(), setup.store.clone());
        let recovered = tokio::task::spawn_blocking(move || recover(&dir, &store))
            .await
            .map_err(|e| SwitchboardError::Io(e.to_string()))?;
        for owner in recovered {
            let _ = setup.commands.send(Command::MailboxChanged(owner));
        }
        let plans: Plans = Arc::default();
        // It only signs in over SIP: no relay, and the API refuses it anyway.
        let token = Token::issue_scoped(
            &setup.secret,
            VOICEMAIL_USER,
            &[Scope::Sip],
            TOKEN_TTL,
            unix_now(),
        );
        let mut config = AgentConfig::new(setup.server, &setup.domain, Credential::Token(token));
        config.transport = TransportKind::Udp;
        config.bind_ip = setup.bind_ip;
        config.display_name = Some("Voicemail".into());
        config.subscribe_mwi = false;
        config.transfer_policy = TransferPolicy::RejectAll;
        let p = plans.clone();
        let microphone: SourceFactory = Arc::new(move |call_id: &str| {
            let plan = lock(&p).get(call_id).cloned();
            Ok(match plan {
                Some(plan) => Box::new(GreetingSource {
                    left: plan.greeting.len_samples(),
                    inner: plan.greeting.clone(),
                    done: plan.greeting_done.clone(),
                    recording: plan.recording.clone(),
                    refusal: 0,
                }) as Box<dyn AudioSource>,
                None => Box::new(SilenceSource::new()),
            })
        });
        let p = plans.clone();
        let speaker: SinkFactory = Arc::new(move |call_id: &str| {
            let plan = lock(&p).get(call_id).cloned();
            Ok(match plan {
                Some(plan) => Box::new(RecordingSink {
                    recording: plan.recording.clone(),
                    gate: plan.greeting_done.clone(),
                }) as Box<dyn AudioSink>,
                None => Box::new(NullSink::new()),
            })
        });
        config.microphone = microphone;
        config.speaker = speaker;
        let agent = CallClient::new()
            .create_call_agent(config)
            .await
            .map_err(|e| SwitchboardError::Voicemail(e.to_string()))?;
        // Subscribed before waiting, so no call that arrives meanwhile is missed.
        let events = agent.subscribe();
        if !agent.wait_connected(Duration::from_secs(5)).await {
            warn!("voicemail agent not registered yet; calls to voicemail get 480 until it is");
        }
        let (alive_tx, alive) = watch::channel(());
        let service = Service {
            agent: agent.clone(),
            plans,
            data_dir: setup.data_dir,
            default_greeting,
            store: setup.store,
            max: setup.max,
            commands: setup.commands,
            alive,
        };
        let task = tokio::spawn(service.run(events));
        info!("voicemail agent started");
        Ok(Voicemail {
            agent,
            task,
            _alive: alive_tx,
        })
    }

    /// Sign out (bounded) and stop.
    pub async fn stop(self) {
        let _ = tokio::time::timeout(Duration::from_secs(2), self.agent.shutdown()).await;
    }
}

impl Service {
    async fn run(self, mut events: broadcast::Receiver<Event>) {
        let this = Arc::new(self);
        let mut sweep = tokio::time::interval(Duration::from_secs(5));
        loop {
            let event = tokio::select! {
                e = events.recv() => e,
                _ = sweep.tick() => {
                    this.sweep();
                    continue;
                }
            };
            match event {
                Ok(Event::IncomingCall {
                    call_id,
                    caller_info,
                    called,
                    ..
                }) => {
                    let s = this.clone();
                    tokio::spawn(async move {
                        s.answer(call_id, caller_info.identifier, called).await;
                    });
                }
                Ok(Event::CallStateChanged {
                    call_id,
                    state: CallState::Connected,
                    ..
                }) => this.limit_length(&call_id),
                Ok(Event::CallStateChanged {
                    call_id,
                    state: CallState::Disconnected,
                    ..
                }) => this.finish(&call_id),
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    warn!(missed = n, "voicemail agent events lagged");
                    this.sweep();
                }
                Err(broadcast::error::RecvError::Closed) => break,
            }
        }
    }

    /// Prepare the recording and greeting for a call, then accept it.
    async fn answer(self: Arc<Self>, call_id: String, caller: String, called: String) {
        let call = self.agent.call(&call_id);
        let Some(owner) = mailbox_owner(&called) else {
            warn!(call = %redact(&call_id), "voicemail call without a mailbox: rejected");
            let _ = call.reject().await;
            return;
        };
        let id = new_message_id();
        let dir = mailbox_dir(&self.data_dir, &owner);
        let path = dir.join(format!("{id}.wav"));
        let own = greeting_path(&self.data_dir, &owner);
        let default = self.default_greeting.clone();
        let file = path.clone();
        let created = unix_now();
        let sidecar = serde_json::to_vec(&Sidecar {
            caller: caller.clone(),
            created,
        })
        .unwrap_or_default();
        let prepared = tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&dir)
                .map_err(|e| DeviceError::Unavailable(format!("{}: {e}", dir.display())))?;
            std::fs::write(sidecar_path(&file), sidecar)
                .map_err(|e| DeviceError::Unavailable(format!("{}: {e}", file.display())))?;
            let sink = WavFileSink::create(&file)?;
            let greeting = WavFileSource::open(&own)
                .or_else(|_| WavFileSource::open(&default))?
                .with_looping(false);
            Ok::<_, DeviceError>((sink, greeting))
        })
        .await;
        let (sink, greeting) = match prepared {
            Ok(Ok(p)) => p,
            Ok(Err(e)) => {
                warn!(error = %e.code(), "voicemail cannot record: call rejected");
                let _ = call.reject().await;
                return;
            }
            Err(_) => return,
        };
        let max_samples = self.max.as_millis() as u64 * u64::from(SAMPLE_RATE) / 1000;
        let plan = Arc::new(Plan {
            owner: owner.clone(),
            id,
            caller,
            path: path.clone(),
            created,
            greeting,
            greeting_done: Arc::new(AtomicBool::new(false)),
            recording: Arc::new(Mutex::new(Recording {
                sink: Some(sink),
                samples: 0,
                max_samples,
                failed: false,
            })),
        });
        lock(&self.plans).insert(call_id.clone(), plan);
        if let Err(e) = call.accept().await {
            debug!(error = %e, "voicemail call gone before it was answered");
            if let Some(plan) = lock(&self.plans).remove(&call_id) {
                discard(plan);
            }
            return;
        }
        info!(owner = %redact(&owner), call = %redact(&call_id), "voicemail answering");
    }

    /// Hang up once the greeting and the longest message are over.
    fn limit_length(&self, call_id: &str) {
        let Some(plan) = lock(&self.plans).get(call_id).cloned() else {
            return;
        };
        let greeting = Duration::from_millis(
            plan.greeting.len_samples() as u64 * 1000 / u64::from(SAMPLE_RATE),
        );
        let call = self.agent.call(call_id);
        let limit = tokio::time::Instant::now() + greeting + self.max + Duration::from_millis(500);
        let mut alive = self.alive.clone();
        tokio::spawn(async move {
            // Every quarter second: has the recording failed? Then the caller hears the
            // reorder tone for a while before we hang up.
            let mut check = tokio::time::interval(Duration::from_millis(250));
            let mut refused_at = None;
            loop {
                tokio::select! {
                    _ = tokio::time::sleep_until(limit) => break,
                    _ = alive.changed() => return,
                    _ = check.tick() => {}
                }
                if call.state() == CallState::Disconnected {
                    return;
                }
                if refused_at.is_none() && lock(&plan.recording).failed {
                    refused_at = Some(tokio::time::Instant::now());
                }
                if refused_at.is_some_and(|at| at.elapsed() >= Duration::from_millis(REFUSAL_MS)) {
                    debug!("the message could not be kept: hanging up");
                    break;
                }
            }
            if call.state() != CallState::Disconnected {
                debug!("voicemail done: hanging up");
                let _ = call.hang_up().await;
            }
        });
    }

    /// The call ended: close the file and index the message (or drop an empty one).
    fn finish(&self, call_id: &str) {
        let Some(plan) = lock(&self.plans).remove(call_id) else {
            return;
        };
        let (sink, samples, failed) = {
            let mut r = lock(&plan.recording);
            (r.sink.take(), r.samples, r.failed)
        };
        let store = self.store.clone();
        let commands = self.commands.clone();
        tokio::task::spawn_blocking(move || {
            let mut failed = failed;
            if let Some(mut sink) = sink {
                if let Err(e) = sink.finish() {
                    warn!(error = %e.code(), "voicemail recording could not be completed");
                    failed = true;
                }
            }
            let _ = std::fs::remove_file(sidecar_path(&plan.path));
            if failed {
                warn!(owner = %redact(&plan.owner), "a voicemail message could not be stored; the caller was told");
                let _ = std::fs::remove_file(&plan.path);
                return;
            }
            if samples == 0 {
                debug!(owner = %redact(&plan.owner), "nothing recorded: no message");
                let _ = std::fs::remove_file(&plan.path);
                return;
            }
            let message = VoicemailMessage {
                id: plan.id.clone(),
                owner: plan.owner.clone(),
                caller: plan.caller.clone(),
                created: plan.created,
                duration_ms: samples * 1000 / u64::from(SAMPLE_RATE),
                heard: false,
                path: plan.path.clone(),
            };
            match store.insert(&message) {
                Ok(()) => {
                    info!(owner = %redact(&plan.owner), ms = message.duration_ms, "voicemail message left");
                    let _ = commands.send(Command::MailboxChanged(plan.owner.clone()));
                }
                Err(e) => warn!(error = %e, "voicemail message could not be indexed"),
            }
        });
    }

    /// Finish plans whose call is gone without us hearing of it (lagged events).
    fn sweep(&self) {
        let live = self.agent.calls();
        let gone: Vec<String> = lock(&self.plans)
            .keys()
            .filter(|id| !live.contains_key(*id))
            .cloned()
            .collect();
        for id in gone {
            // A plan is inserted just before its call is accepted; only finish it when the
            // agent does not know the call at all.
            if self.agent.call(&id).state() == CallState::Disconnected {
                self.finish(&id);
            }
        }
    }
}

/// Indexes what a crash left in the mailboxes (recordings whose call never finished, playable
/// up to their last header update) and removes what cannot be played; the owners whose
/// mailboxes changed. Runs at start, before any call is answered.
fn recover(data_dir: &Path, store: &VoicemailStore) -> Vec<String> {
    let mut changed = Vec::new();
    let root = mailbox_dir(data_dir, "x");
    let Some(root) = root.parent() else {
        return changed;
    };
    let Ok(owners) = std::fs::read_dir(root) else {
        return changed;
    };
    for owner_dir in owners.flatten() {
        let Some(owner) = owner_of_dir_name(&owner_dir.file_name().to_string_lossy()) else {
            continue;
        };
        let known: Vec<String> = store
            .list(&owner)
            .map(|l| l.into_iter().map(|m| m.id).collect())
            .unwrap_or_default();
        let Ok(files) = std::fs::read_dir(owner_dir.path()) else {
            continue;
        };
        for file in files.flatten() {
            let path = file.path();
            if path.extension().and_then(|e| e.to_str()) != Some("wav") {
                continue;
            }
            let Some(id) = path.file_stem().map(|s| s.to_string_lossy().into_owned()) else {
                continue;
            };
            if known.contains(&id) {
                continue;
            }
            let side = sidecar_path(&path);
            let samples = hound::WavReader::open(&path)
                .map(|r| r.duration())
                .unwrap_or(0);
            if samples == 0 {
                warn!(owner = %redact(&owner), "removing an unplayable recording left by a crash");
                let _ = std::fs::remove_file(&path);
                let _ = std::fs::remove_file(&side);
                continue;
            }
            let meta: Option<Sidecar> = std::fs::read(&side)
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok());
            let created = meta.as_ref().map(|m| m.created).unwrap_or_else(|| {
                file.metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map_or_else(unix_now, |d| d.as_secs())
            });
            let message = VoicemailMessage {
                id,
                owner: owner.clone(),
                caller: meta.map(|m| m.caller).unwrap_or_default(),
                created,
                duration_ms: u64::from(samples) * 1000 / u64::from(SAMPLE_RATE),
                heard: false,
                path: path.clone(),
            };
            match store.insert(&message) {
                Ok(()) => {
                    info!(owner = %redact(&owner), ms = message.duration_ms, "voicemail message recovered after a crash");
                    let _ = std::fs::remove_file(&side);
                    if !changed.contains(&owner) {
                        changed.push(owner.clone());
                    }
                }
                Err(e) => warn!(error = %e, "a recovered voicemail message could not be indexed"),
            }
        }
    }
    changed
}

/// Drop a plan whose call never started: remove its empty file.
fn discard(plan: Arc<Plan>) {
    let sink = lock(&plan.recording).sink.take();
    let path = plan.path.clone();
    tokio::task::spawn_blocking(move || {
        drop(sink);
        let _ = std::fs::remove_file(path);
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use hookflash_core::audio::{goertzel_power, tone_present, FRAME_SAMPLES};

    #[test]
    fn mailbox_owner_comes_from_the_rfc4458_target() {
        assert_eq!(
            mailbox_owner(
                "sip:voicemail@127.0.0.1:4000;target=sip:carol%40hookflash.local;cause=408"
            )
            .as_deref(),
            Some("carol"),
            "the escaped target names the owner"
        );
        assert_eq!(
            mailbox_owner("sip:voicemail@127.0.0.1:4000").as_deref(),
            None,
            "no target, no mailbox"
        );
        assert_eq!(mailbox_owner("not a uri"), None, "garbage is no mailbox");
    }

    #[test]
    fn default_greeting_ends_with_the_documented_beep() {
        let dir = std::env::temp_dir().join(format!("hookflash-greeting-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = install_default_greeting(&dir).unwrap();
        let mut src = WavFileSource::open(&path)
            .expect("the shipped greeting is a WAV file")
            .with_looping(false);
        let n = src.len_samples();
        assert!(
            (2 * SAMPLE_RATE as usize..=5 * SAMPLE_RATE as usize).contains(&n),
            "a few seconds long: {n} samples"
        );
        let mut all = vec![0i16; n.div_ceil(FRAME_SAMPLES) * FRAME_SAMPLES];
        for chunk in all.chunks_mut(FRAME_SAMPLES) {
            src.read_frame(chunk).unwrap();
        }
        all.truncate(n);
        let beep = (BEEP_MS as usize - 50) * SAMPLE_RATE as usize / 1000;
        let tail = &all[n - beep..];
        assert!(
            tone_present(tail, BEEP_HZ, SAMPLE_RATE),
            "the last {BEEP_MS} ms are the beep at {BEEP_HZ} Hz"
        );
        let before = &all[..n - BEEP_MS as usize * SAMPLE_RATE as usize / 1000];
        assert!(
            goertzel_power(before, BEEP_HZ, SAMPLE_RATE)
                < goertzel_power(tail, BEEP_HZ, SAMPLE_RATE) / 10.0,
            "and the beep frequency is not in the chime, so hearing it means the greeting ended"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
