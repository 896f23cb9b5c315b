//! Named counters the gateway exposes on its admin metrics endpoint.

use crate::backend;

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
