//! What the two head targets (`request_head`, `response_head`) check the
//! same way: where a parsed part lies in the input, that every prefix of
//! the input reads as the whole does, that limits only add size refusals,
//! and an independent reading of the fields that frame a body or keep a
//! connection open, to hold the parser's reading against.
//!
//! The reading here follows the rules `weir_http1::head` documents, written
//! again over the header spans the parser returned, so that a slip in one
//! of the two shows as a difference.

use std::fmt::Debug;
use std::ops::Range;

use weir_http1::{HeadError, Limits};

/// Where `part` lies in `buf`, asserting that it lies inside the head
/// (`buf[..len]`). An empty part may be a constant rather than a slice of
/// the input, so it is not placed.
pub fn span(buf: &[u8], part: &[u8], len: usize) -> Range<usize> {
    if part.is_empty() {
        return 0..0;
    }
    let start = (part.as_ptr() as usize).wrapping_sub(buf.as_ptr() as usize);
    assert!(
        start < len && part.len() <= len - start,
        "a parsed part ({start}, {} bytes) lies outside the head of {len} bytes",
        part.len()
    );
    start..start + part.len()
}

/// Where each field's name and value lie in the head (see [`span`]).
pub fn field_spans<'a>(
    buf: &[u8],
    fields: impl Iterator<Item = (&'a str, &'a [u8])>,
    len: usize,
) -> Vec<(Range<usize>, Range<usize>)> {
    fields
        .map(|(name, value)| (span(buf, name.as_bytes(), len), span(buf, value, len)))
        .collect()
}

/// The prefix lengths of an `n`-byte input to parse again: all of them
/// for a short input, else an even spread of about 64 and the few around
/// each of `near` (a head's end, a limit), so that the cost per input
/// stays linear.
pub fn cuts(n: usize, near: &[usize]) -> Vec<usize> {
    if n <= 192 {
        return (0..=n).collect();
    }
    let step = n / 64;
    let mut at: Vec<usize> = (0..=n).step_by(step).collect();
    at.push(n);
    for &k in near {
        at.extend(k.saturating_sub(4)..=k.saturating_add(1).min(n));
    }
    at.retain(|&k| k <= n);
    at.sort_unstable();
    at.dedup();
    at
}

/// Incremental reading: every prefix of `buf` agrees with `whole`, what
/// `parse` made of all of it. A prefix shorter than an accepted head
/// (`head_len`) is incomplete, and a prefix holding it parses to the very
/// same head; a prefix is never accepted when the whole is refused or
/// incomplete, and never refused when the whole is incomplete. The
/// prefixes are those of [`cuts`], near the head's end and
/// `max_head_bytes`.
pub fn check_prefixes<H: PartialEq + Debug>(
    buf: &[u8],
    whole: &Result<Option<H>, HeadError>,
    max_head_bytes: usize,
    head_len: impl Fn(&H) -> usize,
    parse: impl Fn(&[u8]) -> Result<Option<H>, HeadError>,
) {
    let near = match whole {
        Ok(Some(head)) => vec![head_len(head), max_head_bytes],
        _ => vec![max_head_bytes],
    };
    for k in cuts(buf.len(), &near) {
        let part = parse(&buf[..k]);
        match (whole, &part) {
            (Ok(Some(head)), _) if k < head_len(head) => {
                assert_eq!(
                    part,
                    Ok(None),
                    "a prefix of {k} bytes of a {}-byte head",
                    head_len(head)
                );
            }
            (Ok(Some(_)), _) => assert_eq!(&part, whole, "a prefix of {k} bytes holding the head"),
            (Ok(None), _) => assert_eq!(
                part,
                Ok(None),
                "a prefix of {k} bytes of an incomplete head"
            ),
            (Err(e), Ok(Some(_))) => {
                panic!("a prefix of {k} bytes accepted, the whole refused ({e:?})")
            }
            (Err(_), _) => {}
        }
    }
}

/// Limits only ever add size refusals (431, and 414 for a request's
/// target): `whole`, an `n`-byte input parsed within `limits`, against
/// what `parse_with` makes of the same input within limits it cannot
/// reach. A head accepted (`accepted` says how it differed) or incomplete
/// (`incomplete`) is the same either way, and so is any refusal that is
/// not about size.
pub fn check_limits<H: PartialEq + Debug>(
    whole: &Result<Option<H>, HeadError>,
    limits: &Limits,
    n: usize,
    accepted: &str,
    incomplete: &str,
    parse_with: impl FnOnce(Limits) -> Result<Option<H>, HeadError>,
) {
    let free = parse_with(Limits {
        max_head_bytes: usize::MAX,
        max_headers: limits.max_headers.max(n / 2 + 1),
        max_target_bytes: usize::MAX,
    });
    match whole {
        Ok(Some(_)) => assert_eq!(&free, whole, "{accepted}"),
        Ok(None) => assert_eq!(&free, whole, "{incomplete}"),
        Err(HeadError::TooLarge | HeadError::TooManyHeaders | HeadError::TargetTooLong) => {}
        Err(_) => assert_eq!(
            &free, whole,
            "a refusal that is not about size changed with the limits"
        ),
    }
}

/// Whether a line in `bytes` ends in LF without CR.
pub fn has_bare_lf(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .enumerate()
        .any(|(i, &b)| b == b'\n' && (i == 0 || bytes[i - 1] != b'\r'))
}

/// The checks every complete head gets, request or response.
pub fn check_head_bytes(buf: &[u8], len: usize, max_head_bytes: usize) {
    assert!(
        len <= buf.len(),
        "head of {len} bytes in {} bytes",
        buf.len()
    );
    assert!(len <= max_head_bytes, "head of {len} bytes over its bound");
    assert!(
        buf[..len].ends_with(b"\r\n\r\n"),
        "a head that does not end in CRLF CRLF"
    );
    assert!(!has_bare_lf(&buf[..len]), "a bare LF in an accepted head");
}

/// What the fields of a head say, read again from its header spans.
#[derive(Debug, Default)]
pub struct Fields {
    /// The `Content-Length` values, trimmed.
    pub lengths: Vec<Vec<u8>>,
    /// `Transfer-Encoding` lines.
    pub te_lines: usize,
    /// The coding names of all `Transfer-Encoding` lines, in order (each
    /// list element up to its first `;`, trimmed, in lower case).
    pub codings: Vec<Vec<u8>>,
    /// Whether a `chunked` element carries parameters (a `;` after its
    /// name): `chunked` takes none, and a head with one is refused
    /// wherever its framing is read.
    pub chunked_with_params: bool,
    pub close: bool,
    pub keep_alive_option: bool,
    pub upgrade_option: bool,
    pub upgrade_field: bool,
    pub expect_continue: bool,
}

impl Fields {
    pub fn read(buf: &[u8], headers: &[(Range<usize>, Range<usize>)]) -> Fields {
        let mut f = Fields::default();
        for (name, value) in headers {
            let name = &buf[name.clone()];
            let value = &buf[value.clone()];
            let is = |n: &str| name.eq_ignore_ascii_case(n.as_bytes());
            if is("content-length") {
                f.lengths.push(value.trim_ascii().to_vec());
            } else if is("transfer-encoding") {
                f.te_lines += 1;
                for element in value.split(|&b| b == b',') {
                    let coding = element.split(|&b| b == b';').next().unwrap_or_default();
                    let coding = coding.trim_ascii().to_ascii_lowercase();
                    f.chunked_with_params |= coding == b"chunked" && element.contains(&b';');
                    f.codings.push(coding);
                }
            } else if is("connection") {
                for option in value.split(|&b| b == b',') {
                    let option = option.trim_ascii();
                    f.close |= option.eq_ignore_ascii_case(b"close");
                    f.keep_alive_option |= option.eq_ignore_ascii_case(b"keep-alive");
                    f.upgrade_option |= option.eq_ignore_ascii_case(b"upgrade");
                }
            } else if is("upgrade") {
                f.upgrade_field = true;
            } else if is("expect") {
                f.expect_continue |= value.trim_ascii().eq_ignore_ascii_case(b"100-continue");
            }
        }
        f
    }

    /// The one `Content-Length`, as a number, for a head that was
    /// accepted: there must be exactly one, of 1 to 19 digits.
    pub fn length(&self) -> u64 {
        assert_eq!(
            self.lengths.len(),
            1,
            "a length framing without one Content-Length"
        );
        let v = &self.lengths[0];
        assert!(
            !v.is_empty() && v.len() <= 19 && v.iter().all(u8::is_ascii_digit),
            "an accepted Content-Length {:?}",
            String::from_utf8_lossy(v)
        );
        v.iter().fold(0, |n, d| n * 10 + u64::from(d - b'0'))
    }

    /// Whether the codings end in one `chunked`, the only `chunked`, and
    /// it has no parameters.
    pub fn chunked_last(&self) -> bool {
        self.codings.last().is_some_and(|c| c == b"chunked")
            && self.codings.iter().filter(|c| *c == b"chunked").count() == 1
            && !self.chunked_with_params
    }

    /// Whether the connection stays open by these fields: HTTP/1.1 without
    /// `close`, HTTP/1.0 with `keep-alive`.
    pub fn keep_alive(&self, http11: bool) -> bool {
        !self.close && (http11 || self.keep_alive_option)
    }
}
