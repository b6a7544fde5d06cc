//! `hookflash-agent`: Hookflash without a window.
//!
//! Signs in from flags, reads one JSON command per line on stdin, writes one JSON event per
//! line on stdout (the vocabulary of `hookflash_core::api`). Logs go to stderr (`RUST_LOG`).
//!
//! ```text
//! hookflash-agent --server 127.0.0.1:5060 --token "$TOKEN" --mic tone:440 --speaker wav:out.wav
//! {"command":"startCall","target":"bob","requestId":"1"}
//! ```
//!
//! For bots and demos: `--auto-answer` accepts every incoming call, `--call TARGET` calls once
//! signed in, `--hangup-after 5s` hangs up connected calls after that long, and
//! `--exit-when-done` exits once the `--call` call has ended. `--sound-devices` plays and
//! captures calls on the machine's sound cards instead of the virtual `--mic`/`--speaker`.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use clap::Parser;
use hookflash_core::agent::{
    sink_from_spec, source_from_spec, AgentConfig, CallClient, Credential,
};
use hookflash_core::api::{parse_command_line, Command, CommandEnvelope, Event};
use hookflash_core::audio::{DeviceManager, DeviceManagerConfig, DeviceSpec};
use hookflash_core::call::CallState;
use hookflash_core::media::MediaProfile;
use hookflash_core::registration::{ConnectionReason, ConnectionState};
use hookflash_core::sip::TransportKind;
use hookflash_core::AgentError;
use tokio::io::{AsyncBufReadExt, BufReader};

#[derive(Parser, Debug)]
#[command(
    name = "hookflash-agent",
    version,
    about = "Hookflash call agent driven by JSON lines"
)]
struct Args {
    /// The SIP server (switchboard or Kamailio), host:port.
    #[arg(long, default_value = "127.0.0.1:5060")]
    server: SocketAddr,
    /// The SIP domain.
    #[arg(long, default_value = "hookflash.local")]
    domain: String,
    /// A user access token EXPIRY:USER:SCOPE=PASSWORD,... (or env HOOKFLASH_TOKEN).
    #[arg(long, env = "HOOKFLASH_TOKEN", conflicts_with = "user")]
    token: Option<String>,
    /// A SIP user name (with --password) instead of a token.
    #[arg(long, requires = "password")]
    user: Option<String>,
    /// The SIP password (or env HOOKFLASH_PASSWORD).
    #[arg(long, env = "HOOKFLASH_PASSWORD")]
    password: Option<String>,
    /// udp, tcp, tls, ws or wss.
    #[arg(long, default_value = "udp")]
    transport: TransportKind,
    /// A CA certificate (PEM) to trust for TLS and WSS besides the system's; repeatable.
    #[arg(long, value_name = "FILE")]
    tls_ca: Vec<std::path::PathBuf>,
    /// The name the server's certificate must carry [default: the domain].
    #[arg(long, value_name = "NAME")]
    tls_name: Option<String>,
    /// A TURN server for call media, `turn:HOST:PORT`; repeatable. Signs in with the token
    /// (TURN REST) unless --turn-user is given.
    #[arg(long, value_name = "URL")]
    turn: Vec<String>,
    /// The TURN user name, when not the token's.
    #[arg(long, requires = "turn_password")]
    turn_user: Option<String>,
    /// The TURN password (or env HOOKFLASH_TURN_PASSWORD).
    #[arg(long, env = "HOOKFLASH_TURN_PASSWORD")]
    turn_password: Option<String>,
    /// Media through the TURN relay only (WebRTC profile only).
    #[arg(long, requires = "turn")]
    relay_only: bool,
    /// Our display name.
    #[arg(long)]
    display_name: Option<String>,
    /// The local address for SIP and media.
    #[arg(long, default_value = "127.0.0.1")]
    bind: IpAddr,
    /// Microphone: `tone:HZ`, `speech[:VOICE]`, `wav:PATH` or `silence`.
    #[arg(long, default_value = "silence", conflicts_with = "sound_devices")]
    mic: DeviceSpec,
    /// Speaker: wav:PATH (`{call}` in the path becomes the call id) or null.
    #[arg(long, default_value = "null", conflicts_with = "sound_devices")]
    speaker: DeviceSpec,
    /// Use this machine's sound cards (the system defaults until the device commands
    /// choose others), with ringtones, echo cancellation and noise suppression. With no
    /// usable sound device, an `audioDeviceError` (`device.none_available`) is printed and
    /// calls use silent virtual devices.
    #[arg(long)]
    sound_devices: bool,
    /// With --sound-devices: the JSON file that remembers the chosen devices and settings.
    #[arg(long, requires = "sound_devices")]
    device_settings: Option<std::path::PathBuf>,
    /// Accept every incoming call.
    #[arg(long)]
    auto_answer: bool,
    /// Call this target once signed in.
    #[arg(long)]
    call: Option<String>,
    /// Hang up connected calls after this long (e.g. 5s, 500ms).
    #[arg(long, value_parser = parse_duration)]
    hangup_after: Option<Duration>,
    /// Exit once the --call call has ended.
    #[arg(long, requires = "call")]
    exit_when_done: bool,
    /// Exit when stdin closes (otherwise keep running until signOut or a signal).
    #[arg(long)]
    exit_on_eof: bool,
    /// The media policy: the profiles calls may use, in order (`webrtc`, `sdes`, `rtp`).
    #[arg(long, value_delimiter = ',', default_value = "webrtc,sdes,rtp")]
    media: Vec<MediaProfile>,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num.parse().map_err(|_| format!("bad duration {s:?}"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "" | "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        _ => Err(format!("bad duration unit in {s:?} (ms, s, m)")),
    }
}

/// Write one event as a JSON line. `false` when stdout is gone (the reader closed the pipe):
/// the caller then shuts down cleanly instead of panicking the way `println!` would.
fn print(event: &Event) -> bool {
    use std::io::Write;
    let Ok(line) = serde_json::to_string(event) else {
        return true;
    };
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").and_then(|_| out.flush()).is_ok()
}

// One thread: the agent is one task plus a few per call, and cross-thread wake-ups were a
// sixth of a call's CPU (3.3-3.5 % of a core multi-threaded, 2.8-3.1 % on one thread).
#[tokio::main(flavor = "current_thread")]
async fn main() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            // webrtc's own crates warn about routine ICE/DTLS teardown; keep them to errors.
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,webrtc=error,webrtc_ice=error,webrtc_dtls=error,webrtc_srtp=error,webrtc_sctp=error,webrtc_mdns=error".into()),
        )
        .init();
    let args = Args::parse();
    let code = match run(args).await {
        Ok(()) => 0,
        Err(e) => {
            print(&Event::from_error(None, &e));
            eprintln!("hookflash-agent: {e}");
            1
        }
    };
    let _ = std::io::Write::flush(&mut std::io::stdout());
    // Exit at once: tokio's stdin reader sits in a blocking read that would otherwise keep the
    // runtime (and the process) alive until stdin closes.
    std::process::exit(code)
}

async fn run(args: Args) -> Result<(), AgentError> {
    let credential = match (&args.token, &args.user, &args.password) {
        (Some(t), _, _) => Credential::parse(t)?,
        (None, Some(user), Some(password)) => Credential::Password {
            user: user.clone(),
            password: password.clone(),
        },
        _ => {
            return Err(AgentError::InvalidCredential(
                "give --token (or HOOKFLASH_TOKEN), or --user and --password".into(),
            ))
        }
    };
    // Fail early on a bad device rather than on the first call.
    args.mic.open_source().map_err(AgentError::Device)?;
    let mut config = AgentConfig::new(args.server, &args.domain, credential);
    config.transport = args.transport;
    config.tls_roots = args.tls_ca.clone();
    config.tls_server_name = args.tls_name.clone();
    if !args.turn.is_empty() {
        config.turn = Some(hookflash_core::agent::TurnConfig {
            urls: args.turn.clone(),
            credentials: args.turn_user.clone().zip(args.turn_password.clone()),
            relay_only: args.relay_only,
        });
    }
    config.display_name = args.display_name.clone();
    config.bind_ip = args.bind;
    config.microphone = source_from_spec(args.mic.clone());
    config.speaker = sink_from_spec(args.speaker.clone());
    config.media_profiles = args.media.clone();
    let devices = args.sound_devices.then(|| {
        DeviceManager::new(DeviceManagerConfig {
            system_devices: true,
            settings_path: args.device_settings.clone(),
            ..DeviceManagerConfig::default()
        })
    });
    if let Some(devices) = &devices {
        config = config.with_devices(devices.clone());
    }
    let agent = CallClient::new().create_call_agent(config).await?;
    let mut events = agent.subscribe();
    // Problems found before anyone listened (no sound device at all) are told first.
    for problem in devices.iter().flat_map(DeviceManager::problems) {
        print(&problem);
    }

    let stdin_agent = agent.clone();
    let exit_on_eof = args.exit_on_eof;
    let stdin_task = tokio::spawn(async move {
        let mut lines = BufReader::new(tokio::io::stdin()).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if line.trim().is_empty() {
                continue;
            }
            match parse_command_line(&line) {
                Ok(env) => {
                    let a = stdin_agent.clone();
                    // Commands run concurrently; each answer carries its requestId.
                    tokio::spawn(async move {
                        let _ = a.execute_envelope(env).await;
                    });
                }
                Err(error) => {
                    print(&error);
                }
            }
        }
        if exit_on_eof {
            stdin_agent.shutdown().await;
        }
    });

    let mut placed: Option<String> = None;
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| AgentError::Transport(e.to_string()))?;
    loop {
        let event = tokio::select! {
            e = events.recv() => e,
            _ = tokio::signal::ctrl_c() => { agent.shutdown().await; break; }
            _ = sigterm.recv() => { agent.shutdown().await; break; }
        };
        let event = match event {
            Ok(e) => e,
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                eprintln!("hookflash-agent: {n} events dropped (stdout too slow)");
                continue;
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
        };
        if !print(&event) {
            // Nobody reads our events any more: hang up and sign out rather than run blind.
            agent.shutdown().await;
            break;
        }
        match &event {
            Event::ConnectionStateChanged {
                new_value: ConnectionState::Connected,
                ..
            } => {
                if let (Some(target), None) = (&args.call, &placed) {
                    match agent.start_call(target).await {
                        Ok(id) => placed = Some(id),
                        Err(e) => {
                            print(&Event::from_error(None, &e));
                            if args.exit_when_done {
                                agent.shutdown().await;
                                return Err(e);
                            }
                        }
                    }
                }
            }
            Event::ConnectionStateChanged {
                new_value: ConnectionState::Disconnected,
                reason,
                ..
            } if args.call.is_some() && placed.is_none() && args.exit_when_done => {
                return Err(AgentError::Transport(format!(
                    "could not sign in: {reason:?}"
                )));
            }
            Event::ConnectionStateChanged {
                reason: ConnectionReason::SignedOut,
                ..
            } => break,
            Event::IncomingCall { call_id, .. } if args.auto_answer => {
                let env = CommandEnvelope {
                    request_id: None,
                    command: Command::Accept {
                        call_id: call_id.clone(),
                    },
                };
                let a = agent.clone();
                tokio::spawn(async move {
                    let _ = a.execute_envelope(env).await;
                });
            }
            Event::CallStateChanged {
                call_id,
                state: CallState::Connected,
                old_state,
                ..
            } if !matches!(old_state, CallState::LocalHold | CallState::RemoteHold) => {
                if let Some(after) = args.hangup_after {
                    let call = agent.call(call_id);
                    tokio::spawn(async move {
                        tokio::time::sleep(after).await;
                        let _ = call.hang_up().await;
                    });
                }
            }
            Event::CallStateChanged {
                call_id,
                state: CallState::Disconnected,
                ..
            } if args.exit_when_done && placed.as_deref() == Some(call_id) => {
                agent.shutdown().await;
                break;
            }
            _ => {}
        }
    }
    stdin_task.abort();
    Ok(())
}
