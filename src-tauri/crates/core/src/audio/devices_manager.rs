//! [`DeviceManager`] (ACS `DeviceManager`): the sound devices, the user's choice
//! among them, and the audio engine behind every call.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use super::cpal_backend::{self, CpalDevice};
use super::engine::{Backend, DeviceRole, Engine, SinkOpener, SourceOpener, Target};
use super::processing::ProcessingSettings;
use super::ringtone::RingtoneFile;
use super::tones::{Tone, ToneGenerator};
use super::{DeviceError, NullSink, SilenceSource, ToneSource};
use crate::agent::{SinkFactory, SourceFactory};
use crate::api::{CallSummary, Event};
use crate::call::{CallDirection, CallState};

/// The id of the always-present virtual microphone (digital silence).
pub const VIRTUAL_SILENCE: &str = "virtual:silence";
/// The id of the virtual microphone that plays a 440 Hz tone.
pub const VIRTUAL_TONE: &str = "virtual:tone:440";
/// The id of the always-present virtual speaker (discards audio).
pub const VIRTUAL_NULL: &str = "virtual:null";

/// Whether a device captures or plays (ACS `AudioDeviceInfo.deviceType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[serde(rename_all = "camelCase")]
pub enum DeviceType {
    /// Captures sound.
    Microphone,
    /// Plays sound (also usable as the ringer).
    Speaker,
}

/// A device as the UI lists it (ACS `AudioDeviceInfo`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[serde(rename_all = "camelCase")]
pub struct AudioDeviceInfo {
    /// Stable id: `<host>:<name>` for sound cards (`alsa:pulse`), `virtual:...`
    /// for virtual devices. Selections are stored by this id.
    pub id: String,
    /// Readable name.
    pub name: String,
    /// Microphone or speaker.
    pub device_type: DeviceType,
    /// The operating system's default device of its kind.
    pub is_system_default: bool,
    /// A virtual device (tone, silence, file, discard).
    pub is_virtual: bool,
}

/// How a [`DeviceManager`] starts.
#[derive(Debug, Clone)]
pub struct DeviceManagerConfig {
    /// List and use sound cards through cpal (false: virtual devices only, for
    /// tests and servers).
    pub system_devices: bool,
    /// Where the selections are kept (JSON); `None`: not persisted.
    pub settings_path: Option<PathBuf>,
    /// How often the device list is refreshed to notice hot-plugging; `None`:
    /// only on [`DeviceManager::refresh`].
    pub poll_interval: Option<Duration>,
}

impl Default for DeviceManagerConfig {
    fn default() -> Self {
        DeviceManagerConfig {
            system_devices: true,
            settings_path: None,
            poll_interval: Some(Duration::from_secs(3)),
        }
    }
}

impl DeviceManagerConfig {
    /// Virtual devices only, no polling, nothing persisted.
    pub fn virtual_only() -> Self {
        DeviceManagerConfig {
            system_devices: false,
            settings_path: None,
            poll_interval: None,
        }
    }
}

/// What is persisted: the chosen device per role, by id.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Settings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    microphone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    speaker: Option<String>,
    /// `None`: ring on the speaker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ringer: Option<String>,
    /// Echo cancellation and noise suppression (both on unless turned off).
    #[serde(default)]
    processing: ProcessingSettings,
    /// A ringtone file; `None`: the built-in ringtone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ringtone: Option<PathBuf>,
}

struct VirtualDevice<O> {
    info: AudioDeviceInfo,
    opener: O,
}

struct State {
    cpal_inputs: Vec<CpalDevice>,
    cpal_outputs: Vec<CpalDevice>,
    sources: Vec<VirtualDevice<SourceOpener>>,
    sinks: Vec<VirtualDevice<SinkOpener>>,
    preferred: Settings,
    active: HashMap<DeviceRole, String>,
    /// Devices that failed; skipped until selected again or re-plugged.
    broken: HashSet<String>,
    /// Problems in effect now (replayed by [`DeviceManager::problems`]).
    problems: Vec<Event>,
    tones: HashMap<String, (Tone, u64)>,
    ringtone: Option<RingtoneFile>,
    /// The audio file playing on the speaker ([`DeviceManager::play_file`]).
    playback: Option<u64>,
    call_states: HashMap<String, (CallDirection, CallState)>,
    meter_thread: bool,
}

struct Inner {
    config: DeviceManagerConfig,
    state: Mutex<State>,
    engine: Engine,
    events: broadcast::Sender<Event>,
}

/// The sound devices and the audio engine (ACS `DeviceManager`); cheap to clone.
///
/// * [`get_microphones`](Self::get_microphones) / [`get_speakers`](Self::get_speakers):
///   every device of every cpal host, then the virtual ones.
/// * [`select_microphone`](Self::select_microphone) /
///   [`select_speaker`](Self::select_speaker) / [`select_ringer`](Self::select_ringer):
///   take effect at once, also mid-call; persisted by id. A chosen device that
///   is missing or fails is replaced by the system default (then by a virtual
///   device) and comes back when it is plugged in again.
/// * [`source_factory`](Self::source_factory) / [`sink_factory`](Self::sink_factory)
///   plug into `AgentConfig`: each call gets a capture tap and a mixer input, so
///   device changes never touch a call.
/// * Events (`audioDevicesUpdated`, `selectedMicrophoneChanged`,
///   `selectedSpeakerChanged`, `selectedRingerChanged`, `audioDeviceError`,
///   `microphoneLevelChanged`) on [`subscribe`](Self::subscribe).
///
/// It never fails to start: with no usable sound device (a server, a container)
/// it reports `audioDeviceError` with code `device.none_available` and uses the
/// virtual devices, so calls still work.
#[derive(Clone)]
pub struct DeviceManager {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for DeviceManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.state();
        f.debug_struct("DeviceManager")
            .field("active", &state.active)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn virtual_info(id: &str, name: &str, device_type: DeviceType) -> AudioDeviceInfo {
    AudioDeviceInfo {
        id: id.to_owned(),
        name: name.to_owned(),
        device_type,
        is_system_default: false,
        is_virtual: true,
    }
}

fn cpal_info(d: &CpalDevice, device_type: DeviceType) -> AudioDeviceInfo {
    AudioDeviceInfo {
        id: d.id.clone(),
        name: d.name.clone(),
        device_type,
        is_system_default: d.is_default,
        is_virtual: false,
    }
}

impl DeviceManager {
    /// Starts the engine, lists the devices and applies the saved selection.
    pub fn new(config: DeviceManagerConfig) -> DeviceManager {
        let preferred = config
            .settings_path
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .and_then(|s| serde_json::from_str::<Settings>(&s).ok())
            .unwrap_or_default();
        let (events, _) = broadcast::channel(256);
        let processing = preferred.processing;
        let ringtone = preferred.ringtone.as_deref().and_then(|path| {
            RingtoneFile::load(path)
                .map_err(|e| tracing::warn!(error = %e, "the saved ringtone cannot be played; using the built-in one"))
                .ok()
        });
        let inner = Arc::new_cyclic(|weak: &Weak<Inner>| {
            let weak = weak.clone();
            let engine = Engine::new(
                Arc::new(move |role, id, error| {
                    if let Some(inner) = weak.upgrade() {
                        DeviceManager { inner }.on_device_failed(role, &id, &error);
                    }
                }),
                processing,
            );
            Inner {
                config: config.clone(),
                state: Mutex::new(State {
                    cpal_inputs: Vec::new(),
                    cpal_outputs: Vec::new(),
                    sources: vec![
                        VirtualDevice {
                            info: virtual_info(
                                VIRTUAL_SILENCE,
                                "Silence (virtual)",
                                DeviceType::Microphone,
                            ),
                            opener: Arc::new(|| Ok(Box::new(SilenceSource::new()) as _)),
                        },
                        VirtualDevice {
                            info: virtual_info(
                                VIRTUAL_TONE,
                                "Test tone 440 Hz (virtual)",
                                DeviceType::Microphone,
                            ),
                            opener: Arc::new(|| Ok(Box::new(ToneSource::new(440.0)) as _)),
                        },
                    ],
                    sinks: vec![VirtualDevice {
                        info: virtual_info(VIRTUAL_NULL, "Discard (virtual)", DeviceType::Speaker),
                        opener: Arc::new(|| Ok(Box::new(NullSink::new()) as _)),
                    }],
                    preferred,
                    active: HashMap::new(),
                    broken: HashSet::new(),
                    problems: Vec::new(),
                    tones: HashMap::new(),
                    ringtone,
                    playback: None,
                    call_states: HashMap::new(),
                    meter_thread: false,
                }),
                engine,
                events,
            }
        });
        let manager = DeviceManager { inner };
        manager.refresh();
        if let Some(every) = manager.inner.config.poll_interval {
            let weak = Arc::downgrade(&manager.inner);
            let spawned = std::thread::Builder::new()
                .name("hookflash-device-watch".into())
                .spawn(move || loop {
                    std::thread::sleep(every);
                    match weak.upgrade() {
                        Some(inner) => DeviceManager { inner }.refresh(),
                        None => break,
                    }
                });
            if let Err(e) = spawned {
                tracing::warn!(error = %e, "cannot start the device watcher; hot-plug goes unnoticed");
            }
        }
        manager
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.inner.state)
    }

    fn emit(&self, event: Event) {
        let _ = self.inner.events.send(event);
    }

    /// Every device event from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.inner.events.subscribe()
    }

    /// The `audioDeviceError` events still in effect (for example "no sound
    /// device"), for a client that subscribes late.
    pub fn problems(&self) -> Vec<Event> {
        self.state().problems.clone()
    }

    /// Microphones: sound cards first, then virtual devices.
    pub fn get_microphones(&self) -> Vec<AudioDeviceInfo> {
        Self::microphones(&self.state())
    }

    /// Speakers (also the candidates for the ringer).
    pub fn get_speakers(&self) -> Vec<AudioDeviceInfo> {
        Self::speakers(&self.state())
    }

    fn microphones(state: &State) -> Vec<AudioDeviceInfo> {
        let mut v: Vec<AudioDeviceInfo> = state
            .cpal_inputs
            .iter()
            .map(|d| cpal_info(d, DeviceType::Microphone))
            .collect();
        v.extend(state.sources.iter().map(|s| s.info.clone()));
        v
    }

    fn speakers(state: &State) -> Vec<AudioDeviceInfo> {
        let mut v: Vec<AudioDeviceInfo> = state
            .cpal_outputs
            .iter()
            .map(|d| cpal_info(d, DeviceType::Speaker))
            .collect();
        v.extend(state.sinks.iter().map(|s| s.info.clone()));
        v
    }

    /// The microphone in use.
    pub fn selected_microphone(&self) -> Option<AudioDeviceInfo> {
        self.active_info(DeviceRole::Microphone)
    }

    /// The speaker in use.
    pub fn selected_speaker(&self) -> Option<AudioDeviceInfo> {
        self.active_info(DeviceRole::Speaker)
    }

    /// The ringer in use (the speaker when none was chosen).
    pub fn selected_ringer(&self) -> Option<AudioDeviceInfo> {
        self.active_info(DeviceRole::Ringer)
            .or_else(|| self.active_info(DeviceRole::Speaker))
    }

    fn active_info(&self, role: DeviceRole) -> Option<AudioDeviceInfo> {
        let state = self.state();
        let id = state.active.get(&role)?;
        Self::info(&state, role, id)
    }

    fn info(state: &State, role: DeviceRole, id: &str) -> Option<AudioDeviceInfo> {
        let list = match role {
            DeviceRole::Microphone => Self::microphones(state),
            _ => Self::speakers(state),
        };
        list.into_iter().find(|d| d.id == id)
    }

    /// Uses this microphone from now on, also in running calls; remembered.
    ///
    /// Fails with [`DeviceError::Unavailable`] for an unknown id.
    pub fn select_microphone(&self, device_id: &str) -> Result<(), DeviceError> {
        self.select(DeviceRole::Microphone, Some(device_id))
    }

    /// Uses this speaker from now on, also in running calls; remembered.
    pub fn select_speaker(&self, device_id: &str) -> Result<(), DeviceError> {
        self.select(DeviceRole::Speaker, Some(device_id))
    }

    /// Rings incoming calls on this device (`None`: on the speaker); remembered.
    pub fn select_ringer(&self, device_id: Option<&str>) -> Result<(), DeviceError> {
        self.select(DeviceRole::Ringer, device_id)
    }

    fn select(&self, role: DeviceRole, id: Option<&str>) -> Result<(), DeviceError> {
        {
            let mut state = self.state();
            if let Some(id) = id {
                if Self::info(&state, role, id).is_none() {
                    return Err(DeviceError::Unavailable(format!("no {role:?} {id:?}")));
                }
                state.broken.remove(id);
            }
            let id = id.map(str::to_owned);
            match role {
                DeviceRole::Microphone => state.preferred.microphone = id,
                DeviceRole::Speaker => state.preferred.speaker = id,
                DeviceRole::Ringer => state.preferred.ringer = id,
            }
            self.save(&state.preferred);
        }
        self.apply_all();
        Ok(())
    }

    /// The voice processing applied to real microphones (echo cancellation,
    /// noise suppression).
    pub fn audio_processing(&self) -> ProcessingSettings {
        self.inner.engine.hub.processing()
    }

    /// Turns echo cancellation and noise suppression on or off, also mid-call;
    /// remembered. Emits `audioProcessingChanged`.
    pub fn set_audio_processing(&self, settings: ProcessingSettings) {
        {
            let mut state = self.state();
            state.preferred.processing = settings;
            self.save(&state.preferred);
        }
        self.inner.engine.hub.set_processing(settings);
        tracing::info!(?settings, "voice processing changed");
        self.emit(Event::AudioProcessingChanged {
            echo_cancellation: settings.echo_cancellation,
            noise_suppression: settings.noise_suppression,
        });
    }

    /// Rings incoming calls with this audio file (WAV, FLAC, MP3, Ogg Vorbis;
    /// `None`: the built-in ringtone); remembered. A file that cannot be decoded
    /// is refused ([`DeviceError::Format`] / [`DeviceError::Unavailable`]) and the
    /// ringtone stays as it was.
    pub fn set_ringtone(&self, path: Option<&std::path::Path>) -> Result<(), DeviceError> {
        let ringtone = path.map(RingtoneFile::load).transpose()?;
        let mut state = self.state();
        state.preferred.ringtone = ringtone.as_ref().map(|r| r.path().to_owned());
        state.ringtone = ringtone;
        self.save(&state.preferred);
        Ok(())
    }

    /// The ringtone file in use (`None`: the built-in ringtone).
    pub fn ringtone(&self) -> Option<PathBuf> {
        self.state().ringtone.as_ref().map(|r| r.path().to_owned())
    }

    fn save(&self, settings: &Settings) {
        let Some(path) = &self.inner.config.settings_path else {
            return;
        };
        let result = serde_json::to_string_pretty(settings)
            .map_err(|e| e.to_string())
            .and_then(|json| std::fs::write(path, json).map_err(|e| e.to_string()));
        if let Err(e) = result {
            tracing::warn!(error = %e, "cannot save the audio device selection");
        }
    }

    /// Adds a virtual microphone (a test source, a file) beside the others.
    pub fn add_virtual_microphone(&self, id: &str, name: &str, opener: SourceOpener) {
        let info = virtual_info(id, name, DeviceType::Microphone);
        self.add_virtual(info, opener, |state| &mut state.sources);
    }

    /// Adds a virtual speaker (a file, a capture buffer) beside the others.
    pub fn add_virtual_speaker(&self, id: &str, name: &str, opener: SinkOpener) {
        let info = virtual_info(id, name, DeviceType::Speaker);
        self.add_virtual(info, opener, |state| &mut state.sinks);
    }

    /// Adds (or replaces) a virtual device in its list, tells the clients, re-applies selections.
    fn add_virtual<O>(
        &self,
        info: AudioDeviceInfo,
        opener: O,
        list: impl FnOnce(&mut State) -> &mut Vec<VirtualDevice<O>>,
    ) {
        {
            let mut state = self.state();
            state.broken.remove(&info.id);
            let devices = list(&mut state);
            devices.retain(|d| d.info.id != info.id);
            devices.push(VirtualDevice {
                info: info.clone(),
                opener,
            });
        }
        self.emit(Event::AudioDevicesUpdated {
            added: vec![info],
            removed: vec![],
        });
        self.apply_all();
    }

    /// Removes a virtual device, as if unplugged.
    pub fn remove_virtual_device(&self, id: &str) {
        let removed: Vec<AudioDeviceInfo> = {
            let mut state = self.state();
            let mut removed = Vec::new();
            state.sources.retain(|d| {
                let keep = d.info.id != id;
                if !keep {
                    removed.push(d.info.clone());
                }
                keep
            });
            state.sinks.retain(|d| {
                let keep = d.info.id != id;
                if !keep {
                    removed.push(d.info.clone());
                }
                keep
            });
            removed
        };
        if !removed.is_empty() {
            self.emit(Event::AudioDevicesUpdated {
                added: vec![],
                removed,
            });
            self.apply_all();
        }
    }

    /// Lists the sound cards again and reacts to what changed: emits
    /// `audioDevicesUpdated`, moves a role whose device left to the fallback,
    /// and back to the chosen device when it returns. Runs every
    /// [`DeviceManagerConfig::poll_interval`] by itself.
    pub fn refresh(&self) {
        let (inputs, outputs, errors) = if self.inner.config.system_devices {
            cpal_backend::enumerate()
        } else {
            (Vec::new(), Vec::new(), Vec::new())
        };
        for e in &errors {
            tracing::debug!(error = %e, "listing sound devices");
        }
        let (added, removed, none_now) = {
            let mut state = self.state();
            let before: Vec<AudioDeviceInfo> = Self::microphones(&state)
                .into_iter()
                .chain(Self::speakers(&state))
                .collect();
            state.cpal_inputs = inputs;
            state.cpal_outputs = outputs;
            let after: Vec<AudioDeviceInfo> = Self::microphones(&state)
                .into_iter()
                .chain(Self::speakers(&state))
                .collect();
            let added: Vec<AudioDeviceInfo> = after
                .iter()
                .filter(|d| {
                    !before
                        .iter()
                        .any(|b| b.id == d.id && b.device_type == d.device_type)
                })
                .cloned()
                .collect();
            let removed: Vec<AudioDeviceInfo> = before
                .iter()
                .filter(|d| {
                    !after
                        .iter()
                        .any(|a| a.id == d.id && a.device_type == d.device_type)
                })
                .cloned()
                .collect();
            // A device that left and came back gets another chance.
            for d in &removed {
                state.broken.remove(&d.id);
            }
            let none_now = self.inner.config.system_devices
                && state.cpal_inputs.is_empty()
                && state.cpal_outputs.is_empty();
            (added, removed, none_now)
        };
        self.set_none_available(none_now, &errors);
        if !added.is_empty() || !removed.is_empty() {
            tracing::info!(
                added = added.len(),
                removed = removed.len(),
                "audio devices changed"
            );
            self.emit(Event::AudioDevicesUpdated { added, removed });
        }
        self.apply_all();
    }

    fn set_none_available(&self, none: bool, errors: &[String]) {
        let event = {
            let mut state = self.state();
            let had = state
                .problems
                .iter()
                .any(|p| matches!(p, Event::AudioDeviceError { code, .. } if code == "device.none_available"));
            if none == had {
                return;
            }
            if !none {
                state.problems.retain(
                    |p| !matches!(p, Event::AudioDeviceError { code, .. } if code == "device.none_available"),
                );
                return;
            }
            let detail = if errors.is_empty() {
                String::new()
            } else {
                format!(" ({})", errors.join("; "))
            };
            let event = Event::AudioDeviceError {
                device_type: None,
                device_id: None,
                code: crate::error::ErrorCode::DeviceNoneAvailable,
                message: format!(
                    "No usable sound device was found{detail}; calls use virtual devices (silence) until one is plugged in."
                ),
                fallback_device_id: None,
            };
            state.problems.push(event.clone());
            event
        };
        tracing::warn!("no usable sound device; using virtual devices");
        self.emit(event);
    }

    /// The device a role should use now: the chosen one if present and not
    /// broken, else the system default, else the first sound card, else virtual.
    fn resolve(state: &State, role: DeviceRole) -> Option<String> {
        let (preferred, cards, fallback) = match role {
            DeviceRole::Microphone => (
                state.preferred.microphone.as_deref(),
                &state.cpal_inputs,
                VIRTUAL_SILENCE,
            ),
            DeviceRole::Speaker => (
                state.preferred.speaker.as_deref(),
                &state.cpal_outputs,
                VIRTUAL_NULL,
            ),
            DeviceRole::Ringer => match state.preferred.ringer.as_deref() {
                // Ring on the speaker: no second stream.
                None => return None,
                Some(r) => (Some(r), &state.cpal_outputs, VIRTUAL_NULL),
            },
        };
        let usable = |id: &str| !state.broken.contains(id) && Self::info(state, role, id).is_some();
        if let Some(p) = preferred.filter(|p| usable(p)) {
            return Some(p.to_owned());
        }
        if role == DeviceRole::Ringer {
            // A missing ringer falls back to the speaker.
            return None;
        }
        cards
            .iter()
            .filter(|d| usable(&d.id))
            .find(|d| d.is_default)
            .or_else(|| cards.iter().find(|d| usable(&d.id)))
            .map(|d| d.id.clone())
            .or_else(|| Some(fallback.to_owned()))
    }

    fn target(state: &State, role: DeviceRole, id: &str) -> Option<Target> {
        let backend = match role {
            DeviceRole::Microphone => state
                .cpal_inputs
                .iter()
                .find(|d| d.id == id)
                .map(|d| Backend::Cpal(d.clone()))
                .or_else(|| {
                    state
                        .sources
                        .iter()
                        .find(|d| d.info.id == id)
                        .map(|d| Backend::Source(Arc::clone(&d.opener)))
                }),
            _ => state
                .cpal_outputs
                .iter()
                .find(|d| d.id == id)
                .map(|d| Backend::Cpal(d.clone()))
                .or_else(|| {
                    state
                        .sinks
                        .iter()
                        .find(|d| d.info.id == id)
                        .map(|d| Backend::Sink(Arc::clone(&d.opener)))
                }),
        }?;
        Some(Target {
            id: id.to_owned(),
            backend,
        })
    }

    fn apply_all(&self) {
        for role in [
            DeviceRole::Microphone,
            DeviceRole::Speaker,
            DeviceRole::Ringer,
        ] {
            self.apply(role);
        }
    }

    fn apply(&self, role: DeviceRole) {
        let changed = {
            let mut state = self.state();
            let want = Self::resolve(&state, role);
            if state.active.get(&role) == want.as_ref() {
                return;
            }
            let target = want
                .as_deref()
                .and_then(|id| Self::target(&state, role, id));
            self.inner.engine.select(role, target);
            if role == DeviceRole::Ringer {
                self.move_ringtones(&mut state, want.is_some());
            }
            match &want {
                Some(id) => state.active.insert(role, id.clone()),
                None => state.active.remove(&role),
            };
            let info = want
                .as_deref()
                .and_then(|id| Self::info(&state, role, id))
                .or_else(|| {
                    // The ringer follows the speaker.
                    let speaker = state.active.get(&DeviceRole::Speaker)?;
                    Self::info(&state, DeviceRole::Speaker, speaker)
                });
            info
        };
        if let Some(device) = changed {
            tracing::info!(?role, device = %device.id, "audio device selected");
            self.emit(match role {
                DeviceRole::Microphone => Event::SelectedMicrophoneChanged { device },
                DeviceRole::Speaker => Event::SelectedSpeakerChanged { device },
                DeviceRole::Ringer => Event::SelectedRingerChanged { device },
            });
        }
    }

    fn on_device_failed(&self, role: DeviceRole, id: &str, error: &DeviceError) {
        let (name, fallback) = {
            let mut state = self.state();
            if state.active.get(&role).map(String::as_str) != Some(id) {
                return;
            }
            state.broken.insert(id.to_owned());
            let name = Self::info(&state, role, id).map_or_else(|| id.to_owned(), |d| d.name);
            // The ringer falls back to the speaker.
            let fallback = Self::resolve(&state, role)
                .and_then(|f| Self::info(&state, role, &f))
                .or_else(|| {
                    let speaker = state.active.get(&DeviceRole::Speaker)?;
                    Self::info(&state, DeviceRole::Speaker, speaker)
                });
            (name, fallback)
        };
        let fallback_name = fallback
            .as_ref()
            .map_or("nothing".to_owned(), |d| d.name.clone());
        use crate::error::ErrorCode;
        let (kind, what, code) = match role {
            DeviceRole::Microphone => (
                DeviceType::Microphone,
                "microphone",
                ErrorCode::DeviceLostMicrophone,
            ),
            DeviceRole::Speaker => (DeviceType::Speaker, "speaker", ErrorCode::DeviceLostSpeaker),
            DeviceRole::Ringer => (DeviceType::Speaker, "ringer", ErrorCode::DeviceLostRinger),
        };
        // First the explanation, then the selection change it explains.
        self.emit(Event::AudioDeviceError {
            device_type: Some(kind),
            device_id: Some(id.to_owned()),
            code,
            message: format!(
                "The {what} \"{name}\" stopped working ({error}); now using \"{fallback_name}\"."
            ),
            fallback_device_id: fallback.map(|d| d.id),
        });
        self.apply(role);
    }

    /// Opens one call's microphone side: a capture tap on whatever microphone is
    /// selected, now and after any switch.
    pub fn source_factory(&self) -> SourceFactory {
        let hub = Arc::clone(&self.inner.engine.hub);
        Arc::new(move |call_id| Ok(Box::new(hub.add_tap(call_id)) as _))
    }

    /// Opens one call's speaker side: an input of the speaker mixer.
    pub fn sink_factory(&self) -> SinkFactory {
        let mixer = Arc::clone(&self.inner.engine.speaker);
        Arc::new(move |call_id| Ok(Box::new(mixer.add_input(call_id)) as _))
    }

    /// Plays a tone: [`Tone::Ringtone`] on the ringer, everything else on the
    /// speaker. Looping tones play until [`stop_tone`](Self::stop_tone); the
    /// returned id identifies the playback.
    pub fn play_tone(&self, tone: Tone) -> Result<u64, DeviceError> {
        let custom = match tone {
            Tone::Ringtone => self.state().ringtone.as_ref().map(RingtoneFile::generator),
            _ => None,
        };
        let generator = match custom {
            Some(g) => g,
            None => Box::new(ToneGenerator::new(tone).ok_or_else(|| DeviceError::Spec {
                spec: format!("{tone:?}"),
                reason: "not a DTMF key".into(),
            })?),
        };
        let role = self.tone_role(tone);
        let mixer = match role {
            DeviceRole::Ringer => &self.inner.engine.ringer,
            _ => &self.inner.engine.speaker,
        };
        Ok(mixer.add_generator(generator) * 4 + role_code(role))
    }

    /// Plays an audio file (WAV, FLAC, MP3, Ogg Vorbis) once on the speaker — a voicemail
    /// message, a greeting — in place of any file already playing. The file is decoded
    /// before this returns, so a bad file is refused at once ([`DeviceError::Format`]).
    pub fn play_file(&self, path: &std::path::Path) -> Result<(), DeviceError> {
        let generator = super::ringtone::playback(path)?;
        self.stop_file();
        let id = self.inner.engine.speaker.add_generator(generator);
        self.state().playback = Some(id);
        Ok(())
    }

    /// Stops the file [`play_file`](Self::play_file) started, if it still plays.
    pub fn stop_file(&self) {
        if let Some(id) = self.state().playback.take() {
            self.inner.engine.speaker.remove_generator(id);
        }
    }

    fn tone_role(&self, tone: Tone) -> DeviceRole {
        if tone == Tone::Ringtone && self.state().active.contains_key(&DeviceRole::Ringer) {
            DeviceRole::Ringer
        } else {
            DeviceRole::Speaker
        }
    }

    /// Stops a tone started with [`play_tone`](Self::play_tone).
    pub fn stop_tone(&self, playback: u64) {
        let id = playback / 4;
        self.inner.engine.speaker.remove_generator(id);
        self.inner.engine.ringer.remove_generator(id);
    }

    /// Whether a tone is still playing.
    pub fn is_tone_playing(&self, playback: u64) -> bool {
        let id = playback / 4;
        self.inner.engine.speaker.has_generator(id) || self.inner.engine.ringer.has_generator(id)
    }

    /// Ringtones follow the ringer selection while they play.
    fn move_ringtones(&self, state: &mut State, to_ringer: bool) {
        let engine = &self.inner.engine;
        let (from, to, new_role) = if to_ringer {
            (&engine.speaker, &engine.ringer, DeviceRole::Ringer)
        } else {
            (&engine.ringer, &engine.speaker, DeviceRole::Speaker)
        };
        for (tone, playback) in state.tones.values_mut() {
            if *tone != Tone::Ringtone || !from.has_generator(*playback / 4) {
                continue;
            }
            from.remove_generator(*playback / 4);
            if let Some(generator) = ToneGenerator::new(Tone::Ringtone) {
                *playback = to.add_generator(Box::new(generator)) * 4 + role_code(new_role);
            }
        }
    }

    /// Keeps the microphone open and reports its level (`microphoneLevelChanged`,
    /// 10 times a second) while `on`, for the settings page's meter.
    pub fn set_level_meter(&self, on: bool) {
        let start = {
            let mut state = self.state();
            if state.meter_thread == on {
                return;
            }
            state.meter_thread = on;
            on
        };
        let hub = Arc::clone(&self.inner.engine.hub);
        if !start {
            hub.remove_meter();
            return;
        }
        hub.add_meter();
        let weak = Arc::downgrade(&self.inner);
        let spawned = std::thread::Builder::new()
            .name("hookflash-level-meter".into())
            .spawn(move || loop {
                std::thread::sleep(Duration::from_millis(100));
                let Some(inner) = weak.upgrade() else { break };
                if !lock(&inner.state).meter_thread {
                    break;
                }
                let level = inner.engine.hub.level();
                let _ = inner.events.send(Event::MicrophoneLevelChanged { level });
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start the level meter");
        }
    }

    /// The microphone's current peak level, 0.0..=1.0 (meaningful while a call or
    /// the level meter keeps the microphone open).
    pub fn microphone_level(&self) -> f32 {
        self.inner.engine.hub.level()
    }

    /// Drives the call-progress tones from the agent's events: the ringtone for
    /// an incoming call (a call-waiting beep instead when another call is
    /// active), ringback while an outgoing call rings, silence once answered or
    /// ended. The agent adapter calls this for every event.
    pub fn on_call_event(&self, event: &Event) {
        match event {
            Event::CallsUpdated { added, removed } => {
                let mut state = self.state();
                for CallSummary { id, direction, .. } in added {
                    state
                        .call_states
                        .entry(id.clone())
                        .or_insert((*direction, CallState::None));
                }
                for id in removed {
                    state.call_states.remove(id);
                }
                drop(state);
                for id in removed {
                    self.stop_call_tone(id);
                }
            }
            Event::IncomingCall { call_id, .. } => {
                let busy = {
                    let mut state = self.state();
                    state.call_states.insert(
                        call_id.clone(),
                        (CallDirection::Incoming, CallState::Ringing),
                    );
                    state.call_states.iter().any(|(id, (_, s))| {
                        id != call_id
                            && matches!(
                                s,
                                CallState::Connected
                                    | CallState::LocalHold
                                    | CallState::RemoteHold
                                    | CallState::EarlyMedia
                                    | CallState::Connecting
                            )
                    })
                };
                let tone = if busy {
                    Tone::CallWaiting
                } else {
                    Tone::Ringtone
                };
                self.start_call_tone(call_id, tone);
            }
            Event::CallStateChanged { call_id, state, .. } => {
                let direction = {
                    let mut s = self.state();
                    let entry = s
                        .call_states
                        .entry(call_id.clone())
                        .or_insert((CallDirection::Outgoing, CallState::None));
                    entry.1 = *state;
                    entry.0
                };
                match (direction, state) {
                    (CallDirection::Outgoing, CallState::Ringing) => {
                        self.start_call_tone(call_id, Tone::Ringback)
                    }
                    (_, CallState::Ringing) => {}
                    _ => self.stop_call_tone(call_id),
                }
            }
            _ => {}
        }
    }

    fn start_call_tone(&self, call_id: &str, tone: Tone) {
        self.stop_call_tone(call_id);
        match self.play_tone(tone) {
            Ok(playback) => {
                self.state()
                    .tones
                    .insert(call_id.to_owned(), (tone, playback));
            }
            Err(e) => tracing::debug!(error = %e, "cannot play a call tone"),
        }
    }

    fn stop_call_tone(&self, call_id: &str) {
        let playback = self.state().tones.remove(call_id);
        if let Some((_, playback)) = playback {
            self.stop_tone(playback);
        }
    }
}

fn role_code(role: DeviceRole) -> u64 {
    match role {
        DeviceRole::Microphone => 0,
        DeviceRole::Speaker => 1,
        DeviceRole::Ringer => 2,
    }
}
