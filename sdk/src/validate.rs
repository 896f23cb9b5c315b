//! The checks the gateway applies to what a plugin writes: header names are
//! RFC 9110 tokens, header values carry no control characters but tab (so
//! no CR, LF or NUL), paths start with `/` and, like queries, hold no
//! whitespace, controls or `#`. The test host applies them to every write;
//! plugins use them to refuse a bad configuration at deploy time rather than
//! fail on every request.

/// Checks a header name (an RFC 9110 token).
///
/// # Example
///
/// ```
/// assert!(weir_sdk::validate::header_name("x-consumer").is_ok());
/// assert!(weir_sdk::validate::header_name("x consumer").is_err());
/// ```
pub fn header_name(name: &str) -> Result<(), String> {
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
    if value.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return Err(format!(
            "invalid value for header {name:?}: control character"
        ));
    }
    Ok(())
}

fn uri_part(what: &str, text: &str, extra_forbidden: &[u8]) -> Result<(), String> {
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

/// Checks a status code (100..=999).
///
/// # Example
///
/// ```
/// assert!(weir_sdk::validate::status(200).is_ok());
/// assert!(weir_sdk::validate::status(1000).is_err());
/// ```
pub fn status(status: u16) -> Result<(), String> {
    if !(100..=999).contains(&status) {
        return Err(format!("invalid status {status}: must be 100..=999"));
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
        assert!(header_value("a", "tab\tok é").is_ok());
        assert!(header_value("a", "cr\r").is_err());
        assert!(header_value("a", "lf\n").is_err());
        assert!(header_value("a", "nul\0").is_err());
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
        assert!(status(99).is_err() && status(1000).is_err() && status(204).is_ok());
    }
}
