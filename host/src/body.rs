//! The client's request body on its way upstream, below both the proxy
//! pipeline (which makes it) and the upstream connections (which send it).
//! [`RequestBody`] enforces the route's size limit as bytes flow, so an
//! oversized chunked upload is cut off without being held in memory, and
//! records whether it is waiting for the client ([`Stalled`]) so a
//! deadline can say whose fault a slow upload is. It never buffers a
//! whole body; a body that request-body plugins asked for arrives already
//! buffered ([`RequestBody::Full`]), and one sent again after an HTTP/2
//! upstream refused it starts with the frames already sent
//! ([`RequestBody::Replayed`]).

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The request body grew past the route's `max_body_bytes`.
#[derive(Debug, thiserror::Error)]
#[error("request body exceeds the limit of {limit} bytes")]
pub struct BodyTooLarge {
    pub limit: u64,
}

/// The client's body failed as it streamed upstream: the client aborted
/// the upload or broke its framing (a bad chunk size, a connection closed
/// before `Content-Length` bytes). It marks the upstream send's error as
/// the client's fault, not the endpoint's.
#[derive(Debug)]
pub struct ClientBodyError(BoxError);

impl std::fmt::Display for ClientBodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // hyper's own message leaves out its cause, which says what broke.
        write!(f, "{}", self.0)?;
        if let Some(cause) = self.0.source() {
            write!(f, ": {cause}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ClientBodyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.0)
    }
}

/// A request body as the client connection delivers it: from hyper (an
/// HTTP/2 stream) or from Weir's own HTTP/1.1 connection ([`H1Body`]).
#[derive(Debug)]
pub enum ClientBody {
    Hyper(Incoming),
    H1(H1Body),
}

/// What an HTTP/1.1 connection reads a request's body from: the
/// connection itself, shared between its task and the body, which may be
/// polled from another task (an upstream connection's).
pub trait H1Source: Send {
    /// The next piece of the body: data, the trailers, the end, or why it
    /// broke.
    fn poll_body(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>>;
}

/// The body of a request on Weir's own HTTP/1.1 path: read from the
/// client connection as it is polled, never ahead of that.
pub struct H1Body {
    source: Arc<std::sync::Mutex<dyn H1Source>>,
    hint: SizeHint,
    ended: bool,
}

impl std::fmt::Debug for H1Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H1Body")
            .field("hint", &self.hint)
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

impl H1Body {
    /// A body of `length` bytes (`None`: chunked) from `source`.
    pub fn new(source: Arc<std::sync::Mutex<dyn H1Source>>, length: Option<u64>) -> H1Body {
        let hint = match length {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::new(),
        };
        H1Body {
            source,
            hint,
            ended: length == Some(0),
        }
    }
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            ClientBody::Hyper(b) => Pin::new(b).poll_frame(cx).map_err(BoxError::from),
            ClientBody::H1(b) => {
                if b.ended {
                    return Poll::Ready(None);
                }
                let polled = b
                    .source
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .poll_body(cx);
                if let Poll::Ready(r) = &polled {
                    match r {
                        Some(Ok(frame)) => {
                            if let (Some(d), Some(upper)) = (frame.data_ref(), b.hint.upper()) {
                                let left = upper.saturating_sub(d.len() as u64);
                                b.hint = SizeHint::with_exact(left);
                            }
                        }
                        _ => b.ended = true,
                    }
                }
                polled
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ClientBody::Hyper(b) => b.is_end_stream(),
            ClientBody::H1(b) => b.ended,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ClientBody::Hyper(b) => b.size_hint(),
            ClientBody::H1(b) => b.hint,
        }
    }
}

/// Whether a streamed body is waiting for the client, shared with the
/// forwarder: when the deadline strikes, it tells a stalled upload (the
/// client's fault) from a slow upstream. Set on every poll of the body, so
/// it is true only while the upstream connection has asked for more and
/// the client has not sent it; an upstream that stops reading leaves it
/// false. It also keeps how many body bytes have come from the client, for
/// the request's metrics and access log.
#[derive(Debug, Default)]
pub struct Stalled {
    waiting: AtomicBool,
    received: AtomicU64,
}

impl Stalled {
    /// Whether the body was last found waiting for the client's bytes.
    pub fn get(&self) -> bool {
        self.waiting.load(Ordering::Relaxed)
    }

    /// Body bytes received from the client so far.
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }
}

/// The client's body on its way upstream.
#[derive(Debug)]
pub enum RequestBody {
    Empty,
    /// A body buffered for request-body plugins, sent whole.
    Full(Option<Bytes>),
    Stream {
        inner: ClientBody,
        seen: u64,
        limit: u64,
        stalled: Arc<Stalled>,
    },
    /// A body sent again after an HTTP/2 upstream refused it unprocessed:
    /// the frames sent the first time, then the rest of the client's.
    Replayed {
        sent: VecDeque<Frame<Bytes>>,
        rest: Box<RequestBody>,
    },
}

impl RequestBody {
    pub fn limited(inner: ClientBody, limit: u64) -> RequestBody {
        if inner.is_end_stream() {
            RequestBody::Empty
        } else {
            RequestBody::Stream {
                inner,
                seen: 0,
                limit,
                stalled: Arc::default(),
            }
        }
    }

    /// For a streamed body, whether it waits for the client (see
    /// [`Stalled`]); the forwarder keeps a handle before sending.
    pub fn stalled(&self) -> Option<&Arc<Stalled>> {
        match self {
            RequestBody::Stream { stalled, .. } => Some(stalled),
            RequestBody::Replayed { rest, .. } => rest.stalled(),
            _ => None,
        }
    }

    /// The body to send again: `sent` first, then what is left of `rest`.
    pub fn replayed(sent: VecDeque<Frame<Bytes>>, rest: RequestBody) -> RequestBody {
        if sent.is_empty() {
            return rest;
        }
        RequestBody::Replayed {
            sent,
            rest: Box::new(rest),
        }
    }
}

impl RequestBody {
    pub fn full(b: Bytes) -> RequestBody {
        if b.is_empty() {
            RequestBody::Empty
        } else {
            RequestBody::Full(Some(b))
        }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            RequestBody::Empty => Poll::Ready(None),
            RequestBody::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            RequestBody::Stream {
                inner,
                seen,
                limit,
                stalled,
            } => {
                let polled = Pin::new(inner).poll_frame(cx);
                // A relaxed store per poll: only this body writes the flag,
                // and the forwarder reads it once, when its deadline fires.
                stalled
                    .waiting
                    .store(polled.is_pending(), Ordering::Relaxed);
                match std::task::ready!(polled) {
                    Some(Ok(frame)) => {
                        if let Some(data) = frame.data_ref() {
                            *seen += data.len() as u64;
                            stalled.received.store(*seen, Ordering::Relaxed);
                            if *seen > *limit {
                                return Poll::Ready(Some(Err(Box::new(BodyTooLarge {
                                    limit: *limit,
                                }))));
                            }
                        }
                        Poll::Ready(Some(Ok(frame)))
                    }
                    Some(Err(e)) => Poll::Ready(Some(Err(Box::new(ClientBodyError(e))))),
                    None => Poll::Ready(None),
                }
            }
            RequestBody::Replayed { sent, rest } => match sent.pop_front() {
                Some(frame) => Poll::Ready(Some(Ok(frame))),
                None => Pin::new(rest.as_mut()).poll_frame(cx),
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RequestBody::Empty => true,
            RequestBody::Full(b) => b.is_none(),
            RequestBody::Stream { inner, .. } => inner.is_end_stream(),
            RequestBody::Replayed { sent, rest } => sent.is_empty() && rest.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RequestBody::Empty => SizeHint::with_exact(0),
            RequestBody::Full(None) => SizeHint::with_exact(0),
            RequestBody::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            RequestBody::Stream { inner, .. } => inner.size_hint(),
            RequestBody::Replayed { sent, rest } => {
                let again: u64 = sent
                    .iter()
                    .filter_map(|f| f.data_ref())
                    .map(|d| d.len() as u64)
                    .sum();
                let rest = rest.size_hint();
                let mut hint = SizeHint::new();
                hint.set_lower(rest.lower() + again);
                if let Some(upper) = rest.upper() {
                    hint.set_upper(upper + again);
                }
                hint
            }
        }
    }
}

/// A copy of a request's head, kept to send the request again: a retry
/// of a bodiless request after a bad status or a reset, or one an HTTP/2
/// upstream refused before it ran. Each copy made from it clones the
/// fields (the header values only count references).
#[derive(Debug)]
pub struct RequestHead {
    method: http::Method,
    uri: http::Uri,
    version: http::Version,
    headers: http::HeaderMap,
}

impl RequestHead {
    pub fn of(parts: &http::request::Parts) -> RequestHead {
        RequestHead {
            method: parts.method.clone(),
            uri: parts.uri.clone(),
            version: parts.version,
            headers: parts.headers.clone(),
        }
    }

    /// The request again, with `body`.
    pub fn request(&self, body: RequestBody) -> http::Request<RequestBody> {
        let mut req = http::Request::new(body);
        *req.method_mut() = self.method.clone();
        *req.uri_mut() = self.uri.clone();
        *req.version_mut() = self.version;
        *req.headers_mut() = self.headers.clone();
        req
    }
}

/// Whether an error from sending upstream was our body limit tripping.
pub fn is_body_too_large(err: &(dyn std::error::Error + 'static)) -> bool {
    find::<BodyTooLarge>(err).is_some()
}

/// The client's body failure behind an error from sending upstream, if
/// that is what the error is.
pub fn client_body_error<'a>(
    err: &'a (dyn std::error::Error + 'static),
) -> Option<&'a ClientBodyError> {
    find(err)
}

/// The first error of type `E` in `err`'s source chain.
fn find<'a, E: std::error::Error + 'static>(
    err: &'a (dyn std::error::Error + 'static),
) -> Option<&'a E> {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if let Some(found) = e.downcast_ref::<E>() {
            return Some(found);
        }
        cur = e.source();
    }
    None
}
