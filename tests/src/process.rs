//! Driving the real executables: a `hookflash-switchboard serve` process and
//! `hookflash-agent` processes spoken to through stdin/stdout JSON lines.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use crate::bin_dir;

/// A built binary of this workspace.
pub fn bin(name: &str) -> PathBuf {
    let p = bin_dir().join(name);
    assert!(
        p.exists(),
        "{} must be built first (scripts/test builds every binary)",
        p.display()
    );
    p
}

/// A switchboard process on a free port.
pub struct SwitchboardProcess {
    child: Child,
    /// `IP:PORT` it listens on (UDP and TCP).
    pub server: String,
    /// `IP:PORT` of its HTTP API, when it serves one (`--http-port`).
    pub http: Option<String>,
    /// Its TLS and WebSocket listeners (`tls`, `ws`, `wss` and `IP:PORT`), when configured.
    pub streams: Vec<(String, String)>,
    secret: String,
    /// The network namespace it runs in (its agents run there too); none: this one.
    netns: Option<String>,
}

/// `program` run in `netns` (through `ip netns exec`), or here.
fn command_in(netns: Option<&str>, program: impl AsRef<std::ffi::OsStr>) -> Command {
    match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns]).arg(program);
            c
        }
        None => Command::new(program),
    }
}

impl SwitchboardProcess {
    /// Start `hookflash-switchboard serve` on loopback and wait for its listening line.
    pub async fn start(secret: &str, extra: &[&str]) -> SwitchboardProcess {
        Self::start_on(None, "127.0.0.1", 0, secret, extra).await
    }

    /// Start it on loopback on a given port: the same address as one that was killed, as a
    /// restarted server would be.
    pub async fn start_on_port(secret: &str, port: u16) -> SwitchboardProcess {
        Self::start_on(None, "127.0.0.1", port, secret, &[]).await
    }

    /// Start it on loopback on `port` (0: any) with extra flags.
    pub async fn start_on_port_with(secret: &str, port: u16, extra: &[&str]) -> SwitchboardProcess {
        Self::start_on(None, "127.0.0.1", port, secret, extra).await
    }

    /// Start it on `ip` inside a network namespace (for peers that need a non-loopback
    /// address); its agents run in the same namespace, bound to `ip`.
    pub async fn start_in(
        netns: &crate::netns::Netns,
        ip: &str,
        secret: &str,
    ) -> SwitchboardProcess {
        Self::start_on(Some(&netns.name), ip, 0, secret, &[]).await
    }

    /// [`start_in`](Self::start_in) with extra flags.
    pub async fn start_in_with(
        netns: &crate::netns::Netns,
        ip: &str,
        secret: &str,
        extra: &[&str],
    ) -> SwitchboardProcess {
        Self::start_on(Some(&netns.name), ip, 0, secret, extra).await
    }

    /// The address of its listener for `kind` (`tls`, `ws`, `wss`), when it has one.
    pub fn stream(&self, kind: &str) -> Option<String> {
        self.streams
            .iter()
            .find(|(k, _)| k == kind)
            .map(|(_, a)| a.clone())
    }

    async fn start_on(
        netns: Option<&str>,
        ip: &str,
        port: u16,
        secret: &str,
        extra: &[&str],
    ) -> SwitchboardProcess {
        let mut child = command_in(netns, bin("hookflash-switchboard"))
            .args(["serve", "--bind", ip, "--port", &port.to_string()])
            // Secrets through the environment, as the README shows (ps shows arguments).
            .env("HOOKFLASH_SECRET", secret)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn the switchboard");
        let mut out = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        let line = tokio::time::timeout(Duration::from_secs(10), out.next_line())
            .await
            .expect("the switchboard announces itself")
            .expect("read its stdout")
            .expect("a listening line");
        let server = line
            .split_whitespace()
            .find(|w| w.starts_with(&format!("{ip}:")))
            .unwrap_or_else(|| panic!("listening line names the address: {line}"))
            .to_owned();
        let http = line
            .split_once(" http ")
            .map(|(_, a)| a.split_whitespace().next().unwrap_or_default().to_owned());
        let words: Vec<&str> = line.split_whitespace().collect();
        let streams = words
            .windows(2)
            .filter(|w| matches!(w[0], "tls" | "ws" | "wss"))
            .map(|w| (w[0].to_owned(), w[1].to_owned()))
            .collect();
        tokio::spawn(async move { while let Ok(Some(_)) = out.next_line().await {} });
        SwitchboardProcess {
            child,
            server,
            http,
            streams,
            secret: secret.to_owned(),
            netns: netns.map(str::to_owned),
        }
    }

    /// Kill it with SIGKILL, as a crash or an OOM kill would, and wait for it to be gone.
    pub async fn kill_hard(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }

    /// A token for `user` from the `token` command.
    pub async fn token(&self, user: &str) -> String {
        let out = Command::new(bin("hookflash-switchboard"))
            .args(["token", user, "--ttl", "1h"])
            .env("HOOKFLASH_SECRET", &self.secret)
            .output()
            .await
            .expect("run the token command");
        assert!(
            out.status.success(),
            "token command succeeds: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Start an agent for `user` with extra flags, and wait until it is Connected.
    pub async fn agent(&self, user: &str, extra: &[&str]) -> AgentProcess {
        self.agent_with_env(user, extra, &[]).await
    }

    /// Start an agent for `user` with extra flags and environment variables, and
    /// wait until it is Connected.
    pub async fn agent_with_env(
        &self,
        user: &str,
        extra: &[&str],
        env: &[(&str, &std::ffi::OsStr)],
    ) -> AgentProcess {
        let token = self.token(user).await;
        let mut command = command_in(self.netns.as_deref(), bin("hookflash-agent"));
        if self.netns.is_some() {
            // In a namespace the agent binds where its switchboard listens.
            let ip = self.server.rsplit_once(':').map_or("", |(ip, _)| ip);
            command.args(["--bind", ip]);
        }
        command.args(["--server", &self.server]);
        AgentProcess::spawn(command, user, &token, extra, env).await
    }

    /// Stop it.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }

    /// Its process id (none once it has been waited for).
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }
}

impl AgentProcess {
    /// Run `command` (a `hookflash-agent` with its `--server`) for `user` signed in with
    /// `token`, with extra flags and environment variables, and wait until it is Connected.
    pub async fn spawn(
        mut command: Command,
        user: &str,
        token: &str,
        extra: &[&str],
        env: &[(&str, &std::ffi::OsStr)],
    ) -> AgentProcess {
        let mut child = command
            .env("HOOKFLASH_TOKEN", token)
            .args(extra)
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn hookflash-agent");
        let stdin = child.stdin.take().expect("piped stdin");
        let out = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        let mut a = AgentProcess {
            user: user.to_owned(),
            child,
            stdin,
            out,
            backlog: Vec::new(),
        };
        a.next("Connected", |v| {
            v["event"] == "connectionStateChanged" && v["newValue"] == "Connected"
        })
        .await;
        a
    }
}

/// A `hookflash-agent` child process.
pub struct AgentProcess {
    /// Its user.
    pub user: String,
    /// The process.
    pub child: Child,
    stdin: ChildStdin,
    out: Lines<BufReader<ChildStdout>>,
    backlog: Vec<Value>,
}

impl AgentProcess {
    /// Write one command line.
    pub async fn send(&mut self, command: Value) {
        let mut line = command.to_string();
        line.push('\n');
        self.stdin
            .write_all(line.as_bytes())
            .await
            .expect("write to the agent's stdin");
    }

    /// Write raw bytes (for malformed input).
    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.stdin
            .write_all(bytes)
            .await
            .expect("write to the agent's stdin");
    }

    /// The next event matching `pred` (earlier unmatched events count too), within 15 s.
    pub async fn next(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        if let Some(i) = self.backlog.iter().position(&pred) {
            return self.backlog.remove(i);
        }
        let user = self.user.clone();
        let (out, backlog) = (&mut self.out, &mut self.backlog);
        let fut = async {
            loop {
                let line = out
                    .next_line()
                    .await
                    .expect("read stdout")
                    .unwrap_or_else(|| panic!("{user}: agent exited before {what}"));
                let v: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("{user}: stdout is JSON lines ({e}): {line}"));
                if pred(&v) {
                    return v;
                }
                backlog.push(v);
            }
        };
        match tokio::time::timeout(Duration::from_secs(15), fut).await {
            Ok(v) => v,
            Err(_) => {
                // What did come instead is the first thing anyone debugging this wants.
                let seen: Vec<String> = self.backlog.iter().map(Value::to_string).collect();
                panic!(
                    "{user}: no {what} in time; events not yet taken:\n{}",
                    seen.join("\n")
                )
            }
        }
    }

    /// The `callStateChanged` that brings `call_id` to `state` (e.g. `Disconnected`).
    pub async fn call_state(&mut self, call_id: &str, state: &str) -> Value {
        self.next(&format!("{call_id} {state}"), |v| {
            v["event"] == "callStateChanged" && v["callId"] == call_id && v["state"] == state
        })
        .await
    }

    /// Panics if an event already received (and not yet taken) matches `pred`.
    pub fn assert_no_event(&self, pred: impl Fn(&Value) -> bool, why: &str) {
        if let Some(v) = self.backlog.iter().find(|v| pred(v)) {
            panic!("{}: {why}: {v}", self.user);
        }
    }

    /// The next `callStateChanged` to `state` (for any call); returns its call id.
    pub async fn state(&mut self, state: &str) -> String {
        let v = self
            .next(&format!("state {state}"), |v| {
                v["event"] == "callStateChanged" && v["state"] == state
            })
            .await;
        v["callId"].as_str().expect("callId").to_owned()
    }

    /// Call `target` (`startCall`) and return the new call's id from the command's answer.
    pub async fn start_call(&mut self, target: &str) -> String {
        let request = format!("call-{target}");
        self.send(
            serde_json::json!({"command": "startCall", "target": target, "requestId": request}),
        )
        .await;
        let ok = self
            .next("startCall answered", |v| {
                v["event"] == "commandSucceeded" && v["requestId"] == request.as_str()
            })
            .await;
        ok["callId"]
            .as_str()
            .expect("startCall answers with the call id")
            .to_owned()
    }

    /// Hang up `call_id` and return its `callStateChanged` to `Disconnected`, after
    /// checking that it ended normally (200), as our own hang-up should.
    pub async fn hang_up(&mut self, call_id: &str) -> Value {
        self.send(serde_json::json!({"command": "hangUp", "callId": call_id}))
            .await;
        let end = self
            .next("Disconnected", |v| {
                v["event"] == "callStateChanged"
                    && v["callId"] == call_id
                    && v["state"] == "Disconnected"
            })
            .await;
        assert_eq!(
            end["callEndReason"]["code"], 200,
            "{}: a normal hang-up ends with 200: {end}",
            self.user
        );
        end
    }

    /// Sign out and wait for a clean exit.
    pub async fn sign_out(mut self) {
        self.send(serde_json::json!({"command": "signOut"})).await;
        let status = tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .expect("the agent exits after signOut")
            .expect("wait for the agent");
        assert!(status.success(), "{}: signOut is a clean exit", self.user);
    }
}
