//! Transfer figures (a benchmark that prints numbers, not a timed test): over
//! `HOOKFLASH_BENCH_TRANSFERS` runs (default 30) each of blind and attended transfer on
//! loopback through an in-process switchboard, median and p95 of `transfer()` →
//! `Transferred` at the transferor, and `transfer()` → the target's first decoded audio frame
//! from the transferee. Run with `scripts/bench`.

use std::time::{Duration, Instant};

use hookflash_core::api::Event;
use hookflash_core::call::CallState;
use hookflash_core::transfer::{TransferOptions, TransferTarget};
use hookflash_tests::{connect, Rig, TestAgent};
use tokio::sync::mpsc;

fn report(name: &str, mut v: Vec<f64>) {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let pct = |p: f64| v[((v.len() as f64 - 1.0) * p).round() as usize];
    println!(
        "{name:<44} n={:<3} median={:>7.2} ms  p95={:>7.2} ms  min={:>7.2} ms  max={:>7.2} ms",
        v.len(),
        pct(0.5),
        pct(0.95),
        v[0],
        v[v.len() - 1]
    );
}

/// The target: answers every call and reports when each call's first audio arrives.
async fn target(mut c: TestAgent, audio: mpsc::UnboundedSender<(String, Instant)>) {
    loop {
        match c.events.recv().await {
            Ok(Event::IncomingCall { call_id, .. }) => {
                let call = c.agent.call(&call_id);
                tokio::spawn(async move {
                    let _ = call.accept().await;
                });
            }
            Ok(Event::RemoteAudioStarted { call_id }) => {
                let _ = audio.send((call_id, Instant::now()));
            }
            Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
            Err(_) => return,
        }
    }
}

async fn hang_up_all(agent: &mut TestAgent) {
    for id in agent.agent.calls().keys() {
        let _ = agent.agent.call(id).hang_up().await;
    }
    for _ in 0..100 {
        if agent.agent.calls().is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let runs: usize = std::env::var("HOOKFLASH_BENCH_TRANSFERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    let rig = Rig::start().await;
    let mut a = rig.agent("alice", 440.0).await;
    let mut b = rig.agent("bob", 660.0).await;
    let c = rig.agent("carol", 1000.0).await;
    let (tx, mut audio) = mpsc::unbounded_channel();
    tokio::spawn(target(c, tx));

    for attended in [false, true] {
        let (mut to_transferred, mut to_audio) = (Vec::new(), Vec::new());
        for _ in 0..runs {
            let (_a_call, b_call) = connect(&mut a, &mut b).await;
            let target = if attended {
                b.agent.call(&b_call).hold().await.expect("hold");
                b.wait_state(&b_call, CallState::LocalHold).await;
                let consult = b.agent.start_call("carol").await.expect("consult call");
                b.wait_state(&consult, CallState::Connected).await;
                TransferTarget::Call(consult)
            } else {
                TransferTarget::Participant("carol".into())
            };
            while audio.try_recv().is_ok() {}
            let t0 = Instant::now();
            b.agent
                .call(&b_call)
                .transfer(target, TransferOptions::default())
                .await
                .expect("transfer");
            let new_call = a.transfer_accepted().await;
            b.transfer_outcome().await.expect("the transfer succeeds");
            let done = Instant::now();
            let heard = loop {
                let (call_id, at) = tokio::time::timeout(Duration::from_secs(10), audio.recv())
                    .await
                    .expect("target hears the transferee")
                    .expect("target task alive");
                // The target's call id for the new call equals the transferee's (same Call-ID).
                if call_id == new_call {
                    break at;
                }
            };
            to_transferred.push((done - t0).as_secs_f64() * 1e3);
            to_audio.push((heard - t0).as_secs_f64() * 1e3);
            hang_up_all(&mut a).await;
            hang_up_all(&mut b).await;
        }
        let kind = if attended { "attended" } else { "blind" };
        report(
            &format!("{kind}: transfer() -> Transferred"),
            to_transferred,
        );
        report(
            &format!("{kind}: transfer() -> target hears transferee"),
            to_audio,
        );
    }
}
