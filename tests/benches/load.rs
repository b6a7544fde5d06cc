//! Load: the switchboard against Kamailio 5.6 in the same run, with sipp (Debian
//! `sip-tester`) on loopback, release builds, digest auth with the same token scheme on both.
//!
//! For each server:
//! * **REGISTER/s**: sipp registers distinct users (401 challenge, then credentials) at rising
//!   rates, `STEP_SECS` seconds a step; a step is *clean* with 0 failed registrations and
//!   fewer than 0.1 % retransmissions. Printed: the highest clean rate, CPU (percent of one
//!   core, the server's whole process tree) and memory (PSS, shared memory counted once).
//! * **calls/s**: a caller sipp (INVITE, 407, INVITE with credentials, 200, ACK, BYE) to one
//!   registered callee answered by a second sipp (`tests/sipp/load_*.xml`), at rising rates;
//!   clean as above, counting both sipps' retransmissions.
//!
//! Then, for a fresh switchboard, **three waves of `WAVE` distinct registrations** at half its
//! highest clean rate (expiring after 30 s; each wave starts once the last one lapsed): its
//! memory after each wave.
//!
//! Knobs: `HOOKFLASH_LOAD_SERVERS` (default `switchboard,kamailio`), `HOOKFLASH_LOAD_STEP_SECS`
//! (default 3), `HOOKFLASH_LOAD_WAVE` (default 100000; 0 skips the waves). Run with
//! `scripts/bench`, which builds the release binaries first.

use std::fmt::Write as _;
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use hookflash_core::auth::{unix_now, Scope, Token};
use hookflash_tests::procstat::{tree_cpu_seconds, tree_pss_kib};
use tokio::process::{Child, Command};

const SECRET: &str = "load-bench-secret";
const DOMAIN: &str = "hookflash.local";
/// REGISTER rates tried, per second.
const REGISTER_RATES: &[u32] = &[
    1_000, 2_000, 3_000, 4_000, 5_000, 6_000, 7_500, 9_000, 11_000, 13_000, 15_000, 18_000, 21_000,
    25_000,
];
/// Call rates tried, per second.
const CALL_RATES: &[u32] = &[
    250, 500, 750, 1_000, 1_250, 1_500, 1_750, 2_000, 2_500, 3_000, 3_500, 4_000, 5_000,
];
/// Clean means fewer retransmissions than this share of the requests sent.
const MAX_RETRANSMISSIONS: f64 = 0.001;
/// The expiry every wave registers with (the switchboard's and Kamailio's minimum is 30 s).
const WAVE_EXPIRES: u32 = 30;

fn env_u32(name: &str, default: u32) -> u32 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("a free UDP port")
        .port()
}

fn scenario(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("sipp")
        .join(name)
}

/// A server under load: its address and its main process.
struct Server {
    name: &'static str,
    addr: String,
    child: Child,
}

impl Server {
    fn pid(&self) -> u32 {
        self.child.id().expect("the server runs")
    }

    async fn stop(mut self) {
        // Kamailio's main process takes its children down on SIGTERM; wait for all of them.
        let tree = hookflash_tests::procstat::process_tree(self.pid());
        for p in &tree {
            let _ = Command::new("kill")
                .arg(p.to_string())
                .stderr(Stdio::null())
                .status()
                .await;
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
        let _ = self.child.kill().await;
        for p in tree {
            let _ = Command::new("kill")
                .args(["-9", &p.to_string()])
                .stderr(Stdio::null())
                .status()
                .await;
        }
    }
}

async fn start_switchboard(dir: PathBuf) -> Server {
    let port = free_udp_port();
    let mut child = Command::new(hookflash_tests::process::bin("hookflash-switchboard"))
        .args(["serve", "--bind", "127.0.0.1", "--port", &port.to_string()])
        .arg("--data-dir")
        .arg(&dir)
        .env("HOOKFLASH_SECRET", SECRET)
        .stdout(Stdio::piped())
        .stderr(Stdio::from(
            std::fs::File::create(dir.join("switchboard.log")).expect("log file"),
        ))
        .kill_on_drop(true)
        .spawn()
        .expect("spawn the switchboard");
    let mut out = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(
        child.stdout.take().expect("piped stdout"),
    ));
    tokio::time::timeout(Duration::from_secs(10), out.next_line())
        .await
        .expect("the switchboard announces itself")
        .expect("read its stdout");
    tokio::spawn(async move { while let Ok(Some(_)) = out.next_line().await {} });
    Server {
        name: "switchboard",
        addr: format!("127.0.0.1:{port}"),
        child,
    }
}

/// Kamailio as a registrar and stateful proxy with the same service as the switchboard for
/// this bench: tokens (`auth_ephemeral`) on REGISTER and on calls, Record-Route, in-memory
/// location. Four UDP workers (Debian's default is eight; this machine has two cores).
fn kamailio_cfg(port: u16, modules: &str) -> String {
    // Kamailio holds the SIP scope's key only, as deploy/kamailio does.
    let sip_key = hookflash_core::auth::scope_key(SECRET, hookflash_core::auth::Scope::Sip);
    format!(
        r#"#!KAMAILIO
debug=1
log_stderror=yes
children=4
auto_aliases=no
listen=udp:127.0.0.1:{port}
alias="{DOMAIN}"
alias="127.0.0.1:{port}"
mpath="{modules}"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "siputils.so"
loadmodule "textops.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
loadmodule "auth.so"
loadmodule "auth_ephemeral.so"
modparam("auth_ephemeral", "secret", "{sip_key}")
modparam("auth_ephemeral", "username_format", 1)
modparam("usrloc", "db_mode", 0)
modparam("usrloc", "hash_size", 14)
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
        if (is_method("ACK") && t_check_trans()) {{
            t_relay();
        }} else if (!is_method("ACK")) {{
            sl_send_reply("404", "Not Here");
        }}
        exit;
    }}
    if (is_method("CANCEL")) {{
        if (t_check_trans()) t_relay();
        exit;
    }}
    if (t_check_trans()) exit;
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
    record_route();
    if (!lookup("location")) {{
        sl_send_reply("404", "Not Found");
        exit;
    }}
    t_relay();
}}
"#
    )
}

async fn start_kamailio(dir: PathBuf) -> Option<Server> {
    let modules = hookflash_tests::kamailio_module_dir()?;
    let port = free_udp_port();
    let cfg = dir.join("kamailio.cfg");
    std::fs::write(&cfg, kamailio_cfg(port, &modules)).expect("write kamailio.cfg");
    let mut command = Command::new("kamailio");
    hookflash_tests::kamailio_args(&mut command, &cfg, &dir)
        .args(["-m", "512", "-M", "16"])
        .stdout(Stdio::null())
        .stderr(Stdio::from(
            std::fs::File::create(dir.join("kamailio.log")).expect("log file"),
        ));
    let child = command.spawn().ok()?;
    let server = Server {
        name: "kamailio",
        addr: format!("127.0.0.1:{port}"),
        child,
    };
    // Ready when it answers an OPTIONS (with anything).
    let probe = UdpSocket::bind("127.0.0.1:0").expect("probe socket");
    probe
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let local = probe.local_addr().expect("local address");
    for i in 0..50 {
        let options = format!(
            "OPTIONS sip:{DOMAIN} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKprobe{i}\r\n\
             From: <sip:probe@{DOMAIN}>;tag=p\r\nTo: <sip:{DOMAIN}>\r\nCall-ID: probe{i}\r\n\
             CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        );
        let _ = probe.send_to(options.as_bytes(), &server.addr);
        let mut buf = [0u8; 2048];
        if probe.recv(&mut buf).is_ok() {
            return Some(server);
        }
    }
    server.stop().await;
    None
}

/// One line of a sipp injection file: user; digest user; password; domain; contact; expires.
fn credentials_line(user: &str, contact: &str, expires: u32, expiry: u64) -> String {
    let token = Token::issue(SECRET, user, Duration::ZERO, expiry);
    format!(
        "{user};{}:{user};{};{DOMAIN};{contact};{expires}\n",
        token.expiry,
        token.password(Scope::Sip).expect("issued with every scope")
    )
}

/// Writes an injection file with users `first..first+count` (named `prefix` + number), their
/// tokens valid for `valid_secs`.
fn users_file(
    path: &Path,
    prefix: &str,
    (first, count): (u32, u32),
    contact: &str,
    expires: u32,
    valid_secs: u64,
) {
    let expiry = unix_now() + valid_secs;
    let mut s = String::from("SEQUENTIAL\n");
    for i in first..first + count {
        s.push_str(&credentials_line(
            &format!("{prefix}{i}"),
            contact,
            expires,
            expiry,
        ));
    }
    std::fs::write(path, s).expect("write injection file");
}

/// What one sipp run reports (its final statistics line).
#[derive(Debug, Default, Clone, Copy)]
struct Outcome {
    ok: u64,
    failed: u64,
    retransmissions: u64,
}

fn read_stats(path: &Path) -> Outcome {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let (Some(header), Some(last)) = (lines.first(), lines.get(1..).and_then(<[_]>::last)) else {
        return Outcome::default();
    };
    let h: Vec<&str> = header.split(';').collect();
    let v: Vec<&str> = last.split(';').collect();
    let get = |k: &str| {
        h.iter()
            .position(|x| *x == k)
            .and_then(|i| v.get(i))
            .and_then(|x| x.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Outcome {
        ok: get("SuccessfulCall(C)"),
        failed: get("FailedCall(C)"),
        retransmissions: get("Retransmissions(C)"),
    }
}

/// sipp with `scenario` against `server`, `count` calls at `rate` per second from `port`;
/// waits for it to finish (or to time out) and returns its statistics.
fn sipp(
    server: &str,
    scenario: &str,
    args: &[&str],
    port: u16,
    rate: u32,
    count: u32,
    stats: &Path,
) -> Command {
    let mut c = Command::new("sipp");
    if !server.is_empty() {
        c.arg(server);
    }
    c.arg("-sf")
        .arg(self::scenario(scenario))
        .args(args)
        .args(["-i", "127.0.0.1", "-p", &port.to_string()])
        .args([
            "-m",
            &count.to_string(),
            "-nostdin",
            "-trace_stat",
            "-fd",
            "1",
        ])
        .arg("-stf")
        .arg(stats)
        .args(["-trace_err", "-error_file"])
        .arg(stats.with_extension("errors"))
        // sipp speaks for thousands of clients through one socket: with the default 208 KiB
        // buffer it dropped answers that came in bursts (415 drops counted on sipp's socket
        // at 5,000 REGISTER/s, none on the switchboard's), so the bench measured sipp. The
        // kernel caps this at net.core.rmem_max / wmem_max.
        .args([
            "-buff_size",
            &hookflash_core::sip::transport::UDP_SOCKET_BUFFER.to_string(),
        ])
        // Bounded: a run whose server stopped answering ends, counted as failed.
        .args([
            "-timeout",
            "60s",
            "-timeout_error",
            "-recv_timeout",
            "10000",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    if rate > 0 {
        c.args(["-r", &rate.to_string(), "-rp", "1000"]);
        // Enough simultaneous calls for two seconds' worth of slow answers.
        c.args(["-l", &(rate * 2).max(100).to_string()]);
    }
    c
}

/// One step's figures.
#[derive(Debug, Clone, Copy)]
struct Step {
    rate: u32,
    achieved: f64,
    outcome: Outcome,
    requests: u64,
    cpu: f64,
    pss_mib: f64,
}

impl Step {
    fn retransmission_share(&self) -> f64 {
        self.outcome.retransmissions as f64 / self.requests.max(1) as f64
    }

    fn clean(&self, count: u32) -> bool {
        self.outcome.failed == 0
            && self.outcome.ok == u64::from(count)
            && self.retransmission_share() < MAX_RETRANSMISSIONS
    }
}

/// Registrations at `rate` for `secs`; users numbered from `first`.
async fn register_step(server: &Server, work: &Path, rate: u32, secs: u32, first: u32) -> Step {
    let count = rate * secs;
    let port = free_udp_port();
    let users = work.join(format!("reg-{rate}.csv"));
    users_file(
        &users,
        "r",
        (first, count),
        &format!("127.0.0.1:{port}"),
        3600,
        7200,
    );
    let stats = work.join(format!("reg-{rate}.stat"));
    let (cpu0, t0) = (tree_cpu_seconds(server.pid()), Instant::now());
    let users_arg = users.display().to_string();
    let _ = sipp(
        &server.addr,
        "load_register.xml",
        &["-inf", &users_arg],
        port,
        rate,
        count,
        &stats,
    )
    .status()
    .await;
    let wall = t0.elapsed().as_secs_f64();
    let outcome = read_stats(&stats);
    Step {
        rate,
        achieved: outcome.ok as f64 / wall,
        outcome,
        requests: 2 * count as u64,
        cpu: (tree_cpu_seconds(server.pid()) - cpu0) / wall * 100.0,
        pss_mib: tree_pss_kib(server.pid()) as f64 / 1024.0,
    }
}

/// Calls at `rate` for `secs` from 1,000 callers to one callee, `callee_port` its sipp.
async fn call_step(server: &Server, work: &Path, callee_port: u16, rate: u32, secs: u32) -> Step {
    let count = rate * secs;
    let callers = work.join("callers.csv");
    if !callers.exists() {
        users_file(&callers, "c", (0, 1_000), "unused", 0, 7200);
    }
    let answer_stats = work.join(format!("answer-{rate}.stat"));
    let mut answer = sipp(
        "",
        "load_answer.xml",
        &[],
        callee_port,
        0,
        count,
        &answer_stats,
    )
    .spawn()
    .expect("start the answering sipp");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stats = work.join(format!("call-{rate}.stat"));
    let callers_arg = callers.display().to_string();
    let (cpu0, t0) = (tree_cpu_seconds(server.pid()), Instant::now());
    let _ = sipp(
        &server.addr,
        "load_call.xml",
        &["-inf", &callers_arg, "-s", "callee"],
        free_udp_port(),
        rate,
        count,
        &stats,
    )
    .status()
    .await;
    let wall = t0.elapsed().as_secs_f64();
    let cpu = (tree_cpu_seconds(server.pid()) - cpu0) / wall * 100.0;
    if tokio::time::timeout(Duration::from_secs(15), answer.wait())
        .await
        .is_err()
    {
        let _ = answer.kill().await;
    }
    let mut outcome = read_stats(&stats);
    outcome.retransmissions += read_stats(&answer_stats).retransmissions;
    Step {
        rate,
        achieved: outcome.ok as f64 / wall,
        outcome,
        // Caller: INVITE twice and BYE; callee: the 200 (the requests and answers retried).
        requests: 4 * count as u64,
        cpu,
        pss_mib: tree_pss_kib(server.pid()) as f64 / 1024.0,
    }
}

/// Registers the callee from `port`, where its answering sipp will listen.
async fn register_callee(server: &Server, work: &Path, port: u16) -> bool {
    let file = work.join("callee.csv");
    std::fs::write(
        &file,
        format!(
            "SEQUENTIAL\n{}",
            credentials_line(
                "callee",
                &format!("127.0.0.1:{port}"),
                3600,
                unix_now() + 7200
            )
        ),
    )
    .expect("write callee file");
    let stats = work.join("callee.stat");
    let file_arg = file.display().to_string();
    let _ = sipp(
        &server.addr,
        "load_register.xml",
        &["-inf", &file_arg],
        port,
        10,
        1,
        &stats,
    )
    .status()
    .await;
    read_stats(&stats).ok == 1
}

/// Rising rates until a step is not clean: the last clean step and the first unclean one.
async fn ramp<F, Fut>(rates: &[u32], secs: u32, mut step: F) -> (Option<Step>, Option<Step>)
where
    F: FnMut(u32) -> Fut,
    Fut: std::future::Future<Output = Step>,
{
    let mut best = None;
    for &rate in rates {
        let s = step(rate).await;
        eprintln!(
            "  {rate:>6}/s: achieved {:>8.1}/s ok {} failed {} retransmissions {} cpu {:.0} %",
            s.achieved, s.outcome.ok, s.outcome.failed, s.outcome.retransmissions, s.cpu
        );
        if !s.clean(rate * secs) {
            return (best, Some(s));
        }
        best = Some(s);
        // Let retransmission timers and lingering transactions of the last step settle.
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    (best, None)
}

fn row(out: &mut String, server: &str, what: &str, best: Option<Step>, broke: Option<Step>) {
    let broke_at = broke.map_or("-".to_owned(), |b| {
        format!(
            "{} /s ({} failed, {:.2} % retr.)",
            b.rate,
            b.outcome.failed,
            b.retransmission_share() * 100.0
        )
    });
    match best {
        Some(b) => writeln!(
            out,
            "| {server} | {what} | {} /s | {:.0} /s | {:.3} % | {:.0} % | {:.0} MiB | {broke_at} |",
            b.rate,
            b.achieved,
            b.retransmission_share() * 100.0,
            b.cpu,
            b.pss_mib
        ),
        None => writeln!(
            out,
            "| {server} | {what} | none clean | | | | | {broke_at} |"
        ),
    }
    .expect("write to a string");
}

/// Three waves of `wave` distinct registrations at `rate`, each expiring 30 s later, the
/// next wave starting once the last one expired: memory after each.
async fn waves(server: &Server, work: &Path, wave: u32, rate: u32, out: &mut String) {
    let _ = writeln!(out, "\n{} — three waves of {wave} registrations at {rate}/s, expiring after {WAVE_EXPIRES} s:\n", server.name);
    let _ = writeln!(
        out,
        "| wave | registered | failed | retransmissions | PSS after | PSS once expired |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|");
    for n in 0..3u32 {
        let port = free_udp_port();
        let users = work.join(format!("wave-{n}.csv"));
        // Users who come and go: each token is valid while the wave registers and its
        // registrations last (twice the time the wave should take, for slack), so what the
        // switchboard remembers of them may lapse too, before the next wave starts.
        users_file(
            &users,
            &format!("w{n}-"),
            (0, wave),
            &format!("127.0.0.1:{port}"),
            WAVE_EXPIRES,
            u64::from(2 * wave / rate.max(1) + WAVE_EXPIRES),
        );
        let stats = work.join(format!("wave-{n}.stat"));
        let users_arg = users.display().to_string();
        let _ = sipp(
            &server.addr,
            "load_register.xml",
            &["-inf", &users_arg],
            port,
            rate,
            wave,
            &stats,
        )
        .status()
        .await;
        let o = read_stats(&stats);
        let after = tree_pss_kib(server.pid()) as f64 / 1024.0;
        tokio::time::sleep(Duration::from_secs(u64::from(WAVE_EXPIRES) + 35)).await;
        let expired = tree_pss_kib(server.pid()) as f64 / 1024.0;
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {after:.0} MiB | {expired:.0} MiB |",
            n + 1,
            o.ok,
            o.failed,
            o.retransmissions
        );
        eprintln!(
            "  wave {}: {o:?}, {after:.0} MiB, then {expired:.0} MiB",
            n + 1
        );
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` asks for a listing; this bench has no tests
    }
    if Command::new("sipp").arg("-v").output().await.is_err() {
        println!("load: sipp is not installed (Debian package sip-tester); skipped");
        return;
    }
    let servers = std::env::var("HOOKFLASH_LOAD_SERVERS")
        .unwrap_or_else(|_| "switchboard,kamailio".to_owned());
    let secs = env_u32("HOOKFLASH_LOAD_STEP_SECS", 3);
    let wave = env_u32("HOOKFLASH_LOAD_WAVE", 100_000);
    let root = std::env::temp_dir().join(format!("hookflash-bench-load-{}", std::process::id()));
    let mut table = String::from(
        "| server | load | highest clean rate | achieved | retransmissions | CPU (1 core = 100 %) | PSS | first unclean step |\n|---|---|---|---|---|---|---|---|\n",
    );
    let mut wave_tables = String::new();
    for name in servers.split(',') {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).expect("bench directory");
        let server = match name {
            "switchboard" => start_switchboard(dir.clone()).await,
            "kamailio" => match start_kamailio(dir.clone()).await {
                Some(s) => s,
                None => {
                    println!("load: Kamailio with auth_ephemeral is not installed; skipped");
                    continue;
                }
            },
            other => panic!("unknown server {other} in HOOKFLASH_LOAD_SERVERS"),
        };
        eprintln!("{name} on {}: REGISTER", server.addr);
        let mut first = 0;
        let (best, broke) = ramp(REGISTER_RATES, secs, |rate| {
            let s = first;
            first += rate * secs;
            let (server, dir) = (&server, &dir);
            async move { register_step(server, dir, rate, secs, s).await }
        })
        .await;
        row(&mut table, name, "REGISTER", best, broke);
        let best_register = best.map_or(1_000, |b| b.rate);
        tokio::time::sleep(Duration::from_secs(3)).await;
        eprintln!("{name}: calls");
        let callee_port = free_udp_port();
        if register_callee(&server, &dir, callee_port).await {
            let (best, broke) = ramp(CALL_RATES, secs, |rate| {
                let (server, dir) = (&server, &dir);
                async move { call_step(server, dir, callee_port, rate, secs).await }
            })
            .await;
            row(&mut table, name, "calls", best, broke);
        } else {
            row(
                &mut table,
                name,
                "calls (callee did not register)",
                None,
                None,
            );
        }
        server.stop().await;
        if wave > 0 && name == "switchboard" {
            // On a fresh switchboard (the ramp's users would stay an hour), at half the highest
            // clean rate, so that the waves measure memory, not loss.
            let dir = dir.join("waves");
            std::fs::create_dir_all(&dir).expect("waves directory");
            let server = start_switchboard(dir.clone()).await;
            waves(&server, &dir, wave, best_register / 2, &mut wave_tables).await;
            server.stop().await;
        }
    }
    if std::env::var_os("HOOKFLASH_LOAD_KEEP").is_none() {
        let _ = std::fs::remove_dir_all(&root);
    }
    println!("\nload (release, loopback, sipp, digest auth; {secs} s a step)\n");
    println!("{table}{wave_tables}");
}
