//! A speaker that fails in the middle of a call (a headset pulled out): the call
//! goes on, the engine falls back to the default device, and the events say
//! what happened — never a crash, never silence without a word. Virtual devices
//! only, so this runs on any machine.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hookflash_core::api::Event;
use hookflash_core::audio::{
    tone_present, AudioSink, CaptureSink, DeviceError, DeviceManager, DeviceManagerConfig,
    SilenceSource, ToneSource, SAMPLE_RATE, VIRTUAL_NULL,
};
use hookflash_core::media::{MediaConfig, MediaEvent, MediaSession};
use tokio::sync::broadcast;

const CALLER_HZ: f64 = 700.0;

struct FlakySink {
    left: Arc<AtomicUsize>,
    heard: Arc<Mutex<Vec<i16>>>,
}

impl AudioSink for FlakySink {
    fn write_frame(&mut self, frame: &[i16]) -> Result<(), DeviceError> {
        if self.left.load(Ordering::SeqCst) == 0 {
            return Err(DeviceError::Io("the headset was unplugged".into()));
        }
        self.left.fetch_sub(1, Ordering::SeqCst);
        self.heard.lock().unwrap().extend_from_slice(frame);
        Ok(())
    }
    fn describe(&self) -> String {
        "flaky headset".into()
    }
}

async fn next_event(
    rx: &mut broadcast::Receiver<Event>,
    what: &str,
    pred: impl Fn(&Event) -> bool,
) -> Event {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Ok(e)) if pred(&e) => return e,
            Ok(Ok(_)) | Ok(Err(broadcast::error::RecvError::Lagged(_))) => continue,
            _ => panic!("no {what} within 10 s"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_call_continues_on_the_fallback_and_the_user_is_told() {
    let devices = DeviceManager::new(DeviceManagerConfig::virtual_only());
    let mut events = devices.subscribe();
    let left = Arc::new(AtomicUsize::new(100)); // two seconds, then it breaks
    let flaky_heard = Arc::new(Mutex::new(Vec::new()));
    let (l, h) = (Arc::clone(&left), Arc::clone(&flaky_heard));
    devices.add_virtual_speaker(
        "virtual:headset",
        "USB headset (virtual)",
        Arc::new(move || {
            Ok(Box::new(FlakySink {
                left: Arc::clone(&l),
                heard: Arc::clone(&h),
            }) as _)
        }),
    );
    let good = CaptureSink::new();
    let good_heard = good.buffer();
    let good = Mutex::new(Some(good));
    devices.add_virtual_speaker(
        "virtual:desk",
        "Desk speaker (virtual)",
        Arc::new(move || {
            good.lock()
                .unwrap()
                .take()
                .map(|s| Box::new(s) as Box<dyn AudioSink>)
                .ok_or(DeviceError::Unavailable("opened once in this test".into()))
        }),
    );
    devices
        .select_speaker("virtual:headset")
        .expect("select the headset");

    let (caller, _ce) = MediaSession::new(
        MediaConfig::default(),
        Box::new(ToneSource::new(CALLER_HZ)),
        Box::new(CaptureSink::new()),
    )
    .await
    .expect("caller media");
    let (callee, mut callee_events) = MediaSession::new(
        MediaConfig::default(),
        Box::new(SilenceSource::new()),
        (devices.sink_factory())("call-1").expect("a mixer input"),
    )
    .await
    .expect("callee media");
    let answer = callee
        .accept_offer(&caller.create_offer().await.expect("offer"))
        .await
        .expect("answer");
    caller.accept_answer(&answer).await.expect("apply answer");

    let lost = next_event(&mut events, "audioDeviceError", |e| {
        matches!(e, Event::AudioDeviceError { .. })
    })
    .await;
    let Event::AudioDeviceError {
        code,
        device_id,
        message,
        fallback_device_id,
        ..
    } = lost
    else {
        unreachable!()
    };
    assert_eq!(
        code, "device.lost.speaker",
        "a stable code the UI can match on"
    );
    assert_eq!(device_id.as_deref(), Some("virtual:headset"));
    assert_eq!(
        fallback_device_id.as_deref(),
        Some(VIRTUAL_NULL),
        "with no sound card the virtual default takes over"
    );
    assert!(
        message.contains("USB headset") && message.contains("now using"),
        "the message names the lost device and the fallback: {message}"
    );
    next_event(
        &mut events,
        "selectedSpeakerChanged to the fallback",
        |e| matches!(e, Event::SelectedSpeakerChanged { device } if device.id == VIRTUAL_NULL),
    )
    .await;
    {
        let heard = flaky_heard.lock().unwrap();
        assert!(
            tone_present(&heard[heard.len() / 2..], CALLER_HZ, SAMPLE_RATE),
            "the headset played the call until it broke"
        );
    }

    // The user picks another speaker mid-call: the same call is heard there.
    devices
        .select_speaker("virtual:desk")
        .expect("select the desk speaker");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let heard = good_heard.lock().unwrap().clone();
    assert!(
        heard.len() > SAMPLE_RATE as usize,
        "the desk speaker receives the call"
    );
    assert!(
        tone_present(&heard[heard.len() / 2..], CALLER_HZ, SAMPLE_RATE),
        "the call survived the device loss: its audio continues on the new speaker"
    );
    while let Ok(ev) = callee_events.try_recv() {
        assert!(
            !matches!(ev, MediaEvent::DeviceError(_) | MediaEvent::Failed(_)),
            "the call itself never saw a device error: {ev:?}"
        );
    }
    assert!(!callee.is_closed());
    caller.close().await;
    callee.close().await;
}
