//! DTMF sent by A arrives at B as the same digits, in order (RFC 4733 telephone-events).

use std::time::Duration;

use hookflash_core::api::Event;
use hookflash_tests::{connect, Rig};

#[tokio::test]
async fn digits_arrive_in_order() {
    let rig = Rig::start().await;
    let mut a = rig.agent("alice", 440.0).await;
    let mut b = rig.agent("bob", 880.0).await;
    let (a_call, _b_call) = connect(&mut a, &mut b).await;
    a.agent
        .call(&a_call)
        .send_dtmf("159#*0")
        .await
        .expect("DTMF on a connected call");
    let mut got = String::new();
    while got.len() < 6 {
        if let Event::DtmfReceived { tone, .. } = b
            .wait_for("dtmfReceived", |e| matches!(e, Event::DtmfReceived { .. }))
            .await
        {
            got.push_str(&tone);
        }
    }
    assert_eq!(
        got, "159#*0",
        "B receives exactly the digits A sent, in order"
    );
    let extra = tokio::time::timeout(Duration::from_millis(500), async {
        loop {
            if let Ok(Event::DtmfReceived { tone, .. }) = b.events.recv().await {
                return tone;
            }
        }
    })
    .await;
    assert!(
        extra.is_err(),
        "no digit is reported twice (end packets are sent 3 times)"
    );
    let err = a.agent.call(&a_call).send_dtmf("12x").await.unwrap_err();
    assert_eq!(err.code(), "dtmf.invalid", "invalid tones are refused");
}
