//! Guessing a password on the HTTP API: after five wrong guesses for a user from one address,
//! that address is answered 429 with `Retry-After` for that user — even with the right
//! password, so guessing on cannot tell — while the real user on another address signs in as
//! ever, and forged tokens count the same way.

mod common;

use std::net::IpAddr;
use std::time::Duration;

use base64::Engine as _;
use common::http::{bearer, request_from};
use common::switchboard;
use hookflash_core::auth::{unix_now, Token};

fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_wrong_guesses_lock_out_that_address_only() {
    let sb = switchboard().await;
    sb.users()
        .add("alice", sb.domain(), Some("correct horse"))
        .expect("add alice");
    let http = sb.http_addr().expect("Config::local serves HTTP");
    let guesser: IpAddr = "127.0.0.2".parse().unwrap();
    let elsewhere: IpAddr = "127.0.0.3".parse().unwrap();
    let get = |from: IpAddr, auth: String| async move {
        request_from(Some(from), http, "GET", "/api/voicemail", Some(&auth), b"").await
    };
    for n in 1..=5 {
        let r = get(guesser, basic("alice", &format!("guess {n}"))).await;
        assert_eq!(r.status, 401, "guess {n} is simply wrong");
    }
    let r = get(guesser, basic("alice", "correct horse")).await;
    assert_eq!(
        r.status, 429,
        "after five wrong guesses that address is locked out for alice, even with the right \
         password: a guesser cannot learn when it found it"
    );
    let wait: u64 = r
        .headers
        .get("retry-after")
        .and_then(|v| v.parse().ok())
        .expect("429 says when to try again");
    assert!(
        (1..=60).contains(&wait),
        "the first lockout is a minute at most: {wait} s"
    );
    assert_eq!(
        get(elsewhere, basic("alice", "correct horse")).await.status,
        200,
        "the real alice, from her own address, is not locked out by a stranger's guesses"
    );

    // Forged tokens are guesses too.
    let forged = Token::issue(
        "not the secret",
        "bob",
        Duration::from_secs(600),
        unix_now(),
    );
    for n in 1..=5 {
        let r = get(guesser, bearer(&forged)).await;
        assert_eq!(r.status, 401, "forged token {n} is refused");
    }
    let real = sb.issue_token("bob", Duration::from_secs(600));
    assert_eq!(
        get(guesser, bearer(&real)).await.status,
        429,
        "after five forged tokens for bob, that address is locked out for bob"
    );
    assert_eq!(
        get(elsewhere, bearer(&real)).await.status,
        200,
        "bob's real token works from elsewhere"
    );
    sb.shutdown().await;
}
