//! The two body types of the proxy. [`RequestBody`] carries the client's
//! body upstream and enforces the route's size limit as bytes flow, so an
//! oversized chunked upload is cut off without being held in memory.
//! [`ResponseBody`] is either a small answer of our own or the upstream's
//! streaming body; when the upstream body ends cleanly it hands its
//! connection back to the pool, and when the upstream sends nothing for the
//! route's `read_timeout` while the client waits for more, it fails (the
//! client's connection or stream is cut, the upstream connection dropped).
//! Neither ever buffers a whole body.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use crate::upstream::{Connection, Endpoint};

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
pub struct ClientBodyError(hyper::Error);

impl std::fmt::Display for ClientBodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // hyper's own message leaves out its cause, which says what broke.
        write!(f, "{}", self.0)?;
        if let Some(cause) = std::error::Error::source(&self.0) {
            write!(f, ": {cause}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ClientBodyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

/// Whether a streamed body is waiting for the client, shared with the
/// forwarder: when the deadline strikes, it tells a stalled upload (the
/// client's fault) from a slow upstream. Set on every poll of the body, so
/// it is true only while the upstream connection has asked for more and
/// the client has not sent it; an upstream that stops reading leaves it
/// false.
#[derive(Debug, Default)]
pub struct Stalled(AtomicBool);

impl Stalled {
    /// Whether the body was last found waiting for the client's bytes.
    pub fn get(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// The client's body on its way upstream.
#[derive(Debug)]
pub enum RequestBody {
    Empty,
    /// A body buffered for request-body plugins, sent whole.
    Full(Option<Bytes>),
    Stream {
        inner: Incoming,
        seen: u64,
        limit: u64,
        stalled: Arc<Stalled>,
    },
}

impl RequestBody {
    pub fn limited(inner: Incoming, limit: u64) -> RequestBody {
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
            _ => None,
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
                stalled.0.store(polled.is_pending(), Ordering::Relaxed);
                match std::task::ready!(polled) {
                    Some(Ok(frame)) => {
                        if let Some(data) = frame.data_ref() {
                            *seen += data.len() as u64;
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
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RequestBody::Empty => true,
            RequestBody::Full(b) => b.is_none(),
            RequestBody::Stream { inner, .. } => inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RequestBody::Empty => SizeHint::with_exact(0),
            RequestBody::Full(None) => SizeHint::with_exact(0),
            RequestBody::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            RequestBody::Stream { inner, .. } => inner.size_hint(),
        }
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

/// A connection waiting for its response body to end before it can be
/// reused.
pub struct Lease {
    endpoint: Arc<Endpoint>,
    conn: Connection,
}

impl Lease {
    pub fn new(endpoint: Arc<Endpoint>, conn: Connection) -> Lease {
        Lease { endpoint, conn }
    }

    fn release(self) {
        self.endpoint.give_back(self.conn);
    }
}

/// The upstream sent no byte of the response body for `read_timeout`
/// while the client was waiting for more.
#[derive(Debug, thiserror::Error)]
#[error("upstream {endpoint} sent nothing of the response body for {after:?} (read_timeout)")]
pub struct UpstreamBodyStalled {
    pub endpoint: String,
    pub after: Duration,
}

/// The upstream's body as it streams to the client.
pub struct UpstreamBody {
    inner: Incoming,
    lease: Option<Lease>,
    read_timeout: Duration,
    /// Armed when a poll finds nothing to read and the timer is not
    /// already running for this wait; made on the first such wait only,
    /// so a body that is there with its head costs no timer.
    stall: Option<Pin<Box<tokio::time::Sleep>>>,
    waiting: bool,
}

/// What the client receives.
pub enum ResponseBody {
    Full(Option<Bytes>),
    Upstream(UpstreamBody),
}

impl ResponseBody {
    pub fn full(b: impl Into<Bytes>) -> ResponseBody {
        ResponseBody::Full(Some(b.into()))
    }

    pub fn empty() -> ResponseBody {
        ResponseBody::Full(None)
    }

    /// Streams `inner`; the connection goes back to the pool once it ends.
    /// `read_timeout` bounds each wait for the upstream's next bytes.
    pub fn upstream(inner: Incoming, lease: Option<Lease>, read_timeout: Duration) -> ResponseBody {
        let mut lease = lease;
        if inner.is_end_stream()
            && let Some(l) = lease.take()
        {
            l.release();
        }
        ResponseBody::Upstream(UpstreamBody {
            inner,
            lease,
            read_timeout,
            stall: None,
            waiting: false,
        })
    }
}

impl UpstreamBody {
    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let frame = match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(frame) => frame,
            Poll::Pending => return self.poll_stall(cx),
        };
        self.waiting = false;
        match &frame {
            Some(Ok(_)) if !self.inner.is_end_stream() => {}
            Some(Ok(_)) | None => {
                if let Some(l) = self.lease.take() {
                    l.release();
                }
            }
            // A broken body means a broken connection: drop it.
            Some(Err(_)) => drop(self.lease.take()),
        }
        Poll::Ready(frame.map(|f| f.map_err(|e| Box::new(e) as BoxError)))
    }

    /// The upstream has nothing for us: start (or keep) the clock of this
    /// wait, and fail the body when it runs out.
    fn poll_stall(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let at = || tokio::time::Instant::now() + self.read_timeout;
        let timer = match &mut self.stall {
            Some(t) => {
                if !self.waiting {
                    t.as_mut().reset(at());
                }
                t
            }
            None => self.stall.insert(Box::pin(tokio::time::sleep_until(at()))),
        };
        self.waiting = true;
        if timer.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        // The connection is in the middle of a body: never reuse it.
        let endpoint = self
            .lease
            .take()
            .map_or_else(|| "?".to_owned(), |l| l.endpoint.addr.to_string());
        let err = UpstreamBodyStalled {
            endpoint,
            after: self.read_timeout,
        };
        tracing::warn!(error = %err, "response body cut off");
        Poll::Ready(Some(Err(Box::new(err))))
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        super::stall::body_polled();
        match self.get_mut() {
            ResponseBody::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            ResponseBody::Upstream(up) => up.poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ResponseBody::Full(b) => b.is_none(),
            ResponseBody::Upstream(up) => up.inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ResponseBody::Full(None) => SizeHint::with_exact(0),
            ResponseBody::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            ResponseBody::Upstream(up) => up.inner.size_hint(),
        }
    }
}
