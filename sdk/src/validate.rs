//! The checks the gateway applies to what a plugin writes, and their bounds:
//! header names are RFC 9110 tokens and not one of the hop-by-hop or framing
//! headers the gateway manages ([`RESERVED_HEADERS`]); header values carry
//! no control characters but tab (so no CR, LF or NUL) and are at most
//! [`MAX_HEADER_VALUE_BYTES`]; paths start with `/`, and paths and queries
//! hold no whitespace, controls or `#` and together are at most
//! [`MAX_TARGET_BYTES`]; a status is final (200..=999: a 1xx cannot end a
//! response); an access-log field's name is 1 to
//! [`MAX_FIELD_NAME_BYTES`] bytes of `a-z`, `0-9`, `_`, `.` and `-`
//! starting with a letter, and its value at most [`MAX_FIELD_VALUE_BYTES`]
//! without control characters. The test host applies them to every write;
//! plugins use them to refuse a bad configuration at deploy time rather
//! than fail on every request.

use crate::limits::log::{MAX_FIELD_NAME_BYTES, MAX_FIELD_VALUE_BYTES};

/// Headers the gateway manages itself; a plugin cannot set them (and
/// removing them has no effect). Content-Length is fixed by the host when a
/// body phase replaces a body.
///
/// # Example
///
/// ```
/// assert!(weir_sdk::validate::RESERVED_HEADERS.contains(&"transfer-encoding"));
/// ```
pub const RESERVED_HEADERS: &[&str] = &[
    "connection",
    "content-length",
    "expect",
    "http2-settings",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// The longest header value a plugin may write, in bytes.
///
/// # Example
///
/// ```
/// use weir_sdk::validate::{header_value, MAX_HEADER_VALUE_BYTES};
/// assert!(header_value("x", &"v".repeat(MAX_HEADER_VALUE_BYTES + 1)).is_err());
/// ```
pub const MAX_HEADER_VALUE_BYTES: usize = 16 * 1024;

/// The longest path plus query a plugin may write, in bytes.
///
/// # Example
///
/// ```
/// use weir_sdk::validate::{path, MAX_TARGET_BYTES};
/// assert!(path(&format!("/{}", "a".repeat(MAX_TARGET_BYTES))).is_err());
/// ```
pub const MAX_TARGET_BYTES: usize = 8 * 1024;

/// The most headers in a reply a plugin builds.
///
/// # Example
///
/// ```
/// assert_eq!(weir_sdk::validate::MAX_REPLY_HEADERS, 100);
/// ```
pub const MAX_REPLY_HEADERS: usize = 100;

/// The header bytes one phase call may write: the name plus the value of
/// every header it sets or adds, on the request, the response and its own
/// reply together. A write past it is refused (the test host refuses it
/// too).
///
/// # Example
///
/// ```
/// assert_eq!(weir_sdk::validate::MAX_HEADER_BYTES_PER_CALL, 64 * 1024);
/// ```
pub const MAX_HEADER_BYTES_PER_CALL: usize = 64 * 1024;

/// The most header fields (repeated names counted once per value) a request
/// or response may hold after a plugin's edits; adding one more is refused.
///
/// # Example
///
/// ```
/// assert_eq!(weir_sdk::validate::MAX_HEAD_FIELDS, 2_000);
/// ```
pub const MAX_HEAD_FIELDS: usize = 2_000;

/// Checks a header name a plugin wants to write: an RFC 9110 token, not
/// one of [`RESERVED_HEADERS`], and not a name that reads as
/// `Transfer-Encoding` or `Content-Length` once `_` becomes `-` and runs
/// of `-` become one (`transfer_encoding`): an upstream that folds names
/// so would frame the body by it.
///
/// # Example
///
/// ```
/// assert!(weir_sdk::validate::header_name("x-consumer").is_ok());
/// assert!(weir_sdk::validate::header_name("x consumer").is_err());
/// assert!(weir_sdk::validate::header_name("Content-Length").is_err());
/// assert!(weir_sdk::validate::header_name("Transfer_Encoding").is_err());
/// ```
pub fn header_name(name: &str) -> Result<(), String> {
    header_syntax(name)?;
    if RESERVED_HEADERS
        .iter()
        .any(|reserved| reserved.eq_ignore_ascii_case(name))
        || reads_as_framing(name)
    {
        return Err(format!(
            "header {name:?} is managed by the gateway and cannot be set by a plugin"
        ));
    }
    Ok(())
}

/// Whether `name` reads as `Transfer-Encoding` or `Content-Length` once
/// `_` becomes `-`, runs of `-` become one and case is ignored, without
/// being one of them. The gateway's rule, mirrored (a gateway test pins
/// the two to the same answers).
pub(crate) fn reads_as_framing(name: &str) -> bool {
    let folds_to = |target: &[u8]| {
        let mut want = target.iter();
        let mut after_dash = false;
        for b in name.bytes() {
            let b = if b == b'_' {
                b'-'
            } else {
                b.to_ascii_lowercase()
            };
            if b == b'-' && after_dash {
                continue;
            }
            after_dash = b == b'-';
            if want.next() != Some(&b) {
                return false;
            }
        }
        want.next().is_none()
    };
    !name.eq_ignore_ascii_case("transfer-encoding")
        && !name.eq_ignore_ascii_case("content-length")
        && (folds_to(b"transfer-encoding") || folds_to(b"content-length"))
}

/// Only the token syntax: what a header received from a client may be named.
pub(crate) fn header_syntax(name: &str) -> Result<(), String> {
    let is_tchar = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if name.is_empty() || !name.bytes().all(is_tchar) {
        return Err(format!("invalid header name {name:?}"));
    }
    Ok(())
}

/// Checks a header value (`name` only labels the error).
///
/// # Example
///
/// ```
/// assert!(weir_sdk::validate::header_value("x-a", "ok").is_ok());
/// assert!(weir_sdk::validate::header_value("x-a", "a\r\nb").is_err());
/// ```
pub fn header_value(name: &str, value: &str) -> Result<(), String> {
    if value.len() > MAX_HEADER_VALUE_BYTES {
        return Err(format!(
            "value for header {name:?} is over {MAX_HEADER_VALUE_BYTES} bytes"
        ));
    }
    if value.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return Err(format!(
            "invalid value for header {name:?}: control character"
        ));
    }
    Ok(())
}

fn uri_part(what: &str, text: &str, extra_forbidden: &[u8]) -> Result<(), String> {
    if text.len() > MAX_TARGET_BYTES {
        return Err(format!("{what} is over {MAX_TARGET_BYTES} bytes"));
    }
    if let Some(b) = text
        .bytes()
        .find(|&b| b <= b' ' || b == 0x7f || b == b'#' || extra_forbidden.contains(&b))
    {
        return Err(format!(
            "invalid {what} {text:?}: byte {b:#04x} not allowed"
        ));
    }
    Ok(())
}

/// Checks a path for [`Request::set_path`](crate::Request::set_path).
///
/// # Example
///
/// ```
/// assert!(weir_sdk::validate::path("/v2/users").is_ok());
/// assert!(weir_sdk::validate::path("v2/users").is_err());
/// ```
pub fn path(path: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err(format!("invalid path {path:?}: must start with '/'"));
    }
    uri_part("path", path, b"?")
}

/// Checks a raw query string (without `?`).
///
/// # Example
///
/// ```
/// assert!(weir_sdk::validate::query("a=1&b=2").is_ok());
/// assert!(weir_sdk::validate::query("a=1#x").is_err());
/// ```
pub fn query(query: &str) -> Result<(), String> {
    uri_part("query", query, b"")
}

/// Checks that a path and query together stay within [`MAX_TARGET_BYTES`].
/// (Only the test host needs it: on Wasm the gateway checks the target.)
#[cfg_attr(target_family = "wasm", allow(dead_code))]
pub(crate) fn target(path: &str, query: Option<&str>) -> Result<(), String> {
    let len = path.len() + query.map_or(0, |q| q.len() + 1);
    if len > MAX_TARGET_BYTES {
        return Err(format!("path and query are over {MAX_TARGET_BYTES} bytes"));
    }
    Ok(())
}

/// Checks an access-log field for [`log::set_field`](crate::log::set_field):
/// its name and value, with the gateway's errors (whether the request
/// has room for one more field is the gateway's to say).
///
/// # Example
///
/// ```
/// use weir_sdk::validate::log_field;
/// assert!(log_field("consumer", "mobile-app").is_ok());
/// assert!(log_field("Consumer", "mobile-app").is_err());
/// assert!(log_field("consumer", "two\nlines").is_err());
/// ```
pub fn log_field(name: &str, value: &str) -> Result<(), String> {
    let name_ok = (1..=MAX_FIELD_NAME_BYTES).contains(&name.len())
        && name.as_bytes()[0].is_ascii_lowercase()
        && name
            .bytes()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'.' | b'-'));
    if !name_ok {
        return Err(format!(
            "a log field name is 1 to {MAX_FIELD_NAME_BYTES} bytes of a-z, 0-9, `_`, `.` and \
             `-`, starting with a letter"
        ));
    }
    if value.len() > MAX_FIELD_VALUE_BYTES {
        return Err(format!(
            "a log field value is at most {MAX_FIELD_VALUE_BYTES} bytes"
        ));
    }
    if value.chars().any(char::is_control) {
        return Err("a log field value cannot hold control characters".into());
    }
    Ok(())
}

/// Checks a status a plugin sets or replies with: a final status,
/// 200..=999 (a 1xx cannot end a response).
///
/// # Example
///
/// ```
/// assert!(weir_sdk::validate::status(200).is_ok());
/// assert!(weir_sdk::validate::status(101).is_err());
/// assert!(weir_sdk::validate::status(1000).is_err());
/// ```
pub fn status(status: u16) -> Result<(), String> {
    if !(200..=999).contains(&status) {
        return Err(format!(
            "invalid status {status}: must be a final status, 200..=999"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_rules_match_the_gateway() {
        assert!(header_name("x-api-key").is_ok());
        assert!(header_name("").is_err());
        assert!(header_name("bad name").is_err());
        assert!(header_name("bad:name").is_err());
        assert!(header_name("Transfer-Encoding").is_err());
        assert!(header_syntax("transfer-encoding").is_ok());
        assert!(header_value("a", "tab\tok é").is_ok());
        assert!(header_value("a", "cr\r").is_err());
        assert!(header_value("a", "lf\n").is_err());
        assert!(header_value("a", "nul\0").is_err());
        assert!(header_value("a", &"v".repeat(MAX_HEADER_VALUE_BYTES)).is_ok());
        assert!(header_value("a", &"v".repeat(MAX_HEADER_VALUE_BYTES + 1)).is_err());
    }

    #[test]
    fn uri_rules_match_the_gateway() {
        assert!(path("/a/b%20c").is_ok());
        assert!(path("a").is_err());
        assert!(path("/a b").is_err());
        assert!(path("/a?b").is_err());
        assert!(path("/a#b").is_err());
        assert!(query("a=1&b=/x?").is_ok());
        assert!(query("a=1#frag").is_err());
        let long = format!("/{}", "p".repeat(MAX_TARGET_BYTES));
        assert!(path(&long).is_err());
        assert!(target("/p", Some(&"q".repeat(MAX_TARGET_BYTES - 3))).is_ok());
        assert!(target("/p", Some(&"q".repeat(MAX_TARGET_BYTES - 2))).is_err());
        assert!(status(199).is_err() && status(1000).is_err() && status(204).is_ok());
    }

    #[test]
    fn log_field_rules_match_the_gateway() {
        assert!(log_field("consumer", "").is_ok());
        assert!(log_field("a.b-c_9", "caf\u{e9}").is_ok());
        assert!(log_field(&"n".repeat(MAX_FIELD_NAME_BYTES), "v").is_ok());
        for name in ["", "9a", "_a", "A", "a b", "\u{e9}", "a:b"] {
            assert!(log_field(name, "v").is_err(), "{name:?}");
        }
        assert!(log_field(&"n".repeat(MAX_FIELD_NAME_BYTES + 1), "v").is_err());
        assert!(log_field("v", &"v".repeat(MAX_FIELD_VALUE_BYTES)).is_ok());
        assert!(log_field("v", &"\u{e9}".repeat(MAX_FIELD_VALUE_BYTES / 2 + 1)).is_err());
        for value in ["a\tb", "a\nb", "\0", "\u{7f}", "\u{85}"] {
            assert!(log_field("v", value).is_err(), "{value:?}");
        }
    }
}
