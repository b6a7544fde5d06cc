//! Kamailio as the server at scale, with software nobody here wrote on both ends of the
//! wire: Kamailio 5.6 (registrar and stateful proxy, `auth_ephemeral` with the switchboard's
//! token scheme) between a Hookflash agent and baresip 1.0, both signed in with user access
//! tokens; calls both ways, each side hearing the other, once with WebRTC-style media and
//! once with plain RTP (which Hookflash reaches after baresip refuses its first offers).
//!
//! All of it runs in a network namespace of the test's own (baresip offers no loopback ICE
//! candidates); Kamailio, the agent and baresip are stopped by PID, and the namespace goes
//! with anything left in it.

use std::process::Stdio;
use std::time::Duration;

use hookflash_core::auth::{unix_now, Token};
use hookflash_tests::baresip::{baresip, baresip_dir, baresip_heard, quit, wav, BARESIP_HZ};
use hookflash_tests::mostly_hears;
use hookflash_tests::netns::{Netns, HOST_A};
use hookflash_tests::process::bin;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const SECRET: &str = "shared-with-kamailio";
const DOMAIN: &str = "hookflash.local";
const HOOKFLASH_HZ: f64 = 440.0;
const PORT: u16 = 5070;

/// A registrar and stateful proxy with ephemeral-token authentication.
fn config(modules: &str) -> String {
    // Kamailio holds the SIP scope's key only, as deploy/kamailio does.
    let sip_key = hookflash_core::auth::scope_key(SECRET, hookflash_core::auth::Scope::Sip);
    format!(
        r#"#!KAMAILIO
debug=2
log_stderror=yes
children=2
auto_aliases=no
listen=udp:{HOST_A}:{PORT}
alias="{DOMAIN}"
alias="{HOST_A}:{PORT}"
mpath="{modules}"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "textops.so"
loadmodule "siputils.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
loadmodule "auth.so"
loadmodule "auth_ephemeral.so"
modparam("auth_ephemeral", "secret", "{sip_key}")
modparam("auth_ephemeral", "username_format", 1)
request_route {{
    if (!mf_process_maxfwd_header("10")) {{
        sl_send_reply("483", "Too Many Hops");
        exit;
    }}
    if (has_totag()) {{
        if (loose_route()) {{
            t_relay();
            exit;
        }}
        if (is_method("ACK")) {{
            if (t_check_trans()) t_relay();
            exit;
        }}
        sl_send_reply("404", "Not Here");
        exit;
    }}
    if (is_method("CANCEL")) {{
        if (t_check_trans()) t_relay();
        exit;
    }}
    if (is_method("OPTIONS") && uri == myself && $rU == $null) {{
        sl_send_reply("200", "OK");
        exit;
    }}
    if (is_method("REGISTER")) {{
        if (!autheph_www("$td")) {{
            auth_challenge("$td", "0");
            exit;
        }}
        if (!autheph_check_to()) {{
            sl_send_reply("403", "Identity Mismatch");
            exit;
        }}
        if (!save("location")) sl_reply_error();
        exit;
    }}
    if (!autheph_proxy("$fd")) {{
        auth_challenge("$fd", "0");
        exit;
    }}
    if (!autheph_check_from()) {{
        sl_send_reply("403", "Identity Mismatch");
        exit;
    }}
    consume_credentials();
    if (is_method("SUBSCRIBE")) {{
        sl_send_reply("404", "No Mailbox Here");
        exit;
    }}
    if (is_method("INVITE|REFER")) record_route();
    if (!lookup("location")) {{
        sl_send_reply("404", "Not Found");
        exit;
    }}
    t_relay();
}}
"#
    )
}

fn module_dir() -> String {
    hookflash_tests::kamailio_module_dir()
        .expect("kamailio and kamailio-autheph-modules are installed (scripts/deps does)")
}

/// A headless agent in the namespace, signed in to Kamailio; returns it and its event lines.
async fn agent(
    ns: &Netns,
    user: &str,
    extra: &[&str],
) -> (
    tokio::process::Child,
    tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
) {
    let token = Token::issue(SECRET, user, Duration::from_secs(3600), unix_now()).to_string();
    let mut child = ns
        .command(bin("hookflash-agent"))
        .args(["--server", &format!("{HOST_A}:{PORT}"), "--bind", HOST_A])
        .args(["--domain", DOMAIN])
        .env("HOOKFLASH_TOKEN", &token)
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn hookflash-agent");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    next(&mut lines, "registered with Kamailio", |v| {
        v["event"] == "connectionStateChanged" && v["newValue"] == "Connected"
    })
    .await;
    (child, lines)
}

async fn next(
    lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    what: &str,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let line = lines
                .next_line()
                .await
                .expect("read the agent")
                .unwrap_or_else(|| panic!("the agent exited before {what}"));
            if let Ok(v) = serde_json::from_str::<Value>(&line) {
                if pred(&v) {
                    return v;
                }
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {what} in time"))
}

/// Hookflash calls baresip (with `media` in its account) through Kamailio and baresip calls
/// Hookflash; each hears the other.
async fn calls_both_ways(ns: &Netns, root: &std::path::Path, name: &str, media: &str) {
    let token = Token::issue(SECRET, "bob", Duration::from_secs(3600), unix_now()).to_string();
    let dir = baresip_dir(root, &token, &format!("{HOST_A}:{PORT}"), media);
    let (bob, _) = baresip(ns, &dir, &[], "200 OK").await;

    // Hookflash calls baresip through Kamailio.
    let out = root.join(format!("alice-out-{name}-{{call}}.wav"));
    let (mut alice, mut events) = agent(
        ns,
        "alice",
        &[
            "--mic",
            "tone:440",
            "--speaker",
            &format!("wav:{}", out.display()),
        ],
    )
    .await;
    let mut stdin = alice.stdin.take().expect("stdin");
    stdin
        .write_all(b"{\"command\":\"startCall\",\"target\":\"bob\",\"requestId\":\"c\"}\n")
        .await
        .expect("write");
    let started = next(&mut events, "the call's id", |v| v["requestId"] == "c").await;
    let call = started["callId"].as_str().expect("call id").to_owned();
    next(&mut events, "Connected", |v| {
        v["event"] == "callStateChanged" && v["state"] == "Connected"
    })
    .await;
    next(&mut events, "baresip's audio", |v| {
        v["event"] == "remoteAudioStarted"
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    stdin
        .write_all(format!("{}\n", json!({"command": "hangUp", "callId": call})).as_bytes())
        .await
        .expect("write");
    next(&mut events, "Disconnected", |v| {
        v["event"] == "callStateChanged" && v["state"] == "Disconnected"
    })
    .await;
    assert!(
        mostly_hears(
            &wav(&root.join(format!("alice-out-{name}-{call}.wav"))),
            BARESIP_HZ
        ),
        "{name}: Hookflash hears baresip (880 Hz) through Kamailio"
    );
    assert!(
        mostly_hears(&baresip_heard(&dir), HOOKFLASH_HZ),
        "{name}: baresip hears Hookflash (440 Hz) through Kamailio"
    );
    quit(bob).await;
    let _ = alice.kill().await;
    for f in std::fs::read_dir(dir.join("heard")).expect("dir").flatten() {
        let _ = std::fs::remove_file(f.path());
    }

    // baresip calls Hookflash through Kamailio.
    let inbound = root.join(format!("alice-in-{name}-{{call}}.wav"));
    let (mut answerer, mut events) = agent(
        ns,
        "alice",
        &[
            "--auto-answer",
            "--mic",
            "tone:440",
            "--speaker",
            &format!("wav:{}", inbound.display()),
        ],
    )
    .await;
    let (mut caller, _) = baresip(
        ns,
        &dir,
        &["-t", "8", "-e", "/dial sip:alice@hookflash.local"],
        "Call established",
    )
    .await;
    let connected = next(&mut events, "Connected", |v| {
        v["event"] == "callStateChanged" && v["state"] == "Connected"
    })
    .await;
    let call = connected["callId"].as_str().expect("call id").to_owned();
    let _ = tokio::time::timeout(Duration::from_secs(15), caller.wait()).await;
    next(&mut events, "baresip hangs up", |v| {
        v["event"] == "callStateChanged" && v["state"] == "Disconnected"
    })
    .await;
    assert!(
        mostly_hears(
            &wav(&root.join(format!("alice-in-{name}-{call}.wav"))),
            BARESIP_HZ
        ),
        "{name}: Hookflash hears baresip on the call baresip placed through Kamailio"
    );
    assert!(
        mostly_hears(&baresip_heard(&dir), HOOKFLASH_HZ),
        "{name}: baresip hears Hookflash on the call it placed through Kamailio"
    );
    let _ = answerer.kill().await;
    quit(caller).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baresip_and_hookflash_call_each_other_through_kamailio() {
    let root = std::env::temp_dir().join(format!("hookflash-kam-bs-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).expect("test dir");
    let ns = Netns::two_hosts("kamailio");
    let cfg = root.join("kamailio.cfg");
    std::fs::write(&cfg, config(&module_dir())).expect("kamailio.cfg");
    let mut kamailio = hookflash_tests::kamailio_args(&mut ns.command("kamailio"), &cfg, &root)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("kamailio is installed (scripts/deps installs it)");
    tokio::time::sleep(Duration::from_millis(800)).await;

    // WebRTC-style media (ICE, DTLS-SRTP, Opus), then plain RTP (RTP/AVP, PCMU): Hookflash's
    // default policy reaches the second after baresip refuses the first two profiles.
    calls_both_ways(
        &ns,
        &root,
        "webrtc",
        "medianat=ice;mediaenc=dtls_srtp;audio_codecs=opus/48000/2,pcmu",
    )
    .await;
    calls_both_ways(&ns, &root, "rtp", "audio_codecs=pcmu").await;
    // Kamailio by its PID; the namespace takes anything else left.
    if let Some(pid) = kamailio.id() {
        let _ = std::process::Command::new("kill")
            .arg(pid.to_string())
            .status();
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), kamailio.wait()).await;
    drop(ns);
    let _ = std::fs::remove_dir_all(&root);
}
