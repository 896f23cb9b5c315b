//! The shared-state key a request's credentials map to, and the instance's
//! memo that spares a cache hit the work of computing it.
//!
//! **Key.** SHA-256 over the plugin entry's identity (what shapes the
//! service's answer: upstream, method, path, headers sent and copied) and
//! then each credential header's values, every piece length-prefixed so no
//! two different inputs hash alike; written as 64 hex digits. Shared state
//! is the plugin's over every route it serves: a secret (a token, a
//! cookie) is never a key in clear, and two routes asking different
//! services never share a decision. The hasher is seeded with the identity
//! once, so a request hashes only its own credentials.
//!
//! **Memo.** SHA-256 in WebAssembly costs microseconds per request, more
//! than the rest of a cache hit. So each instance remembers, for the
//! credentials it has seen, their key: found by a 128-bit SipHash-1-3 of
//! the same input under a secret key drawn from the host's CSPRNG when
//! the instance starts. That keyed hash is a pseudo-random function to
//! anyone without the secret, so no one can craft credentials that land
//! on another's key (a chance collision among 2^128 values is not a
//! concern), and the memo holds no credential, only hashes. It is bounded
//! ([`MEMO_ENTRIES`]) and emptied when full: a flood of new credentials
//! costs what it would without it.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use sha2::{Digest, Sha256};
use siphasher::sip128::{Hasher128, SipHasher13};

/// The most keys one instance remembers.
pub const MEMO_ENTRIES: usize = 1024;

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

/// Maps credentials to cache keys for one plugin entry.
pub struct Keys {
    seeded: Sha256,
    secret: (u64, u64),
    memo: HashMap<u128, CacheKey, BuildHasherDefault<Prehashed>>,
}

impl Keys {
    /// Keys for the plugin entry described by `identity` (text that
    /// differs whenever the service's answer may differ), remembered
    /// under `secret`.
    pub fn new(identity: &str, secret: (u64, u64)) -> Self {
        let mut seeded = Sha256::new();
        feed(&mut seeded, &[identity]);
        Self {
            seeded,
            secret,
            memo: HashMap::default(),
        }
    }

    /// The key of a request's credentials: each credential header's values,
    /// in the configured order (none when the header is absent).
    pub fn key(&mut self, credentials: &[Vec<String>]) -> CacheKey {
        let mut sip = SipHasher13::new_with_keys(self.secret.0, self.secret.1);
        for values in credentials {
            feed(&mut Sip(&mut sip), values);
        }
        let fingerprint = sip.finish128().as_u128();
        if let Some(key) = self.memo.get(&fingerprint) {
            return *key;
        }
        let key = self.digest(credentials);
        if self.memo.len() == MEMO_ENTRIES {
            self.memo.clear();
        }
        self.memo.insert(fingerprint, key);
        key
    }

    /// The SHA-256 key, computed.
    fn digest(&self, credentials: &[Vec<String>]) -> CacheKey {
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
/// `["a", "bc"]`).
fn feed<S: AsRef<str>>(hasher: &mut impl Update, values: &[S]) {
    hasher.update(&(values.len() as u64).to_le_bytes());
    for value in values {
        let value = value.as_ref().as_bytes();
        hasher.update(&(value.len() as u64).to_le_bytes());
        hasher.update(value);
    }
}

/// The two hashes, fed alike.
trait Update {
    fn update(&mut self, bytes: &[u8]);
}

impl Update for Sha256 {
    fn update(&mut self, bytes: &[u8]) {
        Digest::update(self, bytes);
    }
}

struct Sip<'a>(&'a mut SipHasher13);

impl Update for Sip<'_> {
    fn update(&mut self, bytes: &[u8]) {
        self.0.write(bytes);
    }
}

/// The memo's keys are already keyed hashes: hashing them again is waste.
#[derive(Default)]
struct Prehashed(u64);

impl Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `u128` keys are hashed here; fold anything else in anyway.
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    fn write_u128(&mut self, value: u128) {
        self.0 = value as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(keys: &mut Keys, headers: &[&[&str]]) -> CacheKey {
        let credentials: Vec<Vec<String>> = headers
            .iter()
            .map(|values| values.iter().map(|v| v.to_string()).collect())
            .collect();
        keys.key(&credentials)
    }

    #[test]
    fn keys_tell_credentials_and_entries_apart() {
        let mut one = Keys::new("auth GET /check", (1, 2));
        let mut other = Keys::new("auth GET /other", (1, 2));
        let a = key(&mut one, &[&["Bearer a"], &[]]);
        assert_eq!(a, key(&mut one, &[&["Bearer a"], &[]]));
        assert_ne!(a, key(&mut other, &[&["Bearer a"], &[]]));
        assert_ne!(a, key(&mut one, &[&["Bearer b"], &[]]));
        assert_ne!(a, key(&mut one, &[&[], &["Bearer a"]]));
        assert_ne!(
            key(&mut one, &[&["ab", "c"]]),
            key(&mut one, &[&["a", "bc"]])
        );
        assert_ne!(key(&mut one, &[&[""]]), key(&mut one, &[&[]]));
        assert!(!a.as_str().contains("Bearer"));
        assert_eq!(CacheKey::parse(a.as_str()), Some(a));
        assert_eq!(CacheKey::parse("xyz"), None);
        assert_eq!(CacheKey::parse(&"A".repeat(64)), None);
    }

    #[test]
    fn the_memo_gives_the_computed_key_and_stays_bounded() {
        // Instances with different secrets agree on every key: the memo
        // only remembers, the key is SHA-256's.
        let mut a = Keys::new("id", (1, 2));
        let mut b = Keys::new("id", (3, 4));
        for i in 0..MEMO_ENTRIES + 10 {
            let token = format!("t-{i}");
            assert_eq!(key(&mut a, &[&[&token]]), key(&mut b, &[&[&token]]));
            // Asked again: from the memo, the same.
            assert_eq!(key(&mut a, &[&[&token]]), key(&mut b, &[&[&token]]));
            assert!(a.memo.len() <= MEMO_ENTRIES);
        }
        assert_eq!(
            key(&mut a, &[&["t-1"]]),
            a.digest(&[vec!["t-1".to_owned()]])
        );
    }
}
