//! Weir's own HTTP/1.1 server connection: request heads read and framed
//! with `weir_http1` (the one reading of each message's length), bodies
//! read from the connection as the pipeline polls them, responses written
//! from the pipeline's head and body; HTTP/2 stays on hyper.
//!
//! Why not hyper here: hyper's connection keeps an 8 KiB read buffer and
//! its write buffer for the connection's whole life, so an idle keep-alive
//! connection costs tens of KiB; it settles framing ambiguities a proxy
//! must refuse, which took a second parser to catch; and its request state
//! lives in the connection's future even while idle. Here an idle
//! connection holds no buffer: it waits for readability, reads into a
//! buffer taken then from its worker's pool, and gives it back once every
//! byte is used and the response is out (the pool keeps at most 64 per
//! worker; a buffer some piece of which is still held is freed instead).
//!
//! What a connection does, in order, per request:
//! - reads a head (bounded by the listener's `max_header_bytes` and
//!   `max_headers`, and a 65,534-byte target as hyper had); a refused head
//!   is answered 400, 414 or 431 with `Connection: close` and never
//!   reaches the pipeline;
//! - hands the request to `proxy::handle`, with a body that reads the
//!   connection when polled and answers `Expect: 100-continue` first;
//! - while the pipeline runs and the body is read, watches the socket:
//!   the client closing it drops the request (logged as 499), and bytes
//!   of a pipelined request are kept, up to `max_header_bytes`;
//! - writes the response: `Content-Length` from an exact body, chunked
//!   (with trailers) for HTTP/1.1 otherwise, until close for HTTP/1.0;
//!   no body for `HEAD`, 1xx, 204 and 304; a `Date` field and the
//!   request id, written straight into the head;
//! - keeps the connection when both sides allow it and the request's body
//!   was read to its end, else closes it; a 101 hands the socket to the
//!   upgrade's tunnel (`conn::PendingUpgrade`).

use std::future::poll_fn;
use std::io;
use std::pin::{Pin, pin};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderName};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body::{Body, Frame};
use tokio::io::{AsyncRead, AsyncWrite};
use weir_http1::{BodyLength, HeadError};

use crate::body::{BoxError, ClientBody, H1Body, H1Source};
use crate::conn::{ClientIo, ConnContext, PendingUpgrade, Upgraded};
use crate::metrics::listener::ClientError;
use crate::proxy;
use crate::proxy::headers::X_REQUEST_ID;
use crate::proxy::response::ResponseBody;
use crate::wire::{self, BodyState, Framing, Out};

/// The longest request target read (hyper's bound too, so HTTP/2 and
/// HTTP/1.1 agree): longer is 414 whatever the listener's
/// `max_uri_bytes` (which the pipeline checks) says.
const MAX_TARGET: usize = 65_534;
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// A client socket that can say it is readable without being read, so an
/// idle connection waits holding no buffer.
pub(super) trait ReadReady {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;

    /// The connection turned out to speak HTTP/2 (its preface came first).
    fn now_http2(&mut self) {}
}

impl ReadReady for tokio::net::TcpStream {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        tokio::net::TcpStream::poll_read_ready(self, cx)
    }
}

impl ReadReady for tokio_rustls::server::TlsStream<tokio::net::TcpStream> {
    /// The socket's readiness, unless rustls holds decrypted bytes (or the
    /// client's close) the socket no longer shows: then at once.
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let (tcp, tls) = self.get_ref();
        if tls.wants_read() {
            tcp.poll_read_ready(cx)
        } else {
            Poll::Ready(Ok(()))
        }
    }
}

/// What a client that speaks HTTP/2 by prior knowledge sends first.
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The connection's socket and read buffer, shared between its task and
/// the body of the request under way.
pub(super) struct Shared<S> {
    /// `None` once handed to an upgrade.
    io: Option<S>,
    /// Bytes read and not yet used; empty with no capacity while idle.
    buf: BytesMut,
    body: BodyState,
    /// Bytes of `100 Continue` still to write before the body is read.
    continue_left: usize,
    /// The client closed its side (or the socket failed).
    eof: bool,
    /// No request has been read yet (the HTTP/2 preface may come instead).
    first: bool,
    max_trailer_bytes: usize,
    max_trailer_fields: usize,
}

/// A connection that ends gives its read buffer back to the worker's pool
/// when nothing holds a piece of it, as an idle one does: a client that
/// closes after each request would otherwise cost a buffer's allocation
/// and free per connection.
impl<S> Drop for Shared<S> {
    fn drop(&mut self) {
        wire::give_back_unshared(&mut self.buf);
    }
}

/// A connection's socket and buffer, as its task and its request's body
/// share them.
pub(super) type Lock<S> = Arc<Mutex<Shared<S>>>;

fn lock<S>(shared: &Mutex<Shared<S>>) -> MutexGuard<'_, Shared<S>> {
    shared.lock().unwrap_or_else(|p| p.into_inner())
}

fn gone() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "connection handed over")
}

impl<S: AsyncRead + AsyncWrite + Unpin> Shared<S> {
    /// Reads more into the buffer; `Ok(0)` at the end of the stream.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        fill(&mut self.io, &mut self.buf, &mut self.eof, cx)
    }

    /// Writes what is left of `100 Continue`.
    fn poll_continue(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.continue_left > 0 {
            let io = self.io.as_mut().ok_or_else(gone)?;
            let from = CONTINUE.len() - self.continue_left;
            let n = ready!(Pin::new(io).poll_write(cx, &CONTINUE[from..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.continue_left -= n;
        }
        Poll::Ready(Ok(()))
    }

    fn broken(&mut self, why: impl Into<BoxError>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.body = BodyState::Broken;
        Poll::Ready(Some(Err(why.into())))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> H1Source for Shared<S> {
    fn poll_body(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Err(e) = ready!(self.poll_continue(cx)) {
            return self.broken(e);
        }
        let Shared {
            io, buf, body, eof, ..
        } = self;
        body.poll_frame(buf, cx, |buf, cx| fill(io, buf, eof, cx))
    }
}

/// Reads more of `io` into `buf`; `Ok(0)`, and `eof` set, at the end of
/// the stream.
fn fill<S: AsyncRead + Unpin>(
    io: &mut Option<S>,
    buf: &mut BytesMut,
    eof: &mut bool,
    cx: &mut Context<'_>,
) -> Poll<io::Result<usize>> {
    let io = io.as_mut().ok_or_else(gone)?;
    let n = ready!(wire::poll_fill(io, buf, cx))?;
    if n == 0 {
        *eof = true;
    }
    Poll::Ready(Ok(n))
}

/// A request head as parsed: offsets into the bytes it was read from.
struct Parsed {
    len: usize,
    method: Method,
    target: (usize, usize),
    version: Version,
    fields: Vec<(HeaderName, usize, usize)>,
    body: BodyLength,
    keep_alive: bool,
    expect_continue: bool,
    upgrade: bool,
}

/// Why a connection stops before a request reaches the pipeline.
enum HeadEnd {
    /// Closed between requests, or shutdown began while idle.
    Closed,
    /// A head Weir refuses, with the status to answer.
    Refused(StatusCode, ClientError),
    /// The HTTP/2 preface: the connection goes to hyper.
    Http2,
    Io(io::Error),
}

fn parse(buf: &[u8], limits: &weir_http1::Limits) -> Result<Option<Parsed>, HeadError> {
    let base = buf.as_ptr() as usize;
    let at = |s: &[u8]| {
        (
            s.as_ptr() as usize - base,
            s.as_ptr() as usize - base + s.len(),
        )
    };
    let parsed = weir_http1::parse_request(buf, limits, |h| {
        Ok(Parsed {
            len: h.len,
            method: Method::from_bytes(h.method.as_bytes()).map_err(|_| HeadError::Syntax)?,
            target: at(h.target.as_bytes()),
            version: wire::version(h.version),
            fields: wire::field_spans(buf, h.headers)?,
            body: h.body,
            keep_alive: h.keep_alive,
            expect_continue: h.expect_continue,
            upgrade: h.upgrade,
        })
    })?;
    parsed.transpose()
}

fn refusal(e: HeadError) -> HeadEnd {
    let reason = match e.status() {
        431 => ClientError::HeadersTooLarge,
        414 => ClientError::UriTooLong,
        _ if e.is_framing() => ClientError::BadFraming,
        _ => ClientError::Malformed,
    };
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
    HeadEnd::Refused(status, reason)
}

impl<S: AsyncRead + AsyncWrite + ReadReady + Unpin> Shared<S> {
    /// Reads until a whole head is buffered (or the connection ends). An
    /// empty buffer is dropped first, so a connection waiting for its next
    /// request holds none.
    fn poll_head(
        &mut self,
        cx: &mut Context<'_>,
        conn: &ConnContext,
    ) -> Poll<Result<Parsed, HeadEnd>> {
        let control = &conn.h1;
        loop {
            let preface =
                self.first && PREFACE.starts_with(&self.buf[..self.buf.len().min(PREFACE.len())]);
            if preface && self.buf.len() >= PREFACE.len() {
                return Poll::Ready(Err(HeadEnd::Http2));
            }
            if !self.buf.is_empty() && !preface {
                match parse(&self.buf, &limits(conn)) {
                    Ok(Some(p)) => {
                        self.first = false;
                        control.idle.store(false, Ordering::Relaxed);
                        conn.watchdog.read(false);
                        return Poll::Ready(Ok(p));
                    }
                    Ok(None) => {}
                    Err(e) => return Poll::Ready(Err(refusal(e))),
                }
            }
            if self.eof {
                return Poll::Ready(Err(HeadEnd::Closed));
            }
            if self.buf.is_empty() {
                wire::give_back(std::mem::take(&mut self.buf));
                control.idle.store(true, Ordering::Relaxed);
                if conn.drain.is_asked() {
                    return Poll::Ready(Err(HeadEnd::Closed));
                }
                let io = self.io.as_ref().ok_or_else(gone).map_err(HeadEnd::Io)?;
                ready!(io.poll_read_ready(cx)).map_err(HeadEnd::Io)?;
            }
            let filled = match self.poll_fill(cx) {
                Poll::Ready(r) => r,
                Poll::Pending => {
                    // Readiness can be stale (the last read did not drain
                    // the socket): the read that found nothing must not
                    // leave an idle connection holding a buffer.
                    if self.buf.is_empty() {
                        wire::give_back(std::mem::take(&mut self.buf));
                    }
                    return Poll::Pending;
                }
            };
            match filled {
                Ok(0) => return Poll::Ready(Err(HeadEnd::Closed)),
                Ok(_) => {
                    // Empty lines before a request line start no head.
                    let partial = !self.buf.iter().all(|b| matches!(b, b'\r' | b'\n'));
                    control.idle.store(false, Ordering::Relaxed);
                    conn.watchdog.read(partial);
                }
                Err(e) => return Poll::Ready(Err(HeadEnd::Io(e))),
            }
        }
    }
}

/// A new connection's socket and (empty) read buffer, for [`serve`].
pub(super) fn conn<S>(io: S, cx: &ConnContext) -> Lock<S>
where
    S: AsyncRead + AsyncWrite + ReadReady + Unpin + Send + 'static,
{
    Arc::new(Mutex::new(Shared {
        io: Some(io),
        buf: BytesMut::new(),
        body: BodyState::Done,
        continue_left: 0,
        eof: false,
        first: true,
        max_trailer_bytes: cx.listener.max_header_bytes,
        max_trailer_fields: cx.listener.max_headers,
    }))
}

/// The bounds of a request head, from the listener's settings.
fn limits(cx: &ConnContext) -> weir_http1::Limits {
    weir_http1::Limits {
        max_head_bytes: cx.listener.max_header_bytes,
        max_headers: cx.listener.max_headers,
        max_target_bytes: MAX_TARGET,
    }
}

/// Serves HTTP/1.1 requests on `shared`'s socket until either side
/// closes, the connection is upgraded, or a drain finds it between
/// requests.
///
/// It borrows what it works on: this future is most of an idle
/// connection's task, and an `async fn` keeps every argument for its whole
/// life, so a socket passed by value would be kept twice.
pub(super) async fn serve<S>(shared: &Lock<S>, cx: &Arc<ConnContext>) -> Result<(), BoxError>
where
    S: AsyncRead + AsyncWrite + ReadReady + Unpin + Send + 'static,
{
    let end = loop {
        // Matched as it comes: a local that an arm moves out of would
        // keep its room in this future across the request's await.
        let parsed = match poll_fn(|t| lock(shared).poll_head(t, cx)).await {
            Ok(p) => p,
            Err(end) => break end,
        };
        // Boxed: a request's state (the pipeline's future, the response
        // being written) is most of a connection's, and inline it would
        // size every connection's task for its whole life, idle ones
        // included.
        let max_buffered = cx.listener.max_header_bytes;
        let next = boxed(|| exchange(shared, cx, parsed, max_buffered)).await?;
        if !next {
            return Ok(());
        }
    };
    Box::pin(before_request(shared, cx, end)).await
}

/// Boxes the future `make` makes, allocating first: the future's first
/// state can then be written straight into the box. `Box::pin(future)`
/// makes it on the stack and copies all of it into the box, and a
/// request's future is about 7.6 KB, nearly all of it room for later
/// states (copying it would be about 770 instructions per request).
#[inline(always)]
fn boxed<F: Future>(make: impl FnOnce() -> F) -> Pin<Box<F>> {
    Box::into_pin(Box::write(Box::new_uninit(), make()))
}

/// How a connection ends when no request reached the pipeline: closed,
/// refused (answered first), or handed to HTTP/2. Boxed by its caller:
/// rare, and the refusal's response future would otherwise size every
/// connection.
async fn before_request<S>(shared: &Lock<S>, cx: &ConnContext, end: HeadEnd) -> Result<(), BoxError>
where
    S: AsyncRead + AsyncWrite + ReadReady + Unpin + Send + 'static,
{
    match end {
        HeadEnd::Closed => Ok(()),
        HeadEnd::Io(e) => Err(e.into()),
        HeadEnd::Http2 => {
            let mut s = lock(shared);
            let leftover = s.buf.split().freeze();
            if let Some(mut io) = s.io.take() {
                io.now_http2();
                *cx.h1.h2.lock().unwrap_or_else(|p| p.into_inner()) = Some(Upgraded {
                    io: Box::new(io),
                    leftover,
                });
            }
            Ok(())
        }
        HeadEnd::Refused(status, reason) => {
            cx.stats.client_error(reason);
            refuse(shared, status).await
        }
    }
}

/// One request on the connection, from its parsed head to its response's
/// last byte; `Ok(true)` when the connection may carry another.
async fn exchange<S>(
    shared: &Lock<S>,
    cx: &Arc<ConnContext>,
    parsed: Parsed,
    max_buffered: usize,
) -> Result<bool, BoxError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Prepared {
        req,
        upgrade,
        keep_alive,
    } = match request(shared, parsed) {
        Ok(r) => r,
        Err(status) => {
            cx.stats.client_error(ClientError::Malformed);
            refuse(shared, status).await?;
            return Ok(false);
        }
    };
    let (method, version) = (req.method().clone(), req.version());
    // The pipeline's future is pinned here, in this request's box, and
    // `run` only borrows it: taken by value, it would sit in `run`'s
    // future twice (the argument and the pinned local), doubling the box.
    let resp = {
        let handler = pin!(proxy::handle(cx.clone(), req));
        run(shared, handler, max_buffered).await
    };
    let Some(resp) = resp else {
        // The client left before its answer: the request was dropped.
        return Ok(false);
    };
    let status = resp.status();
    let body_read = matches!(lock(shared).body, BodyState::Done);
    // (A `Connection: close` in the response is read as it is written.)
    let keep = keep_alive && body_read && !cx.drain.is_asked();
    let kept = respond(shared, resp, &method, version, keep).await?;
    if status == StatusCode::SWITCHING_PROTOCOLS {
        if let Some(tx) = upgrade {
            let mut s = lock(shared);
            let leftover = s.buf.split().freeze();
            if let Some(io) = s.io.take() {
                let _ = tx.send(Upgraded {
                    io: Box::new(io) as Box<dyn ClientIo>,
                    leftover,
                });
            }
        }
        return Ok(false);
    }
    if !kept {
        shutdown(shared).await;
    }
    Ok(kept)
}

/// A request made from its parsed head, ready for the pipeline.
struct Prepared {
    req: Request<ClientBody>,
    /// Where the socket goes if the request upgrades (it asked to).
    upgrade: Option<tokio::sync::oneshot::Sender<Upgraded>>,
    /// Whether the client lets the connection carry another request.
    keep_alive: bool,
}

/// The request for the pipeline from a parsed head; `Err`: the target or
/// a value `http` will not hold (400).
fn request<S>(shared: &Lock<S>, p: Parsed) -> Result<Prepared, StatusCode>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut s = lock(shared);
    let head = s.buf.split_to(p.len).freeze();
    let uri = Uri::from_maybe_shared(head.slice(p.target.0..p.target.1))
        .map_err(|_| StatusCode::BAD_REQUEST)?;
    // Room for the fields the pipeline adds (forwarding, `Via`, the
    // request id), so the map is made once.
    let headers = wire::field_map(&head, p.fields, 8).ok_or(StatusCode::BAD_REQUEST)?;
    let length = match p.body {
        BodyLength::Empty => {
            s.body = BodyState::Done;
            Some(0)
        }
        BodyLength::Length(n) => {
            s.body = BodyState::Length(n);
            Some(n)
        }
        BodyLength::Chunked => {
            s.body = BodyState::chunked(s.max_trailer_bytes, s.max_trailer_fields);
            None
        }
    };
    s.continue_left = if p.expect_continue && length != Some(0) {
        CONTINUE.len()
    } else {
        0
    };
    drop(s);
    let source: Arc<Mutex<dyn H1Source>> = shared.clone();
    let mut req = Request::new(ClientBody::H1(H1Body::new(source, length)));
    *req.method_mut() = p.method;
    *req.uri_mut() = uri;
    *req.version_mut() = p.version;
    *req.headers_mut() = headers;
    let upgrade = p.upgrade.then(|| {
        let (tx, rx) = tokio::sync::oneshot::channel();
        req.extensions_mut().insert(PendingUpgrade::new(rx));
        tx
    });
    Ok(Prepared {
        req,
        upgrade,
        keep_alive: p.keep_alive,
    })
}

/// Runs the pipeline for one request; `None` when the client closed the
/// connection first (the request's future is dropped, which logs it as
/// 499). Once the request's body is read, the socket is watched for the
/// close, and what a pipelining client sends meanwhile is kept, up to
/// `max_buffered` bytes.
async fn run<S, F>(
    shared: &Lock<S>,
    mut handler: Pin<&mut F>,
    max_buffered: usize,
) -> Option<Response<ResponseBody>>
where
    S: AsyncRead + AsyncWrite + Unpin,
    F: Future<Output = Result<Response<ResponseBody>, std::convert::Infallible>>,
{
    poll_fn(|t| {
        if let Poll::Ready(Ok(resp)) = handler.as_mut().poll(t) {
            return Poll::Ready(Some(resp));
        }
        let mut s = lock(shared);
        while matches!(s.body, BodyState::Done) && !s.eof && s.buf.len() < max_buffered {
            match s.poll_fill(t) {
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => {
                    s.eof = true;
                    return Poll::Ready(None);
                }
                Poll::Ready(Ok(_)) => {}
                Poll::Pending => break,
            }
        }
        Poll::Pending
    })
    .await
}

/// Answers a refused head with `status` and no body, and closes.
async fn refuse<S: AsyncRead + AsyncWrite + Unpin>(
    shared: &Lock<S>,
    status: StatusCode,
) -> Result<(), BoxError> {
    let mut resp = Response::new(ResponseBody::empty());
    *resp.status_mut() = status;
    let _ = respond(shared, resp, &Method::GET, Version::HTTP_11, false).await;
    shutdown(shared).await;
    Ok(())
}

/// Ends the connection: its write side shut, so the client reads the
/// end of what was sent.
async fn shutdown<S: AsyncRead + AsyncWrite + Unpin>(shared: &Lock<S>) {
    let _ = poll_fn(|t| match lock(shared).io.as_mut() {
        Some(io) => Pin::new(io).poll_shutdown(t),
        None => Poll::Ready(Ok(())),
    })
    .await;
}

/// Writes the response; returns whether the connection may carry another
/// request (`keep`, unless the response asks to close or its framing
/// needs the close).
async fn respond<S>(
    shared: &Lock<S>,
    resp: Response<ResponseBody>,
    method: &Method,
    version: Version,
    keep: bool,
) -> Result<bool, BoxError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (mut parts, mut body) = resp.into_parts();
    let status = parts.status;
    let id = body.take_id();
    // An upstream's fields kept as received are written as they are, and
    // the map holds only what was added beside them.
    let raw = body.take_raw_head();
    let h = &parts.headers;
    let bodiless = *method == Method::HEAD
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    // The framing is Weir's to choose: the response's own length and
    // transfer coding are not passed on beside it, and the fields Weir
    // decides are written straight into the head. One pass over the
    // fields finds what is read here (a lookup would hash each name).
    let (mut length, mut dated, mut close) = (None, false, false);
    for (name, value) in h {
        if name == header::CONTENT_LENGTH {
            length = length.or(Some(value));
        } else if name == header::DATE {
            dated = true;
        } else if name == header::CONNECTION {
            close |= crate::proxy::headers::value_lists(value, "close");
        }
    }
    let mut declared = length.and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if let Some(raw) = &raw {
        declared = declared.or(raw.length());
        dated |= raw.dated();
    }
    let framing = if bodiless {
        Framing::None
    } else if let Some(n) = declared.or(body.size_hint().exact()) {
        Framing::Length(n)
    } else if version == Version::HTTP_11 {
        Framing::Chunked
    } else {
        Framing::UntilClose
    };
    let keep = keep && !close && framing != Framing::UntilClose;
    // The final answer makes a `100 Continue` not yet sent moot (RFC 9110
    // section 10.1.1); one written later would land inside this response.
    lock(shared).continue_left = 0;
    // The response's own `Connection` goes only where Weir writes none.
    let connection: &[u8] = if status == StatusCode::SWITCHING_PROTOCOLS {
        b""
    } else if !keep {
        b"connection: close\r\n"
    } else if version == Version::HTTP_10 {
        b"connection: keep-alive\r\n"
    } else {
        b""
    };
    let mut out = Out::default();
    out.head = wire::take_head();
    let head = &mut out.head;
    head.extend_from_slice(if version == Version::HTTP_10 {
        b"HTTP/1.0 "
    } else {
        b"HTTP/1.1 "
    });
    head.extend_from_slice(status.as_str().as_bytes());
    head.push(b' ');
    head.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    head.extend_from_slice(b"\r\n");
    if let Some(raw) = raw {
        head.extend_from_slice(raw.lines());
        raw.give_back();
    }
    wire::write_fields_except(head, h, |name| {
        name == header::TRANSFER_ENCODING
            || name == header::CONTENT_LENGTH
            || (name == header::CONNECTION && !connection.is_empty())
            || (id.is_some() && name == X_REQUEST_ID)
    });
    if let Some(id) = &id {
        wire::write_field(head, &X_REQUEST_ID, id);
    }
    match framing {
        // A HEAD's answer and a 304 keep the length they announce.
        Framing::None if *method == Method::HEAD || status == StatusCode::NOT_MODIFIED => {
            if let Some(n) = declared {
                wire::write_length(head, n);
            }
        }
        Framing::Length(n) => wire::write_length(head, n),
        Framing::Chunked => head.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        Framing::None | Framing::UntilClose => {}
    }
    head.extend_from_slice(connection);
    if !dated {
        head.extend_from_slice(b"date: ");
        date(head);
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"\r\n");
    // The head is written out: its fields (pieces of an upstream's read
    // buffer) are let go, so that buffer is free for its pool sooner, and
    // the map goes back to the worker's.
    wire::give_map(std::mem::take(&mut parts.headers));
    drop(parts);
    out.start(framing);
    let mut body = pin!(body);
    let mut ended = framing == Framing::None;
    if ended {
        // Nothing of it is sent, but a body already at its end is read
        // to it, so an upstream connection behind it goes back to its
        // pool.
        poll_fn(|t| {
            while let Poll::Ready(Some(Ok(_))) = body.as_mut().poll_frame(t) {}
            Poll::Ready(())
        })
        .await;
    }
    poll_fn(|t| {
        loop {
            // The body is polled with the connection unlocked: it may read
            // this connection's request body (an upstream connection
            // sends it as the response comes).
            if !ended {
                ended = out.fill(body.as_mut(), t)?;
            }
            let mut s = lock(shared);
            let io = s.io.as_mut().ok_or_else(gone)?;
            if out.queued == 0 {
                if ended {
                    return Pin::new(io).poll_flush(t).map_err(BoxError::from);
                }
                return Poll::Pending;
            }
            ready!(out.poll_write(io, t))?;
        }
    })
    .await?;
    wire::give_head(std::mem::take(&mut out.head));
    Ok(keep)
}

/// Appends the `Date` field's value for now, made once a second per
/// thread.
fn date(head: &mut Vec<u8>) {
    thread_local! {
        static DATE: std::cell::RefCell<(u64, [u8; 29])> = const { std::cell::RefCell::new((0, [0; 29])) };
    }
    let now = std::time::SystemTime::now();
    let secs = now
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    DATE.with(|d| {
        let mut d = d.borrow_mut();
        if d.0 != secs {
            let text = httpdate::fmt_http_date(now);
            if text.len() == 29 {
                d.1.copy_from_slice(text.as_bytes());
            }
            d.0 = secs;
        }
        head.extend_from_slice(&d.1);
    });
}
