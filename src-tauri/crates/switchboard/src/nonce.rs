//! Stateless digest nonces.
//!
//! A nonce is `TTTTTTTTTTTTTTTT RRRRRRRRRRRRRRRR MMMMMMMMMMMMMMMMMMMMMMMM` (without spaces):
//! the issue time (unix seconds, 16 hex), 8 random bytes (16 hex) and the first 12 bytes of
//! `HMAC-SHA1(key, time ‖ random)` (24 hex). The key is derived from the switchboard secret,
//! so nothing is stored per challenge and nonces survive a restart. A nonce with a good MAC
//! older than [`NONCE_LIFETIME`] is *stale*: the client is challenged again with `stale=true`
//! and retries with the same credentials. Replays within the lifetime are not detected (no
//! nonce-count state is kept).

use std::time::Duration;

use hookflash_core::auth::{ct_eq, hmac_sha1};
use rand::RngCore;

/// How long a nonce stays fresh.
pub const NONCE_LIFETIME: Duration = Duration::from_secs(300);

/// How far in the future a nonce's time may lie (clock steps) before it is refused.
const FUTURE_SKEW: u64 = 5;

/// What a presented nonce is worth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceCheck {
    /// Ours and fresh.
    Valid,
    /// Ours but too old: challenge again with `stale=true`.
    Stale,
    /// Not ours (forged, mangled or from another secret): challenge again.
    Invalid,
}

/// Issues and checks nonces under a key derived from the secret.
#[derive(Clone)]
pub struct NonceKey {
    key: [u8; 20],
}

impl std::fmt::Debug for NonceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NonceKey(<redacted>)")
    }
}

impl NonceKey {
    /// The nonce key of a switchboard with this secret.
    pub fn new(secret: &str) -> NonceKey {
        NonceKey {
            key: hmac_sha1(
                secret.as_bytes(),
                b"hookflash-switchboard digest nonce key v1",
            ),
        }
    }

    fn mac(&self, body: &str) -> String {
        hex::encode(&hmac_sha1(&self.key, body.as_bytes())[..12])
    }

    /// A fresh nonce issued at `now_unix`.
    pub fn issue(&self, now_unix: u64) -> String {
        let mut random = [0u8; 8];
        rand::thread_rng().fill_bytes(&mut random);
        let body = format!("{now_unix:016x}{}", hex::encode(random));
        let mac = self.mac(&body);
        format!("{body}{mac}")
    }

    /// Judge a nonce presented at `now_unix`.
    pub fn check(&self, nonce: &str, now_unix: u64) -> NonceCheck {
        if nonce.len() != 56 || !nonce.is_ascii() {
            return NonceCheck::Invalid;
        }
        let (body, mac) = nonce.split_at(32);
        if !ct_eq(self.mac(body).as_bytes(), mac.as_bytes()) {
            return NonceCheck::Invalid;
        }
        let Ok(issued) = u64::from_str_radix(&body[..16], 16) else {
            return NonceCheck::Invalid;
        };
        if issued > now_unix.saturating_add(FUTURE_SKEW) {
            return NonceCheck::Invalid;
        }
        if now_unix.saturating_sub(issued) > NONCE_LIFETIME.as_secs() {
            return NonceCheck::Stale;
        }
        NonceCheck::Valid
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_nonce_is_valid_then_stale() {
        let k = NonceKey::new("s");
        let n = k.issue(1000);
        assert_eq!(k.check(&n, 1000), NonceCheck::Valid, "just issued");
        assert_eq!(
            k.check(&n, 1300),
            NonceCheck::Valid,
            "valid for the whole lifetime"
        );
        assert_eq!(
            k.check(&n, 1301),
            NonceCheck::Stale,
            "too old: stale, not invalid"
        );
        assert_ne!(k.issue(1000), n, "two challenges in one second differ");
    }

    #[test]
    fn forged_or_foreign_nonces_are_invalid() {
        let k = NonceKey::new("s");
        let n = k.issue(1000);
        let mut forged = n.clone().into_bytes();
        forged[15] = if forged[15] == b'0' { b'1' } else { b'0' };
        let forged = String::from_utf8(forged).unwrap();
        assert_eq!(
            k.check(&forged, 1000),
            NonceCheck::Invalid,
            "time changed: MAC breaks"
        );
        assert_eq!(
            NonceKey::new("t").check(&n, 1000),
            NonceCheck::Invalid,
            "other secret"
        );
        assert_eq!(k.check("abc", 1000), NonceCheck::Invalid, "wrong length");
        assert_eq!(
            k.check(&"é".repeat(28), 1000),
            NonceCheck::Invalid,
            "non-ASCII"
        );
        assert_eq!(
            k.check(&k.issue(2000), 1000),
            NonceCheck::Invalid,
            "from the future"
        );
    }
}
