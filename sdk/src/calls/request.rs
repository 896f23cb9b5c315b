//! [`CallRequest`]: a call as the contract's `call-request` carries it
//! across the seam, and the checks the gateway applies to it alone
//! (method, path, headers, tag) before anything else. Below both the
//! public builder ([`Call`](crate::calls::Call), which wraps one) and the
//! native host, which applies the checks as the gateway does.

use std::time::Duration;

use crate::limits::calls::{
    MAX_CALL_HEADER_BYTES, MAX_CALL_HEADER_FIELDS, MAX_CALL_PATH_BYTES, MAX_CALL_TAG_BYTES,
};
use crate::validate;

/// A call to start: the contract's `call-request`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CallRequest {
    pub(crate) upstream: String,
    pub(crate) method: String,
    pub(crate) path: String,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
    pub(crate) timeout_ms: Option<u32>,
    pub(crate) tag: String,
}

impl CallRequest {
    /// The checks of the call's own parts, in the gateway's order: method,
    /// path, tag, headers. The error is the `invalid` text, the gateway's.
    pub(crate) fn check(&self) -> Result<(), String> {
        method(&self.method)?;
        path(&self.path)?;
        if self.tag.len() > MAX_CALL_TAG_BYTES {
            return Err(format!(
                "a call's tag is at most {MAX_CALL_TAG_BYTES} bytes"
            ));
        }
        headers(&self.headers)
    }

    /// The call's own time limit, as the contract's milliseconds: rounded
    /// up, so that a limit under a millisecond is not read as none left.
    pub(crate) fn timeout_ms(timeout: Duration) -> u32 {
        let ms = timeout.as_nanos().div_ceil(1_000_000);
        u32::try_from(ms).unwrap_or(u32::MAX)
    }
}

/// At most `max` characters of `text`, escaped, to quote in an error.
fn quoted(text: &str, max: usize) -> String {
    text.chars()
        .take(max)
        .collect::<String>()
        .escape_debug()
        .to_string()
}

/// An RFC 9110 token, and not CONNECT: a call is one request and answer,
/// never a tunnel. Methods are case-sensitive, but an upstream may read
/// `connect` as CONNECT, so no case of it passes.
fn method(method: &str) -> Result<(), String> {
    let is_tchar = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if method.is_empty() || !method.bytes().all(is_tchar) || method.eq_ignore_ascii_case("CONNECT")
    {
        return Err(format!(
            "`{}` is not an HTTP method a call may use",
            quoted(method, 32)
        ));
    }
    Ok(())
}

/// An origin-form request target (RFC 9112 section 3.2.1: an absolute path
/// and an optional query, of RFC 3986's characters, `%` only before two
/// hex digits) of at most [`MAX_CALL_PATH_BYTES`]. A call is sent as
/// written, so nothing an upstream could read otherwise passes: no space,
/// control, `#`, raw non-ASCII byte or stray `%`.
fn path(path: &str) -> Result<(), String> {
    if path.len() > MAX_CALL_PATH_BYTES {
        return Err(format!(
            "a call's path is at most {MAX_CALL_PATH_BYTES} bytes"
        ));
    }
    if !path.starts_with('/') {
        return Err("a call's path must start with `/`".into());
    }
    // pchar, `/` and `?`: the characters of a path and of a query alike
    // (the first `?` starts the query).
    let bytes = path.as_bytes();
    let hex = |at: usize| bytes.get(at).is_some_and(u8::is_ascii_hexdigit);
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' && hex(i + 1) && hex(i + 2) {
            i += 3;
        } else if b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/?".contains(&b) {
            i += 1;
        } else {
            return Err(format!(
                "`{}` is not a valid request path (visible ASCII, percent-encoded)",
                quoted(path, 64)
            ));
        }
    }
    Ok(())
}

/// At most [`MAX_CALL_HEADER_FIELDS`] fields and [`MAX_CALL_HEADER_BYTES`]
/// of names and values together; each name a token the gateway does not
/// set itself (the framing and hop-by-hop fields of
/// [`validate::RESERVED_HEADERS`], and names that read as one of the
/// framing fields, as [`validate::header_name`] refuses them); each value
/// without control characters but tab.
fn headers(headers: &[(String, String)]) -> Result<(), String> {
    if headers.len() > MAX_CALL_HEADER_FIELDS {
        return Err(format!(
            "a call sends at most {MAX_CALL_HEADER_FIELDS} header fields"
        ));
    }
    let bytes: usize = headers.iter().map(|(n, v)| n.len() + v.len()).sum();
    if bytes > MAX_CALL_HEADER_BYTES {
        return Err(format!(
            "a call's header names and values are at most {MAX_CALL_HEADER_BYTES} bytes together"
        ));
    }
    for (name, value) in headers {
        if validate::header_syntax(name).is_err() {
            return Err(format!("`{}` is not a valid header name", quoted(name, 64)));
        }
        let name = name.to_ascii_lowercase();
        if validate::header_name(&name).is_err() {
            return Err(format!(
                "`{name}` is set by the gateway for the call's connection and cannot be sent \
                 by a plugin"
            ));
        }
        if validate::header_value(&name, value).is_err() {
            return Err(format!(
                "the value of `{name}` may not contain control characters (CR, LF, NUL)"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_are_tokens_and_never_connect() {
        for ok in ["GET", "POST", "PROPFIND", "get"] {
            assert!(method(ok).is_ok(), "{ok}");
        }
        for bad in ["", "GE T", "GET\r", "G:T", "CONNECT", "connect"] {
            assert!(method(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn paths_are_origin_form_targets() {
        for ok in [
            "/",
            "/v1/verify",
            "/a%20b?x=1&y=/z?",
            "//double",
            "/@:!$&'()*+,;=-._~",
            "/?",
        ] {
            assert!(path(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "v1",
            "*",
            "http://a/",
            "/a b",
            "/a\tb",
            "/a#frag",
            "/%2",
            "/%zz",
            "/a%",
            "/\u{e9}",
            "/a\"",
            "/<x>",
            "/a\\b",
            "/a{b}",
            "/a|b",
            "/[::1]",
            "/^",
            "/`",
            "/a?b c",
            "/\u{7f}",
        ] {
            assert!(path(bad).is_err(), "{bad:?}");
        }
        let longest = format!("/{}", "p".repeat(MAX_CALL_PATH_BYTES - 1));
        assert!(path(&longest).is_ok());
        assert_eq!(
            path(&format!("{longest}p")).unwrap_err(),
            "a call's path is at most 8192 bytes"
        );
    }

    #[test]
    fn headers_are_bounded_and_the_gateway_sets_framing_and_hop_by_hop() {
        let pair = |n: &str, v: &str| (n.to_owned(), v.to_owned());
        assert!(headers(&[pair("host", "auth.internal"), pair("x-a", "1")]).is_ok());
        for name in [
            "connection",
            "keep-alive",
            "proxy-connection",
            "te",
            "transfer-encoding",
            "upgrade",
            "trailer",
            "content-length",
            "Content-Length",
            "content_length",
            "Transfer_Encoding",
            "expect",
        ] {
            assert_eq!(
                headers(&[pair(name, "x")]).unwrap_err(),
                format!(
                    "`{}` is set by the gateway for the call's connection and cannot be sent \
                     by a plugin",
                    name.to_ascii_lowercase()
                )
            );
        }
        assert_eq!(
            headers(&[pair("bad name", "x")]).unwrap_err(),
            "`bad name` is not a valid header name"
        );
        assert_eq!(
            headers(&[pair("X-A", "a\nb")]).unwrap_err(),
            "the value of `x-a` may not contain control characters (CR, LF, NUL)"
        );
        assert!(headers(&[pair("x-a", "tab\tand caf\u{e9}")]).is_ok());
        let full = vec![pair("x", "1"); MAX_CALL_HEADER_FIELDS];
        assert!(headers(&full).is_ok());
        assert_eq!(
            headers(&[full.as_slice(), &[pair("x", "1")]].concat()).unwrap_err(),
            "a call sends at most 64 header fields"
        );
        let big = "v".repeat(MAX_CALL_HEADER_BYTES / 2 - 1);
        assert!(headers(&[pair("a", &big), pair("b", &big)]).is_ok());
        assert_eq!(
            headers(&[pair("a", &big), pair("bc", &big)]).unwrap_err(),
            "a call's header names and values are at most 16384 bytes together"
        );
    }

    #[test]
    fn timeouts_round_up_to_whole_milliseconds() {
        assert_eq!(CallRequest::timeout_ms(Duration::ZERO), 0);
        assert_eq!(CallRequest::timeout_ms(Duration::from_micros(1)), 1);
        assert_eq!(CallRequest::timeout_ms(Duration::from_micros(1500)), 2);
        assert_eq!(CallRequest::timeout_ms(Duration::from_secs(2)), 2000);
        assert_eq!(
            CallRequest::timeout_ms(Duration::from_secs(u64::MAX)),
            u32::MAX
        );
    }
}
