//! Calls through the stateful proxy: Record-Route, in-dialog routing, CANCEL, forking,
//! mixed transports and the no-answer timeout.

mod common;

use std::time::{Duration, Instant};

use common::*;
use hookflash_core::sip::{Method, Request, Response, TransportKind};

struct Dialog {
    invite: Request,
    at_callee: Request,
    ok: Response,
}

/// alice calls bob, bob rings and answers; returns what each side saw.
async fn establish(
    sb: &hookflash_switchboard::SwitchboardHandle,
    alice: &mut Ua,
    bob: &mut Ua,
) -> Dialog {
    let invite = alice.invite(&bob.aor()).await;
    let inv = bob.next_request(Method::Invite).await;
    let at_callee = inv.request().clone();
    bob.reply_to(&inv, answer(bob, &at_callee, 180, "bobtag"))
        .await;
    let ringing = alice.next_response(Method::Invite, true).await;
    assert_eq!(
        ringing.response().status,
        180,
        "bob's ringing reaches alice"
    );
    bob.reply_to(&inv, answer(bob, &at_callee, 200, "bobtag"))
        .await;
    let ok = alice
        .next_response(Method::Invite, false)
        .await
        .response()
        .clone();
    assert_eq!(ok.status, 200, "bob's answer reaches alice");
    assert_eq!(
        ok.headers.get_all("Via").len(),
        1,
        "the proxy's Via is gone on the way back: {sb:?}"
    );
    Dialog {
        invite,
        at_callee,
        ok,
    }
}

/// alice ACKs the 2xx along the route set; bob must receive it. Then bob hangs up and alice
/// must receive the BYE, and bob her 200.
async fn ack_and_bye(alice: &mut Ua, bob: &mut Ua, d: &Dialog) {
    let mut alice_routes = d.ok.headers.get_all("Record-Route");
    alice_routes.reverse();
    let bob_target = contact_of(d.ok.headers.get("Contact").expect("200 has a Contact"));
    let from = d.invite.headers.get("From").unwrap().to_owned();
    let to = d.ok.headers.get("To").unwrap().to_owned();
    let call_id = d.invite.call_id().unwrap().to_owned();
    let seq = d.invite.cseq().unwrap().seq;
    let alice_ids = DialogIds {
        from: &from,
        to: &to,
        call_id: &call_id,
    };
    let ack = in_dialog(
        alice,
        Method::Ack,
        &bob_target,
        &alice_routes,
        &alice_ids,
        seq,
    );
    alice.send(ack).await;
    let got = bob.next_request(Method::Ack).await;
    assert!(
        got.request().headers.get("Route").is_none(),
        "the proxy popped its own Route entries from the ACK"
    );
    assert_eq!(
        got.transport, bob.kind,
        "the ACK reaches bob on his own transport"
    );

    let bob_routes = d.at_callee.headers.get_all("Record-Route");
    let alice_target = contact_of(
        d.at_callee
            .headers
            .get("Contact")
            .expect("INVITE has a Contact"),
    );
    let bob_ids = DialogIds {
        from: &to,
        to: &from,
        call_id: &call_id,
    };
    let bye = in_dialog(bob, Method::Bye, &alice_target, &bob_routes, &bob_ids, 1);
    bob.send(bye).await;
    let got = alice.next_request(Method::Bye).await;
    assert_eq!(
        got.transport, alice.kind,
        "the BYE reaches alice on her own transport"
    );
    let ok = got.request().response(200, None, None);
    alice.reply_to(&got, ok).await;
    let r = bob.next_response(Method::Bye, false).await;
    assert_eq!(
        r.response().status,
        200,
        "alice's 200 to the BYE routes back to bob"
    );
}

/// Record-Route entries without the dialog mark (`;hf=`, an HMAC that only the switchboard can
/// make, and the legs it vouches for, `;ha=`/`;hb=`, with the trunk, `;ht=`), after checking
/// that each carries one.
fn unmarked(routes: Vec<String>) -> Vec<String> {
    routes
        .into_iter()
        .map(|r| {
            let (head, mark) = r.split_once(";hf=").expect("every Record-Route is marked");
            let (params, tail) = mark.split_once('>').expect("a name-addr");
            let kept: String = params
                .split(';')
                .skip(1)
                .filter(|p| !["ha=", "hb=", "ht="].iter().any(|m| p.starts_with(m)))
                .map(|p| format!(";{p}"))
                .collect();
            format!("{head}{kept}>{tail}")
        })
        .collect()
}

#[tokio::test]
async fn call_is_forwarded_with_record_route_and_the_dialog_routes_through_the_proxy() {
    let sb = switchboard().await;
    let mut alice = Ua::new("alice", TransportKind::Udp, &sb).await;
    let mut bob = Ua::new("bob", TransportKind::Udp, &sb).await;
    assert_eq!(alice.register().await.status, 200, "alice registers");
    assert_eq!(bob.register().await.status, 200, "bob registers");
    let d = establish(&sb, &mut alice, &mut bob).await;
    let req = &d.at_callee;
    assert_eq!(
        unmarked(req.headers.get_all("Record-Route")),
        vec![format!("<sip:{};transport=udp;lr>", sb.local_addr())],
        "one Record-Route naming the proxy and the UDP leg"
    );
    assert_eq!(
        req.headers.get_all("Via").len(),
        2,
        "the proxy's Via on top of alice's"
    );
    assert_eq!(
        req.headers.get("Max-Forwards"),
        Some("69"),
        "Max-Forwards decremented"
    );
    assert!(
        req.headers.get("Proxy-Authorization").is_none(),
        "the proxy consumed alice's credentials"
    );
    assert_eq!(
        req.uri.to_string(),
        bob.contact_uri(),
        "retargeted to bob's contact"
    );
    assert_eq!(req.body, b"v=0\r\n", "the SDP body travels untouched");
    assert_eq!(
        d.ok.headers.get_all("Record-Route").len(),
        1,
        "the 200 carries the Record-Route back to alice"
    );
    ack_and_bye(&mut alice, &mut bob, &d).await;
    sb.shutdown().await;
}

#[tokio::test]
async fn udp_caller_reaches_a_tcp_callee_with_double_record_route() {
    let sb = switchboard().await;
    let mut alice = Ua::new("alice", TransportKind::Udp, &sb).await;
    let mut bob = Ua::new("bob", TransportKind::Tcp, &sb).await;
    assert_eq!(
        alice.register().await.status,
        200,
        "alice registers over UDP"
    );
    assert_eq!(bob.register().await.status, 200, "bob registers over TCP");
    let d = establish(&sb, &mut alice, &mut bob).await;
    let addr = sb.local_addr();
    assert_eq!(
        unmarked(d.at_callee.headers.get_all("Record-Route")),
        vec![
            format!("<sip:{addr};transport=tcp;lr;r2=on>"),
            format!("<sip:{addr};transport=udp;lr;r2=on>"),
        ],
        "RFC 5658: the top entry faces bob (TCP), the next faces alice (UDP)"
    );
    assert!(
        d.at_callee.headers.get_all("Via")[0].starts_with("SIP/2.0/TCP"),
        "the proxy's Via names the TCP leg"
    );
    ack_and_bye(&mut alice, &mut bob, &d).await;
    sb.shutdown().await;
}

#[tokio::test]
async fn caller_cancels_while_callee_rings() {
    let sb = switchboard().await;
    let mut alice = Ua::new("alice", TransportKind::Udp, &sb).await;
    let mut bob = Ua::new("bob", TransportKind::Udp, &sb).await;
    assert_eq!(bob.register().await.status, 200, "bob registers");
    let invite = alice.invite(&bob.aor()).await;
    let inv = bob.next_request(Method::Invite).await;
    let at_bob = inv.request().clone();
    bob.reply_to(&inv, answer(&bob, &at_bob, 180, "bobtag"))
        .await;
    assert_eq!(
        alice
            .next_response(Method::Invite, true)
            .await
            .response()
            .status,
        180,
        "alice hears ringing"
    );
    alice.send(cancel_for(&invite)).await;
    let r = alice.next_response(Method::Cancel, false).await;
    assert_eq!(r.response().status, 200, "the proxy accepts the CANCEL");
    let c = bob.next_request(Method::Cancel).await;
    assert_eq!(
        c.request().top_via().unwrap().branch(),
        at_bob.top_via().unwrap().branch(),
        "the CANCEL matches bob's INVITE transaction"
    );
    bob.reply_to(&c, c.request().response(200, None, Some("bobtag")))
        .await;
    bob.reply_to(&inv, answer(&bob, &at_bob, 487, "bobtag"))
        .await;
    let ack = bob.next_request(Method::Ack).await;
    assert_eq!(
        ack.request().top_via().unwrap().branch(),
        at_bob.top_via().unwrap().branch(),
        "the proxy ACKs bob's 487 hop by hop"
    );
    let r = alice.next_response(Method::Invite, false).await;
    let final_resp = r.response().clone();
    assert_eq!(
        final_resp.status, 487,
        "alice's INVITE ends 487 Request Terminated"
    );
    alice.send(ack_for(&invite, &final_resp)).await;
    alice
        .expect_silence(
            Duration::from_millis(1200),
            "the ACK stops the 487 retransmissions",
        )
        .await;
    sb.shutdown().await;
}

#[tokio::test]
async fn unanswered_call_is_cancelled_and_times_out_with_408() {
    let sb = switchboard_with(|c| c.no_answer_timeout = Duration::from_secs(1)).await;
    let mut alice = Ua::new("alice", TransportKind::Udp, &sb).await;
    let mut bob = Ua::new("bob", TransportKind::Tcp, &sb).await;
    assert_eq!(bob.register().await.status, 200, "bob registers");
    alice.invite(&bob.aor()).await;
    let started = Instant::now();
    let inv = bob.next_request(Method::Invite).await;
    let at_bob = inv.request().clone();
    bob.reply_to(&inv, answer(&bob, &at_bob, 180, "bobtag"))
        .await;
    let c = bob.next_request(Method::Cancel).await;
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "the CANCEL comes after the no-answer timeout, not before"
    );
    bob.reply_to(&c, c.request().response(200, None, Some("bobtag")))
        .await;
    bob.reply_to(&inv, answer(&bob, &at_bob, 487, "bobtag"))
        .await;
    let r = alice.next_response(Method::Invite, false).await;
    assert_eq!(r.response().status, 408, "alice is told nobody answered");
    sb.shutdown().await;
}

#[tokio::test]
async fn parallel_fork_first_answer_wins_and_the_other_branch_is_cancelled() {
    let sb = switchboard().await;
    let mut alice = Ua::new("alice", TransportKind::Udp, &sb).await;
    let mut desk = Ua::new("bob", TransportKind::Udp, &sb).await;
    let mut mobile = Ua::new("bob", TransportKind::Tcp, &sb).await;
    assert_eq!(
        desk.register().await.status,
        200,
        "bob's desk phone registers"
    );
    assert_eq!(
        mobile.register().await.status,
        200,
        "bob's mobile registers"
    );
    wait_bindings(&sb, "bob", 2, "two contacts for bob").await;
    alice.invite(&desk.aor()).await;
    let at_desk = desk.next_request(Method::Invite).await;
    let at_mobile = mobile.next_request(Method::Invite).await;
    let (dreq, mreq) = (at_desk.request().clone(), at_mobile.request().clone());
    desk.reply_to(&at_desk, answer(&desk, &dreq, 180, "desk"))
        .await;
    mobile
        .reply_to(&at_mobile, answer(&mobile, &mreq, 180, "mobile"))
        .await;
    mobile
        .reply_to(&at_mobile, answer(&mobile, &mreq, 200, "mobile"))
        .await;
    let ok = alice
        .next_where(
            "the 200",
            |m| matches!(m, hookflash_core::sip::Message::Response(r) if r.status == 200),
        )
        .await;
    assert!(
        ok.response()
            .headers
            .get("To")
            .unwrap()
            .contains("tag=mobile"),
        "the mobile's answer is the one alice gets"
    );
    let c = desk.next_request(Method::Cancel).await;
    desk.reply_to(&c, c.request().response(200, None, Some("desk")))
        .await;
    desk.reply_to(&at_desk, answer(&desk, &dreq, 487, "desk"))
        .await;
    desk.next_request(Method::Ack).await;
    let late = tokio::time::timeout(Duration::from_millis(500), async {
        alice
            .next_where(
                "a final non-2xx",
                |m| matches!(m, hookflash_core::sip::Message::Response(r) if r.status >= 300),
            )
            .await
    })
    .await;
    assert!(
        late.is_err(),
        "the desk's 487 is not passed to alice after the 200"
    );
    sb.shutdown().await;
}
