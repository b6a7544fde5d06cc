//! The switchboard's HTTP API carries passwords, tokens and voicemail: with a certificate it
//! is served over HTTPS (the same certificate as SIP over TLS), which the app's mailbox
//! client verifies like SIP; a clear-text client gets nothing, an untrusted certificate is
//! said as such; and a switchboard asked to expose the API beyond loopback without a
//! certificate refuses to start, saying why.

use std::time::Duration;

use hookflash_core::mailbox::Mailbox;
use hookflash_core::sip::tls::TlsClient;
use hookflash_switchboard::config::TlsListen;
use hookflash_switchboard::{Config, Switchboard};
use hookflash_tests::certs::TestPki;
use hookflash_tests::SECRET;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_speaks_https_with_a_certificate_and_nothing_in_clear() {
    let dir = std::env::temp_dir().join(format!("hookflash-https-{}", std::process::id()));
    let pki = TestPki::issue(&dir, "api", &["hookflash.local", "127.0.0.1"]);
    let mut config = Config::local(SECRET);
    config.tls = Some(TlsListen {
        cert: pki.cert.clone(),
        key: pki.key.clone(),
        port: 0,
    });
    let sb = Switchboard::start(config).await.expect("starts with TLS");
    let api = sb.http_addr().expect("serves the API");
    let token = sb.issue_token("alice", Duration::from_secs(600));

    let trusted =
        TlsClient::new("hookflash.local", std::slice::from_ref(&pki.ca)).expect("a client");
    let messages = Mailbox::new(api, &token)
        .expect("the token opens the API")
        .with_tls(trusted)
        .messages()
        .await
        .expect("over HTTPS, with the authority trusted, alice lists her mailbox");
    assert!(messages.is_empty(), "and it is empty");

    let clear = Mailbox::new(api, &token)
        .expect("the token opens the API")
        .messages()
        .await;
    assert!(
        clear.is_err(),
        "a clear-text request gets no answer from the HTTPS port: {clear:?}"
    );
    let stranger = TlsClient::new("hookflash.local", &[]);
    if let Ok(stranger) = stranger {
        let e = Mailbox::new(api, &token)
            .expect("the token opens the API")
            .with_tls(stranger)
            .messages()
            .await
            .expect_err("a certificate from an unknown authority is refused");
        assert!(
            e.to_string().contains("not trusted"),
            "and said to be untrusted, not unreachable: {e}"
        );
    }
    sb.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn exposing_the_api_without_a_certificate_is_refused() {
    let mut config = Config::local(SECRET);
    config.bind = "0.0.0.0".parse().unwrap();
    let Err(e) = Switchboard::start(config).await else {
        panic!("an API open to the network in clear text must not start");
    };
    assert_eq!(e.code(), "switchboard.config", "a configuration error: {e}");
    assert!(
        e.to_string().contains("HTTPS") && e.to_string().contains("loopback"),
        "which says the two ways out: {e}"
    );
}
