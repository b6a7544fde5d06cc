//! The real desktop app in a real window: an X server (Xvfb), a D-Bus session bus,
//! `tauri-driver` in front of Debian's `WebKitWebDriver`, and a small W3C WebDriver client.
//!
//! Everything is started here, on a display and ports chosen here, in its own process group,
//! and stopped by that group's id when the [`Desktop`] is dropped (also when a test fails).
//! Each desktop has its own `HOME`, so the app's settings, history and demo switchboard data
//! start empty.
//!
//! The app under test is the binary with the front end embedded (`tauri build --debug
//! --no-bundle`), which `scripts/test` copies to `target/hookflash-ui/hookflash`; set
//! `HOOKFLASH_APP` to test another (the installed package's `/usr/bin/hookflash`).

use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};

/// The W3C name of an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// The desktop app binary to test.
pub fn app_binary() -> PathBuf {
    if let Ok(p) = std::env::var("HOOKFLASH_APP") {
        return PathBuf::from(p);
    }
    let path = crate::bin_dir()
        .parent()
        .expect("target dir")
        .join("hookflash-ui/hookflash");
    assert!(
        path.exists(),
        "{} is missing: build the app with its front end first (scripts/test does: \
         `npx tauri build --debug --no-bundle`, then copies target/debug/hookflash there)",
        path.display()
    );
    path
}

fn tauri_driver() -> PathBuf {
    let home = std::env::var("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cargo")
        });
    let path = home.join("bin/tauri-driver");
    assert!(
        path.exists(),
        "tauri-driver is missing: `cargo install tauri-driver --locked` (scripts/deps does)"
    );
    path
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

fn wait_until(what: &str, timeout: Duration, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !ready() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A process started in a new process group, killed with its whole group on drop.
struct Group(Child);

impl Group {
    fn spawn(command: &mut Command) -> Group {
        let child = command
            .process_group(0)
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {command:?}: {e}"));
        Group(child)
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        let pgid = self.0.id();
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{pgid}")])
            .stderr(Stdio::null())
            .status();
        let _ = self.0.wait();
    }
}

/// Xvfb, a session bus and tauri-driver, ready for WebDriver sessions of the app.
pub struct Desktop {
    // Dropped in order: the driver (and the app it started), then the bus, then X.
    driver: Group,
    _bus: Group,
    _x: Group,
    /// The app's `HOME` (settings, history, demo data under `.local/share`).
    pub home: PathBuf,
    /// Where the app's speaker recordings go (`speaker-N.wav`, one per opening).
    pub audio_dir: PathBuf,
    /// `:N`.
    pub display: String,
    /// The bus address.
    pub bus: String,
    driver_url: String,
    env: Vec<(String, String)>,
}

impl Desktop {
    /// Starts a desktop for the app with its audio on virtual devices: the microphone a
    /// `mic_hz` tone, the speaker recorded to [`Desktop::audio_dir`], the demo contacts
    /// talking in tones, and these extra environment variables (`LANG`, …).
    pub fn start(name: &str, mic_hz: u32, extra_env: &[(&str, &str)]) -> Desktop {
        let root = std::env::temp_dir().join(format!(
            "hookflash-desktop-{name}-{}-{:x}",
            std::process::id(),
            Instant::now().elapsed().as_nanos() ^ u128::from(std::process::id()) << 20
        ));
        let _ = std::fs::remove_dir_all(&root);
        let home = root.join("home");
        let audio_dir = root.join("audio");
        for d in [&home, &audio_dir] {
            std::fs::create_dir_all(d).expect("test directories");
        }
        // A display nobody uses.
        let mut n = 100 + std::process::id() % 300;
        while Path::new(&format!("/tmp/.X{n}-lock")).exists()
            || Path::new(&format!("/tmp/.X11-unix/X{n}")).exists()
        {
            n += 1;
        }
        let display = format!(":{n}");
        let x = Group::spawn(
            Command::new("Xvfb")
                .args([&display, "-screen", "0", "1280x800x24", "-nolisten", "tcp"])
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        );
        wait_until("the X server", Duration::from_secs(10), || {
            Path::new(&format!("/tmp/.X11-unix/X{n}")).exists()
        });
        let bus_path = root.join("bus");
        let bus = format!("unix:path={}", bus_path.display());
        let bus_daemon = Group::spawn(
            Command::new("dbus-daemon")
                .args(["--session", "--nofork", "--nopidfile"])
                .arg(format!("--address={bus}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        );
        wait_until("the session bus", Duration::from_secs(10), || {
            bus_path.exists()
        });
        let mut env: Vec<(String, String)> = vec![
            ("DISPLAY".into(), display.clone()),
            ("DBUS_SESSION_BUS_ADDRESS".into(), bus.clone()),
            ("HOME".into(), home.display().to_string()),
            (
                "XDG_DATA_HOME".into(),
                home.join(".local/share").display().to_string(),
            ),
            (
                "XDG_CONFIG_HOME".into(),
                home.join(".config").display().to_string(),
            ),
            (
                "XDG_CACHE_HOME".into(),
                home.join(".cache").display().to_string(),
            ),
            ("HOOKFLASH_VIRTUAL_AUDIO".into(), "1".into()),
            ("HOOKFLASH_MIC".into(), format!("tone:{mic_hz}")),
            (
                "HOOKFLASH_SPEAKER".into(),
                format!("wav:{}/speaker-{{n}}.wav", audio_dir.display()),
            ),
            ("HOOKFLASH_DEMO_VOICES".into(), "tones".into()),
            ("LANG".into(), "en_US.UTF-8".into()),
            ("NO_AT_BRIDGE".into(), "1".into()),
            (
                "RUST_LOG".into(),
                "info,webrtc=error,webrtc_ice=error,webrtc_dtls=error,webrtc_srtp=error".into(),
            ),
        ];
        for (k, v) in extra_env {
            env.retain(|(key, _)| key != k);
            env.push(((*k).into(), (*v).into()));
        }
        let port = free_port();
        let native_port = free_port();
        let log = std::fs::File::create(root.join("app.log")).expect("log file");
        let driver = Group::spawn(
            Command::new(tauri_driver())
                .args(["--port", &port.to_string()])
                .args(["--native-port", &native_port.to_string()])
                .args(["--native-driver", "/usr/bin/WebKitWebDriver"])
                .envs(env.iter().map(|(k, v)| (k, v)))
                .stdout(log.try_clone().expect("log"))
                .stderr(log),
        );
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        wait_until("tauri-driver", Duration::from_secs(15), || {
            TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
        });
        Desktop {
            driver,
            _bus: bus_daemon,
            _x: x,
            home,
            audio_dir,
            display,
            bus,
            driver_url: format!("http://127.0.0.1:{port}"),
            env,
        }
    }

    /// Opens the app in a window and a WebDriver session on it.
    pub fn open_app(&self) -> Window {
        self.open(&app_binary())
    }

    /// Opens this app binary in a window and a WebDriver session on it.
    pub fn open(&self, binary: &Path) -> Window {
        let started = Instant::now();
        let body = json!({"capabilities": {"alwaysMatch": {
            "tauri:options": {"application": binary.display().to_string()}
        }}});
        let url = format!("{}/session", self.driver_url);
        // WebKitWebDriver now and then fails to bring a browser up on the first try (seen
        // once in a full run on a loaded machine); one more try, saying so, before failing.
        let value = post(&url, &body)
            .or_else(|e| {
                eprintln!("the first WebDriver session failed ({e}); trying once more");
                std::thread::sleep(Duration::from_secs(1));
                post(&url, &body)
            })
            .unwrap_or_else(|e| panic!("a WebDriver session on the app: {e}\n{}", self.log()));
        let id = value["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("a session id in {value}"))
            .to_owned();
        let window = Window {
            base: format!("{}/session/{id}", self.driver_url),
            shots: std::env::temp_dir().join("hookflash-screenshots"),
            display: self.display.clone(),
        };
        let _ = std::fs::create_dir_all(&window.shots);
        eprintln!("app window up in {:?}", started.elapsed());
        window
    }

    /// Runs the app binary a second time with these arguments, in this desktop (as a
    /// desktop launcher does for a `sip:` link), and waits for it to exit.
    pub fn launch_again(&self, args: &[&str]) -> std::process::ExitStatus {
        let mut child = Command::new(app_binary())
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("launch the app again");
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("a second launch must hand its link over and exit");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The speaker recordings the app made so far, in order.
    pub fn recordings(&self) -> Vec<PathBuf> {
        let mut files: Vec<(u64, PathBuf)> = std::fs::read_dir(&self.audio_dir)
            .map(|d| {
                d.flatten()
                    .filter_map(|e| {
                        let name = e.file_name().to_string_lossy().into_owned();
                        let n = name.strip_prefix("speaker-")?.strip_suffix(".wav")?;
                        Some((n.parse().ok()?, e.path()))
                    })
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        files.into_iter().map(|(_, p)| p).collect()
    }

    /// What the app's speaker played in its most recent opening, once it has been closed
    /// (the WAV is complete); waits for it.
    pub fn last_heard(&self, timeout: Duration) -> Vec<i16> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(path) = self.recordings().last() {
                if let Ok(reader) = hound::WavReader::open(path) {
                    let samples: Vec<i16> = reader.into_samples().filter_map(Result::ok).collect();
                    if !samples.is_empty() {
                        return samples;
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "the app's speaker recording was not closed in time\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The app's and the driver's output so far.
    pub fn log(&self) -> String {
        let mut s = String::new();
        let path = self.home.parent().map(|r| r.join("app.log"));
        if let Some(Ok(mut f)) = path.map(std::fs::File::open) {
            let _ = f.read_to_string(&mut s);
        }
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    }

    /// Closes the app's window (ends the WebDriver session) and waits until the app has
    /// signed out and exited, as it does when its window is closed.
    pub fn close_app(&self, window: Window) {
        drop(window);
        wait_until("the app to exit", Duration::from_secs(20), || {
            group_processes(self.process_group())
                .iter()
                .all(|(_, comm)| comm != "hookflash")
        });
    }

    /// The process group of the driver (and of the app and WebKit processes it started).
    pub fn process_group(&self) -> u32 {
        self.driver.0.id()
    }
}

/// The live processes of a process group: pid and command name.
pub fn group_processes(group: u32) -> Vec<(u32, String)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // "pid (comm) state ppid pgrp ...": comm may hold spaces, so split after ") ".
        let Some((head, rest)) = stat.rsplit_once(") ") else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.first() == Some(&"Z") {
            continue;
        }
        if fields.get(2).and_then(|g| g.parse::<u32>().ok()) == Some(group) {
            let comm = head.split_once(" (").map(|(_, c)| c).unwrap_or_default();
            out.push((pid, comm.to_owned()));
        }
    }
    out
}

fn post(url: &str, body: &Value) -> Result<Value, String> {
    match ureq::post(url)
        .timeout(Duration::from_secs(60))
        .send_json(body.clone())
    {
        Ok(r) => r.into_json().map_err(|e| e.to_string()),
        Err(ureq::Error::Status(code, r)) => {
            Err(format!("{code}: {}", r.into_string().unwrap_or_default()))
        }
        Err(e) => Err(e.to_string()),
    }
}

fn get(url: &str) -> Result<Value, String> {
    match ureq::get(url).timeout(Duration::from_secs(30)).call() {
        Ok(r) => r.into_json().map_err(|e| e.to_string()),
        Err(ureq::Error::Status(code, r)) => {
            Err(format!("{code}: {}", r.into_string().unwrap_or_default()))
        }
        Err(e) => Err(e.to_string()),
    }
}

/// The first element matching `css` that a find request to `url` (the page's, or an
/// element's) returns, in the session at `base`.
fn find_from(base: &str, url: &str, css: &str) -> Option<Element> {
    let v = post(url, &json!({"using": "css selector", "value": css})).ok()?;
    let id = v["value"][ELEMENT].as_str()?.to_owned();
    Some(Element {
        base: base.to_owned(),
        id,
    })
}

/// A WebDriver session on the app's window.
pub struct Window {
    base: String,
    shots: PathBuf,
    display: String,
}

/// An element of the page.
#[derive(Clone)]
pub struct Element {
    base: String,
    id: String,
}

/// The CSS selector of a `data-testid`.
pub fn tid(id: &str) -> String {
    format!("[data-testid=\"{id}\"]")
}

impl Window {
    /// The first element matching a CSS selector, if there is one now.
    pub fn find(&self, css: &str) -> Option<Element> {
        find_from(&self.base, &format!("{}/element", self.base), css)
    }

    /// Every element matching a CSS selector now.
    pub fn find_all(&self, css: &str) -> Vec<Element> {
        let v = post(
            &format!("{}/elements", self.base),
            &json!({"using": "css selector", "value": css}),
        )
        .unwrap_or_default();
        v["value"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|e| e[ELEMENT].as_str())
                    .map(|id| Element {
                        base: self.base.clone(),
                        id: id.to_owned(),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Waits for an element matching `css` for which `ok` holds; panics with `why`.
    pub fn wait_for(
        &self,
        css: &str,
        timeout: Duration,
        why: &str,
        mut ok: impl FnMut(&Element) -> bool,
    ) -> Element {
        let mut found = None;
        self.poll(timeout, || {
            found = self.find_all(css).into_iter().find(|e| ok(e));
            found.is_some()
        })
        .unwrap_or_else(|shot| panic!("{why}: no {css} in {timeout:?} (screenshot {shot})"));
        found.expect("found when the poll succeeded")
    }

    /// Checks `done` every 100 ms until it holds; on timeout, screenshots the window and
    /// returns the screenshot's path.
    fn poll(&self, timeout: Duration, mut done: impl FnMut() -> bool) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        while !done() {
            if Instant::now() > deadline {
                return Err(self.screenshot("timeout").display().to_string());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }

    /// Waits for an element matching `css` to exist.
    pub fn wait(&self, css: &str, timeout: Duration, why: &str) -> Element {
        self.wait_for(css, timeout, why, |_| true)
    }

    /// Waits until nothing matches `css`.
    pub fn wait_gone(&self, css: &str, timeout: Duration, why: &str) {
        self.poll(timeout, || self.find_all(css).is_empty())
            .unwrap_or_else(|shot| {
                panic!("{why}: {css} still there after {timeout:?} (screenshot {shot})")
            });
    }

    /// Runs a script in the page and returns its value.
    pub fn script(&self, script: &str, args: Value) -> Value {
        post(
            &format!("{}/execute/sync", self.base),
            &json!({"script": script, "args": args}),
        )
        .map(|v| v["value"].clone())
        .unwrap_or_else(|e| panic!("script failed: {e}"))
    }

    /// Runs an asynchronous script (it calls its last argument with the result).
    pub fn script_async(&self, script: &str, args: Value) -> Value {
        post(
            &format!("{}/execute/async", self.base),
            &json!({"script": script, "args": args}),
        )
        .map(|v| v["value"].clone())
        .unwrap_or_else(|e| panic!("async script failed: {e}"))
    }

    /// Saves a screenshot of the screen as a person sees it (`NAME.png` in the screenshots
    /// directory), taken from the X server: WebKitWebDriver's own screenshot can return a
    /// frame from before the page's first update.
    pub fn screenshot(&self, name: &str) -> PathBuf {
        let path = self.shots.join(format!("{name}.png"));
        // Let the page paint what the test just waited for: two animation frames.
        let _ = post(
            &format!("{}/execute/async", self.base),
            &json!({"script": "const done = arguments[0]; \
                requestAnimationFrame(() => requestAnimationFrame(() => done(true))); \
                setTimeout(() => done(false), 1000);", "args": []}),
        );
        std::thread::sleep(Duration::from_millis(100));
        let taken = Command::new("import")
            .args(["-display", &self.display, "-window", "root"])
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !taken {
            if let Ok(v) = get(&format!("{}/screenshot", self.base)) {
                if let Some(png) = v["value"]
                    .as_str()
                    .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
                {
                    let _ = std::fs::write(&path, png);
                }
            }
        }
        path
    }

    /// Where screenshots go.
    pub fn screenshots_dir(&self) -> &Path {
        &self.shots
    }
}

impl Drop for Window {
    fn drop(&mut self) {
        let _ = ureq::delete(&self.base)
            .timeout(Duration::from_secs(10))
            .call();
    }
}

impl Element {
    fn url(&self, what: &str) -> String {
        format!("{}/element/{}/{what}", self.base, self.id)
    }

    /// Scrolls it into view (as a user scrolls a list to reach it) and clicks it.
    pub fn click(&self) {
        let _ = post(
            &format!("{}/execute/sync", self.base),
            &json!({
                "script": "arguments[0].scrollIntoView({block: 'nearest'});",
                "args": [{ ELEMENT: self.id }]
            }),
        );
        post(&self.url("click"), &json!({})).unwrap_or_else(|e| panic!("click: {e}"));
    }

    /// Types into it.
    pub fn type_text(&self, text: &str) {
        post(&self.url("value"), &json!({"text": text})).unwrap_or_else(|e| panic!("type: {e}"));
    }

    /// Empties an input.
    pub fn clear(&self) {
        post(&self.url("clear"), &json!({})).unwrap_or_else(|e| panic!("clear: {e}"));
    }

    /// Its visible text.
    pub fn text(&self) -> String {
        get(&self.url("text"))
            .ok()
            .and_then(|v| v["value"].as_str().map(str::to_owned))
            .unwrap_or_default()
    }

    /// An attribute, if set.
    pub fn attr(&self, name: &str) -> Option<String> {
        get(&self.url(&format!("attribute/{name}")))
            .ok()
            .and_then(|v| v["value"].as_str().map(str::to_owned))
    }

    /// A property (`value` of an input).
    pub fn property(&self, name: &str) -> Value {
        get(&self.url(&format!("property/{name}")))
            .map(|v| v["value"].clone())
            .unwrap_or(Value::Null)
    }

    /// An element inside it.
    pub fn find(&self, css: &str) -> Option<Element> {
        find_from(&self.base, &self.url("element"), css)
    }
}
