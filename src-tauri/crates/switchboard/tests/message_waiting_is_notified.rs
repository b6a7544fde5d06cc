//! Message waiting (RFC 3842): the switchboard is the notifier of every mailbox. A SUBSCRIBE
//! to one's own `message-summary` gets 200 and a NOTIFY at once, another NOTIFY whenever the
//! mailbox changes, and a final one on unsubscribe; nobody may watch someone else's mailbox.

mod common;

use std::time::Duration;

use common::agents::{agent, wait_messages};
use common::http::{bearer, request};
use common::*;
use hookflash_core::call::CallState;
use hookflash_core::sip::{Method, Request, TransportKind};

fn subscribe(ua: &mut Ua, mailbox: &str, expires: u32) -> Request {
    let mut r = ua.request(Method::Subscribe, mailbox, mailbox);
    r.headers.push("Event", "message-summary");
    r.headers
        .push("Accept", "application/simple-message-summary");
    r.headers.push("Expires", expires.to_string());
    r
}

/// The next NOTIFY, answered 200; its Subscription-State and body.
async fn notified(ua: &mut Ua) -> (String, String) {
    let n = ua.next_request(Method::Notify).await;
    let req = n.request().clone();
    ua.reply_to(&n, req.response(200, None, None)).await;
    assert_eq!(
        req.headers.get("Event"),
        Some("message-summary"),
        "NOTIFY names the package"
    );
    assert_eq!(
        req.headers.get("Content-Type"),
        Some("application/simple-message-summary"),
        "and the body type"
    );
    (
        req.headers
            .get("Subscription-State")
            .unwrap_or_default()
            .to_owned(),
        req.body_str().into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mailbox_changes_are_notified_to_the_owner_subscription() {
    let sb = switchboard().await;
    let mut carol = Ua::new("carol", TransportKind::Udp, &sb).await;
    carol.register().await;
    let aor = carol.aor();

    let sub = subscribe(&mut carol, &aor, 600);
    let ok = carol.send_authenticated(sub).await;
    let ok = ok.response().clone();
    assert_eq!(
        ok.status, 200,
        "a subscription to one's own mailbox is accepted after the 407"
    );
    assert_eq!(
        ok.headers.get("Expires"),
        Some("600"),
        "for the interval asked"
    );
    let (state, body) = notified(&mut carol).await;
    assert!(
        state.starts_with("active;expires="),
        "the first NOTIFY comes at once, active: {state}"
    );
    assert!(
        body.contains("Messages-Waiting: no")
            && body.contains("Message-Account: sip:carol@hookflash.local")
            && body.contains("Voice-Message: 0/0"),
        "an empty mailbox: {body}"
    );

    // alice leaves a message through the RFC 4458 URI (as a transfer to voicemail does).
    let mut alice = agent(&sb, "alice", 440.0).await;
    let a_call = alice
        .agent
        .start_call("sip:voicemail@hookflash.local;target=sip:carol%40hookflash.local")
        .await
        .unwrap();
    alice.wait_state(&a_call, CallState::Connected).await;
    alice.wait_for_beep(&a_call).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    alice.agent.call(&a_call).hang_up().await.unwrap();
    let (_, body) = notified(&mut carol).await;
    assert!(
        body.contains("Messages-Waiting: yes") && body.contains("Voice-Message: 1/0"),
        "a new message is notified: {body}"
    );
    let id = wait_messages(&sb, "carol", 1).await[0].id.clone();

    let http = sb.http_addr().unwrap();
    let auth = bearer(&sb.issue_token("carol", Duration::from_secs(600)));
    let r = request(
        http,
        "POST",
        &format!("/api/voicemail/{id}/heard"),
        Some(&auth),
        b"",
    )
    .await;
    assert_eq!(r.status, 200, "carol marks it heard over HTTP");
    let (_, body) = notified(&mut carol).await;
    assert!(
        body.contains("Messages-Waiting: no") && body.contains("Voice-Message: 0/1"),
        "heard messages are old: {body}"
    );

    // Unsubscribe in the dialog: Expires 0, a final NOTIFY.
    let our_contact = contact_of(ok.headers.get("Contact").expect("200 has a Contact"));
    let from = ok_from(&ok);
    let to = ok.headers.get("To").unwrap().to_owned();
    let call_id = ok.headers.get("Call-ID").unwrap().to_owned();
    let ids = DialogIds {
        from: &from,
        to: &to,
        call_id: &call_id,
    };
    let mut unsub = in_dialog(&mut carol, Method::Subscribe, &our_contact, &[], &ids, 50);
    unsub.headers.push("Event", "message-summary");
    unsub.headers.push("Expires", "0");
    unsub
        .headers
        .push("Contact", format!("<{}>", carol.contact_uri()));
    carol.send(unsub).await;
    let r = carol.next_response(Method::Subscribe, false).await;
    assert_eq!(
        r.response().status,
        200,
        "the in-dialog unsubscribe is accepted without a challenge"
    );
    let (state, _) = notified(&mut carol).await;
    assert!(
        state.starts_with("terminated"),
        "the last NOTIFY ends the subscription: {state}"
    );
    assert!(sb.delete_voicemail("carol", &id).unwrap(), "deleted");
    carol
        .expect_silence(
            Duration::from_millis(300),
            "no NOTIFY after the subscription ended",
        )
        .await;
    sb.shutdown().await;
}

/// The From of the dialog as the subscriber writes it (the SUBSCRIBE's From, from the 200).
fn ok_from(ok: &hookflash_core::sip::Response) -> String {
    ok.headers.get("From").unwrap().to_owned()
}

#[tokio::test]
async fn subscription_to_someone_elses_mailbox_is_forbidden() {
    let sb = switchboard().await;
    let mut carol = Ua::new("carol", TransportKind::Udp, &sb).await;
    let sub = subscribe(&mut carol, "sip:bob@hookflash.local", 600);
    let r = carol.send_authenticated(sub).await;
    assert_eq!(
        r.response().status,
        403,
        "carol may not watch bob's mailbox"
    );
    sb.shutdown().await;
}

#[tokio::test]
async fn voicemail_uri_for_an_unknown_mailbox_is_404() {
    let sb = switchboard().await;
    let mut alice = Ua::new("alice", TransportKind::Udp, &sb).await;
    for uri in [
        "sip:voicemail@hookflash.local;target=sip:nobody%40hookflash.local",
        "sip:voicemail@hookflash.local",
        "sip:voicemail@hookflash.local;target=sip:bob%40example.org",
    ] {
        let invite = alice.invite(uri).await;
        let r = alice.next_response(Method::Invite, false).await;
        assert_eq!(
            r.response().status,
            404,
            "{uri}: no such mailbox here, refused before any voicemail answers"
        );
        alice.send(ack_for(&invite, r.response())).await;
    }
    sb.shutdown().await;
}
