//! Keeping personal data out of logs.
//!
//! User names, numbers, URIs, Call-IDs and tokens are never logged in clear: log
//! [`redact`]`(value)` instead. The fingerprint is stable (the same input always gives the same
//! output, in every process), so one person's traffic can still be followed through the logs of
//! the app and the switchboard without the logs saying who it is.

use sha1::{Digest, Sha1};

/// A short stable fingerprint of `s`: `#` and the first 8 hex digits of SHA-1(s).
///
/// ```
/// assert_eq!(hookflash_core::privacy::redact("alice"), "#522b276a");
/// ```
pub fn redact(s: &str) -> String {
    let digest = Sha1::digest(s.as_bytes());
    format!("#{}", hex::encode(&digest[..4]))
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn redaction_is_stable_short_and_hides_the_input() {
        // python3: hashlib.sha1(b'alice').hexdigest()[:8]
        assert_eq!(
            redact("alice"),
            "#522b276a",
            "stable across runs and processes"
        );
        assert_eq!(
            redact("alice"),
            redact("alice"),
            "same input, same fingerprint"
        );
        assert_ne!(redact("alice"), redact("bob"), "different inputs differ");
        assert!(
            !redact("sip:alice@x").contains("alice"),
            "the clear value never shows"
        );
    }
}
