//! A client of a Hookflash switchboard's HTTP API: the user's own voicemail messages,
//! forwarding rules and greeting (`docs/switchboard-api.md`), authenticated with the user's
//! access token narrowed to its `api` grant (the API never sees the SIP or TURN password).
//!
//! Plain HTTP/1.1 over one short TCP connection per request (the API is on loopback, or
//! behind a TLS proxy); every request is bounded by [`REQUEST_TIMEOUT`].
//!
//! ```no_run
//! # async fn demo(api: std::net::SocketAddr, token: &hookflash_core::auth::Token) -> Result<(), hookflash_core::mailbox::MailboxError> {
//! use hookflash_core::mailbox::Mailbox;
//! let mailbox = Mailbox::new(api, token)?;
//! for message in mailbox.messages().await? {
//!     println!("{} from {} ({} ms)", message.id, message.caller, message.duration_ms);
//! }
//! # Ok(()) }
//! ```

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use serde::{Deserialize, Serialize};

use crate::auth::{Scope, Token};
use crate::error::ErrorCode;

/// How long one API request may take, connection included.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The most a response body may hold (a voicemail recording is at most a few MB).
const MAX_BODY: usize = 64 * 1024 * 1024;

/// A voicemail message, as the API lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[serde(rename_all = "camelCase")]
pub struct VoicemailMessage {
    /// Its id.
    pub id: String,
    /// Who left it (`sip:alice@domain`).
    pub caller: String,
    /// When, in seconds since the Unix epoch.
    #[cfg_attr(feature = "specta", specta(type = u32))]
    pub created: u64,
    /// How long, in milliseconds.
    #[cfg_attr(feature = "specta", specta(type = u32))]
    pub duration_ms: u64,
    /// Heard already?
    pub heard: bool,
}

/// Forwarding rules, as the API reads and writes them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[serde(rename_all = "camelCase")]
pub struct ForwardingRules {
    /// Forward every call at once.
    pub always: Option<Forward>,
    /// Forward when busy.
    pub busy: Option<Forward>,
    /// Forward when unanswered after some seconds.
    pub no_answer: Option<ForwardAfter>,
}

/// Where a rule sends the call: `voicemail`, a user name or a number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct Forward {
    /// `voicemail`, a user name or a number.
    pub to: String,
}

/// A no-answer rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct ForwardAfter {
    /// Seconds of ringing first (1–600).
    pub after: u32,
    /// `voicemail`, a user name or a number.
    pub to: String,
}

/// What went wrong talking to the API.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MailboxError {
    /// The API could not be reached, or did not answer in time.
    #[error("the voicemail service cannot be reached: {0}")]
    Unreachable(String),
    /// The API refused the request (the detail is its own message).
    #[error("the voicemail service refused: {message} ({status})")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// The API's `code` (`http.not_found`).
        code: String,
        /// The API's message.
        message: String,
    },
    /// The answer could not be understood.
    #[error("the voicemail service answered something unexpected: {0}")]
    Malformed(String),
    /// The token does not open the API (it was issued without the `api` scope).
    #[error("this sign-in does not open voicemail: the token has no api scope")]
    NotPermitted,
}

impl MailboxError {
    /// The stable code of the API vocabulary.
    pub fn code(&self) -> ErrorCode {
        match self {
            MailboxError::Unreachable(_) => ErrorCode::VoicemailUnavailable,
            _ => ErrorCode::VoicemailFailed,
        }
    }
}

/// One user's mailbox on a switchboard's HTTP API.
#[derive(Clone)]
pub struct Mailbox {
    api: SocketAddr,
    authorization: String,
    /// HTTPS: whom we trust and the name the API's certificate must carry.
    tls: Option<crate::sip::tls::TlsClient>,
}

/// A connection to the API, plain or TLS.
trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

impl std::fmt::Debug for Mailbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token never reaches a log.
        f.debug_struct("Mailbox")
            .field("api", &self.api)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct ApiError {
    code: String,
    message: String,
}

impl Mailbox {
    /// The mailbox of the token's user on the API at `api`; the API is shown only the
    /// token's `api` grant. [`MailboxError::NotPermitted`] if the token has none.
    pub fn new(api: SocketAddr, token: &Token) -> Result<Mailbox, MailboxError> {
        let api_only = token.only(Scope::Api).ok_or(MailboxError::NotPermitted)?;
        Ok(Mailbox {
            api,
            authorization: format!("Bearer {api_only}"),
            tls: None,
        })
    }

    /// Speak HTTPS to the API, verifying its certificate with `client` (as SIP over TLS
    /// does): what a switchboard serving its API beyond loopback requires.
    pub fn with_tls(mut self, client: crate::sip::tls::TlsClient) -> Mailbox {
        self.tls = Some(client);
        self
    }

    /// The messages, newest first.
    pub async fn messages(&self) -> Result<Vec<VoicemailMessage>, MailboxError> {
        self.json(Method::GET, "/api/voicemail", None).await
    }

    /// One message's recording (WAV).
    pub async fn recording(&self, id: &str) -> Result<Bytes, MailboxError> {
        self.request(
            Method::GET,
            &format!("/api/voicemail/{}", path_segment(id)?),
            None,
        )
        .await
    }

    /// Marks a message heard.
    pub async fn mark_heard(&self, id: &str) -> Result<VoicemailMessage, MailboxError> {
        let path = format!("/api/voicemail/{}/heard", path_segment(id)?);
        self.json(Method::POST, &path, None).await
    }

    /// Deletes a message.
    pub async fn delete(&self, id: &str) -> Result<(), MailboxError> {
        let path = format!("/api/voicemail/{}", path_segment(id)?);
        self.request(Method::DELETE, &path, None).await.map(drop)
    }

    /// The forwarding rules.
    pub async fn rules(&self) -> Result<ForwardingRules, MailboxError> {
        self.json(Method::GET, "/api/rules", None).await
    }

    /// Replaces the forwarding rules; returns them as stored.
    pub async fn set_rules(
        &self,
        rules: &ForwardingRules,
    ) -> Result<ForwardingRules, MailboxError> {
        let body = serde_json::to_vec(rules).map_err(|e| MailboxError::Malformed(e.to_string()))?;
        self.json(Method::PUT, "/api/rules", Some(body.into()))
            .await
    }

    /// Sets the greeting callers hear (a WAV file).
    pub async fn set_greeting(&self, wav: Bytes) -> Result<(), MailboxError> {
        self.request(Method::PUT, "/api/greeting", Some(wav))
            .await
            .map(drop)
    }

    /// Back to the default greeting.
    pub async fn reset_greeting(&self) -> Result<(), MailboxError> {
        self.request(Method::DELETE, "/api/greeting", None)
            .await
            .map(drop)
    }

    async fn json<T: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> Result<T, MailboxError> {
        let bytes = self.request(method, path, body).await?;
        serde_json::from_slice(&bytes).map_err(|e| MailboxError::Malformed(e.to_string()))
    }

    async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> Result<Bytes, MailboxError> {
        tokio::time::timeout(REQUEST_TIMEOUT, self.exchange(method, path, body))
            .await
            .map_err(|_| MailboxError::Unreachable("no answer in time".into()))?
    }

    async fn exchange(
        &self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> Result<Bytes, MailboxError> {
        let unreachable = |e: &dyn std::fmt::Display| MailboxError::Unreachable(e.to_string());
        let tcp = tokio::net::TcpStream::connect(self.api)
            .await
            .map_err(|e| unreachable(&e))?;
        let stream: Box<dyn Io> = match &self.tls {
            None => Box::new(tcp),
            Some(tls) => Box::new(tls.connect(tcp).await.map_err(|e| {
                if crate::sip::tls::is_untrusted(&e) {
                    MailboxError::Unreachable(format!(
                        "the voicemail server's certificate is not trusted ({e})"
                    ))
                } else {
                    unreachable(&e)
                }
            })?),
        };
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| unreachable(&e))?;
        let driver = tokio::spawn(connection);
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, self.api.to_string())
            .header(hyper::header::AUTHORIZATION, &self.authorization)
            .body(Full::new(body.unwrap_or_default()))
            .map_err(|e| MailboxError::Malformed(e.to_string()))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| unreachable(&e))?;
        let status = response.status();
        let body = http_body_util::Limited::new(response.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|e| unreachable(&e))?
            .to_bytes();
        driver.abort();
        if status.is_success() {
            return Ok(body);
        }
        let (code, message) = match serde_json::from_slice::<ApiError>(&body) {
            Ok(e) => (e.code, e.message),
            Err(_) => (
                "http.error".to_owned(),
                status.canonical_reason().unwrap_or("error").to_owned(),
            ),
        };
        Err(MailboxError::Refused {
            status: status.as_u16(),
            code,
            message,
        })
    }
}

/// A message id as one path segment: ids are hex, so anything else is refused here rather
/// than sent.
fn path_segment(id: &str) -> Result<&str, MailboxError> {
    if !id.is_empty() && id.len() <= 64 && id.chars().all(|c| c.is_ascii_alphanumeric()) {
        Ok(id)
    } else {
        Err(MailboxError::Refused {
            status: StatusCode::NOT_FOUND.as_u16(),
            code: "http.not_found".into(),
            message: "no such message".into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_ids_cannot_reach_other_paths() {
        assert!(path_segment("9f2c0a1b").is_ok(), "hex ids pass");
        for bad in ["", "../rules", "a/b", "x?y", "a%2F"] {
            assert!(
                path_segment(bad).is_err(),
                "{bad:?} must not become part of a path"
            );
        }
    }
}
