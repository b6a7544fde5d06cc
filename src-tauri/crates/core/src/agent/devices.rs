//! The agent's side of the [`DeviceManager`]: device commands, device events
//! forwarded into the agent's event stream, and call-progress tones driven by
//! the agent's call events.

use tokio::sync::broadcast;

use super::{AgentConfig, Core};
use crate::api::{Command, Event};
use crate::audio::{DeviceManager, DeviceType, Tone};
use crate::error::AgentError;

impl AgentConfig {
    /// Plays and captures every call through `devices` (its capture taps and
    /// mixer inputs), answers the device commands (`getMicrophones`,
    /// `selectSpeaker`, ...) and forwards its events (`audioDevicesUpdated`,
    /// `selectedMicrophoneChanged`, ...). Ringtone, ringback and the
    /// call-waiting beep then play by themselves.
    pub fn with_devices(mut self, devices: DeviceManager) -> Self {
        self.microphone = devices.source_factory();
        self.speaker = devices.sink_factory();
        self.devices = Some(devices);
        self
    }
}

/// Forwards the device manager's events to the agent's subscribers and feeds it
/// the agent's call events (for tones). Ends when the agent is gone.
pub(super) fn forward_events(config: &AgentConfig, events: &broadcast::Sender<Event>) {
    let Some(devices) = config.devices.clone() else {
        return;
    };
    let mut device_rx = devices.subscribe();
    let mut agent_rx = events.subscribe();
    let weak = events.downgrade();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                ev = device_rx.recv() => match ev {
                    Ok(ev) => {
                        let Some(tx) = weak.upgrade() else { break };
                        let _ = tx.send(ev);
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::debug!(n, "device events lagged");
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                },
                ev = agent_rx.recv() => match ev {
                    Ok(ev) => devices.on_call_event(&ev),
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => break,
                },
            }
        }
    });
}

impl Core {
    /// Runs one device command (see [`crate::api::Command`]).
    pub(super) fn on_device_command(&mut self, cmd: Command) -> Result<Option<String>, AgentError> {
        let devices = self.cfg.devices.clone().ok_or_else(|| {
            AgentError::Device(crate::audio::DeviceError::Unavailable(
                "this agent has no device manager".into(),
            ))
        })?;
        let device_error = AgentError::Device;
        match cmd {
            Command::GetMicrophones {} | Command::GetSpeakers {} => {
                let (device_type, list, selected) = if matches!(cmd, Command::GetMicrophones {}) {
                    (
                        DeviceType::Microphone,
                        devices.get_microphones(),
                        devices.selected_microphone(),
                    )
                } else {
                    (
                        DeviceType::Speaker,
                        devices.get_speakers(),
                        devices.selected_speaker(),
                    )
                };
                self.emit(Event::AudioDevices {
                    device_type,
                    devices: list,
                    selected: selected.map(|d| d.id),
                });
                // A client that subscribed after start-up learns of standing problems.
                for problem in devices.problems() {
                    self.emit(problem);
                }
            }
            Command::SelectMicrophone { device_id } => devices
                .select_microphone(&device_id)
                .map_err(device_error)?,
            Command::SelectSpeaker { device_id } => {
                devices.select_speaker(&device_id).map_err(device_error)?
            }
            Command::SelectRinger { device_id } => devices
                .select_ringer(device_id.as_deref())
                .map_err(device_error)?,
            Command::SetRingtone { path } => devices
                .set_ringtone(path.as_deref().map(std::path::Path::new))
                .map_err(device_error)?,
            Command::PlayAudioFile { path } => devices
                .play_file(std::path::Path::new(&path))
                .map_err(device_error)?,
            Command::StopAudioFile {} => devices.stop_file(),
            Command::GetAudioProcessing {} => {
                let now = devices.audio_processing();
                self.emit(Event::AudioProcessingChanged {
                    echo_cancellation: now.echo_cancellation,
                    noise_suppression: now.noise_suppression,
                });
            }
            Command::SetAudioProcessing {
                echo_cancellation,
                noise_suppression,
            } => {
                let now = devices.audio_processing();
                devices.set_audio_processing(crate::audio::ProcessingSettings {
                    echo_cancellation: echo_cancellation.unwrap_or(now.echo_cancellation),
                    noise_suppression: noise_suppression.unwrap_or(now.noise_suppression),
                });
            }
            Command::StartMicrophoneLevelMeter {} => devices.set_level_meter(true),
            Command::StopMicrophoneLevelMeter {} => devices.set_level_meter(false),
            Command::PlaySpeakerTestTone {} => {
                devices.play_tone(Tone::SpeakerTest).map_err(device_error)?;
            }
            Command::PlayKeyTone { tones } => {
                let keys: Vec<char> = tones.chars().filter(|c| !c.is_whitespace()).collect();
                if keys.is_empty()
                    || keys
                        .iter()
                        .any(|&k| crate::audio::tones::dtmf_pair(k).is_none())
                {
                    return Err(AgentError::InvalidDtmf(tones));
                }
                // Keys one after another, 150 ms apart, beside the agent's loop.
                tokio::spawn(async move {
                    for key in keys {
                        let _ = devices.play_tone(Tone::Key(key));
                        tokio::time::sleep(std::time::Duration::from_millis(150)).await;
                    }
                });
            }
            other => {
                return Err(AgentError::MalformedCommand(format!(
                    "not a device command: {other:?}"
                )))
            }
        }
        Ok(None)
    }
}
