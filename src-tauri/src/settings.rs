//! What the app remembers: the account (server, transport, credential, display name), the
//! preferences (language, theme, transfer default) and the call history, kept with
//! tauri-plugin-store in the app's data directory.
//!
//! The credential is stored beside the rest, in a file only the user can read (mode 0600,
//! its directory 0700). It never leaves the Rust side again: the UI sees only whether one is
//! saved ([`AccountView::has_secret`]), logs never see it, and the store plugin is not
//! exposed to the web view at all (it would read any JSON file by path).

use std::path::{Path, PathBuf};

use hookflash_core::media::MediaProfile;
use hookflash_core::ErrorCode;
use serde::{Deserialize, Serialize};
use specta::Type;
use tauri::{AppHandle, Runtime};
use tauri_plugin_store::StoreExt;

use crate::ipc::ApiError;

/// The file the settings (and the credential) live in, under the app's data directory.
pub const SETTINGS_FILE: &str = "settings.json";
/// The file the call history lives in.
pub const HISTORY_FILE: &str = "history.json";
/// The most history entries kept.
pub const HISTORY_MAX: usize = 200;

/// SIP transport to the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Type)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// UDP.
    Udp,
    /// TCP.
    Tcp,
    /// TLS: the server's certificate is checked against the system's trusted authorities
    /// and the account's domain.
    Tls,
    /// WebSocket (RFC 7118).
    Ws,
    /// Secure WebSocket, checked like TLS.
    Wss,
}

/// A credential as the user enters it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Type)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Secret {
    /// A user access token `EXPIRY:USER:SCOPE=PASSWORD[,…]`.
    Token {
        /// The token.
        token: String,
    },
    /// A SIP password.
    Password {
        /// The password.
        password: String,
    },
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never printed, whatever logs it.
        match self {
            Secret::Token { .. } => f.write_str("Secret::Token(…)"),
            Secret::Password { .. } => f.write_str("Secret::Password(…)"),
        }
    }
}

/// An account on a real server, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredAccount {
    /// `host:port` of the SIP server (the outbound proxy).
    pub server: String,
    /// The SIP domain of the address of record.
    pub domain: String,
    /// UDP or TCP.
    pub transport: Transport,
    /// The user name.
    pub user: String,
    /// The display name on calls.
    pub display_name: Option<String>,
    /// The credential.
    pub secret: Secret,
    /// The media profiles calls may use, in order (accounts saved before there was a
    /// choice get the default).
    #[serde(default = "default_media_profiles")]
    pub media_profiles: Vec<MediaProfile>,
    /// A private authority to trust for TLS and WSS besides the system's (PEM text).
    #[serde(default)]
    pub tls_ca: Option<String>,
    /// A TURN relay for call audio.
    #[serde(default)]
    pub turn: Option<StoredTurn>,
}

/// A TURN relay, as stored.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredTurn {
    /// `turn:HOST:PORT`.
    pub server: String,
    /// Its user name; none: the token's TURN grant.
    pub user: Option<String>,
    /// Its password (with `user`).
    pub password: Option<String>,
    /// Send call audio only through the relay.
    pub relay_only: bool,
}

impl std::fmt::Debug for StoredTurn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The password is never printed.
        f.debug_struct("StoredTurn")
            .field("server", &self.server)
            .field("user", &self.user)
            .field("relay_only", &self.relay_only)
            .finish_non_exhaustive()
    }
}

/// The default media policy: WebRTC first, then SDES-SRTP, then plain RTP.
pub fn default_media_profiles() -> Vec<MediaProfile> {
    MediaProfile::ALL.to_vec()
}

/// The account as the UI sees it: everything but the secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type)]
#[serde(rename_all = "camelCase")]
pub struct AccountView {
    /// `host:port` of the SIP server.
    pub server: String,
    /// The SIP domain.
    pub domain: String,
    /// UDP or TCP.
    pub transport: Transport,
    /// The user name.
    pub user: String,
    /// The display name.
    pub display_name: Option<String>,
    /// Which kind of credential is saved.
    pub credential: CredentialKind,
    /// Whether a credential is saved.
    pub has_secret: bool,
    /// The media profiles calls may use, in order.
    pub media_profiles: Vec<MediaProfile>,
    /// Whether a private authority is trusted for TLS and WSS.
    pub has_tls_ca: bool,
    /// The TURN relay (`turn:HOST:PORT`), if any.
    pub turn_server: Option<String>,
    /// The TURN user name; none: the token's TURN grant.
    pub turn_user: Option<String>,
    /// Whether a TURN password is saved.
    pub has_turn_password: bool,
    /// Call audio only through the relay.
    pub relay_only: bool,
}

/// Which kind of credential an account uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Type)]
#[serde(rename_all = "camelCase")]
pub enum CredentialKind {
    /// A user access token.
    Token,
    /// A SIP password.
    Password,
}

/// An account as the UI submits it; `secret: null` keeps the saved one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type)]
#[serde(rename_all = "camelCase")]
pub struct AccountInput {
    /// `host:port` of the SIP server.
    pub server: String,
    /// The SIP domain.
    pub domain: String,
    /// UDP or TCP.
    pub transport: Transport,
    /// The user name.
    pub user: String,
    /// The display name.
    pub display_name: Option<String>,
    /// A new credential, or none to keep the saved one.
    pub secret: Option<Secret>,
    /// The media profiles calls may use; kept in the order of [`MediaProfile::ALL`]. A form
    /// that does not send them keeps the default.
    #[serde(default = "default_media_profiles")]
    pub media_profiles: Vec<MediaProfile>,
    /// A private authority for TLS and WSS (PEM text of a file the user chose); none keeps
    /// the saved one, an empty text removes it.
    #[serde(default)]
    pub tls_ca: Option<String>,
    /// The TURN relay (`turn:HOST:PORT`, or `HOST:PORT`); empty or none: no relay.
    #[serde(default)]
    pub turn_server: Option<String>,
    /// The TURN user name; empty or none: sign in to the relay with the token.
    #[serde(default)]
    pub turn_user: Option<String>,
    /// A new TURN password, or none to keep the saved one.
    #[serde(default)]
    pub turn_password: Option<String>,
    /// Call audio only through the relay.
    #[serde(default)]
    pub relay_only: bool,
}

/// The UI language.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, Type)]
#[serde(rename_all = "camelCase")]
pub enum Language {
    /// Follow the system.
    #[default]
    System,
    /// English.
    En,
    /// Korean.
    Ko,
    /// Simplified Chinese.
    Zh,
}

/// The colour theme.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, Type)]
#[serde(rename_all = "camelCase")]
pub enum Theme {
    /// Follow the system.
    #[default]
    System,
    /// Light.
    Light,
    /// Dark.
    Dark,
}

/// The user's preferences.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, Type)]
#[serde(rename_all = "camelCase", default)]
pub struct Preferences {
    /// The UI language.
    pub language: Language,
    /// The colour theme.
    pub theme: Theme,
    /// The transfer dialog's "ring only this person" starts ticked.
    pub ring_only_target: bool,
}

/// Everything the settings page shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type)]
#[serde(rename_all = "camelCase")]
pub struct Settings {
    /// The real-server account; none: the embedded demo switchboard.
    pub account: Option<AccountView>,
    /// The preferences.
    pub preferences: Preferences,
    /// The system's language, for `language: system` (`en`, `ko` or `zh`; from the
    /// process locale, which the web view does not always report).
    pub system_language: Language,
}

/// How a call in the history ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Type)]
#[serde(rename_all = "camelCase")]
pub enum CallOutcome {
    /// Talked, then hung up.
    Answered,
    /// An incoming call nobody answered.
    Missed,
    /// We declined it, or they did.
    Declined,
    /// The other side was busy.
    Busy,
    /// It failed (no answer, unknown number, network).
    Failed,
    /// We gave up before it was answered.
    Cancelled,
    /// We transferred it.
    Transferred,
}

/// One call in the history, as the UI records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Type)]
#[serde(rename_all = "camelCase")]
pub struct HistoryEntry {
    /// The call id.
    pub id: String,
    /// `outgoing` or `incoming`.
    pub direction: hookflash_core::call::CallDirection,
    /// The other party's address.
    pub party: String,
    /// The other party's name, when known.
    pub party_name: Option<String>,
    /// When it started (seconds since the epoch).
    pub started: u32,
    /// How long it was connected (ms); 0 when never answered.
    pub duration_ms: u32,
    /// How it ended.
    pub outcome: CallOutcome,
    /// Who we transferred it to (we were the transferor).
    pub transferred_to: Option<String>,
    /// Who transferred it to us, or whose transfer made it.
    pub transferred_by: Option<String>,
}

impl StoredAccount {
    /// The view the UI gets.
    pub fn view(&self) -> AccountView {
        AccountView {
            server: self.server.clone(),
            domain: self.domain.clone(),
            transport: self.transport,
            user: self.user.clone(),
            display_name: self.display_name.clone(),
            credential: match self.secret {
                Secret::Token { .. } => CredentialKind::Token,
                Secret::Password { .. } => CredentialKind::Password,
            },
            has_secret: true,
            media_profiles: self.media_profiles.clone(),
            has_tls_ca: self.tls_ca.is_some(),
            turn_server: self.turn.as_ref().map(|t| t.server.clone()),
            turn_user: self.turn.as_ref().and_then(|t| t.user.clone()),
            has_turn_password: self.turn.as_ref().is_some_and(|t| t.password.is_some()),
            relay_only: self.turn.as_ref().is_some_and(|t| t.relay_only),
        }
    }

    /// The account an input describes, keeping `previous`'s secret when none is given.
    pub fn from_input(
        input: AccountInput,
        previous: Option<&StoredAccount>,
    ) -> Result<StoredAccount, ApiError> {
        let bad = |what: &str| ApiError::new(ErrorCode::SettingsFailed, what);
        let trim = |s: &str| s.trim().to_owned();
        let secret = match (input.secret, previous) {
            (Some(s), _) => s,
            (None, Some(p)) if p.user == input.user.trim() => p.secret.clone(),
            (None, _) => return Err(bad("Enter a token or a password to sign in.")),
        };
        let empty = match &secret {
            Secret::Token { token } => token.trim().is_empty(),
            Secret::Password { password } => password.is_empty(),
        };
        if empty {
            return Err(bad("Enter a token or a password to sign in."));
        }
        let tls_ca = match input.tls_ca {
            None => previous.and_then(|p| p.tls_ca.clone()),
            Some(pem) if pem.trim().is_empty() => None,
            Some(pem) => {
                if hookflash_core::sip::tls::trustable_authorities(pem.as_bytes()) == 0 {
                    return Err(bad(
                        "That file holds no certificate to trust: choose the authority's \
                         certificate (PEM, \"BEGIN CERTIFICATE\").",
                    ));
                }
                Some(pem)
            }
        };
        let turn = match input
            .turn_server
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            None => None,
            Some(server) => {
                let server = if server.starts_with("turn:") {
                    server.to_owned()
                } else {
                    format!("turn:{server}")
                };
                let user = input
                    .turn_user
                    .as_deref()
                    .map(str::trim)
                    .filter(|u| !u.is_empty())
                    .map(str::to_owned);
                let saved = previous.and_then(|p| p.turn.as_ref());
                let password = match (&user, input.turn_password) {
                    (None, _) => None,
                    (Some(_), Some(p)) if !p.is_empty() => Some(p),
                    (Some(u), _) => saved
                        .filter(|s| s.user.as_ref() == Some(u))
                        .and_then(|s| s.password.clone()),
                };
                if user.is_some() && password.is_none() {
                    return Err(bad("Enter the TURN password for that TURN user name."));
                }
                if user.is_none() && !matches!(secret, Secret::Token { .. }) {
                    return Err(bad(
                        "A TURN relay needs its own user name and password when you sign in \
                         with a password.",
                    ));
                }
                Some(StoredTurn {
                    server,
                    user,
                    password,
                    relay_only: input.relay_only,
                })
            }
        };
        let account = StoredAccount {
            server: trim(&input.server),
            domain: trim(&input.domain),
            transport: input.transport,
            user: trim(&input.user),
            display_name: input
                .display_name
                .map(|n| n.trim().to_owned())
                .filter(|n| !n.is_empty()),
            secret,
            // Most protected first, each once, whatever order the form sent.
            media_profiles: MediaProfile::ALL
                .into_iter()
                .filter(|p| input.media_profiles.contains(p))
                .collect(),
            tls_ca,
            turn,
        };
        if account.turn.as_ref().is_some_and(|t| {
            t.relay_only && !account.media_profiles.contains(&MediaProfile::WebRtc)
        }) {
            return Err(bad(
                "Audio only through the relay needs WebRTC media: allow it, or untick \
                 relay-only.",
            ));
        }
        if account.media_profiles.is_empty() {
            return Err(bad(
                "Allow at least one way for call audio to travel (WebRTC, SRTP or plain RTP).",
            ));
        }
        if account.server.is_empty() || account.domain.is_empty() || account.user.is_empty() {
            return Err(bad("Server, domain and user name are all needed."));
        }
        Ok(account)
    }
}

/// Reads and writes the settings through the store.
pub struct SettingsStore<R: Runtime> {
    app: AppHandle<R>,
    dir: PathBuf,
}

fn failed(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        ErrorCode::SettingsFailed,
        format!("The settings could not be saved: {e}"),
    )
}

impl<R: Runtime> SettingsStore<R> {
    /// The store in `dir` (the app's data directory), created private if missing.
    pub fn new(app: AppHandle<R>, dir: PathBuf) -> Result<Self, ApiError> {
        std::fs::create_dir_all(&dir).map_err(failed)?;
        restrict(&dir, 0o700).map_err(failed)?;
        Ok(SettingsStore { app, dir })
    }

    fn get<T: serde::de::DeserializeOwned>(&self, file: &str, key: &str) -> Option<T> {
        let store = self.app.store(self.dir.join(file)).ok()?;
        let value = store.get(key)?;
        match serde_json::from_value(value) {
            Ok(v) => Some(v),
            Err(e) => {
                tracing::warn!(key, error = %e, "a stored setting could not be read; using the default");
                None
            }
        }
    }

    fn set<T: Serialize>(&self, file: &str, key: &str, value: Option<&T>) -> Result<(), ApiError> {
        let path = self.dir.join(file);
        let store = self.app.store(&path).map_err(failed)?;
        match value {
            Some(v) => store.set(key, serde_json::to_value(v).map_err(failed)?),
            None => {
                store.delete(key);
            }
        }
        store.save().map_err(failed)?;
        restrict(&path, 0o600).map_err(failed)
    }

    /// The saved account, if any.
    pub fn account(&self) -> Option<StoredAccount> {
        self.get(SETTINGS_FILE, "account")
    }

    /// Saves (or with `None` forgets) the account.
    pub fn set_account(&self, account: Option<&StoredAccount>) -> Result<(), ApiError> {
        self.set(SETTINGS_FILE, "account", account)
    }

    /// The preferences (defaults when none are saved).
    pub fn preferences(&self) -> Preferences {
        self.get(SETTINGS_FILE, "preferences").unwrap_or_default()
    }

    /// Saves the preferences.
    pub fn set_preferences(&self, preferences: &Preferences) -> Result<(), ApiError> {
        self.set(SETTINGS_FILE, "preferences", Some(preferences))
    }

    /// What the settings page shows.
    pub fn settings(&self) -> Settings {
        Settings {
            account: self.account().map(|a| a.view()),
            preferences: self.preferences(),
            system_language: crate::desktop::system_language(),
        }
    }

    /// The call history, newest first.
    pub fn history(&self) -> Vec<HistoryEntry> {
        self.get(HISTORY_FILE, "calls").unwrap_or_default()
    }

    /// Replaces the call history (the newest [`HISTORY_MAX`] are kept).
    pub fn set_history(&self, mut entries: Vec<HistoryEntry>) -> Result<(), ApiError> {
        entries.truncate(HISTORY_MAX);
        self.set(HISTORY_FILE, "calls", Some(&entries))
    }

    /// Where the device selection is kept (the core's own file).
    pub fn devices_file(&self) -> PathBuf {
        self.dir.join("devices.json")
    }

    /// The app's data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// Makes `path` readable by its owner only (a no-op where modes do not exist).
pub fn restrict(path: &Path, mode: u32) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
    }
    #[cfg(not(unix))]
    {
        let _ = (path, mode);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(secret: Option<Secret>) -> AccountInput {
        AccountInput {
            server: " 10.0.0.5:5060 ".into(),
            domain: "example.org".into(),
            transport: Transport::Tcp,
            user: "alice".into(),
            display_name: Some("  ".into()),
            secret,
            media_profiles: vec![MediaProfile::Rtp, MediaProfile::WebRtc],
            tls_ca: None,
            turn_server: None,
            turn_user: None,
            turn_password: None,
            relay_only: false,
        }
    }

    const CA: &str = include_str!("../tests/fixtures/test-ca.pem");

    #[test]
    fn a_private_authority_is_kept_only_if_it_holds_a_certificate() {
        let token = || {
            Some(Secret::Token {
                token: "1:alice:sip=AAAA".into(),
            })
        };
        let mut with_ca = input(token());
        with_ca.tls_ca = Some(CA.into());
        let account = StoredAccount::from_input(with_ca, None).expect("a real certificate");
        assert!(account.view().has_tls_ca, "the view says one is trusted");
        let kept = StoredAccount::from_input(input(None), Some(&account)).expect("kept");
        assert_eq!(
            kept.tls_ca, account.tls_ca,
            "saving without choosing again keeps it"
        );
        let mut cleared = input(None);
        cleared.tls_ca = Some(String::new());
        let cleared = StoredAccount::from_input(cleared, Some(&account)).expect("cleared");
        assert_eq!(cleared.tls_ca, None, "an empty choice removes it");
        let mut junk = input(token());
        junk.tls_ca = Some("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n".into());
        let e = StoredAccount::from_input(junk, None).expect_err("no certificate in it");
        assert!(
            e.message.contains("no certificate"),
            "and says so: {}",
            e.message
        );
    }

    #[test]
    fn a_turn_relay_signs_in_with_the_token_or_its_own_password_never_shown() {
        let token = || {
            Some(Secret::Token {
                token: "1:alice:sip=AAAA,turn=AAAA".into(),
            })
        };
        let mut relay = input(token());
        relay.turn_server = Some(" 10.0.0.7:3478 ".into());
        relay.relay_only = true;
        let account =
            StoredAccount::from_input(relay, None).expect("token accounts need no TURN password");
        let view = account.view();
        assert_eq!(
            view.turn_server.as_deref(),
            Some("turn:10.0.0.7:3478"),
            "turn: added"
        );
        assert!(
            view.relay_only && !view.has_turn_password,
            "relay-only, token credentials"
        );

        let password = || {
            Some(Secret::Password {
                password: "pw".into(),
            })
        };
        let mut own = input(password());
        own.turn_server = Some("turn:10.0.0.7:3478".into());
        assert!(
            StoredAccount::from_input(own.clone(), None).is_err(),
            "a password account has no token to sign in to the relay with"
        );
        own.turn_user = Some("relay-alice".into());
        own.turn_password = Some("relay-pw".into());
        let account = StoredAccount::from_input(own.clone(), None).expect("its own credentials");
        assert!(account.view().has_turn_password, "saved");
        assert!(
            !serde_json::to_string(&account.view())
                .unwrap()
                .contains("relay-pw"),
            "the view the UI gets never carries the TURN password"
        );
        own.turn_password = None;
        let again = StoredAccount::from_input(own, Some(&account)).expect("kept password");
        assert_eq!(
            again.turn, account.turn,
            "saving again without it keeps the password"
        );

        let mut audio_nowhere = input(token());
        audio_nowhere.turn_server = Some("turn:10.0.0.7:3478".into());
        audio_nowhere.relay_only = true;
        audio_nowhere.media_profiles = vec![MediaProfile::Rtp];
        assert!(
            StoredAccount::from_input(audio_nowhere, None).is_err(),
            "relay-only without WebRTC media could carry no audio: refused at save"
        );
    }

    #[test]
    fn the_media_policy_is_kept_most_protected_first_and_never_empty() {
        let password = || {
            Some(Secret::Password {
                password: "pw".into(),
            })
        };
        let account = StoredAccount::from_input(input(password()), None).expect("complete");
        assert_eq!(
            account.media_profiles,
            vec![MediaProfile::WebRtc, MediaProfile::Rtp],
            "offers try the most protected allowed profile first"
        );
        let mut none = input(password());
        none.media_profiles.clear();
        assert!(
            StoredAccount::from_input(none, None).is_err(),
            "an account whose calls could carry no audio is refused"
        );
        let old = r#"{"server":"s:5060","domain":"d","transport":"udp","user":"u","displayName":null,"secret":{"kind":"password","password":"p"}}"#;
        let old: StoredAccount = serde_json::from_str(old).expect("an account saved before");
        assert_eq!(
            old.media_profiles,
            default_media_profiles(),
            "gets the default"
        );
    }

    #[test]
    fn an_account_keeps_its_saved_secret_when_none_is_entered() {
        let first = StoredAccount::from_input(
            input(Some(Secret::Password {
                password: "pw".into(),
            })),
            None,
        )
        .expect("a complete account");
        assert_eq!(first.server, "10.0.0.5:5060", "addresses are trimmed");
        assert_eq!(first.display_name, None, "a blank display name is none");
        let again = StoredAccount::from_input(input(None), Some(&first)).expect("kept secret");
        assert_eq!(again.secret, first.secret, "the saved secret stays");
        let mut other = input(None);
        other.user = "mallory".into();
        assert!(
            StoredAccount::from_input(other, Some(&first)).is_err(),
            "another user does not inherit alice's secret"
        );
    }

    #[test]
    fn the_ui_never_sees_a_secret() {
        let account = StoredAccount::from_input(
            input(Some(Secret::Token {
                token: "1:alice:c2VjcmV0".into(),
            })),
            None,
        )
        .unwrap();
        let view = serde_json::to_string(&account.view()).unwrap();
        assert!(!view.contains("c2VjcmV0"), "no secret in the view: {view}");
        assert!(
            view.contains(r#""hasSecret":true"#),
            "only that one is saved"
        );
        assert!(
            !format!("{account:?}").contains("c2VjcmV0"),
            "nor in debug output (logs)"
        );
    }
}
