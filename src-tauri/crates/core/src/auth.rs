//! Credentials: ephemeral tokens and SIP digest authentication.
//!
//! # Tokens
//!
//! A user access token is the ephemeral credential of Kamailio `auth_ephemeral`
//! (`username_format=1`) and of the TURN REST API:
//!
//! ```text
//! username = "EXPIRY:USER"                      EXPIRY in unix seconds
//! password = base64(HMAC-SHA1(secret, username)) standard alphabet, padded
//! token    = "EXPIRY:USER:PASSWORD"             what a user is handed, one string
//! ```
//!
//! The client never needs the secret: it answers digest challenges with
//! [`Token::sip_username`] and [`Token::sip_password`]. The server recomputes the password
//! from the username with [`ephemeral_password`] and checks the expiry.
//!
//! ```
//! use hookflash_core::auth::{Token, AuthError};
//! use std::time::Duration;
//!
//! let t = Token::issue("s3cret", "alice", Duration::from_secs(3600), 1_700_000_000);
//! let parsed = Token::parse(&t.to_string()).unwrap();
//! assert_eq!(parsed.sip_username(), "1700003600:alice");
//! assert!(parsed.verify("s3cret", 1_700_000_000).is_ok());
//! assert_eq!(parsed.verify("s3cret", 1_700_003_601), Err(AuthError::Expired));
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
    /// The token is not of the form `EXPIRY:USER:SIGNATURE` (the detail says why).
    #[error("malformed token: {0}")]
    Malformed(String),
    /// The token's expiry lies in the past.
    #[error("token expired")]
    Expired,
    /// The signature does not match the secret (tampered token, or another secret).
    #[error("bad token signature")]
    BadSignature,
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
            AuthError::MalformedHeader(_) => "auth.header_malformed",
        }
    }
}

/// An ephemeral user access token: `EXPIRY:USER:SIGNATURE`.
///
/// `Debug` hides the signature, which is the SIP password.
#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    /// When the token stops being valid, unix seconds.
    pub expiry: u64,
    /// The user name (never contains `:`).
    pub user: String,
    /// `base64(HMAC-SHA1(secret, "EXPIRY:USER"))`; also the SIP digest password.
    pub signature: String,
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("expiry", &self.expiry)
            .field("user", &crate::privacy::redact(&self.user))
            .field("signature", &"<redacted>")
            .finish()
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
    /// Issue a token for `user`, valid for `ttl` from `now_unix`.
    ///
    /// `user` should satisfy [`is_valid_user`]; a `:` in it would make the token unparseable.
    pub fn issue(secret: &str, user: &str, ttl: Duration, now_unix: u64) -> Token {
        let expiry = now_unix.saturating_add(ttl.as_secs());
        let signature = ephemeral_password(secret, &format!("{expiry}:{user}"));
        Token {
            expiry,
            user: user.to_owned(),
            signature,
        }
    }

    /// Parse `EXPIRY:USER:SIGNATURE`. Checks the form only; see [`Token::verify`].
    pub fn parse(s: &str) -> Result<Token, AuthError> {
        let s = s.trim();
        let mut parts = s.splitn(3, ':');
        let (Some(expiry), Some(user), Some(signature)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return Err(AuthError::Malformed(
                "expected EXPIRY:USER:SIGNATURE".into(),
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
        if signature.is_empty()
            || base64::engine::general_purpose::STANDARD
                .decode(signature)
                .is_err()
        {
            return Err(AuthError::Malformed("SIGNATURE is not base64".into()));
        }
        Ok(Token {
            expiry,
            user: user.to_owned(),
            signature: signature.to_owned(),
        })
    }

    /// `EXPIRY:USER`: the digest username (Kamailio `auth_ephemeral`, `username_format=1`).
    pub fn sip_username(&self) -> String {
        format!("{}:{}", self.expiry, self.user)
    }

    /// The digest password: the signature.
    pub fn sip_password(&self) -> &str {
        &self.signature
    }

    /// Check the signature against `secret`, then the expiry against `now_unix`.
    pub fn verify(&self, secret: &str, now_unix: u64) -> Result<(), AuthError> {
        let expected = ephemeral_password(secret, &self.sip_username());
        if !ct_eq(expected.as_bytes(), self.signature.as_bytes()) {
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
        write!(f, "{}:{}:{}", self.expiry, self.user, self.signature)
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
            p.sip_username(),
            "1060:alice",
            "auth_ephemeral username form"
        );
        assert_eq!(p.sip_password(), ephemeral_password("k", "1060:alice"));
        assert_eq!(
            p.verify("k", 1060),
            Ok(()),
            "valid up to and including its expiry"
        );
        assert!(
            !format!("{t:?}").contains(&t.signature),
            "Debug hides the password"
        );
    }

    #[test]
    fn expired_token_is_refused() {
        let t = Token::issue("k", "alice", Duration::from_secs(60), 1000);
        let err = t.verify("k", 1061).unwrap_err();
        assert_eq!(err, AuthError::Expired, "one second past expiry");
        assert_eq!(err.code(), "auth.token_expired", "stable code for the UI");
    }

    #[test]
    fn tampered_token_is_refused() {
        let t = Token::issue("k", "alice", Duration::from_secs(60), 1000);
        let mut forged = t.clone();
        forged.user = "mallory".into();
        assert_eq!(
            forged.verify("k", 1000),
            Err(AuthError::BadSignature),
            "user changed"
        );
        let mut later = t.clone();
        later.expiry += 3600;
        assert_eq!(
            later.verify("k", 1000),
            Err(AuthError::BadSignature),
            "expiry extended"
        );
        assert_eq!(
            t.verify("other", 1000),
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
            "x:alice:c2ln",
            "1::c2ln",
            "1:alice:",
            "1:alice:!!",
        ] {
            let e = Token::parse(bad).expect_err(bad);
            assert_eq!(e.code(), "auth.token_malformed", "{bad:?} is malformed");
        }
        let t = Token::parse("5:bob:ab+/cw==").expect("base64 signatures may contain + / =");
        assert_eq!(t.user, "bob");
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
