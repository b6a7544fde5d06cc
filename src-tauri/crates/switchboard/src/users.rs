//! The database (SQLite): users, and through [`UserStore::rules`] and
//! [`UserStore::voicemail`] the forwarding rules and the voicemail index, all in one file.
//!
//! The table `users(name, realm, ha1, created)`. Passwords are never stored: `ha1` is
//! `MD5(name:realm:password)` in hex — exactly what SIP digest authentication needs, and
//! nothing that can be replayed against another realm. Because HA1 covers the realm, changing
//! the switchboard's domain invalidates stored passwords (users must be added again); the
//! switchboard refuses a password whose realm differs from its domain.
//!
//! A user without a password can still sign in with a token; being in the database also makes
//! the difference between `480 Temporarily Unavailable` (known, not registered) and
//! `404 Not Found` (unknown) when someone calls them.

use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};

use hookflash_core::auth::{fold_user, ha1, is_valid_user, unix_now};
use rusqlite::{params, Connection, OptionalExtension};

use crate::directory::Directory;
use crate::SwitchboardError;

/// One user, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    /// The user name (the user part of `sip:NAME@DOMAIN`).
    pub name: String,
    /// The realm the password was hashed with.
    pub realm: String,
    /// `MD5(name:realm:password)` in hex; `None` for token-only users.
    pub ha1: Option<String>,
    /// When the user was added, unix seconds.
    pub created: u64,
}

/// One SQLite connection shared by the stores of one database, and the in-memory
/// [`Directory`] the proxy's loop reads instead of it.
pub(crate) struct Shared {
    conn: Mutex<Connection>,
    directory: RwLock<Directory>,
    /// `PRAGMA data_version` when the directory was last loaded: it changes when another
    /// connection (another process) commits to the file.
    data_version: Mutex<i64>,
}

/// The shared database of one switchboard.
pub(crate) type Db = Arc<Shared>;

/// Lock the shared connection (a poisoned lock only means another holder panicked; the
/// connection itself is still usable).
pub(crate) fn lock(db: &Db) -> std::sync::MutexGuard<'_, Connection> {
    db.conn.lock().unwrap_or_else(|e| e.into_inner())
}

/// Change the directory: only while holding the connection (`_conn`, from [`lock`]) that
/// just wrote the change, so that writers and reloads update it in the order they commit
/// (always connection, then directory: the proxy's loop takes only the directory's read lock).
pub(crate) fn directory_mut<'a>(
    db: &'a Db,
    _conn: &std::sync::MutexGuard<'_, Connection>,
) -> std::sync::RwLockWriteGuard<'a, Directory> {
    db.directory.write().unwrap_or_else(|e| e.into_inner())
}

/// After a write that committed but whose effect on the directory could not be read back
/// (the database busy): have the watcher reload everything at its next look, rather than
/// report a failed write or keep a wrong directory.
pub(crate) fn directory_stale(db: &Db, what: &str, e: &SwitchboardError) {
    tracing::warn!(error = %e, what, "directory not updated: reloading it");
    *db.data_version.lock().unwrap_or_else(|e| e.into_inner()) = i64::MIN;
}

/// The user name the switchboard's own voicemail agent signs in as; it cannot be added to
/// the database (it signs in with a token signed by the switchboard's secret only).
pub const VOICEMAIL_USER: &str = "voicemail";

/// The user database; safe to share between threads.
#[derive(Clone)]
pub struct UserStore {
    conn: Db,
}

impl std::fmt::Debug for UserStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserStore").finish_non_exhaustive()
    }
}

pub(crate) fn db_err(e: rusqlite::Error) -> SwitchboardError {
    SwitchboardError::Database(e.to_string())
}

impl UserStore {
    /// Open (creating if needed) the database at `path`.
    pub fn open(path: &Path) -> Result<UserStore, SwitchboardError> {
        let conn = Connection::open(path)
            .map_err(|e| SwitchboardError::Database(format!("{}: {e}", path.display())))?;
        UserStore::init(conn)
    }

    /// An empty database in memory.
    pub fn in_memory() -> Result<UserStore, SwitchboardError> {
        UserStore::init(Connection::open_in_memory().map_err(db_err)?)
    }

    fn init(conn: Connection) -> Result<UserStore, SwitchboardError> {
        conn.execute_batch(
            "PRAGMA busy_timeout = 5000;
             CREATE TABLE IF NOT EXISTS users (
                 name    TEXT PRIMARY KEY NOT NULL,
                 realm   TEXT NOT NULL,
                 ha1     TEXT,
                 created INTEGER NOT NULL
             );",
        )
        .map_err(db_err)?;
        crate::rules::migrate(&conn)?;
        crate::mailbox::migrate(&conn)?;
        // Only when it differs: a write here would tell a running switchboard, for nothing,
        // that the database changed.
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(db_err)?;
        if version != 2 {
            conn.execute_batch("PRAGMA user_version = 2;")
                .map_err(db_err)?;
        }
        let data_version = data_version(&conn)?;
        let directory = Directory::load(&conn)?;
        Ok(UserStore {
            conn: Arc::new(Shared {
                conn: Mutex::new(conn),
                directory: RwLock::new(directory),
                data_version: Mutex::new(data_version),
            }),
        })
    }

    /// What the proxy's loop reads: the users, rules and mailbox counts in memory, current
    /// with every write made through these stores (see [`crate::directory`]). Hold the guard
    /// only for a lookup.
    pub fn directory(&self) -> std::sync::RwLockReadGuard<'_, Directory> {
        self.conn
            .directory
            .read()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Reload the directory if another process changed the database since the last load;
    /// whether it did. Blocking (SQLite): call it off the proxy's loop.
    pub fn refresh_if_changed(&self) -> Result<bool, SwitchboardError> {
        let conn = self.conn();
        let version = data_version(&conn)?;
        let mut seen = self
            .conn
            .data_version
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if *seen == version {
            return Ok(false);
        }
        let fresh = Directory::load(&conn)?;
        // Swapped in before the connection is let go: no write can commit in between and be
        // lost under this older snapshot.
        *directory_mut(&self.conn, &conn) = fresh;
        *seen = version;
        Ok(true)
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        lock(&self.conn)
    }

    /// The forwarding rules kept in the same database.
    pub fn rules(&self) -> crate::rules::RuleStore {
        crate::rules::RuleStore::new(self.conn.clone())
    }

    /// The voicemail index kept in the same database.
    pub fn voicemail(&self) -> crate::mailbox::VoicemailStore {
        crate::mailbox::VoicemailStore::new(self.conn.clone())
    }

    /// Add a user, or replace their password if they exist. `password: None` makes a
    /// token-only user (or removes the password of an existing one). The name
    /// [`VOICEMAIL_USER`] is reserved.
    pub fn add(
        &self,
        name: &str,
        realm: &str,
        password: Option<&str>,
    ) -> Result<(), SwitchboardError> {
        if !is_valid_user(name) {
            return Err(SwitchboardError::InvalidUser(
                "user names are 1-64 characters: letters, digits and -_.!~*'()+&=$,;?/".into(),
            ));
        }
        if name.eq_ignore_ascii_case(VOICEMAIL_USER) {
            return Err(SwitchboardError::InvalidUser(format!(
                "{VOICEMAIL_USER:?} is reserved for the switchboard's voicemail"
            )));
        }
        // Names are one user whatever their case (see `fold_user`): a name that differs from
        // a stored one only by case is that user, not a second one. The digest HA1 keeps the
        // case typed here, which is what a phone configured with this name will hash.
        let conn = self.conn();
        let stored: Option<String> = conn
            .query_row(
                "SELECT name FROM users WHERE name = ?1 COLLATE NOCASE",
                params![name],
                |r| r.get(0),
            )
            .optional()
            .map_err(db_err)?;
        let h = password.map(|p| ha1(name, realm, p));
        conn.execute(
            "INSERT INTO users (name, realm, ha1, created) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(name) DO UPDATE SET realm = excluded.realm, ha1 = excluded.ha1",
            params![
                stored.unwrap_or_else(|| fold_user(name)),
                realm,
                h,
                unix_now() as i64
            ],
        )
        .map_err(db_err)?;
        match get_user(&conn, name) {
            Ok(record) => directory_mut(&self.conn, &conn).set_user(name, record),
            Err(e) => directory_stale(&self.conn, "user", &e),
        }
        Ok(())
    }

    /// Remove a user; whether they existed.
    pub fn remove(&self, name: &str) -> Result<bool, SwitchboardError> {
        let conn = self.conn();
        let n = conn
            .execute(
                "DELETE FROM users WHERE name = ?1 COLLATE NOCASE",
                params![name],
            )
            .map_err(db_err)?;
        directory_mut(&self.conn, &conn).set_user(name, None);
        Ok(n > 0)
    }

    /// One user, if stored.
    pub fn get(&self, name: &str) -> Result<Option<UserRecord>, SwitchboardError> {
        get_user(&self.conn(), name)
    }

    /// Whether a user is stored (a database error counts as no).
    pub fn exists(&self, name: &str) -> bool {
        match self.get(name) {
            Ok(r) => r.is_some(),
            Err(e) => {
                tracing::warn!(error = %e, "user lookup failed");
                false
            }
        }
    }

    /// All users, by name.
    pub fn list(&self) -> Result<Vec<UserRecord>, SwitchboardError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT name, realm, ha1, created FROM users ORDER BY name")
            .map_err(db_err)?;
        let rows = stmt.query_map([], row_to_record).map_err(db_err)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(db_err)
    }
}

fn get_user(conn: &Connection, name: &str) -> Result<Option<UserRecord>, SwitchboardError> {
    conn.query_row(
        "SELECT name, realm, ha1, created FROM users WHERE name = ?1 COLLATE NOCASE",
        params![name],
        row_to_record,
    )
    .optional()
    .map_err(db_err)
}

/// SQLite's count of commits by other connections, as this connection sees it.
fn data_version(conn: &Connection) -> Result<i64, SwitchboardError> {
    conn.query_row("PRAGMA data_version", [], |r| r.get(0))
        .map_err(db_err)
}

pub(crate) fn row_to_record(row: &rusqlite::Row<'_>) -> rusqlite::Result<UserRecord> {
    Ok(UserRecord {
        name: row.get(0)?,
        realm: row.get(1)?,
        ha1: row.get(2)?,
        created: row.get::<_, i64>(3)?.max(0) as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_differ_only_by_case_are_one_user() {
        let db = UserStore::in_memory().unwrap();
        db.add("Carol", "hookflash.local", Some("pw")).unwrap();
        db.add("CAROL", "hookflash.local", Some("new")).unwrap();
        let names: Vec<_> = db.list().unwrap().into_iter().map(|u| u.name).collect();
        assert_eq!(
            names,
            ["carol"],
            "a second spelling of a name updates that user, never makes a second one"
        );
        assert!(db.exists("cArOl"), "lookups ignore case");
        assert_eq!(
            crate::mailbox::mailbox_dir_name("Carol"),
            crate::mailbox::mailbox_dir_name("carol"),
            "one mailbox directory whatever the case, so files cannot clash on a \
             case-insensitive file system"
        );
        assert!(db.remove("CAROL").unwrap(), "removal ignores case too");
        assert!(!db.exists("carol"), "and removes the one user");
    }

    #[test]
    fn users_are_added_listed_updated_and_removed() {
        let db = UserStore::in_memory().unwrap();
        db.add("bob", "hookflash.local", Some("pw")).unwrap();
        db.add("alice", "hookflash.local", None).unwrap();
        let names: Vec<_> = db.list().unwrap().into_iter().map(|u| u.name).collect();
        assert_eq!(names, ["alice", "bob"], "listed by name");
        let bob = db.get("bob").unwrap().expect("bob stored");
        assert_eq!(
            bob.ha1.as_deref(),
            Some(ha1("bob", "hookflash.local", "pw").as_str()),
            "the password is stored as HA1, never in clear"
        );
        assert_eq!(
            db.get("alice").unwrap().unwrap().ha1,
            None,
            "token-only user"
        );
        db.add("bob", "hookflash.local", Some("new")).unwrap();
        assert_eq!(
            db.get("bob").unwrap().unwrap().ha1,
            Some(ha1("bob", "hookflash.local", "new")),
            "adding again replaces the password"
        );
        assert!(db.remove("bob").unwrap(), "bob existed");
        assert!(!db.remove("bob").unwrap(), "bob is gone");
        assert!(!db.exists("bob"), "and unknown now");
        assert!(db.add("a:b", "r", None).is_err(), "':' would break tokens");
        assert!(
            db.add("voicemail", "r", Some("pw")).is_err(),
            "nobody may take over the voicemail account with a password"
        );
    }
}
