//! The `hookflash-switchboard` binary: token, users add/list/remove, and serve.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use common::*;
use hookflash_core::auth::{scope_key, unix_now, Scope, Token};
use hookflash_core::sip::TransportKind;

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_hookflash-switchboard"));
    c.env_remove("HOOKFLASH_SECRET").env_remove("RUST_LOG");
    c
}

fn temp_path(name: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!(
        "hookflash-switchboard-test-{}-{name}",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&p);
    p
}

fn run_ok(cmd: &mut Command, why: &str) -> String {
    let out = cmd.output().expect("the binary runs");
    assert!(
        out.status.success(),
        "{why}: exit {:?}, stderr {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("stdout is UTF-8")
}

#[test]
fn token_command_prints_a_token_that_verifies() {
    let out = run_ok(
        bin().args(["token", "alice", "--ttl", "1h", "--secret", "s3"]),
        "token with --secret",
    );
    let token = Token::parse(out.trim()).expect("stdout is exactly one token");
    assert_eq!(token.user, "alice", "issued for the named user");
    for scope in Scope::ALL {
        assert!(
            token.verify("s3", scope, unix_now()).is_ok(),
            "{scope}: by default a token opens every scope, signed with the given secret"
        );
    }
    let ttl = token.expiry.saturating_sub(unix_now());
    assert!(
        (3590..=3600).contains(&ttl),
        "valid for about one hour, got {ttl} s"
    );

    let out = run_ok(
        bin()
            .args(["token", "bob", "--ttl", "7d"])
            .env("HOOKFLASH_SECRET", "env-secret"),
        "token with the secret from the environment",
    );
    let token = Token::parse(out.trim()).expect("a token");
    assert!(
        token.verify("env-secret", Scope::Sip, unix_now()).is_ok(),
        "HOOKFLASH_SECRET is used"
    );

    let out = bin().args(["token", "carol"]).output().unwrap();
    assert!(
        !out.status.success(),
        "without any secret the command fails"
    );
    assert!(out.stdout.is_empty(), "and prints no token");
    let out = bin()
        .args(["token", "a:b", "--secret", "s"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "a user with ':' cannot have a token");
}

#[test]
fn a_token_opens_only_the_scopes_asked_for_and_each_server_gets_only_its_key() {
    let out = run_ok(
        bin().args(["token", "alice", "--scope", "sip,api", "--secret", "s3"]),
        "token with --scope",
    );
    let token = Token::parse(out.trim()).expect("stdout is exactly one token");
    assert_eq!(
        token.scopes().collect::<Vec<_>>(),
        [Scope::Sip, Scope::Api],
        "exactly the scopes asked for"
    );
    assert!(
        token.verify("s3", Scope::Turn, unix_now()).is_err(),
        "no TURN grant in a sip,api token"
    );
    let out = bin()
        .args(["token", "alice", "--scope", "sip,chat", "--secret", "s3"])
        .output()
        .unwrap();
    assert!(
        !out.status.success() && out.stdout.is_empty(),
        "an unknown scope is an error, not a token that opens less than asked"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("unknown scope"),
        "and says why: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let sip_key = run_ok(bin().args(["key", "sip", "--secret", "s3"]), "key sip");
    assert_eq!(
        sip_key.trim(),
        scope_key("s3", Scope::Sip),
        "the key Kamailio's auth_ephemeral is given"
    );
    assert!(
        token
            .verify_key(sip_key.trim(), Scope::Sip, unix_now())
            .is_ok(),
        "which checks the token's SIP grant without the secret"
    );
    let turn_key = run_ok(bin().args(["key", "turn", "--secret", "s3"]), "key turn");
    assert_ne!(turn_key, sip_key, "coturn's key is another one");
    assert!(
        !sip_key.contains("s3") && !turn_key.contains("s3"),
        "no key gives the secret away"
    );
}

#[test]
fn users_are_added_listed_and_removed() {
    let db = temp_path("users.db");
    let db_s = db.to_str().unwrap();
    run_ok(
        bin().args(["users", "add", "bob", "--password", "pw", "--db", db_s]),
        "add bob with a password",
    );
    run_ok(
        bin().args(["--db", db_s, "users", "add", "carol"]),
        "add carol, token-only",
    );
    let list = run_ok(bin().args(["users", "list", "--db", db_s]), "list");
    assert_eq!(
        list, "bob\tpassword\thookflash.local\ncarol\ttoken-only\thookflash.local\n",
        "both users listed by name, with their kind and realm"
    );
    run_ok(
        bin().args(["users", "remove", "bob", "--db", db_s]),
        "remove bob",
    );
    let list = run_ok(bin().args(["users", "list", "--db", db_s]), "list again");
    assert_eq!(
        list, "carol\ttoken-only\thookflash.local\n",
        "only carol is left"
    );
    let out = bin()
        .args(["users", "remove", "bob", "--db", db_s])
        .output()
        .unwrap();
    assert!(!out.status.success(), "removing a missing user is an error");
    let out = bin().args(["users", "list"]).output().unwrap();
    assert!(!out.status.success(), "users commands need a database");
    let _ = std::fs::remove_file(&db);
}

#[tokio::test]
async fn serve_answers_a_register_and_stops_on_sigterm() {
    let db = temp_path("serve.db");
    let config = temp_path("serve.toml");
    std::fs::write(
        &config,
        format!(
            "secret = \"file-secret\"\ndomain = \"example.test\"\ndb = {:?}\n",
            db.to_str().unwrap()
        ),
    )
    .unwrap();
    let cfg = config.to_str().unwrap();
    run_ok(
        bin().args(["users", "add", "dave", "--password", "pw", "--config", cfg]),
        "add dave to the configured database",
    );
    let data = temp_path("serve-data");
    let mut child = bin()
        .args(["serve", "--config", cfg, "--port", "0", "--http-port", "0"])
        .args(["--data-dir", data.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("serve starts");
    let stdout = child.stdout.take().unwrap();
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).map(|_| line)
    })
    .await
    .unwrap()
    .expect("serve prints its listening line");
    let rest = line
        .trim()
        .strip_prefix("switchboard listening on udp+tcp ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
    let (addr, rest) = rest.split_once(" domain ").expect("line names the domain");
    let (domain, http) = rest
        .split_once(" http ")
        .expect("with --http-port the line names the HTTP address last");
    let http: SocketAddr = http.parse().expect("an HTTP address");
    assert_eq!(
        domain, "example.test",
        "the domain comes from the config file"
    );
    let addr: SocketAddr = addr.parse().expect("the line names the address");

    let tok = run_ok(
        bin().args(["token", "alice", "--ttl", "10m", "--config", cfg]),
        "token from the configured secret",
    );
    let tok = Token::parse(tok.trim()).expect("a token");
    let mut ua = Ua::at("alice", TransportKind::Udp, addr, domain, tok.clone()).await;
    let mut dave = Ua::at("dave", TransportKind::Tcp, addr, domain, tok).await;
    assert_eq!(
        ua.register().await.status,
        200,
        "the served switchboard accepts the token"
    );
    dave.password = Some("pw".into());
    assert_eq!(
        dave.register().await.status,
        200,
        "and the database user added through the CLI"
    );
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("dave:pw")
    );
    let r = common::http::request(http, "GET", "/api/rules", Some(&basic), b"").await;
    assert_eq!(
        r.status, 200,
        "the HTTP API serves dave with his database password"
    );
    assert!(
        data.join("greeting-default.wav").is_file(),
        "the data directory holds the default greeting"
    );

    let pid = child.id().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status();
    assert!(killed.is_ok_and(|s| s.success()), "SIGTERM delivered");
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(
        status.success(),
        "serve exits cleanly on SIGTERM: {status:?}"
    );
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        std::net::UdpSocket::bind(addr).is_ok(),
        "the port is released after the stop"
    );
    assert!(
        data.is_dir(),
        "a configured data directory outlives the process"
    );
    let _ = std::fs::remove_file(&db);
    let _ = std::fs::remove_file(&config);
    let _ = std::fs::remove_dir_all(&data);
}

#[test]
fn rules_and_voicemail_commands_work_on_the_database() {
    let db = temp_path("rules.db");
    let db_s = db.to_str().unwrap();
    let out = run_ok(
        bin()
            .args([
                "rules",
                "set",
                "carol",
                "--busy",
                "bob",
                "--no-answer",
                "voicemail",
            ])
            .args(["--after", "15", "--db", db_s]),
        "set rules from flags",
    );
    assert_eq!(
        out.trim(),
        r#"{"always":null,"busy":{"to":"bob"},"noAnswer":{"after":15,"to":"voicemail"}}"#,
        "the stored rules are printed as JSON"
    );
    let out = run_ok(
        bin().args(["rules", "get", "carol", "--db", db_s]),
        "get rules",
    );
    assert!(out.contains(r#""busy":{"to":"bob"}"#), "read back: {out}");
    run_ok(
        bin()
            .args(["rules", "set", "carol", "--db", db_s])
            .args(["--json", r#"{"always": {"to": "+1 555-1234"}}"#]),
        "set rules from JSON",
    );
    let out = run_ok(
        bin().args(["rules", "get", "carol", "--db", db_s]),
        "get again",
    );
    assert_eq!(
        out.trim(),
        r#"{"always":{"to":"+15551234"},"busy":null,"noAnswer":null}"#,
        "JSON replaces every rule"
    );
    let bad = bin()
        .args(["rules", "set", "carol", "--always", "carol", "--db", db_s])
        .output()
        .unwrap();
    assert!(!bad.status.success(), "forwarding to oneself is refused");
    run_ok(
        bin().args(["rules", "clear", "carol", "--db", db_s]),
        "clear",
    );
    let out = run_ok(
        bin().args(["rules", "get", "carol", "--db", db_s]),
        "get cleared",
    );
    assert_eq!(
        out.trim(),
        r#"{"always":null,"busy":null,"noAnswer":null}"#,
        "no rules left"
    );
    let out = run_ok(
        bin().args(["voicemail", "list", "carol", "--db", db_s]),
        "list an empty mailbox",
    );
    assert!(out.is_empty(), "nothing to list");
    let _ = std::fs::remove_file(&db);
}
