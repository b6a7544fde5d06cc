//! A network namespace of the test's own, with two "hosts" on a veth pair
//! (`198.18.0.1` and `198.18.0.2`, the benchmarking range): for peers such as baresip that
//! never offer loopback ICE candidates. Everything runs inside it, so no packet leaves the
//! namespace; it and every process left in it are removed when the [`Netns`] is dropped
//! (also when a test fails). Needs root (CI runs as root).

use std::ffi::OsStr;
use std::process::{Command, Stdio};

/// The first host's address.
pub const HOST_A: &str = "198.18.0.1";
/// The second host's address.
pub const HOST_B: &str = "198.18.0.2";
/// The second host's interface name (for programs that bind by interface).
pub const IFACE_B: &str = "v1";

/// A network namespace with two addresses on a veth pair.
pub struct Netns {
    /// Its name (`ip netns`).
    pub name: String,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run ip {args:?}: {e}"));
    assert!(
        out.status.success(),
        "ip {args:?} must succeed (the interop tests need root for a network namespace): {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Netns {
    /// Creates the namespace `hf-TAG-PID` with `lo` up and `v0`/`v1` at
    /// [`HOST_A`]/[`HOST_B`].
    pub fn two_hosts(tag: &str) -> Netns {
        let name = format!("hf-{tag}-{}", std::process::id());
        let _ = Command::new("ip")
            .args(["netns", "del", &name])
            .stderr(Stdio::null())
            .status();
        ip(&["netns", "add", &name]);
        let ns = Netns { name };
        let n = ns.name.as_str();
        ip(&["netns", "exec", n, "ip", "link", "set", "lo", "up"]);
        ip(&[
            "netns", "exec", n, "ip", "link", "add", "v0", "type", "veth", "peer", "name", IFACE_B,
        ]);
        ip(&[
            "netns",
            "exec",
            n,
            "ip",
            "addr",
            "add",
            &format!("{HOST_A}/24"),
            "dev",
            "v0",
        ]);
        ip(&[
            "netns",
            "exec",
            n,
            "ip",
            "addr",
            "add",
            &format!("{HOST_B}/24"),
            "dev",
            IFACE_B,
        ]);
        ip(&["netns", "exec", n, "ip", "link", "set", "v0", "up"]);
        ip(&["netns", "exec", n, "ip", "link", "set", IFACE_B, "up"]);
        ns
    }

    /// A command that runs `program` inside the namespace.
    pub fn command(&self, program: impl AsRef<OsStr>) -> tokio::process::Command {
        let mut c = tokio::process::Command::new("ip");
        c.args(["netns", "exec", &self.name]).arg(program);
        c
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Every process still in the namespace goes with it, by PID.
        if let Ok(out) = Command::new("ip")
            .args(["netns", "pids", &self.name])
            .output()
        {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = Command::new("kill").args(["-KILL", pid]).status();
            }
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .stderr(Stdio::null())
            .status();
    }
}
