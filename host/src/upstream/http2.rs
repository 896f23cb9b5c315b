//! HTTP/2 to one endpoint: the multiplexed connections of each worker,
//! their PING keep-alive, and one request's stream on them, body and
//! trailers included.
//!
//! Built on the `h2` crate directly rather than hyper's HTTP/2 client:
//! hyper hides the peer's `SETTINGS_MAX_CONCURRENT_STREAMS` (needed to know
//! when a connection is full and another should open) and keeps the
//! request once it is handed over (needed to send it again after
//! `REFUSED_STREAM` or a GOAWAY that says it never ran). The request's body
//! is pumped from the request's own task until the response head arrives
//! (and only then moved to a task of its own, when it is still streaming),
//! so a refused request can be rebuilt from what was sent.
//!
//! Each worker has its own list of connections per endpoint, like the
//! HTTP/1.1 pool: a request takes a stream on the first connection with
//! room (below both Weir's `max_concurrent_streams` and the peer's
//! setting); only when all are full is another opened, up to
//! `max_connections_per_endpoint`, one at a time per worker; past that the
//! least busy connection queues the stream until one of its streams ends.
//! A connection that failed or received GOAWAY takes no new streams; its
//! streams in flight finish and its driver task ends.
//!
//! Bounds: what an upstream can make Weir hold is its flow-control
//! windows (`initial_stream_window` per stream, `initial_connection_window`
//! per connection: received data is released as the client takes it), a
//! response header block of `max_header_list_size`, and h2's own caps on
//! reset streams; a request body is kept for a replay only up to
//! [`MAX_REPLAY_BYTES`].

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use h2::client::SendRequest;
use h2::{Reason, RecvStream, SendStream};
use http::request::Parts;
use http::uri::{Authority, Scheme};
use http::{Request, Response, Uri, header};
use http_body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::body::{BoxError, RequestBody, RequestHead};
use crate::config::Http2Config;
use crate::worker;

/// The most of a request body kept while it is sent, so that a stream the
/// upstream refused unprocessed can be sent again; a request that sent
/// more before it was refused fails instead (502).
pub const MAX_REPLAY_BYTES: usize = 64 * 1024;

/// Streams h2 keeps in memory after resetting them locally (its guard
/// against a reset storm, CVE-2023-44487 class); past this the connection
/// is closed.
const MAX_LOCAL_RESETS: usize = 1024;

/// One multiplexed connection, as the pool keeps it.
#[derive(Clone)]
pub(super) struct H2Conn {
    send: SendRequest<Bytes>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for H2Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H2Conn")
            .field("streams", &self.shared.streams.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// What a connection's users and its driver task share.
#[derive(Debug)]
struct Shared {
    /// Streams taken and not yet given back.
    streams: AtomicUsize,
    /// The driver ended, a send failed, or the peer sent GOAWAY.
    dead: AtomicBool,
    /// When the last stream ended (worker clock, ms).
    idle_since_ms: AtomicU64,
}

impl H2Conn {
    /// The streams this connection may carry at once: Weir's cap, lowered
    /// by the peer's `SETTINGS_MAX_CONCURRENT_STREAMS` once it arrived.
    fn capacity(&self, ours: u32) -> usize {
        (ours as usize).min(self.send.current_max_send_streams())
    }

    fn alive(&self, idle_timeout_ms: u64, now_ms: u64) -> bool {
        let s = &self.shared;
        !s.dead.load(Ordering::Relaxed)
            && (s.streams.load(Ordering::Relaxed) > 0
                || now_ms.saturating_sub(s.idle_since_ms.load(Ordering::Relaxed)) < idle_timeout_ms)
    }

    pub(super) fn take(&self) -> Stream {
        self.shared.streams.fetch_add(1, Ordering::Relaxed);
        Stream {
            send: self.send.clone(),
            slot: StreamSlot(self.shared.clone()),
        }
    }
}

/// A stream taken on a connection, until the response ends.
#[derive(Debug)]
pub struct StreamSlot(Arc<Shared>);

impl Drop for StreamSlot {
    fn drop(&mut self) {
        if self.0.streams.fetch_sub(1, Ordering::Relaxed) == 1 {
            self.0
                .idle_since_ms
                .store(worker::now_ms(), Ordering::Relaxed);
        }
    }
}

/// A stream ready to carry one request.
pub struct Stream {
    send: SendRequest<Bytes>,
    slot: StreamSlot,
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stream").finish_non_exhaustive()
    }
}

/// One endpoint's HTTP/2 connections, a list per worker.
#[derive(Debug)]
pub(super) struct H2Pool {
    lists: Box<[Mutex<Vec<H2Conn>>]>,
    /// Held while a worker opens a connection to the endpoint, so that a
    /// burst of requests opens one, not one each.
    opening: Box<[tokio::sync::Mutex<()>]>,
    pub(super) cfg: Arc<Http2Config>,
    idle_timeout_ms: u64,
}

impl H2Pool {
    pub(super) fn new(workers: usize, cfg: Arc<Http2Config>, idle_timeout: Duration) -> H2Pool {
        let n = workers.max(1);
        H2Pool {
            lists: (0..n).map(|_| Mutex::new(Vec::new())).collect(),
            opening: (0..n).map(|_| tokio::sync::Mutex::new(())).collect(),
            cfg,
            idle_timeout_ms: idle_timeout.as_millis() as u64,
        }
    }

    fn list(&self) -> std::sync::MutexGuard<'_, Vec<H2Conn>> {
        self.lists[worker::id() % self.lists.len()]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// A stream on the first connection of this worker with room; with
    /// `overflow`, on the least busy one even when all are full (h2
    /// queues it until a stream ends).
    pub(super) fn take(&self, overflow: bool) -> Option<Stream> {
        let now = worker::now_ms();
        let mut list = self.list();
        list.retain(|c| c.alive(self.idle_timeout_ms, now));
        let ours = self.cfg.max_concurrent_streams;
        if let Some(c) = list
            .iter()
            .find(|c| c.shared.streams.load(Ordering::Relaxed) < c.capacity(ours))
        {
            return Some(c.take());
        }
        if overflow {
            return list
                .iter()
                .min_by_key(|c| c.shared.streams.load(Ordering::Relaxed))
                .map(H2Conn::take);
        }
        None
    }

    /// Connections without streams, over every worker's list (for a
    /// metrics scrape).
    pub(super) fn idle(&self) -> usize {
        self.lists
            .iter()
            .map(|l| {
                let list = l.lock().unwrap_or_else(|e| e.into_inner());
                list.iter()
                    .filter(|c| {
                        !c.shared.dead.load(Ordering::Relaxed)
                            && c.shared.streams.load(Ordering::Relaxed) == 0
                    })
                    .count()
            })
            .sum()
    }

    /// Whether this worker has all the connections it may open.
    pub(super) fn full(&self) -> bool {
        self.list().len() >= self.cfg.max_connections_per_endpoint
    }

    /// Waits for this worker's turn to open a connection.
    pub(super) async fn opening(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.opening[worker::id() % self.opening.len()].lock().await
    }

    /// Adds a connection just opened and takes a stream on it.
    pub(super) fn add(&self, conn: H2Conn) -> Stream {
        let stream = conn.take();
        self.list().push(conn);
        stream
    }
}

/// Makes the HTTP/2 handshake on `io` and starts the connection's driver
/// on this thread; `guard` (the connection's unit of the upstream's
/// `max_connections`) lives as long as the driver.
pub(super) async fn handshake<T, G>(
    io: T,
    cfg: &Http2Config,
    label: &str,
    guard: G,
) -> Result<H2Conn, h2::Error>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    G: Send + 'static,
{
    let (send, conn) = h2::client::Builder::new()
        .enable_push(false)
        .initial_window_size(cfg.initial_stream_window)
        .initial_connection_window_size(cfg.initial_connection_window)
        .max_header_list_size(cfg.max_header_list_size)
        // Until the peer's SETTINGS say how many streams it takes, assume
        // one: a burst on a new connection would otherwise open streams
        // past a limit the peer is about to announce, and have them
        // refused. Requests meanwhile queue in h2 or open another
        // connection, as for a full one.
        .initial_max_send_streams(1)
        .max_concurrent_reset_streams(MAX_LOCAL_RESETS)
        .max_local_error_reset_streams(Some(MAX_LOCAL_RESETS))
        .handshake::<T, Bytes>(io)
        .await?;
    let shared = Arc::new(Shared {
        streams: AtomicUsize::new(0),
        dead: AtomicBool::new(false),
        idle_since_ms: AtomicU64::new(worker::now_ms()),
    });
    let driver = Driver {
        shared: shared.clone(),
        keepalive: cfg.keepalive_interval.map(|i| (i, cfg.keepalive_timeout)),
        label: label.to_owned(),
    };
    tokio::spawn(async move {
        driver.run(conn).await;
        drop(guard);
    });
    Ok(H2Conn { send, shared })
}

/// Drives one connection: frames both ways, and the PING keep-alive.
struct Driver {
    shared: Arc<Shared>,
    keepalive: Option<(Duration, Duration)>,
    label: String,
}

impl Driver {
    async fn run<T>(self, mut conn: h2::client::Connection<T, Bytes>)
    where
        T: AsyncRead + AsyncWrite + Unpin,
    {
        let ended = match (self.keepalive, conn.ping_pong()) {
            (Some((interval, timeout)), Some(mut pings)) => {
                let mut tick =
                    tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        r = &mut conn => break r,
                        _ = tick.tick() => {}
                    }
                    // Only an idle connection is pinged: one with streams
                    // learns of a dead peer from their timeouts.
                    if self.shared.streams.load(Ordering::Relaxed) > 0 {
                        continue;
                    }
                    if let Err(e) = pings.send_ping(h2::Ping::opaque()) {
                        break Err(e);
                    }
                    let pong = std::future::poll_fn(|cx| pings.poll_pong(cx));
                    let pong = tokio::time::timeout(timeout, pong);
                    tokio::pin!(pong);
                    let answered = tokio::select! {
                        r = &mut conn => Err(r),
                        p = &mut pong => Ok(p),
                    };
                    match answered {
                        Err(r) => break r,
                        Ok(Ok(Ok(_))) => {}
                        Ok(Ok(Err(e))) => break Err(e),
                        Ok(Err(_)) => {
                            tracing::warn!(endpoint = %self.label, ?timeout, "HTTP/2 PING not answered: connection dropped");
                            self.shared.dead.store(true, Ordering::Relaxed);
                            return;
                        }
                    }
                }
            }
            _ => conn.await,
        };
        self.shared.dead.store(true, Ordering::Relaxed);
        match ended {
            Ok(()) => tracing::debug!(endpoint = %self.label, "HTTP/2 upstream connection closed"),
            Err(e) if e.is_go_away() && e.reason() == Some(Reason::NO_ERROR) => {
                tracing::debug!(endpoint = %self.label, "HTTP/2 upstream connection closed by GOAWAY")
            }
            Err(e) => {
                tracing::warn!(endpoint = %self.label, error = %e, "HTTP/2 upstream connection failed")
            }
        }
    }
}

/// How a request on a stream failed.
#[derive(Debug)]
pub enum H2Failure {
    /// The upstream says it never processed the request (the stream was
    /// refused, or it is above a GOAWAY's last stream id, or the
    /// connection could take no new stream): it may go again anywhere.
    /// The request comes back when it can be sent again.
    Unprocessed {
        req: Option<Box<Request<RequestBody>>>,
        error: h2::Error,
    },
    /// The stream failed after the upstream may have acted on it.
    Failed(h2::Error),
    /// The client's body failed (too large, broken) before the head.
    Body(BoxError),
}

/// An HTTP/2 failure as the log and the client's error say it: h2's own
/// words, with what a local protocol error on a stream most likely was
/// (h2 tells which only in its debug log).
#[derive(Debug)]
pub struct H2Error(pub h2::Error);

impl std::fmt::Display for H2Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        if !self.0.is_remote() && self.0.reason() == Some(Reason::PROTOCOL_ERROR) {
            f.write_str(
                " (the response broke HTTP/2: a header block over `max_header_list_size`, \
                 a field HTTP/2 forbids, or a malformed frame)",
            )?;
        }
        Ok(())
    }
}

impl std::error::Error for H2Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

/// Whether a stream's error says the upstream never processed it.
fn unprocessed(e: &h2::Error) -> bool {
    e.is_remote() && (e.reason() == Some(Reason::REFUSED_STREAM) || e.is_go_away())
}

/// Sends `req` on `stream` and waits for the response head. `scheme` is
/// the `:scheme` the upstream is told; `keep` keeps a copy of the head
/// for a replay after a refusal (when a retry is possible at all).
pub async fn send(
    stream: Stream,
    req: Request<RequestBody>,
    scheme: &Scheme,
    fallback_authority: &str,
    keep: bool,
) -> Result<Response<RecvBody>, H2Failure> {
    let Stream { mut send, slot } = stream;
    let (mut parts, body) = req.into_parts();
    let kept = keep.then(|| RequestHead::of(&parts));
    let head = match to_h2_head(&mut parts, scheme, fallback_authority) {
        Ok(h) => h,
        Err(e) => return Err(H2Failure::Body(e)),
    };
    let end = body.is_end_stream();
    let (response, send_stream) = match send.send_request(head, end) {
        Ok(pair) => pair,
        Err(error) => {
            // No stream was opened, so nothing left. A refusal of the head
            // itself (h2's user errors: no reason, no I/O) is final and
            // says nothing of the connection; anything else means the
            // connection is gone.
            if error.reason().is_none() && !error.is_io() {
                return Err(H2Failure::Failed(error));
            }
            slot.0.dead.store(true, Ordering::Relaxed);
            let req = kept.map(|h| Box::new(h.request(body)));
            return Err(H2Failure::Unprocessed { req, error });
        }
    };
    let mut pump = (!end).then(|| Pump::new(body, send_stream, keep));
    let mut response = response;
    let head = std::future::poll_fn(|cx| {
        if let Some(p) = pump.as_mut() {
            match p.poll_send(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(PumpError::Client(e))) => return Poll::Ready(Err(Ok(e))),
                // The stream broke: the response says how.
                Poll::Ready(Err(PumpError::Stream(_))) | Poll::Pending => {}
            }
        }
        Pin::new(&mut response).poll(cx).map_err(Err)
    })
    .await;
    match head {
        Ok(resp) => {
            if let Some(mut p) = pump.take()
                && !p.finished()
            {
                // Still uploading (a streaming or bidirectional call): the
                // rest goes on in a task of its own, without a copy.
                p.kept = None;
                tokio::spawn(p);
            }
            let (rparts, recv) = resp.into_parts();
            Ok(Response::from_parts(
                rparts,
                RecvBody {
                    recv,
                    slot: Some(slot),
                    data_done: false,
                    done: false,
                },
            ))
        }
        Err(Ok(client)) => Err(H2Failure::Body(client)),
        Err(Err(error)) => {
            // The connection is going away: no later request may pick it
            // (h2 refuses new streams on it, but only once asked).
            if error.is_go_away() {
                slot.0.dead.store(true, Ordering::Relaxed);
            }
            if unprocessed(&error) {
                let replay = match pump {
                    None => Some(RequestBody::Empty),
                    Some(p) => p.into_replay(),
                };
                let req = kept.zip(replay).map(|(h, b)| Box::new(h.request(b)));
                Err(H2Failure::Unprocessed { req, error })
            } else {
                Err(H2Failure::Failed(error))
            }
        }
    }
}

/// The request head as HTTP/2 sends it: `:scheme` and `:authority` (from
/// `Host`, which is then dropped) in the target, and no field that
/// HTTP/2 forbids (RFC 9113 section 8.2.2; `TE` only as `trailers`).
fn to_h2_head(
    parts: &mut Parts,
    scheme: &Scheme,
    fallback_authority: &str,
) -> Result<Request<()>, BoxError> {
    let h = &mut parts.headers;
    h.remove(header::TRANSFER_ENCODING);
    h.remove(header::CONNECTION);
    if h.get(header::TE).is_some_and(|v| v != "trailers") {
        h.remove(header::TE);
    }
    let authority = match h.remove(header::HOST) {
        Some(host) => Authority::from_maybe_shared(Bytes::copy_from_slice(host.as_bytes()))?,
        None => {
            Authority::from_maybe_shared(Bytes::copy_from_slice(fallback_authority.as_bytes()))?
        }
    };
    let mut target = std::mem::take(&mut parts.uri).into_parts();
    target.scheme = Some(scheme.clone());
    target.authority = Some(authority);
    if target.path_and_query.is_none() {
        target.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
    }
    let mut head = Request::new(());
    *head.method_mut() = std::mem::take(&mut parts.method);
    *head.uri_mut() = Uri::from_parts(target)?;
    *head.headers_mut() = std::mem::take(&mut parts.headers);
    Ok(head)
}

enum PumpError {
    /// The client's body failed: too large, broken off, bad framing.
    Client(BoxError),
    /// The stream was reset or the connection failed.
    Stream(h2::Error),
}

/// Moves the client's body onto the stream under HTTP/2 flow control:
/// a frame is read from the client only once the stream has window for
/// it, so an upstream that reads slowly holds back the client (at most
/// one frame is buffered).
struct Pump {
    body: RequestBody,
    stream: SendStream<Bytes>,
    /// What was sent, while it is small enough to send again.
    kept: Option<VecDeque<Frame<Bytes>>>,
    kept_bytes: usize,
    state: PumpState,
}

#[derive(PartialEq, Eq)]
enum PumpState {
    Sending,
    Done,
    Failed,
}

impl Pump {
    fn new(body: RequestBody, stream: SendStream<Bytes>, keep: bool) -> Pump {
        Pump {
            body,
            stream,
            kept: keep.then(VecDeque::new),
            kept_bytes: 0,
            state: PumpState::Sending,
        }
    }

    fn finished(&self) -> bool {
        self.state != PumpState::Sending
    }

    fn keep(&mut self, frame: &Frame<Bytes>) {
        let Some(kept) = &mut self.kept else { return };
        let copy = if let Some(d) = frame.data_ref() {
            self.kept_bytes += d.len();
            Frame::data(d.clone())
        } else if let Some(t) = frame.trailers_ref() {
            Frame::trailers(t.clone())
        } else {
            return;
        };
        if self.kept_bytes > MAX_REPLAY_BYTES {
            self.kept = None;
        } else {
            kept.push_back(copy);
        }
    }

    /// The body to send again after a refusal: what was sent, then the
    /// rest; none when too much was sent to have kept it.
    fn into_replay(self) -> Option<RequestBody> {
        let kept = self.kept?;
        Some(RequestBody::replayed(kept, self.body))
    }

    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), PumpError>> {
        loop {
            if self.state != PumpState::Sending {
                return Poll::Ready(Ok(()));
            }
            // Room for at least a byte before reading more from the client.
            self.stream.reserve_capacity(1);
            if self.stream.capacity() == 0 {
                match ready!(self.stream.poll_capacity(cx)) {
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => return self.fail(PumpError::Stream(e)),
                    None => {
                        // The stream is closed: nothing more can be sent.
                        self.state = PumpState::Failed;
                        return Poll::Ready(Ok(()));
                    }
                }
            }
            let frame = match Pin::new(&mut self.body).poll_frame(cx) {
                Poll::Pending => {
                    // Learn of a reset while the client is quiet.
                    if let Poll::Ready(r) = self.stream.poll_reset(cx) {
                        self.state = PumpState::Failed;
                        return Poll::Ready(match r {
                            Ok(_) => Ok(()),
                            Err(e) => Err(PumpError::Stream(e)),
                        });
                    }
                    return Poll::Pending;
                }
                Poll::Ready(f) => f,
            };
            match frame {
                None => {
                    if let Err(e) = self.stream.send_data(Bytes::new(), true) {
                        return self.fail(PumpError::Stream(e));
                    }
                    self.state = PumpState::Done;
                }
                Some(Err(e)) => {
                    self.stream.send_reset(Reason::CANCEL);
                    return self.fail(PumpError::Client(e));
                }
                Some(Ok(frame)) => {
                    self.keep(&frame);
                    let end = self.body.is_end_stream();
                    let sent = match frame.into_data() {
                        Ok(data) => self.stream.send_data(data, end),
                        Err(frame) => match frame.into_trailers() {
                            Ok(t) => {
                                self.state = PumpState::Done;
                                self.stream.send_trailers(t)
                            }
                            Err(_) => Ok(()),
                        },
                    };
                    if let Err(e) = sent {
                        return self.fail(PumpError::Stream(e));
                    }
                    if end {
                        self.state = PumpState::Done;
                    }
                }
            }
        }
    }

    fn fail(&mut self, e: PumpError) -> Poll<Result<(), PumpError>> {
        self.state = PumpState::Failed;
        Poll::Ready(Err(e))
    }
}

/// The rest of an upload after the response head, in a task of its own.
impl Future for Pump {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        match ready!(this.poll_send(cx)) {
            Ok(()) => {}
            Err(PumpError::Client(e)) => {
                tracing::debug!(error = %e, "request body broke off after the response head")
            }
            Err(PumpError::Stream(e)) => {
                tracing::debug!(error = %e, "upstream stream ended before the request body")
            }
        }
        Poll::Ready(())
    }
}

/// A response body received over HTTP/2: each frame's bytes are given back
/// to flow control as the client takes them, then the trailers.
pub struct RecvBody {
    recv: RecvStream,
    /// The stream's place on its connection, given back at the end.
    slot: Option<StreamSlot>,
    data_done: bool,
    done: bool,
}

impl std::fmt::Debug for RecvBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvBody").finish_non_exhaustive()
    }
}

impl RecvBody {
    fn end(&mut self) {
        self.done = true;
        self.slot = None;
    }
}

impl Body for RecvBody {
    type Data = Bytes;
    type Error = h2::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, h2::Error>>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        if !this.data_done {
            match ready!(this.recv.poll_data(cx)) {
                Some(Ok(data)) => {
                    // Released as it leaves: the window refills only as
                    // fast as the client reads.
                    let _ = this.recv.flow_control().release_capacity(data.len());
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Some(Err(e)) => {
                    this.end();
                    return Poll::Ready(Some(Err(e)));
                }
                None => this.data_done = true,
            }
        }
        let trailers = ready!(this.recv.poll_trailers(cx));
        this.end();
        Poll::Ready(match trailers {
            Ok(Some(t)) => Some(Ok(Frame::trailers(t))),
            Ok(None) => None,
            Err(e) => Some(Err(e)),
        })
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.recv.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_head_takes_host_as_authority_and_drops_what_http2_forbids() {
        let req = Request::post("/svc/Method")
            .header("host", "api.example")
            .header("te", "trailers")
            .header("transfer-encoding", "chunked")
            .header("connection", "te")
            .header("x-kept", "1")
            .body(())
            .unwrap();
        let (mut parts, ()) = req.into_parts();
        let head = to_h2_head(&mut parts, &Scheme::HTTP, "10.0.0.1:80").unwrap();
        assert_eq!(head.uri().to_string(), "http://api.example/svc/Method");
        assert_eq!(head.method(), http::Method::POST);
        assert_eq!(head.headers()["te"], "trailers");
        assert!(!head.headers().contains_key("transfer-encoding"));
        assert!(!head.headers().contains_key("connection"));
        assert!(!head.headers().contains_key("host"));
        assert_eq!(head.headers()["x-kept"], "1");

        let req = Request::get("/").header("te", "gzip").body(()).unwrap();
        let (mut parts, ()) = req.into_parts();
        let head = to_h2_head(&mut parts, &Scheme::HTTPS, "up.example:8443").unwrap();
        assert_eq!(head.uri().to_string(), "https://up.example:8443/");
        assert!(!head.headers().contains_key("te"));
    }
}
