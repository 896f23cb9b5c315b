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
pub use crate::limits::state::{
    MAX_BUCKET, MAX_BYTES, MAX_KEY_BYTES, MAX_KEYS, MAX_VALUE_BYTES, SWEEP_INTERVAL,
};
pub use crate::types::{Bucket, BucketOutcome};

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
