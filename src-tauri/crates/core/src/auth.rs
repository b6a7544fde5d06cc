//! Credentials: ephemeral tokens and SIP digest authentication.
//!
//! # Tokens
//!
//! A user access token carries one grant per [`Scope`] it opens (SIP sign-in, TURN relays,
//! the HTTP API). Each grant is the ephemeral credential of Kamailio `auth_ephemeral`
//! (`username_format=1`) and of the TURN REST API, under that scope's own key:
//!
//! ```text
//! key(SCOPE) = hex(HMAC-SHA1(secret, "hookflash-scope:" SCOPE))   see scope_key
//! username   = "EXPIRY:USER"                                       EXPIRY in unix seconds
//! password   = base64(HMAC-SHA1(key(SCOPE), username))             standard alphabet, padded
//! token      = "EXPIRY:USER:sip=PASSWORD,turn=PASSWORD,api=PASSWORD"   one string per user
//! ```
//!
//! The client never needs a key: it answers SIP digest challenges with
//! [`Token::sip_username`] and the `sip` password, gives a TURN server the same username
//! and the `turn` password, and the HTTP API the token narrowed to `api` ([`Token::only`]).
//! Each server recomputes its password from the username with [`ephemeral_password`] and
//! its key, and checks the expiry.
//!
//! ```
//! use hookflash_core::auth::{scope_key, AuthError, Scope, Token};
//! use std::time::Duration;
//!
//! let t = Token::issue_scoped("s3cret", "alice", &[Scope::Sip], Duration::from_secs(3600), 1_700_000_000);
//! let parsed = Token::parse(&t.to_string()).unwrap();
//! assert_eq!(parsed.sip_username(), "1700003600:alice");
//! assert!(parsed.verify("s3cret", Scope::Sip, 1_700_000_000).is_ok());
//! // Kamailio, holding only the SIP key, checks the same grant.
//! let sip_key = scope_key("s3cret", Scope::Sip);
//! assert!(parsed.verify_key(&sip_key, Scope::Sip, 1_700_000_000).is_ok());
//! assert_eq!(parsed.verify("s3cret", Scope::Sip, 1_700_003_601), Err(AuthError::Expired));
//! assert_eq!(parsed.verify("s3cret", Scope::Api, 1_700_000_000), Err(AuthError::OutOfScope(Scope::Api)));
//! ```
//!
//! # Digest
//!
//! [`Challenge`] parses and prints `WWW-Authenticate` / `Proxy-Authenticate` values,
//! [`authorization`] answers one (RFC 2617 / RFC 7616 with MD5, `qop=auth` when offered), and
//! [`DigestResponse`] parses an `Authorization` / `Proxy-Authorization` value and verifies it
//! against a password or a stored HA1 ([`ha1`]) in constant time.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use md5::{Digest as _, Md5};
use sha1::Sha1;

/// Why a credential or an authentication header was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// The token is not of the form `EXPIRY:USER:SCOPE=PASSWORD[,…]` (the detail says why).
    #[error("malformed token: {0}")]
    Malformed(String),
    /// The token's expiry lies in the past.
    #[error("token expired")]
    Expired,
    /// The signature does not match the secret (tampered token, or another secret).
    #[error("bad token signature")]
    BadSignature,
    /// The token does not open this service (it was issued for other scopes).
    #[error("this token does not open {0}")]
    OutOfScope(Scope),
    /// A `WWW-Authenticate` / `Authorization` header value could not be parsed.
    #[error("malformed authentication header: {0}")]
    MalformedHeader(String),
}

impl AuthError {
    /// A stable code the UI and logs can match on.
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::Malformed(_) => "auth.token_malformed",
            AuthError::Expired => "auth.token_expired",
            AuthError::BadSignature => "auth.bad_signature",
            AuthError::OutOfScope(_) => "auth.out_of_scope",
            AuthError::MalformedHeader(_) => "auth.header_malformed",
        }
    }
}

/// What a token opens. Each scope is checked by its own service with its own key
/// ([`scope_key`]), so a service that holds one key (Kamailio holds the SIP key, coturn the
/// TURN key) can neither mint nor check grants for the others, and a grant shown to one
/// service (a TURN credential is seen by every relay it is sent to) opens nothing else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Scope {
    /// Sign in over SIP: register, call, transfer, subscribe to message waiting.
    Sip,
    /// Relay media through TURN (the TURN REST scheme, `use-auth-secret`).
    Turn,
    /// The switchboard's HTTP API: the user's voicemail, greeting and forwarding rules.
    Api,
}

impl Scope {
    /// Every scope, in the order a token prints them.
    pub const ALL: [Scope; 3] = [Scope::Sip, Scope::Turn, Scope::Api];

    /// The scope's name in a token and on the command line: `sip`, `turn`, `api`.
    pub fn name(self) -> &'static str {
        match self {
            Scope::Sip => "sip",
            Scope::Turn => "turn",
            Scope::Api => "api",
        }
    }

    /// The scope of a name ([`Scope::name`]), case-insensitive.
    pub fn from_name(name: &str) -> Option<Scope> {
        Scope::ALL
            .into_iter()
            .find(|s| s.name().eq_ignore_ascii_case(name))
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The key the service of `scope` checks grants with: lower-case hex of
/// `HMAC-SHA1(secret, "hookflash-scope:" + name)`. The switchboard holds the secret and
/// derives every key; a deployment hands each other server only its own key
/// (`hookflash-switchboard key sip` for Kamailio's `auth_ephemeral`, `key turn` for coturn's
/// `static-auth-secret`).
pub fn scope_key(secret: &str, scope: Scope) -> String {
    hex::encode(hmac_sha1(
        secret.as_bytes(),
        format!("hookflash-scope:{}", scope.name()).as_bytes(),
    ))
}

/// An ephemeral user access token: `EXPIRY:USER:SCOPE=PASSWORD[,SCOPE=PASSWORD…]`.
///
/// Each grant's password is `base64(HMAC-SHA1(scope_key(secret, SCOPE), "EXPIRY:USER"))`:
/// the `auth_ephemeral` / TURN REST password of `EXPIRY:USER` under that scope's key. A
/// client hands each service only that service's grant ([`Token::password`],
/// [`Token::only`]). `Debug` hides the passwords.
#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    /// When the token stops being valid, unix seconds.
    pub expiry: u64,
    /// The user name (never contains `:`).
    pub user: String,
    /// The grants, one per scope, sorted by scope.
    grants: Vec<(Scope, String)>,
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("expiry", &self.expiry)
            .field("user", &crate::privacy::redact(&self.user))
            .field("scopes", &self.scopes().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// Whether `user` can be the user part of a token and a SIP AOR: non-empty, at most 64
/// characters of letters, digits and `-_.!~*'()+&=$,;?/` minus `:` — no `:`, `@`, spaces or
/// control characters.
pub fn is_valid_user(user: &str) -> bool {
    !user.is_empty()
        && user.len() <= 64
        && user
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.!~*'()+&=$,;?/".contains(&b))
}

/// The canonical form of a user name: ASCII lower case (user names are ASCII, see
/// [`is_valid_user`]). SIP compares URI user parts with case (RFC 3261 §19.1.4), but "Alice"
/// and "alice" must not be two people on one switchboard, nor two mailboxes whose greeting
/// files collide on a case-insensitive file system: every registrar, routing, mailbox and
/// rules key is the folded name.
pub fn fold_user(user: &str) -> String {
    user.to_ascii_lowercase()
}

impl Token {
    /// Issue a token for `user` that opens every scope, valid for `ttl` from `now_unix`.
    ///
    /// `user` should satisfy [`is_valid_user`]; a `:` in it would make the token unparseable.
    pub fn issue(secret: &str, user: &str, ttl: Duration, now_unix: u64) -> Token {
        Token::issue_scoped(secret, user, &Scope::ALL, ttl, now_unix)
    }

    /// Issue a token for `user` that opens only `scopes`, valid for `ttl` from `now_unix`.
    /// `scopes` must not be empty: a token that opens nothing does not parse.
    pub fn issue_scoped(
        secret: &str,
        user: &str,
        scopes: &[Scope],
        ttl: Duration,
        now_unix: u64,
    ) -> Token {
        let expiry = now_unix.saturating_add(ttl.as_secs());
        let username = format!("{expiry}:{user}");
        let mut grants: Vec<(Scope, String)> = scopes
            .iter()
            .map(|&s| (s, ephemeral_password(&scope_key(secret, s), &username)))
            .collect();
        grants.sort();
        grants.dedup_by_key(|g| g.0);
        Token {
            expiry,
            user: user.to_owned(),
            grants,
        }
    }

    /// Parse `EXPIRY:USER:SCOPE=PASSWORD[,…]`. Checks the form only; see [`Token::verify`].
    /// Grants for scopes this build does not know are skipped (a newer switchboard may issue
    /// them); a token must carry at least one it knows.
    pub fn parse(s: &str) -> Result<Token, AuthError> {
        let s = s.trim();
        let mut parts = s.splitn(3, ':');
        let (Some(expiry), Some(user), Some(grants)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(AuthError::Malformed(
                "expected EXPIRY:USER:SCOPE=PASSWORD".into(),
            ));
        };
        if expiry.is_empty() || !expiry.bytes().all(|b| b.is_ascii_digit()) {
            return Err(AuthError::Malformed("EXPIRY is not unix seconds".into()));
        }
        let expiry: u64 = expiry
            .parse()
            .map_err(|_| AuthError::Malformed("EXPIRY out of range".into()))?;
        if user.is_empty() {
            return Err(AuthError::Malformed("empty USER".into()));
        }
        let mut parsed = Vec::new();
        for grant in grants.split(',') {
            let Some((name, password)) = grant.split_once('=') else {
                return Err(AuthError::Malformed(
                    "a grant is not SCOPE=PASSWORD (tokens without scopes are no longer \
                     accepted: ask for a new one)"
                        .into(),
                ));
            };
            if password.is_empty()
                || base64::engine::general_purpose::STANDARD
                    .decode(password)
                    .is_err()
            {
                return Err(AuthError::Malformed("PASSWORD is not base64".into()));
            }
            if let Some(scope) = Scope::from_name(name) {
                if parsed.iter().any(|(s, _)| *s == scope) {
                    return Err(AuthError::Malformed(format!("scope {scope} given twice")));
                }
                parsed.push((scope, password.to_owned()));
            }
        }
        if parsed.is_empty() {
            return Err(AuthError::Malformed(
                "the token opens nothing this app knows".into(),
            ));
        }
        parsed.sort();
        Ok(Token {
            expiry,
            user: user.to_owned(),
            grants: parsed,
        })
    }

    /// `EXPIRY:USER`: the digest username (Kamailio `auth_ephemeral`, `username_format=1`)
    /// and the TURN REST username, whatever the scope.
    pub fn sip_username(&self) -> String {
        format!("{}:{}", self.expiry, self.user)
    }

    /// The scopes this token opens.
    pub fn scopes(&self) -> impl Iterator<Item = Scope> + '_ {
        self.grants.iter().map(|(s, _)| *s)
    }

    /// Whether this token opens `scope`.
    pub fn opens(&self, scope: Scope) -> bool {
        self.password(scope).is_some()
    }

    /// The password of the `scope` grant (the SIP digest password for [`Scope::Sip`], the
    /// TURN password for [`Scope::Turn`]), if the token opens it.
    pub fn password(&self, scope: Scope) -> Option<&str> {
        self.grants
            .iter()
            .find(|(s, _)| *s == scope)
            .map(|(_, p)| p.as_str())
    }

    /// This token narrowed to `scope` alone: what to show the service of that scope, so it
    /// learns nothing that opens another. `None` if the token does not open `scope`.
    pub fn only(&self, scope: Scope) -> Option<Token> {
        let password = self.password(scope)?;
        Some(Token {
            expiry: self.expiry,
            user: self.user.clone(),
            grants: vec![(scope, password.to_owned())],
        })
    }

    /// Check the `scope` grant with the switchboard's `secret`: see [`Token::verify_key`].
    pub fn verify(&self, secret: &str, scope: Scope, now_unix: u64) -> Result<(), AuthError> {
        self.verify_key(&scope_key(secret, scope), scope, now_unix)
    }

    /// Check the `scope` grant against that scope's key ([`scope_key`]), then the expiry
    /// against `now_unix`.
    pub fn verify_key(&self, key: &str, scope: Scope, now_unix: u64) -> Result<(), AuthError> {
        let password = self.password(scope).ok_or(AuthError::OutOfScope(scope))?;
        let expected = ephemeral_password(key, &self.sip_username());
        if !ct_eq(expected.as_bytes(), password.as_bytes()) {
            return Err(AuthError::BadSignature);
        }
        if now_unix > self.expiry {
            return Err(AuthError::Expired);
        }
        Ok(())
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:", self.expiry, self.user)?;
        for (i, (scope, password)) in self.grants.iter().enumerate() {
            let sep = if i == 0 { "" } else { "," };
            write!(f, "{sep}{scope}={password}")?;
        }
        Ok(())
    }
}

impl FromStr for Token {
    type Err = AuthError;
    fn from_str(s: &str) -> Result<Self, AuthError> {
        Token::parse(s)
    }
}

/// `base64(HMAC-SHA1(secret, username))`: the password of an ephemeral username.
pub fn ephemeral_password(secret: &str, username: &str) -> String {
    base64::engine::general_purpose::STANDARD
        .encode(hmac_sha1(secret.as_bytes(), username.as_bytes()))
}

/// HMAC-SHA1 of `data` under `key`.
pub fn hmac_sha1(key: &[u8], data: &[u8]) -> [u8; 20] {
    let mut mac =
        <Hmac<Sha1> as Mac>::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// The current time in unix seconds (0 if the clock is before 1970).
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Compare two byte strings in time that depends only on their lengths.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn md5_hex(s: &str) -> String {
    hex::encode(Md5::digest(s.as_bytes()))
}

/// `HA1 = MD5(username:realm:password)`, lower-case hex: what a registrar stores.
pub fn ha1(username: &str, realm: &str, password: &str) -> String {
    md5_hex(&format!("{username}:{realm}:{password}"))
}

/// A digest challenge (`WWW-Authenticate` or `Proxy-Authenticate`, RFC 7616 §3.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// The protection space, for SIP usually the domain.
    pub realm: String,
    /// The server nonce.
    pub nonce: String,
    /// Opaque data to echo back.
    pub opaque: Option<String>,
    /// `MD5` (the default when absent) or `MD5-sess`.
    pub algorithm: Option<String>,
    /// The qop options offered, as written (`auth`, `auth,auth-int`).
    pub qop: Option<String>,
    /// The previous nonce was valid but too old: retry with the new one, same credentials.
    pub stale: bool,
}

impl FromStr for Challenge {
    type Err = AuthError;
    fn from_str(s: &str) -> Result<Self, AuthError> {
        let params = parse_digest_params(s)?;
        let get = |n: &str| {
            params
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(n))
                .map(|(_, v)| v.clone())
        };
        Ok(Challenge {
            realm: get("realm").ok_or_else(|| AuthError::MalformedHeader("no realm".into()))?,
            nonce: get("nonce").ok_or_else(|| AuthError::MalformedHeader("no nonce".into()))?,
            opaque: get("opaque"),
            algorithm: get("algorithm"),
            qop: get("qop"),
            stale: get("stale").is_some_and(|v| v.eq_ignore_ascii_case("true")),
        })
    }
}

impl fmt::Display for Challenge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Digest realm=\"{}\", nonce=\"{}\"",
            quote_escape(&self.realm),
            quote_escape(&self.nonce)
        )?;
        if let Some(o) = &self.opaque {
            write!(f, ", opaque=\"{}\"", quote_escape(o))?;
        }
        if let Some(a) = &self.algorithm {
            f.write_str(&algorithm_param(a))?;
        }
        if let Some(q) = &self.qop {
            write!(f, ", qop=\"{}\"", quote_escape(q))?;
        }
        if self.stale {
            f.write_str(", stale=true")?;
        }
        Ok(())
    }
}

/// `, algorithm=MD5`: a token as RFC 7616 writes it; anything else quoted, so that it reads
/// back as it was and cannot break the parameter list.
fn algorithm_param(a: &str) -> String {
    if !a.is_empty()
        && a.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b))
    {
        format!(", algorithm={a}")
    } else {
        format!(", algorithm=\"{}\"", quote_escape(a))
    }
}

fn offers_qop_auth(qop: Option<&str>) -> bool {
    qop.is_some_and(|q| q.split(',').any(|o| o.trim().eq_ignore_ascii_case("auth")))
}

fn is_sess(algorithm: Option<&str>) -> bool {
    algorithm.is_some_and(|a| a.eq_ignore_ascii_case("MD5-sess"))
}

/// The full `Authorization` / `Proxy-Authorization` value answering `ch` (MD5 or MD5-sess;
/// `qop=auth` with `nc` and `cnonce` when the challenge offers it).
pub fn authorization(
    ch: &Challenge,
    method: &str,
    uri: &str,
    username: &str,
    password: &str,
    nc: u32,
    cnonce: &str,
) -> String {
    let mut h1 = ha1(username, &ch.realm, password);
    if is_sess(ch.algorithm.as_deref()) {
        h1 = md5_hex(&format!("{h1}:{}:{cnonce}", ch.nonce));
    }
    let h2 = md5_hex(&format!("{method}:{uri}"));
    let qop = offers_qop_auth(ch.qop.as_deref());
    let nc = format!("{nc:08x}");
    let response = if qop {
        md5_hex(&format!("{h1}:{}:{nc}:{cnonce}:auth:{h2}", ch.nonce))
    } else {
        md5_hex(&format!("{h1}:{}:{h2}", ch.nonce))
    };
    let mut out = format!(
        "Digest username=\"{}\", realm=\"{}\", nonce=\"{}\", uri=\"{}\", response=\"{response}\"",
        quote_escape(username),
        quote_escape(&ch.realm),
        quote_escape(&ch.nonce),
        quote_escape(uri),
    );
    if let Some(a) = &ch.algorithm {
        out.push_str(&algorithm_param(a));
    }
    if qop {
        out.push_str(&format!(
            ", cnonce=\"{}\", qop=auth, nc={nc}",
            quote_escape(cnonce)
        ));
    } else if is_sess(ch.algorithm.as_deref()) {
        // MD5-sess hashes the cnonce into HA1 even without qop: the server needs it.
        out.push_str(&format!(", cnonce=\"{}\"", quote_escape(cnonce)));
    }
    if let Some(o) = &ch.opaque {
        out.push_str(&format!(", opaque=\"{}\"", quote_escape(o)));
    }
    out
}

/// A parsed `Authorization` / `Proxy-Authorization` digest answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestResponse {
    /// The username (for tokens: `EXPIRY:USER`).
    pub username: String,
    /// The realm answered.
    pub realm: String,
    /// The server nonce answered.
    pub nonce: String,
    /// The digest-uri.
    pub uri: String,
    /// The 32 hex digit response.
    pub response: String,
    /// `auth` when the client chose a qop.
    pub qop: Option<String>,
    /// The nonce count, 8 hex digits.
    pub nc: Option<String>,
    /// The client nonce.
    pub cnonce: Option<String>,
    /// The opaque value echoed.
    pub opaque: Option<String>,
    /// The algorithm, when written.
    pub algorithm: Option<String>,
}

impl FromStr for DigestResponse {
    type Err = AuthError;
    fn from_str(s: &str) -> Result<Self, AuthError> {
        let params = parse_digest_params(s)?;
        let get = |n: &str| {
            params
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(n))
                .map(|(_, v)| v.clone())
        };
        let need = |n: &str| get(n).ok_or_else(|| AuthError::MalformedHeader(format!("no {n}")));
        Ok(DigestResponse {
            username: need("username")?,
            realm: need("realm")?,
            nonce: need("nonce")?,
            uri: need("uri")?,
            response: need("response")?,
            qop: get("qop"),
            nc: get("nc"),
            cnonce: get("cnonce"),
            opaque: get("opaque"),
            algorithm: get("algorithm"),
        })
    }
}

impl DigestResponse {
    /// Whether the response is right for `method` and the clear-text `password`.
    pub fn verify(&self, method: &str, password: &str) -> bool {
        self.verify_ha1(method, &ha1(&self.username, &self.realm, password))
    }

    /// Whether the response is right for `method` and a stored `HA1` (hex, see [`ha1`]).
    ///
    /// Supports MD5 and MD5-sess, with no qop or `qop=auth`; anything else is refused.
    pub fn verify_ha1(&self, method: &str, ha1_hex: &str) -> bool {
        let algorithm = self.algorithm.as_deref();
        if !algorithm.is_none_or(|a| a.eq_ignore_ascii_case("MD5") || is_sess(Some(a))) {
            return false;
        }
        let mut h1 = ha1_hex.to_ascii_lowercase();
        if is_sess(algorithm) {
            let Some(cnonce) = &self.cnonce else {
                return false;
            };
            h1 = md5_hex(&format!("{h1}:{}:{cnonce}", self.nonce));
        }
        let h2 = md5_hex(&format!("{method}:{}", self.uri));
        let expected = match self.qop.as_deref() {
            None => md5_hex(&format!("{h1}:{}:{h2}", self.nonce)),
            Some(q) if q.eq_ignore_ascii_case("auth") => {
                let (Some(nc), Some(cnonce)) = (&self.nc, &self.cnonce) else {
                    return false;
                };
                md5_hex(&format!("{h1}:{}:{nc}:{cnonce}:auth:{h2}", self.nonce))
            }
            Some(_) => return false,
        };
        ct_eq(
            expected.as_bytes(),
            self.response.to_ascii_lowercase().as_bytes(),
        )
    }
}

fn quote_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// Parse `Digest name=value, name="quoted, value", ...` into unquoted pairs.
fn parse_digest_params(s: &str) -> Result<Vec<(String, String)>, AuthError> {
    let s = s.trim();
    let (scheme, rest) = s.split_once(char::is_whitespace).unwrap_or((s, ""));
    if !scheme.eq_ignore_ascii_case("Digest") {
        return Err(AuthError::MalformedHeader(format!(
            "scheme is not Digest: {:?}",
            scheme.chars().take(16).collect::<String>()
        )));
    }
    let mut out = Vec::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace() || *c == ',') {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        let mut name = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c.is_whitespace() || c == ',' {
                break;
            }
            name.push(c);
            chars.next();
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.next() != Some('=') || name.is_empty() {
            return Err(AuthError::MalformedHeader(
                "parameter without a value".into(),
            ));
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            let mut closed = false;
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        if let Some(n) = chars.next() {
                            value.push(n);
                        }
                    }
                    '"' => {
                        closed = true;
                        break;
                    }
                    c => value.push(c),
                }
            }
            if !closed {
                return Err(AuthError::MalformedHeader(
                    "unterminated quoted string".into(),
                ));
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' || c.is_whitespace() {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        out.push((name, value));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ephemeral_password_matches_a_known_answer() {
        // python3: base64.b64encode(hmac.new(b'hookflash-secret', b'1700000000:alice',
        //          hashlib.sha1).digest())
        assert_eq!(
            ephemeral_password("hookflash-secret", "1700000000:alice"),
            "7tH5Lwf2vw9NdfFBukfjb3RPvmo=",
            "must equal Kamailio auth_ephemeral / TURN REST: base64(HMAC-SHA1(secret, username))"
        );
    }

    #[test]
    fn rfc2617_digest_example_verifies() {
        let ch: Challenge = "Digest realm=\"testrealm@host.com\", qop=\"auth,auth-int\", \
             nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\", \
             opaque=\"5ccc069c403ebaf9f0171e9517f40e41\""
            .parse()
            .expect("the RFC 2617 §3.5 challenge parses");
        assert_eq!(
            ch.qop.as_deref(),
            Some("auth,auth-int"),
            "qop list kept as written"
        );
        let value = authorization(
            &ch,
            "GET",
            "/dir/index.html",
            "Mufasa",
            "Circle Of Life",
            1,
            "0a4f113b",
        );
        let resp: DigestResponse = value.parse().expect("our own Authorization parses");
        assert_eq!(
            resp.response, "6629fae49393a05397450978507c4ef1",
            "RFC 2617 §3.5 known answer"
        );
        assert_eq!(resp.nc.as_deref(), Some("00000001"), "nc is 8 hex digits");
        assert_eq!(
            resp.opaque.as_deref(),
            ch.opaque.as_deref(),
            "opaque is echoed"
        );
        assert!(
            resp.verify("GET", "Circle Of Life"),
            "the right password verifies"
        );
        assert!(
            resp.verify_ha1(
                "GET",
                &ha1("Mufasa", "testrealm@host.com", "Circle Of Life")
            ),
            "a stored HA1 verifies the same"
        );
        assert!(
            !resp.verify("GET", "circle of life"),
            "a wrong password fails"
        );
        assert!(
            !resp.verify("POST", "Circle Of Life"),
            "the method is covered"
        );
    }

    #[test]
    fn digest_without_qop_round_trips() {
        let ch = Challenge {
            realm: "hookflash.local".into(),
            nonce: "abc".into(),
            opaque: None,
            algorithm: Some("MD5".into()),
            qop: None,
            stale: true,
        };
        let again: Challenge = ch.to_string().parse().unwrap();
        assert_eq!(again, ch, "Display then FromStr is identity");
        let v = authorization(
            &ch,
            "REGISTER",
            "sip:hookflash.local",
            "1:bob",
            "pw",
            1,
            "x",
        );
        assert!(!v.contains("qop"), "no qop offered, none answered");
        let r: DigestResponse = v.parse().unwrap();
        assert_eq!(r.username, "1:bob", "token usernames keep their colon");
        assert!(r.verify("REGISTER", "pw"), "RFC 2069 style answer verifies");
    }

    #[test]
    fn token_issued_then_verified() {
        let t = Token::issue("k", "alice", Duration::from_secs(60), 1000);
        assert_eq!(t.expiry, 1060, "expiry = now + ttl");
        let p = Token::parse(&t.to_string()).expect("a printed token parses");
        assert_eq!(p, t, "print then parse is identity");
        assert_eq!(
            p.scopes().collect::<Vec<_>>(),
            Scope::ALL,
            "an unscoped issue opens every scope"
        );
        assert_eq!(
            p.sip_username(),
            "1060:alice",
            "auth_ephemeral username form"
        );
        assert_eq!(
            p.password(Scope::Sip),
            Some(ephemeral_password(&scope_key("k", Scope::Sip), "1060:alice").as_str()),
            "the SIP grant is auth_ephemeral's password under the SIP key"
        );
        for scope in Scope::ALL {
            assert_eq!(
                p.verify("k", scope, 1060),
                Ok(()),
                "{scope}: valid up to and including its expiry"
            );
        }
        for scope in Scope::ALL {
            let password = t.password(scope).unwrap();
            assert!(
                !format!("{t:?}").contains(password),
                "Debug hides the {scope} password"
            );
        }
    }

    #[test]
    fn each_scope_has_its_own_key_and_a_grant_opens_only_its_scope() {
        let keys: std::collections::HashSet<String> =
            Scope::ALL.iter().map(|&s| scope_key("k", s)).collect();
        assert_eq!(keys.len(), 3, "no two services share a key");
        assert!(!keys.contains("k"), "no service key is the secret itself");
        let turn = Token::issue_scoped("k", "alice", &[Scope::Turn], Duration::from_secs(60), 1000);
        assert_eq!(
            turn.verify("k", Scope::Sip, 1000),
            Err(AuthError::OutOfScope(Scope::Sip)),
            "a TURN-only token does not sign in over SIP"
        );
        assert_eq!(
            AuthError::OutOfScope(Scope::Sip).code(),
            "auth.out_of_scope"
        );
        // A TURN grant relabelled as a SIP grant: the SIP key does not sign it.
        let relabelled =
            Token::parse(&turn.to_string().replace(":turn=", ":sip=")).expect("still well formed");
        assert_eq!(
            relabelled.verify("k", Scope::Sip, 1000),
            Err(AuthError::BadSignature),
            "a grant for one scope is no password for another"
        );
        let all = Token::issue("k", "alice", Duration::from_secs(60), 1000);
        let api = all.only(Scope::Api).expect("the full token opens the API");
        assert_eq!(
            api.scopes().collect::<Vec<_>>(),
            [Scope::Api],
            "narrowed to one grant"
        );
        assert!(
            !api.to_string().contains(all.password(Scope::Sip).unwrap()),
            "what the API is shown holds no SIP password"
        );
        assert_eq!(
            api.verify("k", Scope::Api, 1000),
            Ok(()),
            "and still opens the API"
        );
        assert!(turn.only(Scope::Api).is_none(), "nothing to narrow to");
    }

    #[test]
    fn expired_token_is_refused() {
        let t = Token::issue("k", "alice", Duration::from_secs(60), 1000);
        let err = t.verify("k", Scope::Sip, 1061).unwrap_err();
        assert_eq!(err, AuthError::Expired, "one second past expiry");
        assert_eq!(err.code(), "auth.token_expired", "stable code for the UI");
    }

    #[test]
    fn tampered_token_is_refused() {
        let t = Token::issue("k", "alice", Duration::from_secs(60), 1000);
        let mut forged = t.clone();
        forged.user = "mallory".into();
        assert_eq!(
            forged.verify("k", Scope::Sip, 1000),
            Err(AuthError::BadSignature),
            "user changed"
        );
        let mut later = t.clone();
        later.expiry += 3600;
        assert_eq!(
            later.verify("k", Scope::Sip, 1000),
            Err(AuthError::BadSignature),
            "expiry extended"
        );
        assert_eq!(
            t.verify("other", Scope::Sip, 1000),
            Err(AuthError::BadSignature),
            "other secret"
        );
        assert_eq!(AuthError::BadSignature.code(), "auth.bad_signature");
    }

    #[test]
    fn malformed_tokens_are_errors() {
        for bad in [
            "",
            "abc",
            "1:alice",
            "x:alice:sip=c2ln",
            "1::sip=c2ln",
            "1:alice:",
            "1:alice:sip=!!",
            "1:alice:sip=",
            "1:alice:c2ln",
            "1:alice:sip=c2ln,sip=c2ln",
            "1:alice:chat=c2ln",
        ] {
            let e = Token::parse(bad).expect_err(bad);
            assert_eq!(e.code(), "auth.token_malformed", "{bad:?} is malformed");
        }
        let t = Token::parse("5:bob:api=ab+/cw==").expect("base64 passwords may contain + / =");
        assert_eq!(t.user, "bob");
        let t = Token::parse("5:bob:chat=c2ln,sip=c2ln").expect("unknown scopes are skipped");
        assert_eq!(
            t.scopes().collect::<Vec<_>>(),
            [Scope::Sip],
            "only the known grant"
        );
    }

    #[test]
    fn malformed_digest_headers_are_errors() {
        for bad in [
            "Basic abc",
            "Digest realm",
            "Digest realm=\"x",
            "Digest nonce=\"n\"",
        ] {
            assert!(bad.parse::<Challenge>().is_err(), "{bad:?} is no challenge");
            assert!(
                bad.parse::<DigestResponse>().is_err(),
                "{bad:?} is no answer"
            );
        }
    }
}
