//! Configuration: the library [`Config`], the TOML file form and humane durations.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use hookflash_core::sip::TransportKind;

use crate::routing::Flow;
pub use crate::routing::Trunk;
use crate::SwitchboardError;

/// The default SIP domain (and digest realm) of a switchboard.
pub const DEFAULT_DOMAIN: &str = "hookflash.local";

/// How long an unanswered INVITE rings before the switchboard gives up with 408, by default.
pub const DEFAULT_NO_ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// The longest voicemail message recorded, by default.
pub const DEFAULT_VOICEMAIL_MAX: Duration = Duration::from_secs(120);

/// How a switchboard is set up.
#[derive(Debug, Clone)]
pub struct Config {
    /// The address to bind UDP and TCP to (`0.0.0.0` for all interfaces).
    pub bind: IpAddr,
    /// The port for both UDP and TCP; 0 picks a free one (see `SwitchboardHandle::local_addr`).
    pub port: u16,
    /// The SIP domain users belong to (`sip:alice@DOMAIN`); also the digest realm.
    pub domain: String,
    /// The shared secret that signs tokens (Kamailio `auth_ephemeral` / TURN REST secret).
    pub secret: String,
    /// The SQLite database of users; `None` keeps an empty in-memory one.
    pub db_path: Option<PathBuf>,
    /// How long an INVITE may go without a final answer before the switchboard cancels the
    /// branches and answers 408 upstream (a Timer C that is not reset by provisionals, but
    /// restarted when a forwarding rule retargets the call).
    pub no_answer_timeout: Duration,
    /// Where voicemail recordings and greetings live; `None` makes a temporary directory that
    /// the handle removes on shutdown (messages do not survive a restart then).
    pub data_dir: Option<PathBuf>,
    /// The TCP port of the HTTP API on [`Config::bind`]: `None` serves no HTTP, `Some(0)`
    /// picks a free port (see `SwitchboardHandle::http_addr`).
    pub http_port: Option<u16>,
    /// The longest voicemail message: the voicemail hangs up after this much recording.
    pub voicemail_max: Duration,
    /// Limits on the SIP TCP connections clients open: how many at once, how long one may sit
    /// idle, how long a message may take to arrive.
    pub tcp_limits: hookflash_core::sip::StreamLimits,
    /// Where the voicemail agent registers: `None` is this switchboard itself; `Some` is an
    /// external registrar that shares the secret and the domain, such as Kamailio with
    /// `deploy/kamailio/kamailio.cfg`, which then sends voicemail calls to the agent and
    /// message-summary SUBSCRIBEs to this switchboard (see the crate docs, "Behind Kamailio").
    pub voicemail_registrar: Option<SocketAddr>,
    /// SIP over TLS (`sips:`): the certificate and the port (0 picks one); `None` serves none.
    pub tls: Option<TlsListen>,
    /// SIP over plain WebSocket (RFC 7118) on this port (0 picks one); `None` serves none.
    pub ws_port: Option<u16>,
    /// SIP over secure WebSocket on this port, with [`Config::tls`]'s certificate.
    pub wss_port: Option<u16>,
    /// The trunks: the only way calls leave for, or come in from, other domains (see
    /// [`Trunk`]). None by default: foreign domains are then refused (403).
    pub trunks: Vec<Trunk>,
}

/// A TLS listener: its certificate chain and key (PEM files) and its port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsListen {
    /// The certificate chain, leaf first, issued to the SIP domain (RFC 5922) and to any
    /// host name clients dial.
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
    /// The TCP port for TLS; 0 picks a free one [conventionally 5061].
    pub port: u16,
}

impl Config {
    /// A loopback switchboard: `127.0.0.1`, a free port, domain [`DEFAULT_DOMAIN`]
    /// (`hookflash.local`), in-memory database, 30 s no-answer timeout, a temporary data
    /// directory, the HTTP API on a free port, voicemail messages up to 120 s.
    ///
    /// Clients address users as `sip:alice@hookflash.local` and send everything to
    /// `SwitchboardHandle::local_addr`; `sip:alice@127.0.0.1:PORT` works too.
    pub fn local(secret: &str) -> Config {
        Config {
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 0,
            domain: DEFAULT_DOMAIN.to_owned(),
            secret: secret.to_owned(),
            db_path: None,
            no_answer_timeout: DEFAULT_NO_ANSWER_TIMEOUT,
            data_dir: None,
            http_port: Some(0),
            voicemail_max: DEFAULT_VOICEMAIL_MAX,
            tcp_limits: hookflash_core::sip::StreamLimits::default(),
            voicemail_registrar: None,
            tls: None,
            ws_port: None,
            wss_port: None,
            trunks: Vec::new(),
        }
    }
}

/// The TOML configuration file of the `hookflash-switchboard` binary; every key is optional
/// and command-line flags override it.
///
/// ```toml
/// bind = "0.0.0.0"
/// port = 5060
/// domain = "example.org"
/// secret = "change me"
/// db = "/var/lib/hookflash/switchboard.db"
/// no_answer_timeout = "30s"
/// data_dir = "/var/lib/hookflash/data"
/// http_port = 8080
/// voicemail_max = "2m"
/// tcp_max_connections = 1024
/// tcp_idle_timeout = "3m"
/// voicemail_registrar = "10.0.0.5:5060"
/// tls_cert = "/etc/hookflash/fullchain.pem"
/// tls_key = "/etc/hookflash/key.pem"
/// tls_port = 5061
/// ws_port = 8080
/// wss_port = 8443
///
/// [[trunk]]                      # calls for these domains go to this server, and it may
/// name = "partner"               # call our users without credentials (trusted by address)
/// domains = ["partner.example"]  # "*" for every domain no other trunk names
/// address = "203.0.113.7:5060"   # resolved once, at start
/// transport = "udp"              # or "tcp" [default: udp]
/// ```
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// See [`Config::bind`].
    pub bind: Option<IpAddr>,
    /// See [`Config::port`].
    pub port: Option<u16>,
    /// See [`Config::domain`].
    pub domain: Option<String>,
    /// See [`Config::secret`].
    pub secret: Option<String>,
    /// See [`Config::db_path`].
    pub db: Option<PathBuf>,
    /// See [`Config::no_answer_timeout`], as a humane duration (`30s`).
    pub no_answer_timeout: Option<String>,
    /// See [`Config::data_dir`].
    pub data_dir: Option<PathBuf>,
    /// See [`Config::http_port`].
    pub http_port: Option<u16>,
    /// See [`Config::voicemail_max`], as a humane duration (`2m`).
    pub voicemail_max: Option<String>,
    /// See [`Config::tcp_limits`]: the most SIP TCP connections open at once.
    pub tcp_max_connections: Option<usize>,
    /// See [`Config::tcp_limits`]: how long a SIP TCP connection may sit idle (`3m`).
    pub tcp_idle_timeout: Option<String>,
    /// See [`Config::voicemail_registrar`]: `HOST:PORT` of the registrar the voicemail
    /// agent registers to.
    pub voicemail_registrar: Option<String>,
    /// See [`TlsListen::cert`].
    pub tls_cert: Option<PathBuf>,
    /// See [`TlsListen::key`].
    pub tls_key: Option<PathBuf>,
    /// See [`TlsListen::port`] (default 5061).
    pub tls_port: Option<u16>,
    /// See [`Config::ws_port`].
    pub ws_port: Option<u16>,
    /// See [`Config::wss_port`].
    pub wss_port: Option<u16>,
    /// See [`Config::trunks`]: `[[trunk]]` tables.
    #[serde(default)]
    pub trunk: Vec<TrunkFile>,
}

/// A `[[trunk]]` table of the configuration file; see [`Trunk`].
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TrunkFile {
    /// See [`Trunk::name`].
    pub name: String,
    /// See [`Trunk::domains`].
    pub domains: Vec<String>,
    /// `HOST:PORT` (resolved once, when the switchboard starts).
    pub address: String,
    /// `udp` or `tcp` [default: udp].
    pub transport: Option<String>,
}

impl TrunkFile {
    /// The trunk, its address resolved with `resolve` (`HOST:PORT` to an address).
    pub fn into_trunk(
        self,
        resolve: impl Fn(&str) -> Result<SocketAddr, SwitchboardError>,
    ) -> Result<Trunk, SwitchboardError> {
        let bad = |why: String| SwitchboardError::Config(format!("trunk {:?}: {why}", self.name));
        let transport = match self.transport.as_deref().unwrap_or("udp") {
            t if t.eq_ignore_ascii_case("udp") => TransportKind::Udp,
            t if t.eq_ignore_ascii_case("tcp") => TransportKind::Tcp,
            other => return Err(bad(format!("transport {other:?}: give udp or tcp"))),
        };
        if self.name.is_empty()
            || !self
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            return Err(bad(
                "a name is letters, digits and -_. (it is written into routes)".into(),
            ));
        }
        if self.domains.is_empty() {
            return Err(bad(
                "no domains: name the domains it serves, or \"*\"".into()
            ));
        }
        if let Some(d) = self
            .domains
            .iter()
            .find(|d| d.is_empty() || d.contains(|c: char| c.is_whitespace() || c == '@'))
        {
            return Err(bad(format!("{d:?} is not a domain")));
        }
        let addr = resolve(&self.address).map_err(|e| bad(e.to_string()))?;
        Ok(Trunk {
            name: self.name.clone(),
            domains: self
                .domains
                .iter()
                .map(|d| d.to_ascii_lowercase())
                .collect(),
            flow: Flow { transport, addr },
        })
    }
}

impl FileConfig {
    /// Parse the TOML text of a configuration file.
    pub fn parse(text: &str) -> Result<FileConfig, SwitchboardError> {
        toml::from_str(text).map_err(|e| SwitchboardError::Config(e.to_string()))
    }

    /// Read and parse a configuration file.
    pub fn load(path: &std::path::Path) -> Result<FileConfig, SwitchboardError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| SwitchboardError::Config(format!("{}: {e}", path.display())))?;
        FileConfig::parse(&text)
    }
}

/// Parse a humane duration: `30s`, `10m`, `1h`, `7d`, `1h30m`, or bare seconds (`90`).
pub fn parse_duration(s: &str) -> Result<Duration, SwitchboardError> {
    let bad =
        || SwitchboardError::Config(format!("bad duration {s:?} (examples: 30s, 10m, 1h, 7d)"));
    let s = s.trim();
    if s.is_empty() {
        return Err(bad());
    }
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let mut total: u64 = 0;
    let mut num = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            'w' => 604_800,
            _ => return Err(bad()),
        };
        let n: u64 = num.parse().map_err(|_| bad())?;
        num.clear();
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(bad)?;
    }
    if !num.is_empty() {
        return Err(bad());
    }
    Ok(Duration::from_secs(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn humane_durations_parse() {
        for (s, secs) in [
            ("30s", 30),
            ("10m", 600),
            ("1h", 3600),
            ("7d", 604_800),
            ("1h30m", 5400),
            ("90", 90),
        ] {
            assert_eq!(parse_duration(s).unwrap(), Duration::from_secs(secs), "{s}");
        }
        for bad in ["", "h", "1x", "1h3", "-5s", "99999999999999999999d"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn trunks_are_read_from_the_file_and_bad_ones_refused_at_start() {
        let f = FileConfig::parse(
            "[[trunk]]\nname = \"partner\"\ndomains = [\"Partner.Example\"]\naddress = \"192.0.2.50:5070\"\n\
             [[trunk]]\nname = \"carrier\"\ndomains = [\"*\"]\naddress = \"192.0.2.60:5060\"\ntransport = \"tcp\"\n",
        )
        .expect("two trunks parse");
        let resolve = |s: &str| {
            s.parse::<SocketAddr>()
                .map_err(|_| SwitchboardError::Config(format!("cannot resolve {s:?}")))
        };
        let trunks: Vec<Trunk> = f
            .trunk
            .into_iter()
            .map(|t| t.into_trunk(resolve))
            .collect::<Result<_, _>>()
            .expect("both are usable");
        assert_eq!(
            trunks[0],
            Trunk {
                name: "partner".into(),
                domains: vec!["partner.example".into()],
                flow: Flow {
                    transport: TransportKind::Udp,
                    addr: "192.0.2.50:5070".parse().unwrap()
                },
            },
            "UDP by default, the domain folded to lower case"
        );
        assert_eq!(trunks[1].flow.transport, TransportKind::Tcp, "tcp as asked");
        assert_eq!(
            crate::routing::trunk_for(&trunks, "partner.example").map(|t| &t.name[..]),
            Some("partner"),
            "a named domain goes to its trunk"
        );
        assert_eq!(
            crate::routing::trunk_for(&trunks, "anywhere.example").map(|t| &t.name[..]),
            Some("carrier"),
            "any other to the catch-all"
        );
        for (bad, why) in [
            ("domains = []\naddress = \"192.0.2.1:5060\"", "no domains"),
            (
                "domains = [\"a b\"]\naddress = \"192.0.2.1:5060\"",
                "is not a domain",
            ),
            ("domains = [\"x\"]\naddress = \"nowhere\"", "cannot resolve"),
            (
                "domains = [\"x\"]\naddress = \"192.0.2.1:5061\"\ntransport = \"tls\"",
                "give udp or tcp",
            ),
        ] {
            let f = FileConfig::parse(&format!("[[trunk]]\nname = \"t\"\n{bad}\n")).unwrap();
            let e = f.trunk[0].clone().into_trunk(resolve).expect_err(bad);
            assert!(
                e.to_string().contains(why) && e.to_string().contains("trunk \"t\""),
                "{bad:?} is refused, naming the trunk and saying why: {e}"
            );
        }
    }

    #[test]
    fn config_file_parses_and_refuses_unknown_keys() {
        let f = FileConfig::parse(
            "bind = \"0.0.0.0\"\nport = 5070\ndomain = \"d\"\nsecret = \"s\"\ndb = \"x.db\"\nno_answer_timeout = \"20s\"\n\
             data_dir = \"/tmp/d\"\nhttp_port = 8080\nvoicemail_max = \"2m\"\n",
        )
        .expect("a full config file parses");
        assert_eq!(f.port, Some(5070), "port read");
        assert_eq!(f.http_port, Some(8080), "http_port read");
        assert_eq!(f.voicemail_max.as_deref(), Some("2m"), "voicemail_max read");
        assert_eq!(
            f.db.as_deref(),
            Some(std::path::Path::new("x.db")),
            "db read"
        );
        assert_eq!(
            FileConfig::parse("voicemail_registrar = \"10.0.0.5:5060\"")
                .expect("the voicemail registrar parses")
                .voicemail_registrar
                .as_deref(),
            Some("10.0.0.5:5060"),
            "voicemail_registrar read (the voicemail agent registers there, e.g. Kamailio)"
        );
        assert!(
            FileConfig::parse("prot = 5060").is_err(),
            "a typo must not be ignored silently"
        );
    }
}
