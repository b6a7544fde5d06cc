//! Call set-up and footprint figures (a benchmark that prints numbers, not a timed test).
//!
//! On loopback through an in-process switchboard, over `HOOKFLASH_BENCH_CALLS` calls
//! (default 40): `startCall` → `Connected` and `startCall` → the caller's first decoded audio
//! frame, median and p95. Then a headless `hookflash-agent` process (release build, see
//! `scripts/bench`): RSS and CPU idle, and in one Opus call.
//!
//! Run with `scripts/bench`.

use std::process::Stdio;
use std::time::{Duration, Instant};

use hookflash_core::api::Event;
use hookflash_core::call::CallState;
use hookflash_tests::{bin_dir, Rig, TestAgent};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx]
}

fn report(name: &str, mut v: Vec<f64>) {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "{name:<40} n={:<3} median={:>7.2} ms  p95={:>7.2} ms  min={:>7.2} ms  max={:>7.2} ms",
        v.len(),
        percentile(&v, 0.5),
        percentile(&v, 0.95),
        v[0],
        v[v.len() - 1]
    );
}

async fn auto_accept(mut b: TestAgent) {
    loop {
        match b.events.recv().await {
            Ok(Event::IncomingCall { call_id, .. }) => {
                let call = b.agent.call(&call_id);
                tokio::spawn(async move {
                    let _ = call.accept().await;
                });
            }
            Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
            Err(_) => return,
        }
    }
}

async fn call_setup(calls: usize) {
    let rig = Rig::start().await;
    let mut a = rig.agent("alice", 440.0).await;
    let b = rig.agent("bob", 880.0).await;
    tokio::spawn(auto_accept(b));
    let (mut connected, mut audio) = (Vec::new(), Vec::new());
    for _ in 0..calls {
        let t0 = Instant::now();
        let id = a.agent.start_call("bob").await.expect("startCall");
        let (mut t_conn, mut t_audio) = (None, None);
        while t_conn.is_none() || t_audio.is_none() {
            let e = a.wait_for("connected + audio", |_| true).await;
            match e {
                Event::CallStateChanged {
                    call_id,
                    state: CallState::Connected,
                    ..
                } if call_id == id => t_conn = Some(t0.elapsed()),
                Event::RemoteAudioStarted { call_id } if call_id == id => {
                    t_audio = Some(t0.elapsed())
                }
                Event::CallStateChanged {
                    call_id,
                    state: CallState::Disconnected,
                    ..
                } if call_id == id => {
                    panic!("call ended during set-up")
                }
                _ => {}
            }
        }
        connected.push(t_conn.unwrap().as_secs_f64() * 1e3);
        audio.push(t_audio.unwrap().as_secs_f64() * 1e3);
        a.agent.call(&id).hang_up().await.expect("hang up");
        a.wait_state(&id, CallState::Disconnected).await;
    }
    report("startCall -> Connected", connected);
    report("startCall -> first audio frame (caller)", audio);
    a.agent.shutdown().await;
    rig.switchboard.shutdown().await;
}

fn proc_stats(pid: u32) -> (f64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|x| x.1).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|u| u.parse::<f64>().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.0);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss_kb = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    (ticks / 100.0, rss_kb)
}

async fn measure(pid: u32, label: &str, secs: u64) {
    let (c0, _) = proc_stats(pid);
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let (c1, rss) = proc_stats(pid);
    let cpu = (c1 - c0) / t0.elapsed().as_secs_f64() * 100.0;
    println!(
        "{label:<40} RSS={:>6.1} MB  CPU={cpu:>5.2} % of one core (over {secs} s)",
        rss as f64 / 1024.0
    );
}

async fn footprint() {
    let agent_bin = bin_dir().join("hookflash-agent");
    if !agent_bin.exists() {
        println!(
            "(skipping footprint: build release binaries first: cargo build --release --bins)"
        );
        return;
    }
    let rig = Rig::start().await;
    let server = rig.switchboard.local_addr().to_string();
    let b = rig.agent("bob", 880.0).await;
    tokio::spawn(auto_accept(b));
    let token = rig.token("alice").to_string();
    let mut child = Command::new(&agent_bin)
        .args([
            "--server",
            &server,
            "--domain",
            rig.switchboard.domain(),
            "--mic",
            "tone:440",
        ])
        .env("HOOKFLASH_TOKEN", &token)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn agent");
    let pid = child.id().expect("pid");
    let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut stdin = child.stdin.take().unwrap();
    while let Ok(Some(l)) = out.next_line().await {
        if l.contains("\"newValue\":\"Connected\"") {
            break;
        }
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    measure(pid, "headless agent idle", 5).await;
    stdin
        .write_all(b"{\"command\":\"startCall\",\"target\":\"bob\"}\n")
        .await
        .unwrap();
    while let Ok(Some(l)) = out.next_line().await {
        if l.contains("remoteAudioStarted") {
            break;
        }
    }
    tokio::spawn(async move { while let Ok(Some(_)) = out.next_line().await {} });
    tokio::time::sleep(Duration::from_secs(1)).await;
    measure(pid, "headless agent in one Opus call", 10).await;
    let _ = child.kill().await;
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` asks for a listing; this bench has no tests
    }
    let calls = std::env::var("HOOKFLASH_BENCH_CALLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40);
    call_setup(calls).await;
    footprint().await;
}
