//! What the proxy's loop reads of the database, held in memory: users (with their HA1),
//! forwarding rules and mailbox counts.
//!
//! The loop serves every call; a SQLite read there would stall them all behind the file's
//! lock (up to the 5 s busy timeout while another process writes). So the loop reads only
//! this [`Directory`], under a read lock held for one hash lookup. It is kept current two
//! ways:
//!
//! - **writes through the stores** ([`UserStore`](crate::UserStore) and the rule and voicemail
//!   stores it hands out: the HTTP API, the voicemail service, the library) update it in the
//!   same call, after their transaction commits, so a change is in effect when the write
//!   returns;
//! - **writes by another process** to the same file (`hookflash-switchboard users add` or
//!   `rules set` beside a running switchboard) are noticed by SQLite's `PRAGMA data_version`,
//!   which a watcher off the loop polls every [`REFRESH_INTERVAL`]; it reloads the whole
//!   directory on a blocking thread and swaps it in.

use std::collections::HashMap;
use std::time::Duration;

use hookflash_core::auth::fold_user;
use rusqlite::Connection;

use crate::mailbox::MailboxCounts;
use crate::rules::{rules_from_columns, Rules};
use crate::users::{db_err, row_to_record, UserRecord};
use crate::SwitchboardError;

/// How often the watcher asks SQLite whether another process changed the database.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(1);

/// The users, rules and mailbox counts of one database, keyed by folded user name.
#[derive(Debug, Default, Clone)]
pub struct Directory {
    users: HashMap<String, UserRecord>,
    rules: HashMap<String, Rules>,
    counts: HashMap<String, MailboxCounts>,
}

impl Directory {
    /// Everything, read in one go from `conn`.
    pub(crate) fn load(conn: &Connection) -> Result<Directory, SwitchboardError> {
        let mut dir = Directory::default();
        let mut stmt = conn
            .prepare("SELECT name, realm, ha1, created FROM users")
            .map_err(db_err)?;
        for record in stmt.query_map([], row_to_record).map_err(db_err)? {
            let record = record.map_err(db_err)?;
            dir.users.insert(fold_user(&record.name), record);
        }
        let mut stmt = conn
            .prepare("SELECT user, always_to, busy_to, no_answer_to, no_answer_after FROM rules")
            .map_err(db_err)?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    rules_from_columns(r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?),
                ))
            })
            .map_err(db_err)?;
        for row in rows {
            let (user, rules) = row.map_err(db_err)?;
            if !rules.is_empty() {
                dir.rules.insert(fold_user(&user), rules);
            }
        }
        let mut stmt = conn
            .prepare(
                "SELECT lower(owner), COALESCE(SUM(heard = 0), 0), COALESCE(SUM(heard != 0), 0)
                 FROM voicemail GROUP BY lower(owner)",
            )
            .map_err(db_err)?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    MailboxCounts::from_sums(r.get(1)?, r.get(2)?),
                ))
            })
            .map_err(db_err)?;
        for row in rows {
            let (owner, counts) = row.map_err(db_err)?;
            dir.counts.insert(fold_user(&owner), counts);
        }
        Ok(dir)
    }

    /// The stored user `name` (any case), if there is one.
    pub fn user(&self, name: &str) -> Option<&UserRecord> {
        self.users.get(&fold_user(name))
    }

    /// The forwarding rules of `user` (none if never set).
    pub fn rules(&self, user: &str) -> Rules {
        self.rules
            .get(&fold_user(user))
            .cloned()
            .unwrap_or_default()
    }

    /// The new and old message counts of `owner`'s mailbox.
    pub fn counts(&self, owner: &str) -> MailboxCounts {
        self.counts
            .get(&fold_user(owner))
            .copied()
            .unwrap_or_default()
    }

    /// How many users it holds.
    pub fn user_count(&self) -> usize {
        self.users.len()
    }

    pub(crate) fn set_user(&mut self, name: &str, record: Option<UserRecord>) {
        match record {
            Some(r) => self.users.insert(fold_user(name), r),
            None => self.users.remove(&fold_user(name)),
        };
    }

    pub(crate) fn set_rules(&mut self, user: &str, rules: Rules) {
        if rules.is_empty() {
            self.rules.remove(&fold_user(user));
        } else {
            self.rules.insert(fold_user(user), rules);
        }
    }

    pub(crate) fn set_counts(&mut self, owner: &str, counts: MailboxCounts) {
        if counts == MailboxCounts::default() {
            self.counts.remove(&fold_user(owner));
        } else {
            self.counts.insert(fold_user(owner), counts);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mailbox::{new_message_id, VoicemailMessage};
    use crate::rules::ForwardTarget;
    use crate::{ForwardTo, UserStore};

    fn message(owner: &str) -> VoicemailMessage {
        VoicemailMessage {
            id: new_message_id(),
            owner: owner.into(),
            caller: "sip:alice@hookflash.local".into(),
            created: 1,
            duration_ms: 1500,
            heard: false,
            path: "/tmp/x.wav".into(),
        }
    }

    fn always(to: &str) -> Rules {
        Rules {
            always: Some(ForwardTo {
                to: ForwardTarget::parse(to).unwrap(),
            }),
            ..Rules::default()
        }
    }

    #[test]
    fn writes_through_the_stores_are_in_the_directory_when_they_return() {
        let store = UserStore::in_memory().unwrap();
        store.add("Carol", "hookflash.local", Some("pw")).unwrap();
        assert!(
            store
                .directory()
                .user("carol")
                .is_some_and(|r| r.ha1.is_some()),
            "a user added is known at once, with her password hash, whatever the case"
        );
        store.rules().set("carol", &always("dave")).unwrap();
        assert_eq!(
            store.directory().rules("CAROL"),
            always("dave"),
            "rules set are the rules the next call gets"
        );
        let vm = store.voicemail();
        let m = message("carol");
        vm.insert(&m).unwrap();
        vm.insert(&message("carol")).unwrap();
        vm.mark_heard("carol", &m.id).unwrap();
        assert_eq!(
            store.directory().counts("carol"),
            MailboxCounts { new: 1, old: 1 },
            "the counts a message-waiting NOTIFY reports follow the index"
        );
        vm.remove("carol", &m.id).unwrap();
        assert_eq!(store.directory().counts("carol").old, 0, "and its removals");
        store.rules().set("carol", &Rules::default()).unwrap();
        assert!(store.directory().rules("carol").is_empty(), "rules cleared");
        store.remove("carol").unwrap();
        assert!(
            store.directory().user("carol").is_none(),
            "a user removed is gone"
        );
    }

    #[test]
    fn another_process_writes_are_seen_after_a_refresh() {
        let dir = std::env::temp_dir().join(format!("hookflash-directory-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("switchboard.db");
        let serving = UserStore::open(&path).unwrap();
        // The CLI beside a running switchboard: its own connection to the same file.
        let cli = UserStore::open(&path).unwrap();
        assert!(
            !serving.refresh_if_changed().unwrap(),
            "nothing changed yet: no reload"
        );
        cli.add("dave", "hookflash.local", Some("pw")).unwrap();
        cli.rules().set("dave", &always("erin")).unwrap();
        assert!(
            serving.directory().user("dave").is_none(),
            "until the watcher looks, the loop keeps the directory it has"
        );
        assert!(
            serving.refresh_if_changed().unwrap(),
            "the change is noticed"
        );
        assert!(serving.directory().user("dave").is_some(), "dave is known");
        assert_eq!(
            serving.directory().rules("dave"),
            always("erin"),
            "with his rules"
        );
        assert!(
            !serving.refresh_if_changed().unwrap(),
            "and not reloaded again while nothing changes"
        );
        // Rows from before names were folded: one mailbox whatever the case.
        let raw = rusqlite::Connection::open(&path).unwrap();
        for (id, owner) in [("0000000000000001", "Dave"), ("0000000000000002", "dave")] {
            raw.execute(
                "INSERT INTO voicemail (id, owner, caller, created, duration_ms, heard, path)
                 VALUES (?1, ?2, 'sip:a@b', 1, 1000, 0, '/tmp/x.wav')",
                rusqlite::params![id, owner],
            )
            .unwrap();
        }
        assert!(serving.refresh_if_changed().unwrap());
        assert_eq!(
            serving.directory().counts("DAVE").new,
            2,
            "messages stored under Dave and dave are one mailbox's"
        );
        assert_eq!(
            serving.voicemail().counts("dave").unwrap().new,
            2,
            "and the index counts them the same way"
        );
        cli.remove("dave").unwrap();
        assert!(serving.refresh_if_changed().unwrap());
        assert!(serving.directory().user("dave").is_none(), "removals too");
        assert_eq!(serving.directory().user_count(), 0);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
