//! The native side of the seam: the in-memory host every SDK call reaches
//! when not compiled for Wasm. Services act on the [`Env`] of the
//! [`TestHost`](super::TestHost) currently running a phase on this thread,
//! or on a per-thread default environment when none is (doc examples, and
//! unit tests of a plugin's helper functions).

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::time::Duration;

use super::headers::Headers;
use crate::log::Level;
use crate::state::BucketOutcome;
use crate::{context, log, metrics, state, validate};

/// The default clock of a test environment: 2023-11-14T22:13:20Z. Fixed, so
/// tests involving time are deterministic until they move the clock.
pub(crate) const DEFAULT_NOW_MS: u64 = 1_700_000_000_000;

fn check_key(key: &str) -> Result<(), String> {
    if key.is_empty() || key.len() > state::MAX_KEY_BYTES {
        return Err(format!(
            "state keys are 1 to {} bytes",
            state::MAX_KEY_BYTES
        ));
    }
    Ok(())
}

/// One line a plugin logged.
///
/// # Example
///
/// ```
/// use weir_sdk::log::Level;
/// use weir_sdk::testing::TestHost;
///
/// struct Hello;
/// impl weir_sdk::Plugin for Hello {
///     type Config = serde::de::IgnoredAny;
///     fn new(_: Self::Config) -> Result<Self, String> {
///         weir_sdk::log::warn("hello");
///         Ok(Hello)
///     }
/// }
/// let host = TestHost::<Hello>::new(serde_json::json!({})).unwrap();
/// let line = &host.logs()[0];
/// assert_eq!((line.level, line.message.as_str()), (Level::Warn, "hello"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// Its severity.
    pub level: Level,
    /// Its text.
    pub message: String,
}

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

struct Bucket {
    /// Thousandths of a token, so refills of a fraction of a token per
    /// millisecond are exact.
    milli_tokens: u128,
    updated_ms: u64,
}

/// When a key written at `now_ms` with `ttl_ms` expires: never without a
/// TTL, nor when it reaches past what the clock can hold.
fn expiry(ttl_ms: Option<u64>, now_ms: u64) -> Option<u64> {
    now_ms.checked_add(ttl_ms?)
}

/// One plugin's keys and the bytes they count, within the gateway's
/// bounds ([`state::MAX_KEYS`], [`state::MAX_BYTES`]).
#[derive(Default)]
struct Keys {
    map: HashMap<String, Stored>,
    bytes: usize,
    /// No sweep runs before this (test clock, ms).
    next_sweep_ms: u64,
}

impl Keys {
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
    /// (see [`Keys::sweep`]) before the answer is no, as in the gateway.
    fn make_room(&mut self, key: &str, size: usize, now_ms: u64) -> Result<(), String> {
        let full = |keys: &Keys| !keys.map.contains_key(key) && keys.map.len() >= state::MAX_KEYS;
        if full(self) {
            self.sweep(now_ms);
            if full(self) {
                return Err(format!(
                    "this plugin already holds {} keys, the most allowed",
                    state::MAX_KEYS
                ));
            }
        }
        let fits = |keys: &Keys| {
            let old = keys.map.get(key).map_or(0, |s| s.size(key));
            keys.bytes - old + size <= state::MAX_BYTES
        };
        if !fits(self) {
            self.sweep(now_ms);
            if !fits(self) {
                return Err(format!(
                    "this plugin's state would exceed {} bytes",
                    state::MAX_BYTES
                ));
            }
        }
        Ok(())
    }

    /// Stores `slot` under `key` in place of what it held, if it fits.
    fn put(&mut self, key: &str, slot: Stored, now_ms: u64) -> Result<(), String> {
        self.make_room(key, slot.size(key), now_ms)?;
        self.remove(key);
        self.bytes += slot.size(key);
        self.map.insert(key.to_owned(), slot);
        Ok(())
    }
}

/// Everything the host keeps for one plugin: state, context, logs, clock,
/// and what is left of the current phase call's budgets.
pub(crate) struct Env {
    pub(crate) now_ms: Cell<u64>,
    pub(crate) logs: RefCell<Vec<LogLine>>,
    pub(crate) context: RefCell<BTreeMap<String, String>>,
    pub(crate) counters: RefCell<BTreeMap<String, u64>>,
    keys: RefCell<Keys>,
    rng: Cell<u64>,
    /// Header bytes the current call may still write
    /// ([`validate::MAX_HEADER_BYTES_PER_CALL`] at its start).
    header_budget: Cell<usize>,
    /// Log lines the current call may still write
    /// ([`log::MAX_LINES_PER_CALL`] at its start).
    log_budget: Cell<usize>,
}

impl Env {
    pub(crate) fn new() -> Self {
        Self {
            now_ms: Cell::new(DEFAULT_NOW_MS),
            logs: RefCell::default(),
            context: RefCell::default(),
            counters: RefCell::default(),
            keys: RefCell::default(),
            rng: Cell::new(0x9E37_79B9_7F4A_7C15),
            header_budget: Cell::new(validate::MAX_HEADER_BYTES_PER_CALL),
            log_budget: Cell::new(log::MAX_LINES_PER_CALL),
        }
    }

    /// Starts a phase call: its budgets are full again, as the gateway
    /// refills them for every call.
    pub(crate) fn begin_call(&self) {
        self.header_budget.set(validate::MAX_HEADER_BYTES_PER_CALL);
        self.log_budget.set(log::MAX_LINES_PER_CALL);
    }

    /// Whether the current call may write one more log line; the line that
    /// uses the budget up becomes the host's warning that the rest are
    /// dropped, as in the gateway.
    fn may_log(&self) -> bool {
        match self.log_budget.get() {
            0 => false,
            1 => {
                self.log_budget.set(0);
                self.logs.borrow_mut().push(LogLine {
                    level: Level::Warn,
                    message: format!(
                        "further log lines of this plugin call are dropped (at most {} per call)",
                        log::MAX_LINES_PER_CALL
                    ),
                });
                false
            }
            n => {
                self.log_budget.set(n - 1);
                true
            }
        }
    }

    /// A warning of the host's about the current call (a dropped context
    /// entry or counter), within the call's log budget.
    fn warn(&self, message: String) {
        if self.may_log() {
            self.logs.borrow_mut().push(LogLine {
                level: Level::Warn,
                message,
            });
        }
    }

    /// Takes `cost` bytes from the current call's header budget.
    fn spend_header_bytes(&self, cost: usize) -> Result<(), String> {
        let left = self.header_budget.get();
        if cost > left {
            return Err(format!(
                "a plugin may set at most {} header bytes per call",
                validate::MAX_HEADER_BYTES_PER_CALL
            ));
        }
        self.header_budget.set(left - cost);
        Ok(())
    }

    pub(crate) fn state_get(&self, key: &str) -> Option<Vec<u8>> {
        let mut keys = self.keys.borrow_mut();
        match &keys.live(key, self.now_ms.get())?.value {
            Value::Bytes(b) => Some(b.clone()),
            Value::Counter(n) => Some(n.to_string().into_bytes()),
            Value::Bucket(_) => None,
        }
    }

    pub(crate) fn state_set(
        &self,
        key: &str,
        value: &[u8],
        ttl_ms: Option<u64>,
    ) -> Result<(), String> {
        check_key(key)?;
        if value.len() > state::MAX_VALUE_BYTES {
            return Err(format!(
                "state values are at most {} bytes",
                state::MAX_VALUE_BYTES
            ));
        }
        let now = self.now_ms.get();
        let slot = Stored {
            value: Value::Bytes(value.to_vec()),
            expires_at_ms: expiry(ttl_ms, now),
        };
        self.keys.borrow_mut().put(key, slot, now)
    }

    pub(crate) fn state_delete(&self, key: &str) -> bool {
        let mut keys = self.keys.borrow_mut();
        keys.live(key, self.now_ms.get()).is_some() && keys.remove(key).is_some()
    }

    /// As the gateway does: a counter made by this call expires after
    /// `ttl_ms` when given; adding to a live counter keeps its expiry.
    pub(crate) fn state_increment(
        &self,
        key: &str,
        delta: i64,
        ttl_ms: Option<u64>,
    ) -> Result<i64, String> {
        check_key(key)?;
        let now = self.now_ms.get();
        let mut keys = self.keys.borrow_mut();
        if let Some(stored) = keys.live(key, now) {
            return match &mut stored.value {
                Value::Counter(n) => {
                    *n = n.checked_add(delta).ok_or("counter overflow")?;
                    Ok(*n)
                }
                _ => Err(format!("key `{key}` does not hold a counter")),
            };
        }
        let slot = Stored {
            value: Value::Counter(delta),
            expires_at_ms: expiry(ttl_ms, now),
        };
        keys.put(key, slot, now)?;
        Ok(delta)
    }

    /// A continuous-refill token bucket, created full. A cost above the
    /// capacity can never be met: refused, retry after `u64::MAX` ms. As in
    /// the gateway, a bucket expires when it is full again (it answers as a
    /// missing one would), so a full one holds no key.
    fn take(
        &self,
        key: &str,
        capacity: u64,
        refill: u64,
        cost: u64,
    ) -> Result<BucketOutcome, String> {
        check_key(key)?;
        if capacity == 0 || capacity > state::MAX_BUCKET || refill > state::MAX_BUCKET {
            return Err(format!(
                "bucket capacity must be 1 to {0} and refill at most {0} per second",
                state::MAX_BUCKET
            ));
        }
        let now = self.now_ms.get();
        let full = u128::from(capacity) * 1000;
        // Takes from `bucket`; the outcome, and when the bucket is full
        // again.
        let take = |bucket: &mut Bucket| {
            // One token per second is one milli-token per millisecond.
            let elapsed = u128::from(now.saturating_sub(bucket.updated_ms));
            bucket.milli_tokens = (bucket.milli_tokens + elapsed * u128::from(refill)).min(full);
            bucket.updated_ms = now;
            let need = u128::from(cost) * 1000;
            let outcome = if bucket.milli_tokens >= need {
                bucket.milli_tokens -= need;
                BucketOutcome {
                    allowed: true,
                    remaining: (bucket.milli_tokens / 1000) as u64,
                    retry_after: Duration::ZERO,
                }
            } else {
                let missing = need - bucket.milli_tokens;
                let retry_after_ms = if refill == 0 || cost > capacity {
                    u64::MAX
                } else {
                    u64::try_from(missing.div_ceil(u128::from(refill))).unwrap_or(u64::MAX)
                };
                BucketOutcome {
                    allowed: false,
                    remaining: (bucket.milli_tokens / 1000) as u64,
                    retry_after: Duration::from_millis(retry_after_ms),
                }
            };
            let to_full = full - bucket.milli_tokens;
            let full_at = if to_full == 0 {
                Some(now)
            } else if refill == 0 {
                None
            } else {
                u64::try_from(to_full.div_ceil(u128::from(refill)))
                    .ok()
                    .and_then(|ms| now.checked_add(ms))
            };
            (outcome, full_at)
        };
        let mut keys = self.keys.borrow_mut();
        if let Some(stored) = keys.live(key, now) {
            let Value::Bucket(bucket) = &mut stored.value else {
                return Err(format!("key `{key}` does not hold a token bucket"));
            };
            let (outcome, full_at) = take(bucket);
            stored.expires_at_ms = full_at;
            return Ok(outcome);
        }
        let mut bucket = Bucket {
            milli_tokens: full,
            updated_ms: now,
        };
        let (outcome, full_at) = take(&mut bucket);
        let slot = Stored {
            value: Value::Bucket(bucket),
            expires_at_ms: full_at,
        };
        if slot.live(now) {
            keys.put(key, slot, now)?;
        }
        Ok(outcome)
    }

    /// splitmix64: deterministic, so tests that draw random numbers repeat.
    fn next_random(&self) -> u64 {
        let mut z = self.rng.get().wrapping_add(0x9E37_79B9_7F4A_7C15);
        self.rng.set(z);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub(crate) fn seed_random(&self, seed: u64) {
        self.rng.set(seed);
    }
}

thread_local! {
    static CURRENT: RefCell<Option<Rc<Env>>> = const { RefCell::new(None) };
    static DEFAULT: Rc<Env> = Rc::new(Env::new());
}

fn with_env<R>(f: impl FnOnce(&Env) -> R) -> R {
    let env = CURRENT
        .with(|current| current.borrow().clone())
        .unwrap_or_else(|| DEFAULT.with(Rc::clone));
    f(&env)
}

/// Makes an environment the current one until dropped.
pub(crate) struct Installed(Option<Rc<Env>>);

pub(crate) fn install(env: &Rc<Env>) -> Installed {
    Installed(CURRENT.with(|current| current.borrow_mut().replace(Rc::clone(env))))
}

impl Drop for Installed {
    fn drop(&mut self) {
        let previous = self.0.take();
        CURRENT.with(|current| *current.borrow_mut() = previous);
    }
}

/// Starts a phase call on the current environment (see [`Env::begin_call`]).
pub(crate) fn begin_call() {
    with_env(Env::begin_call)
}

/// Takes `cost` bytes from the current call's header budget.
pub(crate) fn spend_header_bytes(cost: usize) -> Result<(), String> {
    with_env(|env| env.spend_header_bytes(cost))
}

/// As in the gateway: within the call's line budget, cut to
/// [`log::MAX_MESSAGE_BYTES`] and kept to one line.
pub(crate) fn log(level: Level, message: &str) {
    with_env(|env| {
        if !env.may_log() {
            return;
        }
        let mut message = message.to_owned();
        if message.len() > log::MAX_MESSAGE_BYTES {
            let mut at = log::MAX_MESSAGE_BYTES;
            while !message.is_char_boundary(at) {
                at -= 1;
            }
            message.truncate(at);
            message.push_str(" [cut]");
        }
        if message.contains(['\n', '\r']) {
            message = message.replace('\n', "\\n").replace('\r', "\\r");
        }
        env.logs.borrow_mut().push(LogLine { level, message })
    })
}

pub(crate) fn context_get(key: &str) -> Option<String> {
    with_env(|env| env.context.borrow().get(key).cloned())
}

/// As in the gateway, an entry over the bounds is dropped and logged (the
/// contract gives `context-set` no error channel).
pub(crate) fn context_set(key: &str, value: &str) {
    with_env(|env| {
        let refusal = {
            let mut context = env.context.borrow_mut();
            if key.len() > context::MAX_KEY_BYTES || value.len() > context::MAX_VALUE_BYTES {
                Some(format!(
                    "context keys are at most {} bytes and values at most {}",
                    context::MAX_KEY_BYTES,
                    context::MAX_VALUE_BYTES
                ))
            } else if !context.contains_key(key) && context.len() >= context::MAX_ENTRIES {
                Some(format!(
                    "at most {} context entries per plugin per request",
                    context::MAX_ENTRIES
                ))
            } else {
                context.insert(key.to_owned(), value.to_owned());
                None
            }
        };
        if let Some(refusal) = refusal {
            env.warn(format!("context-set refused: {refusal}"));
        }
    });
}

pub(crate) fn state_get(key: &str) -> Option<Vec<u8>> {
    with_env(|env| env.state_get(key))
}

pub(crate) fn state_set(key: &str, value: &[u8], ttl_ms: Option<u64>) -> Result<(), String> {
    with_env(|env| env.state_set(key, value, ttl_ms))
}

pub(crate) fn state_delete(key: &str) -> bool {
    with_env(|env| env.state_delete(key))
}

pub(crate) fn state_increment(key: &str, delta: i64, ttl_ms: Option<u64>) -> Result<i64, String> {
    with_env(|env| env.state_increment(key, delta, ttl_ms))
}

pub(crate) fn token_bucket_take(
    key: &str,
    capacity: u64,
    refill_per_second: u64,
    cost: u64,
) -> Result<BucketOutcome, String> {
    with_env(|env| env.take(key, capacity, refill_per_second, cost))
}

/// As in the gateway, an add the bounds refuse is dropped and logged.
pub(crate) fn counter_add(name: &str, delta: u64) {
    with_env(|env| {
        let refusal = {
            let mut counters = env.counters.borrow_mut();
            if name.is_empty() || name.len() > metrics::MAX_NAME_BYTES {
                Some(format!(
                    "counter names are 1 to {} bytes",
                    metrics::MAX_NAME_BYTES
                ))
            } else if let Some(counter) = counters.get_mut(name) {
                *counter = counter.wrapping_add(delta);
                None
            } else if counters.len() >= metrics::MAX_COUNTERS {
                Some(format!(
                    "at most {} counters per plugin",
                    metrics::MAX_COUNTERS
                ))
            } else {
                counters.insert(name.to_owned(), delta);
                None
            }
        };
        if let Some(refusal) = refusal {
            env.warn(format!("counter-add refused: {refusal}"));
        }
    })
}

pub(crate) fn now_ms() -> u64 {
    with_env(|env| env.now_ms.get())
}

pub(crate) fn random_bytes(len: u32) -> Vec<u8> {
    assert!(
        len <= 1024,
        "random-bytes allows at most 1024 bytes per call"
    );
    with_env(|env| {
        (0..len)
            .map(|_| env.next_random().to_le_bytes()[0])
            .collect()
    })
}

/// The request as the test host keeps it; what [`crate::Request`] wraps.
#[derive(Debug, Clone)]
pub(crate) struct RequestState {
    pub(crate) method: String,
    pub(crate) path: String,
    pub(crate) query: Option<String>,
    pub(crate) headers: Headers,
    pub(crate) client_ip: String,
    pub(crate) id: String,
}

pub(crate) type RequestRef<'a> = &'a mut RequestState;
pub(crate) type ResponseRef<'a> = &'a mut ResponseState;

impl RequestState {
    pub(crate) fn method(&self) -> String {
        self.method.clone()
    }
    pub(crate) fn path(&self) -> String {
        self.path.clone()
    }
    pub(crate) fn set_path(&mut self, path: &str) -> Result<(), String> {
        validate::path(path)?;
        validate::target(path, self.query.as_deref())?;
        self.path = path.to_owned();
        Ok(())
    }
    pub(crate) fn query(&self) -> Option<String> {
        self.query.clone()
    }
    pub(crate) fn set_query(&mut self, query: Option<&str>) -> Result<(), String> {
        if let Some(query) = query {
            validate::query(query)?;
        }
        validate::target(&self.path, query)?;
        self.query = query.map(str::to_owned);
        Ok(())
    }
    pub(crate) fn header(&self, name: &str) -> Option<String> {
        self.headers.get(name)
    }
    pub(crate) fn header_all(&self, name: &str) -> Vec<String> {
        self.headers.get_all(name)
    }
    pub(crate) fn header_names(&self) -> Vec<String> {
        self.headers.names()
    }
    pub(crate) fn set_header(&mut self, name: &str, value: &str) -> Result<(), String> {
        self.headers.set(name, value)
    }
    pub(crate) fn add_header(&mut self, name: &str, value: &str) -> Result<(), String> {
        self.headers.add(name, value)
    }
    pub(crate) fn remove_header(&mut self, name: &str) {
        self.headers.remove(name)
    }
    pub(crate) fn client_ip(&self) -> String {
        self.client_ip.clone()
    }
    pub(crate) fn id(&self) -> String {
        self.id.clone()
    }
}

/// The response as the test host keeps it; what [`crate::Response`] wraps.
#[derive(Debug, Clone)]
pub(crate) struct ResponseState {
    pub(crate) status: u16,
    pub(crate) headers: Headers,
}

impl ResponseState {
    pub(crate) fn status(&self) -> u16 {
        self.status
    }
    pub(crate) fn set_status(&mut self, status: u16) -> Result<(), String> {
        validate::status(status)?;
        self.status = status;
        Ok(())
    }
    pub(crate) fn header(&self, name: &str) -> Option<String> {
        self.headers.get(name)
    }
    pub(crate) fn header_all(&self, name: &str) -> Vec<String> {
        self.headers.get_all(name)
    }
    pub(crate) fn header_names(&self) -> Vec<String> {
        self.headers.names()
    }
    pub(crate) fn set_header(&mut self, name: &str, value: &str) -> Result<(), String> {
        self.headers.set(name, value)
    }
    pub(crate) fn add_header(&mut self, name: &str, value: &str) -> Result<(), String> {
        self.headers.add(name, value)
    }
    pub(crate) fn remove_header(&mut self, name: &str) {
        self.headers.remove(name)
    }
}
