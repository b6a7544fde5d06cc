//! Sound cards through cpal: enumeration over every host cpal offers on the
//! platform, and streams that feed a [`Mixer`] or a [`CaptureHub`].
//!
//! A cpal stream is not `Send` on every platform, so streams are created, kept
//! and dropped on the engine's per-role runner thread; their callbacks run on
//! cpal's own real-time thread and only touch the mixer or hub (short locks).
//! Devices run at their own rate and channel count: output is rendered at
//! 48 kHz mono, converted with [`Resampler`] and copied to every channel; input
//! is averaged to mono and converted to 48 kHz.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};
use cpal::{FromSample, SampleFormat, SizedSample, StreamConfig};

use super::mixer::{CaptureHub, Mixer};
use super::resampler::Resampler;
use super::{DeviceError, SAMPLE_RATE};

/// The period we ask devices for: 10 ms at 48 kHz.
const PERIOD_MS: u32 = 10;

/// A cpal device as the engine knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CpalDevice {
    /// Stable id: `<host>:<device name>`, e.g. `alsa:pulse`.
    pub id: String,
    /// Readable name, e.g. `pulse (ALSA)`.
    pub name: String,
    pub is_default: bool,
    host: cpal::HostId,
    device_name: String,
}

/// Milliseconds since the process's first use of the engine (heartbeats).
pub(crate) fn now_ms() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_millis() as u64
}

fn readable(host: cpal::HostId, name: &str) -> String {
    let pretty = match name {
        "default" => "System default".to_owned(),
        "pulse" => "PulseAudio".to_owned(),
        "pipewire" => "PipeWire".to_owned(),
        other => other.to_owned(),
    };
    format!("{pretty} ({})", host.name())
}

/// Every input and output device of every available host. Errors (no host, a
/// host that cannot list) are collected, not fatal.
pub(crate) fn enumerate() -> (Vec<CpalDevice>, Vec<CpalDevice>, Vec<String>) {
    let mut inputs = Vec::new();
    let mut outputs = Vec::new();
    let mut errors = Vec::new();
    let default_host = cpal::default_host().id();
    for host_id in cpal::available_hosts() {
        let host = match cpal::host_from_id(host_id) {
            Ok(h) => h,
            Err(e) => {
                errors.push(format!("{}: {e}", host_id.name()));
                continue;
            }
        };
        let is_default_host = host_id == default_host;
        let default_in = host.default_input_device().and_then(|d| d.name().ok());
        let default_out = host.default_output_device().and_then(|d| d.name().ok());
        let mut collect = |list: Result<Vec<cpal::Device>, String>,
                           default: &Option<String>,
                           into: &mut Vec<CpalDevice>| match list {
            Ok(devices) => {
                for d in devices {
                    let Ok(name) = d.name() else { continue };
                    let id = format!("{}:{name}", host_id.name().to_ascii_lowercase());
                    if into.iter().any(|x: &CpalDevice| x.id == id) {
                        continue;
                    }
                    into.push(CpalDevice {
                        name: readable(host_id, &name),
                        is_default: is_default_host && default.as_deref() == Some(&name),
                        id,
                        host: host_id,
                        device_name: name,
                    });
                }
            }
            Err(e) => errors.push(format!("{}: {e}", host_id.name())),
        };
        collect(
            host.input_devices()
                .map(|d| d.collect())
                .map_err(|e| e.to_string()),
            &default_in,
            &mut inputs,
        );
        collect(
            host.output_devices()
                .map(|d| d.collect())
                .map_err(|e| e.to_string()),
            &default_out,
            &mut outputs,
        );
    }
    (inputs, outputs, errors)
}

fn find(dev: &CpalDevice, input: bool) -> Result<cpal::Device, DeviceError> {
    let host = cpal::host_from_id(dev.host).map_err(|e| DeviceError::Unavailable(e.to_string()))?;
    let devices: Vec<cpal::Device> = if input {
        host.input_devices().map(|d| d.collect())
    } else {
        host.output_devices().map(|d| d.collect())
    }
    .map_err(|e| DeviceError::Unavailable(e.to_string()))?;
    devices
        .into_iter()
        .find(|d| d.name().ok().as_deref() == Some(dev.device_name.as_str()))
        .ok_or_else(|| DeviceError::Unavailable(format!("{} is gone", dev.name)))
}

/// Picks a stream configuration: 48 kHz if the device can, else its default
/// rate; the fewest channels for input, the default count for output; f32 or
/// i16 samples; a 10 ms period if the device accepts a fixed size.
fn pick_config(
    device: &cpal::Device,
    input: bool,
) -> Result<(StreamConfig, SampleFormat), DeviceError> {
    let default = if input {
        device.default_input_config()
    } else {
        device.default_output_config()
    }
    .map_err(|e| DeviceError::Unavailable(e.to_string()))?;
    let ranges: Vec<cpal::SupportedStreamConfigRange> = if input {
        device
            .supported_input_configs()
            .map(|r| r.collect())
            .unwrap_or_default()
    } else {
        device
            .supported_output_configs()
            .map(|r| r.collect())
            .unwrap_or_default()
    };
    let usable = |f: SampleFormat| matches!(f, SampleFormat::F32 | SampleFormat::I16);
    let want = cpal::SampleRate(SAMPLE_RATE);
    let mut best: Option<cpal::SupportedStreamConfig> = None;
    for r in ranges {
        if !usable(r.sample_format()) || r.min_sample_rate() > want || r.max_sample_rate() < want {
            continue;
        }
        let better = match &best {
            None => true,
            Some(b) => {
                let channels_better = if input {
                    r.channels() < b.channels()
                } else {
                    r.channels() == default.channels() && b.channels() != default.channels()
                };
                channels_better
                    || (r.channels() == b.channels()
                        && r.sample_format() == SampleFormat::F32
                        && b.sample_format() != SampleFormat::F32)
            }
        };
        if better {
            best = Some(r.with_sample_rate(want));
        }
    }
    let chosen = match best {
        Some(b) => b,
        None if usable(default.sample_format()) => default,
        None => {
            return Err(DeviceError::Format(format!(
                "{:?} samples are not supported",
                default.sample_format()
            )))
        }
    };
    let mut config = chosen.config();
    let period = chosen.sample_rate().0 * PERIOD_MS / 1000;
    if let cpal::SupportedBufferSize::Range { min, max } = chosen.buffer_size() {
        if (*min..=*max).contains(&period) {
            config.buffer_size = cpal::BufferSize::Fixed(period);
        }
    }
    Ok((config, chosen.sample_format()))
}

/// What a stream reports to its runner.
pub(crate) type FailFn = Arc<dyn Fn(DeviceError) + Send + Sync>;

/// An open cpal stream and what it negotiated.
pub(crate) struct OpenStream {
    /// Playing while held; dropping it stops and closes the device.
    pub _stream: cpal::Stream,
    pub description: String,
}

fn build_error(e: impl std::fmt::Display) -> DeviceError {
    DeviceError::Unavailable(e.to_string())
}

fn on_stream_error(fail: FailFn) -> impl FnMut(cpal::StreamError) + Send + 'static {
    move |e| match e {
        cpal::StreamError::DeviceNotAvailable => fail(DeviceError::Unavailable(
            "the device was disconnected".into(),
        )),
        // xruns and other transient backend errors: logged; a stream that really
        // stopped is caught by the runner's heartbeat watchdog.
        other => tracing::debug!(error = %other, "audio stream error"),
    }
}

/// Opens an output stream that plays `mixer`.
pub(crate) fn open_output(
    dev: &CpalDevice,
    mixer: Arc<Mixer>,
    fail: FailFn,
    heartbeat: Arc<AtomicU64>,
) -> Result<OpenStream, DeviceError> {
    open_stream(dev, false, |device, config, format| match format {
        SampleFormat::F32 => build_output::<f32>(device, config, &mixer, &fail, &heartbeat),
        _ => build_output::<i16>(device, config, &mixer, &fail, &heartbeat),
    })
}

/// Finds the device, picks its configuration and starts a stream built by `build`; when the
/// device refuses our fixed buffer size, tries again with its default one.
fn open_stream(
    dev: &CpalDevice,
    input: bool,
    build: impl Fn(&cpal::Device, &StreamConfig, SampleFormat) -> Result<cpal::Stream, DeviceError>,
) -> Result<OpenStream, DeviceError> {
    let device = find(dev, input)?;
    let (config, format) = pick_config(&device, input)?;
    let stream = match build(&device, &config, format) {
        Ok(s) => s,
        Err(_) if config.buffer_size != cpal::BufferSize::Default => {
            let mut relaxed = config.clone();
            relaxed.buffer_size = cpal::BufferSize::Default;
            build(&device, &relaxed, format)?
        }
        Err(e) => return Err(e),
    };
    stream.play().map_err(build_error)?;
    Ok(OpenStream {
        _stream: stream,
        description: format!(
            "{} {} Hz x{} {:?}",
            dev.name, config.sample_rate.0, config.channels, format
        ),
    })
}

fn build_output<T: SizedSample + FromSample<f32>>(
    device: &cpal::Device,
    config: &StreamConfig,
    mixer: &Arc<Mixer>,
    fail: &FailFn,
    heartbeat: &Arc<AtomicU64>,
) -> Result<cpal::Stream, DeviceError> {
    let channels = usize::from(config.channels.max(1));
    let rate = config.sample_rate.0;
    let mixer = Arc::clone(mixer);
    let heartbeat = Arc::clone(heartbeat);
    let mut resampler = (rate != SAMPLE_RATE).then(|| Resampler::new(SAMPLE_RATE, rate));
    let mut mono: Vec<f32> = Vec::with_capacity(4_096);
    let mut chunk = vec![0f32; 480];
    let mut converted: Vec<f32> = Vec::with_capacity(4_096);
    let mut pending: VecDeque<f32> = VecDeque::with_capacity(8_192);
    let mut last_frames = 0usize;
    device
        .build_output_stream::<T, _, _>(
            config,
            move |data: &mut [T], info: &cpal::OutputCallbackInfo| {
                heartbeat.store(now_ms(), Ordering::Relaxed);
                let frames = data.len() / channels;
                let ts = info.timestamp();
                if let Some(latency) = ts.playback.duration_since(&ts.callback) {
                    mixer.set_output_latency(latency);
                }
                if frames != last_frames {
                    last_frames = frames;
                    mixer.set_device_period(frames * SAMPLE_RATE as usize / rate as usize);
                }
                mono.clear();
                match resampler.as_mut() {
                    None => {
                        mono.resize(frames, 0.0);
                        mixer.mix(&mut mono);
                    }
                    Some(r) => {
                        while pending.len() < frames {
                            mixer.mix(&mut chunk);
                            converted.clear();
                            r.process(&chunk, &mut converted);
                            pending.extend(converted.iter().copied());
                        }
                        mono.extend(pending.drain(..frames));
                    }
                }
                for (frame, &s) in data.chunks_mut(channels).zip(&mono) {
                    let v = T::from_sample(s);
                    for slot in frame {
                        *slot = v;
                    }
                }
            },
            on_stream_error(Arc::clone(fail)),
            None,
        )
        .map_err(build_error)
}

/// Opens an input stream that feeds `hub`.
pub(crate) fn open_input(
    dev: &CpalDevice,
    hub: Arc<CaptureHub>,
    fail: FailFn,
    heartbeat: Arc<AtomicU64>,
) -> Result<OpenStream, DeviceError> {
    open_stream(dev, true, |device, config, format| match format {
        SampleFormat::F32 => build_input::<f32>(device, config, &hub, &fail, &heartbeat),
        _ => build_input::<i16>(device, config, &hub, &fail, &heartbeat),
    })
}

fn build_input<T: SizedSample>(
    device: &cpal::Device,
    config: &StreamConfig,
    hub: &Arc<CaptureHub>,
    fail: &FailFn,
    heartbeat: &Arc<AtomicU64>,
) -> Result<cpal::Stream, DeviceError>
where
    f32: FromSample<T>,
{
    let channels = usize::from(config.channels.max(1));
    let rate = config.sample_rate.0;
    let hub = Arc::clone(hub);
    let heartbeat = Arc::clone(heartbeat);
    let mut resampler = (rate != SAMPLE_RATE).then(|| Resampler::new(rate, SAMPLE_RATE));
    let mut mono: Vec<f32> = Vec::with_capacity(4_096);
    let mut converted: Vec<f32> = Vec::with_capacity(4_096);
    let mut last_frames = 0usize;
    device
        .build_input_stream::<T, _, _>(
            config,
            move |data: &[T], info: &cpal::InputCallbackInfo| {
                heartbeat.store(now_ms(), Ordering::Relaxed);
                let frames = data.len() / channels;
                let ts = info.timestamp();
                let latency = ts.callback.duration_since(&ts.capture);
                if frames != last_frames {
                    last_frames = frames;
                    hub.set_device_period(frames * SAMPLE_RATE as usize / rate as usize);
                }
                mono.clear();
                let scale = 1.0 / channels as f32;
                mono.extend(
                    data.chunks(channels).map(|frame| {
                        frame.iter().map(|&s| s.to_sample::<f32>()).sum::<f32>() * scale
                    }),
                );
                match resampler.as_mut() {
                    None => hub.push_captured(&mono, latency),
                    Some(r) => {
                        converted.clear();
                        r.process(&mono, &mut converted);
                        hub.push_captured(&converted, latency);
                    }
                }
            },
            on_stream_error(Arc::clone(fail)),
            None,
        )
        .map_err(build_error)
}
