//! [`HeaderFields`]: the six header operations of the contract's `fields`
//! resource, which serves requests and responses alike, so that the SDK
//! states them once for both sides ([`Head`](crate::http::Head)) and each side of the seam
//! implements them once for both.

/// The header fields of a request or a response, reached through a handle
/// of one side of the seam. Names are case-insensitive; setters return the
/// host's validation error. `pub` because the sealed side of
/// [`Head`](crate::Head) names it; no path outside the crate reaches it.
pub trait HeaderFields {
    /// The first value of a header; `None` if absent or not UTF-8.
    fn header(&self, name: &str) -> Option<String>;
    /// Every value of a header, in order.
    fn header_all(&self, name: &str) -> Vec<String>;
    /// The names of all headers present, lower-case.
    fn header_names(&self) -> Vec<String>;
    /// Replaces all values of a header with one value.
    fn set_header(&mut self, name: &str, value: &str) -> Result<(), String>;
    /// Adds a header value, keeping existing ones.
    fn add_header(&mut self, name: &str, value: &str) -> Result<(), String>;
    /// Removes all values of a header.
    fn remove_header(&mut self, name: &str);
}
