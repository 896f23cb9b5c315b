//! Fuzzes `weir_http1::parse_response`, and checks more than that it does
//! not panic:
//!
//! - an accepted head lies within the input and its bounds, ends in CRLF
//!   CRLF, has no bare LF, its reason and fields are slices of it, and its
//!   status is 100 to 999 (three digits, RFC 9110 section 15); its body
//!   framing follows RFC 9112 section 6.3 from the request it answers and
//!   its fields, read again independently: no body for `HEAD`, 1xx, 204
//!   and 304; a tunnel for a 2xx to `CONNECT`; else `Length(n)` (`n > 0`,
//!   one `Content-Length`), `Chunked` (one final `chunked`, HTTP/1.1) or
//!   `UntilClose`, and never beside a `chunked` with parameters (such as
//!   `chunked;q=1`, refused); the connection is kept only by what its
//!   fields say, and never after `UntilClose` or `Tunnel`;
//! - a refusal's status is 400 or 431 (a response has no target to be
//!   414 about), its code round-trips, and it displays as its reason;
//! - reading is incremental: a prefix shorter than an accepted head is
//!   incomplete, a prefix holding it parses to the same head, a prefix is
//!   never accepted when the whole is refused or incomplete, and never
//!   refused when the whole is incomplete;
//! - limits only ever add size refusals (431);
//! - the request answered only changes the body's framing: the same bytes
//!   answering a plain `GET` give the same head otherwise, and a refusal
//!   for any request is one for a plain `GET` too.
//!
//! Input: the first byte says what the response answers (bit 0: `HEAD`,
//! bit 1: `CONNECT`) and picks the limits (bits 2 and 3: see [`limits`]);
//! the response bytes follow.

#![no_main]

mod common;

use std::ops::Range;

use common::{Fields, check_head_bytes, check_limits, check_prefixes, field_spans, span};
use libfuzzer_sys::fuzz_target;
use weir_http1::head::Answering;
use weir_http1::{HeadError, Limits, ResponseBody, Version, parse_response};

/// An accepted response head, with its parts as spans of the input.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Head {
    len: usize,
    version: Version,
    status: u16,
    reason: Range<usize>,
    headers: Vec<(Range<usize>, Range<usize>)>,
    body: ResponseBody,
    keep_alive: bool,
}

/// The limits bits 2 and 3 of the first byte pick.
fn limits(b: u8) -> Limits {
    // A response has no target: its bound is never used.
    let max_target_bytes = 0;
    match (b >> 2) & 3 {
        0 => Limits {
            max_head_bytes: 8 * 1024,
            max_headers: 100,
            max_target_bytes,
        },
        1 => Limits {
            max_head_bytes: 128,
            max_headers: 4,
            max_target_bytes,
        },
        2 => Limits {
            max_head_bytes: 64 * 1024,
            max_headers: 1000,
            max_target_bytes,
        },
        _ => Limits {
            max_head_bytes: 1024,
            max_headers: 64,
            max_target_bytes,
        },
    }
}

/// Parses `buf`, checking an accepted head's bytes and fields on the way.
fn parse(buf: &[u8], limits: &Limits, answering: Answering) -> Result<Option<Head>, HeadError> {
    let result = parse_response(buf, limits, answering, |h| {
        check_head_bytes(buf, h.len, limits.max_head_bytes);
        assert!(
            h.headers.len() <= limits.max_headers,
            "fields over the bound"
        );
        // Three digits, 100 to 999 (RFC 9110 section 15).
        assert!((100..=999).contains(&h.status), "status {}", h.status);
        let headers = field_spans(buf, h.headers.iter().map(|f| (f.name, f.value)), h.len);
        Head {
            len: h.len,
            version: h.version,
            status: h.status,
            reason: span(buf, h.reason.as_bytes(), h.len),
            headers,
            body: h.body,
            keep_alive: h.keep_alive,
        }
    });
    if let Err(e) = result {
        assert!(
            matches!(e.status(), 400 | 431),
            "{e:?} answered with {}",
            e.status()
        );
        assert_ne!(
            e,
            HeadError::TargetTooLong,
            "a response refused for its target"
        );
        assert_eq!(e.to_string(), e.reason());
        assert!(!e.reason().is_empty());
    }
    result
}

/// The head's framing and connection options against its fields and the
/// request it answers.
fn check_fields(buf: &[u8], head: &Head, answering: Answering) {
    let f = Fields::read(buf, &head.headers);
    let http11 = head.version == Version::Http11;
    let status = head.status;
    if answering.head || (100..200).contains(&status) || status == 204 || status == 304 {
        assert_eq!(head.body, ResponseBody::Empty, "a body where none can be");
        assert_eq!(
            head.keep_alive,
            f.keep_alive(http11),
            "keep_alive without a body"
        );
        return;
    }
    if answering.connect && (200..300).contains(&status) {
        assert_eq!(head.body, ResponseBody::Tunnel, "a 2xx to CONNECT");
        assert!(!head.keep_alive, "a tunnel kept for requests");
        return;
    }
    // The framing fields are read: a `chunked` with parameters is refused.
    assert!(
        !f.chunked_with_params,
        "accepted beside a `chunked` with parameters"
    );
    match head.body {
        ResponseBody::Empty => {
            assert_eq!(f.te_lines, 0, "no body beside Transfer-Encoding");
            assert_eq!(f.length(), 0, "no body without Content-Length: 0");
        }
        ResponseBody::Length(n) => {
            assert!(n > 0, "Length(0)");
            assert_eq!(f.te_lines, 0, "a length beside Transfer-Encoding");
            assert_eq!(f.length(), n, "a length other than Content-Length's");
        }
        ResponseBody::Chunked => {
            assert!(http11, "chunked in HTTP/1.0");
            assert!(f.lengths.is_empty(), "chunked beside Content-Length");
            assert!(
                f.chunked_last(),
                "chunked without a final, single `chunked`"
            );
        }
        ResponseBody::UntilClose => {
            assert!(
                f.lengths.is_empty(),
                "read to the close beside Content-Length"
            );
            assert!(
                f.te_lines == 0 || (http11 && !f.chunked_last()),
                "read to the close beside a final `chunked`, or a coding in HTTP/1.0"
            );
            assert!(!head.keep_alive, "a body read to the close, then kept");
            return;
        }
        ResponseBody::Tunnel => panic!("a tunnel not answering CONNECT with 2xx"),
    }
    assert_eq!(head.keep_alive, f.keep_alive(http11), "keep_alive");
}

fuzz_target!(|input: &[u8]| {
    let Some((&pick, buf)) = input.split_first() else {
        return;
    };
    let limits = limits(pick);
    let answering = Answering {
        head: pick & 1 != 0,
        connect: pick & 2 != 0,
    };
    let whole = parse(buf, &limits, answering);
    if let Ok(Some(head)) = &whole {
        check_fields(buf, head, answering);
    }

    check_prefixes(
        buf,
        &whole,
        limits.max_head_bytes,
        |h| h.len,
        |b| parse(b, &limits, answering),
    );
    // A response is never refused for its target (`parse` asserts so),
    // and its target bound stays unused.
    check_limits(
        &whole,
        &limits,
        buf.len(),
        "a head read otherwise without limits",
        "a head read otherwise without limits",
        |generous| {
            let generous = Limits {
                max_target_bytes: 0,
                ..generous
            };
            parse(buf, &generous, answering)
        },
    );

    // The request answered changes the framing only.
    let plain = parse(buf, &limits, Answering::default());
    match (&plain, &whole) {
        (Ok(Some(p)), Ok(Some(w))) => {
            let strip = |h: &Head| Head {
                body: ResponseBody::Empty,
                keep_alive: false,
                ..h.clone()
            };
            assert_eq!(
                strip(p),
                strip(w),
                "the answered request changed more than framing"
            );
        }
        (Ok(Some(_)), other) => panic!("accepted answering GET, not {answering:?}: {other:?}"),
        (Ok(None), other) => assert_eq!(other, &Ok(None), "incomplete answering GET only"),
        (Err(e), Ok(Some(_))) => assert!(e.is_framing(), "{e:?} answering GET only"),
        (Err(_), Ok(None)) => panic!("refused answering GET, incomplete for {answering:?}"),
        (Err(_), Err(e)) => assert_eq!(Some(e), plain.as_ref().err(), "another refusal"),
    }
});
