//! The IPC surface: commands in, typed events out. The TypeScript for it
//! (`ui/src/bindings.ts`) is generated from these types by tauri-specta; a test fails when
//! the committed file drifts from them.
//!
//! `execute` carries the core's own command vocabulary ([`hookflash_core::api::Command`])
//! unchanged, so the window, the headless agent and the tests speak one API; the other
//! commands are the app's: its session, settings, history and the voicemail service.

use base64::Engine as _;
use hookflash_core::api::{Command, Event};
use hookflash_core::mailbox::{ForwardingRules, MailboxError, VoicemailMessage};
use hookflash_core::{AgentError, ErrorCode};
use serde::{Deserialize, Serialize};
use specta::Type;
use tauri::{AppHandle, Manager, Runtime, State};

use crate::session::SessionInfo;
use crate::settings::{AccountInput, HistoryEntry, Preferences, Settings, StoredAccount};
use crate::AppState;

/// A command that failed: a stable code and words for the user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type, thiserror::Error)]
#[serde(rename_all = "camelCase")]
#[error("{message} [{code}]")]
pub struct ApiError {
    /// The stable code.
    pub code: ErrorCode,
    /// What happened, in words.
    pub message: String,
}

impl ApiError {
    /// An error with this code and message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
        }
    }
}

impl From<&AgentError> for ApiError {
    fn from(e: &AgentError) -> Self {
        ApiError::new(e.code(), e.to_string())
    }
}

impl From<AgentError> for ApiError {
    fn from(e: AgentError) -> Self {
        ApiError::from(&e)
    }
}

impl From<MailboxError> for ApiError {
    fn from(e: MailboxError) -> Self {
        ApiError::new(e.code(), e.to_string())
    }
}

/// Every event of the core, as it happened (`events.coreEvent`).
#[derive(Debug, Clone, Serialize, Deserialize, Type, tauri_specta::Event)]
pub struct CoreEvent(pub Event);

/// A `sip:`, `tel:` or `callto:` link was opened: fill the dialler (`events.dialRequested`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type, tauri_specta::Event)]
#[serde(rename_all = "camelCase")]
pub struct DialRequested {
    /// The address to dial.
    pub address: String,
    /// Call at once (from a notification) rather than only fill in the address.
    pub call: bool,
}

/// The session was replaced (signed in elsewhere, or back to the demo) (`events.sessionChanged`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type, tauri_specta::Event)]
#[serde(rename_all = "camelCase")]
pub struct SessionChanged {
    /// The new session.
    pub session: SessionInfo,
}

/// Runs one command of the core (`startCall`, `transfer`, `hold`, …): the call or transfer
/// id it concerns comes back.
#[tauri::command]
#[specta::specta]
pub async fn execute<R: Runtime>(
    _app: AppHandle<R>,

    state: State<'_, AppState<R>>,
    command: Command,
) -> Result<Option<String>, ApiError> {
    if matches!(command, Command::SignOut {}) {
        return Err(ApiError::new(
            ErrorCode::CommandMalformed,
            "Sign out from the settings instead.",
        ));
    }
    let agent = state.agent().await?;
    Ok(agent.execute(command).await?)
}

/// Who is signed in, where, and the directory; waits for the session to start.
#[tauri::command]
#[specta::specta]
pub async fn session<R: Runtime>(
    _app: AppHandle<R>,
    state: State<'_, AppState<R>>,
) -> Result<SessionInfo, ApiError> {
    state.with_session(|s| s.info()).await
}

/// A link opened before the window was listening (the app was started by it), once.
#[tauri::command]
#[specta::specta]
pub fn take_pending_dial<R: Runtime>(
    _app: AppHandle<R>,
    state: State<'_, AppState<R>>,
) -> Option<String> {
    state.take_pending_dial()
}

/// The settings (never the secret).
#[tauri::command]
#[specta::specta]
pub fn settings<R: Runtime>(_app: AppHandle<R>, state: State<'_, AppState<R>>) -> Settings {
    state.store.settings()
}

/// Saves an account on a real server and signs in with it.
#[tauri::command]
#[specta::specta]
pub async fn save_account<R: Runtime>(
    app: AppHandle<R>,
    state: State<'_, AppState<R>>,
    account: AccountInput,
) -> Result<SessionInfo, ApiError> {
    let stored = StoredAccount::from_input(account, state.store.account().as_ref())?;
    state.store.set_account(Some(&stored))?;
    tracing::info!("account saved; signing in");
    state.restart(&app).await
}

/// Forgets the account and goes back to the embedded demo switchboard.
#[tauri::command]
#[specta::specta]
pub async fn use_demo<R: Runtime>(
    app: AppHandle<R>,
    state: State<'_, AppState<R>>,
) -> Result<SessionInfo, ApiError> {
    state.store.set_account(None)?;
    state.restart(&app).await
}

/// Saves the preferences (language, theme, transfer default).
#[tauri::command]
#[specta::specta]
pub async fn save_preferences<R: Runtime>(
    app: AppHandle<R>,
    state: State<'_, AppState<R>>,
    preferences: Preferences,
) -> Result<(), ApiError> {
    state.store.set_preferences(&preferences)?;
    crate::desktop::apply_language(&app, preferences.language);
    Ok(())
}

/// The call history, newest first.
#[tauri::command]
#[specta::specta]
pub fn history<R: Runtime>(_app: AppHandle<R>, state: State<'_, AppState<R>>) -> Vec<HistoryEntry> {
    state.store.history()
}

/// Replaces the call history (the newest 200 are kept).
#[tauri::command]
#[specta::specta]
pub async fn save_history<R: Runtime>(
    _app: AppHandle<R>,

    state: State<'_, AppState<R>>,
    entries: Vec<HistoryEntry>,
) -> Result<(), ApiError> {
    state.store.set_history(entries)
}

/// The voicemail messages, newest first.
#[tauri::command]
#[specta::specta]
pub async fn voicemail<R: Runtime>(
    _app: AppHandle<R>,

    state: State<'_, AppState<R>>,
) -> Result<Vec<VoicemailMessage>, ApiError> {
    let mailbox = state.mailbox().await?;
    Ok(mailbox.messages().await?)
}

/// Plays a message on the selected speaker.
#[tauri::command]
#[specta::specta]
pub async fn play_voicemail<R: Runtime>(
    app: AppHandle<R>,
    state: State<'_, AppState<R>>,
    id: String,
) -> Result<(), ApiError> {
    let mailbox = state.mailbox().await?;
    let wav = mailbox.recording(&id).await?;
    let dir = app
        .path()
        .app_cache_dir()
        .map_err(|e| ApiError::new(ErrorCode::VoicemailFailed, e.to_string()))?
        .join("voicemail");
    let path = dir.join("playing.wav");
    let written = std::fs::create_dir_all(&dir)
        .and_then(|_| crate::settings::restrict(&dir, 0o700))
        .and_then(|_| std::fs::write(&path, &wav));
    written.map_err(|e| {
        ApiError::new(
            ErrorCode::VoicemailFailed,
            format!("The message could not be saved for playing: {e}"),
        )
    })?;
    let agent = state.agent().await?;
    agent
        .execute(Command::PlayAudioFile {
            path: path.to_string_lossy().into_owned(),
        })
        .await?;
    Ok(())
}

/// Stops a message playing.
#[tauri::command]
#[specta::specta]
pub async fn stop_playback<R: Runtime>(
    _app: AppHandle<R>,
    state: State<'_, AppState<R>>,
) -> Result<(), ApiError> {
    state
        .agent()
        .await?
        .execute(Command::StopAudioFile {})
        .await?;
    Ok(())
}

/// Marks a message heard.
#[tauri::command]
#[specta::specta]
pub async fn mark_voicemail_heard<R: Runtime>(
    _app: AppHandle<R>,

    state: State<'_, AppState<R>>,
    id: String,
) -> Result<(), ApiError> {
    let mailbox = state.mailbox().await?;
    mailbox.mark_heard(&id).await?;
    Ok(())
}

/// Deletes a message.
#[tauri::command]
#[specta::specta]
pub async fn delete_voicemail<R: Runtime>(
    _app: AppHandle<R>,

    state: State<'_, AppState<R>>,
    id: String,
) -> Result<(), ApiError> {
    let mailbox = state.mailbox().await?;
    mailbox.delete(&id).await?;
    Ok(())
}

/// The forwarding rules.
#[tauri::command]
#[specta::specta]
pub async fn forwarding_rules<R: Runtime>(
    _app: AppHandle<R>,

    state: State<'_, AppState<R>>,
) -> Result<ForwardingRules, ApiError> {
    let mailbox = state.mailbox().await?;
    Ok(mailbox.rules().await?)
}

/// Replaces the forwarding rules; returns them as stored.
#[tauri::command]
#[specta::specta]
pub async fn set_forwarding_rules<R: Runtime>(
    _app: AppHandle<R>,

    state: State<'_, AppState<R>>,
    rules: ForwardingRules,
) -> Result<ForwardingRules, ApiError> {
    let mailbox = state.mailbox().await?;
    Ok(mailbox.set_rules(&rules).await?)
}

fn decode_base64(data: &str) -> Result<Vec<u8>, ApiError> {
    base64::engine::general_purpose::STANDARD
        .decode(data.trim())
        .map_err(|e| ApiError::new(ErrorCode::CommandMalformed, format!("not base64: {e}")))
}

/// Sets the greeting callers hear (a WAV file, base64).
#[tauri::command]
#[specta::specta]
pub async fn upload_greeting<R: Runtime>(
    _app: AppHandle<R>,

    state: State<'_, AppState<R>>,
    wav_base64: String,
) -> Result<(), ApiError> {
    let wav = decode_base64(&wav_base64)?;
    let mailbox = state.mailbox().await?;
    Ok(mailbox.set_greeting(wav.into()).await?)
}

/// Back to the default greeting.
#[tauri::command]
#[specta::specta]
pub async fn reset_greeting<R: Runtime>(
    _app: AppHandle<R>,
    state: State<'_, AppState<R>>,
) -> Result<(), ApiError> {
    let mailbox = state.mailbox().await?;
    Ok(mailbox.reset_greeting().await?)
}

/// Keeps an audio file as the ringtone (copied into the app's data) and rings with it.
#[tauri::command]
#[specta::specta]
pub async fn save_ringtone<R: Runtime>(
    _app: AppHandle<R>,

    state: State<'_, AppState<R>>,
    file_name: String,
    data_base64: String,
) -> Result<(), ApiError> {
    let data = decode_base64(&data_base64)?;
    let extension = std::path::Path::new(&file_name)
        .extension()
        .and_then(|e| e.to_str())
        .filter(|e| e.len() <= 5 && e.chars().all(|c| c.is_ascii_alphanumeric()))
        .unwrap_or("audio")
        .to_ascii_lowercase();
    let dir = state.store.dir().join("ringtones");
    let path = dir.join(format!("ringtone.{extension}"));
    let written = std::fs::create_dir_all(&dir).and_then(|_| std::fs::write(&path, data));
    written.map_err(|e| {
        ApiError::new(
            ErrorCode::SettingsFailed,
            format!("The ringtone could not be saved: {e}"),
        )
    })?;
    state
        .agent()
        .await?
        .execute(Command::SetRingtone {
            path: Some(path.to_string_lossy().into_owned()),
        })
        .await?;
    Ok(())
}

/// The IPC surface on one runtime: the commands (monomorphised for it) and the events.
macro_rules! specta_builder {
    ($runtime:ty) => {{
        let commands: tauri_specta::Commands<$runtime> = tauri_specta::collect_commands![
            execute::<$runtime>,
            session::<$runtime>,
            take_pending_dial::<$runtime>,
            settings::<$runtime>,
            save_account::<$runtime>,
            use_demo::<$runtime>,
            save_preferences::<$runtime>,
            history::<$runtime>,
            save_history::<$runtime>,
            voicemail::<$runtime>,
            play_voicemail::<$runtime>,
            stop_playback::<$runtime>,
            mark_voicemail_heard::<$runtime>,
            delete_voicemail::<$runtime>,
            forwarding_rules::<$runtime>,
            set_forwarding_rules::<$runtime>,
            upload_greeting::<$runtime>,
            reset_greeting::<$runtime>,
            save_ringtone::<$runtime>,
        ];
        tauri_specta::Builder::<$runtime>::new()
            // One shape per type: the UI reads and writes the same JSON.
            .disable_serde_phases()
            .commands(commands)
            .events(tauri_specta::collect_events![
                CoreEvent,
                DialRequested,
                SessionChanged
            ])
    }};
}

/// A runtime the app can run on: the real one, and Tauri's mock runtime in tests.
pub trait IpcRuntime: Runtime {
    /// The IPC surface on this runtime.
    fn specta() -> tauri_specta::Builder<Self>;
}

impl IpcRuntime for tauri::Wry {
    fn specta() -> tauri_specta::Builder<Self> {
        specta_builder!(tauri::Wry)
    }
}

#[cfg(test)]
impl IpcRuntime for tauri::test::MockRuntime {
    fn specta() -> tauri_specta::Builder<Self> {
        specta_builder!(tauri::test::MockRuntime)
    }
}

/// The generated TypeScript (what `ui/src/bindings.ts` must hold).
pub fn typescript() -> Result<String, String> {
    let dir = std::env::temp_dir().join(format!("hookflash-bindings-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let path = dir.join("bindings.ts");
    <tauri::Wry as IpcRuntime>::specta()
        .export(
            specta_typescript::Typescript::default()
                .header("// Generated from the Rust types by tauri-specta: run `cargo test -p hookflash --lib bindings` to refresh; do not edit.\n/* eslint-disable */"),
            &path,
        )
        .map_err(|e| e.to_string())?;
    let text = std::fs::read_to_string(&path).map_err(|e| e.to_string());
    let _ = std::fs::remove_dir_all(&dir);
    text
}

#[cfg(test)]
mod tests {
    /// The TypeScript the UI compiles against is what the Rust types say: regenerate with
    /// `UPDATE_BINDINGS=1 cargo test -p hookflash --lib bindings`.
    #[test]
    fn bindings_match_the_rust_types() {
        let generated = super::typescript().expect("the IPC types export to TypeScript");
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../ui/src/bindings.ts");
        if std::env::var("UPDATE_BINDINGS").is_ok_and(|v| v == "1") {
            std::fs::write(&path, &generated).expect("write the bindings");
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == generated,
            "ui/src/bindings.ts has drifted from the Rust types: run \
             `UPDATE_BINDINGS=1 cargo test -p hookflash --lib bindings` and commit it"
        );
    }
}
