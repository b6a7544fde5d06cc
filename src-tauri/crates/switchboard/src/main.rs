//! `hookflash-switchboard`: run the switchboard, issue tokens, manage users.
//!
//! ```text
//! hookflash-switchboard serve [--bind 127.0.0.1] [--port 5060] [--domain D] [--secret S] [--db PATH]
//!                             [--data-dir DIR] [--http-port 8080] [--voicemail-max 2m]
//!                             [--voicemail-registrar HOST:PORT]
//! hookflash-switchboard token USER [--ttl 1h] [--scope sip,turn,api]
//! hookflash-switchboard key sip|turn|api
//! hookflash-switchboard users add USER [--password P | --password-stdin]
//! hookflash-switchboard users list
//! hookflash-switchboard users remove USER
//! hookflash-switchboard rules get USER
//! hookflash-switchboard rules set USER [--always T] [--busy T] [--no-answer T --after SECS]
//! hookflash-switchboard rules set USER --json '{"noAnswer": {"after": 15, "to": "voicemail"}}'
//! hookflash-switchboard rules clear USER
//! hookflash-switchboard voicemail list USER
//! ```
//!
//! Every command takes `--config FILE.toml` (see `FileConfig`); flags override the file, and
//! the secret may also come from the environment variable `HOOKFLASH_SECRET` (flag > env >
//! file). `serve` prints exactly one line on stdout once it listens —
//! `switchboard listening on udp+tcp IP:PORT domain D`, followed by ` http IP:PORT` when the
//! HTTP API is enabled and by ` tls IP:PORT`, ` ws IP:PORT`, ` wss IP:PORT` for the TLS and
//! WebSocket listeners configured — and logs to stderr (`RUST_LOG`). Without `--data-dir` voicemail
//! lives in a temporary directory removed at exit. `rules` and `voicemail` work on the
//! database (`--db`), also while a switchboard serves it: rules apply from the next call.

use std::io::{BufRead, Write};
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use hookflash_core::sip::TransportKind;

use clap::{Parser, Subcommand};
use hookflash_core::auth::{is_valid_user, scope_key, unix_now, Scope, Token};
use hookflash_switchboard::{
    parse_duration, Config, FileConfig, ForwardTarget, ForwardTo, NoAnswer, Rules, Switchboard,
    SwitchboardError, UserStore, DEFAULT_DOMAIN,
};

#[derive(Parser)]
#[command(
    name = "hookflash-switchboard",
    version,
    about = "Hookflash switchboard: SIP registrar and proxy, tokens and users"
)]
struct Cli {
    /// TOML configuration file (bind, port, domain, secret, db, no_answer_timeout, data_dir,
    /// http_port, voicemail_max).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// SIP domain and digest realm [default: hookflash.local].
    #[arg(long, global = true)]
    domain: Option<String>,
    /// Token secret [env: HOOKFLASH_SECRET].
    #[arg(long, global = true)]
    secret: Option<String>,
    /// SQLite user database.
    #[arg(long, global = true, value_name = "PATH")]
    db: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the registrar and proxy until SIGINT or SIGTERM.
    Serve {
        /// Address to bind UDP and TCP to [default: 127.0.0.1].
        #[arg(long)]
        bind: Option<IpAddr>,
        /// Port for UDP and TCP; 0 picks one [default: 5060].
        #[arg(long)]
        port: Option<u16>,
        /// How long an INVITE may ring unanswered (30s, 2m) [default: 30s].
        #[arg(long, value_name = "DURATION")]
        no_answer_timeout: Option<String>,
        /// Directory for voicemail recordings and greetings [default: a temporary one].
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// Serve the HTTP API on this TCP port (0 picks one) [default: no HTTP API].
        #[arg(long, value_name = "PORT")]
        http_port: Option<u16>,
        /// The longest voicemail message (2m, 90s) [default: 2m].
        #[arg(long, value_name = "DURATION")]
        voicemail_max: Option<String>,
        /// The most SIP TCP connections open at once; more are closed [default: 1024].
        #[arg(long, value_name = "N")]
        tcp_max_connections: Option<usize>,
        /// Close a SIP TCP connection idle this long (clients ping to stay) [default: 3m].
        #[arg(long, value_name = "DURATION")]
        tcp_idle_timeout: Option<String>,
        /// Register the voicemail agent to this registrar (Kamailio with
        /// deploy/kamailio/kamailio.cfg, same secret and domain) instead of to this switchboard.
        #[arg(long, value_name = "HOST:PORT")]
        voicemail_registrar: Option<String>,
        /// Serve SIP over TLS with this certificate chain (PEM, leaf first, issued to the
        /// domain); needs --tls-key.
        #[arg(long, value_name = "FILE")]
        tls_cert: Option<PathBuf>,
        /// The private key (PEM) of --tls-cert.
        #[arg(long, value_name = "FILE")]
        tls_key: Option<PathBuf>,
        /// Port for SIP over TLS; 0 picks one [default: 5061].
        #[arg(long, value_name = "PORT")]
        tls_port: Option<u16>,
        /// Serve SIP over WebSocket (RFC 7118) on this port; 0 picks one [default: none].
        #[arg(long, value_name = "PORT")]
        ws_port: Option<u16>,
        /// Serve SIP over secure WebSocket on this port, with --tls-cert [default: none].
        #[arg(long, value_name = "PORT")]
        wss_port: Option<u16>,
    },
    /// Print a token for USER on stdout.
    Token {
        /// The user name.
        user: String,
        /// How long it is valid: 30s, 10m, 1h, 7d.
        #[arg(long, default_value = "1h", value_name = "DURATION")]
        ttl: String,
        /// What it opens, comma-separated: sip (sign in and call), turn (media relays),
        /// api (voicemail and forwarding rules over HTTP).
        #[arg(long, default_value = "sip,turn,api", value_name = "SCOPES")]
        scope: String,
    },
    /// Print the key another server checks one scope's grants with: `sip` for Kamailio's
    /// auth_ephemeral (HOOKFLASH_SIP_KEY in deploy/kamailio), `turn` for coturn's
    /// static-auth-secret. Neither opens the other scopes or mints tokens for them.
    Key {
        /// sip, turn or api.
        scope: String,
    },
    /// Manage the user database.
    Users {
        #[command(subcommand)]
        action: UsersCommand,
    },
    /// Show or change a user's forwarding rules.
    Rules {
        #[command(subcommand)]
        action: RulesCommand,
    },
    /// Look at a user's voicemail.
    Voicemail {
        #[command(subcommand)]
        action: VoicemailCommand,
    },
}

#[derive(Subcommand)]
enum RulesCommand {
    /// Print the rules as JSON.
    Get {
        /// The user name.
        user: String,
    },
    /// Replace the rules: from flags, or from JSON. Targets: a user name, a number or
    /// `voicemail`.
    Set {
        /// The user name.
        user: String,
        /// Forward every call to this target.
        #[arg(long, value_name = "TARGET")]
        always: Option<String>,
        /// Forward busy calls to this target.
        #[arg(long, value_name = "TARGET")]
        busy: Option<String>,
        /// Forward unanswered calls to this target (after --after seconds).
        #[arg(long, value_name = "TARGET", requires = "after")]
        no_answer: Option<String>,
        /// Seconds of ringing before the no-answer rule forwards.
        #[arg(long, value_name = "SECS", requires = "no_answer")]
        after: Option<u32>,
        /// The whole rules object as JSON (instead of the flags).
        #[arg(long, conflicts_with_all = ["always", "busy", "no_answer", "after"])]
        json: Option<String>,
    },
    /// Remove every rule.
    Clear {
        /// The user name.
        user: String,
    },
}

#[derive(Subcommand)]
enum VoicemailCommand {
    /// List messages, newest first: id, created (unix), duration (ms), heard, caller.
    List {
        /// The user name.
        user: String,
    },
}

#[derive(Subcommand)]
enum UsersCommand {
    /// Add a user (or set their password). Without a password the user signs in with tokens.
    Add {
        /// The user name.
        user: String,
        /// The password (visible to other local users in the process list; prefer
        /// --password-stdin).
        #[arg(long, conflicts_with = "password_stdin")]
        password: Option<String>,
        /// Read the password from the first line of stdin.
        #[arg(long)]
        password_stdin: bool,
    },
    /// List users: name, password or token-only, realm.
    List,
    /// Remove a user.
    Remove {
        /// The user name.
        user: String,
    },
}

struct Settings {
    file: FileConfig,
    domain: String,
    secret: Option<String>,
    db: Option<PathBuf>,
}

fn settings(cli: &Cli) -> Result<Settings, SwitchboardError> {
    let file = match &cli.config {
        Some(p) => FileConfig::load(p)?,
        None => FileConfig::default(),
    };
    let secret = cli
        .secret
        .clone()
        .or_else(|| {
            std::env::var("HOOKFLASH_SECRET")
                .ok()
                .filter(|s| !s.is_empty())
        })
        .or_else(|| file.secret.clone());
    Ok(Settings {
        domain: cli
            .domain
            .clone()
            .or_else(|| file.domain.clone())
            .unwrap_or_else(|| DEFAULT_DOMAIN.to_owned()),
        db: cli.db.clone().or_else(|| file.db.clone()),
        secret,
        file,
    })
}

/// A scope named on the command line.
fn parse_scope(name: &str) -> Result<Scope, SwitchboardError> {
    Scope::from_name(name.trim()).ok_or_else(|| {
        SwitchboardError::Config(format!(
            "unknown scope {name:?}: give sip, turn or api (comma-separated for a token)"
        ))
    })
}

fn need_secret(s: &Settings) -> Result<String, SwitchboardError> {
    s.secret.clone().ok_or_else(|| {
        SwitchboardError::Config(
            "no secret: pass --secret, set HOOKFLASH_SECRET or put `secret` in the config file"
                .into(),
        )
    })
}

fn open_db(s: &Settings) -> Result<UserStore, SwitchboardError> {
    let path = s.db.as_ref().ok_or_else(|| {
        SwitchboardError::Config(
            "no database: pass --db PATH or put `db` in the config file".into(),
        )
    })?;
    UserStore::open(path)
}

/// mimalloc rather than glibc's malloc: under load the UDP reader threads allocate each
/// message and the engine's thread frees it, and glibc's per-thread arenas kept what was freed
/// (the switchboard grew by tens of MiB with each wave of registrations that came and went).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error [{}]: {e}", e.code());
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode, SwitchboardError> {
    let s = settings(&cli)?;
    match cli.command {
        Command::Serve {
            bind,
            port,
            no_answer_timeout,
            data_dir,
            http_port,
            voicemail_max,
            tcp_max_connections,
            tcp_idle_timeout,
            voicemail_registrar,
            tls_cert,
            tls_key,
            tls_port,
            ws_port,
            wss_port,
        } => {
            let tls = match (
                tls_cert.or_else(|| s.file.tls_cert.clone()),
                tls_key.or_else(|| s.file.tls_key.clone()),
            ) {
                (Some(cert), Some(key)) => Some(hookflash_switchboard::config::TlsListen {
                    cert,
                    key,
                    port: tls_port.or(s.file.tls_port).unwrap_or(5061),
                }),
                (None, None) => None,
                _ => {
                    return Err(SwitchboardError::Config(
                        "TLS needs both a certificate (--tls-cert) and its key (--tls-key)".into(),
                    ))
                }
            };
            let timeout = match no_answer_timeout.or_else(|| s.file.no_answer_timeout.clone()) {
                Some(t) => parse_duration(&t)?,
                None => hookflash_switchboard::config::DEFAULT_NO_ANSWER_TIMEOUT,
            };
            let voicemail_max = match voicemail_max.or_else(|| s.file.voicemail_max.clone()) {
                Some(t) => parse_duration(&t)?,
                None => hookflash_switchboard::config::DEFAULT_VOICEMAIL_MAX,
            };
            let mut tcp_limits = hookflash_core::sip::StreamLimits::default();
            if let Some(n) = tcp_max_connections.or(s.file.tcp_max_connections) {
                tcp_limits.max_connections = n;
            }
            if let Some(t) = tcp_idle_timeout.or_else(|| s.file.tcp_idle_timeout.clone()) {
                tcp_limits.idle_timeout = parse_duration(&t)?;
            }
            let config = Config {
                bind: bind
                    .or(s.file.bind)
                    .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)),
                port: port.or(s.file.port).unwrap_or(5060),
                domain: s.domain.clone(),
                secret: need_secret(&s)?,
                db_path: s.db.clone(),
                no_answer_timeout: timeout,
                data_dir: data_dir.or_else(|| s.file.data_dir.clone()),
                http_port: http_port.or(s.file.http_port),
                voicemail_max,
                tcp_limits,
                voicemail_registrar: voicemail_registrar
                    .or_else(|| s.file.voicemail_registrar.clone())
                    .map(|r| resolve(&r))
                    .transpose()?,
                tls,
                ws_port: ws_port.or(s.file.ws_port),
                wss_port: wss_port.or(s.file.wss_port),
                trunks: s
                    .file
                    .trunk
                    .iter()
                    .cloned()
                    .map(|t| t.into_trunk(resolve))
                    .collect::<Result<_, _>>()?,
            };
            serve(config)
        }
        Command::Rules { action } => {
            let rules = open_db(&s)?.rules();
            match action {
                RulesCommand::Get { user } => {
                    print_json(&rules.get(&user)?);
                }
                RulesCommand::Set {
                    user,
                    always,
                    busy,
                    no_answer,
                    after,
                    json,
                } => {
                    let new = match json {
                        Some(j) => serde_json::from_str::<Rules>(&j)
                            .map_err(|e| SwitchboardError::InvalidRules(e.to_string()))?,
                        None => Rules {
                            always: always
                                .map(|t| ForwardTarget::parse(&t).map(|to| ForwardTo { to }))
                                .transpose()?,
                            busy: busy
                                .map(|t| ForwardTarget::parse(&t).map(|to| ForwardTo { to }))
                                .transpose()?,
                            no_answer: match (no_answer, after) {
                                (Some(t), Some(after)) => Some(NoAnswer {
                                    after,
                                    to: ForwardTarget::parse(&t)?,
                                }),
                                _ => None,
                            },
                        },
                    };
                    rules.set(&user, &new)?;
                    print_json(&rules.get(&user)?);
                }
                RulesCommand::Clear { user } => {
                    rules.set(&user, &Rules::default())?;
                    println!("cleared {user}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Voicemail {
            action: VoicemailCommand::List { user },
        } => {
            let mut out = std::io::stdout().lock();
            for m in open_db(&s)?.voicemail().list(&user)? {
                let _ = writeln!(
                    out,
                    "{}\t{}\t{}\t{}\t{}",
                    m.id,
                    m.created,
                    m.duration_ms,
                    if m.heard { "heard" } else { "new" },
                    m.caller
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Token { user, ttl, scope } => {
            if !is_valid_user(&user) {
                return Err(SwitchboardError::InvalidUser(user));
            }
            let ttl = parse_duration(&ttl)?;
            let scopes = scope
                .split(',')
                .map(parse_scope)
                .collect::<Result<Vec<_>, _>>()?;
            let token = Token::issue_scoped(&need_secret(&s)?, &user, &scopes, ttl, unix_now());
            println!("{token}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Key { scope } => {
            println!("{}", scope_key(&need_secret(&s)?, parse_scope(&scope)?));
            Ok(ExitCode::SUCCESS)
        }
        Command::Users { action } => {
            let db = open_db(&s)?;
            match action {
                UsersCommand::Add {
                    user,
                    password,
                    password_stdin,
                } => {
                    let password = if password_stdin {
                        let mut line = String::new();
                        std::io::stdin()
                            .lock()
                            .read_line(&mut line)
                            .map_err(|e| SwitchboardError::Config(format!("stdin: {e}")))?;
                        Some(line.trim_end_matches(['\r', '\n']).to_owned())
                    } else {
                        password
                    };
                    db.add(&user, &s.domain, password.as_deref())?;
                    println!("added {user}");
                    Ok(ExitCode::SUCCESS)
                }
                UsersCommand::List => {
                    let mut out = std::io::stdout().lock();
                    for u in db.list()? {
                        let kind = if u.ha1.is_some() {
                            "password"
                        } else {
                            "token-only"
                        };
                        let _ = writeln!(out, "{}\t{kind}\t{}", u.name, u.realm);
                    }
                    Ok(ExitCode::SUCCESS)
                }
                UsersCommand::Remove { user } => {
                    if db.remove(&user)? {
                        println!("removed {user}");
                        Ok(ExitCode::SUCCESS)
                    } else {
                        eprintln!("no such user: {user}");
                        Ok(ExitCode::FAILURE)
                    }
                }
            }
        }
    }
}

fn serve(config: Config) -> Result<ExitCode, SwitchboardError> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| SwitchboardError::Config(format!("runtime: {e}")))?;
    runtime.block_on(async move {
        let domain = config.domain.clone();
        let sb = Switchboard::start(config).await?;
        let http = sb
            .http_addr()
            .map(|a| format!(" http {a}"))
            .unwrap_or_default();
        let streams: String = [TransportKind::Tls, TransportKind::Ws, TransportKind::Wss]
            .into_iter()
            .filter_map(|k| sb.stream_addr(k).map(|a| format!(" {} {a}", k.param())))
            .collect();
        println!(
            "switchboard listening on udp+tcp {} domain {domain}{http}{streams}",
            sb.local_addr()
        );
        let _ = std::io::stdout().flush();
        wait_for_signal().await;
        tracing::info!("signal received, stopping");
        sb.shutdown().await;
        Ok(ExitCode::SUCCESS)
    })
}

/// `HOST:PORT` (a name or an address) as the first socket address it resolves to.
fn resolve(host_port: &str) -> Result<std::net::SocketAddr, SwitchboardError> {
    use std::net::ToSocketAddrs;
    host_port
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| {
            SwitchboardError::Config(format!("cannot resolve {host_port:?} (HOST:PORT)"))
        })
}

fn print_json<T: serde::Serialize>(value: &T) {
    match serde_json::to_string(value) {
        Ok(s) => println!("{s}"),
        Err(e) => eprintln!("error: {e}"),
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
