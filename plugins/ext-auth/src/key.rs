//! The shared-state key a request's credentials map to.
//!
//! SHA-256 over the plugin entry's identity (what shapes the service's
//! answer: upstream, method, path, headers sent and copied) and then each
//! credential header's values, every piece length-prefixed so no two
//! different inputs hash alike; written as 64 hex digits. Shared state is
//! the plugin's over every route it serves: a secret (a token, a cookie)
//! is never a key in clear, and two routes asking different services never
//! share a decision. The hasher is seeded with the identity once, so a
//! request hashes only its own credentials.
//!
//! SHA-256 in WebAssembly costs microseconds; the instance's memo
//! ([`crate::memo`]) spares a credential it has seen before this work.

use sha2::{Digest, Sha256};

/// A cache key: 64 lower-case hex digits, on the stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheKey([u8; 64]);

impl CacheKey {
    /// The key as text.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("hex digits")
    }

    /// A key given back as text (a call's tag); `None` if it is not one.
    pub fn parse(text: &str) -> Option<Self> {
        let bytes: [u8; 64] = text.as_bytes().try_into().ok()?;
        bytes
            .iter()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
            .then_some(Self(bytes))
    }
}

/// Computes cache keys for one plugin entry.
pub struct Keys {
    seeded: Sha256,
}

impl Keys {
    /// Keys for the plugin entry described by `identity` (text that
    /// differs whenever the service's answer may differ).
    pub fn new(identity: &str) -> Self {
        let mut seeded = Sha256::new();
        feed(&mut seeded, &[identity]);
        Self { seeded }
    }

    /// The key of a request's credentials: each credential header's
    /// values, in the configured order (none when the header is absent).
    pub fn digest(&self, credentials: &[Vec<String>]) -> CacheKey {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut hasher = self.seeded.clone();
        for values in credentials {
            feed(&mut hasher, values);
        }
        let mut key = [0u8; 64];
        for (i, byte) in hasher.finalize().iter().enumerate() {
            key[2 * i] = HEX[usize::from(byte >> 4)];
            key[2 * i + 1] = HEX[usize::from(byte & 0xf)];
        }
        CacheKey(key)
    }
}

/// Feeds one header's values: their count, then each length-prefixed (an
/// absent header and one empty value differ, and `["ab", "c"]` is not
/// `["a", "bc"]`). The memo's fingerprint is fed alike.
pub(crate) fn feed<S: AsRef<str>>(hasher: &mut impl Update, values: &[S]) {
    hasher.update(&(values.len() as u64).to_le_bytes());
    for value in values {
        let value = value.as_ref().as_bytes();
        hasher.update(&(value.len() as u64).to_le_bytes());
        hasher.update(value);
    }
}

/// A hash [`feed`] can feed.
pub(crate) trait Update {
    fn update(&mut self, bytes: &[u8]);
}

impl Update for Sha256 {
    fn update(&mut self, bytes: &[u8]) {
        Digest::update(self, bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(keys: &Keys, headers: &[&[&str]]) -> CacheKey {
        let credentials: Vec<Vec<String>> = headers
            .iter()
            .map(|values| values.iter().map(|v| v.to_string()).collect())
            .collect();
        keys.digest(&credentials)
    }

    #[test]
    fn keys_tell_credentials_and_entries_apart() {
        let one = Keys::new("auth GET /check");
        let other = Keys::new("auth GET /other");
        let a = key(&one, &[&["Bearer a"], &[]]);
        assert_eq!(a, key(&one, &[&["Bearer a"], &[]]));
        assert_ne!(a, key(&other, &[&["Bearer a"], &[]]));
        assert_ne!(a, key(&one, &[&["Bearer b"], &[]]));
        assert_ne!(a, key(&one, &[&[], &["Bearer a"]]));
        assert_ne!(key(&one, &[&["ab", "c"]]), key(&one, &[&["a", "bc"]]));
        assert_ne!(key(&one, &[&[""]]), key(&one, &[&[]]));
        assert!(!a.as_str().contains("Bearer"));
        assert_eq!(CacheKey::parse(a.as_str()), Some(a));
        assert_eq!(CacheKey::parse("xyz"), None);
        assert_eq!(CacheKey::parse(&"A".repeat(64)), None);
    }
}
