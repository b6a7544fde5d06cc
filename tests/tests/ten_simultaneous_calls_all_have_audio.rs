//! Ten calls at once through one switchboard: all connect and every callee hears its caller.

use std::time::Duration;

use hookflash_tests::{connect, hears, listen, tail, Rig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_calls_connect_with_audio() {
    let rig = Rig::start().await;
    let mut pairs = Vec::new();
    for i in 0..10 {
        let caller_hz = 300.0 + 100.0 * i as f64;
        let a = rig.agent(&format!("caller{i}"), caller_hz).await;
        let b = rig.agent(&format!("callee{i}"), 3000.0).await;
        pairs.push((a, b, caller_hz));
    }
    let mut calls = Vec::new();
    for (a, b, _) in pairs.iter_mut() {
        calls.push(connect(a, b).await);
    }
    listen(Duration::from_millis(1500)).await;
    for (i, ((a, b, hz), (a_call, b_call))) in pairs.iter().zip(&calls).enumerate() {
        assert!(
            hears(tail(&b.ears.heard(b_call), Duration::from_millis(800)), *hz),
            "callee {i} hears its own caller's {hz} Hz"
        );
        assert!(
            hears(
                tail(&a.ears.heard(a_call), Duration::from_millis(800)),
                3000.0
            ),
            "caller {i} hears its callee"
        );
    }
    for (a, _, _) in &pairs {
        a.agent.shutdown().await;
    }
}
