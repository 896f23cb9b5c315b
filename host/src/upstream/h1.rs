//! Weir's own HTTP/1.1 client connection to an endpoint, driven on the
//! task of the request it carries: no second task and no channel between
//! the request and its connection. A request's head is written from its
//! fields, its body is sent as the response's head is read (an endpoint
//! may answer before the upload ends), and the response's head is parsed
//! and framed by `weir_http1`, the same reading the client side makes.
//! The response's body reads the connection as the client side polls it,
//! keeps sending what is left of the request's body meanwhile, and once
//! both are done hands the connection back for the pool
//! ([`H1Received::reusable`]).
//!
//! Why not hyper's client: it drives each connection on a task of its own,
//! reached through a channel, with an 8 KiB read buffer and a write buffer
//! for the connection's life, and frames responses by rules that settle
//! ambiguities (a `Content-Length` beside chunked) a proxy must refuse.
//!
//! Reuse: a connection goes back to its pool only when the request said
//! nothing of closing, the response allows keep-alive and was framed by
//! length or chunks, both bodies ran to their ends, and no byte beyond the
//! response arrived. A pooled connection is checked before its next use
//! ([`Connection::is_reusable`]): one the endpoint closed, or that holds
//! bytes nobody asked for, is dropped. A request whose head could not be
//! written at all comes back untouched ([`SendError::req`]), to be sent
//! on another connection.
//!
//! Bounds on what an endpoint sends: a response head of at most
//! [`MAX_HEAD_BYTES`] and [`MAX_HEADERS`] fields, at most
//! [`MAX_INFORMATIONAL`] 1xx responses before the final one (each
//! dropped: the client side answers `100-continue` itself), trailers of
//! at most [`MAX_HEAD_BYTES`] and [`MAX_HEADERS`] fields, and chunk
//! framing as `wire` bounds it. Time is bounded by the caller: the
//! request's deadline around [`Connection::send`], the route's
//! `read_timeout` around each read of the body.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, Waker, ready};
use std::time::Instant;

use bytes::{Buf, Bytes, BytesMut};
use http::header::{self, HeaderName};
use http::request::Parts;
use http::{Request, Response, StatusCode, Version};
use http_body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_util::either::Either;
use weir_http1::HeadError;
use weir_http1::head::Answering;

use super::counter::ConnSlot;
use crate::body::{BoxError, RequestBody};
use crate::wire::{self, BodyState, Framing, Out, Upgraded};

/// Bytes of a response head, status line to the empty line, and of a
/// chunked response's trailers.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Fields of a response head, and of its trailers (hyper's client took
/// 100 too).
pub const MAX_HEADERS: usize = 100;
/// Informational responses read past before the final one.
pub const MAX_INFORMATIONAL: usize = 16;

const LIMITS: weir_http1::Limits = weir_http1::Limits {
    max_head_bytes: MAX_HEAD_BYTES,
    max_headers: MAX_HEADERS,
    max_target_bytes: 0,
};

/// The socket under a connection: plain TCP, or TLS over it.
pub type Io = Either<TcpStream, Box<tokio_rustls::client::TlsStream<TcpStream>>>;

/// An HTTP/1.1 connection to an endpoint, ready to carry one request.
/// Boxed once when opened, so the pool and a request move a pointer.
pub struct Connection(Box<Conn>);

struct Conn {
    io: Io,
    /// Bytes read and not yet used. Between requests it is empty, and
    /// given back to the worker's pool unless a piece of it is still
    /// held (then it is reused here next time).
    buf: BytesMut,
    /// The request being written; its head buffer is kept for the next.
    out: Out,
    idle_since: Instant,
    /// Opened for an upgrade: a 101 hands the socket to a tunnel, and the
    /// connection is never pooled.
    upgrades: bool,
    _slot: Option<ConnSlot>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection").finish_non_exhaustive()
    }
}

/// Why a request got no response head.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("the connection closed before the response's head")]
    Closed,
    #[error("the response's head was refused: {}", .0.reason())]
    Head(HeadError),
    #[error("more than {MAX_INFORMATIONAL} informational responses")]
    TooManyInformational,
    /// Sending the request's body failed: the client's upload broke off
    /// or ran past its limit (the source says which), or the body did not
    /// match the request's `Content-Length`.
    #[error("{0}")]
    Body(#[source] BoxError),
}

/// A request that got no response, and the request itself when no byte
/// of it was written (it may go again elsewhere as it is).
#[derive(Debug)]
pub struct SendError {
    pub req: Option<Request<RequestBody>>,
    pub error: Error,
}

impl Connection {
    pub(super) fn new(io: Io, upgrades: bool, slot: Option<ConnSlot>) -> Connection {
        Connection(Box::new(Conn {
            io,
            buf: BytesMut::new(),
            out: Out::default(),
            idle_since: Instant::now(),
            upgrades,
            _slot: slot,
        }))
    }

    pub(super) fn idle_since(&self) -> Instant {
        self.0.idle_since
    }

    /// Marks the connection idle from `now`, its read buffer given back
    /// to the worker's pool when nothing holds a piece of it.
    pub(super) fn set_idle(&mut self, now: Instant) {
        self.0.idle_since = now;
        wire::give_back_unshared(&mut self.0.buf);
    }

    /// Whether an idle connection can carry a request: the endpoint has
    /// not closed it, and sent nothing unasked. Reads without waiting.
    pub(super) fn is_reusable(&mut self) -> bool {
        self.watch(Waker::noop())
    }

    /// [`Connection::is_reusable`], and `waker` woken when that may have
    /// changed (the socket became readable).
    pub(super) fn watch(&mut self, waker: &Waker) -> bool {
        let mut cx = Context::from_waker(waker);
        let mut byte = [0u8; 1];
        let mut probe = ReadBuf::new(&mut byte);
        Pin::new(&mut self.0.io)
            .poll_read(&mut cx, &mut probe)
            .is_pending()
    }

    /// Sends `req` and reads its response's head; the response's body
    /// reads the rest from this connection. With `raw`, the caller writes
    /// the response to an HTTP/1.1 client with no edits but this hop's:
    /// a final head's fields are then kept as received where that is
    /// exact ([`H1Received::take_raw_head`]), and its map left empty.
    pub async fn send(
        self,
        req: Request<RequestBody>,
        raw: bool,
    ) -> Result<Response<Received>, SendError> {
        let (parts, body) = req.into_parts();
        let mut x = Exchange::start(self, parts, body, raw);
        let head = poll_fn(|cx| x.poll_head(cx)).await;
        match head {
            Ok(head) => Ok(x.response(head)),
            Err(error) => Err(SendError {
                req: x.unsent(),
                error,
            }),
        }
    }
}

impl Conn {
    /// Moves the request's body onto the wire, as far as it and the
    /// socket allow; `Ready(Ok)` once all of it is written and flushed.
    fn poll_send(
        &mut self,
        body: &mut Option<RequestBody>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), Error>> {
        loop {
            if let Some(b) = body
                && self.out.fill(Pin::new(b), cx).map_err(Error::Body)?
            {
                *body = None;
            }
            if self.out.queued == 0 {
                if body.is_some() {
                    return Poll::Pending;
                }
                ready!(Pin::new(&mut self.io).poll_flush(cx))?;
                return Poll::Ready(Ok(()));
            }
            ready!(self.out.poll_write(&mut self.io, cx))?;
        }
    }
}

/// A response head as parsed: offsets into the bytes it was read from.
struct Head {
    len: usize,
    status: StatusCode,
    version: Version,
    fields: Fields,
    body: weir_http1::ResponseBody,
    keep_alive: bool,
}

/// A parsed head's fields: names and where their values lie, for a map;
/// or kept as received.
enum Fields {
    Spans(Vec<(HeaderName, usize, usize)>),
    Raw(wire::RawHead),
}

impl Fields {
    /// Gives the lists back to the worker, for a head that is dropped.
    fn release(self) {
        match self {
            Fields::Spans(f) => wire::give_fields(f),
            Fields::Raw(r) => r.give_back(),
        }
    }
}

/// One request on its way: written, and its response's head awaited.
struct Exchange {
    conn: Option<Connection>,
    /// The request's head until a byte of it is written (to give the
    /// request back whole if the connection fails first).
    parts: Option<Parts>,
    /// What is left of the body to send; `None` once all of it is queued.
    body: Option<RequestBody>,
    /// The body has been polled: it can no longer be given back.
    polled: bool,
    /// All of the request is written.
    sent: bool,
    answering: Answering,
    /// The request asked to close the connection after the response, or
    /// its sending failed part way.
    close: bool,
    informational: usize,
    /// Why writing the request failed part way: the endpoint may have
    /// answered already (and closed), so its answer is still read, and
    /// this is the error when there is none.
    write_failed: Option<io::Error>,
    /// A final head's fields may be kept as received
    /// ([`Connection::send`]).
    raw: bool,
}

impl Exchange {
    fn start(conn: Connection, parts: Parts, body: RequestBody, raw: bool) -> Exchange {
        let mut conn = conn;
        let c = &mut *conn.0;
        let (framing, close) = write_head(&mut c.out.head, &parts, &body);
        c.out.start(framing);
        let empty = body.is_end_stream();
        Exchange {
            conn: Some(conn),
            answering: Answering {
                head: parts.method == http::Method::HEAD,
                connect: parts.method == http::Method::CONNECT,
            },
            close,
            parts: Some(parts),
            body: (!empty).then_some(body),
            polled: false,
            sent: false,
            informational: 0,
            write_failed: None,
            raw,
        }
    }

    fn conn(&mut self) -> &mut Conn {
        match &mut self.conn {
            Some(c) => &mut c.0,
            None => unreachable!("the connection stays with the exchange until its response"),
        }
    }

    /// Writes the request and reads until the final response's head.
    fn poll_head(&mut self, cx: &mut Context<'_>) -> Poll<Result<Head, Error>> {
        if !self.sent {
            let mut body = self.body.take();
            self.polled |= body.is_some();
            let c = self.conn();
            let sending = c.poll_send(&mut body, cx);
            let started = c.out.head_started();
            self.body = body;
            if started && let Some(parts) = self.parts.take() {
                // The head is on its way: its map goes back to the worker.
                wire::give_map(parts.headers);
            }
            match sending {
                Poll::Ready(Ok(())) => self.sent = true,
                Poll::Ready(Err(Error::Io(e))) if started => {
                    self.write_failed = Some(e);
                    self.body = None;
                    self.sent = true;
                    self.close = true;
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {}
            }
        }
        let (answering, raw) = (self.answering, self.raw);
        loop {
            let c = self.conn();
            if !c.buf.is_empty() {
                match parse(&c.buf, answering, raw) {
                    Ok(Some(head)) if head.status.is_informational() && head.status != 101 => {
                        c.buf.advance(head.len);
                        self.informational += 1;
                        if self.informational > MAX_INFORMATIONAL {
                            return Poll::Ready(Err(Error::TooManyInformational));
                        }
                        head.fields.release();
                        continue;
                    }
                    Ok(Some(head)) => return Poll::Ready(Ok(head)),
                    Ok(None) => {}
                    Err(e) => return Poll::Ready(Err(Error::Head(e))),
                }
            }
            let failed = match ready!(wire::poll_fill(&mut c.io, &mut c.buf, cx)) {
                Ok(0) => Error::Closed,
                Ok(_) => continue,
                Err(e) => Error::Io(e),
            };
            return Poll::Ready(Err(self.write_failed.take().map_or(failed, Error::Io)));
        }
    }

    /// The request, when none of it left (and its body was never read).
    fn unsent(&mut self) -> Option<Request<RequestBody>> {
        if self.polled {
            return None;
        }
        let parts = self.parts.take()?;
        Some(Request::from_parts(
            parts,
            self.body.take().unwrap_or(RequestBody::Empty),
        ))
    }

    /// The response for the client, its body reading the rest.
    fn response(&mut self, head: Head) -> Response<Received> {
        let mut conn = self.conn.take();
        let c = match &mut conn {
            Some(c) => &mut *c.0,
            None => unreachable!("the connection stays with the exchange until its response"),
        };
        let bytes = c.buf.split_to(head.len).freeze();
        let (headers, raw) = match head.fields {
            // A value httparse took is one `http` takes.
            Fields::Spans(f) => (wire::field_map(&bytes, f, 4).unwrap_or_default(), None),
            Fields::Raw(r) => (http::HeaderMap::new(), Some(r)),
        };
        let switched = head.status == StatusCode::SWITCHING_PROTOCOLS;
        // A 101, like every 1xx, has no body (`weir_http1` frames it so).
        let body = match head.body {
            weir_http1::ResponseBody::Empty => BodyState::Done,
            weir_http1::ResponseBody::Length(n) => BodyState::Length(n),
            weir_http1::ResponseBody::Chunked => BodyState::chunked(MAX_HEAD_BYTES, MAX_HEADERS),
            weir_http1::ResponseBody::UntilClose | weir_http1::ResponseBody::Tunnel => {
                BodyState::UntilClose
            }
        };
        // A connection opened for an upgrade is never pooled, switched or
        // not.
        let keep = head.keep_alive
            && !self.close
            && !switched
            && !c.upgrades
            && !matches!(body, BodyState::UntilClose);
        let hint = match body {
            BodyState::Done => SizeHint::with_exact(0),
            BodyState::Length(n) => SizeHint::with_exact(n),
            _ => SizeHint::new(),
        };
        let upgraded = switched && c.upgrades;
        let sending = (!self.sent).then(|| Box::new(self.body.take()));
        let mut resp = Response::new(Received::H1(H1Received {
            conn,
            body,
            sending,
            keep,
            upgraded,
            hint,
            raw,
        }));
        *resp.status_mut() = head.status;
        *resp.version_mut() = head.version;
        *resp.headers_mut() = headers;
        resp
    }
}

/// Parses the response head at the start of `buf`; with `raw`, a final
/// head's fields are kept as received where [`wire::RawHead::of`] allows
/// (a 1xx, and a 101 above all, goes through a map).
fn parse(buf: &[u8], answering: Answering, raw: bool) -> Result<Option<Head>, HeadError> {
    let parsed = weir_http1::parse_response(buf, &LIMITS, answering, |h| {
        let raw = match raw && h.status >= 200 {
            true => wire::RawHead::of(h.headers),
            false => None,
        };
        Ok(Head {
            len: h.len,
            status: StatusCode::from_u16(h.status).map_err(|_| HeadError::Syntax)?,
            version: wire::version(h.version),
            fields: match raw {
                Some(r) => Fields::Raw(r),
                None => Fields::Spans(wire::field_spans(buf, h.headers)?),
            },
            body: h.body,
            keep_alive: h.keep_alive,
        })
    })?;
    parsed.transpose()
}

/// Writes the request's head into `head` and says how its body goes:
/// by the `Content-Length` the request has, else by the body's exact
/// length, else chunked; and whether it asks to close the connection
/// after the response (its `Connection` lists `close`). A
/// `Transfer-Encoding` in the fields is not copied: the framing written
/// is the one chosen here.
fn write_head(head: &mut Vec<u8>, parts: &Parts, body: &RequestBody) -> (Framing, bool) {
    head.clear();
    head.extend_from_slice(parts.method.as_str().as_bytes());
    head.push(b' ');
    let target = match (parts.uri.path_and_query(), parts.uri.authority()) {
        (Some(pq), _) => pq.as_str(),
        (None, Some(a)) => a.as_str(),
        (None, None) => "/",
    };
    head.extend_from_slice(target.as_bytes());
    head.extend_from_slice(if parts.version == Version::HTTP_10 {
        b" HTTP/1.0\r\n"
    } else {
        b" HTTP/1.1\r\n"
    });
    // One pass writes the fields and notes what the connection reads
    // itself (rather than a lookup for each).
    let (mut length, mut close) = (None, false);
    for (name, value) in &parts.headers {
        if name == header::TRANSFER_ENCODING {
            continue;
        }
        if name == header::CONTENT_LENGTH {
            length = length.or(Some(value));
        } else if name == header::CONNECTION {
            close |= crate::proxy::headers::value_lists(value, "close");
        }
        wire::write_field(head, name, value);
    }
    let declared = length.and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    let framing = if let Some(n) = declared {
        Framing::Length(n)
    } else if body.is_end_stream() {
        Framing::None
    } else if let Some(n) = body.size_hint().exact() {
        wire::write_length(head, n);
        Framing::Length(n)
    } else {
        head.extend_from_slice(b"transfer-encoding: chunked\r\n");
        Framing::Chunked
    };
    head.extend_from_slice(b"\r\n");
    (framing, close)
}

/// The body of a response read from an HTTP/1.1 connection, which it
/// holds until both it and the request's body have ended.
pub struct H1Received {
    conn: Option<Connection>,
    body: BodyState,
    /// What is left of the request's body, when the response's head came
    /// before all of it was written (boxed: rare, and it is large).
    sending: Option<Box<Option<RequestBody>>>,
    keep: bool,
    /// A 101 on a connection opened for an upgrade: the socket goes to
    /// the tunnel ([`H1Received::into_upgraded`]).
    upgraded: bool,
    hint: SizeHint,
    /// The head's fields as received, when they were kept so (the map is
    /// then empty).
    raw: Option<wire::RawHead>,
}

impl std::fmt::Debug for H1Received {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H1Received")
            .field("keep", &self.keep)
            .finish_non_exhaustive()
    }
}

impl H1Received {
    /// The response head's fields as received, once, when they were kept
    /// so ([`Connection::send`]).
    pub(crate) fn take_raw_head(&mut self) -> Option<wire::RawHead> {
        self.raw.take()
    }

    /// The kept fields, to add this hop's.
    pub(crate) fn raw_head_mut(&mut self) -> Option<&mut wire::RawHead> {
        self.raw.as_mut()
    }

    /// The connection, once the response and the request have both
    /// ended and it may carry another request.
    pub fn reusable(&mut self) -> Option<Connection> {
        if !(self.keep && self.body.is_done() && self.sending.is_none()) {
            return None;
        }
        let conn = self.conn.take()?;
        conn.0.buf.is_empty().then_some(conn)
    }

    /// After a 101, the socket and the bytes already read past the head,
    /// for the tunnel.
    pub fn into_upgraded(mut self) -> Option<Upgraded> {
        if !self.upgraded {
            return None;
        }
        let conn = self.conn.take()?;
        let Conn { io, mut buf, .. } = *conn.0;
        Some(Upgraded {
            io: Box::new(io),
            leftover: buf.split().freeze(),
        })
    }

    /// Fails the body: the connection is dropped.
    fn broken(&mut self, e: BoxError) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.conn = None;
        self.body = BodyState::Broken;
        Poll::Ready(Some(Err(e)))
    }
}

impl Body for H1Received {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if this.body.is_done() && this.sending.is_none() {
            return Poll::Ready(None);
        }
        let Some(conn) = this.conn.as_mut() else {
            return Poll::Ready(Some(Err(wire::BodyCutShort.into())));
        };
        let c = &mut *conn.0;
        // The rest of the request's body goes out as the response comes
        // in, without waiting for either. If that fails (the endpoint
        // answered and stopped reading, the client's upload broke off),
        // the answer is still read; only the connection is not kept.
        if let Some(sending) = &mut this.sending {
            match c.poll_send(sending, cx) {
                Poll::Ready(Ok(())) => this.sending = None,
                Poll::Ready(Err(e)) => {
                    tracing::debug!(error = %e, "the request's body stopped after the response's head");
                    this.sending = None;
                    this.keep = false;
                }
                Poll::Pending => {}
            }
        }
        let io = &mut c.io;
        match ready!(
            this.body
                .poll_frame(&mut c.buf, cx, |buf, cx| wire::poll_fill(io, buf, cx))
        ) {
            Some(Ok(frame)) => {
                if let (Some(d), Some(upper)) = (frame.data_ref(), this.hint.upper()) {
                    this.hint = SizeHint::with_exact(upper.saturating_sub(d.len() as u64));
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Some(Err(e)) => this.broken(e),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_done()
    }

    fn size_hint(&self) -> SizeHint {
        self.hint
    }
}

/// A response body as it comes from an upstream, whichever protocol
/// carried it: an HTTP/1.1 connection's, or a stream's body on an HTTP/2
/// one ([`super::http2::RecvBody`]).
#[derive(Debug)]
pub enum Received {
    H1(H1Received),
    H2(super::http2::RecvBody),
}

impl Received {
    /// After a 101 over HTTP/1.1, the upstream's socket for the tunnel.
    pub fn into_upgraded(self) -> Option<Upgraded> {
        match self {
            Received::H1(b) => b.into_upgraded(),
            Received::H2(_) => None,
        }
    }

    /// The head's fields as an HTTP/1.1 upstream sent them, once, when
    /// they were kept so ([`Connection::send`]).
    pub(crate) fn take_raw_head(&mut self) -> Option<wire::RawHead> {
        match self {
            Received::H1(b) => b.take_raw_head(),
            Received::H2(_) => None,
        }
    }

    /// The kept fields, to add this hop's.
    pub(crate) fn raw_head_mut(&mut self) -> Option<&mut wire::RawHead> {
        match self {
            Received::H1(b) => b.raw_head_mut(),
            Received::H2(_) => None,
        }
    }

    /// The HTTP/1.1 connection, once it may go back to its pool (an
    /// HTTP/2 stream gives its place back itself).
    pub fn reusable(&mut self) -> Option<Connection> {
        match self {
            Received::H1(b) => b.reusable(),
            Received::H2(_) => None,
        }
    }
}

impl Body for Received {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            Received::H1(b) => Pin::new(b).poll_frame(cx),
            Received::H2(b) => Pin::new(b)
                .poll_frame(cx)
                .map(|f| f.map(|f| f.map_err(|e| Box::new(e) as BoxError))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Received::H1(b) => b.is_end_stream(),
            Received::H2(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Received::H1(b) => b.size_hint(),
            Received::H2(b) => b.size_hint(),
        }
    }
}
