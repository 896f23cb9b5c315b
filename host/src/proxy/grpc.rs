//! gRPC as the pipeline sees it: which requests are gRPC calls, the
//! deadline a gRPC client asks for (`grpc-timeout`), and the answers Weir
//! makes itself for one (an error, a plugin's refusal) put the gRPC way.
//!
//! A gRPC client reads a call's outcome from `grpc-status`, not from the
//! HTTP status, so an answer of Weir's own to a gRPC call is HTTP 200 with
//! `grpc-status` and `grpc-message` and no body: a trailers-only response
//! (one HEADERS frame that ends the stream). The code is mapped from the
//! HTTP status the way gRPC's "HTTP to gRPC status code mapping" says
//! (400 INTERNAL, 401 UNAUTHENTICATED, 403 PERMISSION_DENIED,
//! 404 UNIMPLEMENTED, 429/502/503/504 UNAVAILABLE, the rest UNKNOWN), with
//! one exception: a request that ran out of its deadline is
//! DEADLINE_EXCEEDED, the code a gRPC client expects when its deadline (or
//! the route's) passes. The calls themselves, errors of the upstream's own
//! included, pass through untouched.

use std::time::Duration;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Response, StatusCode};

use super::error::ProxyError;
use super::response::ResponseBody;

static GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
static GRPC_MESSAGE: HeaderName = HeaderName::from_static("grpc-message");
static GRPC_TIMEOUT: HeaderName = HeaderName::from_static("grpc-timeout");

/// gRPC status codes Weir answers with.
pub mod code {
    pub const UNKNOWN: u32 = 2;
    pub const DEADLINE_EXCEEDED: u32 = 4;
    pub const PERMISSION_DENIED: u32 = 7;
    pub const UNIMPLEMENTED: u32 = 12;
    pub const INTERNAL: u32 = 13;
    pub const UNAVAILABLE: u32 = 14;
    pub const UNAUTHENTICATED: u32 = 16;
}

/// The longest `grpc-message` Weir sends (it carries its own short
/// reasons, or the text of a plugin's answer, cut to this).
const MAX_MESSAGE_BYTES: usize = 1024;

/// Whether the request is a gRPC call: HTTP/2 (gRPC runs on nothing
/// else) with a gRPC `content-type` (`application/grpc`, with a `+`
/// subtype or parameters; gRPC-Web is not gRPC on the wire).
pub fn is_call(version: http::Version, h: &HeaderMap) -> bool {
    version == http::Version::HTTP_2
        && h.get(header::CONTENT_TYPE).is_some_and(|v| {
            v.as_bytes()
                .strip_prefix(b"application/grpc")
                .is_some_and(|rest| rest.is_empty() || rest[0] == b'+' || rest[0] == b';')
        })
}

/// The deadline in the call's `grpc-timeout`, when it has one: 1 to 8
/// digits and a unit (`H`, `M`, `S`, `m`, `u`, `n`), as the gRPC over
/// HTTP/2 protocol defines it.
pub fn timeout(h: &HeaderMap) -> Result<Option<Duration>, &'static str> {
    let Some(v) = h.get(&GRPC_TIMEOUT) else {
        return Ok(None);
    };
    const BAD: &str = "a grpc-timeout that is not 1 to 8 digits and a unit (H, M, S, m, u, n)";
    let b = v.as_bytes();
    let (digits, unit) = b.split_at(b.len().saturating_sub(1));
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return Err(BAD);
    }
    let n: u64 = std::str::from_utf8(digits)
        .ok()
        .and_then(|d| d.parse().ok())
        .ok_or(BAD)?;
    Ok(Some(match unit {
        b"H" => Duration::from_secs(n * 3600),
        b"M" => Duration::from_secs(n * 60),
        b"S" => Duration::from_secs(n),
        b"m" => Duration::from_millis(n),
        b"u" => Duration::from_micros(n),
        b"n" => Duration::from_nanos(n),
        _ => return Err(BAD),
    }))
}

/// The gRPC code for an HTTP status, as gRPC's mapping says.
pub fn code_for(status: StatusCode) -> u32 {
    match status.as_u16() {
        400 => code::INTERNAL,
        401 => code::UNAUTHENTICATED,
        403 => code::PERMISSION_DENIED,
        404 => code::UNIMPLEMENTED,
        429 | 502 | 503 | 504 => code::UNAVAILABLE,
        _ => code::UNKNOWN,
    }
}

/// Weir's answer to a gRPC call that failed here.
pub fn error_response(e: &ProxyError) -> Response<ResponseBody> {
    let code = match e {
        ProxyError::UpstreamTimeout { .. } => code::DEADLINE_EXCEEDED,
        _ => code_for(e.status()),
    };
    let mut resp = trailers_only(code, &e.client_message());
    if let Some(wait) = e.retry_after_header() {
        resp.headers_mut().insert(header::RETRY_AFTER, wait);
    }
    resp
}

/// A plugin's own answer to a gRPC call: a 200 is the plugin's gRPC
/// answer and passes as it is; any other status becomes a trailers-only
/// gRPC status, its code mapped from the status and its message the
/// answer's text (or the status's reason), the plugin's headers kept.
pub fn from_answer(resp: Response<ResponseBody>) -> Response<ResponseBody> {
    if resp.status() == StatusCode::OK {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let text = body
        .as_full()
        .and_then(|b| std::str::from_utf8(b).ok().map(str::trim))
        .filter(|t| !t.is_empty());
    let message = text.unwrap_or(parts.status.canonical_reason().unwrap_or("error"));
    let code = code_for(parts.status);
    parts.headers.remove(header::CONTENT_LENGTH);
    let mut resp = trailers_only(code, message);
    for (name, value) in parts.headers.drain().filter_map(|(n, v)| Some((n?, v))) {
        resp.headers_mut().entry(name).or_insert(value);
    }
    resp
}

/// HTTP 200 whose headers carry the call's status and end the stream.
fn trailers_only(code: u32, message: &str) -> Response<ResponseBody> {
    let mut resp = Response::new(ResponseBody::empty());
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    h.insert(GRPC_STATUS.clone(), HeaderValue::from(code));
    h.insert(GRPC_MESSAGE.clone(), percent_encoded(message));
    resp
}

/// `grpc-message` is percent-encoded UTF-8: every byte outside printable
/// ASCII, and `%`, as `%XX`.
fn percent_encoded(message: &str) -> HeaderValue {
    let mut out = String::with_capacity(message.len().min(MAX_MESSAGE_BYTES));
    for &b in message.as_bytes() {
        if out.len() + 3 > MAX_MESSAGE_BYTES {
            break;
        }
        if (0x20..0x7f).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    HeaderValue::from_str(&out).expect("printable ASCII is a header value")
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Version;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(*n, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn grpc_calls_are_http2_with_a_grpc_content_type() {
        for (ct, yes) in [
            ("application/grpc", true),
            ("application/grpc+proto", true),
            ("application/grpc;charset=utf-8", true),
            ("application/grpc-web", false),
            ("application/grpc-web+proto", false),
            ("application/json", false),
        ] {
            let h = headers(&[("content-type", ct)]);
            assert_eq!(is_call(Version::HTTP_2, &h), yes, "{ct}");
            assert!(!is_call(Version::HTTP_11, &h), "{ct} over HTTP/1.1");
        }
        assert!(!is_call(Version::HTTP_2, &HeaderMap::new()));
    }

    #[test]
    fn grpc_timeouts() {
        let t = |v: &'static str| timeout(&headers(&[("grpc-timeout", v)]));
        assert_eq!(t("1S"), Ok(Some(Duration::from_secs(1))));
        assert_eq!(t("250m"), Ok(Some(Duration::from_millis(250))));
        assert_eq!(t("2H"), Ok(Some(Duration::from_secs(7200))));
        assert_eq!(t("3M"), Ok(Some(Duration::from_secs(180))));
        assert_eq!(t("99999999u"), Ok(Some(Duration::from_micros(99_999_999))));
        assert_eq!(t("5n"), Ok(Some(Duration::from_nanos(5))));
        for bad in ["", "S", "123456789S", "1s", "1.5S", "-1S", "1 S", "10"] {
            assert!(t(bad).is_err(), "{bad:?}");
        }
        assert_eq!(timeout(&HeaderMap::new()), Ok(None));
    }

    #[test]
    fn statuses_map_as_grpc_says() {
        for (http, grpc) in [
            (400, code::INTERNAL),
            (401, code::UNAUTHENTICATED),
            (403, code::PERMISSION_DENIED),
            (404, code::UNIMPLEMENTED),
            (429, code::UNAVAILABLE),
            (502, code::UNAVAILABLE),
            (503, code::UNAVAILABLE),
            (504, code::UNAVAILABLE),
            (500, code::UNKNOWN),
            (413, code::UNKNOWN),
        ] {
            assert_eq!(
                code_for(StatusCode::from_u16(http).unwrap()),
                grpc,
                "{http}"
            );
        }
    }

    #[test]
    fn weirs_errors_are_trailers_only_statuses() {
        let r = error_response(&ProxyError::NoRoute);
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()["grpc-status"], "12");
        assert_eq!(r.headers()["grpc-message"], "Not Found");
        assert_eq!(r.headers()["content-type"], "application/grpc");
        assert!(http_body::Body::is_end_stream(r.body()));

        let r = error_response(&ProxyError::UpstreamTimeout {
            endpoint: "e:1".into(),
            timeout: Duration::from_secs(1),
        });
        assert_eq!(r.headers()["grpc-status"], "4");

        let r = error_response(&ProxyError::NoEndpoint {
            upstream: "u".into(),
        });
        assert_eq!(r.headers()["grpc-status"], "14");
        assert_eq!(
            r.headers()["grpc-message"],
            "Service Unavailable: no healthy upstream endpoint"
        );
    }

    #[test]
    fn a_plugins_refusal_becomes_a_status_with_its_text_and_headers() {
        let mut answer = Response::new(ResponseBody::full("missing key 100%\n"));
        *answer.status_mut() = StatusCode::UNAUTHORIZED;
        answer
            .headers_mut()
            .insert("www-authenticate", HeaderValue::from_static("ApiKey"));
        answer
            .headers_mut()
            .insert("content-length", HeaderValue::from_static("17"));
        let r = from_answer(answer);
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()["grpc-status"], "16");
        assert_eq!(r.headers()["grpc-message"], "missing key 100%25");
        assert_eq!(r.headers()["www-authenticate"], "ApiKey");
        assert_eq!(r.headers()["content-type"], "application/grpc");
        assert!(!r.headers().contains_key("content-length"));

        let ok = Response::new(ResponseBody::full("x"));
        assert!(!from_answer(ok).headers().contains_key("grpc-status"));
    }

    #[test]
    fn messages_are_percent_encoded_and_bounded() {
        assert_eq!(percent_encoded("caf\u{e9} 50%"), "caf%C3%A9 50%25");
        assert!(percent_encoded(&"\u{e9}".repeat(2000)).len() <= MAX_MESSAGE_BYTES);
    }
}
