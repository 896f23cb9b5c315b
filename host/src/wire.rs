//! HTTP/1.1 bytes on a socket, shared by Weir's two HTTP/1.1 connections:
//! the client's (`listener::h1`) and an upstream's (`upstream::h1`). Both
//! read into buffers from one per-worker pool, read bodies framed by
//! length, by chunks or by the close out of those buffers ([`BodyState`]),
//! and write a head and a body's frames as one queue of slices ([`Out`]).
//! A response head that needs only this hop's edits keeps its field
//! lines as received ([`RawHead`]) instead of becoming a header map.
//!
//! Written here rather than taken from a library: hyper frames messages
//! only inside its own connection types, whose buffers live as long as
//! the connection (see `listener::h1` for why that does not suit), and
//! the framing rules themselves are `weir_http1`'s. What is left is this
//! glue between those rules, a socket and the `http_body` frames the
//! pipeline moves.
//!
//! Bounds: a read asks for at most [`READ_SIZE`] bytes when the buffer is
//! short of room; a worker keeps at most [`POOL_MAX`] buffers of at most
//! [`POOL_MAX_CAPACITY`] bytes, and at most [`MAPS_MAX`] header maps of
//! at most [`MAP_MAX_CAPACITY`] fields; [`Out`] queues at most
//! [`MAX_QUEUED`] bytes of a body before it is written; a chunked body's
//! trailers are bounded by the caller's [`chunked::Limits`]; a
//! [`RawHead`]'s lines by the head they were read from (the upstream's
//! head limit) plus the fields appended.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes, BytesMut};
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http_body::{Body, Frame};
use smallvec::SmallVec;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use weir_http1::chunked;

use crate::body::BoxError;

/// Bytes a read asks for when the buffer has less room than
/// [`MIN_ROOM`].
pub(crate) const READ_SIZE: usize = 8 * 1024;
const MIN_ROOM: usize = 1024;
/// Read buffers a worker keeps for its connections' next reads (512 KiB
/// at most); beyond, a buffer given back is freed.
const POOL_MAX: usize = 64;
/// A buffer that grew past this (a large head) is freed, not kept.
pub(crate) const POOL_MAX_CAPACITY: usize = 4 * READ_SIZE;
/// Header maps a worker keeps for the next heads. A request's map and its
/// response's are each made and dropped once per request, and a new map
/// is two allocations, one of them (about 1.2 KiB of entries) too large
/// for the allocator's per-thread cache.
const MAPS_MAX: usize = 16;
/// A map that grew to hold more fields than this is freed, not kept (a
/// kept map is about 5 KiB at most).
const MAP_MAX_CAPACITY: usize = 48;
/// Body bytes queued before the body is polled again.
pub(crate) const MAX_QUEUED: usize = 64 * 1024;
/// A chunk-size line with its extensions.
pub(crate) const MAX_CHUNK_LINE: usize = 4 * 1024;
/// Chunk extensions over a whole body (hyper's bound, one byte under
/// 16 KiB).
pub(crate) const MAX_EXTENSIONS: usize = 16 * 1024 - 1;

thread_local! {
    /// This worker's read buffers, empty and unshared, waiting for a
    /// connection that has something to read.
    static POOL: std::cell::RefCell<Vec<BytesMut>> = const { std::cell::RefCell::new(Vec::new()) };
    /// Head buffers (a response's on the client side), kept the same way.
    static HEADS: std::cell::RefCell<Vec<Vec<u8>>> = const { std::cell::RefCell::new(Vec::new()) };
    /// A head's fields as parsed (name, and where the value lies in the
    /// bytes read), before they go in its map: one list per worker.
    static FIELDS: std::cell::RefCell<Vec<(HeaderName, usize, usize)>> = const { std::cell::RefCell::new(Vec::new()) };
    /// Emptied header maps, with their room.
    static MAPS: std::cell::RefCell<Vec<HeaderMap>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// An empty header map with room for `fields`, from this worker's pool
/// when it has one.
pub(crate) fn take_map(fields: usize) -> HeaderMap {
    match MAPS.with(|m| m.borrow_mut().pop()) {
        Some(mut map) => {
            map.reserve(fields);
            map
        }
        None => HeaderMap::with_capacity(fields),
    }
}

/// Gives a head's map back once its fields are written: emptied at once
/// (its values may be slices of a read buffer, which is then free for its
/// own pool), and kept for the next head unless it grew large or the pool
/// is full.
pub(crate) fn give_map(mut map: HeaderMap) {
    if map.capacity() == 0 || map.capacity() > MAP_MAX_CAPACITY {
        return;
    }
    map.clear();
    MAPS.with(|m| {
        let mut m = m.borrow_mut();
        if m.len() < MAPS_MAX {
            m.push(map);
        }
    });
}

/// This worker's list for a head's fields, empty.
pub(crate) fn take_fields() -> Vec<(HeaderName, usize, usize)> {
    let mut f = FIELDS.with(|f| std::mem::take(&mut *f.borrow_mut()));
    f.clear();
    f
}

/// Gives the list back for the next head.
pub(crate) fn give_fields(mut fields: Vec<(HeaderName, usize, usize)>) {
    fields.clear();
    FIELDS.with(|f| *f.borrow_mut() = fields);
}

/// A parsed head's fields (in this worker's list): each name, and where
/// its value lies in `buf`, the bytes the head was parsed from.
pub(crate) fn field_spans(
    buf: &[u8],
    headers: &[httparse::Header<'_>],
) -> Result<Vec<(HeaderName, usize, usize)>, weir_http1::HeadError> {
    let base = buf.as_ptr() as usize;
    let mut fields = take_fields();
    for f in headers {
        let name =
            HeaderName::from_bytes(f.name.as_bytes()).map_err(|_| weir_http1::HeadError::Syntax)?;
        let at = f.value.as_ptr() as usize - base;
        fields.push((name, at, at + f.value.len()));
    }
    Ok(fields)
}

/// The fields [`field_spans`] found, as a map whose values are slices of
/// `head` (no copies), with room for `room` more; the list goes back to
/// the worker. `None`: a value `http` will not hold.
pub(crate) fn field_map(
    head: &Bytes,
    mut fields: Vec<(HeaderName, usize, usize)>,
    room: usize,
) -> Option<HeaderMap> {
    let mut map = take_map(fields.len() + room);
    let mut ok = true;
    for (name, a, b) in fields.drain(..) {
        match HeaderValue::from_maybe_shared(head.slice(a..b)) {
            Ok(v) => {
                map.append(name, v);
            }
            Err(_) => ok = false,
        }
    }
    give_fields(fields);
    ok.then_some(map)
}

/// A response head's fields as an HTTP/1.1 upstream sent them, for the
/// client's HTTP/1.1 connection to write without making them a map: the
/// field lines in their order and case, less the hop-by-hop fields and
/// the framing the writer decides (`Content-Length`,
/// `Transfer-Encoding`), with the fields this hop adds appended
/// ([`RawHead::append`]). Made only for a head whose edits are exactly
/// those ([`RawHead::of`]); any other (a `Via` to extend, an
/// `X-Request-Id` to replace, a `Connection` naming other fields, a field
/// named `close`) goes through a map. Its lines are no longer than the
/// head they came from (at most the upstream's head limit) plus the
/// appended fields.
pub(crate) struct RawHead {
    /// `name: value\r\n` lines, in a buffer from this worker's pool.
    lines: Vec<u8>,
    /// The first `Content-Length` as sent (a `HEAD` or `304` answer
    /// repeats it).
    length: Option<u64>,
    /// A `Date` was among the fields.
    dated: bool,
}

/// Hop-by-hop fields by definition (RFC 9110 section 7.6.1, and the
/// legacy ones proxies still see), lower case: `proxy::headers` removes
/// the same from a map.
pub(crate) const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "te",
    "transfer-encoding",
    "upgrade",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "http2-settings",
];

/// Whether `name` (a field name, or a token of `Connection`) is one of
/// [`HOP_BY_HOP`]; names compare case-insensitively.
pub(crate) fn is_hop_by_hop(name: &[u8]) -> bool {
    HOP_BY_HOP
        .iter()
        .any(|h| name.eq_ignore_ascii_case(h.as_bytes()))
}

impl RawHead {
    /// The fields of a parsed head, `None` when writing them as received
    /// would differ from the map's edits (see [`RawHead`]).
    pub(crate) fn of(headers: &[httparse::Header<'_>]) -> Option<RawHead> {
        let mut raw = RawHead {
            lines: take_head(),
            length: None,
            dated: false,
        };
        for f in headers {
            match field_kind(f.name.as_bytes()) {
                FieldKind::Kept => {}
                FieldKind::Date => raw.dated = true,
                FieldKind::Length => {
                    if raw.length.is_none() {
                        raw.length = std::str::from_utf8(f.value)
                            .ok()
                            .and_then(|v| v.parse().ok());
                    }
                    continue;
                }
                FieldKind::HopByHop => continue,
                FieldKind::Connection if lists_only_hop_by_hop(f.value) => continue,
                FieldKind::Connection | FieldKind::Edited => {
                    raw.give_back();
                    return None;
                }
            }
            raw.push(f.name.as_bytes(), f.value);
        }
        Some(raw)
    }

    fn push(&mut self, name: &[u8], value: &[u8]) {
        self.lines.extend_from_slice(name);
        self.lines.extend_from_slice(b": ");
        self.lines.extend_from_slice(value);
        self.lines.extend_from_slice(b"\r\n");
    }

    /// Adds a field after those received.
    pub(crate) fn append(&mut self, name: &HeaderName, value: &HeaderValue) {
        self.push(name.as_str().as_bytes(), value.as_bytes());
    }

    /// The field lines, each ending in CRLF.
    pub(crate) fn lines(&self) -> &[u8] {
        &self.lines
    }

    /// The first `Content-Length` received, when it was a number.
    pub(crate) fn length(&self) -> Option<u64> {
        self.length
    }

    pub(crate) fn dated(&self) -> bool {
        self.dated
    }

    /// The fields into `map` (appended), for a writer that takes a map.
    pub(crate) fn into_map(self, map: &mut HeaderMap) {
        for line in self.lines.split(|b| *b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let Some(colon) = line.iter().position(|b| *b == b':') else {
                continue;
            };
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(&line[..colon]),
                HeaderValue::from_bytes(line[colon + 1..].trim_ascii_start()),
            ) {
                map.append(name, value);
            }
        }
        self.give_back();
    }

    /// Gives the lines' buffer back to this worker's pool.
    pub(crate) fn give_back(self) {
        give_head(self.lines);
    }
}

/// What [`RawHead::of`] does with a field, by its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FieldKind {
    Kept,
    /// Kept, and noted.
    Date,
    /// Left to the writer's framing, its value noted.
    Length,
    /// Left out: one of [`HOP_BY_HOP`] (`Transfer-Encoding` with them).
    HopByHop,
    /// Left out when it names no other field.
    Connection,
    /// A field the map path edits (`Via`, `X-Request-Id`), or one a
    /// `Connection: close` beside it would name: the head needs a map.
    Edited,
}

/// A field's [`FieldKind`]: names are told apart by length first, so most
/// are compared with one name at most.
fn field_kind(name: &[u8]) -> FieldKind {
    let is = |n: &[u8]| name.eq_ignore_ascii_case(n);
    match name.len() {
        2 if is(b"te") => FieldKind::HopByHop,
        3 if is(b"via") => FieldKind::Edited,
        4 if is(b"date") => FieldKind::Date,
        5 if is(b"close") => FieldKind::Edited,
        7 if is(b"upgrade") => FieldKind::HopByHop,
        10 if is(b"connection") => FieldKind::Connection,
        10 if is(b"keep-alive") => FieldKind::HopByHop,
        12 if is(b"x-request-id") => FieldKind::Edited,
        14 if is(b"content-length") => FieldKind::Length,
        14 if is(b"http2-settings") => FieldKind::HopByHop,
        16 if is(b"proxy-connection") => FieldKind::HopByHop,
        17 if is(b"transfer-encoding") => FieldKind::HopByHop,
        18 if is(b"proxy-authenticate") => FieldKind::HopByHop,
        19 if is(b"proxy-authorization") => FieldKind::HopByHop,
        _ => FieldKind::Kept,
    }
}

/// Whether every token a `Connection` value lists names a field
/// [`HOP_BY_HOP`] already removes (`keep-alive`, usually), or is `close`.
fn lists_only_hop_by_hop(value: &[u8]) -> bool {
    value.split(|b| *b == b',').all(|t| {
        let t = t.trim_ascii();
        t.is_empty() || t.eq_ignore_ascii_case(b"close") || is_hop_by_hop(t)
    })
}

/// `http`'s version for one `weir_http1` read.
pub(crate) fn version(v: weir_http1::Version) -> http::Version {
    match v {
        weir_http1::Version::Http10 => http::Version::HTTP_10,
        weir_http1::Version::Http11 => http::Version::HTTP_11,
    }
}

/// A read buffer from this worker's pool, or a new one.
pub(crate) fn take_buffer() -> BytesMut {
    POOL.with(|p| p.borrow_mut().pop())
        .unwrap_or_else(|| BytesMut::with_capacity(READ_SIZE))
}

/// Gives an emptied buffer back to this worker's pool when no piece of
/// it is still held elsewhere (a head's fields, a body piece not yet
/// sent) and the pool has room; otherwise it is freed.
pub(crate) fn give_back(mut buf: BytesMut) {
    give_back_unshared(&mut buf);
}

/// Gives `buf` back to this worker's pool (or frees it when the pool is
/// full) when it is empty and no piece of it is held elsewhere; otherwise
/// leaves it where it is.
pub(crate) fn give_back_unshared(buf: &mut BytesMut) {
    if buf.capacity() == 0
        || !buf.is_empty()
        || buf.capacity() > POOL_MAX_CAPACITY
        || !buf.try_reclaim(READ_SIZE)
    {
        return;
    }
    let buf = std::mem::take(buf);
    // `try_with`: a connection dropped as its thread ends finds the pool
    // gone, and its buffer is freed.
    let _ = POOL.try_with(|p| {
        let mut p = p.borrow_mut();
        if p.len() < POOL_MAX {
            p.push(buf);
        }
    });
}

/// A head buffer from this worker's pool, empty.
pub(crate) fn take_head() -> Vec<u8> {
    let mut head = HEADS.with(|p| p.borrow_mut().pop()).unwrap_or_default();
    head.clear();
    head
}

/// Gives a head buffer back to this worker's pool.
pub(crate) fn give_head(head: Vec<u8>) {
    if head.capacity() == 0 || head.capacity() > POOL_MAX_CAPACITY {
        return;
    }
    HEADS.with(|p| {
        let mut p = p.borrow_mut();
        if p.len() < POOL_MAX {
            p.push(head);
        }
    });
}

/// Reads more of `io` into `buf` (taken from the pool when it has none);
/// `Ok(0)` at the end of the stream.
pub(crate) fn poll_fill<S: AsyncRead + Unpin>(
    io: &mut S,
    buf: &mut BytesMut,
    cx: &mut Context<'_>,
) -> Poll<io::Result<usize>> {
    if buf.capacity() == 0 {
        *buf = take_buffer();
    } else if buf.capacity() - buf.len() < MIN_ROOM {
        buf.reserve(READ_SIZE);
    }
    tokio_util::io::poll_read_buf(Pin::new(io), cx, buf)
}

/// Appends each field as a `name: value` line.
pub(crate) fn write_fields(out: &mut Vec<u8>, fields: &HeaderMap) {
    for (name, value) in fields {
        write_field(out, name, value);
    }
}

/// [`write_fields`], leaving out the fields `skip` names: one pass over
/// the map, where removing each first would hash its name to find it.
pub(crate) fn write_fields_except(
    out: &mut Vec<u8>,
    fields: &HeaderMap,
    skip: impl Fn(&HeaderName) -> bool,
) {
    for (name, value) in fields {
        if !skip(name) {
            write_field(out, name, value);
        }
    }
}

/// A `Content-Length` field line.
pub(crate) fn write_length(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(b"content-length: ");
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// One field line.
pub(crate) fn write_field(out: &mut Vec<u8>, name: &HeaderName, value: &HeaderValue) {
    out.extend_from_slice(name.as_str().as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// How much of a message's body is still to be read.
pub(crate) enum BodyState {
    Done,
    Length(u64),
    Chunked(Box<chunked::Decoder>),
    /// Until the peer closes (a response without length or chunks).
    UntilClose,
    /// It broke (bad framing, the peer closed early): the connection
    /// cannot carry another message.
    Broken,
}

/// What [`BodyState::next`] found in the buffer.
enum Next {
    Frame(Frame<Bytes>),
    /// The body's end (after its last data or trailers frame).
    End,
    /// Nothing whole in the buffer: read more.
    Read,
    Bad(BoxError),
}

/// The body ended before its length or its last chunk.
#[derive(Debug, thiserror::Error)]
#[error("the connection closed before the body's end")]
pub(crate) struct BodyCutShort;

impl BodyState {
    /// A chunked body's state, with trailers bounded as given.
    pub(crate) fn chunked(max_trailer_bytes: usize, max_trailer_fields: usize) -> BodyState {
        BodyState::Chunked(Box::new(chunked::Decoder::new(chunked::Limits {
            max_line: MAX_CHUNK_LINE,
            max_extensions: MAX_EXTENSIONS,
            max_trailer_bytes,
            max_trailer_fields,
        })))
    }

    /// The next piece of the body from what `buf` holds, never reading.
    /// Data comes as slices of `buf`, which is advanced past them.
    fn next(&mut self, buf: &mut BytesMut) -> Next {
        loop {
            match self {
                BodyState::Done => return Next::End,
                BodyState::Broken => return Next::Bad(BodyCutShort.into()),
                _ if buf.is_empty() && !self.chunk_done() => return Next::Read,
                BodyState::Length(left) => {
                    let n = (*left).min(buf.len() as u64) as usize;
                    *left -= n as u64;
                    if *left == 0 {
                        *self = BodyState::Done;
                    }
                    return Next::Frame(Frame::data(buf.split_to(n).freeze()));
                }
                BodyState::UntilClose => return Next::Frame(Frame::data(buf.split().freeze())),
                BodyState::Chunked(decoder) if decoder.is_done() => {
                    let mut trailers = HeaderMap::new();
                    decoder.for_each_trailer(|name, value| {
                        if let (Ok(n), Ok(v)) = (
                            HeaderName::from_bytes(name.as_bytes()),
                            HeaderValue::from_bytes(value),
                        ) {
                            trailers.append(n, v);
                        }
                    });
                    *self = BodyState::Done;
                    if trailers.is_empty() {
                        return Next::End;
                    }
                    return Next::Frame(Frame::trailers(trailers));
                }
                BodyState::Chunked(decoder) => {
                    let step = match decoder.decode(buf) {
                        Ok(step) => step,
                        Err(e) => {
                            *self = BodyState::Broken;
                            return Next::Bad(e.into());
                        }
                    };
                    let (used, data) = (step.used, step.data.len());
                    buf.advance(used - data);
                    if data > 0 {
                        return Next::Frame(Frame::data(buf.split_to(data).freeze()));
                    }
                    if buf.is_empty() && !decoder.is_done() {
                        return Next::Read;
                    }
                }
            }
        }
    }

    /// The next piece of the body: from `buf`, reading more with `fill`
    /// (`Ok(0)` at the end of the stream) while it holds nothing whole.
    /// After an error the body is broken.
    pub(crate) fn poll_frame(
        &mut self,
        buf: &mut BytesMut,
        cx: &mut Context<'_>,
        mut fill: impl FnMut(&mut BytesMut, &mut Context<'_>) -> Poll<io::Result<usize>>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        loop {
            match self.next(buf) {
                Next::Frame(frame) => return Poll::Ready(Some(Ok(frame))),
                Next::End => return Poll::Ready(None),
                Next::Bad(e) => return Poll::Ready(Some(Err(e))),
                Next::Read => {}
            }
            match ready!(fill(buf, cx)) {
                Ok(0) => return Poll::Ready(self.at_eof().err().map(Err)),
                Ok(_) => {}
                Err(e) => {
                    *self = BodyState::Broken;
                    return Poll::Ready(Some(Err(e.into())));
                }
            }
        }
    }

    /// The peer closed: the end of a body read until the close, else the
    /// body is cut short.
    fn at_eof(&mut self) -> Result<(), BoxError> {
        match self {
            BodyState::Done => Ok(()),
            BodyState::UntilClose => {
                *self = BodyState::Done;
                Ok(())
            }
            _ => {
                *self = BodyState::Broken;
                Err(BodyCutShort.into())
            }
        }
    }

    fn chunk_done(&self) -> bool {
        matches!(self, BodyState::Chunked(d) if d.is_done())
    }

    pub(crate) fn is_done(&self) -> bool {
        matches!(self, BodyState::Done)
    }
}

/// How a body is framed on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    None,
    /// `Content-Length`: the body must be exactly this long.
    Length(u64),
    Chunked,
    UntilClose,
}

/// A body that did not match its `Content-Length`: the connection is
/// closed rather than leave the peer reading a message that is not the
/// one announced.
#[derive(Debug, thiserror::Error)]
#[error("the body {0} its Content-Length")]
pub(crate) struct LengthMismatch(pub &'static str);

/// Bytes waiting for the socket: a head, then body pieces as their
/// framing puts them on the wire.
#[derive(Default)]
pub(crate) struct Out {
    pub head: Vec<u8>,
    head_sent: usize,
    queue: SmallVec<[Bytes; 8]>,
    /// Pieces before this one are written.
    front: usize,
    /// Bytes not yet written, head included.
    pub queued: usize,
    /// A chunked body's last chunk (with its trailers) is queued.
    terminated: bool,
    /// Bytes a body framed by `Content-Length` still owes.
    left: u64,
    framing: Option<Framing>,
}

impl Out {
    /// Starts a message whose head is in [`Out::head`], framed by
    /// `framing`.
    pub(crate) fn start(&mut self, framing: Framing) {
        self.head_sent = 0;
        self.queue.clear();
        self.front = 0;
        self.queued = self.head.len();
        self.terminated = false;
        self.left = match framing {
            Framing::Length(n) => n,
            _ => u64::MAX,
        };
        self.framing = Some(framing);
    }

    fn framing(&self) -> Framing {
        self.framing.unwrap_or(Framing::None)
    }

    fn push(&mut self, b: Bytes) {
        if !b.is_empty() {
            if self.front == self.queue.len() {
                self.queue.clear();
                self.front = 0;
            }
            self.queued += b.len();
            self.queue.push(b);
        }
    }

    /// Queues one body frame as the framing puts it on the wire.
    pub(crate) fn frame(&mut self, frame: Frame<Bytes>) -> Result<(), BoxError> {
        let framing = self.framing();
        match frame.into_data() {
            Ok(data) if data.is_empty() => {}
            Ok(data) if matches!(framing, Framing::Length(_)) => {
                self.left = self
                    .left
                    .checked_sub(data.len() as u64)
                    .ok_or(LengthMismatch("ran past"))?;
                self.push(data);
            }
            Ok(data) if framing == Framing::Chunked => {
                self.push(Bytes::from(format!("{:x}\r\n", data.len())));
                self.push(data);
                self.push(Bytes::from_static(b"\r\n"));
            }
            Ok(_) if framing == Framing::None => {
                return Err(LengthMismatch("ran past").into());
            }
            Ok(data) => self.push(data),
            Err(frame) => {
                // Trailers go only in a chunked body; elsewhere they are
                // dropped, as HTTP/1.1 has nowhere to put them.
                if let (Ok(trailers), Framing::Chunked) = (frame.into_trailers(), framing) {
                    let mut t = Vec::from(&b"0\r\n"[..]);
                    write_fields(&mut t, &trailers);
                    t.extend_from_slice(b"\r\n");
                    self.push(Bytes::from(t));
                    self.terminated = true;
                }
            }
        }
        Ok(())
    }

    /// Queues the body's frames while they come at once and the queue has
    /// room for more; `Ok(true)` once the body has ended (and its end is
    /// queued).
    pub(crate) fn fill<B>(
        &mut self,
        mut body: Pin<&mut B>,
        cx: &mut Context<'_>,
    ) -> Result<bool, BoxError>
    where
        B: Body<Data = Bytes, Error = BoxError> + ?Sized,
    {
        while self.queued < MAX_QUEUED {
            match body.as_mut().poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => self.frame(frame)?,
                Poll::Ready(Some(Err(e))) => return Err(e),
                Poll::Ready(None) => {
                    self.end()?;
                    return Ok(true);
                }
                Poll::Pending => break,
            }
        }
        Ok(false)
    }

    /// The body ended: a length it fell short of is an error, a chunked
    /// body gets its last chunk.
    fn end(&mut self) -> Result<(), BoxError> {
        match self.framing() {
            Framing::Length(_) if self.left != 0 => Err(LengthMismatch("ended short of").into()),
            Framing::Chunked if !self.terminated => {
                self.push(Bytes::from_static(b"0\r\n\r\n"));
                self.terminated = true;
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Writes what is queued, in one vectored write per call, until
    /// nothing is left (not flushed) or the socket is full.
    pub(crate) fn poll_write<S: AsyncWrite + Unpin>(
        &mut self,
        io: &mut S,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        while self.queued > 0 {
            let mut slices: SmallVec<[io::IoSlice<'_>; 16]> = SmallVec::new();
            if self.head_sent < self.head.len() {
                slices.push(io::IoSlice::new(&self.head[self.head_sent..]));
            }
            slices.extend(
                self.queue[self.front..]
                    .iter()
                    .take(15)
                    .map(|b| io::IoSlice::new(b)),
            );
            let n = ready!(Pin::new(&mut *io).poll_write_vectored(cx, &slices))?;
            drop(slices);
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.advance(n);
        }
        Poll::Ready(Ok(()))
    }

    /// Whether any byte of the head has been written.
    pub(crate) fn head_started(&self) -> bool {
        self.head_sent > 0
    }

    fn advance(&mut self, mut n: usize) {
        self.queued -= n;
        let head_left = self.head.len() - self.head_sent;
        let from_head = n.min(head_left);
        self.head_sent += from_head;
        n -= from_head;
        while n > 0 {
            let front = &mut self.queue[self.front];
            if n >= front.len() {
                n -= front.len();
                self.front += 1;
            } else {
                front.advance(n);
                n = 0;
            }
        }
    }
}

/// What a socket must be to be handed to a tunnel (the client's, or an
/// upstream's after its 101).
pub trait ClientIo: AsyncRead + AsyncWrite + Send + Unpin {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin> ClientIo for T {}

/// A socket one of Weir's HTTP/1.1 connections hands over, with the
/// bytes already read from it that the new owner reads first: the
/// client's, to an upgrade's tunnel once its 101 is written or to hyper
/// when it opened with HTTP/2's preface; an upstream's, to the tunnel
/// after its 101.
pub struct Upgraded {
    pub io: Box<dyn ClientIo>,
    pub leftover: Bytes,
}

impl std::fmt::Debug for Upgraded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upgraded")
            .field("leftover", &self.leftover.len())
            .finish_non_exhaustive()
    }
}

impl AsyncRead for Upgraded {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if !self.leftover.is_empty() {
            let n = self.leftover.len().min(buf.remaining());
            buf.put_slice(&self.leftover.split_to(n));
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Upgraded {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_map_given_back_lets_its_values_go_and_comes_out_empty_with_its_room() {
        let read = Bytes::from(b"text/plain".to_vec());
        let mut map = take_map(4);
        let value = HeaderValue::from_maybe_shared(read.slice(..)).unwrap();
        map.insert(http::header::CONTENT_TYPE, value);
        assert!(!read.is_unique());
        let room = map.capacity();
        give_map(map);
        assert!(
            read.is_unique(),
            "a kept map still holds a piece of the read buffer"
        );
        let again = take_map(2);
        assert!(again.is_empty());
        assert_eq!(again.capacity(), room);
        // The pool is empty again: the next map is a new one.
        assert_eq!(take_map(0).capacity(), 0);
    }

    /// The fields of a response head as `RawHead` keeps them, or `None`
    /// when it sends the head through a map; and as the map path keeps
    /// them (hop-by-hop fields stripped, the framing left to the writer).
    fn both_ways(head: &[u8]) -> (Option<HeaderMap>, HeaderMap) {
        let mut fields = [httparse::EMPTY_HEADER; 32];
        let mut parsed = httparse::Response::new(&mut fields);
        assert!(parsed.parse(head).unwrap().is_complete());
        let spans = field_spans(head, parsed.headers).unwrap();
        let mut map = field_map(&Bytes::copy_from_slice(head), spans, 0).unwrap();
        crate::proxy::headers::strip_hop_by_hop(&mut map);
        map.remove(http::header::CONTENT_LENGTH);
        map.remove(http::header::TRANSFER_ENCODING);
        let raw = RawHead::of(parsed.headers).map(|raw| {
            let mut kept = HeaderMap::new();
            raw.into_map(&mut kept);
            kept
        });
        (raw, map)
    }

    #[test]
    fn a_raw_head_keeps_exactly_what_a_stripped_map_keeps_or_declines() {
        let kept: &[&[u8]] = &[
            b"HTTP/1.1 200 OK\r\nServer: nginx\r\nDate: x\r\nContent-Type: text/plain\r\n\
              Content-Length: 2\r\nConnection: keep-alive\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nKeep-Alive: timeout=5\r\nProxy-Authenticate: Basic\r\n\
              TE: trailers\r\nUpgrade: h2c\r\nTrailer: x-t\r\nHTTP2-Settings: AAAA\r\n\
              Proxy-Connection: close\r\nProxy-Authorization: x\r\n\
              Connection: Keep-Alive, close, TE\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nX-Mixed: Yes\r\nset-cookie: b=2\r\n\
              X-Empty:\r\nX-Spaced:  v  w \r\n\r\n",
        ];
        for head in kept {
            let (raw, map) = both_ways(head);
            let text = String::from_utf8_lossy(head);
            assert_eq!(raw.as_ref(), Some(&map), "{text}");
        }
        let declined: &[&[u8]] = &[
            b"HTTP/1.1 200 OK\r\nVia: 1.0 other\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nX-Request-Id: up\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Secret\r\nX-Secret: 1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nConnection: close\r\nClose: 1\r\n\r\n",
        ];
        for head in declined {
            let (raw, _) = both_ways(head);
            assert!(raw.is_none(), "{}", String::from_utf8_lossy(head));
        }
    }

    #[test]
    fn every_hop_by_hop_name_is_left_out_of_a_raw_head_in_any_case() {
        for name in HOP_BY_HOP {
            let upper = name.to_ascii_uppercase();
            for n in [name, upper.as_str()] {
                let kind = field_kind(n.as_bytes());
                let want = match name {
                    "connection" => FieldKind::Connection,
                    _ => FieldKind::HopByHop,
                };
                assert_eq!(kind, want, "{n}");
            }
        }
        assert_eq!(field_kind(b"x-te"), FieldKind::Kept);
        assert_eq!(field_kind(b"Content-Type"), FieldKind::Kept);
    }

    #[test]
    fn a_raw_head_notes_its_length_and_date_and_takes_added_fields_last() {
        let head = b"HTTP/1.1 200 OK\r\nDATE: x\r\nContent-Length: 12\r\nA: 1\r\n\r\n";
        let mut fields = [httparse::EMPTY_HEADER; 8];
        let mut parsed = httparse::Response::new(&mut fields);
        parsed.parse(head).unwrap();
        let mut raw = RawHead::of(parsed.headers).unwrap();
        assert_eq!(raw.length(), Some(12));
        assert!(raw.dated());
        raw.append(&http::header::VIA, &HeaderValue::from_static("1.1 weir"));
        assert_eq!(raw.lines(), b"DATE: x\r\nA: 1\r\nvia: 1.1 weir\r\n");
        raw.give_back();
    }

    #[test]
    fn large_maps_are_freed_and_the_pool_is_bounded() {
        give_map(HeaderMap::with_capacity(4 * MAP_MAX_CAPACITY));
        assert_eq!(MAPS.with(|m| m.borrow().len()), 0);
        for _ in 0..2 * MAPS_MAX {
            give_map(HeaderMap::with_capacity(8));
        }
        assert_eq!(MAPS.with(|m| m.borrow().len()), MAPS_MAX);
    }
}
