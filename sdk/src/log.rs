//! Logging through the host: each line is tagged by the gateway with the
//! plugin name and the request id, and goes wherever the gateway's logs go.
//! A message is one line (CR and LF are written as `\r` and `\n`) of at
//! most [`MAX_MESSAGE_BYTES`]; one phase call writes at most
//! [`MAX_LINES_PER_CALL`] lines, the host's own warnings about the call
//! included.

use crate::backend;
pub use crate::limits::log::{
    MAX_LINES_PER_CALL, MAX_MESSAGE_BYTES, MAX_PANIC_BYTES, PANIC_PREFIX,
};
pub use crate::types::Level;

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
