//! Logging through the host: each line is tagged by the gateway with the
//! plugin name and the request id, and goes wherever the gateway's logs go.
//! A message is one line (CR and LF are written as `\r` and `\n`) of at
//! most [`MAX_MESSAGE_BYTES`]; one phase call writes at most
//! [`MAX_LINES_PER_CALL`] lines, the host's own warnings about the call
//! included.
//!
//! Besides lines of its own, a plugin can add named fields to the
//! request's access-log line ([`set_field`]).

use crate::backend;
pub use crate::limits::log::{
    MAX_FIELD_NAME_BYTES, MAX_FIELD_VALUE_BYTES, MAX_FIELDS, MAX_LINES_PER_CALL, MAX_MESSAGE_BYTES,
    MAX_PANIC_BYTES, PANIC_PREFIX,
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

/// Sets (or replaces) a field of this request's access-log line, e.g. who
/// the request was authenticated as. The fields of a request are shared
/// by every plugin of its chain: a name set again, by any of them,
/// replaces the value.
///
/// Bounds, checked by the gateway (and the test host) with these errors:
/// at most [`MAX_FIELDS`] fields per request, all plugins of the chain
/// together; names 1 to [`MAX_FIELD_NAME_BYTES`] bytes of `a-z`, `0-9`,
/// `_`, `.` and `-`, starting with a letter; values at most
/// [`MAX_FIELD_VALUE_BYTES`] bytes without control characters
/// ([`validate::log_field`](crate::validate::log_field) checks a name and
/// value ahead, e.g. in [`Plugin::new`](crate::Plugin::new)). Fields set
/// in `on_request`, `on_request_body`, `on_response` and
/// `on_response_body` appear in the line; `on_log` runs after the line is
/// written, and there, as in `Plugin::new`, this returns an error. A
/// refused field is not set.
///
/// The gateway writes a value nowhere but in the access-log line; a
/// secret (a key, a token) does not belong there.
///
/// # Example
///
/// ```
/// use weir_sdk::testing::{TestHost, TestRequest};
/// use weir_sdk::{Action, Phases, Plugin, Request};
///
/// struct Tag;
/// impl Plugin for Tag {
///     type Config = serde::de::IgnoredAny;
///     fn new(_: Self::Config) -> Result<Self, String> {
///         assert!(weir_sdk::log::set_field("consumer", "ada").is_err()); // no request yet
///         Ok(Tag)
///     }
///     fn phases(&self) -> Phases {
///         Phases::REQUEST | Phases::LOG
///     }
///     fn on_request(&mut self, _: &mut Request<'_>) -> Action {
///         weir_sdk::log::set_field("consumer", "ada").unwrap();
///         assert!(weir_sdk::log::set_field("Consumer", "ada").is_err());
///         Action::Continue
///     }
///     fn on_log(&mut self, _: &Request<'_>, _: u16) {
///         assert!(weir_sdk::log::set_field("late", "x").is_err()); // the line is written
///     }
/// }
///
/// let mut host = TestHost::<Tag>::new(serde_json::json!({})).unwrap();
/// let exchange = host.run(TestRequest::get("/"));
/// assert_eq!(exchange.log_field("consumer"), Some("ada"));
/// assert_eq!(exchange.log_fields().len(), 1);
/// ```
pub fn set_field(name: &str, value: &str) -> Result<(), String> {
    backend::log_field(name, value)
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
