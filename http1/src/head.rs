//! Request and response heads: parsed with httparse, then checked for the
//! ambiguities a proxy must refuse, and read for what frames the body
//! (RFC 9112 section 6.3) and whether the connection stays open after it.
//!
//! A head is refused ([`HeadError`]) when:
//! - it does not parse (httparse: bad tokens, a bad request target, an
//!   obsolete line folding, an unknown version);
//! - any line ends in a bare LF (RFC 9112 section 2.2 lets a recipient
//!   accept one; a proxy that does, ahead of a server that does not, reads
//!   a different message than the server);
//! - it is larger than [`Limits::max_head_bytes`], has more than
//!   [`Limits::max_headers`] fields, or a request target longer than
//!   [`Limits::max_target_bytes`];
//! - `Content-Length` appears twice (equal or not), holds a list, or is
//!   not a decimal number below 10^19;
//! - `Content-Length` and `Transfer-Encoding` appear together
//!   (section 6.1);
//! - `Transfer-Encoding` appears in an HTTP/1.0 message (section 6.1), or
//!   does not end in exactly one `chunked` in a request (section 6.3
//!   rule 4) or a response it frames;
//! - a list element of `Transfer-Encoding` is empty of a token.

/// Field storage tried first, on the stack; a head with more fields is
/// parsed again with room for [`Limits::max_headers`].
const INLINE_HEADERS: usize = 64;
/// Digits of the largest `Content-Length` taken: 10^19 - 1 fits in a u64.
const MAX_LENGTH_DIGITS: usize = 19;

/// The bounds a head is parsed within.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Bytes of the whole head, start line to the empty line: over it,
    /// 431.
    pub max_head_bytes: usize,
    /// Header fields: over it, 431.
    pub max_headers: usize,
    /// Bytes of a request target: over it, 414.
    pub max_target_bytes: usize,
}

/// HTTP/1.0 or HTTP/1.1: httparse takes no other version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
}

/// How a request's body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyLength {
    /// No body: neither framing header, or `Content-Length: 0`.
    Empty,
    /// `Content-Length` bytes (more than zero).
    Length(u64),
    /// `Transfer-Encoding` ending in `chunked`.
    Chunked,
}

/// How a response's body is framed, given the request it answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseBody {
    /// No body: an answer to `HEAD`, a 1xx, 204 or 304, or
    /// `Content-Length: 0`.
    Empty,
    /// `Content-Length` bytes (more than zero).
    Length(u64),
    /// `Transfer-Encoding` ending in `chunked`.
    Chunked,
    /// Neither framing header, or a transfer coding other than `chunked`
    /// last: the body ends when the upstream closes (section 6.3 rules 4
    /// and 8), and the connection cannot be reused.
    UntilClose,
    /// A 2xx answer to `CONNECT`: the connection becomes a tunnel.
    Tunnel,
}

/// Why a head was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadError {
    /// httparse refused it: a bad token, target, version, or field line.
    Syntax,
    /// A line ended in LF without CR.
    BareLf,
    /// Over [`Limits::max_head_bytes`].
    TooLarge,
    /// Over [`Limits::max_headers`] fields.
    TooManyHeaders,
    /// A request target over [`Limits::max_target_bytes`].
    TargetTooLong,
    /// `Content-Length` that is not one decimal number below 10^19.
    BadContentLength,
    /// `Content-Length` twice, or a list.
    RepeatedContentLength,
    /// `Content-Length` beside `Transfer-Encoding`.
    LengthAndChunked,
    /// `Transfer-Encoding` in an HTTP/1.0 message.
    TransferEncodingHttp10,
    /// `Transfer-Encoding` not ending in exactly one `chunked` (a request),
    /// or with an empty list element.
    BadTransferEncoding,
}

impl HeadError {
    /// The status a server answers the refusal with.
    pub fn status(self) -> u16 {
        match self {
            HeadError::TooLarge | HeadError::TooManyHeaders => 431,
            HeadError::TargetTooLong => 414,
            _ => 400,
        }
    }

    /// A short reason, for logs and error bodies.
    pub fn reason(self) -> &'static str {
        match self {
            HeadError::Syntax => "malformed head",
            HeadError::BareLf => "a line ended in LF without CR",
            HeadError::TooLarge => "head too large",
            HeadError::TooManyHeaders => "too many header fields",
            HeadError::TargetTooLong => "request target too long",
            HeadError::BadContentLength => "an invalid Content-Length",
            HeadError::RepeatedContentLength => "Content-Length repeated or a list",
            HeadError::LengthAndChunked => "both Content-Length and Transfer-Encoding",
            HeadError::TransferEncodingHttp10 => "Transfer-Encoding in an HTTP/1.0 message",
            HeadError::BadTransferEncoding => "a Transfer-Encoding other than a final `chunked`",
        }
    }

    /// Whether the refusal is about framing (what a proxy must not guess
    /// at) rather than the head's syntax or size.
    pub fn is_framing(self) -> bool {
        !matches!(
            self,
            HeadError::Syntax
                | HeadError::TooLarge
                | HeadError::TooManyHeaders
                | HeadError::TargetTooLong
        )
    }
}

impl std::fmt::Display for HeadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.reason())
    }
}

impl std::error::Error for HeadError {}

/// A parsed and checked request head, borrowing the bytes it was read
/// from.
#[derive(Debug)]
pub struct RequestHead<'h, 'b> {
    /// Bytes of the head, from the first byte given (leading empty lines
    /// included) to the end of its empty line: the body starts here.
    pub len: usize,
    pub method: &'b str,
    pub target: &'b str,
    pub version: Version,
    pub headers: &'h [httparse::Header<'b>],
    pub body: BodyLength,
    /// Whether the connection may carry another request after this one:
    /// HTTP/1.1 without `Connection: close`, or HTTP/1.0 with
    /// `Connection: keep-alive`.
    pub keep_alive: bool,
    /// `Expect: 100-continue` on an HTTP/1.1 request.
    pub expect_continue: bool,
    /// `Connection: upgrade` with an `Upgrade` field.
    pub upgrade: bool,
}

/// A parsed and checked response head, borrowing the bytes it was read
/// from.
#[derive(Debug)]
pub struct ResponseHead<'h, 'b> {
    /// Bytes of the head, to the end of its empty line.
    pub len: usize,
    pub version: Version,
    pub status: u16,
    pub reason: &'b str,
    pub headers: &'h [httparse::Header<'b>],
    pub body: ResponseBody,
    /// Whether the connection may carry another request after this
    /// response's body.
    pub keep_alive: bool,
}

/// Parses the request head at the start of `buf` and hands it to `f`.
/// `Ok(None)`: the head is not complete yet (and within its bounds so
/// far); read more and call again with all of it.
pub fn parse_request<R>(
    buf: &[u8],
    limits: &Limits,
    f: impl FnOnce(RequestHead<'_, '_>) -> R,
) -> Result<Option<R>, HeadError> {
    let mut inline = [httparse::EMPTY_HEADER; INLINE_HEADERS];
    let mut heap;
    // Storage for at most the limit, so that a partial head past it is
    // refused as soon as httparse sees one field too many.
    let mut req = httparse::Request::new(&mut inline[..limits.max_headers.min(INLINE_HEADERS)]);
    let mut parsed = req.parse(buf);
    if matches!(parsed, Err(httparse::Error::TooManyHeaders)) && limits.max_headers > INLINE_HEADERS
    {
        heap = vec![httparse::EMPTY_HEADER; limits.max_headers];
        req = httparse::Request::new(&mut heap);
        parsed = req.parse(buf);
    }
    let len = match complete(parsed, buf, limits, Some(req.path.map(str::len)))? {
        Some(len) => len,
        None => return Ok(None),
    };
    if req.headers.len() > limits.max_headers {
        return Err(HeadError::TooManyHeaders);
    }
    let (Some(method), Some(target), Some(v)) = (req.method, req.path, req.version) else {
        return Err(HeadError::Syntax);
    };
    let version = if v == 0 {
        Version::Http10
    } else {
        Version::Http11
    };
    let fields = Fields::read(req.headers, version)?;
    let body = match (fields.length, fields.chunked) {
        (Some(_), Some(_)) => return Err(HeadError::LengthAndChunked),
        (None, Some(true)) => BodyLength::Chunked,
        // Section 6.3 rule 4: a request's coding must end in chunked.
        (None, Some(false)) => return Err(HeadError::BadTransferEncoding),
        (Some(0), None) | (None, None) => BodyLength::Empty,
        (Some(n), None) => BodyLength::Length(n),
    };
    Ok(Some(f(RequestHead {
        len,
        method,
        target,
        version,
        headers: req.headers,
        body,
        keep_alive: fields.keep_alive,
        expect_continue: fields.expect_continue && version == Version::Http11,
        upgrade: fields.upgrade,
    })))
}

/// What a response's framing depends on in the request it answers.
#[derive(Debug, Clone, Copy, Default)]
pub struct Answering {
    /// The request was `HEAD`: its response has no body whatever it says.
    pub head: bool,
    /// The request was `CONNECT`: a 2xx makes the connection a tunnel.
    pub connect: bool,
}

/// Parses the response head at the start of `buf`, an answer to a request
/// as `answering` describes it, and hands it to `f`. `Ok(None)`: not
/// complete yet.
pub fn parse_response<R>(
    buf: &[u8],
    limits: &Limits,
    answering: Answering,
    f: impl FnOnce(ResponseHead<'_, '_>) -> R,
) -> Result<Option<R>, HeadError> {
    let mut inline = [httparse::EMPTY_HEADER; INLINE_HEADERS];
    let mut heap;
    // Storage for at most the limit, so that a partial head past it is
    // refused as soon as httparse sees one field too many.
    let mut resp = httparse::Response::new(&mut inline[..limits.max_headers.min(INLINE_HEADERS)]);
    let mut parsed = resp.parse(buf);
    if matches!(parsed, Err(httparse::Error::TooManyHeaders)) && limits.max_headers > INLINE_HEADERS
    {
        heap = vec![httparse::EMPTY_HEADER; limits.max_headers];
        resp = httparse::Response::new(&mut heap);
        parsed = resp.parse(buf);
    }
    let len = match complete(parsed, buf, limits, None)? {
        Some(len) => len,
        None => return Ok(None),
    };
    if resp.headers.len() > limits.max_headers {
        return Err(HeadError::TooManyHeaders);
    }
    // Three digits, 100 to 999 (RFC 9110 section 15): httparse takes 000.
    let (Some(status @ 100..), Some(v)) = (resp.code, resp.version) else {
        return Err(HeadError::Syntax);
    };
    let version = if v == 0 {
        Version::Http10
    } else {
        Version::Http11
    };
    let (body, keep_alive) =
        if answering.head || (100..200).contains(&status) || status == 204 || status == 304 {
            // Section 6.3 rule 1: whatever the fields say, no body; the
            // fields describe the representation (a 304's length is the
            // cached body's), so they are not read for framing.
            let fields = Fields::read_connection(resp.headers, version);
            (ResponseBody::Empty, fields.keep_alive)
        } else if answering.connect && (200..300).contains(&status) {
            (ResponseBody::Tunnel, false)
        } else {
            let fields = Fields::read(resp.headers, version)?;
            match (fields.length, fields.chunked) {
                (Some(_), Some(_)) => return Err(HeadError::LengthAndChunked),
                (None, Some(true)) => (ResponseBody::Chunked, fields.keep_alive),
                // Rule 4: a response whose last coding is not chunked ends
                // when the connection does.
                (None, Some(false)) | (None, None) => (ResponseBody::UntilClose, false),
                (Some(0), None) => (ResponseBody::Empty, fields.keep_alive),
                (Some(n), None) => (ResponseBody::Length(n), fields.keep_alive),
            }
        };
    Ok(Some(f(ResponseHead {
        len,
        version,
        status,
        reason: resp.reason.unwrap_or(""),
        headers: resp.headers,
        body,
        keep_alive,
    })))
}

/// The head's length once httparse has parsed it whole, after the checks
/// every head gets: size, bare LF, target length. `target`: for a request,
/// its target's length once parsed; `None` for a response.
fn complete(
    parsed: httparse::Result<usize>,
    buf: &[u8],
    limits: &Limits,
    target: Option<Option<usize>>,
) -> Result<Option<usize>, HeadError> {
    let target_len = target.flatten();
    match parsed {
        Ok(httparse::Status::Complete(len)) => {
            if target_len.is_some_and(|n| n > limits.max_target_bytes) {
                return Err(HeadError::TargetTooLong);
            }
            if len > limits.max_head_bytes {
                return Err(HeadError::TooLarge);
            }
            if has_bare_lf(&buf[..len]) {
                return Err(HeadError::BareLf);
            }
            Ok(Some(len))
        }
        Ok(httparse::Status::Partial) => {
            if has_bare_lf(buf) {
                return Err(HeadError::BareLf);
            }
            if buf.len() > limits.max_head_bytes {
                // A request line alone past the target bound is a long
                // target, not a large head.
                let long = match target {
                    Some(Some(n)) => n > limits.max_target_bytes,
                    Some(None) => request_line_over(buf, limits.max_target_bytes),
                    None => false,
                };
                if long {
                    return Err(HeadError::TargetTooLong);
                }
                return Err(HeadError::TooLarge);
            }
            Ok(None)
        }
        Err(httparse::Error::TooManyHeaders) => Err(HeadError::TooManyHeaders),
        Err(_) => Err(if has_bare_lf(buf) {
            HeadError::BareLf
        } else {
            HeadError::Syntax
        }),
    }
}

/// Whether `buf` starts with a request line (`METHOD SP target`) whose
/// target runs past `max` bytes with no end in sight.
fn request_line_over(buf: &[u8], max: usize) -> bool {
    let Some(sp) = buf.iter().position(|&b| b == b' ') else {
        return false;
    };
    let rest = &buf[sp + 1..];
    rest.len() > max
        && !rest[..=max]
            .iter()
            .any(|&b| b == b' ' || b == b'\r' || b == b'\n')
}

/// Whether any LF in `bytes` lacks the CR before it.
fn has_bare_lf(bytes: &[u8]) -> bool {
    memchr::memchr_iter(b'\n', bytes).any(|i| i == 0 || bytes[i - 1] != b'\r')
}

/// What a head's fields say about framing and the connection.
struct Fields {
    length: Option<u64>,
    /// `Transfer-Encoding` present: whether its last coding is one
    /// `chunked` (and no earlier one is).
    chunked: Option<bool>,
    keep_alive: bool,
    expect_continue: bool,
    upgrade: bool,
}

impl Fields {
    /// Framing and connection options, in one pass over the fields. Names
    /// are told apart by length first: most fields are none of these, and
    /// that costs them one comparison.
    fn read(headers: &[httparse::Header<'_>], version: Version) -> Result<Fields, HeadError> {
        let mut options = Options::default();
        let mut length = None;
        let mut codings: Option<Codings> = None;
        for h in headers {
            let name = h.name.as_bytes();
            match name.len() {
                14 if name.eq_ignore_ascii_case(b"content-length") => {
                    if length.is_some() {
                        return Err(HeadError::RepeatedContentLength);
                    }
                    length = Some(content_length(h.value)?);
                }
                17 if name.eq_ignore_ascii_case(b"transfer-encoding") => {
                    codings.get_or_insert_with(Codings::default).add(h.value)?;
                }
                _ => options.field(name, h.value),
            }
        }
        let mut fields = options.fields(version);
        fields.length = length;
        if let Some(c) = codings {
            if version == Version::Http10 {
                return Err(HeadError::TransferEncodingHttp10);
            }
            fields.chunked = Some(c.last_chunked && c.chunked == 1);
        }
        Ok(fields)
    }

    /// The connection options only (`Connection`, `Upgrade`, `Expect`).
    fn read_connection(headers: &[httparse::Header<'_>], version: Version) -> Fields {
        let mut options = Options::default();
        for h in headers {
            options.field(h.name.as_bytes(), h.value);
        }
        options.fields(version)
    }
}

/// The connection options, as the fields are read.
#[derive(Default)]
struct Options {
    close: bool,
    keep: bool,
    upgrade_option: bool,
    upgrade_field: bool,
    expect: bool,
}

impl Options {
    /// Reads one field, if it is `Connection`, `Upgrade` or `Expect`.
    fn field(&mut self, name: &[u8], value: &[u8]) {
        match name.len() {
            10 if name.eq_ignore_ascii_case(b"connection") => {
                for option in list(value) {
                    self.close |= option.eq_ignore_ascii_case(b"close");
                    self.keep |= option.eq_ignore_ascii_case(b"keep-alive");
                    self.upgrade_option |= option.eq_ignore_ascii_case(b"upgrade");
                }
            }
            7 if name.eq_ignore_ascii_case(b"upgrade") => self.upgrade_field = true,
            6 if name.eq_ignore_ascii_case(b"expect") => {
                self.expect |= value.trim_ascii().eq_ignore_ascii_case(b"100-continue");
            }
            _ => {}
        }
    }

    fn fields(self, version: Version) -> Fields {
        Fields {
            length: None,
            chunked: None,
            keep_alive: !self.close && (version == Version::Http11 || self.keep),
            expect_continue: self.expect,
            upgrade: self.upgrade_option && self.upgrade_field,
        }
    }
}

/// A `Transfer-Encoding` list over all its field lines.
#[derive(Default)]
struct Codings {
    chunked: u32,
    last_chunked: bool,
}

impl Codings {
    fn add(&mut self, value: &[u8]) -> Result<(), HeadError> {
        for element in value.split(|&b| b == b',') {
            let element = element.trim_ascii();
            // A coding and its parameters: the name is what counts.
            let name = element
                .split(|&b| b == b';')
                .next()
                .unwrap_or_default()
                .trim_ascii();
            if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
                return Err(HeadError::BadTransferEncoding);
            }
            self.last_chunked = name.eq_ignore_ascii_case(b"chunked");
            // `chunked` takes no parameters (RFC 9112 section 7): one
            // with them is a disguise a next hop may not see through.
            if self.last_chunked && name.len() != element.len() {
                return Err(HeadError::BadTransferEncoding);
            }
            self.chunked += u32::from(self.last_chunked);
        }
        Ok(())
    }
}

/// A `Content-Length` value: one run of 1 to 19 digits (no sign, no list).
fn content_length(value: &[u8]) -> Result<u64, HeadError> {
    let v = value.trim_ascii();
    if v.contains(&b',') {
        return Err(HeadError::RepeatedContentLength);
    }
    if v.is_empty() || v.len() > MAX_LENGTH_DIGITS || !v.iter().all(u8::is_ascii_digit) {
        return Err(HeadError::BadContentLength);
    }
    Ok(v.iter().fold(0, |n, d| n * 10 + u64::from(d - b'0')))
}

/// The non-empty elements of a comma-separated field value, trimmed.
fn list(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|e| !e.is_empty())
}

/// A token character (RFC 9110 section 5.6.2).
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests;
