//! Request-scoped context: text values that live from the request phase to
//! the log phase of the same request, private to this plugin. This is how a
//! decision made in `on_request` reaches `on_response` (instances are pooled,
//! so the next phase of a request may run on another instance).

use crate::backend;
pub use crate::limits::context::{MAX_ENTRIES, MAX_KEY_BYTES, MAX_VALUE_BYTES};

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
