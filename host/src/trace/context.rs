//! W3C Trace Context, level 1 (<https://www.w3.org/TR/trace-context/>):
//! the `traceparent` and `tracestate` request headers read, checked and
//! replaced by the ones the upstream receives.
//!
//! Written by hand: the format is two short grammars, and the crates that
//! read it either come with a tracing SDK Weir does not use or are
//! lenient where the specification is strict (upper-case hex, an all-zero
//! id, a version-00 value with more fields, several `traceparent`
//! fields). Every check here is one rule of the specification, and a
//! value that breaks one is never forwarded as it came.
//!
//! Nothing here allocates for a request without trace headers beyond the
//! one `traceparent` value Weir sends; the work is bounded by
//! [`MAX_TRACESTATE_BYTES`] whatever a client sends.

use std::fmt;

use http::header::{HeaderMap, HeaderName, HeaderValue};

pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
pub const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// At most this many list members in a `tracestate` (section 3.3.1.1).
pub const MAX_TRACESTATE_MEMBERS: usize = 32;
/// A `tracestate` longer than this, all its fields together, is dropped:
/// 512 is what the specification asks every participant to pass on
/// (section 3.3.1.5), and Weir does not truncate on anyone's behalf.
pub const MAX_TRACESTATE_BYTES: usize = 512;

/// The sampled flag, the only one version 00 defines. Weir sends the
/// other bits as zero, as the specification asks of a participant that
/// does not know them (section 3.2.2.5).
pub const SAMPLED: u8 = 0x01;

/// A trace id: 16 bytes, never all zero.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TraceId(pub [u8; 16]);

/// A span id: 8 bytes, never all zero.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SpanId(pub [u8; 8]);

impl TraceId {
    /// A new random id, from the thread's `fastrand` generator (seeded
    /// from the system's randomness): unique enough to name a trace, and
    /// no system call per request.
    pub fn random() -> TraceId {
        loop {
            let v = fastrand::u128(..);
            if v != 0 {
                return TraceId(v.to_be_bytes());
            }
        }
    }
}

impl SpanId {
    /// A new random id (see [`TraceId::random`]).
    pub fn random() -> SpanId {
        loop {
            let v = fastrand::u64(..);
            if v != 0 {
                return SpanId(v.to_be_bytes());
            }
        }
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn write_hex(out: &mut [u8], bytes: &[u8]) {
    for (i, b) in bytes.iter().enumerate() {
        out[2 * i] = HEX[usize::from(b >> 4)];
        out[2 * i + 1] = HEX[usize::from(b & 0xf)];
    }
}

fn fmt_hex(bytes: &[u8], f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let mut buf = [0u8; 32];
    let out = &mut buf[..2 * bytes.len()];
    write_hex(out, bytes);
    // Only ASCII hex digits were written.
    f.write_str(std::str::from_utf8(out).unwrap_or_default())
}

/// Lower-case hex, as in the header.
impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt_hex(&self.0, f)
    }
}

impl fmt::Debug for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Lower-case hex, as in the header.
impl fmt::Display for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt_hex(&self.0, f)
    }
}

impl fmt::Debug for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A valid `traceparent` as a client sent it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parent {
    pub trace_id: TraceId,
    /// The client's span: the parent of Weir's server span.
    pub span_id: SpanId,
    pub flags: u8,
}

impl Parent {
    pub fn sampled(&self) -> bool {
        self.flags & SAMPLED != 0
    }
}

/// Lower-case hex digits only (`HEXDIGLC` in the specification's grammar).
fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

fn hex<const N: usize>(s: &[u8]) -> Option<[u8; N]> {
    if s.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (i, pair) in s.chunks_exact(2).enumerate() {
        out[i] = (hex_value(pair[0])? << 4) | hex_value(pair[1])?;
    }
    Some(out)
}

/// Optional white space around a field value (RFC 9110 section 5.5);
/// HTTP parsers usually strip it already.
fn trim_ows(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|b| !matches!(b, b' ' | b'\t'));
    let end = s.iter().rposition(|b| !matches!(b, b' ' | b'\t'));
    match (start, end) {
        (Some(a), Some(b)) => &s[a..=b],
        _ => &[],
    }
}

/// The length of a version-00 `traceparent`:
/// `00-` + 32 hex + `-` + 16 hex + `-` + 2 hex.
const LEN_00: usize = 55;

/// Parses one `traceparent` value (section 3.2). Version 00 is exactly
/// `00-{32 hex}-{16 hex}-{2 hex}`; a higher version is read by the
/// forward-compatibility rules of section 4.3 (the same first fields, then
/// either the end or a `-` and whatever that version adds); `ff` is
/// invalid. The ids may not be all zero.
pub fn parse_traceparent(value: &[u8]) -> Option<Parent> {
    let v = trim_ows(value);
    if v.len() < LEN_00 {
        return None;
    }
    let [version] = hex::<1>(&v[0..2])?;
    if version == 0xff {
        return None;
    }
    if version == 0 && v.len() != LEN_00 {
        return None;
    }
    if v.len() > LEN_00 && v[LEN_00] != b'-' {
        return None;
    }
    if v[2] != b'-' || v[35] != b'-' || v[52] != b'-' {
        return None;
    }
    let trace_id = hex::<16>(&v[3..35]).filter(|t| *t != [0; 16])?;
    let span_id = hex::<8>(&v[36..52]).filter(|s| *s != [0; 8])?;
    let [flags] = hex::<1>(&v[53..55])?;
    Some(Parent {
        trace_id: TraceId(trace_id),
        span_id: SpanId(span_id),
        flags,
    })
}

/// The client's `traceparent`: `None` when absent, `Some(None)` when
/// present and invalid. More than one field is invalid (section 3.2: a
/// participant receiving several cannot tell which is meant).
fn incoming_parent(headers: &HeaderMap) -> Option<Option<Parent>> {
    let mut all = headers.get_all(TRACEPARENT).iter();
    let first = all.next()?;
    if all.next().is_some() {
        return Some(None);
    }
    Some(parse_traceparent(first.as_bytes()))
}

/// `lcalpha / DIGIT / "_" / "-" / "*" / "/"`: what may follow a key's
/// first character.
fn key_char(b: u8) -> bool {
    matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'*' | b'/')
}

/// A list member's key (section 3.3.1.3.1): a simple key of up to 256
/// characters starting with a letter, or `tenant@system` with a tenant of
/// up to 241 characters starting with a letter or digit and a system of
/// up to 14 starting with a letter.
fn key_ok(k: &[u8]) -> bool {
    let part = |s: &[u8], max: usize, first: fn(&u8) -> bool| {
        !s.is_empty() && s.len() <= max && first(&s[0]) && s[1..].iter().all(|b| key_char(*b))
    };
    match k.iter().position(|b| *b == b'@') {
        None => part(k, 256, u8::is_ascii_lowercase),
        Some(at) => {
            part(&k[..at], 241, |b| {
                b.is_ascii_lowercase() || b.is_ascii_digit()
            }) && part(&k[at + 1..], 14, u8::is_ascii_lowercase)
        }
    }
}

/// `nblk-chr`: printable ASCII but `,` and `=`.
fn value_char(b: u8) -> bool {
    matches!(b, 0x21..=0x2B | 0x2D..=0x3C | 0x3E..=0x7E)
}

/// A list member's value (section 3.3.1.3.2): 1 to 256 characters, inner
/// spaces allowed, not a trailing one.
fn value_ok(v: &[u8]) -> bool {
    !v.is_empty()
        && v.len() <= 256
        && v.iter().all(|b| *b == b' ' || value_char(*b))
        && v.last().is_some_and(|b| value_char(*b))
}

/// The client's `tracestate` as one value to forward: every field's list
/// members joined (several fields form one list, RFC 9110 section 5.3),
/// white space around members and empty members left out. `None` when
/// absent or invalid: over [`MAX_TRACESTATE_BYTES`] in all, over
/// [`MAX_TRACESTATE_MEMBERS`] members, a malformed member, or a key twice
/// (the specification's keys are unique). An invalid list is dropped
/// whole: forwarding a part would be Weir's guess at what the vendors
/// meant.
pub fn parse_tracestate(headers: &HeaderMap) -> Option<HeaderValue> {
    let fields = headers.get_all(TRACESTATE);
    let mut total = 0usize;
    let mut any = false;
    for f in fields.iter() {
        total += f.len() + usize::from(any);
        any = true;
        if total > MAX_TRACESTATE_BYTES {
            return None;
        }
    }
    if !any {
        return None;
    }
    let mut members: Vec<(&[u8], &[u8])> = Vec::new();
    for f in fields.iter() {
        for m in f.as_bytes().split(|b| *b == b',') {
            let m = trim_ows(m);
            if m.is_empty() {
                continue;
            }
            let eq = m.iter().position(|b| *b == b'=')?;
            let (k, v) = (&m[..eq], &m[eq + 1..]);
            if !key_ok(k) || !value_ok(v) || members.iter().any(|(seen, _)| *seen == k) {
                return None;
            }
            members.push((k, v));
            if members.len() > MAX_TRACESTATE_MEMBERS {
                return None;
            }
        }
    }
    if members.is_empty() {
        return None;
    }
    let mut out = Vec::with_capacity(total);
    for (i, (k, v)) in members.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(k);
        out.push(b'=');
        out.extend_from_slice(v);
    }
    HeaderValue::from_bytes(&out).ok()
}

/// How a request's trace context is decided.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// Whether a client's valid `traceparent` is continued (its trace id
    /// and sampled flag kept) rather than replaced.
    pub trust_client: bool,
    /// The share of requests Weir samples when it decides.
    pub sample_rate: f64,
}

impl Policy {
    fn sample(&self) -> bool {
        self.sample_rate >= 1.0 || (self.sample_rate > 0.0 && fastrand::f64() < self.sample_rate)
    }
}

/// A request's trace context, as decided at its start.
#[derive(Debug, Clone)]
pub struct Context {
    pub trace_id: TraceId,
    /// The client's span, when its `traceparent` was kept: the parent of
    /// Weir's server span.
    pub parent: Option<SpanId>,
    /// Weir's server span.
    pub span_id: SpanId,
    pub sampled: bool,
    /// The client's `tracestate`, forwarded with a kept `traceparent`.
    pub tracestate: Option<HeaderValue>,
}

impl Context {
    /// Decides the request's context from the client's headers, and
    /// replaces those with what the upstream receives: a `traceparent`
    /// naming Weir's server span, and the client's `tracestate` only
    /// beside a `traceparent` that was kept. A client's trace is continued
    /// when its `traceparent` is valid and clients are trusted; otherwise
    /// the request starts a new trace and Weir decides its sampling.
    pub fn propagate(headers: &mut HeaderMap, policy: Policy) -> Context {
        let kept = match incoming_parent(headers) {
            Some(Some(p)) if policy.trust_client => Some(p),
            _ => None,
        };
        let tracestate = kept.and_then(|_| parse_tracestate(headers));
        // Whatever came in goes: a replaced context must not leave a
        // stale field beside the new one.
        headers.remove(TRACEPARENT);
        headers.remove(TRACESTATE);
        let cx = match kept {
            Some(p) => Context {
                trace_id: p.trace_id,
                parent: Some(p.span_id),
                span_id: SpanId::random(),
                sampled: p.sampled(),
                tracestate,
            },
            None => Context {
                trace_id: TraceId::random(),
                parent: None,
                span_id: SpanId::random(),
                sampled: policy.sample(),
                tracestate: None,
            },
        };
        headers.insert(TRACEPARENT, cx.traceparent(cx.span_id));
        if let Some(ts) = &cx.tracestate {
            headers.insert(TRACESTATE, ts.clone());
        }
        cx
    }

    /// The `traceparent` naming `span` (Weir's server span, or one try
    /// upstream) as the parent: version 00, this trace, the sampled flag.
    pub fn traceparent(&self, span: SpanId) -> HeaderValue {
        let mut v = *b"00-00000000000000000000000000000000-0000000000000000-00";
        write_hex(&mut v[3..35], &self.trace_id.0);
        write_hex(&mut v[36..52], &span.0);
        write_hex(&mut v[53..55], &[if self.sampled { SAMPLED } else { 0 }]);
        HeaderValue::from_bytes(&v).unwrap_or_else(|_| HeaderValue::from_static(""))
    }
}

#[cfg(test)]
mod tests;
