//! The body the client receives: a small answer of our own, or the
//! upstream's body streamed through. When the upstream body ends cleanly
//! its HTTP/1.1 connection goes back to the endpoint's pool ([`Lease`]);
//! when the upstream
//! sends nothing for the route's `read_timeout` while the client waits for
//! more, it fails (the client's connection or stream is cut, the upstream
//! connection dropped). It never buffers a whole body.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use super::exchange::Exchange;
use crate::body::BoxError;
use crate::upstream::{Endpoint, Received};

/// Where a response body comes from: the endpoint whose pool its HTTP/1.1
/// connection goes back to once the body has ended (an HTTP/2 stream
/// gives its place back itself).
pub struct Lease {
    endpoint: Arc<Endpoint>,
}

impl Lease {
    pub fn new(endpoint: Arc<Endpoint>) -> Lease {
        Lease { endpoint }
    }

    /// Gives the body's connection back, when it may carry another
    /// request.
    fn release(&self, body: &mut Received) {
        if let Some(conn) = body.reusable() {
            self.endpoint.give_back(conn);
        }
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
    inner: Received,
    lease: Lease,
    read_timeout: Duration,
    /// Armed when a poll finds nothing to read and the timer is not
    /// already running for this wait; made on the first such wait only,
    /// so a body that is there with its head costs no timer.
    stall: Option<Pin<Box<tokio::time::Sleep>>>,
    waiting: bool,
}

/// What the client receives, and the record of the request it answers
/// (finished when the body is dropped, see [`super::exchange`]).
pub struct ResponseBody {
    kind: Kind,
    record: Option<Box<Exchange>>,
    /// The request id, for the client's connection to write as
    /// `X-Request-Id` ([`ResponseBody::take_id`]): written straight into
    /// the head, it costs no insertion in the map (replacing any the
    /// upstream sent).
    request_id: Option<http::HeaderValue>,
}

enum Kind {
    Full(Option<Bytes>),
    Upstream(UpstreamBody),
}

impl ResponseBody {
    pub fn full(b: impl Into<Bytes>) -> ResponseBody {
        ResponseBody::of(Kind::Full(Some(b.into())))
    }

    pub fn empty() -> ResponseBody {
        ResponseBody::of(Kind::Full(None))
    }

    fn of(kind: Kind) -> ResponseBody {
        ResponseBody {
            kind,
            record: None,
            request_id: None,
        }
    }

    /// The whole body, when it is one of Weir's own answers.
    pub fn as_full(&self) -> Option<&Bytes> {
        match &self.kind {
            Kind::Full(b) => b.as_ref(),
            Kind::Upstream(_) => None,
        }
    }

    /// Hands the request's record to the body, which counts what it sends
    /// and finishes the record when dropped.
    pub fn keep(&mut self, record: Box<Exchange>) {
        self.record = Some(record);
    }

    /// Gives the response its request id, which the client's connection
    /// sends as `X-Request-Id` in place of any the fields hold.
    pub fn carry_id(&mut self, id: http::HeaderValue) {
        self.request_id = Some(id);
    }

    /// The head's fields as an HTTP/1.1 upstream sent them, once, when
    /// they were kept so (`upstream::h1::Connection::send`): the response's
    /// map then holds none of them.
    pub(crate) fn take_raw_head(&mut self) -> Option<crate::wire::RawHead> {
        match &mut self.kind {
            Kind::Upstream(u) => u.inner.take_raw_head(),
            Kind::Full(_) => None,
        }
    }

    /// The request id [`ResponseBody::carry_id`] gave, once.
    pub fn take_id(&mut self) -> Option<http::HeaderValue> {
        self.request_id.take()
    }

    /// Streams `inner`; the connection goes back to the pool once it ends.
    /// `read_timeout` bounds each wait for the upstream's next bytes.
    pub fn upstream(mut inner: Received, lease: Lease, read_timeout: Duration) -> ResponseBody {
        if inner.is_end_stream() {
            lease.release(&mut inner);
        }
        ResponseBody::of(Kind::Upstream(UpstreamBody {
            inner,
            lease,
            read_timeout,
            stall: None,
            waiting: false,
        }))
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
            Some(Ok(_)) | None => self.lease.release(&mut self.inner),
            // A broken body has dropped its connection.
            Some(Err(_)) => {}
        }
        Poll::Ready(frame)
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
        // The connection, in the middle of a body, goes with the body.
        let err = UpstreamBodyStalled {
            endpoint: self.lease.endpoint.addr.to_string(),
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
        let this = self.get_mut();
        let polled = match &mut this.kind {
            Kind::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Kind::Upstream(up) => up.poll_frame(cx),
        };
        if let (Some(record), Poll::Ready(Some(Ok(frame)))) = (&mut this.record, &polled)
            && let Some(data) = frame.data_ref()
        {
            record.bytes_out += data.len() as u64;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Full(b) => b.is_none(),
            Kind::Upstream(up) => up.inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full(None) => SizeHint::with_exact(0),
            Kind::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            Kind::Upstream(up) => up.inner.size_hint(),
        }
    }
}
