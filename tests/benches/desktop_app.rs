//! The desktop app's figures (issue: the desktop app), on the release build with its front
//! end embedded (`scripts/bench` builds it): the .deb's size, launch to an interactive
//! window (cold and warm), memory (PSS summed over the app and its WebKit processes) idle and
//! in one call, and the time from a command to the event's change painted on screen.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hookflash_tests::desktop::{tid, Desktop, Window};
use serde_json::json;

fn release_app() -> PathBuf {
    let p = hookflash_tests::bin_dir()
        .parent()
        .expect("target")
        .join("release/hookflash");
    assert!(p.exists(), "build it first: npx tauri build --no-bundle");
    p
}

/// PSS (KiB) of the app and its WebKit processes, by command name.
fn pss_by_process(group: u32) -> Vec<(String, u64)> {
    hookflash_tests::desktop::group_processes(group)
        .into_iter()
        .filter(|(_, comm)| comm.starts_with("hookflash") || comm.starts_with("WebKit"))
        .map(|(pid, comm)| {
            let pss = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
                .unwrap_or_default()
                .lines()
                .find_map(|l| l.strip_prefix("Pss:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                .unwrap_or(0);
            (comm, pss)
        })
        .collect()
}

fn report_memory(label: &str, group: u32) -> u64 {
    let procs = pss_by_process(group);
    let total: u64 = procs.iter().map(|(_, k)| k).sum();
    let detail: Vec<String> = procs
        .iter()
        .map(|(c, k)| format!("{c} {:.0}", *k as f64 / 1024.0))
        .collect();
    println!(
        "memory {label}: {:.0} MiB PSS ({})",
        total as f64 / 1024.0,
        detail.join(", ")
    );
    total
}

fn launch(desktop: &Desktop, app: &Path) -> (Window, Duration, Duration) {
    let t0 = Instant::now();
    let window = desktop.open(app);
    window.wait(
        &tid("address-input"),
        Duration::from_secs(30),
        "interactive",
    );
    let interactive = t0.elapsed();
    window.wait(
        &format!("{}[data-state=\"connected\"]", tid("connection-banner")),
        Duration::from_secs(30),
        "signed in",
    );
    (window, interactive, t0.elapsed())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    let app = release_app();
    if let Some(deb) = std::fs::read_dir(app.parent().unwrap().join("bundle/deb"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
    {
        let size = std::fs::metadata(&deb).map(|m| m.len()).unwrap_or(0);
        println!(
            ".deb size: {:.2} MiB ({}) — target ≤ 15 MB",
            size as f64 / 1_048_576.0,
            deb.display()
        );
    }
    println!(
        "release binary: {:.1} MiB",
        std::fs::metadata(&app).map(|m| m.len()).unwrap_or(0) as f64 / 1_048_576.0
    );

    let desktop = Desktop::start("bench", 440, &[]);
    let (window, interactive, signed_in) = launch(&desktop, &app);
    println!(
        "launch (cold): interactive window {:.0} ms, signed in {:.0} ms",
        interactive.as_secs_f64() * 1e3,
        signed_in.as_secs_f64() * 1e3
    );
    desktop.close_app(window);
    let mut warm = Vec::new();
    for _ in 0..3 {
        let (window, interactive, signed_in) = launch(&desktop, &app);
        warm.push((interactive, signed_in));
        desktop.close_app(window);
    }
    for (i, (interactive, signed_in)) in warm.iter().enumerate() {
        println!(
            "launch (warm {}): interactive window {:.0} ms, signed in {:.0} ms — target ≤ 1 s",
            i + 1,
            interactive.as_secs_f64() * 1e3,
            signed_in.as_secs_f64() * 1e3
        );
    }

    let (window, _, _) = launch(&desktop, &app);
    std::thread::sleep(Duration::from_secs(5));
    let idle = report_memory("idle (app + WebKit)", desktop.process_group());
    window.find(&tid("call-contact-ada")).expect("Ada").click();
    let item = window.wait(
        &format!("{}[data-state=\"Connected\"]", tid("call-item")),
        Duration::from_secs(20),
        "Ada answers",
    );
    let call_id = item.attr("data-call-id").expect("call id");
    std::thread::sleep(Duration::from_secs(5));
    let in_call = report_memory("in one call (app + WebKit)", desktop.process_group());
    println!(
        "memory target: ≤ 10 % above a bare Tauri window's 207–260 MiB PSS; idle {:.0}, in call {:.0} MiB",
        idle as f64 / 1024.0,
        in_call as f64 / 1024.0
    );

    // Command → core → event → IPC → store → DOM → painted frame: mute and unmute, timed in
    // the page: when the core's `isMutedChanged` reaches the page (a listener of our own on the
    // same event channel as the UI's), when the UI has changed the call's mute button, and
    // the next animation frame after that (the frame that shows it).
    let script = r#"
        const [callId, muted, done] = arguments;
        const tauri = window.__TAURI_INTERNALS__;
        const item = document.querySelector(`[data-testid="call-item"][data-call-id="${callId}"]`);
        const button = item.querySelector('[data-testid="call-mute"]');
        const before = button.getAttribute('aria-pressed');
        let tEvent = null, tDom = null;
        const handler = tauri.transformCallback((e) => {
            if (tEvent === null && e.payload && e.payload.event === 'isMutedChanged') tEvent = performance.now();
        });
        tauri.invoke('plugin:event|listen', { event: 'core-event', target: { kind: 'Any' }, handler })
          .then((listenerId) => {
            const t0 = performance.now();
            const observer = new MutationObserver(() => {
                if (tDom === null && button.getAttribute('aria-pressed') !== before) {
                    tDom = performance.now();
                    observer.disconnect();
                    requestAnimationFrame(() => {
                        const tPaint = performance.now();
                        tauri.invoke('plugin:event|unlisten', { event: 'core-event', eventId: listenerId });
                        done([t0, tEvent, tDom, tPaint]);
                    });
                }
            });
            observer.observe(item, { attributes: true, subtree: true, childList: true });
            tauri.invoke('execute', { command: { command: muted ? 'mute' : 'unmute', callId } });
          });
        setTimeout(() => done(null), 3000);
    "#;
    let (mut command_to_event, mut event_to_dom, mut dom_to_frame, mut event_to_frame) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for i in 0..60 {
        let v = window.script_async(script, json!([call_id, i % 2 == 0]));
        let t: Vec<f64> = v
            .as_array()
            .map(|a| a.iter().filter_map(|x| x.as_f64()).collect())
            .unwrap_or_default();
        if let [t0, te, td, tp] = t[..] {
            command_to_event.push(te - t0);
            event_to_dom.push((td - te).max(0.0));
            dom_to_frame.push(tp - td);
            event_to_frame.push(tp - te);
        }
    }
    for (label, times) in [
        ("command to event in the page", &mut command_to_event),
        ("event to DOM updated", &mut event_to_dom),
        ("DOM updated to the next frame", &mut dom_to_frame),
        ("core event to painted frame", &mut event_to_frame),
    ] {
        times.sort_by(f64::total_cmp);
        if times.is_empty() {
            println!("{label}: no measurement");
        } else {
            println!(
                "{label} ({} runs): median {:.1} ms, p95 {:.1} ms",
                times.len(),
                percentile(times, 0.5),
                percentile(times, 0.95)
            );
        }
    }
    println!("target: core event to updated screen ≤ 16 ms p95");
    drop(window);
}
