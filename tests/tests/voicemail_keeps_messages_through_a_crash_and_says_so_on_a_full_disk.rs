//! Voicemail loses nothing silently.
//!
//! * A switchboard killed (SIGKILL) while a caller is leaving a message: at the next start
//!   the message is in the mailbox, playable, with who left it; what was said up to about a
//!   second before the kill is in it.
//! * A full disk while a caller talks: the message is not indexed as if it were good, no
//!   broken file is left, and the caller hears the reorder tone instead of silence before
//!   the voicemail hangs up. The disk is a 160 KiB tmpfs of the test's own (root, as in CI),
//!   unmounted at the end.

use std::path::{Path, PathBuf};
use std::time::Duration;

use hookflash_core::audio::{tone_present, SAMPLE_RATE};
use hookflash_tests::baresip::wav;
use hookflash_tests::process::{bin, SwitchboardProcess};
use hookflash_tests::{mostly_hears, tail};

const SECRET: &str = "voicemail faults";
/// Leaving a message for Carol: her voicemail URI.
const CAROL_VOICEMAIL: &str = "sip:voicemail@hookflash.local;target=carol";

/// `hookflash-switchboard voicemail list carol` against `db`: one line per message.
async fn carols_messages(db: &Path) -> Vec<String> {
    let out = tokio::process::Command::new(bin("hookflash-switchboard"))
        .arg("--db")
        .arg(db)
        .args(["voicemail", "list", "carol"])
        .output()
        .await
        .expect("the voicemail list command");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

fn recordings(data: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(data.join("voicemail").join("carol"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_left_while_the_switchboard_is_killed_is_there_after_restart() {
    let dir = std::env::temp_dir().join(format!("hookflash-vm-crash-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let (data, db) = (dir.join("data"), dir.join("switchboard.db"));
    let args = [
        "--data-dir",
        data.to_str().expect("path"),
        "--db",
        db.to_str().expect("path"),
    ];
    let sb = SwitchboardProcess::start(SECRET, &args).await;
    // Carol has signed in once: the switchboard knows her mailbox.
    let carol = sb.agent("carol", &[]).await;
    let mut alice = sb.agent("alice", &["--mic", "tone:440"]).await;
    alice.start_call(CAROL_VOICEMAIL).await;
    alice.state("Connected").await;
    // The greeting (about 2.6 s), then 3.5 s of Alice's 440 Hz.
    tokio::time::sleep(Duration::from_millis(6100)).await;
    sb.kill_hard().await;
    drop((alice, carol));

    let sb = SwitchboardProcess::start(SECRET, &args).await;
    let messages = carols_messages(&db).await;
    assert_eq!(
        messages.len(),
        1,
        "the message is in Carol's mailbox: {messages:?}"
    );
    let fields: Vec<&str> = messages[0].split('\t').collect();
    let duration_ms: u64 = fields[2].parse().expect("duration");
    assert!(
        duration_ms >= 2000,
        "all but about the last second of what Alice said is kept: {duration_ms} ms"
    );
    assert!(
        fields[4].starts_with("sip:alice@"),
        "and who left it: {}",
        messages[0]
    );
    let files = recordings(&data);
    assert_eq!(files.len(), 1, "one recording, no leftovers: {files:?}");
    let samples = wav(&files[0]);
    assert!(
        mostly_hears(&samples, 440.0),
        "the recovered recording plays Alice's voice"
    );
    drop(sb);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A tmpfs of `kib` KiB at `path`, unmounted when dropped.
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn mount(path: &Path, kib: u32) -> SmallDisk {
        std::fs::create_dir_all(path).expect("mount point");
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={kib}k"), "tmpfs"])
            .arg(path)
            .status()
            .expect("mount");
        assert!(status.success(), "a small tmpfs (needs root, as CI has)");
        SmallDisk(path.to_owned())
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_keeps_no_broken_message_and_the_caller_is_told() {
    let dir = std::env::temp_dir().join(format!("hookflash-vm-full-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let (data, db) = (dir.join("data"), dir.join("switchboard.db"));
    // Room for the greeting (81 KiB) and about a second of message (94 KiB/s).
    let disk = SmallDisk::mount(&data, 180);
    let heard = dir.join("alice-{call}.wav");
    let speaker = format!("wav:{}", heard.display());
    let sb = SwitchboardProcess::start(
        SECRET,
        &[
            "--data-dir",
            data.to_str().expect("path"),
            "--db",
            db.to_str().expect("path"),
        ],
    )
    .await;
    let _carol = sb.agent("carol", &[]).await;
    let mut alice = sb
        .agent("alice", &["--mic", "tone:440", "--speaker", &speaker])
        .await;
    let call = alice.start_call(CAROL_VOICEMAIL).await;
    alice.state("Connected").await;
    let ended = alice.call_state(&call, "Disconnected").await;
    assert_eq!(
        ended["callEndReason"]["subCode"], 1001,
        "the voicemail ends the call itself once the message cannot be kept: {ended}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let samples = wav(&dir.join(format!("alice-{call}.wav")));
    // The reorder tone is 250 ms on, 250 ms off: look at it in 100 ms windows.
    let windows: Vec<&[i16]> = tail(&samples, Duration::from_secs(2))
        .chunks_exact(SAMPLE_RATE as usize / 10)
        .collect();
    let with_reorder = windows
        .iter()
        .filter(|w| tone_present(w, 480.0, SAMPLE_RATE) && tone_present(w, 620.0, SAMPLE_RATE))
        .count();
    assert!(
        with_reorder * 10 >= windows.len() * 3,
        "Alice hears the reorder tone (480 + 620 Hz) before the hang-up, not silence: \
         {with_reorder} of {} windows",
        windows.len()
    );
    assert!(
        carols_messages(&db).await.is_empty(),
        "a message that could not be stored is never indexed"
    );
    let left: Vec<PathBuf> = recordings(&data);
    assert!(left.is_empty(), "no broken recording is left: {left:?}");
    drop(sb);
    drop(disk);
    let _ = std::fs::remove_dir_all(&dir);
}
