/// The commands the UI may call: each gets an `allow-…` permission, and the window's
/// capability (`capabilities/main-window.json`) grants exactly these.
const COMMANDS: &[&str] = &[
    "execute",
    "session",
    "take_pending_dial",
    "settings",
    "save_account",
    "use_demo",
    "save_preferences",
    "history",
    "save_history",
    "voicemail",
    "play_voicemail",
    "stop_playback",
    "mark_voicemail_heard",
    "delete_voicemail",
    "forwarding_rules",
    "set_forwarding_rules",
    "upload_greeting",
    "reset_greeting",
    "save_ringtone",
];

fn main() {
    tauri_build::try_build(
        tauri_build::Attributes::new()
            .app_manifest(tauri_build::AppManifest::new().commands(COMMANDS)),
    )
    .expect("the Tauri build configuration is valid");
}
