//! Device specifications: virtual devices named by strings.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use super::{
    AudioSink, AudioSource, DeviceError, NullSink, SilenceSource, SpeechSource, ToneSource,
    WavFileSink, WavFileSource, SAMPLE_RATE,
};

/// A virtual audio device, written as a string:
///
/// | spec | source | sink |
/// |---|---|---|
/// | `tone:440` | a 440 Hz sine ([`ToneSource`]) | — |
/// | `speech:7` | speech-like audio, voice number 7 ([`SpeechSource`]) | — |
/// | `wav:path/to/file.wav` | plays the file, looping ([`WavFileSource`]) | records to the file ([`WavFileSink`]) |
/// | `silence` | digital silence ([`SilenceSource`]) | — |
/// | `null` | — | discards everything ([`NullSink`]) |
///
/// The scheme is case-insensitive; [`Display`](fmt::Display) writes the canonical
/// form back, so `spec.to_string().parse()` gives the same spec.
#[derive(Debug, Clone, PartialEq)]
pub enum DeviceSpec {
    /// A sine tone at this frequency in Hz (greater than 0, below 24 kHz).
    Tone(f64),
    /// Speech-like audio; the number picks the voice.
    Speech(u32),
    /// A WAV file: read (looping) as a source, written as a sink.
    Wav(PathBuf),
    /// Digital silence (source only).
    Silence,
    /// Discards audio (sink only).
    Null,
}

impl DeviceSpec {
    /// Whether this spec can be opened as a source (microphone side).
    pub fn can_source(&self) -> bool {
        !matches!(self, DeviceSpec::Null)
    }

    /// Whether this spec can be opened as a sink (speaker side).
    pub fn can_sink(&self) -> bool {
        matches!(self, DeviceSpec::Wav(_) | DeviceSpec::Null)
    }

    /// Opens the device as a source.
    ///
    /// Fails with [`DeviceError::Spec`] for sink-only specs and with
    /// [`DeviceError::Unavailable`] or [`DeviceError::Format`] for a WAV file that
    /// is missing or unreadable.
    pub fn open_source(&self) -> Result<Box<dyn AudioSource>, DeviceError> {
        match self {
            DeviceSpec::Tone(freq) => Ok(Box::new(ToneSource::new(*freq))),
            DeviceSpec::Speech(seed) => Ok(Box::new(SpeechSource::new(*seed))),
            DeviceSpec::Wav(path) => Ok(Box::new(WavFileSource::open(path)?)),
            DeviceSpec::Silence => Ok(Box::new(SilenceSource::new())),
            DeviceSpec::Null => Err(self.role_error("`null` is a sink; use `silence` as a source")),
        }
    }

    /// Opens the device as a sink.
    ///
    /// Fails with [`DeviceError::Spec`] for source-only specs and with
    /// [`DeviceError::Unavailable`] when a WAV file cannot be created.
    pub fn open_sink(&self) -> Result<Box<dyn AudioSink>, DeviceError> {
        match self {
            DeviceSpec::Wav(path) => Ok(Box::new(WavFileSink::create(path)?)),
            DeviceSpec::Null => Ok(Box::new(NullSink::new())),
            DeviceSpec::Tone(_) | DeviceSpec::Speech(_) | DeviceSpec::Silence => {
                Err(self.role_error("this is a source; use `null` or `wav:<path>` as a sink"))
            }
        }
    }

    fn role_error(&self, reason: &str) -> DeviceError {
        DeviceError::Spec {
            spec: self.to_string(),
            reason: reason.to_owned(),
        }
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceSpec::Tone(freq) => write!(f, "tone:{freq}"),
            DeviceSpec::Speech(seed) => write!(f, "speech:{seed}"),
            DeviceSpec::Wav(path) => write!(f, "wav:{}", path.display()),
            DeviceSpec::Silence => f.write_str("silence"),
            DeviceSpec::Null => f.write_str("null"),
        }
    }
}

impl FromStr for DeviceSpec {
    type Err = DeviceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let spec = s.trim();
        let err = |reason: String| DeviceError::Spec {
            spec: spec.to_owned(),
            reason,
        };
        let (scheme, arg) = match spec.split_once(':') {
            Some((scheme, arg)) => (scheme.to_ascii_lowercase(), Some(arg)),
            None => (spec.to_ascii_lowercase(), None),
        };
        match (scheme.as_str(), arg) {
            ("silence", None) => Ok(DeviceSpec::Silence),
            ("null", None) => Ok(DeviceSpec::Null),
            ("tone", Some(arg)) => {
                let freq: f64 = arg
                    .trim()
                    .parse()
                    .map_err(|_| err(format!("{arg:?} is not a frequency in Hz")))?;
                let nyquist = f64::from(SAMPLE_RATE) / 2.0;
                if !freq.is_finite() || freq <= 0.0 || freq >= nyquist {
                    return Err(err(format!(
                        "the frequency must be above 0 and below {nyquist} Hz"
                    )));
                }
                Ok(DeviceSpec::Tone(freq))
            }
            ("tone", None) => Err(err("expected `tone:<frequency in Hz>`".to_owned())),
            ("speech", None) => Ok(DeviceSpec::Speech(1)),
            ("speech", Some(arg)) => arg
                .trim()
                .parse()
                .map(DeviceSpec::Speech)
                .map_err(|_| err(format!("{arg:?} is not a voice number"))),
            ("wav", Some(path)) if !path.trim().is_empty() => {
                Ok(DeviceSpec::Wav(PathBuf::from(path.trim())))
            }
            ("wav", _) => Err(err("expected `wav:<path to a .wav file>`".to_owned())),
            ("silence" | "null", Some(_)) => Err(err(format!("`{scheme}` takes no argument"))),
            _ => Err(err(
                "unknown device; expected `tone:<Hz>`, `speech[:<voice>]`, `wav:<path>`, \
                 `silence` or `null`"
                    .to_owned(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_displays_every_kind() {
        for (text, spec) in [
            ("tone:440", DeviceSpec::Tone(440.0)),
            ("tone:697.5", DeviceSpec::Tone(697.5)),
            ("speech:7", DeviceSpec::Speech(7)),
            (
                "wav:/tmp/a b.wav",
                DeviceSpec::Wav(PathBuf::from("/tmp/a b.wav")),
            ),
            ("silence", DeviceSpec::Silence),
            ("null", DeviceSpec::Null),
        ] {
            let parsed: DeviceSpec = text.parse().expect(text);
            assert_eq!(parsed, spec, "{text}");
            assert_eq!(parsed.to_string(), text, "Display must round-trip");
        }
        assert_eq!(
            "  TONE:880 ".parse::<DeviceSpec>(),
            Ok(DeviceSpec::Tone(880.0))
        );
    }

    #[test]
    fn rejects_bad_specs_with_clear_errors() {
        for bad in [
            "tone:abc",
            "tone:",
            "tone",
            "tone:-5",
            "tone:30000",
            "tone:NaN",
            "wav:",
            "wav",
            "mic",
            "",
            "null:1",
        ] {
            let err = bad.parse::<DeviceSpec>().unwrap_err();
            assert_eq!(err.code(), "device.spec", "{bad:?} must be a spec error");
            assert!(!err.to_string().is_empty());
        }
    }

    #[test]
    fn roles_are_enforced() {
        assert!(DeviceSpec::Null.open_source().is_err());
        assert!(DeviceSpec::Tone(440.0).open_sink().is_err());
        assert!(DeviceSpec::Silence.open_sink().is_err());
        assert!(DeviceSpec::Tone(440.0).open_source().is_ok());
        assert!(DeviceSpec::Null.open_sink().is_ok());
        let missing = DeviceSpec::Wav(PathBuf::from("/nonexistent/hookflash.wav"));
        let err = missing
            .open_source()
            .err()
            .expect("a missing file cannot be a source");
        assert_eq!(err.code(), "device.unavailable");
    }
}
