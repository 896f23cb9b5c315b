//! Logging through the host: each line is tagged by the gateway with the
//! plugin name and the request id, and goes wherever the gateway's logs go.

use crate::backend;

/// A log line's severity.
///
/// # Example
///
/// ```
/// weir_sdk::log::log(weir_sdk::log::Level::Warn, "upstream slow");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Very detailed tracing.
    Trace,
    /// Debugging detail.
    Debug,
    /// Normal operation.
    Info,
    /// Something unexpected that the plugin handled.
    Warn,
    /// Something failed.
    Error,
}

/// Logs a line at `level`.
///
/// # Example
///
/// ```
/// use weir_sdk::log::{log, Level};
///
/// log(Level::Info, &format!("consumer {} authenticated", "ada"));
/// ```
pub fn log(level: Level, message: &str) {
    backend::log(level, message)
}

/// Logs at [`Level::Trace`].
///
/// # Example
///
/// ```
/// weir_sdk::log::trace("entering on_request");
/// ```
pub fn trace(message: &str) {
    log(Level::Trace, message)
}

/// Logs at [`Level::Debug`].
///
/// # Example
///
/// ```
/// weir_sdk::log::debug("cache miss");
/// ```
pub fn debug(message: &str) {
    log(Level::Debug, message)
}

/// Logs at [`Level::Info`].
///
/// # Example
///
/// ```
/// weir_sdk::log::info("configured with 3 keys");
/// ```
pub fn info(message: &str) {
    log(Level::Info, message)
}

/// Logs at [`Level::Warn`].
///
/// # Example
///
/// ```
/// weir_sdk::log::warn("rejected an expired token");
/// ```
pub fn warn(message: &str) {
    log(Level::Warn, message)
}

/// Logs at [`Level::Error`].
///
/// # Example
///
/// ```
/// weir_sdk::log::error("could not set header");
/// ```
pub fn error(message: &str) {
    log(Level::Error, message)
}
