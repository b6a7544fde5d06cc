//! coturn (Debian `coturn`) as the TURN relay of a test: on loopback, a UDP port and a relay
//! port range the test picks, the TURN REST scheme (`use-auth-secret`) with the secret the
//! SIP server signs tokens with, relaying between loopback peers (which coturn refuses by
//! default). Its verbose log goes to a file; dropping it kills it by PID.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::servers::{alive, free_port};

/// A running coturn.
pub struct Coturn {
    child: tokio::process::Child,
    pid: u32,
    /// Where it takes TURN over UDP.
    pub addr: SocketAddr,
    log: PathBuf,
}

impl Coturn {
    /// Start coturn in `dir` (created) checking TURN REST credentials against `key` (the
    /// TURN scope's key, `scope_key(secret, Scope::Turn)`), and wait until it listens.
    pub async fn start(dir: &Path, key: &str) -> Coturn {
        std::fs::create_dir_all(dir).expect("coturn's directory");
        let port = free_port();
        // A range of its own per run, away from the ephemeral ports the kernel hands out.
        let base = 20_000 + (std::process::id() % 400) as u16 * 50;
        let log = dir.join("turnserver.log");
        let child = tokio::process::Command::new("turnserver")
            .arg("-n")
            .args(["--listening-ip=127.0.0.1", "--relay-ip=127.0.0.1"])
            .arg(format!("--listening-port={port}"))
            .arg(format!("--min-port={base}"))
            .arg(format!("--max-port={}", base + 49))
            .arg("--use-auth-secret")
            .arg(format!("--static-auth-secret={key}"))
            .arg("--realm=hookflash.local")
            .args(["--no-tls", "--no-dtls", "--no-tcp-relay", "--no-cli"])
            // Both agents of a test are on loopback: let the relay reach them.
            .arg("--allow-loopback-peers")
            .arg(format!("--userdb={}", dir.join("turndb").display()))
            .arg(format!(
                "--pidfile={}",
                dir.join("turnserver.pid").display()
            ))
            .args(["--log-file=stdout", "--simple-log", "-v"])
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).expect("coturn's log"))
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("coturn is installed (scripts/deps installs it)");
        let pid = child.id().expect("coturn's pid");
        let c = Coturn {
            child,
            pid,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            log,
        };
        let ready = format!("UDP listener opened on: 127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !c.log().contains(&ready) {
            assert!(
                Instant::now() < deadline && alive(pid),
                "coturn listens within 10 s:\n{}",
                c.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        c
    }

    /// The `turn:` URL agents are given.
    pub fn url(&self) -> String {
        format!("turn:{}", self.addr)
    }

    /// What coturn logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// How many allocations coturn granted to `user` (TURN REST user names `EXPIRY:USER`).
    pub fn allocations_of(&self, user: &str) -> usize {
        let who = format!(":{user}>: incoming packet ALLOCATE processed, success");
        self.log().lines().filter(|l| l.contains(&who)).count()
    }

    /// How many times `user` was refused (bad credentials).
    pub fn refusals_of(&self, user: &str) -> usize {
        self.log()
            .lines()
            .filter(|l| l.contains(&format!(":{user}>")) && l.contains("401"))
            .count()
    }

    /// Stop it (SIGTERM, then SIGKILL) and wait until it is gone.
    pub async fn stop(mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status();
        if tokio::time::timeout(Duration::from_secs(5), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
        assert!(!alive(self.pid), "coturn ({}) is stopped", self.pid);
    }
}
