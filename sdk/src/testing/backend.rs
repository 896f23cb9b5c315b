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
use crate::validate;

/// The default clock of a test environment: 2023-11-14T22:13:20Z. Fixed, so
/// tests involving time are deterministic until they move the clock.
pub(crate) const DEFAULT_NOW_MS: u64 = 1_700_000_000_000;

/// The gateway's bounds on shared state and request context, mirrored.
pub(crate) mod limits {
    pub(crate) const MAX_STATE_KEY_BYTES: usize = 256;
    pub(crate) const MAX_STATE_VALUE_BYTES: usize = 64 * 1024;
    pub(crate) const MAX_BUCKET: u64 = 1_000_000_000;
    pub(crate) const MAX_CONTEXT_ENTRIES: usize = 32;
    pub(crate) const MAX_CONTEXT_KEY_BYTES: usize = 256;
    pub(crate) const MAX_CONTEXT_VALUE_BYTES: usize = 4 * 1024;
}

fn check_key(key: &str) -> Result<(), String> {
    if key.len() > limits::MAX_STATE_KEY_BYTES {
        return Err(format!(
            "state keys are at most {} bytes",
            limits::MAX_STATE_KEY_BYTES
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

/// A key's value, as the gateway keeps it: bytes, or a counter (which
/// reads as its decimal text).
enum Value {
    Bytes(Vec<u8>),
    Counter(i64),
}

struct Stored {
    value: Value,
    expires_at_ms: Option<u64>,
}

struct Bucket {
    /// Thousandths of a token, so refills of a fraction of a token per
    /// millisecond are exact.
    milli_tokens: u128,
    updated_ms: u64,
}

/// Everything the host keeps for one plugin: state, context, logs, clock.
pub(crate) struct Env {
    pub(crate) now_ms: Cell<u64>,
    pub(crate) logs: RefCell<Vec<LogLine>>,
    pub(crate) context: RefCell<BTreeMap<String, String>>,
    pub(crate) counters: RefCell<BTreeMap<String, u64>>,
    state: RefCell<HashMap<String, Stored>>,
    buckets: RefCell<HashMap<String, Bucket>>,
    rng: Cell<u64>,
}

impl Env {
    pub(crate) fn new() -> Self {
        Self {
            now_ms: Cell::new(DEFAULT_NOW_MS),
            logs: RefCell::default(),
            context: RefCell::default(),
            counters: RefCell::default(),
            state: RefCell::default(),
            buckets: RefCell::default(),
            rng: Cell::new(0x9E37_79B9_7F4A_7C15),
        }
    }

    /// Drops `key` if it has expired; whether it is (still) there.
    fn live(&self, state: &mut HashMap<String, Stored>, key: &str) -> bool {
        let now = self.now_ms.get();
        match state.get(key) {
            Some(stored) if stored.expires_at_ms.is_some_and(|at| at <= now) => {
                state.remove(key);
                false
            }
            Some(_) => true,
            None => false,
        }
    }

    pub(crate) fn state_get(&self, key: &str) -> Option<Vec<u8>> {
        let mut state = self.state.borrow_mut();
        if !self.live(&mut state, key) {
            return None;
        }
        state.get(key).map(|stored| match &stored.value {
            Value::Bytes(b) => b.clone(),
            Value::Counter(n) => n.to_string().into_bytes(),
        })
    }

    pub(crate) fn state_set(&self, key: &str, value: &[u8], ttl_ms: Option<u64>) {
        let expires_at_ms = ttl_ms.map(|ttl| self.now_ms.get().saturating_add(ttl));
        self.state.borrow_mut().insert(
            key.to_owned(),
            Stored {
                value: Value::Bytes(value.to_vec()),
                expires_at_ms,
            },
        );
    }

    pub(crate) fn state_delete(&self, key: &str) -> bool {
        let mut state = self.state.borrow_mut();
        self.live(&mut state, key) && state.remove(key).is_some()
    }

    /// As the gateway does: a counter made by this call expires after
    /// `ttl_ms` when given; adding to a live counter keeps its expiry.
    pub(crate) fn state_increment(
        &self,
        key: &str,
        delta: i64,
        ttl_ms: Option<u64>,
    ) -> Result<i64, String> {
        let mut state = self.state.borrow_mut();
        if self.live(&mut state, key) {
            let stored = state.get_mut(key).expect("a live key");
            return match &mut stored.value {
                Value::Counter(n) => {
                    *n = n.checked_add(delta).ok_or("counter overflow")?;
                    Ok(*n)
                }
                Value::Bytes(_) => Err(format!("key `{key}` does not hold a counter")),
            };
        }
        let expires_at_ms = ttl_ms.map(|ttl| self.now_ms.get().saturating_add(ttl));
        state.insert(
            key.to_owned(),
            Stored {
                value: Value::Counter(delta),
                expires_at_ms,
            },
        );
        Ok(delta)
    }

    /// A continuous-refill token bucket, created full. A cost above the
    /// capacity can never be met: refused, retry after `u64::MAX` ms.
    fn take(
        &self,
        key: &str,
        capacity: u64,
        refill: u64,
        cost: u64,
    ) -> Result<BucketOutcome, String> {
        check_key(key)?;
        if capacity == 0 || capacity > limits::MAX_BUCKET || refill > limits::MAX_BUCKET {
            return Err(format!(
                "bucket capacity must be 1 to {0} and refill at most {0} per second",
                limits::MAX_BUCKET
            ));
        }
        let now = self.now_ms.get();
        let full = u128::from(capacity) * 1000;
        let mut buckets = self.buckets.borrow_mut();
        let bucket = buckets.entry(key.to_owned()).or_insert(Bucket {
            milli_tokens: full,
            updated_ms: now,
        });
        // One token per second is one milli-token per millisecond.
        let elapsed = u128::from(now.saturating_sub(bucket.updated_ms));
        bucket.milli_tokens = (bucket.milli_tokens + elapsed * u128::from(refill)).min(full);
        bucket.updated_ms = now;
        let need = u128::from(cost) * 1000;
        if bucket.milli_tokens >= need {
            bucket.milli_tokens -= need;
            return Ok(BucketOutcome {
                allowed: true,
                remaining: (bucket.milli_tokens / 1000) as u64,
                retry_after: Duration::ZERO,
            });
        }
        let missing = need - bucket.milli_tokens;
        let retry_after_ms = if refill == 0 || cost > capacity {
            u64::MAX
        } else {
            u64::try_from(missing.div_ceil(u128::from(refill))).unwrap_or(u64::MAX)
        };
        Ok(BucketOutcome {
            allowed: false,
            remaining: (bucket.milli_tokens / 1000) as u64,
            retry_after: Duration::from_millis(retry_after_ms),
        })
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

pub(crate) fn log(level: Level, message: &str) {
    with_env(|env| {
        env.logs.borrow_mut().push(LogLine {
            level,
            message: message.to_owned(),
        })
    })
}

pub(crate) fn context_get(key: &str) -> Option<String> {
    with_env(|env| env.context.borrow().get(key).cloned())
}

/// As in the gateway, an entry over the bounds is dropped and logged (the
/// contract gives `context-set` no error channel).
pub(crate) fn context_set(key: &str, value: &str) {
    with_env(|env| {
        let mut context = env.context.borrow_mut();
        let refusal = if key.len() > limits::MAX_CONTEXT_KEY_BYTES
            || value.len() > limits::MAX_CONTEXT_VALUE_BYTES
        {
            Some(format!(
                "context keys are at most {} bytes and values at most {}",
                limits::MAX_CONTEXT_KEY_BYTES,
                limits::MAX_CONTEXT_VALUE_BYTES
            ))
        } else if !context.contains_key(key) && context.len() >= limits::MAX_CONTEXT_ENTRIES {
            Some(format!(
                "at most {} context entries per plugin per request",
                limits::MAX_CONTEXT_ENTRIES
            ))
        } else {
            context.insert(key.to_owned(), value.to_owned());
            None
        };
        if let Some(refusal) = refusal {
            env.logs.borrow_mut().push(LogLine {
                level: Level::Warn,
                message: format!("context-set refused: {refusal}"),
            });
        }
    });
}

pub(crate) fn state_get(key: &str) -> Option<Vec<u8>> {
    with_env(|env| env.state_get(key))
}

pub(crate) fn state_set(key: &str, value: &[u8], ttl_ms: Option<u64>) -> Result<(), String> {
    check_key(key)?;
    if value.len() > limits::MAX_STATE_VALUE_BYTES {
        return Err(format!(
            "state values are at most {} bytes",
            limits::MAX_STATE_VALUE_BYTES
        ));
    }
    with_env(|env| env.state_set(key, value, ttl_ms));
    Ok(())
}

pub(crate) fn state_delete(key: &str) -> bool {
    with_env(|env| env.state_delete(key))
}

pub(crate) fn state_increment(key: &str, delta: i64, ttl_ms: Option<u64>) -> Result<i64, String> {
    check_key(key)?;
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

pub(crate) fn counter_add(name: &str, delta: u64) {
    with_env(|env| {
        let mut counters = env.counters.borrow_mut();
        let counter = counters.entry(name.to_owned()).or_insert(0);
        *counter = counter.saturating_add(delta);
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
