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

    // Command → core → event → IPC → store → painted frame: mute and unmute, timed in the page
    // from the invoke to the first animation frame after the call item shows the change.
    let script = r#"
        const [callId, muted, done] = arguments;
        const item = document.querySelector(`[data-testid="call-item"][data-call-id="${callId}"]`);
        const button = item.querySelector('[data-testid="call-mute"]');
        const before = button.getAttribute('aria-pressed');
        const t0 = performance.now();
        const observer = new MutationObserver(() => {
            if (button.getAttribute('aria-pressed') !== before) {
                observer.disconnect();
                requestAnimationFrame(() => done(performance.now() - t0));
            }
        });
        observer.observe(item, { attributes: true, subtree: true, childList: true });
        window.__TAURI_INTERNALS__.invoke('execute',
            { command: { command: muted ? 'mute' : 'unmute', callId } });
        setTimeout(() => done(-1), 2000);
    "#;
    let mut times = Vec::new();
    for i in 0..60 {
        let ms = window
            .script_async(script, json!([call_id, i % 2 == 0]))
            .as_f64()
            .unwrap_or(-1.0);
        if ms >= 0.0 {
            times.push(ms);
        }
    }
    times.sort_by(f64::total_cmp);
    if times.is_empty() {
        println!(
            "command to painted change: no measurement (the mute button shows no aria-pressed)"
        );
    } else {
        println!(
            "command to painted change ({} runs): median {:.1} ms, p95 {:.1} ms — target ≤ 16 ms p95",
            times.len(),
            percentile(&times, 0.5),
            percentile(&times, 0.95)
        );
    }
    drop(window);
}
