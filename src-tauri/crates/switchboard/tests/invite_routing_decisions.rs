//! Where an INVITE goes, or why it does not: challenge, unknown, unregistered, foreign, numbers.

mod common;

use common::*;
use hookflash_core::sip::{Method, TransportKind};

#[tokio::test]
async fn options_to_the_switchboard_itself_is_answered_without_a_challenge() {
    let sb = switchboard().await;
    let mut ua = Ua::new("alice", TransportKind::Udp, &sb).await;
    let target = format!("sip:{}", sb.local_addr());
    let req = ua.request(Method::Options, &target, &target);
    ua.send(req).await;
    let r = ua.next_response(Method::Options, false).await;
    assert_eq!(
        r.response().status,
        200,
        "a keep-alive OPTIONS to us needs no credentials"
    );
    assert!(
        r.response().headers.get("Allow").is_some(),
        "and says what we allow"
    );
    sb.shutdown().await;
}

#[tokio::test]
async fn unauthenticated_invite_is_challenged_with_407() {
    let sb = switchboard().await;
    let mut ua = Ua::new("alice", TransportKind::Udp, &sb).await;
    let req = ua.request(
        Method::Invite,
        "sip:bob@hookflash.local",
        "sip:bob@hookflash.local",
    );
    ua.send(req.clone()).await;
    let trying = ua.next_where(
        "100 Trying",
        |m| matches!(m, hookflash_core::sip::Message::Response(r) if r.status == 100),
    );
    assert_eq!(
        trying.await.response().status,
        100,
        "INVITE gets 100 Trying at once"
    );
    let r = ua.next_response(Method::Invite, false).await;
    assert_eq!(
        r.response().status,
        407,
        "an out-of-dialog INVITE must authenticate"
    );
    assert!(
        r.response().headers.get("Proxy-Authenticate").is_some(),
        "407 carries Proxy-Authenticate"
    );
    sb.shutdown().await;
}

#[tokio::test]
async fn invite_to_an_unknown_user_is_404() {
    let sb = switchboard().await;
    let mut alice = Ua::new("alice", TransportKind::Udp, &sb).await;
    alice.invite("sip:nobody@hookflash.local").await;
    let r = alice.next_response(Method::Invite, false).await;
    assert_eq!(
        r.response().status,
        404,
        "nobody is neither registered nor in the database"
    );
    sb.shutdown().await;
}

#[tokio::test]
async fn invite_to_a_known_but_unregistered_user_is_480() {
    let sb = switchboard().await;
    sb.users()
        .add("carol", sb.domain(), None)
        .expect("carol added");
    let mut alice = Ua::new("alice", TransportKind::Udp, &sb).await;
    alice.invite("sip:carol@hookflash.local").await;
    let r = alice.next_response(Method::Invite, false).await;
    assert_eq!(r.response().status, 480, "carol exists but has no binding");
    sb.shutdown().await;
}

#[tokio::test]
async fn invite_to_a_foreign_domain_is_refused() {
    let sb = switchboard().await;
    let mut alice = Ua::new("alice", TransportKind::Udp, &sb).await;
    alice.invite("sip:bob@example.org").await;
    let r = alice.next_response(Method::Invite, false).await;
    assert_eq!(
        r.response().status,
        403,
        "the switchboard does not relay to other domains"
    );
    sb.shutdown().await;
}

#[tokio::test]
async fn invite_with_someone_elses_from_is_refused() {
    let sb = switchboard().await;
    let mut alice = Ua::new("alice", TransportKind::Udp, &sb).await;
    alice.token = sb.issue_token("mallory", std::time::Duration::from_secs(60));
    alice.invite("sip:bob@hookflash.local").await;
    let r = alice.next_response(Method::Invite, false).await;
    assert_eq!(
        r.response().status,
        403,
        "mallory's token cannot call as alice"
    );
    sb.shutdown().await;
}

#[tokio::test]
async fn tel_number_routes_to_the_user_named_by_its_digits() {
    let sb = switchboard().await;
    let mut desk = Ua::new("15551234", TransportKind::Udp, &sb).await;
    assert_eq!(
        desk.register().await.status,
        200,
        "a numeric user registers"
    );
    let mut alice = Ua::new("alice", TransportKind::Udp, &sb).await;
    let sent = alice.invite("tel:+1-555-1234").await;
    let inv = desk.next_request(Method::Invite).await;
    assert_eq!(
        inv.request().uri.user.as_deref(),
        Some("15551234"),
        "the tel: number reached the user named by its digits, at their contact"
    );
    let resp = answer(&desk, inv.request(), 486, "busy");
    desk.reply_to(&inv, resp).await;
    let r = alice.next_response(Method::Invite, false).await;
    assert_eq!(r.response().status, 486, "the callee's answer comes back");
    alice.send(ack_for(&sent, r.response())).await;
    alice
        .invite("sip:+15559999@hookflash.local;user=phone")
        .await;
    let r = alice.next_response(Method::Invite, false).await;
    assert_eq!(r.response().status, 404, "a number nobody has is 404");
    sb.shutdown().await;
}

#[tokio::test]
async fn invite_with_no_hops_left_is_483() {
    let sb = switchboard().await;
    let mut ua = Ua::new("alice", TransportKind::Udp, &sb).await;
    let mut req = ua.request(
        Method::Invite,
        "sip:bob@hookflash.local",
        "sip:bob@hookflash.local",
    );
    req.headers.set("Max-Forwards", "0");
    ua.send(req).await;
    let r = ua.next_response(Method::Invite, false).await;
    assert_eq!(
        r.response().status,
        483,
        "Max-Forwards 0 cannot be forwarded"
    );
    sb.shutdown().await;
}
