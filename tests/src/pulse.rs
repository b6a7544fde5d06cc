//! A private PulseAudio server for tests and benchmarks: a null sink as the
//! speaker, its monitor as the microphone, reached by cpal through ALSA's pulse
//! plugin (Debian `pulseaudio`, `libasound2-plugins`). A silent loopback keeps
//! the null sink running at a low latency, so streams start at once, as on a
//! real sound card.
//!
//! The server runs as a child (`--daemonize=no`) with its own runtime directory
//! and socket, is pointed at through `PULSE_SERVER` / `PULSE_RUNTIME_PATH`, and
//! is stopped by its PID when the [`Pulse`] is dropped.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running private PulseAudio server.
pub struct Pulse {
    child: Child,
    dir: PathBuf,
}

/// The null sink's name; its monitor source is `hookflash_null.monitor`.
pub const NULL_SINK: &str = "hookflash_null";

/// A silent source looped into the null sink to keep it clocked (see `start`).
const QUIET_SOURCE: &str = "hookflash_quiet";

/// Above this, the null sink still has its start-up block rendered ahead.
const SETTLED_LATENCY: Duration = Duration::from_millis(50);

impl Pulse {
    /// Starts the server, or returns `None` after a loud message when the
    /// `pulseaudio` binary is not installed (CI installs it: `scripts/deps`).
    ///
    /// Sets this process's `PULSE_SERVER`, `PULSE_RUNTIME_PATH` and
    /// `XDG_RUNTIME_DIR`, so call it before any audio is opened.
    pub fn start() -> Option<Pulse> {
        let found = Command::new("pulseaudio")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            eprintln!(
                "\n*** SKIPPED: the `pulseaudio` binary is missing; install `pulseaudio` and \
                 `libasound2-plugins` (scripts/deps) to run the real-device tests ***\n"
            );
            return None;
        }
        let dir = std::env::temp_dir().join(format!(
            "hookflash-pulse-{}-{}",
            std::process::id(),
            rand_suffix()
        ));
        let runtime = dir.join("runtime");
        std::fs::create_dir_all(&runtime).expect("a temp dir for PulseAudio");
        let socket = dir.join("native");
        let config = dir.join("default.pa");
        // The null sink renders (and its monitor captures) in blocks as long as
        // the lowest latency any stream asks of it, and 2 s when nothing does:
        // it starts with 2 s rendered ahead and does not re-render when a
        // low-latency stream arrives, so a stream opened while it is idle gets
        // nothing played or captured until that block runs out (0 to 2 s;
        // cpal's callbacks stall, the engine's watchdog fires). A real card's
        // sink re-arms its timer at once. A silent loopback keeps the null sink
        // clocked at ~10 ms from start to end, like a sink that is in use.
        std::fs::write(
            &config,
            format!(
                "load-module module-null-sink sink_name={NULL_SINK} rate=48000 channels=2 \
                 sink_properties=device.description=HookflashNull\n\
                 load-module module-native-protocol-unix auth-anonymous=1 socket={}\n\
                 set-default-sink {NULL_SINK}\n\
                 load-module module-null-source source_name={QUIET_SOURCE} rate=48000 channels=2\n\
                 load-module module-loopback source={QUIET_SOURCE} sink={NULL_SINK} latency_msec=10 \
                 source_dont_move=true sink_dont_move=true\n\
                 set-default-source {NULL_SINK}.monitor\n",
                socket.display()
            ),
        )
        .expect("write the PulseAudio config");
        let child = Command::new("pulseaudio")
            .arg("-n")
            .arg("-F")
            .arg(&config)
            .args([
                "--exit-idle-time=-1",
                "--daemonize=no",
                "--system=false",
                "--disallow-exit",
                "--log-target=stderr",
            ])
            .env("PULSE_RUNTIME_PATH", &runtime)
            .env("XDG_RUNTIME_DIR", &runtime)
            .env("HOME", &dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start pulseaudio");
        // SAFETY-free in edition 2021: tests set these before any thread reads them.
        std::env::set_var("PULSE_SERVER", format!("unix:{}", socket.display()));
        std::env::set_var("PULSE_RUNTIME_PATH", &runtime);
        std::env::set_var("XDG_RUNTIME_DIR", &runtime);
        let pulse = Pulse { child, dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !socket.exists() {
            assert!(
                Instant::now() < deadline,
                "PulseAudio did not open its socket within 10 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_millis(200));
        wait_for_low_latency_sink();
        Some(pulse)
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// Waits (at most 5 s) until the null sink has played out the 2 s it renders
/// ahead at start-up and runs at the loopback's latency, read with `pactl`
/// (`pulseaudio-utils`, a dependency of `pulseaudio`). Without `pactl`, waits
/// out the longest such block.
fn wait_for_low_latency_sink() {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match sink_latency() {
            Some(latency) if latency <= SETTLED_LATENCY => return,
            Some(_) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Some(latency) => {
                panic!("the null sink still has {latency:?} rendered ahead 5 s after start")
            }
            None => {
                std::thread::sleep(Duration::from_millis(2_100));
                return;
            }
        }
    }
}

/// The null sink's current latency (`Latency: N usec` in `pactl list sinks`).
fn sink_latency() -> Option<Duration> {
    let out = Command::new("pactl")
        .args(["list", "sinks"])
        .env("LC_ALL", "C")
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())?;
    let text = String::from_utf8_lossy(&out.stdout);
    let ours = text
        .split("Sink #")
        .find(|block| block.contains(&format!("Name: {NULL_SINK}\n")))?;
    let usec = ours
        .lines()
        .find_map(|l| l.trim().strip_prefix("Latency: "))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(Duration::from_micros(usec))
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(Instant::now().elapsed().as_nanos() as u64);
    h.finish() & 0xffff_ffff
}

impl Drop for Pulse {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Selects the PulseAudio output (the null sink) as `devices`' speaker and its
/// input (the sink's monitor, so the microphone hears exactly what the speaker
/// plays) as the microphone; returns (speaker, microphone). Panics, saying why,
/// when cpal does not list them.
pub fn select_pulse_devices(
    devices: &hookflash_core::audio::DeviceManager,
) -> (
    hookflash_core::audio::AudioDeviceInfo,
    hookflash_core::audio::AudioDeviceInfo,
) {
    use hookflash_core::audio::AudioDeviceInfo;
    let pick = |list: Vec<AudioDeviceInfo>, what: &str| {
        let found = list
            .iter()
            .find(|d| d.id == "alsa:pulse")
            .or_else(|| list.iter().find(|d| !d.is_virtual && d.is_system_default))
            .cloned();
        found.unwrap_or_else(|| panic!("cpal lists the PulseAudio {what} through ALSA: {list:#?}"))
    };
    let speaker = pick(devices.get_speakers(), "output");
    let microphone = pick(devices.get_microphones(), "input (the null sink's monitor)");
    devices
        .select_speaker(&speaker.id)
        .expect("select the real speaker");
    devices
        .select_microphone(&microphone.id)
        .expect("select the real microphone");
    (speaker, microphone)
}
