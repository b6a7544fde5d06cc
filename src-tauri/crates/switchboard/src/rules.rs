//! Per-user forwarding rules: forward always, on busy, on no answer after N seconds; each to a
//! person (a user name or a number) or to the user's voicemail.
//!
//! The JSON form (HTTP API, CLI) keeps every key, `null` meaning "no such rule":
//!
//! ```
//! use hookflash_switchboard::rules::{ForwardTarget, Rules};
//! let r: Rules = serde_json::from_str(
//!     r#"{"always": null, "busy": {"to": "bob"}, "noAnswer": {"after": 15, "to": "voicemail"}}"#,
//! ).unwrap();
//! assert_eq!(r.busy.unwrap().to, ForwardTarget::Person("bob".into()));
//! assert_eq!(r.no_answer.unwrap().to, ForwardTarget::Voicemail);
//! ```
//!
//! Missing keys count as `null`; unknown keys are refused (a typo must not silently disable a
//! rule). In SQLite the rules are one row per user in `rules(user, always_to, busy_to,
//! no_answer_to, no_answer_after, updated)`, targets as text (`voicemail`, a user name or a
//! number), so that a Kamailio `db_sqlite` route can read the same table.

use std::fmt;

use hookflash_core::auth::{fold_user, is_valid_user, unix_now};
use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::users::{db_err, directory_mut, lock, Db, VOICEMAIL_USER};
use crate::SwitchboardError;

/// The shortest no-answer time a rule may set, in seconds.
pub const MIN_NO_ANSWER_SECS: u32 = 1;
/// The longest no-answer time a rule may set, in seconds. The switchboard's own
/// `Config::no_answer_timeout` (30 s by default) still ends a call that rings longer.
pub const MAX_NO_ANSWER_SECS: u32 = 600;

/// Where a rule sends a call.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ForwardTarget {
    /// The mailbox of the user whose rule it is (RFC 4458 voicemail URI).
    Voicemail,
    /// Another person: a user name, or a number (`+15551234`), routed like a dialled one.
    Person(String),
}

impl ForwardTarget {
    /// Parse `voicemail` (any case), a user name, or a number (visual separators `-.() ` are
    /// dropped).
    pub fn parse(s: &str) -> Result<ForwardTarget, SwitchboardError> {
        let s = s.trim();
        if s.eq_ignore_ascii_case(VOICEMAIL_USER) {
            return Ok(ForwardTarget::Voicemail);
        }
        let stripped: String = s
            .chars()
            .filter(|c| !matches!(c, '-' | '.' | '(' | ')' | ' '))
            .collect();
        let digits = stripped.strip_prefix('+').unwrap_or(&stripped);
        if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
            return Ok(ForwardTarget::Person(stripped));
        }
        if is_valid_user(s) {
            return Ok(ForwardTarget::Person(s.to_owned()));
        }
        Err(SwitchboardError::InvalidRules(format!(
            "a forwarding target is \"voicemail\", a user name or a number, not {s:?}"
        )))
    }

    /// The stored and JSON form: `voicemail` or the person.
    pub fn as_str(&self) -> &str {
        match self {
            ForwardTarget::Voicemail => VOICEMAIL_USER,
            ForwardTarget::Person(p) => p,
        }
    }
}

impl fmt::Display for ForwardTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ForwardTarget {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ForwardTarget {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        ForwardTarget::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// A rule with a target only (`always`, `busy`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardTo {
    /// Where the call goes.
    pub to: ForwardTarget,
}

/// The no-answer rule: ring for `after` seconds, then forward.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoAnswer {
    /// Seconds of ringing before the call is forwarded
    /// ([`MIN_NO_ANSWER_SECS`]..=[`MAX_NO_ANSWER_SECS`]).
    pub after: u32,
    /// Where the call goes.
    pub to: ForwardTarget,
}

/// One user's forwarding rules; the default is none.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rules {
    /// Forward every call at once.
    #[serde(default)]
    pub always: Option<ForwardTo>,
    /// Forward when the user's phones answer busy (486 or 600).
    #[serde(default)]
    pub busy: Option<ForwardTo>,
    /// Forward when nobody answers in time (and when no phone is reachable).
    #[serde(default)]
    pub no_answer: Option<NoAnswer>,
}

impl Rules {
    /// Whether there is no rule at all.
    pub fn is_empty(&self) -> bool {
        self.always.is_none() && self.busy.is_none() && self.no_answer.is_none()
    }

    /// Check the rules of `owner`: no forwarding to oneself, a no-answer time in range.
    pub fn validate(&self, owner: &str) -> Result<(), SwitchboardError> {
        let targets = [
            self.always.as_ref().map(|r| &r.to),
            self.busy.as_ref().map(|r| &r.to),
            self.no_answer.as_ref().map(|r| &r.to),
        ];
        for t in targets.into_iter().flatten() {
            if let ForwardTarget::Person(p) = t {
                if p == owner {
                    return Err(SwitchboardError::InvalidRules(
                        "a rule cannot forward to its own owner".into(),
                    ));
                }
                if p.eq_ignore_ascii_case(VOICEMAIL_USER) {
                    return Err(SwitchboardError::InvalidRules(
                        "write \"voicemail\" for the owner's mailbox".into(),
                    ));
                }
            }
        }
        if let Some(na) = &self.no_answer {
            if !(MIN_NO_ANSWER_SECS..=MAX_NO_ANSWER_SECS).contains(&na.after) {
                return Err(SwitchboardError::InvalidRules(format!(
                    "noAnswer.after must be {MIN_NO_ANSWER_SECS}..={MAX_NO_ANSWER_SECS} seconds"
                )));
            }
        }
        Ok(())
    }
}

/// Create the `rules` table.
pub(crate) fn migrate(conn: &Connection) -> Result<(), SwitchboardError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS rules (
             user            TEXT PRIMARY KEY NOT NULL,
             always_to       TEXT,
             busy_to         TEXT,
             no_answer_to    TEXT,
             no_answer_after INTEGER,
             updated         INTEGER NOT NULL
         );",
    )
    .map_err(db_err)
}

/// The forwarding rules in the database; cheap to clone, safe to share.
#[derive(Clone)]
pub struct RuleStore {
    db: Db,
}

impl fmt::Debug for RuleStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RuleStore").finish_non_exhaustive()
    }
}

fn target_column(value: Option<String>) -> Option<ForwardTarget> {
    value.and_then(|v| ForwardTarget::parse(&v).ok())
}

/// The rules of one `rules` row (`always_to, busy_to, no_answer_to, no_answer_after`). A
/// stored target that no longer parses is no rule.
pub(crate) fn rules_from_columns(
    always: Option<String>,
    busy: Option<String>,
    no_answer: Option<String>,
    after: Option<i64>,
) -> Rules {
    Rules {
        always: target_column(always).map(|to| ForwardTo { to }),
        busy: target_column(busy).map(|to| ForwardTo { to }),
        no_answer: target_column(no_answer).map(|to| NoAnswer {
            after: after
                .unwrap_or(i64::from(MIN_NO_ANSWER_SECS))
                .clamp(i64::from(MIN_NO_ANSWER_SECS), i64::from(MAX_NO_ANSWER_SECS))
                as u32,
            to,
        }),
    }
}

impl RuleStore {
    pub(crate) fn new(db: Db) -> RuleStore {
        RuleStore { db }
    }

    /// The rules of `user` (none if never set). A stored target that no longer parses is
    /// treated as no rule.
    pub fn get(&self, user: &str) -> Result<Rules, SwitchboardError> {
        let user = &fold_user(user);
        let row = lock(&self.db)
            .query_row(
                "SELECT always_to, busy_to, no_answer_to, no_answer_after FROM rules WHERE user = ?1",
                params![user],
                |r| {
                    Ok((
                        r.get::<_, Option<String>>(0)?,
                        r.get::<_, Option<String>>(1)?,
                        r.get::<_, Option<String>>(2)?,
                        r.get::<_, Option<i64>>(3)?,
                    ))
                },
            )
            .optional()
            .map_err(db_err)?;
        let Some((always, busy, no_answer, after)) = row else {
            return Ok(Rules::default());
        };
        Ok(rules_from_columns(always, busy, no_answer, after))
    }

    /// Replace the rules of `user` (validated first); empty rules delete the row.
    pub fn set(&self, user: &str, rules: &Rules) -> Result<(), SwitchboardError> {
        let user = &fold_user(user);
        if !is_valid_user(user) || user.eq_ignore_ascii_case(VOICEMAIL_USER) {
            return Err(SwitchboardError::InvalidUser(user.to_owned()));
        }
        rules.validate(user)?;
        let conn = lock(&self.db);
        if rules.is_empty() {
            conn.execute("DELETE FROM rules WHERE user = ?1", params![user])
                .map_err(db_err)?;
            directory_mut(&self.db, &conn).set_rules(user, Rules::default());
            return Ok(());
        }
        conn.execute(
            "INSERT INTO rules (user, always_to, busy_to, no_answer_to, no_answer_after, updated)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT(user) DO UPDATE SET always_to = excluded.always_to,
                 busy_to = excluded.busy_to, no_answer_to = excluded.no_answer_to,
                 no_answer_after = excluded.no_answer_after, updated = excluded.updated",
            params![
                user,
                rules.always.as_ref().map(|r| r.to.as_str()),
                rules.busy.as_ref().map(|r| r.to.as_str()),
                rules.no_answer.as_ref().map(|r| r.to.as_str()),
                rules.no_answer.as_ref().map(|r| i64::from(r.after)),
                unix_now() as i64
            ],
        )
        .map_err(db_err)?;
        // Validated, so exactly what a reload would read back.
        directory_mut(&self.db, &conn).set_rules(user, rules.clone());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::UserStore;

    #[test]
    fn rules_round_trip_through_json_and_sqlite() {
        let json = r#"{"always":null,"busy":{"to":"+1 555-1234"},"noAnswer":{"after":15,"to":"voicemail"}}"#;
        let rules: Rules = serde_json::from_str(json).expect("the documented form parses");
        assert_eq!(
            rules.busy.as_ref().unwrap().to,
            ForwardTarget::Person("+15551234".into()),
            "numbers lose their separators"
        );
        let store = UserStore::in_memory().unwrap().rules();
        store.set("carol", &rules).expect("valid rules are stored");
        assert_eq!(store.get("carol").unwrap(), rules, "read back unchanged");
        assert_eq!(
            serde_json::to_string(&store.get("carol").unwrap()).unwrap(),
            r#"{"always":null,"busy":{"to":"+15551234"},"noAnswer":{"after":15,"to":"voicemail"}}"#,
            "every key is written, null for no rule"
        );
        store.set("carol", &Rules::default()).unwrap();
        assert!(store.get("carol").unwrap().is_empty(), "empty rules delete");
        assert!(store.get("nobody").unwrap().is_empty(), "none by default");
    }

    #[test]
    fn bad_rules_are_refused() {
        assert!(
            serde_json::from_str::<Rules>(r#"{"noanswer":{"after":5,"to":"bob"}}"#).is_err(),
            "a misspelt key must not silently mean no rule"
        );
        assert!(
            serde_json::from_str::<Rules>(r#"{"always":{"to":"a b@c"}}"#).is_err(),
            "targets are user names, numbers or voicemail"
        );
        let store = UserStore::in_memory().unwrap().rules();
        let to_self = Rules {
            always: Some(ForwardTo {
                to: ForwardTarget::Person("carol".into()),
            }),
            ..Rules::default()
        };
        assert!(store.set("carol", &to_self).is_err(), "forward to oneself");
        let too_long = Rules {
            no_answer: Some(NoAnswer {
                after: 0,
                to: ForwardTarget::Voicemail,
            }),
            ..Rules::default()
        };
        assert!(store.set("carol", &too_long).is_err(), "after 0 s");
        assert!(
            store.set("voicemail", &Rules::default()).is_err(),
            "the voicemail account has no rules"
        );
    }
}
