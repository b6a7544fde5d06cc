//! Hookflash, the desktop softphone: a thin Tauri 2 shell around `hookflash-core`.
//!
//! The shell owns one [`session::Session`] (a core `CallAgent`, and on first run the
//! embedded switchboard with its demo directory), wires the core's one API surface to the
//! window — commands in through [`ipc`], every core event out as the typed `coreEvent` — and
//! adds what only a desktop app has: settings in tauri-plugin-store, a single instance that
//! takes `sip:`/`tel:`/`callto:` links, a tray icon and call notifications ([`desktop`]).
//! There is no call, transfer or audio logic here.
//!
//! # Environment
//!
//! - `HOOKFLASH_MIC`, `HOOKFLASH_SPEAKER`: a device spec (`tone:440`, `speech:1`,
//!   `wav:FILE`; for the speaker `{n}` in a WAV path numbers each opening) added as a virtual
//!   device and selected — for tests, demos and machines without sound.
//! - `HOOKFLASH_VIRTUAL_AUDIO=1`: no sound cards at all, only virtual devices.
//! - `HOOKFLASH_DEMO_VOICES=tones`: the demo contacts talk in pure tones (tests tell them
//!   apart by frequency).
//! - `RUST_LOG`: the log filter (`tracing`).

pub mod desktop;
pub mod ipc;
pub mod session;
pub mod settings;

#[cfg(test)]
mod ipc_over_the_mock_runtime;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hookflash_core::agent::CallAgent;
use hookflash_core::audio::{DeviceManager, DeviceManagerConfig, DeviceSpec};
use hookflash_core::ErrorCode;
use hookflash_switchboard::demo::Voices;
use tauri::{AppHandle, Manager, Runtime};
use tauri_specta::Event as _;

use crate::ipc::{ApiError, CoreEvent, SessionChanged};
use crate::session::{Environment, EventSink, Session, SessionInfo};
use crate::settings::{Language, SettingsStore};

/// How long a command waits for the session to start before it gives up.
const SESSION_WAIT: Duration = Duration::from_secs(20);

/// Where the session stands.
enum Slot {
    /// Starting (at launch, or after the account changed).
    Starting,
    /// Signed in (boxed: a session is large, the other states small).
    Running(Box<Session>),
    /// It could not start: the reason, until the settings change.
    Failed(ApiError),
}

/// The app's state, shared by commands, the tray and the event forwarder.
pub struct AppState<R: Runtime> {
    store: SettingsStore<R>,
    env: Environment,
    slot: tokio::sync::RwLock<Slot>,
    pending_dial: Mutex<Option<String>>,
    tray: Mutex<Option<desktop::Tray<R>>>,
    language: Mutex<Language>,
}

impl<R: Runtime> AppState<R> {
    /// Runs `f` on the session once it has started.
    async fn with_session<T>(&self, f: impl FnOnce(&Session) -> T) -> Result<T, ApiError> {
        let deadline = tokio::time::Instant::now() + SESSION_WAIT;
        loop {
            {
                let slot = self.slot.read().await;
                match &*slot {
                    Slot::Running(session) => return Ok(f(session)),
                    Slot::Failed(e) => return Err(e.clone()),
                    Slot::Starting => {}
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ApiError::new(
                    ErrorCode::AgentNotConnected,
                    "Hookflash is still starting: try again in a moment.",
                ));
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// The signed-in agent.
    async fn agent(&self) -> Result<CallAgent, ApiError> {
        self.with_session(|s| s.agent().clone()).await
    }

    /// The voicemail service of the session's server.
    async fn mailbox(&self) -> Result<hookflash_core::mailbox::Mailbox, ApiError> {
        self.with_session(|s| s.mailbox().cloned()).await?
    }

    /// The link the app was started with, once.
    fn take_pending_dial(&self) -> Option<String> {
        self.pending_dial.lock().ok().and_then(|mut p| p.take())
    }

    /// Signs out and signs in again with the saved settings (an account, or the demo).
    async fn restart(&self, app: &AppHandle<R>) -> Result<SessionInfo, ApiError> {
        let mut slot = self.slot.write().await;
        if let Slot::Running(old) = std::mem::replace(&mut *slot, Slot::Starting) {
            old.shutdown().await;
        }
        let started = start_session(app, &self.store, &self.env).await;
        let result = started.as_ref().map(Session::info).map_err(Clone::clone);
        *slot = match started {
            Ok(session) => Slot::Running(Box::new(session)),
            Err(e) => Slot::Failed(e),
        };
        drop(slot);
        if let Ok(info) = &result {
            let _ = (SessionChanged {
                session: info.clone(),
            })
            .emit(app);
        }
        result
    }

    /// Hangs up, signs out, stops the embedded server.
    async fn shutdown(&self) {
        let mut slot = self.slot.write().await;
        if let Slot::Running(session) = std::mem::replace(&mut *slot, Slot::Starting) {
            session.shutdown().await;
        }
    }
}

async fn start_session<R: Runtime>(
    app: &AppHandle<R>,
    store: &SettingsStore<R>,
    env: &Environment,
) -> Result<Session, ApiError> {
    let handle = app.clone();
    let sink: EventSink = Arc::new(move |event| {
        desktop::on_event(&handle, &event);
        if let Err(e) = CoreEvent(event).emit(&handle) {
            tracing::debug!(error = %e, "an event could not reach the window");
        }
    });
    match store.account() {
        Some(account) => Session::remote(env, &account, sink).await,
        None => Session::demo(env, sink).await,
    }
}

/// The sound devices: the machine's, plus any virtual ones the environment asks for.
fn devices(settings_path: std::path::PathBuf) -> DeviceManager {
    let virtual_only = std::env::var("HOOKFLASH_VIRTUAL_AUDIO").is_ok_and(|v| v == "1");
    let devices = DeviceManager::new(DeviceManagerConfig {
        system_devices: !virtual_only,
        settings_path: Some(settings_path),
        ..DeviceManagerConfig::default()
    });
    if let Some(spec) = env_spec("HOOKFLASH_MIC") {
        devices.add_virtual_microphone(
            "virtual:env-mic",
            &format!("Test input ({spec})"),
            Arc::new(move || spec.open_source()),
        );
        if let Err(e) = devices.select_microphone("virtual:env-mic") {
            tracing::warn!(error = %e, "HOOKFLASH_MIC could not be selected");
        }
    }
    if let Some(spec) = env_spec("HOOKFLASH_SPEAKER") {
        let openings = Arc::new(AtomicU64::new(0));
        devices.add_virtual_speaker(
            "virtual:env-speaker",
            &format!("Test output ({spec})"),
            Arc::new(move || match &spec {
                DeviceSpec::Wav(path) => {
                    let n = openings.fetch_add(1, Ordering::Relaxed);
                    let path = path.to_string_lossy().replace("{n}", &n.to_string());
                    DeviceSpec::Wav(path.into()).open_sink()
                }
                other => other.open_sink(),
            }),
        );
        if let Err(e) = devices.select_speaker("virtual:env-speaker") {
            tracing::warn!(error = %e, "HOOKFLASH_SPEAKER could not be selected");
        }
    }
    devices
}

fn env_spec(name: &str) -> Option<DeviceSpec> {
    let value = std::env::var(name).ok()?;
    match value.parse::<DeviceSpec>() {
        Ok(spec) => Some(spec),
        Err(e) => {
            tracing::warn!(variable = name, error = %e, "ignored: not a device spec");
            None
        }
    }
}

fn setup<R: Runtime>(
    app: &AppHandle<R>,
    desktop_integration: bool,
) -> Result<(), Box<dyn std::error::Error>> {
    let dir = app.path().app_data_dir()?;
    let store = SettingsStore::new(app.clone(), dir)?;
    let preferences = store.preferences();
    let voices = match std::env::var("HOOKFLASH_DEMO_VOICES").as_deref() {
        Ok("tones") => Voices::Tones,
        _ => Voices::Speech,
    };
    let env = Environment {
        devices: devices(store.devices_file()),
        data_dir: store.dir().to_owned(),
        voices,
    };
    let args: Vec<String> = std::env::args().collect();
    app.manage(AppState {
        store,
        env,
        slot: tokio::sync::RwLock::new(Slot::Starting),
        pending_dial: Mutex::new(desktop::dial_address(&args)),
        tray: Mutex::new(None),
        language: Mutex::new(preferences.language),
    });
    match desktop_integration.then(|| desktop::tray(app, preferences.language)) {
        Some(Ok(tray)) => {
            if let Ok(mut t) = app.state::<AppState<R>>().tray.lock() {
                *t = Some(tray);
            }
        }
        Some(Err(e)) => tracing::info!(error = %e, "no tray icon"),
        None => {}
    }
    let app = app.clone();
    tauri::async_runtime::spawn(async move {
        let state = app.state::<AppState<R>>();
        let mut slot = state.slot.write().await;
        *slot = match start_session(&app, &state.store, &state.env).await {
            Ok(session) => Slot::Running(Box::new(session)),
            Err(e) => {
                tracing::warn!(code = %e.code, "the session could not start");
                Slot::Failed(e)
            }
        };
    });
    Ok(())
}

/// Adds the app to a builder on any runtime: the real one with its desktop integration
/// (single instance, tray), or Tauri's mock runtime in tests, which has neither.
pub fn configure<R: ipc::IpcRuntime>(
    builder: tauri::Builder<R>,
    desktop_integration: bool,
) -> tauri::Builder<R> {
    let specta = R::specta();
    let builder = if desktop_integration {
        builder.plugin(tauri_plugin_single_instance::init(|app, argv, _cwd| {
            desktop::show_window(app);
            desktop::open_link(app, &argv);
        }))
    } else {
        builder
    };
    builder
        .plugin(tauri_plugin_store::Builder::default().build())
        .invoke_handler(specta.invoke_handler())
        .setup(move |app| {
            specta.mount_events(app);
            setup(app.handle(), desktop_integration)
        })
}

/// Runs the desktop app.
pub fn run() {
    // WebKitGTK's DMA-BUF renderer: without a GPU (virtual machines, remote desktops, Xvfb)
    // it composites every frame in software, measured here at 36 ms from a changed DOM to
    // the painted frame and 100 MiB more in the web process; with shared-memory buffers it
    // paints in 1–2 ms. Set before any thread starts; a value the user set wins.
    if std::env::var_os("WEBKIT_DISABLE_DMABUF_RENDERER").is_none() {
        std::env::set_var("WEBKIT_DISABLE_DMABUF_RENDERER", "1");
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                "info,webrtc=error,webrtc_ice=error,webrtc_dtls=error,webrtc_srtp=error,webrtc_sctp=error,webrtc_mdns=error,tao=warn,wry=warn".into()
            }),
        )
        .init();
    let app = configure(tauri::Builder::<tauri::Wry>::new(), true)
        .build(tauri::generate_context!())
        .unwrap_or_else(|e| {
            eprintln!("hookflash: the window could not be created: {e}");
            std::process::exit(1)
        });
    app.run(|app, event| {
        if let tauri::RunEvent::ExitRequested { api, code, .. } = event {
            // Sign out (and stop the demo server) before the process goes.
            if code.is_none() {
                api.prevent_exit();
                let app = app.clone();
                tauri::async_runtime::spawn(async move {
                    app.state::<AppState<tauri::Wry>>().shutdown().await;
                    app.exit(0);
                });
            }
        }
    });
}
