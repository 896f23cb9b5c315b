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
//! A request costs one look-up of each header name (the field read, then
//! replaced or removed in place) and one allocation, the `traceparent`
//! value Weir sends; a client's `tracestate` already in the form Weir
//! would send is forwarded as the same value, not rebuilt. The work is
//! bounded by [`MAX_TRACESTATE_BYTES`] whatever a client sends.

use std::fmt;

use http::header::{Entry, HeaderMap, HeaderName, HeaderValue, ValueIter};

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

    /// Lower-case hex, as in the header, without allocating.
    pub fn hex(&self) -> Hex<32> {
        let mut out = [0u8; 32];
        write_hex(&mut out, &self.0);
        Hex(out)
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

    /// Lower-case hex, as in the header, without allocating.
    pub fn hex(&self) -> Hex<16> {
        let mut out = [0u8; 16];
        write_hex(&mut out, &self.0);
        Hex(out)
    }
}

/// An id's lower-case hex digits, on the stack.
#[derive(Clone, Copy)]
pub struct Hex<const N: usize>([u8; N]);

impl<const N: usize> Hex<N> {
    /// The digits as text (for a log line, say).
    pub fn as_str(&self) -> &str {
        // Only ever ASCII hex digits.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

/// The lower-case hex digits (`HEXDIGLC` in the specification's
/// grammar), by value.
const DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Each byte's two hex digits: writing an id is one look-up per byte (a
/// `traceparent` has 24 bytes of ids, and every request gets one).
static HEX_PAIRS: [[u8; 2]; 256] = {
    let mut t = [[0; 2]; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = [DIGITS[i >> 4], DIGITS[i & 0xf]];
        i += 1;
    }
    t
};

/// `bytes` as lower-case hex into `out`, twice as long.
fn write_hex(out: &mut [u8], bytes: &[u8]) {
    for (pair, b) in out.chunks_exact_mut(2).zip(bytes) {
        pair.copy_from_slice(&HEX_PAIRS[usize::from(*b)]);
    }
}

/// Lower-case hex, as in the header.
impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.hex().as_str())
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
        f.write_str(self.hex().as_str())
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

/// Each byte's value as one of [`DIGITS`] (upper case is not one), or
/// `0xff`.
static DIGIT_VALUES: [u8; 256] = {
    let mut t = [0xff; 256];
    let mut i = 0;
    while i < 16 {
        t[DIGITS[i] as usize] = i as u8;
        i += 1;
    }
    t
};

/// `N` lower-case hex digits (at most 16) as the number they write.
/// Every digit is looked up and the verdict taken once, at the end: no
/// branch per digit.
fn hex_number<const N: usize>(s: &[u8]) -> Option<u64> {
    const { assert!(N <= 16) };
    let s: &[u8; N] = s.try_into().ok()?;
    let mut n = 0u64;
    let mut bad = 0u8;
    for c in s {
        let d = DIGIT_VALUES[usize::from(*c)];
        bad |= d;
        n = (n << 4) | u64::from(d);
    }
    (bad <= 0xf).then_some(n)
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
    let version = hex_number::<2>(&v[0..2])?;
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
    let trace_id = (u128::from(hex_number::<16>(&v[3..19])?) << 64)
        | u128::from(hex_number::<16>(&v[19..35])?);
    let span_id = hex_number::<16>(&v[36..52])?;
    let flags = hex_number::<2>(&v[53..55])? as u8;
    if trace_id == 0 || span_id == 0 {
        return None;
    }
    Some(Parent {
        trace_id: TraceId(trace_id.to_be_bytes()),
        span_id: SpanId(span_id.to_be_bytes()),
        flags,
    })
}

/// The client's `traceparent` fields read as one: `None` when invalid.
/// More than one field is invalid (section 3.2: a participant receiving
/// several cannot tell which is meant).
fn incoming_parent(mut fields: ValueIter<'_, HeaderValue>) -> Option<Parent> {
    let first = fields.next()?;
    if fields.next().is_some() {
        return None;
    }
    parse_traceparent(first.as_bytes())
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

/// A valid `tracestate` as Weir forwards it.
#[derive(Debug, PartialEq, Eq)]
pub enum TraceState {
    /// One field with no white space around its members and no empty
    /// member: forwarded as the client's value.
    AsSent,
    /// Every field's members joined into one value.
    Joined(HeaderValue),
}

/// Reads the client's `tracestate` fields as one list (several fields
/// form one list, RFC 9110 section 5.3): white space around members and
/// empty members left out. `None` when absent or invalid: over
/// [`MAX_TRACESTATE_BYTES`] in all, over [`MAX_TRACESTATE_MEMBERS`]
/// members, a malformed member, or a key twice (the specification's keys
/// are unique). An invalid list is dropped whole: forwarding a part would
/// be Weir's guess at what the vendors meant.
pub fn parse_tracestate(fields: ValueIter<'_, HeaderValue>) -> Option<TraceState> {
    // Each member as it will be sent (`key=value`), on the stack.
    let mut members: [&[u8]; MAX_TRACESTATE_MEMBERS] = [&[]; MAX_TRACESTATE_MEMBERS];
    let mut count = 0;
    let mut total = 0usize;
    let mut field_count = 0;
    let mut as_sent = true;
    for f in fields {
        total += f.len() + usize::from(field_count > 0);
        field_count += 1;
        if total > MAX_TRACESTATE_BYTES {
            return None;
        }
        for raw in f.as_bytes().split(|b| *b == b',') {
            let m = trim_ows(raw);
            as_sent &= !m.is_empty() && m.len() == raw.len();
            if m.is_empty() {
                continue;
            }
            let eq = m.iter().position(|b| *b == b'=')?;
            let (k, v) = (&m[..eq], &m[eq + 1..]);
            let key_twice = members[..count].iter().any(|o| o.starts_with(&m[..=eq]));
            if !key_ok(k) || !value_ok(v) || key_twice {
                return None;
            }
            *members.get_mut(count)? = m;
            count += 1;
        }
    }
    match count {
        0 => None,
        _ if as_sent && field_count == 1 => Some(TraceState::AsSent),
        _ => HeaderValue::from_bytes(&members[..count].join(&b','))
            .ok()
            .map(TraceState::Joined),
    }
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
        // Whatever came in is replaced in place (one look-up per name): a
        // replaced context must not leave a stale field beside the new one.
        let mut cx;
        match headers.entry(TRACEPARENT) {
            Entry::Occupied(mut e) => {
                let kept = if policy.trust_client {
                    incoming_parent(e.iter())
                } else {
                    None
                };
                cx = Context::new(kept, policy);
                e.insert(cx.traceparent(cx.span_id));
            }
            Entry::Vacant(e) => {
                cx = Context::new(None, policy);
                e.insert(cx.traceparent(cx.span_id));
            }
        }
        if cx.parent.is_none() {
            headers.remove(TRACESTATE);
        } else if let Entry::Occupied(mut e) = headers.entry(TRACESTATE) {
            match parse_tracestate(e.iter()) {
                Some(TraceState::AsSent) => cx.tracestate = Some(e.get().clone()),
                Some(TraceState::Joined(v)) => {
                    e.insert(v.clone());
                    cx.tracestate = Some(v);
                }
                None => drop(e.remove()),
            }
        }
        cx
    }

    /// The context of a request whose client's `traceparent` was `kept`
    /// (or not), with a new span for Weir's server span.
    fn new(kept: Option<Parent>, policy: Policy) -> Context {
        let span_id = SpanId::random();
        match kept {
            Some(p) => Context {
                trace_id: p.trace_id,
                parent: Some(p.span_id),
                span_id,
                sampled: p.sampled(),
                tracestate: None,
            },
            None => Context {
                trace_id: TraceId::random(),
                parent: None,
                span_id,
                sampled: policy.sample(),
                tracestate: None,
            },
        }
    }

    /// The `traceparent` naming `span` (Weir's server span, or one try
    /// upstream) as the parent: version 00, this trace, the sampled flag.
    pub fn traceparent(&self, span: SpanId) -> HeaderValue {
        let mut v = *b"00-00000000000000000000000000000000-0000000000000000-00";
        write_hex(&mut v[3..35], &self.trace_id.0);
        write_hex(&mut v[36..52], &span.0);
        if self.sampled {
            v[54] = b'1';
        }
        HeaderValue::from_bytes(&v).unwrap_or_else(|_| HeaderValue::from_static(""))
    }
}

#[cfg(test)]
mod tests;
