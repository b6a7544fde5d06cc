//! Audio devices and analysis: the seam between the media pipeline and sound.
//!
//! Everything here works on **mono, 16-bit, 48 kHz PCM in frames of 20 ms**
//! ([`FRAME_SAMPLES`] samples). The media pipeline pulls one frame every 20 ms
//! from an [`AudioSource`] (the microphone side) and pushes every decoded frame
//! into an [`AudioSink`] (the speaker side).
//!
//! Real sound cards come in through the engine (below) behind the same two
//! small traits. In tests the virtual devices make audio headless and exact:
//!
//! | device | kind | what it does |
//! |---|---|---|
//! | [`ToneSource`] | source | a sine at a given frequency, -12 dBFS, continuous phase |
//! | [`SpeechSource`] | source | speech-like audio (syllables, pauses), for echo and noise tests |
//! | [`WavFileSource`] | source | a WAV file of any rate/channels, converted to 48 kHz mono, looped |
//! | [`SilenceSource`] | source | digital silence |
//! | [`WavFileSink`] | sink | writes a 48 kHz mono 16-bit WAV |
//! | [`NullSink`] | sink | discards everything |
//! | [`CaptureSink`] | sink | appends everything to a shared buffer for analysis |
//!
//! Devices are chosen by a [`DeviceSpec`] string such as `tone:440`, `speech:7`,
//! `wav:/tmp/prompt.wav`, `silence` or `null`.
//!
//! The analysis helpers ([`goertzel_power`], [`tone_present`], [`dominant_tone`],
//! [`rms`]) let a test decide, by frequency, who heard whom.

mod analysis;
mod cpal_backend;
mod devices;
mod devices_manager;
mod drift;
mod engine;
pub mod jitter;
mod mixer;
pub mod processing;
pub mod resampler;
pub mod ringtone;
mod spec;
pub mod tones;

pub use analysis::{dominant_tone, goertzel_power, rms, tone_present, tone_ratio};
pub use devices::{
    CaptureSink, NullSink, SilenceSource, SpeechSource, ToneSource, WavFileSink, WavFileSource,
    TONE_AMPLITUDE,
};
pub use devices_manager::{
    AudioDeviceInfo, DeviceManager, DeviceManagerConfig, DeviceType, VIRTUAL_NULL, VIRTUAL_SILENCE,
    VIRTUAL_TONE,
};
pub use drift::{DriftBuffer, DriftStats};
pub use engine::{DeviceRole, SinkOpener, SourceOpener};
pub use jitter::{JitterBuffer, JitterConfig, JitterStats, Playout, PushOutcome};
pub use mixer::{CaptureHub, CaptureTap, Generator, Mixer, MixerInput};
pub use processing::{EchoReference, ProcessingSettings, VoiceProcessor};
pub use resampler::Resampler;
pub use ringtone::RingtoneFile;
pub use spec::DeviceSpec;
pub use tones::Tone;

/// The sample rate of every frame exchanged with a device, in Hz.
pub const SAMPLE_RATE: u32 = 48_000;

/// The duration of one frame, in milliseconds.
pub const FRAME_MS: u32 = 20;

/// The number of (mono) samples in one frame: 20 ms at 48 kHz.
pub const FRAME_SAMPLES: usize = (SAMPLE_RATE / 1000 * FRAME_MS) as usize;

/// A device that produces audio: a microphone, a tone generator, a file.
///
/// The media pipeline calls [`read_frame`](AudioSource::read_frame) once every
/// 20 ms from an async task, so an implementation must not block for long: a real
/// capture device should hand out what it has buffered (or silence) and return.
pub trait AudioSource: Send {
    /// Fills `out` (normally [`FRAME_SAMPLES`] long) with the next mono 48 kHz samples.
    ///
    /// On error the pipeline sends silence instead and reports the error once as a
    /// media event.
    fn read_frame(&mut self, out: &mut [i16]) -> Result<(), DeviceError>;

    /// A short human-readable description, e.g. `tone:440`, for logs and the UI.
    fn describe(&self) -> String;
}

/// A device that consumes audio: a speaker, a WAV file, a capture buffer.
///
/// The media pipeline calls [`write_frame`](AudioSink::write_frame) for every
/// decoded (or concealed) 20 ms frame, as packets arrive. Nothing is written while
/// nothing is received (for example while a call is held), so a real playback
/// device must fill its own underruns with silence.
pub trait AudioSink: Send {
    /// Consumes one frame of mono 48 kHz samples.
    fn write_frame(&mut self, frame: &[i16]) -> Result<(), DeviceError>;

    /// A short human-readable description, e.g. `wav:/tmp/out.wav`, for logs and the UI.
    fn describe(&self) -> String;
}

/// Errors from audio devices and device specifications.
///
/// Each variant has a stable [`code`](DeviceError::code) that the UI can match on.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeviceError {
    /// The device does not exist or cannot be opened (for example a missing WAV file).
    #[error("audio device unavailable: {0}")]
    Unavailable(String),
    /// Reading from or writing to the device failed.
    #[error("audio device I/O error: {0}")]
    Io(String),
    /// The device's data is not in a format we can handle (for example a corrupt WAV).
    #[error("unsupported audio format: {0}")]
    Format(String),
    /// A device specification string could not be understood or used in that role.
    #[error("invalid audio device spec {spec:?}: {reason}")]
    Spec {
        /// The specification as given.
        spec: String,
        /// Why it was rejected.
        reason: String,
    },
    /// The device was already finished or closed.
    #[error("audio device already closed")]
    Closed,
}

impl DeviceError {
    /// A stable, dotted error code for the UI and logs, e.g. `device.unavailable`.
    pub fn code(&self) -> crate::error::ErrorCode {
        use crate::error::ErrorCode;
        match self {
            DeviceError::Unavailable(_) => ErrorCode::DeviceUnavailable,
            DeviceError::Io(_) => ErrorCode::DeviceIo,
            DeviceError::Format(_) => ErrorCode::DeviceFormat,
            DeviceError::Spec { .. } => ErrorCode::DeviceSpec,
            DeviceError::Closed => ErrorCode::DeviceClosed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_constants_agree() {
        assert_eq!(FRAME_SAMPLES, 960, "20 ms at 48 kHz must be 960 samples");
        assert_eq!(
            FRAME_SAMPLES as u32 * 1000 / SAMPLE_RATE,
            FRAME_MS,
            "frame size and frame duration must describe the same frame"
        );
    }

    #[test]
    fn error_codes_are_stable() {
        assert_eq!(
            DeviceError::Unavailable("x".into()).code(),
            "device.unavailable"
        );
        assert_eq!(DeviceError::Io("x".into()).code(), "device.io");
        assert_eq!(
            DeviceError::Spec {
                spec: "x".into(),
                reason: "y".into()
            }
            .code(),
            "device.spec"
        );
        assert_eq!(DeviceError::Format("x".into()).code(), "device.format");
        assert_eq!(DeviceError::Closed.code(), "device.closed");
    }
}
