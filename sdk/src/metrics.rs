//! Named counters the gateway exposes on its admin metrics endpoint.
//! A name is 1 to [`MAX_NAME_BYTES`] bytes and a plugin has at most
//! [`MAX_COUNTERS`] of them; an add past either bound is dropped and the
//! gateway logs a warning for it.

use crate::backend;

/// The longest counter name, in bytes.
///
/// # Example
///
/// ```
/// assert_eq!(weir_sdk::metrics::MAX_NAME_BYTES, 64);
/// ```
pub const MAX_NAME_BYTES: usize = 64;

/// The most counters one plugin may have.
///
/// # Example
///
/// ```
/// assert_eq!(weir_sdk::metrics::MAX_COUNTERS, 1_000);
/// ```
pub const MAX_COUNTERS: usize = 1_000;

/// Adds `delta` to the counter `name`.
///
/// # Example
///
/// ```
/// weir_sdk::metrics::counter_add("rejected_requests", 1);
/// ```
pub fn counter_add(name: &str, delta: u64) {
    backend::counter_add(name, delta)
}
