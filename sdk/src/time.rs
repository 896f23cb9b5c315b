//! The host's wall clock. Plugins have no other clock (no WASI clocks are
//! granted), and the test host can set this one.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::backend;

/// Wall-clock time, milliseconds since the Unix epoch.
///
/// # Example
///
/// ```
/// assert!(weir_sdk::time::now_ms() > 0);
/// ```
pub fn now_ms() -> u64 {
    backend::now_ms()
}

/// Wall-clock time as whole seconds since the Unix epoch (the unit of JWT
/// `exp`/`nbf` claims and of HTTP dates).
///
/// # Example
///
/// ```
/// assert_eq!(weir_sdk::time::now_secs(), weir_sdk::time::now_ms() / 1000);
/// ```
pub fn now_secs() -> u64 {
    now_ms() / 1000
}

/// Wall-clock time as a [`SystemTime`].
///
/// # Example
///
/// ```
/// assert!(weir_sdk::time::now() > std::time::UNIX_EPOCH);
/// ```
pub fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(now_ms())
}
