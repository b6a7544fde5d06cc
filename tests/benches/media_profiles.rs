//! What each media profile costs: set-up to first audio, and CPU per call, for WebRTC
//! (ICE + DTLS-SRTP), SDES-SRTP and plain RTP, between Hookflash agents and against baresip 1.0
//! in the same run, on the same topology (a network namespace with two addresses, the
//! switchboard on one, everyone's media on real interfaces, not loopback).
//!
//! For each profile, with PCMU everywhere so that only the transport differs:
//! * a `hookflash-agent` process calls another (both limited to that profile) `CALLS` times:
//!   `startCall` → the caller's first decoded audio frame, median and p95;
//! * then one call held for `HOLD_SECS`: CPU of each end above its idle CPU;
//! * the same against baresip (answering automatically, its account on that profile): set-up
//!   figures at our end, and CPU of our agent and of baresip during the same call.
//!
//! Needs root (network namespaces), baresip and release binaries: run `scripts/bench`.

use std::time::{Duration, Instant};

use hookflash_tests::baresip::{baresip, baresip_dir, quit};
use hookflash_tests::netns::{Netns, HOST_A};
use hookflash_tests::process::{AgentProcess, SwitchboardProcess};
use hookflash_tests::procstat::{cpu_seconds, percentile};

const CALLS: usize = 10;
const HOLD_SECS: u64 = 10;

/// Percent of one core each process uses over `secs`.
async fn cpu_over(pids: &[u32], secs: u64) -> Vec<f64> {
    let before: Vec<f64> = pids.iter().map(|&p| cpu_seconds(p)).collect();
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let elapsed = t0.elapsed().as_secs_f64();
    pids.iter()
        .zip(before)
        .map(|(&p, b)| (cpu_seconds(p) - b) / elapsed * 100.0)
        .collect()
}

/// `CALLS` calls from `caller` to `callee` (who answers by itself): set-up to first audio.
async fn setups(caller: &mut AgentProcess, callee: &str) -> Vec<f64> {
    let mut times = Vec::new();
    for _ in 0..CALLS {
        let t0 = Instant::now();
        let call = caller.start_call(callee).await;
        caller
            .next("first audio", |v| {
                v["event"] == "remoteAudioStarted" && v["callId"] == call.as_str()
            })
            .await;
        times.push(t0.elapsed().as_secs_f64() * 1e3);
        caller.hang_up(&call).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    times.sort_by(|a, b| a.total_cmp(b));
    times
}

fn pid(agent: &AgentProcess) -> u32 {
    agent.child.id().expect("the agent runs")
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` asks for a listing; this bench has no tests
    }
    let root = std::env::temp_dir().join(format!("hookflash-bench-media-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).expect("bench dir");
    let ns = Netns::two_hosts("bench");
    let sb = SwitchboardProcess::start_in(&ns, HOST_A, "bench secret").await;
    println!(
        "{:<9} {:<10} {:>13} {:>9} {:>16} {:>16}",
        "profile", "peer", "set-up median", "p95", "CPU ours/call", "CPU peer/call"
    );
    let profiles = [
        (
            "webrtc",
            "medianat=ice;mediaenc=dtls_srtp;audio_codecs=pcmu",
        ),
        ("sdes", "mediaenc=srtp-mand;audio_codecs=pcmu"),
        ("rtp", "audio_codecs=pcmu"),
    ];
    for (profile, baresip_media) in profiles {
        let media = ["--media", profile, "--mic", "tone:440"];
        // Hookflash to Hookflash.
        let mut alice = sb.agent("alice", &media).await;
        let bob = sb
            .agent("bob", &[&media[..], &["--auto-answer"]].concat())
            .await;
        let idle = cpu_over(&[pid(&alice), pid(&bob)], 3).await;
        let times = setups(&mut alice, "bob").await;
        let call = alice.start_call("bob").await;
        alice
            .next("first audio", |v| v["event"] == "remoteAudioStarted")
            .await;
        let busy = cpu_over(&[pid(&alice), pid(&bob)], HOLD_SECS).await;
        alice.hang_up(&call).await;
        println!(
            "{profile:<9} {:<10} {:>10.1} ms {:>6.1} ms {:>14.2} % {:>14.2} %",
            "hookflash",
            percentile(&times, 0.5),
            percentile(&times, 0.95),
            busy[0] - idle[0],
            busy[1] - idle[1],
        );
        bob.sign_out().await;

        // Hookflash to baresip, same switchboard, same addresses.
        let dir = baresip_dir(&root, &sb.token("bob").await, &sb.server, baresip_media);
        let (peer, _) = baresip(&ns, &dir, &[], "200 OK").await;
        let peer_pid = peer.id().expect("baresip runs");
        let idle = cpu_over(&[pid(&alice), peer_pid], 3).await;
        let times = setups(&mut alice, "bob").await;
        let call = alice.start_call("bob").await;
        alice
            .next("first audio", |v| v["event"] == "remoteAudioStarted")
            .await;
        let busy = cpu_over(&[pid(&alice), peer_pid], HOLD_SECS).await;
        alice.hang_up(&call).await;
        println!(
            "{profile:<9} {:<10} {:>10.1} ms {:>6.1} ms {:>14.2} % {:>14.2} %",
            "baresip",
            percentile(&times, 0.5),
            percentile(&times, 0.95),
            busy[0] - idle[0],
            busy[1] - idle[1],
        );
        quit(peer).await;
        alice.sign_out().await;
        for f in std::fs::read_dir(dir.join("heard"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let _ = std::fs::remove_file(f.path());
        }
    }
    println!(
        "(CPU: percent of one core above the process's idle, over a {HOLD_SECS} s call; set-up: \
         startCall to the caller's first decoded audio, {CALLS} calls; PCMU throughout)"
    );
    drop(sb);
    drop(ns);
    let _ = std::fs::remove_dir_all(&root);
}
