//! Shared state: values, counters and token buckets kept by the host across
//! requests and across every instance of this plugin (never visible to
//! another plugin). Errors are the host's refusals (e.g. a value or key over
//! its size bound) as text.
//!
//! Values, counters and buckets share one set of keys: a key holds one of
//! them at a time. A plugin holds at most [`MAX_KEYS`] keys and
//! [`MAX_BYTES`] of keys and values (a counter or a bucket counts as 16
//! bytes besides its key); expired keys, and buckets that have refilled
//! completely, are dropped before a write is refused for room (at most
//! once per [`SWEEP_INTERVAL`]).

use std::time::Duration;

use crate::backend;

/// The longest key, in bytes (keys are at least 1 byte).
///
/// # Example
///
/// ```
/// use weir_sdk::state::{set, MAX_KEY_BYTES};
/// assert!(set(&"k".repeat(MAX_KEY_BYTES + 1), b"v", None).is_err());
/// ```
pub const MAX_KEY_BYTES: usize = 256;

/// The longest value, in bytes.
///
/// # Example
///
/// ```
/// use weir_sdk::state::{set, MAX_VALUE_BYTES};
/// assert!(set("k", &vec![0; MAX_VALUE_BYTES + 1], None).is_err());
/// ```
pub const MAX_VALUE_BYTES: usize = 64 * 1024;

/// The most keys one plugin holds at once.
///
/// # Example
///
/// ```
/// assert_eq!(weir_sdk::state::MAX_KEYS, 10_000);
/// ```
pub const MAX_KEYS: usize = 10_000;

/// The most bytes of keys and values one plugin holds at once.
///
/// # Example
///
/// ```
/// assert_eq!(weir_sdk::state::MAX_BYTES, 16 * 1024 * 1024);
/// ```
pub const MAX_BYTES: usize = 16 * 1024 * 1024;

/// When a write finds the plugin full, expired keys are swept first, at
/// most once per this interval per plugin; in between, writes that do not
/// fit are refused.
///
/// # Example
///
/// ```
/// assert_eq!(weir_sdk::state::SWEEP_INTERVAL.as_millis(), 100);
/// ```
pub const SWEEP_INTERVAL: Duration = Duration::from_millis(100);

/// The largest bucket capacity and refill rate (tokens per second).
///
/// # Example
///
/// ```
/// use weir_sdk::state::{take_tokens, Bucket, MAX_BUCKET};
/// let too_big = Bucket { capacity: MAX_BUCKET + 1, refill_per_second: 1 };
/// assert!(take_tokens("k", too_big, 1).is_err());
/// ```
pub const MAX_BUCKET: u64 = 1_000_000_000;

/// Reads a value.
///
/// # Example
///
/// ```
/// weir_sdk::state::set("greeting", b"hello", None).unwrap();
/// assert_eq!(weir_sdk::state::get("greeting").as_deref(), Some(&b"hello"[..]));
/// ```
pub fn get(key: &str) -> Option<Vec<u8>> {
    backend::state_get(key)
}

/// Sets a value; with `ttl` it expires after that long (millisecond
/// precision).
///
/// # Example
///
/// ```
/// use std::time::Duration;
///
/// weir_sdk::state::set("session", b"ada", Some(Duration::from_secs(60))).unwrap();
/// ```
pub fn set(key: &str, value: &[u8], ttl: Option<Duration>) -> Result<(), String> {
    backend::state_set(key, value, ttl.map(millis))
}

fn millis(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX)
}

/// Deletes a key; `true` if it existed.
///
/// # Example
///
/// ```
/// weir_sdk::state::set("k", b"v", None).unwrap();
/// assert!(weir_sdk::state::delete("k"));
/// assert!(!weir_sdk::state::delete("k"));
/// ```
pub fn delete(key: &str) -> bool {
    backend::state_delete(key)
}

/// Atomically adds `delta` to a counter (created at 0) and returns the new
/// value. The counter lives until deleted; see [`increment_with_ttl`] for
/// one that expires.
///
/// # Example
///
/// ```
/// assert_eq!(weir_sdk::state::increment("hits", 2), Ok(2));
/// assert_eq!(weir_sdk::state::increment("hits", -1), Ok(1));
/// ```
pub fn increment(key: &str, delta: i64) -> Result<i64, String> {
    backend::state_increment(key, delta, None)
}

/// Like [`increment`], but a counter this call creates expires `ttl`
/// later (millisecond precision): a fixed window. Adding to a live counter
/// keeps its expiry; once it has expired, the next increment starts a new
/// counter and a new window.
///
/// # Example
///
/// ```
/// use std::time::Duration;
///
/// // Requests of one client in the current minute.
/// let minute = Duration::from_secs(60);
/// assert_eq!(weir_sdk::state::increment_with_ttl("client:10.0.0.1", 1, minute), Ok(1));
/// assert_eq!(weir_sdk::state::increment_with_ttl("client:10.0.0.1", 1, minute), Ok(2));
/// ```
pub fn increment_with_ttl(key: &str, delta: i64, ttl: Duration) -> Result<i64, String> {
    backend::state_increment(key, delta, Some(millis(ttl)))
}

/// The shape of a token bucket: how many tokens it holds when full and how
/// many it regains per second.
///
/// # Example
///
/// ```
/// let bucket = weir_sdk::state::Bucket { capacity: 10, refill_per_second: 5 };
/// # let _ = bucket;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bucket {
    /// Tokens in a full bucket (the burst size).
    pub capacity: u64,
    /// Tokens added per second, up to `capacity`.
    pub refill_per_second: u64,
}

/// The answer of [`take_tokens`].
///
/// # Example
///
/// ```
/// use weir_sdk::state::{take_tokens, Bucket};
///
/// let outcome = take_tokens("client-1", Bucket { capacity: 1, refill_per_second: 1 }, 1).unwrap();
/// assert!(outcome.allowed);
/// assert_eq!(outcome.remaining, 0);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BucketOutcome {
    /// Whether the tokens were taken.
    pub allowed: bool,
    /// Whole tokens left after this take.
    pub remaining: u64,
    /// When refused: how long until enough tokens are available.
    pub retry_after: Duration,
}

/// Atomically takes `cost` tokens from the bucket `key`, which the host
/// creates full and refills continuously.
///
/// # Example
///
/// ```
/// use weir_sdk::state::{take_tokens, Bucket};
///
/// let bucket = Bucket { capacity: 2, refill_per_second: 1 };
/// assert!(take_tokens("ip:192.0.2.1", bucket, 1).unwrap().allowed);
/// assert!(take_tokens("ip:192.0.2.1", bucket, 1).unwrap().allowed);
/// let refused = take_tokens("ip:192.0.2.1", bucket, 1).unwrap();
/// assert!(!refused.allowed);
/// assert_eq!(refused.retry_after.as_secs(), 1);
/// ```
pub fn take_tokens(key: &str, bucket: Bucket, cost: u64) -> Result<BucketOutcome, String> {
    backend::token_bucket_take(key, bucket.capacity, bucket.refill_per_second, cost)
}
