//! The IPC surface through Tauri's mock runtime, without a window: the commands the UI
//! sends, as JSON, reach the core, and the core's events come back as `core-event`.
//! The app runs as on first start: the embedded demo switchboard on loopback.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tauri::test::{get_ipc_response, mock_builder, mock_context, noop_assets, MockRuntime};
use tauri::webview::InvokeRequest;
use tauri::{Listener, WebviewWindow, WebviewWindowBuilder};

fn invoke(window: &WebviewWindow<MockRuntime>, cmd: &str, body: Value) -> Result<Value, Value> {
    get_ipc_response(
        window,
        InvokeRequest {
            cmd: cmd.into(),
            callback: tauri::ipc::CallbackFn(0),
            error: tauri::ipc::CallbackFn(1),
            url: "tauri://localhost".parse().expect("url"),
            body: body.into(),
            headers: Default::default(),
            invoke_key: tauri::test::INVOKE_KEY.to_string(),
        },
    )
    .map(|b| b.deserialize::<Value>().expect("JSON"))
}

#[test]
fn commands_reach_the_core_and_its_events_come_back() {
    let home = std::env::temp_dir().join(format!("hookflash-ipc-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&home);
    std::fs::create_dir_all(&home).expect("a home");
    // SAFETY-free in edition 2021: set before the app (and its threads) start.
    std::env::set_var("XDG_DATA_HOME", home.join("data"));
    std::env::set_var("XDG_CACHE_HOME", home.join("cache"));
    std::env::set_var("HOOKFLASH_VIRTUAL_AUDIO", "1");
    std::env::set_var("HOOKFLASH_DEMO_VOICES", "tones");

    let mut app = crate::configure(mock_builder(), false)
        .build(mock_context(noop_assets()))
        .expect("the app builds on the mock runtime");
    // One turn of the (mock) event loop runs the app's set-up, as the real loop does.
    #[allow(deprecated)]
    app.run_iteration(|_, _| {});
    let window = WebviewWindowBuilder::new(&app, "main", Default::default())
        .build()
        .expect("a window");
    let (tx, rx) = mpsc::channel::<Value>();
    app.listen_any("core-event", move |event| {
        if let Ok(v) = serde_json::from_str::<Value>(event.payload()) {
            let _ = tx.send(v);
        }
    });

    let session = invoke(&window, "session", json!({})).expect("the session starts");
    assert_eq!(
        session["server"], "demo",
        "first run is on the demo switchboard"
    );
    let directory: Vec<&str> = session["directory"]
        .as_array()
        .expect("a directory")
        .iter()
        .filter_map(|c| c["user"].as_str())
        .collect();
    assert!(
        directory.contains(&"ada"),
        "the demo contacts are listed: {directory:?}"
    );

    let settings = invoke(&window, "settings", json!({})).expect("settings");
    assert!(settings["account"].is_null(), "no account on first run");

    let wait = |what: &str, ok: &dyn Fn(&Value) -> bool| -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(v) if ok(&v) => return v,
                Ok(_) => {}
                Err(_) => panic!("no {what} event came back"),
            }
        }
    };
    // Connected may have come before we listened; the session says so either way.
    if session["connectionState"] != "Connected" {
        wait("connectionStateChanged", &|v| {
            v["event"] == "connectionStateChanged" && v["newValue"] == "Connected"
        });
    }

    let call = invoke(
        &window,
        "execute",
        json!({"command": {"command": "startCall", "target": "ada"}}),
    )
    .expect("startCall succeeds");
    let call_id = call.as_str().expect("the new call's id").to_owned();
    wait("callStateChanged Connected", &|v| {
        v["event"] == "callStateChanged" && v["callId"] == call_id && v["state"] == "Connected"
    });

    let two_targets = invoke(
        &window,
        "execute",
        json!({"command": {"command": "transfer", "callId": call_id,
            "targetParticipant": "bob", "targetCallId": "x"}}),
    );
    assert!(
        two_targets.is_err(),
        "a transfer naming two targets is refused at the IPC boundary: {two_targets:?}"
    );
    let no_such_call = invoke(
        &window,
        "execute",
        json!({"command": {"command": "hold", "callId": "nope"}}),
    )
    .expect_err("holding a call that does not exist fails");
    assert_eq!(
        no_such_call["code"], "call.not_found",
        "errors carry their stable code: {no_such_call}"
    );
    let dtmf = invoke(
        &window,
        "execute",
        json!({"command": {"command": "sendDtmf", "callId": call_id, "tones": "12"}}),
    );
    assert!(dtmf.is_ok(), "DTMF succeeds once sent: {dtmf:?}");

    invoke(
        &window,
        "execute",
        json!({"command": {"command": "hangUp", "callId": call_id}}),
    )
    .expect("hang up");
    wait("callStateChanged Disconnected", &|v| {
        v["event"] == "callStateChanged" && v["callId"] == call_id && v["state"] == "Disconnected"
    });
    let refused = invoke(
        &window,
        "execute",
        json!({"command": {"command": "signOut"}}),
    )
    .expect_err("the window cannot sign the app out behind the settings' back");
    assert_eq!(refused["code"], "command.malformed", "{refused}");

    // Settings → Account: sign in to a real server (a switchboard of its own here).
    let server = tauri::async_runtime::block_on(hookflash_switchboard::Switchboard::start(
        hookflash_switchboard::Config::local("another secret"),
    ))
    .expect("a second switchboard");
    let token = server
        .issue_token("carol", Duration::from_secs(600))
        .to_string();
    let bad = invoke(
        &window,
        "save_account",
        json!({"account": {"server": server.local_addr().to_string(), "domain": server.domain(),
            "transport": "udp", "user": "carol", "displayName": "Carol", "secret": null}}),
    )
    .expect_err("an account without a credential is refused");
    assert_eq!(bad["code"], "settings.failed", "{bad}");
    let remote = invoke(
        &window,
        "save_account",
        json!({"account": {"server": server.local_addr().to_string(), "domain": server.domain(),
            "transport": "tcp", "user": "carol", "displayName": "Carol",
            "secret": {"kind": "token", "token": token}, "mediaProfiles": ["sdes", "webrtc"]}}),
    )
    .expect("signing in to a real server");
    assert_eq!(
        remote["server"], "remote",
        "the session is on the account's server"
    );
    assert_eq!(remote["user"], "carol", "as the account's user");
    let deadline = Instant::now() + Duration::from_secs(10);
    while invoke(&window, "session", json!({})).expect("session")["connectionState"] != "Connected"
    {
        assert!(
            Instant::now() < deadline,
            "the account registers with its server"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let settings = invoke(&window, "settings", json!({})).expect("settings");
    assert_eq!(
        settings["account"]["hasSecret"], true,
        "the UI learns a secret is saved"
    );
    assert_eq!(
        settings["account"]["mediaProfiles"],
        json!(["webrtc", "sdes"]),
        "the media policy is kept, most protected first"
    );
    let file = home.join("data/settings.json");
    let stored = std::fs::read_to_string(&file).expect("the settings file");
    assert!(
        !settings.to_string().contains(&token) && stored.contains(&token),
        "the token is kept on disk but never handed back to the UI"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&file)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(
        mode, 0o600,
        "the file holding the secret is readable by the user alone"
    );

    let demo = invoke(&window, "use_demo", json!({})).expect("back to the demo");
    assert_eq!(
        demo["server"], "demo",
        "Use demo returns to the embedded switchboard"
    );
    let settings = invoke(&window, "settings", json!({})).expect("settings");
    assert!(settings["account"].is_null(), "the account is forgotten");
    assert!(
        !std::fs::read_to_string(&file)
            .unwrap_or_default()
            .contains(&token),
        "and its token with it"
    );
    tauri::async_runtime::block_on(server.shutdown());
    let _ = std::fs::remove_dir_all(&home);
}
