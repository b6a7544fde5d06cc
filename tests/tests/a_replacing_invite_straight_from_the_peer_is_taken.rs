//! A call can be replaced (RFC 3891) by an INVITE that comes straight from the peer rather
//! than through the server: a standard client without an outbound proxy that follows a
//! Refer-To naming a contact does exactly that. The Hookflash user otherwise takes requests
//! only from its server (a stranger's "ghost call" gets 403), but knowing the dialog is what
//! authorises a Replaces, so this one is taken and the replaced call ends.
//!
//! The peer is sipp (Debian's), with scenarios in `tests/sipp/`: one sipp calls Carol through
//! the switchboard and logs the dialog; a second sends the replacing INVITE to her contact.
//! Both are stopped by PID (`kill_on_drop`) if they outlive the test.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use hookflash_core::api::Event;
use hookflash_core::call::{sub_code, CallState};
use hookflash_tests::{end_reason, Rig};

fn scenario(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("sipp")
        .join(name)
}

fn free_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("a free port")
        .port()
}

/// sipp for one call of `scenario` against `remote`, in `dir`, with extra arguments.
fn sipp(dir: &Path, remote: &str, scenario: &Path, extra: &[&str]) -> tokio::process::Child {
    tokio::process::Command::new("sipp")
        .arg(remote)
        .arg("-sf")
        .arg(scenario)
        .args(["-m", "1", "-i", "127.0.0.1", "-p", &free_port().to_string()])
        .args(["-mp", &free_port().to_string()])
        .args(["-timeout", "30", "-nostdin", "-trace_err", "-trace_logs"])
        .args(extra)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("sipp is installed (scripts/deps installs it)")
}

/// The first line of sipp's `<log>` output in `dir` that starts with `prefix`.
async fn logged(dir: &Path, prefix: &str) -> String {
    for _ in 0..100 {
        for entry in std::fs::read_dir(dir).expect("dir").flatten() {
            if entry.file_name().to_string_lossy().ends_with("_logs.log") {
                let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
                if let Some(line) = text.lines().find(|l| l.starts_with(prefix)) {
                    return line.to_owned();
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("sipp logged no {prefix:?} line");
}

fn errors(dir: &Path) -> String {
    std::fs::read_dir(dir)
        .expect("dir")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with("_errors.log"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invite_with_replaces_from_the_peer_itself_is_answered() {
    let rig = Rig::start().await;
    let mut carol = rig.agent("carol", 1000.0).await;
    let token = rig.token("sam");
    let user = token.sip_username();
    let signature = token
        .password(hookflash_core::auth::Scope::Sip)
        .expect("the token opens SIP");
    let dir = std::env::temp_dir().join(format!("hookflash-sipp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (first_dir, second_dir) = (dir.join("call"), dir.join("replace"));
    std::fs::create_dir_all(&first_dir).expect("dir");
    std::fs::create_dir_all(&second_dir).expect("dir");

    // Sam calls Carol through the switchboard; she answers.
    let server = rig.switchboard.local_addr().to_string();
    let mut caller = sipp(
        &first_dir,
        &server,
        &scenario("call_then_be_replaced.xml"),
        &["-key", "callee", "carol", "-au", &user, "-ap", signature],
    );
    let first = carol.wait_incoming().await;
    carol
        .agent
        .call(&first)
        .accept()
        .await
        .expect("Carol answers Sam");
    carol.wait_state(&first, CallState::Connected).await;
    let line = logged(&first_dir, "dialog ").await;
    let fields: Vec<&str> = line.split_whitespace().collect();
    let [_, call_id, from_tag, to_tag, host, port] = fields[..] else {
        panic!("sipp's dialog line: {line}");
    };

    // Sam replaces that call with an INVITE straight to Carol's contact.
    let contact = format!("{host}:{port}");
    let mut replacer = sipp(
        &second_dir,
        &contact,
        &scenario("replace_at_the_contact.xml"),
        &[
            "-key", "callee", "carol", "-key", "callid", call_id, "-key", "fromtag", from_tag,
            "-key", "totag", to_tag,
        ],
    );
    let replaced = carol
        .wait_for("the replacing call", |e| {
            matches!(e, Event::CallReplaced { .. })
        })
        .await;
    let Event::CallReplaced {
        call_id: old,
        new_call_id,
    } = replaced
    else {
        unreachable!()
    };
    assert_eq!(
        old, first,
        "the call Sam named in Replaces is the one replaced"
    );
    let ended = carol.wait_state(&first, CallState::Disconnected).await;
    assert_eq!(
        end_reason(&ended).map(|r| r.sub_code),
        Some(sub_code::REPLACED),
        "the replaced call ends as replaced: {ended:?}"
    );
    carol
        .wait_state(&new_call_id, CallState::Disconnected)
        .await;
    for (name, child, dir) in [
        ("the first sipp", &mut caller, &first_dir),
        ("the replacing sipp", &mut replacer, &second_dir),
    ] {
        let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
            .await
            .expect("sipp finishes its scenario")
            .expect("sipp's exit status");
        assert!(
            status.success(),
            "{name} completed its scenario ({status}): {}",
            errors(dir)
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
