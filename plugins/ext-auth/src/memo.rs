//! The instance's memo, the first of the decision cache's two levels (the
//! second is the plugin's shared state, [`crate::entry`]).
//!
//! For each credential it has seen, an instance remembers the shared-state
//! key (sparing SHA-256, microseconds in WebAssembly) and, once it has one,
//! the allowed decision with the instant it expires: the expiry of the
//! shared entry it came from (the entry records it). A request whose
//! credential has a live allowed decision here is answered without
//! reading shared state; the decision is never used past that instant, so
//! the memo lets a revoked credential through no longer than the shared
//! entry does (`cache_ttl`).
//!
//! Credentials are found by their fingerprint: a 128-bit SipHash-1-3 of
//! the credential headers' values (fed as the key is, length-prefixed)
//! under a secret drawn from the host's CSPRNG when the instance starts.
//! That keyed hash is a pseudo-random function to anyone without the
//! secret, so no one can craft credentials that land on another's entry (a
//! chance collision among 2^128 values is not a concern), and the memo
//! holds no credential, only hashes and the decisions.
//!
//! Refusals are not remembered here: their bodies run to kilobytes, and a
//! refused client is not the path to make fast. They are kept in shared
//! state only (for `deny_ttl`), the memo sparing them SHA-256.
//!
//! **Bounds.** At most [`MEMO_ENTRIES`] credentials and [`MEMO_BYTES`] of
//! decisions (headers' values and consumer); a memo that would pass either
//! is emptied first, so a flood of new credentials costs what it would
//! without it.
//!
//! **Clock.** Expiry is read on the host's wall clock (`now-ms`, the only
//! clock a plugin has; one host call per request), while shared state
//! expires entries on a monotonic one. The two agree unless the wall clock
//! is stepped back; then a reading earlier than the instance's last one
//! empties its memo, and a decision whose remaining lifetime reads longer
//! than `cache_ttl` (its expiry written before the step, or by a clock
//! ahead of this one) is neither remembered nor used. So a step back by
//! _d_ that an idle instance does not see can keep one of its decisions at
//! most _d_ longer, and never more than `cache_ttl` longer.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use siphasher::sip128::{Hasher128, SipHasher13};

use crate::key::{CacheKey, Update, feed};

/// The most credentials one instance remembers.
pub const MEMO_ENTRIES: usize = 1024;
/// The most bytes of allowed decisions one instance remembers.
pub const MEMO_BYTES: usize = 256 * 1024;

/// A remembered allowed decision: what to set on the request, and until
/// when.
#[derive(Debug)]
pub struct Allowed {
    /// The instant it stops being used (ms since the Unix epoch).
    expires_ms: u64,
    /// The consumer (its first `consumer_len` bytes, when there is one),
    /// then each header's value, back to back.
    text: Box<str>,
    consumer_len: Option<usize>,
    /// Each header: its index among the configured `upstream_headers` and
    /// where its value ends in `text`.
    fields: Box<[(usize, usize)]>,
}

impl Allowed {
    /// A decision to use until `expires_ms`: the consumer, and the headers
    /// by their index among `upstream_headers`.
    pub fn new<'a>(
        expires_ms: u64,
        consumer: Option<&str>,
        headers: impl IntoIterator<Item = (usize, &'a str)>,
    ) -> Self {
        let mut text = String::from(consumer.unwrap_or(""));
        let fields = headers
            .into_iter()
            .map(|(name, value)| {
                text.push_str(value);
                (name, text.len())
            })
            .collect();
        Self {
            expires_ms,
            text: text.into_boxed_str(),
            consumer_len: consumer.map(str::len),
            fields,
        }
    }

    /// The consumer the service named, if any.
    pub fn consumer(&self) -> Option<&str> {
        self.consumer_len.map(|len| &self.text[..len])
    }

    /// The headers to set, in order: each as its index among
    /// `upstream_headers`, and its value.
    pub fn headers(&self) -> impl Iterator<Item = (usize, &str)> {
        let mut start = self.consumer_len.unwrap_or(0);
        self.fields.iter().map(move |&(name, end)| {
            let value = &self.text[start..end];
            start = end;
            (name, value)
        })
    }

    /// What it counts against [`MEMO_BYTES`].
    fn size(&self) -> usize {
        self.text.len() + std::mem::size_of_val(&*self.fields)
    }
}

/// What the memo knows of a credential.
pub enum Found<'a> {
    /// A live allowed decision.
    Allowed(&'a Allowed),
    /// Only the shared-state key.
    Key(CacheKey),
    /// Nothing.
    Missing,
}

/// One credential's entry.
struct Slot {
    key: CacheKey,
    allowed: Option<Allowed>,
}

/// An instance's memo of credentials: their keys and allowed decisions.
pub struct Memo {
    secret: (u64, u64),
    slots: HashMap<u128, Slot, BuildHasherDefault<Prehashed>>,
    /// The decisions' [`Allowed::size`], summed.
    bytes: usize,
    /// The latest clock reading seen.
    now_ms: u64,
    /// The longest a decision may have left (`cache_ttl`).
    max_life_ms: u64,
}

impl Memo {
    /// An empty memo whose fingerprints are keyed by `secret`, for
    /// decisions that live at most `max_life_ms`.
    pub fn new(secret: (u64, u64), max_life_ms: u64) -> Self {
        Self {
            secret,
            slots: HashMap::default(),
            bytes: 0,
            now_ms: 0,
            max_life_ms,
        }
    }

    /// The fingerprint of a request's credentials (fed as for the key).
    pub fn fingerprint(&self, credentials: &[Vec<String>]) -> u128 {
        let mut sip = SipHasher13::new_with_keys(self.secret.0, self.secret.1);
        for values in credentials {
            feed(&mut Sip(&mut sip), values);
        }
        sip.finish128().as_u128()
    }

    /// What is known of a credential at `now_ms`. An expired decision (or
    /// one with more than `max_life_ms` left) is dropped, its key kept; a
    /// clock reading earlier than the last one empties the memo.
    pub fn find(&mut self, fingerprint: u128, now_ms: u64) -> Found<'_> {
        if now_ms < self.now_ms {
            self.clear();
        }
        self.now_ms = now_ms;
        let Some(slot) = self.slots.get_mut(&fingerprint) else {
            return Found::Missing;
        };
        let live = match &slot.allowed {
            None => return Found::Key(slot.key),
            Some(allowed) => {
                now_ms < allowed.expires_ms && allowed.expires_ms - now_ms <= self.max_life_ms
            }
        };
        if live {
            return match &slot.allowed {
                Some(allowed) => Found::Allowed(allowed),
                None => Found::Key(slot.key),
            };
        }
        if let Some(expired) = slot.allowed.take() {
            self.bytes -= expired.size();
        }
        Found::Key(slot.key)
    }

    /// The key remembered for a credential, if any.
    pub fn key(&self, fingerprint: u128) -> Option<CacheKey> {
        self.slots.get(&fingerprint).map(|slot| slot.key)
    }

    /// Remembers a credential's key.
    pub fn remember(&mut self, fingerprint: u128, key: CacheKey) {
        if !self.slots.contains_key(&fingerprint) && self.slots.len() >= MEMO_ENTRIES {
            self.clear();
        }
        let slot = self
            .slots
            .entry(fingerprint)
            .or_insert(Slot { key, allowed: None });
        if slot.key != key {
            // Not reached (one fingerprint, one key): start over rather
            // than keep a decision under another key.
            if let Some(old) = slot.allowed.take() {
                self.bytes -= old.size();
            }
            slot.key = key;
        }
    }

    /// Remembers a credential's key and its allowed decision (replacing
    /// any it had), if at `now_ms` it is live with at most `max_life_ms`
    /// left; a decision larger than [`MEMO_BYTES`] is not kept.
    pub fn allow(&mut self, fingerprint: u128, key: CacheKey, allowed: Allowed, now_ms: u64) {
        let size = allowed.size();
        let left = allowed.expires_ms.saturating_sub(now_ms);
        if size > MEMO_BYTES || left == 0 || left > self.max_life_ms {
            return;
        }
        let old = self
            .slots
            .get(&fingerprint)
            .and_then(|slot| slot.allowed.as_ref())
            .map_or(0, Allowed::size);
        if self.bytes - old + size > MEMO_BYTES {
            self.clear();
        }
        self.remember(fingerprint, key);
        let slot = self.slots.get_mut(&fingerprint).expect("just remembered");
        if let Some(old) = slot.allowed.replace(allowed) {
            self.bytes -= old.size();
        }
        self.bytes += size;
    }

    fn clear(&mut self) {
        self.slots.clear();
        self.bytes = 0;
    }

    /// How many credentials it remembers.
    #[cfg(test)]
    pub fn remembered(&self) -> usize {
        self.slots.len()
    }

    /// How many bytes of decisions it holds.
    #[cfg(test)]
    pub fn bytes(&self) -> usize {
        self.bytes
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
    use crate::key::Keys;

    fn credentials(headers: &[&[&str]]) -> Vec<Vec<String>> {
        headers
            .iter()
            .map(|values| values.iter().map(|v| v.to_string()).collect())
            .collect()
    }

    fn allowed(expires_ms: u64, user: &str) -> Allowed {
        Allowed::new(expires_ms, Some(user), [(0, user), (2, "t1")])
    }

    #[test]
    fn decisions_read_back_as_remembered() {
        let a = allowed(10, "ada");
        assert_eq!(a.consumer(), Some("ada"));
        assert_eq!(a.headers().collect::<Vec<_>>(), [(0, "ada"), (2, "t1")]);
        let bare = Allowed::new(10, None, [(1, "x"), (0, "")]);
        assert_eq!(bare.consumer(), None);
        assert_eq!(bare.headers().collect::<Vec<_>>(), [(1, "x"), (0, "")]);
        // An empty consumer is still one.
        assert_eq!(Allowed::new(10, Some(""), []).consumer(), Some(""));
    }

    #[test]
    fn fingerprints_tell_credentials_apart_under_each_secret() {
        let one = Memo::new((1, 2), 1_000_000);
        let other = Memo::new((3, 4), 1_000_000);
        let a = credentials(&[&["Bearer a"], &[]]);
        assert_eq!(one.fingerprint(&a), one.fingerprint(&a));
        assert_ne!(one.fingerprint(&a), other.fingerprint(&a));
        for different in [
            credentials(&[&["Bearer b"], &[]]),
            credentials(&[&[], &["Bearer a"]]),
            credentials(&[&["Bearer a"], &[""]]),
            credentials(&[&["Bearer", " a"], &[]]),
        ] {
            assert_ne!(one.fingerprint(&a), one.fingerprint(&different));
        }
    }

    #[test]
    fn a_decision_lives_until_its_expiry_and_its_key_after() {
        let keys = Keys::new("id");
        let mut memo = Memo::new((1, 2), 1_000_000);
        let ada = credentials(&[&["t-ada"]]);
        let fp = memo.fingerprint(&ada);
        let key = keys.digest(&ada);
        assert!(matches!(memo.find(fp, 1000), Found::Missing));
        memo.remember(fp, key);
        assert!(matches!(memo.find(fp, 1000), Found::Key(k) if k == key));
        memo.allow(fp, key, allowed(2000, "ada"), 1000);
        assert!(matches!(memo.find(fp, 1999), Found::Allowed(a) if a.consumer() == Some("ada")));
        assert!(matches!(memo.find(fp, 2000), Found::Key(k) if k == key));
        assert_eq!(memo.bytes(), 0, "the expired decision is dropped");
        assert_eq!(memo.key(fp), Some(key));
    }

    #[test]
    fn a_clock_stepped_back_empties_the_memo() {
        let mut memo = Memo::new((1, 2), 1_000_000);
        let fp = memo.fingerprint(&credentials(&[&["t"]]));
        let key = Keys::new("id").digest(&credentials(&[&["t"]]));
        memo.allow(fp, key, allowed(5000, "ada"), 3000);
        assert!(matches!(memo.find(fp, 3000), Found::Allowed(_)));
        assert!(matches!(memo.find(fp, 2999), Found::Missing));
        assert_eq!((memo.remembered(), memo.bytes()), (0, 0));
    }

    #[test]
    fn a_decision_never_has_more_than_max_life_left() {
        let creds = credentials(&[&["t"]]);
        let key = Keys::new("id").digest(&creds);
        let mut memo = Memo::new((1, 2), 1000);
        let fp = memo.fingerprint(&creds);
        // Not taken: 1001 ms left, or none.
        memo.allow(fp, key, allowed(2001, "ada"), 1000);
        memo.allow(fp, key, allowed(1000, "ada"), 1000);
        assert!(matches!(memo.find(fp, 1000), Found::Missing));
        memo.allow(fp, key, allowed(2000, "ada"), 1000);
        assert!(matches!(memo.find(fp, 1000), Found::Allowed(_)));
        // An idle instance's clock stepped back, unseen: 1001 ms left.
        let mut idle = Memo::new((1, 2), 1000);
        idle.allow(fp, key, allowed(2000, "ada"), 1500);
        assert!(matches!(idle.find(fp, 1500), Found::Allowed(_)));
        idle.now_ms = 0;
        assert!(matches!(idle.find(fp, 999), Found::Key(_)));
    }

    #[test]
    fn the_memo_stays_within_its_bounds() {
        let keys = Keys::new("id");
        let mut memo = Memo::new((1, 2), 1_000_000);
        for i in 0..MEMO_ENTRIES + 10 {
            let creds = credentials(&[&[&format!("t-{i}")]]);
            let fp = memo.fingerprint(&creds);
            let decision = allowed(10, &format!("user-{i}"));
            memo.allow(fp, keys.digest(&creds), decision, 1);
            assert!(memo.remembered() <= MEMO_ENTRIES);
            assert!(matches!(memo.find(fp, 1), Found::Allowed(_)), "{i}");
        }
        assert!(memo.remembered() < MEMO_ENTRIES, "emptied when full");

        let mut memo = Memo::new((1, 2), 1_000_000);
        let big = "v".repeat(MEMO_BYTES / 8);
        let decision = || Allowed::new(10, None, [(0, big.as_str())]);
        for i in 0..20 {
            let creds = credentials(&[&[&format!("t-{i}")]]);
            let fp = memo.fingerprint(&creds);
            memo.allow(fp, keys.digest(&creds), decision(), 1);
            assert!(memo.bytes() <= MEMO_BYTES, "{i}: {}", memo.bytes());
            assert!(matches!(memo.find(fp, 1), Found::Allowed(_)), "{i}");
        }
        assert!(memo.remembered() < 8, "emptied when full");

        // Replacing a decision counts it once.
        let mut memo = Memo::new((1, 2), 1_000_000);
        let creds = credentials(&[&["t-0"]]);
        let fp = memo.fingerprint(&creds);
        memo.allow(fp, keys.digest(&creds), decision(), 1);
        let once = memo.bytes();
        memo.allow(fp, keys.digest(&creds), decision(), 1);
        assert_eq!(memo.bytes(), once);
        // One decision over the whole bound is not kept.
        let huge = "v".repeat(MEMO_BYTES + 1);
        memo.allow(
            fp,
            keys.digest(&creds),
            Allowed::new(10, None, [(0, &*huge)]),
            1,
        );
        assert_eq!(memo.bytes(), once);
    }
}
