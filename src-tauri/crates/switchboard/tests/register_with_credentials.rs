//! REGISTER: the digest challenge, tokens, database users, refusals and binding lifetime.

mod common;

use std::time::Duration;

use common::*;
use hookflash_core::auth::{unix_now, Challenge, Token};
use hookflash_core::sip::{Method, TransportKind};

#[tokio::test]
async fn token_registers_over_udp_after_a_challenge() {
    let sb = switchboard().await;
    let mut alice = Ua::new("alice", TransportKind::Udp, &sb).await;
    let req = alice.register_request(Some(600));
    alice.send(req).await;
    let first = alice.next_response(Method::Register, false).await;
    let r = first.response();
    assert_eq!(
        r.status, 401,
        "a REGISTER without credentials is challenged"
    );
    let ch: Challenge = r
        .headers
        .get("WWW-Authenticate")
        .expect("401 carries WWW-Authenticate")
        .parse()
        .expect("the challenge parses");
    assert_eq!(ch.realm, "hookflash.local", "the realm is the domain");
    assert_eq!(ch.qop.as_deref(), Some("auth"), "qop=auth is offered");
    let ok = alice.register().await;
    assert_eq!(ok.status, 200, "the token's credentials are accepted");
    let contact = ok.headers.get("Contact").expect("200 lists the contact");
    assert!(
        contact.contains("expires=600"),
        "granted interval echoed: {contact}"
    );
    let b = sb.bindings("alice").await;
    assert_eq!(b.len(), 1, "one binding for alice");
    assert_eq!(
        b[0].transport,
        TransportKind::Udp,
        "the binding remembers the UDP flow"
    );
    assert_eq!(
        b[0].source.port(),
        alice.port(),
        "and the source address it came from"
    );
    sb.shutdown().await;
}

#[tokio::test]
async fn token_registers_over_tcp_after_a_challenge() {
    let sb = switchboard().await;
    let mut bob = Ua::new("bob", TransportKind::Tcp, &sb).await;
    let ok = bob.register().await;
    assert_eq!(
        ok.status, 200,
        "registration over TCP succeeds after the challenge"
    );
    let b = sb.bindings("bob").await;
    assert_eq!(b.len(), 1, "one binding for bob");
    assert_eq!(
        b[0].transport,
        TransportKind::Tcp,
        "the binding remembers the TCP flow"
    );
    assert_ne!(
        b[0].source.port(),
        bob.port(),
        "the flow is the connection's ephemeral port, not the contact's listening port"
    );
    sb.shutdown().await;
}

#[tokio::test]
async fn wrong_signature_is_forbidden_not_challenged_again() {
    let sb = switchboard().await;
    let mut alice = Ua::new("alice", TransportKind::Udp, &sb).await;
    alice.token = Token::issue(
        "another-secret",
        "alice",
        Duration::from_secs(3600),
        unix_now(),
    );
    let r = alice.register().await;
    assert_eq!(
        r.status, 403,
        "a token signed with another secret is refused with 403"
    );
    assert!(
        sb.bindings("alice").await.is_empty(),
        "and nothing is bound"
    );
    sb.shutdown().await;
}

#[tokio::test]
async fn expired_token_is_forbidden_with_token_expired() {
    let sb = switchboard().await;
    let mut alice = Ua::new("alice", TransportKind::Udp, &sb).await;
    alice.token = Token::issue(SECRET, "alice", Duration::from_secs(60), unix_now() - 3600);
    let r = alice.register().await;
    assert_eq!(r.status, 403, "an expired token is refused");
    assert_eq!(r.reason, "Token Expired", "the reason tells the client why");
    sb.shutdown().await;
}

#[tokio::test]
async fn token_of_another_user_cannot_register_this_aor() {
    let sb = switchboard().await;
    let mut mallory = Ua::new("alice", TransportKind::Udp, &sb).await;
    mallory.token = sb.issue_token("mallory", Duration::from_secs(60));
    let r = mallory.register().await;
    assert_eq!(r.status, 403, "the token's user must be the To user");
    assert_eq!(r.reason, "Identity Mismatch", "reason names the fault");
    sb.shutdown().await;
}

#[tokio::test]
async fn database_user_registers_with_password_and_wrong_ones_are_forbidden() {
    let sb = switchboard().await;
    sb.users()
        .add("bob", sb.domain(), Some("hunter2"))
        .expect("user added");
    let mut bob = Ua::new("bob", TransportKind::Udp, &sb).await;
    bob.password = Some("hunter2".into());
    assert_eq!(
        bob.register().await.status,
        200,
        "the right password registers"
    );

    let mut wrong = Ua::new("bob", TransportKind::Udp, &sb).await;
    wrong.password = Some("hunter3".into());
    assert_eq!(
        wrong.register().await.status,
        403,
        "a wrong password is 403"
    );

    let mut carol = Ua::new("carol", TransportKind::Udp, &sb).await;
    carol.password = Some("x".into());
    assert_eq!(carol.register().await.status, 403, "an unknown user is 403");
    sb.shutdown().await;
}

#[tokio::test]
async fn expires_zero_unregisters_and_short_intervals_are_raised() {
    let sb = switchboard().await;
    let mut alice = Ua::new("alice", TransportKind::Udp, &sb).await;
    let req = alice.register_request(Some(5));
    let r = alice.send_authenticated(req).await.response().clone();
    assert_eq!(r.status, 200, "a short interval is accepted");
    assert!(
        r.headers
            .get("Contact")
            .unwrap_or_default()
            .contains("expires=30"),
        "and raised to the 30 s minimum"
    );
    let req = alice.register_request(Some(0));
    let r = alice.send_authenticated(req).await.response().clone();
    assert_eq!(r.status, 200, "unregistering succeeds");
    assert!(
        r.headers.get("Contact").is_none(),
        "no contacts are left to list"
    );
    assert!(sb.bindings("alice").await.is_empty(), "the binding is gone");
    sb.shutdown().await;
}

#[tokio::test]
async fn tcp_binding_is_dropped_when_its_connection_closes() {
    let sb = switchboard().await;
    let mut bob = Ua::new("bob", TransportKind::Tcp, &sb).await;
    assert_eq!(bob.register().await.status, 200, "bob registers over TCP");
    wait_bindings(&sb, "bob", 1, "registered").await;
    bob.transport.shutdown();
    wait_bindings(&sb, "bob", 0, "a closed connection drops the binding").await;

    let mut alice = Ua::new("alice", TransportKind::Udp, &sb).await;
    let aor = bob.aor();
    alice.invite(&aor).await;
    let r = alice.next_response(Method::Invite, false).await;
    assert_eq!(
        r.response().status,
        480,
        "bob is known (signed in with a token) but no longer reachable"
    );
    sb.shutdown().await;
}
