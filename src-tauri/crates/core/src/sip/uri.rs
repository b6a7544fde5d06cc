//! SIP and `tel:` URIs (RFC 3261 §19.1, RFC 3966) and name-addr values.

use std::fmt;
use std::str::FromStr;

use super::ParseError;

/// A `sip:`, `sips:` or `tel:` URI.
///
/// For `tel:` URIs the number lives in [`Uri::user`] and [`Uri::host`] is empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uri {
    /// `sip`, `sips` or `tel` (lower case).
    pub scheme: String,
    /// The user part, unescaped as written (e.g. `alice`, `+15551234`).
    pub user: Option<String>,
    /// The host (name, IPv4, or `[IPv6]`); empty for `tel:`.
    pub host: String,
    /// The port, when written.
    pub port: Option<u16>,
    /// URI parameters (`;transport=tcp`, `;lr`, ...), in order.
    pub params: Vec<(String, Option<String>)>,
    /// URI headers (`?Replaces=...&X-Foo=bar`), values kept escaped as written.
    pub headers: Vec<(String, String)>,
}

impl Uri {
    /// A `sip:user@host` URI.
    pub fn sip(user: Option<&str>, host: &str, port: Option<u16>) -> Self {
        Uri {
            scheme: "sip".into(),
            user: user.map(str::to_owned),
            host: host.to_owned(),
            port,
            params: Vec::new(),
            headers: Vec::new(),
        }
    }

    /// The value of a URI parameter (`None` when absent; `Some(None)` for a flag).
    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_deref())
    }

    /// Set (or replace) a URI parameter.
    pub fn set_param(&mut self, name: &str, value: Option<&str>) {
        self.params.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self.params
            .push((name.to_owned(), value.map(str::to_owned)));
    }

    /// The transport named by `;transport=`, lower case, if any.
    pub fn transport(&self) -> Option<String> {
        self.param("transport")
            .flatten()
            .map(|t| t.to_ascii_lowercase())
    }

    /// How to reach this URI (RFC 3261 §18, §26.2; RFC 7118): the transport its
    /// `;transport=` names (else TLS for `sips:`, else `default`) and its port (else 5061 on a
    /// secure transport, 5060 otherwise). `ws` means WSS when `default` is WSS (RFC 7118
    /// writes `ws` for both). `None` for a transport we do not speak, and for a `sips:` URI
    /// over anything but TLS or WSS.
    pub fn transport_and_port(
        &self,
        default: super::TransportKind,
    ) -> Option<(super::TransportKind, u16)> {
        use super::TransportKind as T;
        let sips = self.scheme.eq_ignore_ascii_case("sips");
        let named = match self.transport() {
            None => None,
            Some(t) => Some(t.parse::<T>().ok()?),
        };
        let kind = match (named, sips) {
            (Some(T::Ws), _) if default == T::Wss => T::Wss,
            (Some(T::Ws), true) => T::Wss,
            (Some(T::Tcp) | None, true) => T::Tls,
            (Some(kind), _) => kind,
            (None, false) => default,
        };
        if sips && !kind.is_secure() {
            return None;
        }
        let port = self
            .port
            .unwrap_or(if kind.is_secure() { 5061 } else { 5060 });
        Some((kind, port))
    }

    /// The `user@host` address of record form, without port, params or headers.
    pub fn aor(&self) -> String {
        match (&self.user, self.scheme.as_str()) {
            (Some(u), "tel") => format!("tel:{u}"),
            (Some(u), s) => format!("{s}:{u}@{}", self.host),
            (None, s) => format!("{s}:{}", self.host),
        }
    }

    /// This URI without parameters and headers (used to compare targets).
    pub fn without_params(&self) -> Uri {
        Uri {
            params: Vec::new(),
            headers: Vec::new(),
            ..self.clone()
        }
    }

    /// The host and port as a `host:port` string, with `default_port` if none was written.
    pub fn host_port(&self, default_port: u16) -> String {
        format!("{}:{}", self.host, self.port.unwrap_or(default_port))
    }
}

impl fmt::Display for Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:", self.scheme)?;
        if self.scheme == "tel" {
            if let Some(u) = &self.user {
                write!(f, "{u}")?;
            }
        } else {
            if let Some(u) = &self.user {
                write!(f, "{u}@")?;
            }
            write!(f, "{}", self.host)?;
            if let Some(p) = self.port {
                write!(f, ":{p}")?;
            }
        }
        for (n, v) in &self.params {
            match v {
                Some(v) => write!(f, ";{n}={v}")?,
                None => write!(f, ";{n}")?,
            }
        }
        for (i, (n, v)) in self.headers.iter().enumerate() {
            write!(f, "{}{n}={v}", if i == 0 { '?' } else { '&' })?;
        }
        Ok(())
    }
}

impl FromStr for Uri {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        // No LWS inside a URI (RFC 4475 §3.1.2.8): a space means the text is not one URI;
        // nor the delimiters `<`, `>` and `"`, which must be escaped (RFC 2396 §2.4.3).
        if s.bytes()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control() || b"<>\"".contains(&b))
        {
            return Err(ParseError::new(
                "whitespace, a control character or a delimiter inside a URI",
            ));
        }
        let (scheme, rest) = s
            .split_once(':')
            .ok_or_else(|| ParseError::new(format!("URI without scheme: {s:?}")))?;
        // scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ): `<sip` is no scheme at all.
        if !scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            || !scheme
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
        {
            return Err(ParseError::new("malformed URI scheme"));
        }
        let scheme = scheme.to_ascii_lowercase();
        if !matches!(scheme.as_str(), "sip" | "sips" | "tel") {
            return Err(ParseError::new(format!(
                "unsupported URI scheme {scheme:?}"
            )));
        }
        // The userinfo ends at the first '@': neither user nor password may hold a raw '@',
        // while both may hold '?', ';' and ':' (RFC 3261 §25.1, RFC 4475 §3.1.1.2).
        let (user, rest) = match (scheme.as_str(), rest.find('@')) {
            ("tel", _) | (_, None) => (None, rest),
            (_, Some(0)) => return Err(ParseError::new("empty user part before '@'")),
            (_, Some(at)) => (Some(rest[..at].to_owned()), &rest[at + 1..]),
        };
        let (rest, headers) = match rest.split_once('?') {
            Some((r, h)) => (r, parse_uri_headers(h)),
            None => (rest, Vec::new()),
        };
        let mut parts = rest.split(';');
        let main = parts.next().unwrap_or_default();
        let params = parts
            .filter(|p| !p.is_empty())
            .map(|p| match p.split_once('=') {
                Some((n, v)) => (n.to_owned(), Some(v.to_owned())),
                None => (p.to_owned(), None),
            })
            .collect();
        if scheme == "tel" {
            if main.is_empty() {
                return Err(ParseError::new("tel: URI without a number"));
            }
            return Ok(Uri {
                scheme,
                user: Some(main.to_owned()),
                host: String::new(),
                port: None,
                params,
                headers,
            });
        }
        let (host, port) = split_host_port(main)?;
        Ok(Uri {
            scheme,
            user,
            host,
            port,
            params,
            headers,
        })
    }
}

fn parse_uri_headers(h: &str) -> Vec<(String, String)> {
    h.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((n, v)) => (n.to_owned(), v.to_owned()),
            None => (p.to_owned(), String::new()),
        })
        .collect()
}

/// Whether `host` is a host name, an IPv4 address or an `[IPv6]` reference (RFC 3261 §25.1;
/// `_` is let through, as some deployments use it in names).
fn is_host(host: &str) -> bool {
    match host.strip_prefix('[') {
        Some(v6) => v6.strip_suffix(']').is_some_and(|v6| {
            !v6.is_empty()
                && v6
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() || b":.".contains(&b))
        }),
        None => {
            !host.is_empty()
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
        }
    }
}

/// Split `host:port`, `[v6]:port`, `host` into its parts; the host must be a host name, an
/// IPv4 address or an IPv6 reference, the port (when written) decimal digits.
pub fn split_host_port(hp: &str) -> Result<(String, Option<u16>), ParseError> {
    let bad_port = || ParseError::new(format!("bad port in {hp:?}"));
    let port = |p: &str| -> Result<u16, ParseError> {
        if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad_port());
        }
        p.parse().map_err(|_| bad_port())
    };
    let (host, port) = if let Some(rest) = hp.strip_prefix('[') {
        let (h, after) = rest
            .split_once(']')
            .ok_or_else(|| ParseError::new(format!("unclosed IPv6 reference {hp:?}")))?;
        let port = match after {
            "" => None,
            _ => Some(port(after.strip_prefix(':').ok_or_else(bad_port)?)?),
        };
        (format!("[{h}]"), port)
    } else {
        match hp.rsplit_once(':') {
            Some((h, p)) => (h.to_owned(), Some(port(p)?)),
            None => (hp.to_owned(), None),
        }
    };
    if !is_host(&host) {
        return Err(ParseError::new(format!("bad host {host:?}")));
    }
    Ok((host, port))
}

/// Percent-escape a string for use inside a URI header value (RFC 3261 `hvalue`).
pub fn escape_uri_header(value: &str) -> String {
    let mut out = String::with_capacity(value.len() * 3 / 2);
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.!~*'()[]/:+$".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Undo percent-escaping (invalid escapes are kept as written).
pub fn unescape(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = |c: u8| (c as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A header value of the form `"Display" <uri>;param=value` (From, To, Contact, Refer-To, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameAddr {
    /// The display name, unquoted.
    pub display: Option<String>,
    /// The URI.
    pub uri: Uri,
    /// Header parameters after the address (`tag`, `expires`, ...).
    pub params: Vec<(String, Option<String>)>,
}

impl NameAddr {
    /// A name-addr with no display name and no parameters.
    pub fn new(uri: Uri) -> Self {
        NameAddr {
            display: None,
            uri,
            params: Vec::new(),
        }
    }

    /// A header parameter (`tag`, `expires`, ...).
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| v.as_deref())
    }

    /// The `tag` parameter.
    pub fn tag(&self) -> Option<&str> {
        self.param("tag")
    }

    /// Set (or replace) a header parameter.
    pub fn set_param(&mut self, name: &str, value: Option<&str>) {
        self.params.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self.params
            .push((name.to_owned(), value.map(str::to_owned)));
    }
}

impl fmt::Display for NameAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(d) = &self.display {
            write!(f, "{} ", quote(d))?;
        }
        write!(f, "<{}>", self.uri)?;
        for (n, v) in &self.params {
            match v {
                // gen-value = token / host / quoted-string (RFC 3261 §25.1)
                Some(v)
                    if !v.is_empty()
                        && v.chars().all(|c| is_token_char(c) || "[]:".contains(c)) =>
                {
                    write!(f, ";{n}={v}")?
                }
                Some(v) => write!(f, ";{n}={}", quote(v))?,
                None => write!(f, ";{n}")?,
            }
        }
        Ok(())
    }
}

/// Whether `c` may appear in a `token` (RFC 3261 §25.1).
pub(crate) fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-.!%*_+`'~".contains(c)
}

/// `s` as a quoted-string, with `"` and `\` escaped.
fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Read a quoted-string at the start of `s` (which starts with `"`): its unescaped content
/// and what follows the closing quote.
fn unquote(s: &str) -> Result<(String, &str), ParseError> {
    let mut out = String::new();
    let mut chars = s.char_indices().skip(1);
    while let Some((i, c)) = chars.next() {
        match c {
            // quoted-pair: the next character stands for itself.
            '\\' => match chars.next() {
                Some((_, n)) => out.push(n),
                None => break,
            },
            '"' => return Ok((out, &s[i + 1..])),
            c => out.push(c),
        }
    }
    Err(ParseError::new("unterminated quoted string"))
}

/// Split `s` at every `sep` outside quoted strings.
fn split_outside_quotes(s: &str, sep: char) -> Vec<&str> {
    let (mut out, mut start, mut quoted, mut escaped) = (Vec::new(), 0, false, false);
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            c if c == sep && !quoted => {
                out.push(&s[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

impl FromStr for NameAddr {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let (display, rest) = if s.starts_with('"') {
            let (name, rest) = unquote(s)?;
            (Some(name), rest.trim_start())
        } else if let Some(lt) = s.find('<') {
            let d = s[..lt].trim();
            // An unquoted display name is tokens and spaces (RFC 4475 §3.1.2.15: a comma
            // there is an error, not a name); UTF-8 beyond ASCII is let through.
            if !d
                .chars()
                .all(|c| is_token_char(c) || c == ' ' || c == '\t' || !c.is_ascii())
            {
                return Err(ParseError::new("unquoted display name with separators"));
            }
            ((!d.is_empty()).then(|| d.to_owned()), &s[lt..])
        } else {
            (None, s)
        };
        let (uri_str, params_str) = if let Some(r) = rest.strip_prefix('<') {
            let (u, p) = r
                .split_once('>')
                .ok_or_else(|| ParseError::new("unclosed '<' in address"))?;
            (u, p)
        } else {
            // addr-spec form: parameters after the URI belong to the header, and a URI with
            // headers must be in <> (RFC 3261 §20, RFC 4475 §3.1.2.13).
            let (u, p) = match rest.find(';') {
                Some(i) => (&rest[..i], &rest[i..]),
                None => (rest, ""),
            };
            if u.contains('?') {
                return Err(ParseError::new("a URI with headers outside <>"));
            }
            (u, p)
        };
        let uri: Uri = uri_str.parse()?;
        let params_str = params_str.trim();
        let Some(params_str) = params_str
            .strip_prefix(';')
            .or(params_str.is_empty().then_some(""))
        else {
            return Err(ParseError::new(
                "text after the address that is not a parameter",
            ));
        };
        let mut params = Vec::new();
        for p in split_outside_quotes(params_str, ';') {
            let p = p.trim();
            if p.is_empty() {
                continue;
            }
            let (n, v) = match p.split_once('=') {
                Some((n, v)) => {
                    let v = v.trim();
                    let v = if v.starts_with('"') {
                        let (v, after) = unquote(v)?;
                        if !after.trim().is_empty() {
                            return Err(ParseError::new("text after a quoted parameter value"));
                        }
                        v
                    } else if v.contains('"') {
                        return Err(ParseError::new("a stray quote in a parameter value"));
                    } else {
                        v.to_owned()
                    };
                    (n.trim(), Some(v))
                }
                None => (p, None),
            };
            if n.is_empty() || !n.chars().all(is_token_char) {
                return Err(ParseError::new(format!("bad parameter name {n:?}")));
            }
            params.push((n.to_owned(), v));
        }
        Ok(NameAddr {
            display,
            uri,
            params,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_uri_says_how_it_is_reached() {
        use crate::sip::TransportKind as T;
        let at = |u: &str, d: T| u.parse::<Uri>().unwrap().transport_and_port(d);
        assert_eq!(
            at("sip:a@h", T::Udp),
            Some((T::Udp, 5060)),
            "no transport: ours"
        );
        assert_eq!(
            at("sips:a@h", T::Udp),
            Some((T::Tls, 5061)),
            "sips: means TLS, 5061"
        );
        assert_eq!(
            at("sip:h;transport=tls", T::Udp),
            Some((T::Tls, 5061)),
            "TLS's port is 5061"
        );
        assert_eq!(
            at("sip:h:8080;transport=ws", T::Wss),
            Some((T::Wss, 8080)),
            "ws on a WSS account is WSS"
        );
        assert_eq!(
            at("sips:a@h;transport=udp", T::Udp),
            None,
            "sips: never over a clear transport"
        );
        assert_eq!(
            at("sip:h;transport=sctp", T::Udp),
            None,
            "a transport we do not speak"
        );
    }

    #[test]
    fn sip_uri_round_trips_with_params_and_headers() {
        let u: Uri =
            "sip:bob@example.com:5070;transport=tcp;lr?Replaces=abc%40h&X-Disable-Forwarding=true"
                .parse()
                .unwrap();
        assert_eq!(u.user.as_deref(), Some("bob"), "user part must be kept");
        assert_eq!(u.port, Some(5070), "port must be parsed");
        assert_eq!(
            u.transport().as_deref(),
            Some("tcp"),
            "transport param drives routing"
        );
        assert_eq!(u.param("lr"), Some(None), "lr is a flag parameter");
        assert_eq!(
            u.headers.len(),
            2,
            "URI headers carry Replaces and our flag"
        );
        assert_eq!(
            u.to_string(),
            "sip:bob@example.com:5070;transport=tcp;lr?Replaces=abc%40h&X-Disable-Forwarding=true",
            "printing must reproduce the URI byte for byte"
        );
    }

    #[test]
    fn user_part_may_hold_semicolons() {
        let u: Uri = "sip:+1555;phone-context=example.com@h;user=phone"
            .parse()
            .unwrap();
        assert_eq!(
            u.user.as_deref(),
            Some("+1555;phone-context=example.com"),
            "user params stay in the user part"
        );
        assert_eq!(u.host, "h", "the host follows the '@'");
        assert_eq!(
            u.param("user"),
            Some(Some("phone")),
            "URI params follow the host"
        );
    }

    #[test]
    fn tel_uri_keeps_the_number() {
        let u: Uri = "tel:+15551234".parse().unwrap();
        assert_eq!(
            u.user.as_deref(),
            Some("+15551234"),
            "a tel: number is the user part"
        );
        assert_eq!(
            u.to_string(),
            "tel:+15551234",
            "tel URIs print without host"
        );
    }

    #[test]
    fn name_addr_forms_parse() {
        let a: NameAddr = "\"Alice \\\"A\\\"\" <sip:alice@h>;tag=123".parse().unwrap();
        assert_eq!(
            a.display.as_deref(),
            Some("Alice \"A\""),
            "quoted display names unescape"
        );
        assert_eq!(
            a.tag(),
            Some("123"),
            "tag is a header param, not a URI param"
        );
        let b: NameAddr = "sip:bob@h;tag=9".parse().unwrap();
        assert_eq!(
            b.tag(),
            Some("9"),
            "in addr-spec form params belong to the header"
        );
        assert!(b.uri.params.is_empty(), "so the URI has none");
        let c: NameAddr = "Bob <sip:bob@h;transport=tcp>".parse().unwrap();
        assert_eq!(
            c.display.as_deref(),
            Some("Bob"),
            "unquoted display names are allowed"
        );
        assert_eq!(
            c.uri.transport().as_deref(),
            Some("tcp"),
            "URI params inside <> stay on the URI"
        );
    }

    #[test]
    fn bad_uris_are_errors_not_panics() {
        for bad in [
            "",
            "alice",
            "http://x",
            "sip:",
            "sip:a@h:notaport",
            "tel:",
            "sip:[::1",
        ] {
            assert!(bad.parse::<Uri>().is_err(), "{bad:?} must be rejected");
        }
    }

    #[test]
    fn escaping_round_trips() {
        let raw = "abc@host;to-tag=1;from-tag=2";
        assert_eq!(
            unescape(&escape_uri_header(raw)),
            raw,
            "escape then unescape is identity"
        );
        assert_eq!(unescape("%4"), "%4", "a truncated escape is kept");
    }
}
