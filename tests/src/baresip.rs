//! baresip 1.0 (Debian's `baresip-core`) as a peer in tests: a configuration directory
//! (WebRTC-style or plain media), running it inside a [`Netns`] and reading what it heard.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};

use crate::netns::{Netns, HOST_B, IFACE_B};

/// Where baresip takes commands (`ctrl_tcp`, netstring JSON), on [`HOST_B`].
pub const CONTROL_PORT: u16 = 4444;

/// Sends baresip one command through `ctrl_tcp` (as a person types it in its menu, without
/// the slash: `transfer sip:carol@example.org`), from inside the namespace.
pub async fn control(ns: &Netns, command: &str, params: &str) {
    let json = serde_json::json!({"command": command, "params": params, "token": "t"}).to_string();
    let netstring = format!("{}:{json},", json.len());
    // The test itself is outside the namespace: send from a process inside it.
    let status = ns
        .command("bash")
        .arg("-c")
        .arg(format!(
            "exec 3<>/dev/tcp/{HOST_B}/{CONTROL_PORT}; printf '%s' \"$0\" >&3; sleep 1"
        ))
        .arg(netstring)
        .status()
        .await
        .expect("run bash in the namespace");
    assert!(status.success(), "baresip's control port takes {command}");
}

/// The tone baresip talks with.
pub const BARESIP_HZ: f64 = 880.0;

/// A baresip configuration directory: config, accounts, its voice (a tone at the rate of the
/// first codec in `media`, as its `aufile` source wants) and where `sndfile` records what it
/// hears. `outbound` is the outbound proxy (`host:port`), or `direct:host:port` for a client
/// without one, registered to that server by address, or `trunk:USER@DOMAIN` for a server of
/// another domain that registers nowhere and takes calls for that address (`token` unused).
pub fn baresip_dir(root: &Path, token: &str, outbound: &str, media: &str) -> PathBuf {
    // One directory per media setting, with a short name: baresip 1.0's sndfile cuts the
    // paths of its recordings at about 100 characters.
    let name = media.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let dir = root.join(format!("baresip-{:08x}", name as u32));
    std::fs::create_dir_all(dir.join("heard")).expect("baresip dir");
    // baresip 1.0's aufile source does not resample: its file must have the rate and channels
    // of the codec in use, so each configuration names one codec first and the voice follows.
    let first_codec = media
        .split(';')
        .find_map(|p| p.strip_prefix("audio_codecs="))
        .and_then(|list| list.split(',').next())
        .unwrap_or("opus")
        .to_ascii_lowercase();
    let (sample_rate, channels) = if first_codec.starts_with("opus") {
        (48_000, 2)
    } else if first_codec.starts_with("g722") {
        (16_000, 1)
    } else {
        (8_000, 1)
    };
    let spec = hound::WavSpec {
        channels,
        sample_rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut tone = hound::WavWriter::create(dir.join("voice.wav"), spec).expect("voice.wav");
    for i in 0..sample_rate * 30 {
        let v = (std::f64::consts::TAU * BARESIP_HZ * f64::from(i) / f64::from(sample_rate)).sin()
            * 12_000.0;
        for _ in 0..channels {
            tone.write_sample(v as i16).expect("sample");
        }
    }
    tone.finalize().expect("voice.wav");
    let d = dir.display();
    let config = format!(
        "poll_method\t\tepoll\n\
         sip_listen\t\t{HOST_B}:5060\n\
         net_interface\t\t{IFACE_B}\n\
         audio_player\t\taufile,{d}/played.wav\n\
         audio_source\t\taufile,{d}/voice.wav\n\
         audio_alert\t\taufile,{d}/voice.wav\n\
         rtcp_mux\t\tyes\n\
         jitter_buffer_delay\t5-10\n\
         module_path\t\t/usr/lib/baresip/modules\n\
         module\t\t\topus.so\n\
         module\t\t\tg711.so\n\
         module\t\t\tg722.so\n\
         module\t\t\taufile.so\n\
         module\t\t\tsndfile.so\n\
         snd_path\t\t{d}/heard\n\
         module\t\t\tice.so\n\
         module\t\t\tdtls_srtp.so\n\
         module\t\t\tsrtp.so\n\
         module_tmp\t\tuuid.so\n\
         module_tmp\t\taccount.so\n\
         module_app\t\tmenu.so\n\
         ctrl_tcp_listen\t\t{HOST_B}:{CONTROL_PORT}\n\
         module_app\t\tctrl_tcp.so\n"
    );
    std::fs::write(dir.join("config"), config).expect("config");
    if let Some(aor) = outbound.strip_prefix("trunk:") {
        let account = format!("<sip:{aor}>;regint=0;answermode=auto;{media}\n");
        std::fs::write(dir.join("accounts"), account).expect("accounts");
        return dir;
    }
    // The token's SIP grant is the digest credential: user `EXPIRY:USER`, password the grant.
    let token = hookflash_core::auth::Token::parse(token).expect("a token");
    let user = token.sip_username();
    let signature = token
        .password(hookflash_core::auth::Scope::Sip)
        .expect("the token opens SIP");
    // `direct:` instead of an outbound proxy: a client set up without one, whose address of
    // record names the server itself (a made-up domain would resolve nowhere).
    let account = match outbound.strip_prefix("direct:") {
        Some(server) => format!(
            "<sip:bob@{server}>;auth_user={user};auth_pass={signature};\
             regint=600;answermode=auto;{media}\n"
        ),
        None => format!(
            "<sip:bob@hookflash.local>;auth_user={user};auth_pass={signature};\
             outbound=\"sip:{outbound}\";regint=600;answermode=auto;{media}\n"
        ),
    };
    std::fs::write(dir.join("accounts"), account).expect("accounts");
    dir
}

/// What baresip printed so far.
pub type Output = std::sync::Arc<std::sync::Mutex<Vec<String>>>;

/// Runs baresip in the namespace until it prints `until` (or exits); returns the child and
/// what it prints.
pub async fn baresip(
    ns: &Netns,
    dir: &Path,
    args: &[&str],
    until: &str,
) -> (tokio::process::Child, Output) {
    let mut child = ns
        .command("baresip")
        .arg("-f")
        .arg(dir)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("baresip is installed (scripts/deps installs it)");
    let mut out = BufReader::new(child.stdout.take().expect("stdout")).split(b'\n');
    let printed: Output = Default::default();
    let until = until.to_owned();
    let keep = printed.clone();
    let seen = tokio::time::timeout(Duration::from_secs(15), async {
        while let Ok(Some(line)) = out.next_segment().await {
            let line = String::from_utf8_lossy(&line).into_owned();
            let hit = line.contains(&until);
            keep.lock().unwrap().push(line);
            if hit {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(
        seen,
        Ok(true),
        "baresip prints {until:?}; it printed:\n{}",
        printed.lock().map(|p| p.join("\n")).unwrap_or_default()
    );
    // Keep reading its output (so it never blocks on a full pipe), and keep it.
    let keep = printed.clone();
    tokio::spawn(async move {
        while let Ok(Some(line)) = out.next_segment().await {
            keep.lock()
                .unwrap()
                .push(String::from_utf8_lossy(&line).into_owned());
        }
    });
    (child, printed)
}

/// The first channel of the newest recording in `dir` (sndfile's `*-dec.wav`: what baresip
/// heard, at the codec's rate), held to 48 kHz so that the tone checks read it as they read
/// ours (a sample-and-hold keeps every tone where it was).
pub fn baresip_heard(dir: &Path) -> Vec<i16> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("heard"))
        .expect("sndfile's directory")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with("-dec.wav"))
        .collect();
    files.sort();
    let path = files.pop().expect("baresip recorded the call");
    let reader = hound::WavReader::open(&path).expect("a complete WAV");
    let spec = reader.spec();
    let hold = (48_000 / spec.sample_rate.max(1)).max(1) as usize;
    reader
        .into_samples::<i16>()
        .filter_map(Result::ok)
        .step_by(usize::from(spec.channels.max(1)))
        .flat_map(|s| std::iter::repeat_n(s, hold))
        .collect()
}

/// A call's recording, once the agent has closed it: the header then holds the length, and
/// the file stops growing (read twice, 200 ms apart, the same).
pub fn wav(path: &Path) -> Vec<i16> {
    let read = || -> Vec<i16> {
        hound::WavReader::open(path)
            .map(|r| r.into_samples::<i16>().filter_map(Result::ok).collect())
            .unwrap_or_default()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut last = read();
    loop {
        std::thread::sleep(Duration::from_millis(200));
        let now = read();
        if (!now.is_empty() && now.len() == last.len()) || std::time::Instant::now() > deadline {
            return now;
        }
        last = now;
    }
}

/// Stops baresip the way a user quits it (SIGTERM: it ends its calls with a BYE and removes
/// its registration, so that no stale binding is left for the next test), by PID; killed if
/// it has not exited within 5 s.
pub async fn quit(mut child: tokio::process::Child) {
    if let Some(pid) = child.id() {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
    }
    if tokio::time::timeout(Duration::from_secs(5), child.wait())
        .await
        .is_err()
    {
        let _ = child.kill().await;
    }
}

/// An agent of `sb`'s whose microphone is a `hz` tone and whose speaker is recorded to `wav`
/// (with `{call}` for the call id); it answers calls itself when `auto_answer`.
pub async fn recorded_agent(
    sb: &crate::process::SwitchboardProcess,
    user: &str,
    hz: u32,
    wav: &Path,
    auto_answer: bool,
) -> crate::process::AgentProcess {
    let mic = format!("tone:{hz}");
    let speaker = format!("wav:{}", wav.display());
    let mut args = vec!["--mic", mic.as_str(), "--speaker", speaker.as_str()];
    if auto_answer {
        args.push("--auto-answer");
    }
    sb.agent(user, &args).await
}

/// baresip (the account in `dir`) dials Alice at `uri`, who answers by herself, talks for
/// its `-t` 8 s and hangs up: returns Alice's call, once it ended with baresip's BYE
/// (sub-code 1001).
pub async fn baresip_calls_alice(
    ns: &crate::netns::Netns,
    dir: &Path,
    uri: &str,
    alice: &mut crate::process::AgentProcess,
) -> String {
    let dial = format!("/dial {uri}");
    let (mut caller, _) = baresip(ns, dir, &["-t", "8", "-e", &dial], "Call established").await;
    let call = alice.state("Connected").await;
    alice
        .next("audio from baresip", |v| v["event"] == "remoteAudioStarted")
        .await;
    let _ = tokio::time::timeout(Duration::from_secs(15), caller.wait())
        .await
        .expect("baresip quits after its -t time");
    let ended = alice.call_state(&call, "Disconnected").await;
    assert_eq!(
        ended["callEndReason"]["subCode"], 1001,
        "the far end hung up: baresip's BYE reached Alice: {ended}"
    );
    call
}

/// Whether the agent's recording of `call` (`recording` with `{call}` in it), once closed,
/// mostly holds baresip's tone in its last two seconds.
pub fn agent_heard_baresip(recording: &Path, call: &str) -> bool {
    let path = recording.to_string_lossy().replace("{call}", call);
    let heard = wav(Path::new(&path));
    crate::mostly_hears(crate::tail(&heard, Duration::from_secs(2)), BARESIP_HZ)
}

/// `agent`'s connected call `call` with the baresip of `dir`: both talk for 3 s, then the
/// agent hangs up. Asserts that the agent (recorded to `recording`, with `{call}`) hears
/// baresip and that baresip hears the agent's `agent_hz`; `why` names the call.
pub async fn talk_then_hang_up(
    agent: &mut crate::process::AgentProcess,
    call: &str,
    recording: &Path,
    dir: &Path,
    agent_hz: f64,
    why: &str,
) {
    tokio::time::sleep(Duration::from_secs(3)).await;
    agent.hang_up(call).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        agent_heard_baresip(recording, call),
        "{why}: Hookflash hears baresip ({BARESIP_HZ} Hz)"
    );
    assert!(
        crate::hears(middle(&baresip_heard(dir)), agent_hz),
        "{why}: baresip hears Hookflash ({agent_hz} Hz)"
    );
}

/// Alice (an agent of `sb` talking at 440 Hz, recorded to `recording` with `{call}`) calls
/// `target`, which the baresip of `dir` answers by itself; they talk and she hangs up, each
/// having heard the other (see [`talk_then_hang_up`]). Returns Alice, still signed in.
pub async fn alice_calls_baresip(
    sb: &crate::process::SwitchboardProcess,
    recording: &Path,
    target: &str,
    dir: &Path,
    why: &str,
) -> crate::process::AgentProcess {
    let mut alice = recorded_agent(sb, "alice", 440, recording, false).await;
    let call = alice.start_call(target).await;
    alice.state("Connected").await;
    talk_then_hang_up(&mut alice, &call, recording, dir, 440.0, why).await;
    alice
}

/// The middle half of a recording (away from the ring-in and the hang-up).
pub fn middle(samples: &[i16]) -> &[i16] {
    let n = samples.len();
    &samples[n / 4..n * 3 / 4]
}

/// The DTMF keys baresip says it decoded, in order: it prints each RFC 4733 event,
/// "received event: '1' (end=1)".
pub fn keys_decoded(printed: &Output) -> String {
    printed
        .lock()
        .unwrap()
        .iter()
        .flat_map(|l| l.split('\r'))
        .filter_map(|l| l.split("received event: '").nth(1))
        .filter(|rest| rest.contains("(end=1)"))
        .filter_map(|rest| rest.chars().next())
        .collect()
}

/// Removes what baresip recorded so far, so that the next call's recording is the newest.
pub fn clear_recordings(dir: &Path) {
    for f in std::fs::read_dir(dir.join("heard"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let _ = std::fs::remove_file(f.path());
    }
}

/// The call every baresip suite makes first: `alice` calls `callee` (a baresip that answers
/// by itself), waits for its audio, holds and resumes, and sends the DTMF keys "159" (which
/// [`keys_decoded`] then finds in baresip's output). Returns the call, still up.
pub async fn call_hold_resume_and_send_keys(
    alice: &mut crate::process::AgentProcess,
    callee: &str,
) -> String {
    let call = alice.start_call(callee).await;
    alice.state("Connected").await;
    alice
        .next("audio from baresip", |v| v["event"] == "remoteAudioStarted")
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    // Hold and resume: baresip answers our sendonly re-INVITE, then audio flows again.
    alice
        .send(serde_json::json!({"command": "hold", "callId": call}))
        .await;
    alice.state("LocalHold").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    alice
        .send(serde_json::json!({"command": "resume", "callId": call}))
        .await;
    alice.state("Connected").await;
    // DTMF (RFC 4733) that baresip decodes.
    alice
        .send(serde_json::json!({"command": "sendDtmf", "callId": call, "tones": "159", "requestId": "keys"}))
        .await;
    let sent = alice
        .next("the keys are sent", |v| v["requestId"] == "keys")
        .await;
    assert_eq!(
        sent["event"], "commandSucceeded",
        "sendDtmf succeeds once sent: {sent}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    call
}
