//! Pure routing decisions: who a URI addresses, where a datagram goes, which final response
//! wins. No I/O and no state; every function here is unit-tested without sockets.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use hookflash_core::auth::fold_user;
use hookflash_core::sip::{Request, TransportKind, Uri, Via};
use sha1::{Digest, Sha1};

/// The default SIP port.
pub const SIP_PORT: u16 = 5060;
/// The default SIP port over TLS (`sips:`).
pub const SIPS_PORT: u16 = 5061;

/// Registration intervals are clamped to this range (seconds).
pub const MIN_EXPIRES: u32 = 30;
/// See [`MIN_EXPIRES`].
pub const MAX_EXPIRES: u32 = 3600;
/// The interval granted when a REGISTER names none.
pub const DEFAULT_EXPIRES: u32 = 3600;

/// A flow: how to reach a peer — the transport and the address (for TCP, the connection's
/// peer address, which is how `Transport` indexes connections).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Flow {
    /// UDP or TCP.
    pub transport: TransportKind,
    /// The peer address.
    pub addr: SocketAddr,
}

impl fmt::Display for Flow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.transport.param(), self.addr)
    }
}

impl std::str::FromStr for Flow {
    type Err = ();
    /// The form [`Flow`]'s `Display` writes: `udp:192.0.2.1:5060`, `tcp:[::1]:5060`.
    fn from_str(s: &str) -> Result<Flow, ()> {
        let (transport, addr) = s.split_once(':').ok_or(())?;
        Ok(Flow {
            transport: transport.parse().map_err(|_| ())?,
            addr: addr.parse().map_err(|_| ())?,
        })
    }
}

/// A SIP trunk: another server (a carrier, a PBX, a partner's switchboard) that calls for
/// other domains go to, and that may call our users.
///
/// It is the only way out of our domain: a user's request for a foreign domain is relayed
/// only to the trunk that serves that domain, a Route a user preloads is followed only when it
/// names a trunk, and a request from a trunk is taken without credentials (the trunk is
/// trusted by its address) only when it is for one of our users, never relayed on to
/// another domain or trunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trunk {
    /// What logs call it.
    pub name: String,
    /// The domains reached through it, lower case; `*` for every domain that no other trunk
    /// names.
    pub domains: Vec<String>,
    /// Where it takes SIP (and, for UDP, where its requests come from).
    pub flow: Flow,
}

impl Trunk {
    /// Whether it serves `host` by name (not through `*`).
    fn names(&self, host: &str) -> bool {
        self.domains.iter().any(|d| d.eq_ignore_ascii_case(host))
    }

    /// Whether a request arriving on `src` comes from this trunk: over UDP from its very
    /// address and port; over a stream from its IP (a connection it opens comes from a port
    /// of its kernel's choosing).
    pub fn sent(&self, src: Flow) -> bool {
        src.transport == self.flow.transport
            && src.addr.ip() == self.flow.addr.ip()
            && (src.transport.is_stream() || src.addr.port() == self.flow.addr.port())
    }
}

/// The trunk for requests to `host`: the one that names it, else the one for `*`.
pub fn trunk_for<'a>(trunks: &'a [Trunk], host: &str) -> Option<&'a Trunk> {
    trunk_naming(trunks, host).or_else(|| trunks.iter().find(|t| t.names("*")))
}

/// The trunk that names `host` among its domains (not through `*`).
pub fn trunk_naming<'a>(trunks: &'a [Trunk], host: &str) -> Option<&'a Trunk> {
    trunks.iter().find(|t| t.names(host))
}

/// The trunk at `addr` (a Route or a Request-URI resolved to it), whatever the transport the
/// URI named.
pub fn trunk_at(trunks: &[Trunk], addr: SocketAddr) -> Option<&Trunk> {
    trunks.iter().find(|t| t.flow.addr == addr)
}

/// The trunk reached on `flow` (a target chosen for it, or a leg of its dialog).
pub fn trunk_with_flow(trunks: &[Trunk], flow: Flow) -> Option<&Trunk> {
    trunks.iter().find(|t| t.flow == flow)
}

/// The trunk called `name`.
pub fn trunk_named<'a>(trunks: &'a [Trunk], name: &str) -> Option<&'a Trunk> {
    trunks.iter().find(|t| t.name == name)
}

/// Whether a host names a device rather than a domain: an IP literal, or a made-up `.invalid`
/// host (RFC 7118 clients). Only such contacts are reached by their own URI outside a dialog;
/// a domain name goes to the trunk that serves it, so that a user who registers
/// `Contact: <sip:carol@partner.example>` does not take carol's calls.
pub fn is_device_host(host: &str) -> bool {
    parse_host_ip(host).is_some() || host.to_ascii_lowercase().ends_with(".invalid")
}

/// Who the switchboard is: its domain and the addresses it answers on.
#[derive(Debug, Clone)]
pub struct Local {
    /// The SIP domain (and digest realm).
    pub domain: String,
    /// The address written into Via and Record-Route.
    pub advertised: IpAddr,
    /// Every IP that counts as "us" (with [`Local::port`]).
    pub ips: Vec<IpAddr>,
    /// The UDP and TCP port.
    pub port: u16,
    /// The ports of the other listeners (TLS, WS, WSS), when they listen.
    pub other_ports: Vec<(TransportKind, u16)>,
}

impl Local {
    /// The identity of a switchboard bound to `bind:port` (port already resolved) for `domain`.
    ///
    /// A wildcard bind advertises `advertised` and also answers to the loopback address.
    pub fn new(domain: &str, bind: IpAddr, advertised: IpAddr, port: u16) -> Local {
        let mut ips = vec![advertised];
        if !bind.is_unspecified() && bind != advertised {
            ips.push(bind);
        }
        if bind.is_unspecified() || bind.is_loopback() {
            let lo = if bind.is_ipv6() {
                IpAddr::V6(std::net::Ipv6Addr::LOCALHOST)
            } else {
                IpAddr::V4(Ipv4Addr::LOCALHOST)
            };
            if !ips.contains(&lo) {
                ips.push(lo);
            }
        }
        Local {
            domain: domain.to_owned(),
            advertised,
            ips,
            port,
            other_ports: Vec::new(),
        }
    }

    /// Also listening for `transport` on `port`.
    pub fn with_port(mut self, transport: TransportKind, port: u16) -> Local {
        self.other_ports.push((transport, port));
        self
    }

    /// The port we receive `transport` on.
    pub fn port_for(&self, transport: TransportKind) -> u16 {
        self.other_ports
            .iter()
            .find(|(t, _)| *t == transport)
            .map_or(self.port, |(_, p)| *p)
    }

    fn is_our_port(&self, port: u16) -> bool {
        port == self.port || self.other_ports.iter().any(|(_, p)| *p == port)
    }

    /// `host:port` for Via sent-by and Record-Route on UDP and TCP.
    pub fn host_port(&self) -> String {
        self.host_port_for(TransportKind::Udp)
    }

    /// `host:port` of the listener for `transport`.
    pub fn host_port_for(&self, transport: TransportKind) -> String {
        let port = self.port_for(transport);
        match self.advertised {
            IpAddr::V6(v6) => format!("[{v6}]:{port}"),
            IpAddr::V4(v4) => format!("{v4}:{port}"),
        }
    }

    /// Whether `host`/`port` names this switchboard: the domain (any port), or one of its IPs
    /// (or `localhost` when loopback is ours) with its port (5060 when none is written).
    ///
    /// The port matters: every loopback UA shares our IP, so an IP alone does not make "us".
    pub fn is_local_host(&self, host: &str, port: Option<u16>) -> bool {
        if host.eq_ignore_ascii_case(&self.domain) {
            return true;
        }
        if !self.is_our_port(port.unwrap_or(SIP_PORT)) {
            return false;
        }
        if host.eq_ignore_ascii_case("localhost") {
            return self.ips.iter().any(|ip| ip.is_loopback());
        }
        parse_host_ip(host).is_some_and(|ip| self.ips.contains(&ip))
    }

    /// Whether a Via was written by us.
    pub fn is_my_via(&self, via: &Via) -> bool {
        parse_host_ip(&via.host).is_some_and(|ip| self.ips.contains(&ip))
            && self.is_our_port(via.port.unwrap_or(SIP_PORT))
    }

    /// A Record-Route value for the leg on `transport` (`r2` marks double record-routing).
    ///
    /// `mark` ([`DialogMarks::mark`]) is carried as the `hf` parameter: requests in the dialog
    /// bring it back in their Route, which is how the proxy knows the route is one it made.
    /// On TLS the route says `transport=tls` in a `sip:` URI, as Kamailio writes it:
    /// baresip (libre 1.1) drops a call whose route set holds a `sips:` URI ("Function not
    /// implemented"), while every peer tried reads `transport=tls`.
    pub fn record_route(&self, transport: TransportKind, double: bool, mark: &str) -> String {
        let r2 = if double { ";r2=on" } else { "" };
        format!(
            "<sip:{};transport={};lr{r2};{DIALOG_MARK}={mark}>",
            self.host_port_for(transport),
            transport.param()
        )
    }

    /// Our Via for a request leaving on `transport` with `branch`.
    pub fn via(&self, transport: TransportKind, branch: &str) -> String {
        format!(
            "SIP/2.0/{} {};branch={branch};rport",
            transport.as_str(),
            self.host_port_for(transport)
        )
    }
}

/// The Record-Route parameter that carries a dialog's mark.
pub const DIALOG_MARK: &str = "hf";
/// The Record-Route parameter that names the trunk a marked dialog runs through.
pub const DIALOG_TRUNK: &str = "ht";
/// The Record-Route parameters that carry the flows of a marked dialog's two legs.
pub const DIALOG_LEGS: [&str; 2] = ["ha", "hb"];

/// What a dialog's mark vouches for: the flows of its two legs (where its initial request
/// came from, and where it went), and the trunk that is one of them, if any. Requests in the
/// dialog may reach these and nothing else (besides a registered contact).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DialogLegs {
    /// The trunk that is one of the legs.
    pub trunk: Option<String>,
    /// The flows of the legs.
    pub flows: Vec<Flow>,
}

/// Marks the dialogs the switchboard record-routes, so that it forwards in-dialog requests
/// only along routes it made: the mark is an HMAC (under a key derived from the switchboard's
/// secret, so marks survive a restart) of the dialog's Call-ID and its creator's tag. A
/// stranger cannot make one for a dialog it is not in; a request in a dialog carries the
/// creator's tag in From or in To, whichever way it goes.
#[derive(Clone)]
pub struct DialogMarks {
    key: [u8; 20],
}

impl std::fmt::Debug for DialogMarks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DialogMarks(<redacted>)")
    }
}

impl DialogMarks {
    /// The marks of a switchboard with this secret.
    pub fn new(secret: &str) -> DialogMarks {
        DialogMarks {
            key: hookflash_core::auth::hmac_sha1(
                secret.as_bytes(),
                b"hookflash-switchboard record-route key v1",
            ),
        }
    }

    fn mac(&self, call_id: &str, tag: &str, trunk: Option<&str>, legs: &[&str]) -> String {
        let data = format!(
            "{call_id}\n{tag}\n{}\n{}",
            trunk.unwrap_or_default(),
            legs.join("\n")
        );
        hex::encode(&hookflash_core::auth::hmac_sha1(&self.key, data.as_bytes())[..10])
    }

    /// The mark of the dialog with `call_id` created by the party whose tag is `tag`, between
    /// `legs`: the Record-Route parameters after `hf=` (the MAC, then `;ht=NAME` naming the
    /// trunk and `;ha=FLOW;hb=FLOW` the legs, all covered by the MAC).
    pub fn mark(&self, call_id: &str, tag: &str, legs: &DialogLegs) -> String {
        let flows: Vec<String> = legs.flows.iter().map(Flow::to_string).collect();
        let flows: Vec<&str> = flows.iter().map(String::as_str).collect();
        let mut mark = self.mac(call_id, tag, legs.trunk.as_deref(), &flows);
        if let Some(name) = &legs.trunk {
            mark.push_str(&format!(";{DIALOG_TRUNK}={name}"));
        }
        for (param, flow) in DIALOG_LEGS.iter().zip(&flows) {
            mark.push_str(&format!(";{param}={flow}"));
        }
        mark
    }

    /// Whether `route` (one of our Record-Route entries, as a request brings it back) carries
    /// the mark of the dialog with `call_id` and one of `tags`: `Some` with the legs the mark
    /// vouches for; `None` if it is not our mark.
    pub fn verify(&self, route: &Uri, call_id: &str, tags: &[&str]) -> Option<DialogLegs> {
        let Some(Some(presented)) = route.param(DIALOG_MARK) else {
            return None;
        };
        let trunk = route.param(DIALOG_TRUNK).flatten();
        let flows: Vec<&str> = DIALOG_LEGS
            .iter()
            .filter_map(|p| route.param(p).flatten())
            .collect();
        let ours = tags.iter().any(|tag| {
            hookflash_core::auth::ct_eq(
                self.mac(call_id, tag, trunk, &flows).as_bytes(),
                presented.as_bytes(),
            )
        });
        ours.then(|| DialogLegs {
            trunk: trunk.map(str::to_owned),
            flows: flows.iter().filter_map(|f| f.parse().ok()).collect(),
        })
    }
}

/// An IP literal host (`1.2.3.4`, `[::1]`), if it is one.
pub fn parse_host_ip(host: &str) -> Option<IpAddr> {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()
}

/// Who a Request-URI addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// The switchboard itself (our host, no user part).
    Local,
    /// A user of our domain: the user part (a `tel:` number counts as one).
    User(String),
    /// Something elsewhere: a contact, another domain.
    Remote,
}

/// Classify a URI: a `tel:` number or `sip:USER@our-host` is one of our users (named by its
/// folded name, [`fold_user`]), `sip:our-host`
/// is the switchboard, anything else is remote.
pub fn classify(uri: &Uri, local: &Local) -> Destination {
    if uri.scheme == "tel" {
        return match &uri.user {
            Some(u) if !u.is_empty() => Destination::User(fold_user(u)),
            _ => Destination::Remote,
        };
    }
    if !local.is_local_host(&uri.host, uri.port) {
        return Destination::Remote;
    }
    match &uri.user {
        Some(u) if !u.is_empty() => Destination::User(fold_user(u)),
        _ => Destination::Local,
    }
}

/// The user names a dialled user part may mean, best first.
///
/// A telephone number (`+1 (555) 123-4567`, `tel:+15551234567`,
/// `sip:+15551234567@d;user=phone`) loses its visual separators, and is tried with and
/// without its `+`; any other user part is taken as written.
pub fn number_candidates(user: &str) -> Vec<String> {
    let stripped: String = user
        .chars()
        .filter(|c| !matches!(c, '-' | '.' | '(' | ')' | ' '))
        .collect();
    let digits = stripped.strip_prefix('+').unwrap_or(&stripped);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return vec![user.to_owned()];
    }
    let mut out = vec![stripped.clone()];
    if digits != stripped {
        out.push(digits.to_owned());
    }
    out
}

/// Clamp a requested registration interval: 0 stays 0 (remove), else into
/// [`MIN_EXPIRES`]..=[`MAX_EXPIRES`].
pub fn clamp_expires(requested: u32) -> u32 {
    if requested == 0 {
        0
    } else {
        requested.clamp(MIN_EXPIRES, MAX_EXPIRES)
    }
}

/// Pick the response to send upstream from the final responses of all branches (RFC 3261
/// §16.7 step 6): a 2xx if any; else a 6xx; else the lowest class, and within it the lowest
/// code, real answers ahead of the synthetic 408 and 503. `None` when there are none.
pub fn best_response(statuses: &[u16]) -> Option<usize> {
    let rank = |s: u16| -> (u16, u16, u16) {
        let class = s / 100;
        let class_rank = match class {
            2 => 0,
            6 => 1,
            c => c,
        };
        let synthetic = u16::from(s == 408 || s == 503);
        (class_rank, synthetic, s)
    };
    statuses
        .iter()
        .enumerate()
        .filter(|(_, s)| **s >= 200)
        .min_by_key(|(_, s)| rank(**s))
        .map(|(i, _)| i)
}

/// The loop-detection hash of a request (RFC 3261 §16.6 step 8): it covers what a looping
/// request keeps and a spiralling one changes — Request-URI, From and To tags, Call-ID and
/// CSeq number.
pub fn loop_hash(req: &Request) -> String {
    let mut h = Sha1::new();
    h.update(req.uri.to_string().as_bytes());
    for name in ["From", "To"] {
        h.update(b"|");
        if let Some(tag) = req
            .headers
            .get(name)
            .and_then(|v| v.parse::<hookflash_core::sip::NameAddr>().ok())
            .and_then(|a| a.tag().map(str::to_owned))
        {
            h.update(tag.as_bytes());
        }
    }
    h.update(b"|");
    h.update(req.headers.get("Call-ID").unwrap_or_default().as_bytes());
    h.update(b"|");
    if let Ok(c) = req.cseq() {
        h.update(c.seq.to_string().as_bytes());
    }
    hex::encode(&h.finalize()[..6])
}

/// The branch prefix of requests we forward for a request with this loop hash.
pub fn branch_prefix(loop_hash: &str) -> String {
    format!("z9hG4bK-hf{loop_hash}-")
}

/// Where a URI can be reached without DNS: an IP literal (or `localhost`) host, with the
/// transport and port [`Uri::transport_and_port`] gives. `None` for names that need DNS, for
/// unknown transports, and for `sips:` over a clear transport.
pub fn resolve(uri: &Uri, default: TransportKind) -> Option<Flow> {
    if uri.scheme == "tel" {
        return None;
    }
    let ip = if uri.host.eq_ignore_ascii_case("localhost") {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        parse_host_ip(&uri.host)?
    };
    let (transport, port) = uri.transport_and_port(default)?;
    Some(Flow {
        transport,
        addr: SocketAddr::new(ip, port),
    })
}

/// Where a response goes by its (next) Via: `received` (else the sent-by host) and `rport`
/// (else the sent-by port, else 5060), over the Via's transport.
pub fn via_destination(via: &Via) -> Option<Flow> {
    let host = via.param("received").flatten().unwrap_or(&via.host);
    let ip = parse_host_ip(host)?;
    let port = via
        .param("rport")
        .flatten()
        .and_then(|p| p.parse().ok())
        .or(via.port)
        .unwrap_or(SIP_PORT);
    let transport = via.transport.parse().ok()?;
    Some(Flow {
        transport,
        addr: SocketAddr::new(ip, port),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use hookflash_core::sip::Message;

    fn local() -> Local {
        Local::new(
            "hookflash.local",
            "127.0.0.1".parse().unwrap(),
            "127.0.0.1".parse().unwrap(),
            5070,
        )
    }

    #[test]
    fn each_stream_listener_is_ours_and_routes_name_their_own_port() {
        let l = local()
            .with_port(TransportKind::Tls, 5071)
            .with_port(TransportKind::Wss, 8443);
        assert!(
            l.is_local_host("127.0.0.1", Some(5071)),
            "a Route to our TLS port is a Route to us"
        );
        assert!(
            !l.is_local_host("127.0.0.1", Some(5072)),
            "another loopback port is someone else"
        );
        let rr = l.record_route(TransportKind::Tls, true, "m");
        assert!(
            rr.starts_with("<sip:127.0.0.1:5071;transport=tls;lr;r2=on"),
            "the TLS leg's Record-Route names the TLS listener and transport=tls: {rr}"
        );
        assert!(
            l.via(TransportKind::Wss, "z9hG4bKx")
                .starts_with("SIP/2.0/WSS 127.0.0.1:8443;"),
            "our Via on a WSS leg names the WSS listener"
        );
        let flow = resolve(&"sips:bob@127.0.0.1".parse().unwrap(), TransportKind::Udp);
        assert_eq!(
            flow.map(|f| (f.transport, f.addr.port())),
            Some((TransportKind::Tls, SIPS_PORT)),
            "a sips: URI is reached over TLS, on 5061 unless it says otherwise"
        );
        assert_eq!(
            resolve(
                &"sips:bob@127.0.0.1;transport=udp".parse().unwrap(),
                TransportKind::Udp
            ),
            None,
            "a sips: URI is never reached over a clear transport"
        );
    }

    fn uri(s: &str) -> Uri {
        s.parse().unwrap()
    }

    #[test]
    fn uris_classify_by_host_port_and_user() {
        let l = local();
        assert_eq!(
            classify(&uri("sip:bob@hookflash.local"), &l),
            Destination::User("bob".into()),
            "our domain with a user is a user"
        );
        assert_eq!(
            classify(&uri("sip:bob@127.0.0.1:5070"), &l),
            Destination::User("bob".into()),
            "our IP:port as host is our domain too"
        );
        assert_eq!(
            classify(&uri("sip:bob@127.0.0.1:5072"), &l),
            Destination::Remote,
            "same IP, other port: a loopback UA, not us"
        );
        assert_eq!(
            classify(&uri("sip:127.0.0.1:5070;transport=tcp"), &l),
            Destination::Local,
            "no user: the switchboard itself"
        );
        assert_eq!(
            classify(&uri("sip:hookflash.local"), &l),
            Destination::Local,
            "the bare domain is the switchboard"
        );
        assert_eq!(
            classify(&uri("tel:+15551234"), &l),
            Destination::User("+15551234".into()),
            "a tel: number is routed as a user name"
        );
        assert_eq!(
            classify(&uri("sip:bob@example.org"), &l),
            Destination::Remote,
            "a foreign domain"
        );
    }

    #[test]
    fn numbers_lose_separators_and_try_without_plus() {
        assert_eq!(
            number_candidates("+1 (555) 123-4567"),
            ["+15551234567", "15551234567"]
        );
        assert_eq!(
            number_candidates("5551234"),
            ["5551234"],
            "plain digits as is"
        );
        assert_eq!(number_candidates("alice"), ["alice"], "names untouched");
        assert_eq!(
            number_candidates("a-b.c"),
            ["a-b.c"],
            "separators kept in names"
        );
    }

    #[test]
    fn best_response_follows_rfc3261_16_7() {
        assert_eq!(
            best_response(&[486, 200, 603]),
            Some(1),
            "2xx beats everything"
        );
        assert_eq!(best_response(&[486, 603, 404]), Some(1), "6xx beats 4xx");
        assert_eq!(
            best_response(&[500, 486, 404]),
            Some(2),
            "lowest class, lowest code"
        );
        assert_eq!(
            best_response(&[408, 486]),
            Some(1),
            "a real answer beats a timeout"
        );
        assert_eq!(best_response(&[503, 500]), Some(1), "503 is synthetic-ish");
        assert_eq!(
            best_response(&[302, 404]),
            Some(0),
            "3xx is a lower class than 4xx"
        );
        assert_eq!(best_response(&[180]), None, "provisionals are not final");
        assert_eq!(best_response(&[]), None, "nothing to choose from");
    }

    #[test]
    fn expires_is_clamped_but_zero_removes() {
        assert_eq!(clamp_expires(0), 0, "0 means unregister");
        assert_eq!(clamp_expires(5), MIN_EXPIRES, "too short is raised");
        assert_eq!(clamp_expires(600), 600, "in range kept");
        assert_eq!(clamp_expires(86_400), MAX_EXPIRES, "too long is lowered");
    }

    #[test]
    fn loop_hash_ignores_via_but_covers_the_request_uri() {
        let a = "INVITE sip:bob@hookflash.local SIP/2.0\r\nVia: SIP/2.0/UDP 1.2.3.4;branch=z9hG4bK1\r\n\
From: <sip:a@h>;tag=1\r\nTo: <sip:bob@hookflash.local>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n\r\n";
        let Message::Request(r1) = Message::parse(a.as_bytes()).unwrap() else {
            unreachable!()
        };
        let mut r2 = r1.clone();
        r2.headers
            .push_front("Via", "SIP/2.0/UDP 5.6.7.8;branch=z9hG4bK2");
        assert_eq!(
            loop_hash(&r1),
            loop_hash(&r2),
            "an extra Via is still the same request"
        );
        r2.uri = uri("sip:bob@127.0.0.1:5072");
        assert_ne!(
            loop_hash(&r1),
            loop_hash(&r2),
            "a retargeted request spirals, not loops"
        );
    }

    #[test]
    fn uris_and_vias_resolve_without_dns() {
        let f = resolve(
            &uri("sip:bob@127.0.0.1:5072;transport=tcp"),
            TransportKind::Udp,
        )
        .unwrap();
        assert_eq!(f.transport, TransportKind::Tcp, "the URI's transport wins");
        assert_eq!(f.addr, "127.0.0.1:5072".parse().unwrap());
        let f = resolve(&uri("sip:bob@[::1]"), TransportKind::Tcp).unwrap();
        assert_eq!(
            f.addr,
            "[::1]:5060".parse().unwrap(),
            "default port, IPv6 literal"
        );
        assert_eq!(
            f.transport,
            TransportKind::Tcp,
            "default transport when none written"
        );
        assert!(
            resolve(&uri("sip:bob@example.org"), TransportKind::Udp).is_none(),
            "no DNS"
        );
        assert!(
            resolve(&uri("sip:bob@1.2.3.4;transport=sctp"), TransportKind::Udp).is_none(),
            "unsupported transport"
        );
        let via: Via = "SIP/2.0/TCP 10.0.0.1:5062;branch=z9hG4bKx;received=127.0.0.1;rport=40000"
            .parse()
            .unwrap();
        let f = via_destination(&via).unwrap();
        assert_eq!(
            f.addr,
            "127.0.0.1:40000".parse().unwrap(),
            "received and rport win"
        );
        assert_eq!(f.transport, TransportKind::Tcp, "over the Via's transport");
    }

    #[test]
    fn our_host_needs_our_port() {
        let l = local();
        assert!(l.is_local_host("127.0.0.1", Some(5070)), "our IP and port");
        assert!(!l.is_local_host("127.0.0.1", None), "5060 is not our port");
        assert!(
            l.is_local_host("localhost", Some(5070)),
            "localhost on loopback"
        );
        assert!(
            l.is_local_host("HookFlash.Local", None),
            "domain, case-insensitive"
        );
        let via: Via = "SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKx"
            .parse()
            .unwrap();
        assert!(l.is_my_via(&via), "our sent-by");
    }
}
