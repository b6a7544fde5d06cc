//! Custom ringtones: an audio file (WAV, FLAC, MP3 or Ogg Vorbis) that rings
//! incoming calls instead of the built-in warble.
//!
//! rodio decodes the file and converts it to mono 48 kHz once, when it is
//! chosen (so a bad file is refused at once, with a clear error, and nothing is
//! decoded on the sound card's real-time thread); the engine then plays it on
//! the ringer like any other tone, looped with a pause, following the ringer
//! device across switches and fallbacks. rodio's own playback (a second cpal
//! stream) is not used; see [`super::tones`].

use std::num::NonZero;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rodio::source::UniformSourceIterator;
use rodio::Decoder;

use super::mixer::Generator;
use super::{DeviceError, SAMPLE_RATE};

/// The longest ringtone kept: a ring is short; a whole song is cut here.
const MAX_SECONDS: usize = 30;

/// The pause between two rings of the file, in samples (1 s).
const PAUSE: usize = SAMPLE_RATE as usize;

/// The level the file plays at (its own level, scaled, -6 dB): rings should not
/// be louder than the built-in ringtone.
const GAIN: f32 = 0.5;

/// A decoded ringtone file.
#[derive(Debug, Clone)]
pub struct RingtoneFile {
    path: PathBuf,
    samples: Arc<[f32]>,
}

impl RingtoneFile {
    /// Decodes `path` to mono 48 kHz. Fails with [`DeviceError::Unavailable`] when
    /// the file cannot be opened and [`DeviceError::Format`] when it is not audio
    /// rodio can decode, or holds no sound.
    pub fn load(path: &Path) -> Result<RingtoneFile, DeviceError> {
        Ok(RingtoneFile {
            path: path.to_owned(),
            samples: decode(path, MAX_SECONDS, GAIN)?,
        })
    }

    /// The file it was decoded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Its length.
    pub fn duration(&self) -> std::time::Duration {
        std::time::Duration::from_secs_f64(self.samples.len() as f64 / f64::from(SAMPLE_RATE))
    }

    /// A generator that rings with this file until removed: the file, a pause, again.
    pub(crate) fn generator(&self) -> Box<dyn Generator> {
        Box::new(FileRing {
            samples: Arc::clone(&self.samples),
            pos: 0,
        })
    }
}

/// Decodes an audio file to mono 48 kHz, at most `max_seconds` of it, scaled by `gain`.
/// Fails with [`DeviceError::Unavailable`] when the file cannot be opened and
/// [`DeviceError::Format`] when it is not audio rodio can decode, or holds no sound.
fn decode(path: &Path, max_seconds: usize, gain: f32) -> Result<Arc<[f32]>, DeviceError> {
    let file = std::fs::File::open(path)
        .map_err(|e| DeviceError::Unavailable(format!("{}: {e}", path.display())))?;
    let decoder = Decoder::try_from(file)
        .map_err(|e| DeviceError::Format(format!("{}: {e}", path.display())))?;
    let (mono, rate) = (NonZero::<u16>::MIN, NonZero::new(SAMPLE_RATE));
    let Some(rate) = rate else {
        return Err(DeviceError::Format("the engine rate is zero".into()));
    };
    let samples: Vec<f32> = UniformSourceIterator::new(decoder, mono, rate)
        .take(max_seconds * SAMPLE_RATE as usize)
        .map(|s| s * gain)
        .collect();
    if samples.iter().all(|s| s.abs() < 1e-4) {
        return Err(DeviceError::Format(format!(
            "{}: no sound in the file",
            path.display()
        )));
    }
    Ok(samples.into())
}

/// The longest recording played back (a voicemail message, a greeting).
const MAX_PLAYBACK_SECONDS: usize = 600;

/// A generator that plays an audio file once, at its own level, then finishes
/// (voicemail messages and greetings, on the speaker).
pub(crate) fn playback(path: &Path) -> Result<Box<dyn Generator>, DeviceError> {
    Ok(Box::new(FilePlayback {
        samples: decode(path, MAX_PLAYBACK_SECONDS, 1.0)?,
        pos: 0,
    }))
}

struct FilePlayback {
    samples: Arc<[f32]>,
    pos: usize,
}

impl Generator for FilePlayback {
    fn add_to(&mut self, out: &mut [f32]) -> bool {
        let rest = &self.samples[self.pos.min(self.samples.len())..];
        for (o, s) in out.iter_mut().zip(rest) {
            *o += s;
        }
        self.pos += out.len();
        self.pos < self.samples.len()
    }
}

struct FileRing {
    samples: Arc<[f32]>,
    /// Position in the cycle: the file, then the pause.
    pos: usize,
}

impl Generator for FileRing {
    fn add_to(&mut self, out: &mut [f32]) -> bool {
        let cycle = self.samples.len() + PAUSE;
        for o in out.iter_mut() {
            if let Some(s) = self.samples.get(self.pos) {
                *o += s;
            }
            self.pos = (self.pos + 1) % cycle;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::dominant_tone;

    fn write_wav(path: &Path, rate: u32, channels: u16, freq: f32, seconds: f32) {
        let spec = hound::WavSpec {
            channels,
            sample_rate: rate,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(path, spec).expect("create wav");
        for i in 0..(seconds * rate as f32) as usize {
            let v = (std::f32::consts::TAU * freq * i as f32 / rate as f32).sin() * 12_000.0;
            for _ in 0..channels {
                w.write_sample(v as i16).expect("write");
            }
        }
        w.finalize().expect("finalize");
    }

    #[test]
    fn a_stereo_44k1_file_rings_as_mono_48k_with_a_pause_between_rings() {
        let dir = std::env::temp_dir().join(format!("hookflash-ring-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ring.wav");
        write_wav(&path, 44_100, 2, 660.0, 0.5);
        let ring = RingtoneFile::load(&path).expect("a WAV file decodes");
        let secs = ring.duration().as_secs_f64();
        assert!(
            (secs - 0.5).abs() < 0.02,
            "converted to 48 kHz, the length is kept: {secs} s"
        );
        let mut g = ring.generator();
        let mut out = vec![0f32; 3 * SAMPLE_RATE as usize];
        g.add_to(&mut out);
        let pcm: Vec<i16> = out.iter().map(|s| (s * 32_767.0) as i16).collect();
        assert_eq!(
            dominant_tone(&pcm[4_800..19_200], &[440.0, 660.0, 880.0], SAMPLE_RATE),
            Some(660.0),
            "the file's own sound rings"
        );
        let pause = &out[26_000..70_000];
        assert!(
            pause.iter().all(|s| *s == 0.0),
            "a one-second pause follows each ring"
        );
        let again = &pcm[72_000 + 4_800..72_000 + 19_200];
        assert_eq!(
            dominant_tone(again, &[440.0, 660.0, 880.0], SAMPLE_RATE),
            Some(660.0),
            "and then it rings again"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_file_that_is_not_audio_is_refused_with_a_format_error() {
        let dir = std::env::temp_dir().join(format!("hookflash-badring-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notes.wav");
        std::fs::write(&path, b"this is a text file, not a ringtone").unwrap();
        let err = RingtoneFile::load(&path).expect_err("text is not audio");
        assert_eq!(err.code(), "device.format", "a clear, stable code: {err}");
        let silent = dir.join("silent.wav");
        write_wav(&silent, 48_000, 1, 0.0, 0.5);
        let err = RingtoneFile::load(&silent).expect_err("silence does not ring");
        assert_eq!(err.code(), "device.format", "{err}");
        let err = RingtoneFile::load(&dir.join("missing.ogg")).expect_err("no file");
        assert_eq!(err.code(), "device.unavailable", "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
