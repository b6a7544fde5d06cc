//! SIP messages (RFC 3261 §7): parsing, header access and serialization.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use super::uri::{is_token_char, split_host_port, NameAddr, Uri};
use super::ParseError;

/// The largest message we accept (a bound against memory abuse).
pub const MAX_MESSAGE_SIZE: usize = 64 * 1024;

/// A SIP method.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub enum Method {
    Invite,
    Ack,
    Bye,
    Cancel,
    Register,
    Options,
    Refer,
    Notify,
    Subscribe,
    Info,
    Message,
    Update,
    Prack,
    /// An extension method, as written.
    Other(String),
}

impl Method {
    /// The method token as written on the wire.
    pub fn as_str(&self) -> &str {
        match self {
            Method::Invite => "INVITE",
            Method::Ack => "ACK",
            Method::Bye => "BYE",
            Method::Cancel => "CANCEL",
            Method::Register => "REGISTER",
            Method::Options => "OPTIONS",
            Method::Refer => "REFER",
            Method::Notify => "NOTIFY",
            Method::Subscribe => "SUBSCRIBE",
            Method::Info => "INFO",
            Method::Message => "MESSAGE",
            Method::Update => "UPDATE",
            Method::Prack => "PRACK",
            Method::Other(s) => s,
        }
    }
}

impl FromStr for Method {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        if s.is_empty()
            || !s
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b))
        {
            return Err(ParseError::new(format!("bad method token {s:?}")));
        }
        Ok(match s {
            "INVITE" => Method::Invite,
            "ACK" => Method::Ack,
            "BYE" => Method::Bye,
            "CANCEL" => Method::Cancel,
            "REGISTER" => Method::Register,
            "OPTIONS" => Method::Options,
            "REFER" => Method::Refer,
            "NOTIFY" => Method::Notify,
            "SUBSCRIBE" => Method::Subscribe,
            "INFO" => Method::Info,
            "MESSAGE" => Method::Message,
            "UPDATE" => Method::Update,
            "PRACK" => Method::Prack,
            other => Method::Other(other.to_owned()),
        })
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The header list of a message, in wire order, names as written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(pub Vec<(String, String)>);

/// Expand compact header names (RFC 3261 §7.3.3, RFC 3515, RFC 3892).
fn canonical(name: &str) -> &str {
    match name {
        "v" | "V" => "Via",
        "f" | "F" => "From",
        "t" | "T" => "To",
        "i" | "I" => "Call-ID",
        "m" | "M" => "Contact",
        "l" | "L" => "Content-Length",
        "c" | "C" => "Content-Type",
        "k" | "K" => "Supported",
        "s" | "S" => "Subject",
        "e" | "E" => "Content-Encoding",
        "o" | "O" => "Event",
        "u" | "U" => "Allow-Events",
        "r" | "R" => "Refer-To",
        "b" | "B" => "Referred-By",
        other => other,
    }
}

impl Headers {
    /// The first value of a header (case-insensitive, compact forms understood).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| canonical(n).eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// All values of a header, each header line split at top-level commas.
    ///
    /// Only for headers whose grammar is a comma list (Via, Route, Record-Route, Contact, ...).
    pub fn get_all(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(n, _)| canonical(n).eq_ignore_ascii_case(name))
            .flat_map(|(_, v)| split_top_level_commas(v))
            .collect()
    }

    /// Append a header line.
    pub fn push(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.0.push((name.into(), value.into()));
    }

    /// Insert a header line before all others of the same name (used for Via and Record-Route).
    pub fn push_front(&mut self, name: &str, value: impl Into<String>) {
        let pos = self
            .0
            .iter()
            .position(|(n, _)| canonical(n).eq_ignore_ascii_case(name))
            .unwrap_or(0);
        self.0.insert(pos, (name.to_owned(), value.into()));
    }

    /// Replace every line of a header with one value.
    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        let value = value.into();
        match self
            .0
            .iter()
            .position(|(n, _)| canonical(n).eq_ignore_ascii_case(name))
        {
            Some(pos) => {
                self.0[pos] = (name.to_owned(), value);
                let mut i = pos + 1;
                while i < self.0.len() {
                    if canonical(&self.0[i].0).eq_ignore_ascii_case(name) {
                        self.0.remove(i);
                    } else {
                        i += 1;
                    }
                }
            }
            None => self.0.push((name.to_owned(), value)),
        }
    }

    /// Remove every line of a header.
    pub fn remove(&mut self, name: &str) {
        self.0
            .retain(|(n, _)| !canonical(n).eq_ignore_ascii_case(name));
    }

    /// Remove the first value of a comma-list header (the top Via, the top Route).
    pub fn pop_first(&mut self, name: &str) -> Option<String> {
        let pos = self
            .0
            .iter()
            .position(|(n, _)| canonical(n).eq_ignore_ascii_case(name))?;
        let mut values = split_top_level_commas(&self.0[pos].1);
        let first = values.remove(0);
        if values.is_empty() {
            self.0.remove(pos);
        } else {
            self.0[pos].1 = values.join(", ");
        }
        Some(first)
    }
}

/// Split a header value at commas that are outside quotes and angle brackets.
pub fn split_top_level_commas(v: &str) -> Vec<String> {
    let mut out = Vec::new();
    let (mut in_quote, mut escaped, mut in_angle, mut start) = (false, false, false, 0);
    for (i, b) in v.bytes().enumerate() {
        match b {
            // Inside quotes a backslash takes the next character as it is (quoted-pair).
            _ if escaped => escaped = false,
            b'\\' if in_quote => escaped = true,
            b'"' => in_quote = !in_quote,
            b'<' if !in_quote => in_angle = true,
            b'>' if !in_quote => in_angle = false,
            b',' if !in_quote && !in_angle => {
                out.push(v[start..i].trim().to_owned());
                start = i + 1;
            }
            _ => {}
        }
    }
    let last = v[start..].trim();
    if !last.is_empty() {
        out.push(last.to_owned());
    }
    out
}

/// A SIP request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The method.
    pub method: Method,
    /// The Request-URI.
    pub uri: Uri,
    /// The headers.
    pub headers: Headers,
    /// The body (SDP, sipfrag, ...).
    pub body: Vec<u8>,
}

/// A SIP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code (100–699).
    pub status: u16,
    /// The reason phrase.
    pub reason: String,
    /// The headers.
    pub headers: Headers,
    /// The body.
    pub body: Vec<u8>,
}

/// A SIP message: a request or a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A request.
    Request(Request),
    /// A response.
    Response(Response),
}

/// The parsed top Via header (RFC 3261 §20.42).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Via {
    /// `UDP`, `TCP`, `TLS`, `WS`, ... (upper case).
    pub transport: String,
    /// The sent-by host.
    pub host: String,
    /// The sent-by port, if written.
    pub port: Option<u16>,
    /// Parameters (`branch`, `rport`, `received`, ...).
    pub params: Vec<(String, Option<String>)>,
}

impl Via {
    /// A parameter value; `Some(None)` for a flag such as a bare `rport`.
    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_deref())
    }

    /// The branch parameter (the transaction id).
    pub fn branch(&self) -> Option<&str> {
        self.param("branch").flatten()
    }

    /// Set or replace a parameter.
    pub fn set_param(&mut self, name: &str, value: Option<&str>) {
        if let Some(p) = self
            .params
            .iter_mut()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            p.1 = value.map(str::to_owned);
        } else {
            self.params
                .push((name.to_owned(), value.map(str::to_owned)));
        }
    }
}

impl FromStr for Via {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        let bad = |what: &str| ParseError::new(format!("bad Via {what}"));
        // sent-protocol = protocol-name SLASH protocol-version SLASH transport, where
        // SLASH = SWS "/" SWS (RFC 3261 §25.1): "SIP / 2.0 / UDP" is as good as "SIP/2.0/UDP".
        let mut rest = s.trim();
        let mut fields = [""; 3];
        for (i, field) in fields.iter_mut().enumerate() {
            if i > 0 {
                rest = rest
                    .trim_start()
                    .strip_prefix('/')
                    .ok_or_else(|| bad("protocol"))?
                    .trim_start();
            }
            let end = rest.find(|c: char| !is_token_char(c)).unwrap_or(rest.len());
            if end == 0 {
                return Err(bad("protocol"));
            }
            *field = &rest[..end];
            rest = &rest[end..];
        }
        if !fields[0].eq_ignore_ascii_case("SIP") || fields[1] != "2.0" {
            return Err(bad("protocol version"));
        }
        let transport = fields[2].to_ascii_uppercase();
        if !rest.starts_with(char::is_whitespace) {
            return Err(bad("sent-by"));
        }
        let mut parts = rest.split(';');
        let (host, port) = split_sent_by(parts.next().unwrap_or_default().trim())?;
        let mut params = Vec::new();
        for p in parts {
            // SEMI via-params: an empty one (";;") is an error (RFC 4475 §3.1.2.1).
            let (n, v) = match p.split_once('=') {
                Some((n, v)) if !v.trim().is_empty() => (n.trim(), Some(v.trim().to_owned())),
                Some(_) => return Err(bad("parameter without a value")),
                None => (p.trim(), None),
            };
            if n.is_empty() || !n.chars().all(is_token_char) {
                return Err(bad("parameter"));
            }
            params.push((n.to_owned(), v));
        }
        Ok(Via {
            transport,
            host,
            port,
            params,
        })
    }
}

/// Split a Via sent-by, `host [COLON port]`, where COLON = SWS ":" SWS.
fn split_sent_by(s: &str) -> Result<(String, Option<u16>), ParseError> {
    let colon = match s.rfind(']') {
        Some(b) => s[b..].find(':').map(|i| b + i),
        None => s.find(':'),
    };
    match colon {
        Some(i) => split_host_port(&format!(
            "{}:{}",
            s[..i].trim_end(),
            s[i + 1..].trim_start()
        )),
        None => split_host_port(s),
    }
}

impl fmt::Display for Via {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SIP/2.0/{} {}", self.transport, self.host)?;
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        for (n, v) in &self.params {
            match v {
                Some(v) => write!(f, ";{n}={v}")?,
                None => write!(f, ";{n}")?,
            }
        }
        Ok(())
    }
}

/// The CSeq header: sequence number and method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CSeq {
    /// The sequence number.
    pub seq: u32,
    /// The method.
    pub method: Method,
}

impl FromStr for CSeq {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        let mut it = s.split_whitespace();
        // 1*DIGIT that fits 32 bits (RFC 3261 §8.1.1.5); leading zeros are fine (RFC 4475
        // §3.1.1.1), a sign is not.
        let seq = it
            .next()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| ParseError::new(format!("bad CSeq {s:?}")))?;
        let method = it
            .next()
            .ok_or_else(|| ParseError::new(format!("CSeq without method {s:?}")))?
            .parse()?;
        if it.next().is_some() {
            return Err(ParseError::new(format!("text after the CSeq method {s:?}")));
        }
        Ok(CSeq { seq, method })
    }
}

macro_rules! common_accessors {
    ($t:ty) => {
        impl $t {
            /// The Call-ID.
            pub fn call_id(&self) -> Result<&str, ParseError> {
                self.headers
                    .get("Call-ID")
                    .ok_or_else(|| ParseError::new("missing Call-ID"))
            }
            /// The From header, parsed.
            pub fn from(&self) -> Result<NameAddr, ParseError> {
                self.headers
                    .get("From")
                    .ok_or_else(|| ParseError::new("missing From"))?
                    .parse()
            }
            /// The To header, parsed.
            pub fn to(&self) -> Result<NameAddr, ParseError> {
                self.headers
                    .get("To")
                    .ok_or_else(|| ParseError::new("missing To"))?
                    .parse()
            }
            /// The CSeq header, parsed.
            pub fn cseq(&self) -> Result<CSeq, ParseError> {
                self.headers
                    .get("CSeq")
                    .ok_or_else(|| ParseError::new("missing CSeq"))?
                    .parse()
            }
            /// The top Via, parsed.
            pub fn top_via(&self) -> Result<Via, ParseError> {
                self.headers
                    .get_all("Via")
                    .first()
                    .ok_or_else(|| ParseError::new("missing Via"))?
                    .parse()
            }
            /// The first Contact, parsed, if present.
            pub fn contact(&self) -> Option<NameAddr> {
                self.headers
                    .get_all("Contact")
                    .first()
                    .and_then(|c| c.parse().ok())
            }
            /// The body as text (lossy).
            pub fn body_str(&self) -> std::borrow::Cow<'_, str> {
                String::from_utf8_lossy(&self.body)
            }
        }
    };
}
common_accessors!(Request);
common_accessors!(Response);

impl Request {
    /// A request with no headers yet.
    pub fn new(method: Method, uri: Uri) -> Self {
        Request {
            method,
            uri,
            headers: Headers::default(),
            body: Vec::new(),
        }
    }

    /// Check the headers every request must carry (RFC 3261 §8.1.1), so handlers can rely on them.
    ///
    /// Also refused: a second From, To, Call-ID, CSeq or Max-Forwards (RFC 4475 §3.3.8), a Via
    /// that does not parse (any of them: responses travel back along them), and a
    /// Request-URI with headers, which are not allowed there (RFC 3261 §19.1.1, RFC 4475
    /// §3.1.2.11).
    pub fn validate(&self) -> Result<(), ParseError> {
        for name in ["From", "To", "Call-ID", "CSeq", "Max-Forwards"] {
            let lines = self
                .headers
                .0
                .iter()
                .filter(|(n, _)| canonical(n).eq_ignore_ascii_case(name))
                .count();
            if lines > 1 {
                return Err(ParseError::new(format!("more than one {name}")));
            }
        }
        if self.call_id()?.is_empty() {
            return Err(ParseError::new("empty Call-ID"));
        }
        self.from()?;
        self.to()?;
        let cseq = self.cseq()?;
        self.top_via()?;
        for via in self.headers.get_all("Via") {
            via.parse::<Via>()?;
        }
        if !self.uri.headers.is_empty() {
            return Err(ParseError::new("headers in the Request-URI"));
        }
        if cseq.method != self.method && self.method != Method::Ack && self.method != Method::Cancel
        {
            return Err(ParseError::new(
                "CSeq method does not match the request method",
            ));
        }
        Ok(())
    }

    /// A response to this request: Via, From, To, Call-ID and CSeq copied (RFC 3261 §8.2.6).
    ///
    /// `to_tag` is added to To when To has no tag yet and the status is not 100.
    pub fn response(&self, status: u16, reason: Option<&str>, to_tag: Option<&str>) -> Response {
        let mut headers = Headers::default();
        for (n, v) in &self.headers.0 {
            let c = canonical(n);
            if ["Via", "From", "Call-ID", "CSeq", "Record-Route"]
                .iter()
                .any(|h| h.eq_ignore_ascii_case(c))
                && !(c.eq_ignore_ascii_case("Record-Route") && status < 101)
            {
                headers.push(c.to_owned(), v.clone());
            } else if c.eq_ignore_ascii_case("To") {
                let mut to = v.clone();
                if let (Some(tag), Ok(parsed)) = (to_tag, v.parse::<NameAddr>()) {
                    if parsed.tag().is_none() && status != 100 {
                        to = format!("{to};tag={tag}");
                    }
                }
                headers.push("To", to);
            }
        }
        Response {
            status,
            reason: reason.unwrap_or_else(|| reason_phrase(status)).to_owned(),
            headers,
            body: Vec::new(),
        }
    }
}

impl Response {
    /// The class of the status: 1 to 6.
    pub fn class(&self) -> u16 {
        self.status / 100
    }
}

/// The standard reason phrase of a status code.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Trying",
        180 => "Ringing",
        181 => "Call Is Being Forwarded",
        183 => "Session Progress",
        200 => "OK",
        202 => "Accepted",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        415 => "Unsupported Media Type",
        420 => "Bad Extension",
        480 => "Temporarily Unavailable",
        481 => "Call/Transaction Does Not Exist",
        482 => "Loop Detected",
        483 => "Too Many Hops",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        489 => "Bad Event",
        491 => "Request Pending",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        504 => "Server Time-out",
        600 => "Busy Everywhere",
        603 => "Decline",
        604 => "Does Not Exist Anywhere",
        _ => "Unknown",
    }
}

impl Message {
    /// The headers of either kind.
    pub fn headers(&self) -> &Headers {
        match self {
            Message::Request(r) => &r.headers,
            Message::Response(r) => &r.headers,
        }
    }

    /// Parse one message from a datagram or a framed stream chunk.
    ///
    /// Header names are tokens, matched without regard to case, in long or compact form;
    /// folded lines are joined; at most one Content-Length, all digits, and no more than the
    /// bytes there are (what follows it in a datagram is ignored, RFC 3261 §18.3).
    pub fn parse(data: &[u8]) -> Result<Message, ParseError> {
        if data.len() > MAX_MESSAGE_SIZE {
            return Err(ParseError::new("message too large"));
        }
        let head_end = find(data, b"\r\n\r\n")
            .ok_or_else(|| ParseError::new("no end of headers (CRLF CRLF)"))?;
        let head = std::str::from_utf8(&data[..head_end])
            .map_err(|_| ParseError::new("headers are not UTF-8"))?;
        let rest = &data[head_end + 4..];
        let mut lines = head.split("\r\n");
        let start = lines.next().unwrap_or_default();
        let (lines, orphan) = unfold(lines);
        if orphan {
            return Err(ParseError::new("continuation line before any header"));
        }
        let mut headers = Headers::default();
        for line in &lines {
            let (name, value) = line
                .split_once(':')
                .ok_or_else(|| ParseError::new(format!("header line without colon: {line:?}")))?;
            // HCOLON = *( SP / HTAB ) ":" SWS
            let name = name.trim_end_matches([' ', '\t']);
            if name.is_empty() || !name.chars().all(is_token_char) {
                return Err(ParseError::new(format!("bad header name {name:?}")));
            }
            headers.push(name, value.trim());
        }
        let mut lengths = headers
            .0
            .iter()
            .filter(|(n, _)| canonical(n).eq_ignore_ascii_case("Content-Length"));
        let body = match (lengths.next(), lengths.next()) {
            // Two lengths frame nothing (RFC 4475 §3.3.9), even when they agree.
            (Some(_), Some(_)) => return Err(ParseError::new("more than one Content-Length")),
            (Some((_, cl)), None) => {
                let n = content_length(cl)
                    .ok_or_else(|| ParseError::new(format!("bad Content-Length {cl:?}")))?;
                if n > rest.len() {
                    return Err(ParseError::new("body shorter than Content-Length"));
                }
                rest[..n].to_vec()
            }
            (None, _) => rest.to_vec(),
        };
        let status_line = start
            .get(..8)
            .filter(|p| p.eq_ignore_ascii_case("SIP/2.0 "))
            .map(|_| &start[8..]);
        if let Some(status_line) = status_line {
            let (code, reason) = status_line.split_once(' ').unwrap_or((status_line, ""));
            let status: u16 = Some(code)
                .filter(|c| c.len() == 3 && c.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|c| c.parse().ok())
                .filter(|c| (100..700).contains(c))
                .ok_or_else(|| ParseError::new(format!("bad status code {code:?}")))?;
            Ok(Message::Response(Response {
                status,
                reason: reason.to_owned(),
                headers,
                body,
            }))
        } else {
            // Request-Line = Method SP Request-URI SP SIP-Version: one SP each, none after
            // (RFC 4475 §3.1.2.8–10).
            let mut parts = start.split(' ');
            let (Some(m), Some(u), Some(v), None) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                return Err(ParseError::new(format!("bad request line {start:?}")));
            };
            if !v.eq_ignore_ascii_case("SIP/2.0") {
                return Err(ParseError::new(format!("unsupported version {v:?}")));
            }
            Ok(Message::Request(Request {
                method: m.parse()?,
                uri: u.parse()?,
                headers,
                body,
            }))
        }
    }

    /// The answer RFC 3261 asks for to a *request* that did not parse (§8.2, §21.5.6, §21.4.9):
    /// 505 for another SIP version, 416 for a Request-URI scheme we do not know, 400 with a
    /// reason otherwise (a malformed Request-Line, RFC 4475 §3.1.2.7–10, included). `None`
    /// when there is nothing to address an answer with (no Via or CSeq), for an ACK (never
    /// answered), a response, or bytes that are not a request at all.
    pub fn reply_to_unparsable(data: &[u8], error: &str) -> Option<Response> {
        let end = find(data, b"\r\n\r\n").unwrap_or(data.len().min(MAX_MESSAGE_SIZE));
        let head = std::str::from_utf8(&data[..end]).ok()?;
        let mut lines = head.split("\r\n");
        let start: Vec<&str> = lines.next()?.split(' ').collect();
        let method: Method = start.first()?.parse().ok()?;
        if method == Method::Ack {
            return None;
        }
        let mut headers = Headers::default();
        for line in unfold(lines).0 {
            if let Some((name, value)) = line.split_once(':') {
                let name = name.trim_end_matches([' ', '\t']);
                if !name.is_empty() && name.chars().all(is_token_char) {
                    headers.push(name, value.trim());
                }
            }
        }
        if headers.get("Via").is_none() || headers.get("CSeq").is_none() {
            return None;
        }
        let (status, reason) = match start.as_slice() {
            [_, _, version] if is_other_sip_version(version) => {
                (505, "Version Not Supported".to_owned())
            }
            [_, uri, _] if has_unknown_scheme(uri) => (416, "Unsupported URI Scheme".to_owned()),
            _ => {
                // Say what was wrong, without echoing the request's bytes back.
                let why: String = error
                    .split(['"', ':'])
                    .next()
                    .unwrap_or_default()
                    .chars()
                    .filter(|c| !c.is_control())
                    .take(60)
                    .collect();
                (400, format!("Bad Request ({})", why.trim()))
            }
        };
        let request = Request {
            method,
            uri: Uri::sip(None, "invalid", None),
            headers,
            body: Vec::new(),
        };
        Some(request.response(status, Some(&reason), Some(&super::new_tag())))
    }

    /// Serialize, with Content-Length set from the body.
    pub fn to_bytes(&self) -> Vec<u8> {
        let (start, headers, body) = match self {
            Message::Request(r) => (
                format!("{} {} SIP/2.0\r\n", r.method, r.uri),
                &r.headers,
                &r.body,
            ),
            Message::Response(r) => (
                format!("SIP/2.0 {} {}\r\n", r.status, r.reason),
                &r.headers,
                &r.body,
            ),
        };
        let mut out = String::with_capacity(512 + body.len());
        out.push_str(&start);
        for (n, v) in &headers.0 {
            if canonical(n).eq_ignore_ascii_case("Content-Length") {
                continue;
            }
            out.push_str(n);
            out.push_str(": ");
            out.push_str(v);
            out.push_str("\r\n");
        }
        out.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(body);
        bytes
    }
}

impl From<Request> for Message {
    fn from(r: Request) -> Self {
        Message::Request(r)
    }
}

impl From<Response> for Message {
    fn from(r: Response) -> Self {
        Message::Response(r)
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The header lines with folded continuations (LWS = [*WSP CRLF] 1*WSP) joined to their
/// header line by one space; and whether a continuation came before any header line. Lines
/// are borrowed unless folding joined them (every message is parsed here: no copy per line).
fn unfold<'a>(lines: impl Iterator<Item = &'a str>) -> (Vec<Cow<'a, str>>, bool) {
    let (mut out, mut orphan) = (Vec::<Cow<'a, str>>::with_capacity(16), false);
    for line in lines {
        if line.starts_with([' ', '\t']) {
            match out.last_mut() {
                Some(last) => {
                    let more = line.trim();
                    if !more.is_empty() {
                        let last = last.to_mut();
                        last.truncate(last.trim_end().len());
                        last.push(' ');
                        last.push_str(more);
                    }
                }
                None => orphan = true,
            }
        } else {
            out.push(Cow::Borrowed(line));
        }
    }
    (out, orphan)
}

/// A Content-Length value: decimal digits only (no sign, RFC 4475 §3.1.2.3), that fit.
fn content_length(value: &str) -> Option<usize> {
    let v = value.trim();
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse().ok()
}

/// `SIP/x.y` other than 2.0 (RFC 3261 §21.5.6 answers those 505).
fn is_other_sip_version(v: &str) -> bool {
    let Some((major, minor)) = v
        .get(..4)
        .filter(|p| p.eq_ignore_ascii_case("SIP/"))
        .and_then(|_| v[4..].split_once('.'))
    else {
        return false;
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    digits(major) && digits(minor) && !(major == "2" && minor == "0")
}

/// Whether `uri` starts with a well-formed scheme (ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ))
/// that is not one we know; `<sip:...>` has no scheme at all and is a 400, not a 416.
fn has_unknown_scheme(uri: &str) -> bool {
    let Some((scheme, _)) = uri.split_once(':') else {
        return false;
    };
    scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
        && !["sip", "sips", "tel"]
            .iter()
            .any(|k| k.eq_ignore_ascii_case(scheme))
}

/// What the front of a stream buffer holds (RFC 3261 §18.3 framing, RFC 5626 §3.5.1 keep-alives).
#[derive(Debug, PartialEq, Eq)]
pub enum StreamFrame {
    /// Not enough bytes yet.
    Incomplete,
    /// A keep-alive: `n` bytes of CRLF to consume; a double CRLF ("ping") wants a single CRLF ("pong").
    KeepAlive {
        /// Bytes to consume.
        len: usize,
        /// Whether this was a ping that must be answered.
        ping: bool,
    },
    /// A whole message of this many bytes.
    Message(usize),
    /// The stream cannot be framed (no Content-Length, or oversized): close the connection.
    Invalid(String),
}

/// Find the next frame at the front of a stream buffer.
pub fn next_stream_frame(buf: &[u8]) -> StreamFrame {
    if buf.starts_with(b"\r\n\r\n") {
        return StreamFrame::KeepAlive { len: 4, ping: true };
    }
    if buf.starts_with(b"\r\n") {
        if buf.len() < 4 && b"\r\n\r\n".starts_with(buf) {
            return StreamFrame::Incomplete;
        }
        return StreamFrame::KeepAlive {
            len: 2,
            ping: false,
        };
    }
    let Some(head_end) = find(buf, b"\r\n\r\n") else {
        return if buf.len() > MAX_MESSAGE_SIZE {
            StreamFrame::Invalid("header section too large".into())
        } else {
            StreamFrame::Incomplete
        };
    };
    let head = String::from_utf8_lossy(&buf[..head_end]);
    let (lines, _) = unfold(head.split("\r\n").skip(1));
    let mut lengths = lines.iter().filter_map(|l| {
        let (n, v) = l.split_once(':')?;
        matches!(
            n.trim().to_ascii_lowercase().as_str(),
            "content-length" | "l"
        )
        .then_some(v)
    });
    // Two Content-Lengths frame nothing (RFC 4475 §3.3.9): the stream cannot be resynced.
    let cl = match (lengths.next(), lengths.next()) {
        (Some(v), None) => Some(content_length(v)),
        _ => None,
    };
    match cl {
        // A Content-Length near usize::MAX must not wrap the sum into a tiny frame.
        Some(Some(n)) => match (head_end + 4).checked_add(n) {
            Some(total) if total > MAX_MESSAGE_SIZE => {
                StreamFrame::Invalid("message too large".into())
            }
            Some(total) if buf.len() >= total => StreamFrame::Message(total),
            Some(_) => StreamFrame::Incomplete,
            None => StreamFrame::Invalid("Content-Length out of range".into()),
        },
        _ => StreamFrame::Invalid("stream message without a valid Content-Length".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_that_do_not_parse_get_the_answer_the_rfcs_ask_for() {
        let via = "Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKx\r\nFrom: <sip:a@b>;tag=1\r\n\
To: <sip:c@d>\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\n\r\n";
        let answer = |start: &str| {
            let data = format!("{start}\r\n{via}");
            let error = Message::parse(data.as_bytes()).expect_err("does not parse");
            Message::reply_to_unparsable(data.as_bytes(), &error.0).map(|r| r.status)
        };
        assert_eq!(
            answer("OPTIONS sip:c@d SIP/7.0"),
            Some(505),
            "RFC 3261 §21.5.6"
        );
        assert_eq!(
            answer("OPTIONS nope:c@d SIP/2.0"),
            Some(416),
            "an unknown Request-URI scheme (§21.4.9)"
        );
        assert_eq!(answer("OPTIONS sip:c@d:notaport SIP/2.0"), Some(400));
        let ack = format!("ACK sip:c@d SIP/7.0\r\n{via}");
        assert_eq!(
            Message::reply_to_unparsable(ack.as_bytes(), "x"),
            None,
            "an ACK is never answered"
        );
        assert_eq!(
            Message::reply_to_unparsable(b"OPTIONS sip:c@d SIP/7.0\r\n\r\n", "x"),
            None,
            "nothing to address an answer with"
        );
        let data = format!("OPTIONS sip:c@d SIP/7.0\r\n{via}");
        let reply = Message::reply_to_unparsable(data.as_bytes(), "x").expect("answered");
        assert_eq!(
            reply.headers.get("Call-ID"),
            Some("x"),
            "the answer matches the request"
        );
        assert!(reply.headers.get("To").is_some_and(|t| t.contains(";tag=")));
    }

    const INVITE: &str = "INVITE sip:bob@127.0.0.1 SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bKabc;rport\r\n\
v: SIP/2.0/TCP 10.0.0.1;branch=z9hG4bKdef\r\n\
f: \"Alice\" <sip:alice@127.0.0.1>;tag=1\r\n\
To: <sip:bob@127.0.0.1>\r\n\
Call-ID: c1\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:alice@127.0.0.1:5062>\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 4\r\n\r\nv=0\n";

    #[test]
    fn request_parses_and_serializes_back() {
        let m = Message::parse(INVITE.as_bytes()).expect("a valid INVITE parses");
        let Message::Request(r) = &m else {
            panic!("an INVITE is a request")
        };
        assert_eq!(r.method, Method::Invite, "method from the request line");
        r.validate().expect("all mandatory headers are present");
        assert_eq!(r.from().unwrap().tag(), Some("1"), "compact 'f' is From");
        assert_eq!(
            r.headers.get_all("Via").len(),
            2,
            "both Via lines count, compact or not"
        );
        assert_eq!(
            r.top_via().unwrap().branch(),
            Some("z9hG4bKabc"),
            "top Via is the first"
        );
        assert_eq!(r.body, b"v=0\n", "body is exactly Content-Length bytes");
        let again = Message::parse(&m.to_bytes()).unwrap();
        assert_eq!(again, m, "serialize then parse yields the same message");
    }

    #[test]
    fn response_copies_dialog_headers_and_adds_to_tag() {
        let Message::Request(r) = Message::parse(INVITE.as_bytes()).unwrap() else {
            unreachable!()
        };
        let resp = r.response(180, None, Some("xyz"));
        assert_eq!(
            resp.headers.get_all("Via").len(),
            2,
            "all Vias return on the response"
        );
        assert_eq!(
            resp.to().unwrap().tag(),
            Some("xyz"),
            "the UAS adds its tag"
        );
        assert_eq!(resp.reason, "Ringing", "default reason phrase");
        let trying = r.response(100, None, Some("xyz"));
        assert_eq!(
            trying.to().unwrap().tag(),
            None,
            "100 Trying carries no To tag"
        );
    }

    #[test]
    fn malformed_messages_are_errors() {
        let cases: &[&[u8]] = &[
            b"",
            b"garbage",
            b"INVITE sip:bob@h SIP/2.0\r\nVia x\r\n\r\n",
            b"INVITE sip:bob@h SIP/3.0\r\n\r\n",
            b"SIP/2.0 999 Nope\r\n\r\n",
            b"INVITE bob SIP/2.0\r\n\r\n",
            b"INVITE sip:bob@h SIP/2.0\r\nContent-Length: 50\r\n\r\nshort",
            b"\xff\xfe INVITE\r\n\r\n",
        ];
        for c in cases {
            assert!(
                Message::parse(c).is_err(),
                "{:?} must be rejected, not crash",
                String::from_utf8_lossy(c)
            );
        }
        let Message::Request(r) =
            Message::parse(b"OPTIONS sip:bob@h SIP/2.0\r\nCall-ID: x\r\n\r\n").unwrap()
        else {
            unreachable!()
        };
        assert!(
            r.validate().is_err(),
            "a request without From/To/CSeq/Via fails validation"
        );
    }

    #[test]
    fn stream_framing_handles_keepalives_and_partial_messages() {
        assert_eq!(
            next_stream_frame(b"\r\n\r\nINV"),
            StreamFrame::KeepAlive { len: 4, ping: true },
            "a double CRLF is a ping"
        );
        assert_eq!(
            next_stream_frame(b"\r\n"),
            StreamFrame::Incomplete,
            "could still become a ping"
        );
        let full = INVITE.as_bytes();
        assert_eq!(
            next_stream_frame(&full[..full.len() - 2]),
            StreamFrame::Incomplete,
            "wait for the body"
        );
        assert_eq!(
            next_stream_frame(full),
            StreamFrame::Message(full.len()),
            "whole message framed"
        );
        assert!(
            matches!(
                next_stream_frame(b"OPTIONS sip:a@b SIP/2.0\r\n\r\n"),
                StreamFrame::Invalid(_)
            ),
            "on a stream Content-Length is mandatory"
        );
        let huge = format!(
            "OPTIONS sip:a@b SIP/2.0\r\nContent-Length: {}\r\n\r\n",
            usize::MAX - 10
        );
        assert!(
            matches!(next_stream_frame(huge.as_bytes()), StreamFrame::Invalid(_)),
            "a Content-Length that would wrap the frame size closes the stream instead of spinning"
        );
    }

    #[test]
    fn pop_first_removes_only_the_top_value() {
        let mut h = Headers::default();
        h.push("Route", "<sip:p1;lr>, <sip:p2;lr>");
        assert_eq!(
            h.pop_first("Route").as_deref(),
            Some("<sip:p1;lr>"),
            "top route popped"
        );
        assert_eq!(h.get_all("Route"), vec!["<sip:p2;lr>"], "the rest stays");
    }
}
