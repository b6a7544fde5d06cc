//! The operations behind the HTTP API and the handle's library methods: rules, messages,
//! greetings. They block (SQLite, files): the HTTP API runs them on the blocking pool.
//! Every change to a mailbox tells the engine, which NOTIFYs the owner's subscribers.

use std::io::Cursor;
use std::path::PathBuf;

use tokio::sync::mpsc;
use tracing::warn;

use crate::mailbox::{greeting_path, is_message_id, VoicemailMessage};
use crate::rules::Rules;
use crate::server::Command;
use crate::users::UserStore;
use crate::voicemail::MAX_GREETING_SECS;
use crate::SwitchboardError;

/// Shared by the handle and the HTTP API.
pub(crate) struct Services {
    pub users: UserStore,
    pub data_dir: PathBuf,
    pub default_greeting: PathBuf,
    pub commands: mpsc::UnboundedSender<Command>,
}

/// A file error without the path (paths hold user names, which must not reach the logs).
fn io_err(what: &str, e: std::io::Error) -> SwitchboardError {
    SwitchboardError::Io(format!("{what}: {}", e.kind()))
}

impl Services {
    fn changed(&self, owner: &str) {
        let _ = self
            .commands
            .send(Command::MailboxChanged(owner.to_owned()));
    }

    pub fn rules(&self, user: &str) -> Result<Rules, SwitchboardError> {
        self.users.rules().get(user)
    }

    pub fn set_rules(&self, user: &str, rules: &Rules) -> Result<(), SwitchboardError> {
        self.users.rules().set(user, rules)
    }

    pub fn messages(&self, user: &str) -> Result<Vec<VoicemailMessage>, SwitchboardError> {
        self.users.voicemail().list(user)
    }

    pub fn message(
        &self,
        user: &str,
        id: &str,
    ) -> Result<Option<VoicemailMessage>, SwitchboardError> {
        if !is_message_id(id) {
            return Ok(None);
        }
        self.users.voicemail().get(user, id)
    }

    /// Mark heard; the message as it is now (`None`: the user has no such message).
    pub fn mark_heard(
        &self,
        user: &str,
        id: &str,
    ) -> Result<Option<VoicemailMessage>, SwitchboardError> {
        if !is_message_id(id) || !self.users.voicemail().mark_heard(user, id)? {
            return Ok(None);
        }
        self.changed(user);
        self.users.voicemail().get(user, id)
    }

    /// Delete a message and its file; whether the user had it.
    pub fn delete_message(&self, user: &str, id: &str) -> Result<bool, SwitchboardError> {
        if !is_message_id(id) {
            return Ok(false);
        }
        let Some(m) = self.users.voicemail().remove(user, id)? else {
            return Ok(false);
        };
        if let Err(e) = std::fs::remove_file(&m.path) {
            if e.kind() != std::io::ErrorKind::NotFound {
                warn!(error = %e.kind(), "voicemail file could not be removed");
            }
        }
        self.changed(user);
        Ok(true)
    }

    /// The greeting callers of `user` hear: their own, else the default.
    pub fn greeting_file(&self, user: &str) -> PathBuf {
        let own = greeting_path(&self.data_dir, user);
        if own.is_file() {
            own
        } else {
            self.default_greeting.clone()
        }
    }

    /// Store `wav` as the greeting of `user` after checking it is a WAV file of at most
    /// [`MAX_GREETING_SECS`] seconds, 8..=48 kHz, 1 or 2 channels.
    pub fn set_greeting(&self, user: &str, wav: &[u8]) -> Result<(), SwitchboardError> {
        let bad = |why: String| SwitchboardError::InvalidGreeting(why);
        let reader = hound::WavReader::new(Cursor::new(wav))
            .map_err(|e| bad(format!("not a WAV file: {e}")))?;
        let spec = reader.spec();
        if !(1..=2).contains(&spec.channels) {
            return Err(bad("1 or 2 channels please".into()));
        }
        if !(8_000..=48_000).contains(&spec.sample_rate) {
            return Err(bad("the sample rate must be 8 to 48 kHz".into()));
        }
        if spec.bits_per_sample == 0 || spec.bits_per_sample > 32 {
            return Err(bad("unsupported sample size".into()));
        }
        let frames = u64::from(reader.duration());
        if frames == 0 {
            return Err(bad("the file holds no audio".into()));
        }
        if frames > u64::from(MAX_GREETING_SECS) * u64::from(spec.sample_rate) {
            return Err(bad(format!("at most {MAX_GREETING_SECS} s")));
        }
        let path = greeting_path(&self.data_dir, user);
        let dir = path.parent().unwrap_or(&self.data_dir).to_path_buf();
        std::fs::create_dir_all(&dir).map_err(|e| io_err("greetings directory", e))?;
        let tmp = path.with_extension("wav.tmp");
        std::fs::write(&tmp, wav).map_err(|e| io_err("greeting file", e))?;
        std::fs::rename(&tmp, &path).map_err(|e| io_err("greeting file", e))?;
        Ok(())
    }

    /// Go back to the default greeting; whether the user had one of their own.
    pub fn clear_greeting(&self, user: &str) -> Result<bool, SwitchboardError> {
        let path = greeting_path(&self.data_dir, user);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_err("greeting file", e)),
        }
    }
}
