//! SIP: messages, URIs and the transports: UDP, TCP, TLS and WebSocket (RFC 3261, RFC 7118).
//!
//! This layer knows nothing of calls: it parses and prints messages and moves them over
//! sockets. The protocol state machines ([`crate::registration`], [`crate::call`]) sit above it
//! and the async driver in [`crate::agent`] glues the two.

mod message;
pub mod tls;
pub mod transport;
mod uri;

pub use message::{
    next_stream_frame, reason_phrase, split_top_level_commas, CSeq, Headers, Message, Method,
    Request, Response, StreamFrame, Via, MAX_MESSAGE_SIZE,
};
pub use transport::{StreamLimits, Transport, TransportEvent, TransportKind};
pub use uri::{escape_uri_header, split_host_port, unescape, NameAddr, Uri};

use rand::Rng;

/// A message could not be parsed, or lacks what it must carry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed SIP: {0}")]
pub struct ParseError(pub String);

impl ParseError {
    /// A parse error with this explanation.
    pub fn new(msg: impl Into<String>) -> Self {
        ParseError(msg.into())
    }
}

/// The RFC 3261 magic cookie that starts every branch we generate.
pub const BRANCH_COOKIE: &str = "z9hG4bK";

fn random_token(len: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::thread_rng();
    (0..len)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect()
}

/// A fresh Via branch (transaction id).
pub fn new_branch() -> String {
    format!("{BRANCH_COOKIE}{}", random_token(16))
}

/// A fresh From/To tag.
pub fn new_tag() -> String {
    random_token(10)
}

/// A fresh Call-ID.
pub fn new_call_id() -> String {
    random_token(24)
}
