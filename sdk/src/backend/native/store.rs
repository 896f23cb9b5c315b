//! One plugin's keys as the gateway keeps them: values, counters and
//! token buckets in one set of keys, within the gateway's bounds
//! ([`state::MAX_KEYS`], [`state::MAX_BYTES`]) and with its refusals
//! ([`Refusal`]: a malformed operation, or no room). A plugin has one
//! store for its shared state and one for its fleet keys, apart. Time is
//! the caller's: every operation takes the test clock's reading.

use std::collections::HashMap;
use std::time::Duration;

use crate::limits::state;
use crate::types::BucketOutcome;

/// A key's value, as the gateway keeps it: bytes, a counter (which reads
/// as its decimal text) or a token bucket (which reads as nothing).
enum Value {
    Bytes(Vec<u8>),
    Counter(i64),
    Bucket(Bucket),
}

struct Stored {
    value: Value,
    expires_at_ms: Option<u64>,
}

impl Stored {
    fn live(&self, now_ms: u64) -> bool {
        self.expires_at_ms.is_none_or(|at| at > now_ms)
    }

    /// What the key and its value count against [`state::MAX_BYTES`], as
    /// the gateway counts them.
    fn size(&self, key: &str) -> usize {
        key.len()
            + match &self.value {
                Value::Bytes(b) => b.len(),
                Value::Counter(_) | Value::Bucket(_) => 16,
            }
    }
}

/// A continuous-refill token bucket.
struct Bucket {
    /// Thousandths of a token, so refills of a fraction of a token per
    /// millisecond are exact.
    milli_tokens: u128,
    updated_ms: u64,
}

impl Bucket {
    /// Refills the bucket up to `now_ms`, then takes `cost` tokens if it
    /// holds them. Returns the outcome and when the bucket is full again
    /// (`None`: never, it does not refill). A cost above the capacity can
    /// never be met: refused, retry after `u64::MAX` ms.
    fn take(
        &mut self,
        now_ms: u64,
        capacity: u64,
        refill: u64,
        cost: u64,
    ) -> (BucketOutcome, Option<u64>) {
        let full = u128::from(capacity) * 1000;
        // One token per second is one milli-token per millisecond.
        let elapsed = u128::from(now_ms.saturating_sub(self.updated_ms));
        self.milli_tokens = (self.milli_tokens + elapsed * u128::from(refill)).min(full);
        self.updated_ms = now_ms;
        let need = u128::from(cost) * 1000;
        let allowed = self.milli_tokens >= need;
        let retry_after_ms = if allowed {
            0
        } else if refill == 0 || cost > capacity {
            u64::MAX
        } else {
            let missing = need - self.milli_tokens;
            u64::try_from(missing.div_ceil(u128::from(refill))).unwrap_or(u64::MAX)
        };
        if allowed {
            self.milli_tokens -= need;
        }
        let outcome = BucketOutcome {
            allowed,
            remaining: (self.milli_tokens / 1000) as u64,
            retry_after: Duration::from_millis(retry_after_ms),
        };
        let to_full = full - self.milli_tokens;
        let full_at = if to_full == 0 {
            Some(now_ms)
        } else if refill == 0 {
            None
        } else {
            u64::try_from(to_full.div_ceil(u128::from(refill)))
                .ok()
                .and_then(|ms| now_ms.checked_add(ms))
        };
        (outcome, full_at)
    }
}

/// When a key written at `now_ms` with `ttl_ms` expires: never without a
/// TTL, nor when it reaches past what the clock can hold.
fn expiry(ttl_ms: Option<u64>, now_ms: u64) -> Option<u64> {
    now_ms.checked_add(ttl_ms?)
}

fn check_key(key: &str) -> Result<(), Refusal> {
    if key.is_empty() || key.len() > state::MAX_KEY_BYTES {
        return Err(Refusal::Invalid(format!(
            "state keys are 1 to {} bytes",
            state::MAX_KEY_BYTES
        )));
    }
    Ok(())
}

/// Why the store refused an operation, as the gateway's text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The operation itself: its key, a value or bucket over its bound, a
    /// key holding another kind of value, a counter's overflow.
    Invalid(String),
    /// No room: the keys or the bytes the plugin may hold.
    Full(String),
}

/// The text `host` gives a plugin, which does not tell the two apart.
impl From<Refusal> for String {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::Invalid(why) | Refusal::Full(why) => why,
        }
    }
}

/// One plugin's keys and the bytes they count.
#[derive(Default)]
pub(crate) struct Store {
    map: HashMap<String, Stored>,
    bytes: usize,
    /// No sweep runs before this (test clock, ms).
    next_sweep_ms: u64,
}

impl Store {
    pub(crate) fn get(&mut self, key: &str, now_ms: u64) -> Option<Vec<u8>> {
        match &self.live(key, now_ms)?.value {
            Value::Bytes(b) => Some(b.clone()),
            Value::Counter(n) => Some(n.to_string().into_bytes()),
            Value::Bucket(_) => None,
        }
    }

    pub(crate) fn set(
        &mut self,
        key: &str,
        value: &[u8],
        ttl_ms: Option<u64>,
        now_ms: u64,
    ) -> Result<(), Refusal> {
        check_key(key)?;
        if value.len() > state::MAX_VALUE_BYTES {
            return Err(Refusal::Invalid(format!(
                "state values are at most {} bytes",
                state::MAX_VALUE_BYTES
            )));
        }
        let slot = Stored {
            value: Value::Bytes(value.to_vec()),
            expires_at_ms: expiry(ttl_ms, now_ms),
        };
        self.put(key, slot, now_ms)
    }

    pub(crate) fn delete(&mut self, key: &str, now_ms: u64) -> bool {
        self.live(key, now_ms).is_some() && self.remove(key).is_some()
    }

    /// As the gateway does: a counter made by this call expires after
    /// `ttl_ms` when given; adding to a live counter keeps its expiry.
    pub(crate) fn increment(
        &mut self,
        key: &str,
        delta: i64,
        ttl_ms: Option<u64>,
        now_ms: u64,
    ) -> Result<i64, Refusal> {
        check_key(key)?;
        if let Some(stored) = self.live(key, now_ms) {
            return match &mut stored.value {
                Value::Counter(n) => {
                    *n = (n.checked_add(delta))
                        .ok_or_else(|| Refusal::Invalid("counter overflow".into()))?;
                    Ok(*n)
                }
                _ => Err(Refusal::Invalid(format!(
                    "key `{key}` does not hold a counter"
                ))),
            };
        }
        let slot = Stored {
            value: Value::Counter(delta),
            expires_at_ms: expiry(ttl_ms, now_ms),
        };
        self.put(key, slot, now_ms)?;
        Ok(delta)
    }

    /// Takes from the bucket `key`, created full. As in the gateway, a
    /// bucket expires when it is full again (it answers as a missing one
    /// would), so a full one holds no key.
    pub(crate) fn take(
        &mut self,
        key: &str,
        capacity: u64,
        refill: u64,
        cost: u64,
        now_ms: u64,
    ) -> Result<BucketOutcome, Refusal> {
        check_key(key)?;
        if capacity == 0 || capacity > state::MAX_BUCKET || refill > state::MAX_BUCKET {
            return Err(Refusal::Invalid(format!(
                "bucket capacity must be 1 to {0} and refill at most {0} per second",
                state::MAX_BUCKET
            )));
        }
        if let Some(stored) = self.live(key, now_ms) {
            let Value::Bucket(bucket) = &mut stored.value else {
                return Err(Refusal::Invalid(format!(
                    "key `{key}` does not hold a token bucket"
                )));
            };
            let (outcome, full_at) = bucket.take(now_ms, capacity, refill, cost);
            stored.expires_at_ms = full_at;
            return Ok(outcome);
        }
        let mut bucket = Bucket {
            milli_tokens: u128::from(capacity) * 1000,
            updated_ms: now_ms,
        };
        let (outcome, full_at) = bucket.take(now_ms, capacity, refill, cost);
        let slot = Stored {
            value: Value::Bucket(bucket),
            expires_at_ms: full_at,
        };
        if slot.live(now_ms) {
            self.put(key, slot, now_ms)?;
        }
        Ok(outcome)
    }

    /// `key`'s slot if it is live; an expired one is dropped.
    fn live(&mut self, key: &str, now_ms: u64) -> Option<&mut Stored> {
        if self.map.get(key).is_some_and(|s| !s.live(now_ms)) {
            self.remove(key);
        }
        self.map.get_mut(key)
    }

    fn remove(&mut self, key: &str) -> Option<Stored> {
        let old = self.map.remove(key)?;
        self.bytes -= old.size(key);
        Some(old)
    }

    /// Drops the expired keys, as the gateway does: only when some key has
    /// expired, and at most once per [`state::SWEEP_INTERVAL`].
    fn sweep(&mut self, now_ms: u64) {
        if now_ms < self.next_sweep_ms {
            return;
        }
        let expired: Vec<String> = (self.map.iter())
            .filter(|(_, s)| !s.live(now_ms))
            .map(|(k, _)| k.clone())
            .collect();
        if expired.is_empty() {
            return;
        }
        let interval = state::SWEEP_INTERVAL.as_millis() as u64;
        self.next_sweep_ms = now_ms.saturating_add(interval);
        for key in expired {
            self.remove(&key);
        }
    }

    /// Whether a slot of `size` bytes fits in place of whatever `key` holds
    /// (for a new key, one more key must fit too); expired keys are swept
    /// (see [`Store::sweep`]) before the answer is no, as in the gateway.
    fn make_room(&mut self, key: &str, size: usize, now_ms: u64) -> Result<(), Refusal> {
        let full = |keys: &Store| !keys.map.contains_key(key) && keys.map.len() >= state::MAX_KEYS;
        if full(self) {
            self.sweep(now_ms);
            if full(self) {
                return Err(Refusal::Full(format!(
                    "this plugin already holds {} keys, the most allowed",
                    state::MAX_KEYS
                )));
            }
        }
        let fits = |keys: &Store| {
            let old = keys.map.get(key).map_or(0, |s| s.size(key));
            keys.bytes - old + size <= state::MAX_BYTES
        };
        if !fits(self) {
            self.sweep(now_ms);
            if !fits(self) {
                return Err(Refusal::Full(format!(
                    "this plugin's state would exceed {} bytes",
                    state::MAX_BYTES
                )));
            }
        }
        Ok(())
    }

    /// Stores `slot` under `key` in place of what it held, if it fits.
    fn put(&mut self, key: &str, slot: Stored, now_ms: u64) -> Result<(), Refusal> {
        self.make_room(key, slot.size(key), now_ms)?;
        self.remove(key);
        self.bytes += slot.size(key);
        self.map.insert(key.to_owned(), slot);
        Ok(())
    }
}
