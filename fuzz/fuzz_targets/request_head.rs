//! Fuzzes `weir_http1::parse_request`, and checks more than that it does
//! not panic:
//!
//! - an accepted head lies within the input and its bounds, ends in CRLF
//!   CRLF, has no bare LF, and its method, target and fields are slices of
//!   it; its body framing, `keep_alive`, `expect_continue` and `upgrade`
//!   are what its fields say, read again independently (`Length(n)` has
//!   `n > 0` and exactly one `Content-Length`; `Chunked` has a
//!   `Transfer-Encoding` ending in one `chunked`, no `Content-Length`, and
//!   HTTP/1.1; no accepted head has a `chunked` with parameters, such as
//!   `chunked;q=1`; ...);
//! - a refusal's status is 400, 414 or 431, its code round-trips, and it
//!   displays as its reason;
//! - reading is incremental, as a server reading from a socket needs: a
//!   prefix shorter than an accepted head is incomplete (`Ok(None)`), and
//!   a prefix holding the head parses to the very same head; a prefix is
//!   never accepted when the whole input is refused or incomplete, and
//!   never refused when the whole is incomplete;
//! - limits only ever add size refusals (431, 414): with generous limits
//!   an accepted head is the same head, and any other refusal is the same
//!   refusal.
//!
//! Input: the first byte picks the limits (its low two bits: see
//! [`limits`]); the request bytes follow.

#![no_main]

mod common;

use std::ops::Range;

use common::{Fields, check_head_bytes, check_limits, check_prefixes, field_spans, span};
use libfuzzer_sys::fuzz_target;
use weir_http1::{BodyLength, HeadError, Limits, Version, parse_request};

/// An accepted request head, with its parts as spans of the input.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Head {
    len: usize,
    method: Range<usize>,
    target: Range<usize>,
    version: Version,
    headers: Vec<(Range<usize>, Range<usize>)>,
    body: BodyLength,
    keep_alive: bool,
    expect_continue: bool,
    upgrade: bool,
}

/// The limits the first byte picks.
fn limits(b: u8) -> Limits {
    match b & 3 {
        // The gateway's kind of bounds.
        0 => Limits {
            max_head_bytes: 8 * 1024,
            max_headers: 100,
            max_target_bytes: 4 * 1024,
        },
        // Tight: every size refusal is within reach.
        1 => Limits {
            max_head_bytes: 128,
            max_headers: 4,
            max_target_bytes: 32,
        },
        // More fields than the parser keeps on the stack (64): the
        // second parse with room on the heap.
        2 => Limits {
            max_head_bytes: 64 * 1024,
            max_headers: 1000,
            max_target_bytes: 8 * 1024,
        },
        // Exactly the fields kept on the stack, and a target of a few bytes.
        _ => Limits {
            max_head_bytes: 1024,
            max_headers: 64,
            max_target_bytes: 8,
        },
    }
}

/// Parses `buf`, checking an accepted head's bytes and fields on the way.
fn parse(buf: &[u8], limits: &Limits) -> Result<Option<Head>, HeadError> {
    let result = parse_request(buf, limits, |h| {
        check_head_bytes(buf, h.len, limits.max_head_bytes);
        assert!(
            h.headers.len() <= limits.max_headers,
            "fields over the bound"
        );
        assert!(!h.method.is_empty(), "an empty method");
        assert!(!h.target.is_empty(), "an empty target");
        assert!(
            h.target.len() <= limits.max_target_bytes,
            "a target over its bound"
        );
        let headers = field_spans(buf, h.headers.iter().map(|f| (f.name, f.value)), h.len);
        Head {
            len: h.len,
            method: span(buf, h.method.as_bytes(), h.len),
            target: span(buf, h.target.as_bytes(), h.len),
            version: h.version,
            headers,
            body: h.body,
            keep_alive: h.keep_alive,
            expect_continue: h.expect_continue,
            upgrade: h.upgrade,
        }
    });
    if let Err(e) = result {
        assert!(
            matches!(e.status(), 400 | 414 | 431),
            "{e:?} answered with {}",
            e.status()
        );
        assert_eq!(e.to_string(), e.reason());
        assert!(!e.reason().is_empty());
    }
    result
}

/// The head's framing and connection options against its fields.
fn check_fields(buf: &[u8], head: &Head) {
    let f = Fields::read(buf, &head.headers);
    let http11 = head.version == Version::Http11;
    assert!(
        !f.chunked_with_params,
        "accepted beside a `chunked` with parameters"
    );
    match head.body {
        BodyLength::Empty => {
            assert_eq!(f.te_lines, 0, "no body beside Transfer-Encoding");
            assert!(
                f.lengths.is_empty() || f.length() == 0,
                "no body beside a length"
            );
        }
        BodyLength::Length(n) => {
            assert!(n > 0, "Length(0)");
            assert_eq!(f.te_lines, 0, "a length beside Transfer-Encoding");
            assert_eq!(f.length(), n, "a length other than Content-Length's");
        }
        BodyLength::Chunked => {
            assert!(http11, "chunked in HTTP/1.0");
            assert!(f.lengths.is_empty(), "chunked beside Content-Length");
            assert!(
                f.chunked_last(),
                "chunked without a final, single `chunked`"
            );
        }
    }
    assert_eq!(head.keep_alive, f.keep_alive(http11), "keep_alive");
    assert_eq!(
        head.expect_continue,
        http11 && f.expect_continue,
        "expect_continue"
    );
    assert_eq!(head.upgrade, f.upgrade_option && f.upgrade_field, "upgrade");
}

fuzz_target!(|input: &[u8]| {
    let Some((&pick, buf)) = input.split_first() else {
        return;
    };
    let limits = limits(pick);
    let whole = parse(buf, &limits);
    if let Ok(Some(head)) = &whole {
        check_fields(buf, head);
    }

    check_prefixes(
        buf,
        &whole,
        limits.max_head_bytes,
        |h| h.len,
        |b| parse(b, &limits),
    );
    check_limits(
        &whole,
        &limits,
        buf.len(),
        "accepted within limits, not without",
        "incomplete within limits, not without",
        |generous| parse(buf, &generous),
    );
});
