//! The voicemail index (SQLite) and where messages and greetings live on disk.
//!
//! Table `voicemail(id, owner, caller, created, duration_ms, heard, path)`: one row per
//! recorded message. The recording itself is `DATA_DIR/voicemail/OWNER/ID.wav` (48 kHz mono,
//! 16-bit), where `OWNER` is [`mailbox_dir_name`] of the user name (user names may hold
//! characters such as `/` that must not reach a path). A user's own greeting is
//! `DATA_DIR/greetings/OWNER.wav`.

use std::fmt;
use std::path::{Path, PathBuf};

use rand::Rng;
use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

use hookflash_core::auth::fold_user;

use crate::users::{db_err, directory_mut, directory_stale, lock, Db};
use crate::SwitchboardError;

/// One voicemail message as indexed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VoicemailMessage {
    /// Its id: 16 lower-case hex digits, unguessable.
    pub id: String,
    /// The mailbox owner (a user name).
    #[serde(skip)]
    pub owner: String,
    /// Who left it: the caller's address (`sip:alice@hookflash.local`).
    pub caller: String,
    /// When it was left, unix seconds.
    pub created: u64,
    /// How long the recording is, in milliseconds.
    pub duration_ms: u64,
    /// Whether the owner has marked it heard.
    pub heard: bool,
    /// The WAV file.
    #[serde(skip)]
    pub path: PathBuf,
}

/// How many messages a mailbox holds (RFC 3842 `Voice-Message: NEW/OLD`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MailboxCounts {
    /// Not yet heard.
    pub new: u32,
    /// Heard, not deleted.
    pub old: u32,
}

impl MailboxCounts {
    /// The counts of SQL sums (clamped to what a NOTIFY can say).
    pub(crate) fn from_sums(new: i64, old: i64) -> MailboxCounts {
        MailboxCounts {
            new: new.clamp(0, i64::from(u32::MAX)) as u32,
            old: old.clamp(0, i64::from(u32::MAX)) as u32,
        }
    }
}

/// Create the `voicemail` table.
pub(crate) fn migrate(conn: &Connection) -> Result<(), SwitchboardError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS voicemail (
             id          TEXT PRIMARY KEY NOT NULL,
             owner       TEXT NOT NULL,
             caller      TEXT NOT NULL,
             created     INTEGER NOT NULL,
             duration_ms INTEGER NOT NULL,
             heard       INTEGER NOT NULL DEFAULT 0,
             path        TEXT NOT NULL
         );
         CREATE INDEX IF NOT EXISTS voicemail_owner ON voicemail (owner, created);",
    )
    .map_err(db_err)
}

/// A new message id: 64 random bits in hex.
pub fn new_message_id() -> String {
    format!("{:016x}", rand::thread_rng().gen::<u64>())
}

/// Whether `id` has the form of a message id (so it can be part of a file name).
pub fn is_message_id(id: &str) -> bool {
    id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A file-system-safe directory (or file stem) name for a user: letters, digits, `-`, `_`
/// and `+` are kept; every other byte becomes `%XX` (so `..` and `/` never reach a path).
pub fn mailbox_dir_name(owner: &str) -> String {
    // Folded, so that no two users' files can collide on a case-insensitive file system.
    let owner = &fold_user(owner);
    let mut out = String::with_capacity(owner.len());
    for b in owner.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'+') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The owner a mailbox directory name stands for (the reverse of [`mailbox_dir_name`]).
pub fn owner_of_dir_name(name: &str) -> Option<String> {
    let bytes = name.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = name.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// `DATA_DIR/voicemail/OWNER`.
pub fn mailbox_dir(data_dir: &Path, owner: &str) -> PathBuf {
    data_dir.join("voicemail").join(mailbox_dir_name(owner))
}

/// `DATA_DIR/greetings/OWNER.wav`: the user's own greeting, when they set one.
pub fn greeting_path(data_dir: &Path, owner: &str) -> PathBuf {
    data_dir
        .join("greetings")
        .join(format!("{}.wav", mailbox_dir_name(owner)))
}

/// The voicemail index in the database; cheap to clone, safe to share.
#[derive(Clone)]
pub struct VoicemailStore {
    db: Db,
}

impl fmt::Debug for VoicemailStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VoicemailStore").finish_non_exhaustive()
    }
}

fn row_to_message(r: &rusqlite::Row<'_>) -> rusqlite::Result<VoicemailMessage> {
    Ok(VoicemailMessage {
        id: r.get(0)?,
        owner: r.get(1)?,
        caller: r.get(2)?,
        created: r.get::<_, i64>(3)?.max(0) as u64,
        duration_ms: r.get::<_, i64>(4)?.max(0) as u64,
        heard: r.get::<_, i64>(5)? != 0,
        path: PathBuf::from(r.get::<_, String>(6)?),
    })
}

/// New and old message counts of `owner`, whatever the case its rows were written in
/// (names were not always folded).
fn counts_on(conn: &rusqlite::Connection, owner: &str) -> Result<MailboxCounts, SwitchboardError> {
    conn.query_row(
        "SELECT COALESCE(SUM(heard = 0), 0), COALESCE(SUM(heard != 0), 0)
         FROM voicemail WHERE owner = ?1 COLLATE NOCASE",
        params![fold_user(owner)],
        |r| Ok(MailboxCounts::from_sums(r.get(0)?, r.get(1)?)),
    )
    .map_err(db_err)
}

const COLUMNS: &str = "id, owner, caller, created, duration_ms, heard, path";

impl VoicemailStore {
    pub(crate) fn new(db: Db) -> VoicemailStore {
        VoicemailStore { db }
    }

    /// Index a new message.
    pub fn insert(&self, m: &VoicemailMessage) -> Result<(), SwitchboardError> {
        let conn = lock(&self.db);
        conn.execute(
            "INSERT INTO voicemail (id, owner, caller, created, duration_ms, heard, path)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                m.id,
                fold_user(&m.owner),
                m.caller,
                m.created as i64,
                m.duration_ms.min(i64::MAX as u64) as i64,
                i64::from(m.heard),
                m.path.to_string_lossy()
            ],
        )
        .map_err(db_err)?;
        self.recount(&conn, &m.owner);
        Ok(())
    }

    /// Bring the directory's counts of `owner` in line with the index, after a change, on
    /// the connection that made it (see [`directory_mut`]).
    fn recount(&self, conn: &std::sync::MutexGuard<'_, rusqlite::Connection>, owner: &str) {
        match counts_on(conn, owner) {
            Ok(counts) => directory_mut(&self.db, conn).set_counts(owner, counts),
            Err(e) => directory_stale(&self.db, "mailbox counts", &e),
        }
    }

    /// The messages of `owner`, newest first.
    pub fn list(&self, owner: &str) -> Result<Vec<VoicemailMessage>, SwitchboardError> {
        let owner = &fold_user(owner);
        let conn = lock(&self.db);
        let mut stmt = conn
            .prepare(&format!(
                "SELECT {COLUMNS} FROM voicemail WHERE owner = ?1 ORDER BY created DESC, rowid DESC"
            ))
            .map_err(db_err)?;
        let rows = stmt
            .query_map(params![owner], row_to_message)
            .map_err(db_err)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(db_err)
    }

    /// One message of `owner` (`None` if there is none with that id, or it is someone else's).
    pub fn get(&self, owner: &str, id: &str) -> Result<Option<VoicemailMessage>, SwitchboardError> {
        let owner = &fold_user(owner);
        lock(&self.db)
            .query_row(
                &format!("SELECT {COLUMNS} FROM voicemail WHERE owner = ?1 AND id = ?2"),
                params![owner, id],
                row_to_message,
            )
            .optional()
            .map_err(db_err)
    }

    /// Mark a message heard; whether `owner` has it.
    pub fn mark_heard(&self, owner: &str, id: &str) -> Result<bool, SwitchboardError> {
        let owner = &fold_user(owner);
        let conn = lock(&self.db);
        let n = conn
            .execute(
                "UPDATE voicemail SET heard = 1 WHERE owner = ?1 AND id = ?2",
                params![owner, id],
            )
            .map_err(db_err)?;
        self.recount(&conn, owner);
        Ok(n > 0)
    }

    /// Remove a message from the index (the caller removes the file); the removed row.
    pub fn remove(
        &self,
        owner: &str,
        id: &str,
    ) -> Result<Option<VoicemailMessage>, SwitchboardError> {
        let owner = &fold_user(owner);
        let Some(m) = self.get(owner, id)? else {
            return Ok(None);
        };
        let conn = lock(&self.db);
        conn.execute(
            "DELETE FROM voicemail WHERE owner = ?1 AND id = ?2",
            params![owner, id],
        )
        .map_err(db_err)?;
        self.recount(&conn, owner);
        Ok(Some(m))
    }

    /// New and old message counts of `owner` (an indexed count, quick).
    pub fn counts(&self, owner: &str) -> Result<MailboxCounts, SwitchboardError> {
        counts_on(&lock(&self.db), owner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::UserStore;

    fn message(owner: &str, created: u64) -> VoicemailMessage {
        VoicemailMessage {
            id: new_message_id(),
            owner: owner.into(),
            caller: "sip:alice@hookflash.local".into(),
            created,
            duration_ms: 1500,
            heard: false,
            path: PathBuf::from("/tmp/x.wav"),
        }
    }

    #[test]
    fn messages_are_indexed_counted_heard_and_removed() {
        let vm = UserStore::in_memory().unwrap().voicemail();
        let (a, b) = (message("carol", 10), message("carol", 20));
        vm.insert(&a).unwrap();
        vm.insert(&b).unwrap();
        vm.insert(&message("dave", 5)).unwrap();
        let list = vm.list("carol").unwrap();
        assert_eq!(
            list.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(),
            [b.id.as_str(), a.id.as_str()],
            "only carol's, newest first"
        );
        assert_eq!(
            vm.counts("carol").unwrap(),
            MailboxCounts { new: 2, old: 0 },
            "two new"
        );
        assert!(vm.mark_heard("carol", &a.id).unwrap(), "carol has it");
        assert!(
            !vm.mark_heard("dave", &a.id).unwrap(),
            "dave cannot touch carol's message"
        );
        assert_eq!(
            vm.counts("carol").unwrap(),
            MailboxCounts { new: 1, old: 1 },
            "one heard"
        );
        assert!(vm.get("dave", &b.id).unwrap().is_none(), "not dave's");
        assert_eq!(
            vm.remove("carol", &b.id).unwrap().map(|m| m.id),
            Some(b.id.clone()),
            "removed"
        );
        assert_eq!(
            vm.counts("carol").unwrap(),
            MailboxCounts { new: 0, old: 1 },
            "gone from the counts"
        );
        assert_eq!(
            vm.counts("nobody").unwrap(),
            MailboxCounts::default(),
            "an empty mailbox counts 0/0"
        );
        let json = serde_json::to_value(&a).unwrap();
        assert_eq!(
            json.as_object().unwrap().keys().collect::<Vec<_>>(),
            ["caller", "created", "durationMs", "heard", "id"],
            "the API form has no owner or path"
        );
    }

    #[test]
    fn user_names_never_escape_the_mailbox_directory() {
        assert_eq!(mailbox_dir_name("alice"), "alice");
        assert_eq!(mailbox_dir_name(".."), "%2E%2E", "no parent directory");
        assert_eq!(mailbox_dir_name("a/b"), "a%2Fb", "no subdirectory");
        assert_eq!(mailbox_dir_name("+1555"), "+1555", "numbers as they are");
        assert!(
            is_message_id(&new_message_id()),
            "ids have the checked form"
        );
        assert!(
            !is_message_id("../../etc/passwd"),
            "anything else is refused"
        );
    }
}
