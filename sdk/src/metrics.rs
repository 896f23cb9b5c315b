//! Named counters the gateway exposes on its admin metrics endpoint.
//! A name is 1 to [`MAX_NAME_BYTES`] bytes and a plugin has at most
//! [`MAX_COUNTERS`] of them; an add past either bound is dropped and the
//! gateway logs a warning for it.

use crate::backend;
pub use crate::limits::metrics::{MAX_COUNTERS, MAX_NAME_BYTES};

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
