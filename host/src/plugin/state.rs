//! Shared state given to plugins: a key/value store per plugin, backed by
//! `dashmap`, with TTLs, atomic counters and token buckets, plus the named
//! counters the admin metrics will expose. Each plugin gets its own
//! [`Namespace`] when it is loaded; a plugin's host calls can only reach
//! that one, so no key of one plugin is visible to another, whatever its
//! name. Every size and count is bounded (see [`limits`]).

use std::sync::Arc;
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
    /// Most keys one plugin may hold at once (expired keys are swept when
    /// this is reached).
    pub const MAX_KEYS: usize = 10_000;
    /// Most bytes of keys and values one plugin may hold at once.
    pub const MAX_BYTES: usize = 16 * 1024 * 1024;
    /// Largest bucket capacity and refill rate.
    pub const MAX_BUCKET: u64 = 1_000_000_000;
    /// Longest counter name, in bytes, and most counters per plugin.
    pub const MAX_COUNTER_NAME_BYTES: usize = 64;
    pub const MAX_COUNTERS: usize = 1_000;
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
#[derive(Default)]
pub struct Namespace {
    map: DashMap<String, Slot>,
    bytes: AtomicUsize,
}

impl std::fmt::Debug for Namespace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Namespace")
            .field("keys", &self.map.len())
            .field("bytes", &self.bytes.load(Ordering::Relaxed))
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

impl Namespace {
    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        let now = Instant::now();
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
        check_key(key)?;
        if value.len() > limits::MAX_VALUE_BYTES {
            return Err(format!(
                "state values are at most {} bytes",
                limits::MAX_VALUE_BYTES
            ));
        }
        let now = Instant::now();
        let slot = Slot {
            value: Value::Bytes(value.to_vec()),
            expires: ttl.map(|t| now + t),
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

    pub fn increment(&self, key: &str, delta: i64) -> Result<i64, String> {
        check_key(key)?;
        let now = Instant::now();
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
            expires: None,
        };
        self.make_room(key, fresh.size(key), now)?;
        // The entry holds the shard lock, so two increments of a new key
        // cannot both create it. No other map call may happen under it.
        match self.map.entry(key.to_owned()) {
            Entry::Occupied(mut e) if e.get().live(now) => add(&mut e.get_mut().value),
            Entry::Occupied(mut e) => {
                self.bytes.fetch_add(fresh.size(key), Ordering::Relaxed);
                let old = e.insert(fresh);
                self.bytes.fetch_sub(old.size(key), Ordering::Relaxed);
                Ok(delta)
            }
            Entry::Vacant(v) => {
                self.bytes.fetch_add(fresh.size(key), Ordering::Relaxed);
                v.insert(fresh);
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
        check_key(key)?;
        if capacity == 0 || capacity > limits::MAX_BUCKET || refill_per_second > limits::MAX_BUCKET
        {
            return Err(format!(
                "bucket capacity must be 1 to {0} and refill at most {0} per second",
                limits::MAX_BUCKET
            ));
        }
        let now = Instant::now();
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
        if let Some(mut slot) = self.map.get_mut(key)
            && slot.live(now)
        {
            return match &mut slot.value {
                Value::Bucket { tokens, last } => Ok(outcome(tokens, last)),
                _ => Err(format!("key `{key}` does not hold a token bucket")),
            };
        }
        let mut tokens = capacity as f64;
        let mut last = now;
        let result = outcome(&mut tokens, &mut last);
        self.put(
            key,
            Slot {
                value: Value::Bucket { tokens, last },
                expires: None,
            },
            now,
        )?;
        Ok(result)
    }

    /// Inserts or replaces a key within the namespace's bounds.
    fn put(&self, key: &str, slot: Slot, now: Instant) -> Result<(), String> {
        let size = slot.size(key);
        self.make_room(key, size, now)?;
        self.bytes.fetch_add(size, Ordering::Relaxed);
        if let Some(old) = self.map.insert(key.to_owned(), slot) {
            self.bytes.fetch_sub(old.size(key), Ordering::Relaxed);
        }
        Ok(())
    }

    /// Whether `size` more bytes (and, for a new key, one more key) fit;
    /// sweeps expired keys once before saying no. Keeps no lock.
    fn make_room(&self, key: &str, size: usize, now: Instant) -> Result<(), String> {
        if !self.map.contains_key(key) && self.map.len() >= limits::MAX_KEYS {
            self.sweep(now);
            if self.map.len() >= limits::MAX_KEYS {
                return Err(format!(
                    "this plugin already holds {} keys, the most allowed",
                    limits::MAX_KEYS
                ));
            }
        }
        if self.bytes.load(Ordering::Relaxed) + size > limits::MAX_BYTES {
            self.sweep(now);
            if self.bytes.load(Ordering::Relaxed) + size > limits::MAX_BYTES {
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

    fn sweep(&self, now: Instant) {
        self.map.retain(|k, s| {
            let keep = s.live(now);
            if !keep {
                self.bytes.fetch_sub(s.size(k), Ordering::Relaxed);
            }
            keep
        });
    }
}

/// Named counters plugins add to, per plugin; the admin metrics read them
/// with [`Counters::snapshot`].
#[derive(Debug, Default)]
pub struct Counters {
    map: DashMap<(Arc<str>, String), AtomicU64>,
    per_plugin: DashMap<Arc<str>, usize>,
}

impl Counters {
    /// Adds to a counter; names that are too long, or new names past the
    /// per-plugin limit, are ignored (and reported by the caller's log).
    pub fn add(&self, plugin: &Arc<str>, name: &str, delta: u64) -> Result<(), String> {
        if name.is_empty() || name.len() > limits::MAX_COUNTER_NAME_BYTES {
            return Err(format!(
                "counter names are 1 to {} bytes",
                limits::MAX_COUNTER_NAME_BYTES
            ));
        }
        let key = (plugin.clone(), name.to_owned());
        if let Some(c) = self.map.get(&key) {
            c.fetch_add(delta, Ordering::Relaxed);
            return Ok(());
        }
        let mut n = self.per_plugin.entry(plugin.clone()).or_insert(0);
        if *n >= limits::MAX_COUNTERS {
            return Err(format!(
                "at most {} counters per plugin",
                limits::MAX_COUNTERS
            ));
        }
        let mut fresh = false;
        self.map
            .entry(key)
            .or_insert_with(|| {
                fresh = true;
                AtomicU64::new(0)
            })
            .fetch_add(delta, Ordering::Relaxed);
        if fresh {
            *n += 1;
        }
        Ok(())
    }

    /// Every counter as (plugin, name, value), sorted.
    pub fn snapshot(&self) -> Vec<(String, String, u64)> {
        let mut out: Vec<_> = self
            .map
            .iter()
            .map(|e| {
                (
                    e.key().0.to_string(),
                    e.key().1.clone(),
                    e.value().load(Ordering::Relaxed),
                )
            })
            .collect();
        out.sort();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_expires_and_types_do_not_mix() {
        let ns = Namespace::default();
        ns.set("a", b"1", Some(Duration::from_millis(0))).unwrap();
        assert_eq!(ns.get("a"), None, "a zero TTL is already expired");
        ns.set("b", b"x", None).unwrap();
        assert!(ns.increment("b", 1).is_err());
        assert_eq!(ns.increment("c", 2), Ok(2));
        assert_eq!(ns.increment("c", -5), Ok(-3));
        assert_eq!(ns.get("c"), Some(b"-3".to_vec()));
        assert!(ns.delete("c"));
        assert!(!ns.delete("c"));
    }

    #[test]
    fn bounds_hold() {
        let ns = Namespace::default();
        assert!(
            ns.set(&"k".repeat(limits::MAX_KEY_BYTES + 1), b"", None)
                .is_err()
        );
        assert!(
            ns.set("k", &vec![0; limits::MAX_VALUE_BYTES + 1], None)
                .is_err()
        );
        for i in 0..limits::MAX_KEYS {
            ns.set(&i.to_string(), b"", None).unwrap();
        }
        assert!(ns.set("one-more", b"", None).is_err());
        ns.set("0", b"replacing is fine", None).unwrap();
    }

    #[test]
    fn bucket_refuses_when_empty() {
        let ns = Namespace::default();
        assert!(ns.take("b", 2, 0, 1).unwrap().allowed);
        let second = ns.take("b", 2, 0, 1).unwrap();
        assert!(second.allowed);
        assert_eq!(second.remaining, 0);
        let third = ns.take("b", 2, 0, 1).unwrap();
        assert!(!third.allowed);
        assert_eq!(third.retry_after_ms, u64::MAX);
        let slow = ns.take("s", 1, 10, 1).unwrap();
        assert!(slow.allowed);
        let refused = ns.take("s", 1, 10, 1).unwrap();
        assert!(!refused.allowed);
        assert!(refused.retry_after_ms <= 100, "{refused:?}");
    }

    #[test]
    fn counters_are_per_plugin() {
        let c = Counters::default();
        let a: Arc<str> = "a".into();
        let b: Arc<str> = "b".into();
        c.add(&a, "hits", 2).unwrap();
        c.add(&a, "hits", 3).unwrap();
        c.add(&b, "hits", 1).unwrap();
        assert_eq!(
            c.snapshot(),
            vec![
                ("a".into(), "hits".into(), 5),
                ("b".into(), "hits".into(), 1)
            ]
        );
    }
}
