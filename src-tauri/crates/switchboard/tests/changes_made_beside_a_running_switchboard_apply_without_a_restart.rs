//! The switchboard's proxy answers every call from memory (its directory of users, rules and
//! mailbox counts), never waiting for SQLite on the loop that serves all calls. Changes made
//! by another process to its database — `hookflash-switchboard users add` or `rules set`
//! beside a running switchboard, as the README shows — must still reach it: a watcher off the
//! loop notices SQLite's data version change and reloads. Here the CLI adds a user while the
//! switchboard serves, and calls to that user go from `404 Not Found` (unknown) to
//! `480 Temporarily Unavailable` (known, not signed in) within a couple of seconds, with no
//! restart.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::agents::agent;
use common::*;
use hookflash_switchboard::directory::REFRESH_INTERVAL;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_added_by_the_cli_beside_a_running_switchboard_is_known_without_a_restart() {
    let dir = std::env::temp_dir().join(format!("hookflash-beside-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("test dir");
    let db = dir.join("switchboard.db");
    let sb = switchboard_with(|c| c.db_path = Some(db.clone())).await;
    let mut alice = agent(&sb, "alice", 440.0).await;

    let call = alice.agent.start_call("dave").await.expect("startCall");
    assert_eq!(
        alice.end_code(&call).await,
        404,
        "before the CLI adds him, dave is nobody"
    );

    let out = Command::new(env!("CARGO_BIN_EXE_hookflash-switchboard"))
        .args(["users", "add", "dave", "--password", "pw", "--db"])
        .arg(&db)
        .env_remove("HOOKFLASH_SECRET")
        .output()
        .expect("the CLI runs");
    assert!(
        out.status.success(),
        "users add beside a running switchboard: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let added = Instant::now();
    let known = loop {
        let call = alice.agent.start_call("dave").await.expect("startCall");
        let code = alice.end_code(&call).await;
        if code == 480 || added.elapsed() > REFRESH_INTERVAL * 5 {
            break code;
        }
        assert_eq!(code, 404, "until the reload, still unknown");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        known, 480,
        "within a few watcher intervals dave is known (not signed in): no restart needed"
    );
    eprintln!(
        "directory reload seen {} ms after the CLI returned",
        added.elapsed().as_millis()
    );
    alice.agent.shutdown().await;
    sb.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}
