//! The desktop around the window: `sip:`/`tel:`/`callto:` links, the tray icon with the
//! connection state, do-not-disturb and Quit, and a notification with Answer and Decline for
//! an incoming call while the window is not in front.

use hookflash_core::api::{Command, Event};
use hookflash_core::registration::{ConnectionReason, ConnectionState};
use tauri::menu::{CheckMenuItem, Menu, MenuItem, PredefinedMenuItem};
use tauri::tray::{TrayIcon, TrayIconBuilder};
use tauri::{AppHandle, Manager, Runtime};
use tauri_specta::Event as _;

use crate::ipc::DialRequested;
use crate::settings::Language;
use crate::AppState;

/// The address a `sip:`, `sips:`, `tel:` or `callto:` link asks to dial, from a command
/// line (the first such argument). `callto://alice` and `callto:+1555` become `alice` and
/// `tel:+1555`; other links are kept as they are.
pub fn dial_address(args: &[String]) -> Option<String> {
    args.iter().find_map(|arg| {
        let arg = arg.trim();
        let lower = arg.to_ascii_lowercase();
        let (scheme, rest) = lower.split_once(':')?;
        let rest_original = &arg[scheme.len() + 1..];
        match scheme {
            "sip" | "sips" | "tel" if !rest.is_empty() => Some(arg.to_owned()),
            "callto" => {
                let target = rest_original.trim_start_matches('/');
                let target = percent_decode(target);
                let target = target.trim();
                if target.is_empty() || target.contains(char::is_whitespace) {
                    None
                } else if target.starts_with('+') || target.chars().all(|c| c.is_ascii_digit()) {
                    Some(format!("tel:{target}"))
                } else {
                    Some(target.to_owned())
                }
            }
            _ => None,
        }
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
            if let Some(b) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Brings the window to the front.
pub fn show_window<R: Runtime>(app: &AppHandle<R>) {
    if let Some(window) = app.get_webview_window("main") {
        let _ = window.unminimize();
        let _ = window.show();
        let _ = window.set_focus();
    }
}

/// A link reached us (a second launch, or our own start): fill the dialler.
pub fn open_link<R: Runtime>(app: &AppHandle<R>, args: &[String]) {
    let Some(address) = dial_address(args) else {
        return;
    };
    show_window(app);
    tracing::info!("a call link was opened");
    if let Err(e) = (DialRequested {
        address,
        call: false,
    })
    .emit(app)
    {
        tracing::warn!(error = %e, "the dial request could not reach the window");
    }
}

struct Texts {
    show: &'static str,
    dnd: &'static str,
    quit: &'static str,
    connected: &'static str,
    connecting: &'static str,
    invalid_token: &'static str,
    connection_issue: &'static str,
    certificate_not_trusted: &'static str,
    incoming: &'static str,
    answer: &'static str,
    decline: &'static str,
}

fn texts(language: Language) -> &'static Texts {
    const EN: Texts = Texts {
        show: "Show Hookflash",
        dnd: "Do not disturb",
        quit: "Quit",
        connected: "Hookflash — connected",
        connecting: "Hookflash — connecting…",
        invalid_token: "Hookflash — sign in again",
        connection_issue: "Hookflash — connection lost, retrying",
        certificate_not_trusted: "Hookflash — server certificate not trusted",
        incoming: "Incoming call",
        answer: "Answer",
        decline: "Decline",
    };
    const KO: Texts = Texts {
        show: "Hookflash 보기",
        dnd: "방해 금지",
        quit: "종료",
        connected: "Hookflash — 연결됨",
        connecting: "Hookflash — 연결 중…",
        invalid_token: "Hookflash — 다시 로그인하세요",
        connection_issue: "Hookflash — 연결 끊김, 재시도 중",
        certificate_not_trusted: "Hookflash — 서버 인증서를 신뢰할 수 없음",
        incoming: "수신 전화",
        answer: "받기",
        decline: "거절",
    };
    const ZH: Texts = Texts {
        show: "显示 Hookflash",
        dnd: "勿扰",
        quit: "退出",
        connected: "Hookflash — 已连接",
        connecting: "Hookflash — 正在连接…",
        invalid_token: "Hookflash — 请重新登录",
        connection_issue: "Hookflash — 连接中断，正在重试",
        certificate_not_trusted: "Hookflash — 服务器证书不受信任",
        incoming: "来电",
        answer: "接听",
        decline: "拒绝",
    };
    let language = match language {
        Language::System => system_language(),
        other => other,
    };
    match language {
        Language::Ko => &KO,
        Language::Zh => &ZH,
        _ => &EN,
    }
}

/// The system's language from the process locale (`LC_ALL`, `LC_MESSAGES`, `LANG`):
/// Korean, Chinese, else English.
pub fn system_language() -> Language {
    let lang = std::env::var("LC_ALL")
        .ok()
        .filter(|v| !v.is_empty())
        .or_else(|| std::env::var("LC_MESSAGES").ok().filter(|v| !v.is_empty()))
        .or_else(|| std::env::var("LANG").ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    if lang.starts_with("ko") {
        Language::Ko
    } else if lang.starts_with("zh") {
        Language::Zh
    } else {
        Language::En
    }
}

/// The tray icon and its menu items, kept to update them.
pub struct Tray<R: Runtime> {
    icon: TrayIcon<R>,
    show: MenuItem<R>,
    dnd: CheckMenuItem<R>,
    quit: MenuItem<R>,
}

/// Creates the tray icon (where the desktop has a tray host).
pub fn tray<R: Runtime>(app: &AppHandle<R>, language: Language) -> tauri::Result<Tray<R>> {
    let t = texts(language);
    let show = MenuItem::with_id(app, "show", t.show, true, None::<&str>)?;
    let dnd = CheckMenuItem::with_id(app, "dnd", t.dnd, true, false, None::<&str>)?;
    let quit = MenuItem::with_id(app, "quit", t.quit, true, None::<&str>)?;
    let separator = PredefinedMenuItem::separator(app)?;
    let menu = Menu::with_items(app, &[&show, &dnd, &separator, &quit])?;
    let mut builder = TrayIconBuilder::with_id("main")
        .tooltip(t.connecting)
        .menu(&menu)
        .on_menu_event(|app, event| match event.id().as_ref() {
            "show" => show_window(app),
            "dnd" => {
                let app = app.clone();
                tauri::async_runtime::spawn(async move {
                    let state = app.state::<AppState<R>>();
                    let enabled = state
                        .tray
                        .lock()
                        .ok()
                        .and_then(|t| t.as_ref().map(|t| t.dnd.is_checked().unwrap_or(false)))
                        .unwrap_or(false);
                    if let Ok(agent) = state.agent().await {
                        let _ = agent.execute(Command::SetDoNotDisturb { enabled }).await;
                    }
                });
            }
            "quit" => {
                let app = app.clone();
                tauri::async_runtime::spawn(async move {
                    app.state::<AppState<R>>().shutdown().await;
                    app.exit(0);
                });
            }
            _ => {}
        });
    if let Some(icon) = app.default_window_icon() {
        builder = builder.icon(icon.clone());
    }
    let icon = builder.build(app)?;
    Ok(Tray {
        icon,
        show,
        dnd,
        quit,
    })
}

/// Switches the tray's words to `language`.
pub fn apply_language<R: Runtime>(app: &AppHandle<R>, language: Language) {
    let state = app.state::<AppState<R>>();
    let Ok(tray) = state.tray.lock() else { return };
    if let Some(tray) = tray.as_ref() {
        let t = texts(language);
        let _ = tray.show.set_text(t.show);
        let _ = tray.dnd.set_text(t.dnd);
        let _ = tray.quit.set_text(t.quit);
    }
    drop(tray);
    if let Ok(mut l) = state.language.lock() {
        *l = language;
    };
}

/// The desktop's part of a core event: the tray's state, a notification for a call.
pub fn on_event<R: Runtime>(app: &AppHandle<R>, event: &Event) {
    let state = app.state::<AppState<R>>();
    let language = state.language.lock().map(|l| *l).unwrap_or_default();
    let t = texts(language);
    match event {
        Event::ConnectionStateChanged {
            new_value, reason, ..
        } => {
            let tip = match (new_value, reason) {
                (ConnectionState::Connected, _) => t.connected,
                (_, ConnectionReason::InvalidToken) => t.invalid_token,
                (_, ConnectionReason::ConnectionIssue) => t.connection_issue,
                (_, ConnectionReason::CertificateNotTrusted) => t.certificate_not_trusted,
                _ => t.connecting,
            };
            if let Ok(tray) = state.tray.lock() {
                if let Some(tray) = tray.as_ref() {
                    let _ = tray.icon.set_tooltip(Some(tip));
                }
            }
        }
        Event::DoNotDisturbChanged { enabled } => {
            if let Ok(tray) = state.tray.lock() {
                if let Some(tray) = tray.as_ref() {
                    let _ = tray.dnd.set_checked(*enabled);
                }
            }
        }
        Event::IncomingCall {
            call_id,
            caller_info,
            transferor_info,
            ..
        } => {
            let focused = app
                .get_webview_window("main")
                .and_then(|w| w.is_focused().ok())
                .unwrap_or(false);
            if !focused {
                let who = caller_info
                    .display_name
                    .clone()
                    .unwrap_or_else(|| caller_info.identifier.clone());
                let body = match transferor_info {
                    Some(by) => format!(
                        "{who} ← {}",
                        by.display_name.clone().unwrap_or(by.identifier.clone())
                    ),
                    None => who,
                };
                notify_call(app.clone(), call_id.clone(), body, t);
            }
        }
        _ => {}
    }
}

/// Shows the incoming-call notification and acts on its buttons, on a thread of its own
/// (the desktop's notification service answers over D-Bus, blocking).
fn notify_call<R: Runtime>(app: AppHandle<R>, call_id: String, body: String, t: &'static Texts) {
    std::thread::spawn(move || {
        let shown = notify_rust::Notification::new()
            .appname("Hookflash")
            .summary(t.incoming)
            .body(&body)
            .action("answer", t.answer)
            .action("decline", t.decline)
            .hint(notify_rust::Hint::Category("im.received".into()))
            .timeout(notify_rust::Timeout::Milliseconds(30_000))
            .show();
        let handle = match shown {
            Ok(handle) => handle,
            Err(e) => {
                tracing::debug!(error = %e, "no notification service");
                return;
            }
        };
        handle.wait_for_action(move |action| {
            let command = match action {
                "answer" => Command::Accept {
                    call_id: call_id.clone(),
                },
                "decline" => Command::Reject {
                    call_id: call_id.clone(),
                },
                _ => return,
            };
            if action == "answer" {
                show_window(&app);
            }
            let app = app.clone();
            tauri::async_runtime::spawn(async move {
                if let Ok(agent) = app.state::<AppState<R>>().agent().await {
                    let _ = agent.execute(command).await;
                }
            });
        });
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn call_links_become_addresses_to_dial() {
        assert_eq!(
            dial_address(&args(&["hookflash", "sip:ada@hookflash.local"])),
            Some("sip:ada@hookflash.local".into()),
            "sip: links are dialled as they are"
        );
        assert_eq!(
            dial_address(&args(&["hookflash", "tel:+1-555-0100"])),
            Some("tel:+1-555-0100".into()),
            "tel: links too"
        );
        assert_eq!(
            dial_address(&args(&["hookflash", "callto://+15550100"])),
            Some("tel:+15550100".into()),
            "callto: numbers become tel: numbers"
        );
        assert_eq!(
            dial_address(&args(&["hookflash", "callto:ada"])),
            Some("ada".into()),
            "callto: names become user names"
        );
        assert_eq!(
            dial_address(&args(&["hookflash", "callto://Ada%20Lovelace"])),
            None,
            "a name with spaces is no address"
        );
        assert_eq!(
            dial_address(&args(&["hookflash", "--flag", "https://example.org"])),
            None,
            "other links are not ours"
        );
        assert_eq!(dial_address(&args(&["hookflash", "sip:"])), None, "empty");
    }
}
