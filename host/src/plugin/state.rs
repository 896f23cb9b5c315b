//! Shared state given to plugins: a key/value store per plugin, backed by
//! `dashmap`, with TTLs, atomic counters and token buckets. (The named
//! counters of `counter-add` are metrics, kept with the plugin's other
//! metrics in `crate::metrics::plugin`.) Each plugin gets its own
//! [`Namespace`] when it is loaded; a plugin's host calls can only reach
//! that one, so no key of one plugin is visible to another, whatever its
//! name. Every size and count is bounded (see [`limits`]).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use dashmap::mapref::entry::Entry;

/// Bounds on what one plugin may keep; documented in docs/plugins.md.
pub mod limits {
    /// Longest key, in bytes.
    pub const MAX_KEY_BYTES: usize = 256;
    /// Longest value, in bytes.
    pub const MAX_VALUE_BYTES: usize = 64 * 1024;
    /// Most keys one plugin may hold at once (expired keys, token buckets
    /// that are full again included, are swept when this is reached).
    pub const MAX_KEYS: usize = 10_000;
    /// Shortest time between two sweeps of one plugin's expired keys.
    pub const SWEEP_INTERVAL: std::time::Duration = std::time::Duration::from_millis(100);
    /// Most bytes of keys and values one plugin may hold at once.
    pub const MAX_BYTES: usize = 16 * 1024 * 1024;
    /// Largest bucket capacity and refill rate.
    pub const MAX_BUCKET: u64 = 1_000_000_000;
    /// Longest `counter-add` name, in bytes, and most such counters per
    /// plugin: kept, and checked, with the metrics that expose them.
    pub use crate::metrics::plugin::{MAX_COUNTER_NAME_BYTES, MAX_COUNTERS};
}

enum Value {
    Bytes(Vec<u8>),
    Counter(i64),
    Bucket { tokens: f64, last: Instant },
}

struct Slot {
    value: Value,
    expires: Option<Instant>,
}

impl Slot {
    fn live(&self, now: Instant) -> bool {
        self.expires.is_none_or(|e| e > now)
    }

    fn size(&self, key: &str) -> usize {
        key.len()
            + match &self.value {
                Value::Bytes(b) => b.len(),
                _ => 16,
            }
    }
}

/// The answer of a token-bucket take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bucket {
    pub allowed: bool,
    pub remaining: u64,
    pub retry_after_ms: u64,
}

/// One plugin's keys.
pub struct Namespace {
    map: DashMap<String, Slot>,
    bytes: AtomicUsize,
    /// The origin of the nanosecond times below.
    base: Instant,
    /// No slot expires before this (nanoseconds since `base`; `u64::MAX`
    /// when none expires). Only ever too early, never too late: a sweep
    /// before it would free nothing, so none runs.
    next_expiry: AtomicU64,
    /// No sweep runs before this (nanoseconds since `base`).
    next_sweep: AtomicU64,
    /// Sweeps run so far.
    sweeps: AtomicU64,
    /// The plugin's outbound calls under way (`super::calls`): kept with
    /// its state so every version and instance counts against one bound.
    pub(crate) calls_in_flight: std::sync::Arc<AtomicUsize>,
}

impl Default for Namespace {
    fn default() -> Self {
        Namespace {
            map: DashMap::new(),
            bytes: AtomicUsize::new(0),
            base: Instant::now(),
            next_expiry: AtomicU64::new(u64::MAX),
            next_sweep: AtomicU64::new(0),
            sweeps: AtomicU64::new(0),
            calls_in_flight: std::sync::Arc::default(),
        }
    }
}

impl std::fmt::Debug for Namespace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Namespace")
            .field("keys", &self.map.len())
            .field("bytes", &self.bytes.load(Ordering::Relaxed))
            .field("sweeps", &self.sweeps.load(Ordering::Relaxed))
            .finish()
    }
}

fn check_key(key: &str) -> Result<(), String> {
    if key.is_empty() || key.len() > limits::MAX_KEY_BYTES {
        return Err(format!(
            "state keys are 1 to {} bytes",
            limits::MAX_KEY_BYTES
        ));
    }
    Ok(())
}

/// When a bucket left with `tokens` at `now` is full again: from then on
/// it answers exactly as a missing bucket (created full) would, so it may
/// be dropped. Rounded up to the millisecond; `None` if it never refills.
/// When a key written now with `ttl` expires: never without one, nor when
/// the TTL (which the plugin chooses) reaches past what the clock can
/// represent.
fn expiry(ttl: Option<Duration>, now: Instant) -> Option<Instant> {
    now.checked_add(ttl?)
}

fn bucket_expiry(
    tokens: f64,
    capacity: u64,
    refill_per_second: u64,
    now: Instant,
) -> Option<Instant> {
    let missing = capacity as f64 - tokens;
    if missing <= 0.0 {
        return Some(now);
    }
    if refill_per_second == 0 {
        return None;
    }
    // At most 10⁹ tokens at 1 per second: 10¹² ms, well within u64.
    let ms = (missing / refill_per_second as f64 * 1000.0).ceil() as u64;
    now.checked_add(Duration::from_millis(ms))
}

impl Namespace {
    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        self.get_at(key, Instant::now())
    }

    fn get_at(&self, key: &str, now: Instant) -> Option<Vec<u8>> {
        let slot = self.map.get(key)?;
        if !slot.live(now) {
            drop(slot);
            self.remove_expired(key, now);
            return None;
        }
        match &slot.value {
            Value::Bytes(b) => Some(b.clone()),
            Value::Counter(n) => Some(n.to_string().into_bytes()),
            Value::Bucket { .. } => None,
        }
    }

    pub fn set(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> Result<(), String> {
        self.set_at(key, value, ttl, Instant::now())
    }

    fn set_at(
        &self,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
        now: Instant,
    ) -> Result<(), String> {
        check_key(key)?;
        if value.len() > limits::MAX_VALUE_BYTES {
            return Err(format!(
                "state values are at most {} bytes",
                limits::MAX_VALUE_BYTES
            ));
        }
        let slot = Slot {
            value: Value::Bytes(value.to_vec()),
            expires: expiry(ttl, now),
        };
        self.put(key, slot, now)
    }

    pub fn delete(&self, key: &str) -> bool {
        match self.map.remove(key) {
            Some((k, slot)) => {
                self.bytes.fetch_sub(slot.size(&k), Ordering::Relaxed);
                slot.live(Instant::now())
            }
            None => false,
        }
    }

    /// Adds `delta` to the counter `key`, creating it at 0; a counter this
    /// call creates expires after `ttl` when one is given (a fixed
    /// window), and adding to a live counter keeps its expiry.
    pub fn increment(&self, key: &str, delta: i64, ttl: Option<Duration>) -> Result<i64, String> {
        self.increment_at(key, delta, ttl, Instant::now())
    }

    fn increment_at(
        &self,
        key: &str,
        delta: i64,
        ttl: Option<Duration>,
        now: Instant,
    ) -> Result<i64, String> {
        check_key(key)?;
        let add = |v: &mut Value| match v {
            Value::Counter(n) => {
                *n = n.checked_add(delta).ok_or("counter overflow")?;
                Ok(*n)
            }
            _ => Err(format!("key `{key}` does not hold a counter")),
        };
        if let Some(mut slot) = self.map.get_mut(key)
            && slot.live(now)
        {
            return add(&mut slot.value);
        }
        let fresh = Slot {
            value: Value::Counter(delta),
            expires: expiry(ttl, now),
        };
        self.make_room(key, fresh.size(key), now)?;
        // The entry holds the shard lock, so two increments of a new key
        // cannot both create it. No other map call may happen under it.
        match self.map.entry(key.to_owned()) {
            Entry::Occupied(mut e) if e.get().live(now) => add(&mut e.get_mut().value),
            other => {
                self.fill(other, key, fresh);
                Ok(delta)
            }
        }
    }

    pub fn take(
        &self,
        key: &str,
        capacity: u64,
        refill_per_second: u64,
        cost: u64,
    ) -> Result<Bucket, String> {
        self.take_at(key, capacity, refill_per_second, cost, Instant::now())
    }

    fn take_at(
        &self,
        key: &str,
        capacity: u64,
        refill_per_second: u64,
        cost: u64,
        now: Instant,
    ) -> Result<Bucket, String> {
        check_key(key)?;
        if capacity == 0 || capacity > limits::MAX_BUCKET || refill_per_second > limits::MAX_BUCKET
        {
            return Err(format!(
                "bucket capacity must be 1 to {0} and refill at most {0} per second",
                limits::MAX_BUCKET
            ));
        }
        let outcome = |tokens: &mut f64, last: &mut Instant| {
            let elapsed = now.saturating_duration_since(*last).as_secs_f64();
            *tokens = (*tokens + elapsed * refill_per_second as f64).min(capacity as f64);
            *last = now;
            let cost = cost as f64;
            if *tokens >= cost {
                *tokens -= cost;
                Bucket {
                    allowed: true,
                    remaining: *tokens as u64,
                    retry_after_ms: 0,
                }
            } else {
                let retry_after_ms = if refill_per_second == 0 || cost > capacity as f64 {
                    u64::MAX
                } else {
                    (((cost - *tokens) / refill_per_second as f64) * 1000.0).ceil() as u64
                };
                Bucket {
                    allowed: false,
                    remaining: *tokens as u64,
                    retry_after_ms,
                }
            }
        };
        // Takes from a bucket and moves its expiry to when it is full again.
        let take = |slot: &mut Slot| {
            let Value::Bucket { tokens, last } = &mut slot.value else {
                return Err(format!("key `{key}` does not hold a token bucket"));
            };
            let result = outcome(tokens, last);
            slot.expires = bucket_expiry(*tokens, capacity, refill_per_second, now);
            Ok(result)
        };
        // An expired bucket had refilled completely, so it is treated as
        // missing: a new full one is made in its place.
        if let Some(mut slot) = self.map.get_mut(key)
            && slot.live(now)
        {
            let result = take(&mut slot);
            let expires = slot.expires;
            drop(slot);
            self.note_expiry(expires);
            return result;
        }
        let mut fresh = Slot {
            value: Value::Bucket {
                tokens: capacity as f64,
                last: now,
            },
            expires: None,
        };
        let result = take(&mut fresh)?;
        if !fresh.live(now) {
            // Still full (nothing taken): no different from no bucket.
            return Ok(result);
        }
        let expires = fresh.expires;
        self.make_room(key, fresh.size(key), now)?;
        // As in `increment`: a concurrent take that made the bucket first
        // is taken from, not overwritten.
        let result = match self.map.entry(key.to_owned()) {
            Entry::Occupied(mut e) if e.get().live(now) => {
                let result = take(e.get_mut());
                let expires = e.get().expires;
                drop(e);
                self.note_expiry(expires);
                return result;
            }
            other => {
                self.fill(other, key, fresh);
                Ok(result)
            }
        };
        self.note_expiry(expires);
        result
    }

    /// Inserts or replaces a key within the namespace's bounds.
    /// Stores `fresh` in an entry that is missing or holds an expired
    /// slot, keeping the byte count.
    fn fill(&self, entry: Entry<'_, String, Slot>, key: &str, fresh: Slot) {
        self.bytes.fetch_add(fresh.size(key), Ordering::Relaxed);
        match entry {
            Entry::Occupied(mut e) => {
                let old = e.insert(fresh);
                self.bytes.fetch_sub(old.size(key), Ordering::Relaxed);
            }
            Entry::Vacant(v) => {
                v.insert(fresh);
            }
        }
    }

    fn put(&self, key: &str, slot: Slot, now: Instant) -> Result<(), String> {
        let size = slot.size(key);
        let expires = slot.expires;
        self.make_room(key, size, now)?;
        self.bytes.fetch_add(size, Ordering::Relaxed);
        if let Some(old) = self.map.insert(key.to_owned(), slot) {
            self.bytes.fetch_sub(old.size(key), Ordering::Relaxed);
        }
        self.note_expiry(expires);
        Ok(())
    }

    /// Whether a slot of `size` bytes fits in place of whatever `key` now
    /// holds (for a new key, one more key must fit too); sweeps expired
    /// keys, if [`Namespace::sweep`] lets it, before saying no. Keeps no
    /// lock, so writers racing for the last room can each get it: the
    /// bounds are exceeded by at most one slot per concurrent writer.
    fn make_room(&self, key: &str, size: usize, now: Instant) -> Result<(), String> {
        let old = self.map.get(key).map(|s| s.size(key));
        if old.is_none() && self.map.len() >= limits::MAX_KEYS {
            self.sweep(now);
            if self.map.len() >= limits::MAX_KEYS {
                return Err(format!(
                    "this plugin already holds {} keys, the most allowed",
                    limits::MAX_KEYS
                ));
            }
        }
        let fits = || {
            self.bytes
                .load(Ordering::Relaxed)
                .saturating_sub(old.unwrap_or(0))
                + size
                <= limits::MAX_BYTES
        };
        if !fits() {
            self.sweep(now);
            if !fits() {
                return Err(format!(
                    "this plugin's state would exceed {} bytes",
                    limits::MAX_BYTES
                ));
            }
        }
        Ok(())
    }

    fn remove_expired(&self, key: &str, now: Instant) {
        if let Some((k, slot)) = self.map.remove_if(key, |_, s| !s.live(now)) {
            self.bytes.fetch_sub(slot.size(&k), Ordering::Relaxed);
        }
    }

    /// Nanoseconds from `base` to `t` (0 before it).
    fn nanos(&self, t: Instant) -> u64 {
        u64::try_from(t.saturating_duration_since(self.base).as_nanos()).unwrap_or(u64::MAX)
    }

    /// Records that a slot now expires at `expires`. Called after the slot
    /// is written, so a sweep either sees the slot or sees this.
    fn note_expiry(&self, expires: Option<Instant>) {
        if let Some(e) = expires {
            let e = self.nanos(e);
            if e < self.next_expiry.load(Ordering::Relaxed) {
                self.next_expiry.fetch_min(e, Ordering::Relaxed);
            }
        }
    }

    /// Drops the expired keys. A full namespace would otherwise sweep on
    /// every write of a new key, write-locking every shard each time; so a
    /// sweep runs only once something can have expired, at most once every
    /// [`limits::SWEEP_INTERVAL`], and only one at a time.
    fn sweep(&self, now: Instant) {
        let now_ns = self.nanos(now);
        if now_ns < self.next_expiry.load(Ordering::Relaxed) {
            return;
        }
        let not_before = self.next_sweep.load(Ordering::Relaxed);
        let interval = u64::try_from(limits::SWEEP_INTERVAL.as_nanos()).unwrap_or(u64::MAX);
        if now_ns < not_before
            || self
                .next_sweep
                .compare_exchange(
                    not_before,
                    now_ns.saturating_add(interval),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_err()
        {
            return;
        }
        self.sweeps.fetch_add(1, Ordering::Relaxed);
        // Writes from here on record their expiry again; the ones before
        // are seen by `retain`.
        self.next_expiry.store(u64::MAX, Ordering::Relaxed);
        let mut earliest = u64::MAX;
        self.map.retain(|k, s| {
            let keep = s.live(now);
            if !keep {
                self.bytes.fetch_sub(s.size(k), Ordering::Relaxed);
            } else if let Some(e) = s.expires {
                earliest = earliest.min(self.nanos(e));
            }
            keep
        });
        self.next_expiry.fetch_min(earliest, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests;
