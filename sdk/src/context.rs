//! Request-scoped context: text values that live from the request phase to
//! the log phase of the same request, private to this plugin. This is how a
//! decision made in `on_request` reaches `on_response` (instances are pooled,
//! so the next phase of a request may run on another instance).

use crate::backend;

/// The most context entries one plugin keeps per request; setting a new key
/// past it is dropped, and the gateway logs a warning.
///
/// # Example
///
/// ```
/// assert_eq!(weir_sdk::context::MAX_ENTRIES, 32);
/// ```
pub const MAX_ENTRIES: usize = 32;

/// The longest context key, in bytes.
///
/// # Example
///
/// ```
/// assert_eq!(weir_sdk::context::MAX_KEY_BYTES, 256);
/// ```
pub const MAX_KEY_BYTES: usize = 256;

/// The longest context value, in bytes.
///
/// # Example
///
/// ```
/// use weir_sdk::context::{get, set, MAX_VALUE_BYTES};
/// set("big", &"v".repeat(MAX_VALUE_BYTES + 1));
/// assert_eq!(get("big"), None);
/// ```
pub const MAX_VALUE_BYTES: usize = 4 * 1024;

/// Reads a context value set earlier in this request.
///
/// # Example
///
/// ```
/// weir_sdk::context::set("decision", "canary");
/// assert_eq!(weir_sdk::context::get("decision").as_deref(), Some("canary"));
/// assert_eq!(weir_sdk::context::get("other"), None);
/// ```
pub fn get(key: &str) -> Option<String> {
    backend::context_get(key)
}

/// Sets a context value for the rest of this request. A key or value over
/// its bound, or a new key past [`MAX_ENTRIES`], is dropped (this call has
/// no error to return) and the gateway logs why.
///
/// # Example
///
/// ```
/// weir_sdk::context::set("consumer", "ada");
/// ```
pub fn set(key: &str, value: &str) {
    backend::context_set(key, value)
}
