//! Listening sockets and client connections: one `SO_REUSEPORT` socket per
//! worker and listener, the accept loop with the listener's connection
//! limit (and, on a TLS listener, its bound on handshakes under way), and
//! each connection's life: the TLS handshake (`tls::accept`) on a TLS
//! listener, then HTTP/2 through hyper (ALPN `h2`, or the h2c preface) or
//! HTTP/1.1 through Weir's own connection ([`h1`]), the header read and
//! idle timeouts, and graceful drain on shutdown; and what the listener's
//! metrics count of all that (accepts, waits at the connection limit,
//! timeouts, the heads refused before a request reaches the pipeline) and
//! read from it ([`ListenerProbe`]). What happens to a request is
//! `proxy`'s job.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use arc_swap::ArcSwap;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

use crate::config::ListenerConfig;
use crate::conn::{ConnContext, TlsConn};
use crate::metrics::ListenerStats;
use crate::metrics::listener::{ListenerProbe, Timeout, TlsHandshakes};
use crate::proxy::stall::StreamExec;
use crate::proxy::{self, Counted};
use crate::router::Router;
use crate::tls::{self, TlsListener};
use crate::worker;

mod h1;

/// HTTP/2 streams one client connection may have open at once.
pub const MAX_CONCURRENT_STREAMS: u32 = 100;
/// Pending connections the kernel queues per socket before accept.
const BACKLOG: i32 = 1024;

/// A listener's sockets, one per worker, all bound to the same address.
#[derive(Debug)]
pub struct Bound {
    pub config: Arc<ListenerConfig>,
    pub local_addr: SocketAddr,
    pub sockets: Vec<std::net::TcpListener>,
}

/// Binds `workers` sockets to the listener's address. With port 0, the
/// first socket picks the port and the others join it.
pub fn bind(config: &ListenerConfig, workers: usize) -> io::Result<Bound> {
    let mut sockets = Vec::with_capacity(workers);
    let mut addr = config.address;
    for _ in 0..workers.max(1) {
        let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        s.set_reuse_address(true)?;
        s.set_reuse_port(true)?;
        s.set_tcp_nodelay(true)?;
        s.set_nonblocking(true)?;
        s.bind(&addr.into())?;
        s.listen(BACKLOG)?;
        let l: std::net::TcpListener = s.into();
        addr = l.local_addr()?;
        sockets.push(l);
    }
    Ok(Bound {
        config: Arc::new(config.clone()),
        local_addr: addr,
        sockets,
    })
}

/// State all connections of one listener share, across workers.
#[derive(Debug)]
pub struct Shared {
    pub config: Arc<ListenerConfig>,
    pub router: Arc<ArcSwap<Router>>,
    pub observe: Arc<crate::conn::Observe>,
    /// One permit per open connection: `max_connections` bounds them.
    pub connections: Arc<Semaphore>,
    /// Open connections, for the drain at shutdown.
    pub open: Arc<AtomicUsize>,
    /// The TLS state of a TLS listener.
    pub tls: Option<Arc<TlsListener>>,
}

fn http_builder(cfg: &ListenerConfig) -> auto::Builder<StreamExec> {
    // HTTP/2 streams run as tasks of their own, each watched for a client
    // that stops reading it (`proxy::stall`).
    let mut b = auto::Builder::new(StreamExec {
        send_timeout: cfg.send_timeout,
    });
    b.http1()
        .timer(TokioTimer::new())
        // hyper's own header timer would be armed (a boxed sleep, a timer
        // registration) for every request head; the listener's watchdog
        // already enforces both the header read and the idle limit, so it
        // is off.
        .header_read_timeout(None)
        .max_buf_size(cfg.max_header_bytes)
        .max_headers(cfg.max_headers)
        .keep_alive(true);
    b.http2()
        .timer(TokioTimer::new())
        .max_header_list_size(cfg.max_header_bytes as u32)
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS);
    b
}

/// Accepts connections on one worker's socket until shutdown.
pub async fn accept_loop(
    socket: std::net::TcpListener,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let listener = match TcpListener::from_std(socket) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(listener = %shared.config.name, error = %e, "cannot register listener");
            return;
        }
    };
    let builder = Arc::new(http_builder(&shared.config));
    let drains = Arc::new(Drains::default());
    let stats = crate::metrics::global().listener(&shared.config.name);
    stats.show(Arc::<Shared>::downgrade(&shared));
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(pair) => pair,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(listener = %shared.config.name, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        stats.accepted();
        // Then a connection slot: at the limit each worker holds at most
        // this one accepted connection and the rest wait in the kernel's
        // backlog. (Taken before accepting, a freed slot could go to a
        // worker whose own socket, SO_REUSEPORT, has nobody waiting, while
        // a client waits in another worker's backlog.)
        let permit = match shared.connections.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                stats.limited();
                tokio::select! {
                    p = shared.connections.clone().acquire_owned() => p.expect("semaphore never closed"),
                    _ = shutdown.changed() => break,
                }
            }
        };
        // And on a TLS listener a handshake slot, for the same reason:
        // beyond `max_handshakes` connections wait in the backlog.
        let handshake_slot = match &shared.tls {
            None => None,
            Some(tls) => tokio::select! {
                p = tls.handshakes.clone().acquire_owned() => Some(p.expect("semaphore never closed")),
                _ = shutdown.changed() => break,
            },
        };
        let _ = stream.set_nodelay(true);
        // Counted before the task starts, so a drain that begins now waits
        // for it; given back when the task ends, even by unwinding.
        let open = Counted::enter(shared.open.clone());
        if shared.tls.is_none() {
            // Everything the connection's task needs is made here, so the
            // task holds each once: what a task is spawned with stays in
            // it for its whole life, beside whatever is made of it.
            let cx = context(&shared, peer, None, stats.clone());
            let enrolled = drains.enroll(&cx);
            let io = ActivityIo {
                inner: stream,
                cx: cx.clone(),
                h2: false,
            };
            let conn = h1::conn(io, &cx);
            let builder = builder.clone();
            tokio::spawn(async move {
                serve_h1(&conn, &cx, &builder).await;
                // The socket closes before the connection's slot and
                // count are given back.
                drop(conn);
                drop((enrolled, open, permit));
            });
        } else {
            let (shared, builder, stats, drains) = (
                shared.clone(),
                builder.clone(),
                stats.clone(),
                drains.clone(),
            );
            tokio::spawn(async move {
                // Boxed: a TLS connection's state (the handshake, the
                // rustls stream its futures hold) is several KiB, and
                // inline it would size every connection's task, plain
                // ones included, for their whole life.
                let tls = serve_tls(
                    stream,
                    peer,
                    &shared,
                    &builder,
                    stats,
                    &drains,
                    handshake_slot,
                );
                Box::pin(tls).await;
                drop((open, permit));
            });
        }
    }
    // Connections started from here are asked to finish the request under
    // way and close.
    drains.start();
}

/// A new connection's context: who it is, and what its listener shares.
fn context(
    shared: &Shared,
    peer: SocketAddr,
    tls: Option<TlsConn>,
    stats: Arc<ListenerStats>,
) -> Arc<ConnContext> {
    Arc::new(ConnContext::new(
        peer,
        crate::proxy::headers::peer_value(peer.ip()),
        shared.config.clone(),
        shared.router.clone(),
        shared.observe.clone(),
        tls.map(Box::new),
        stats,
    ))
}

/// The connections one accept loop started that are still open, so that
/// shutdown can ask each to drain ([`crate::conn::DrainSignal`]).
#[derive(Default)]
struct Drains(std::sync::Mutex<DrainList>);

#[derive(Default)]
struct DrainList {
    conns: slab::Slab<Arc<ConnContext>>,
    /// Shutdown began: a connection enrolled now is asked at once.
    started: bool,
}

impl Drains {
    fn lock(&self) -> std::sync::MutexGuard<'_, DrainList> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a connection; it leaves the list when the guard drops.
    fn enroll(self: &Arc<Self>, cx: &Arc<ConnContext>) -> Enrolled {
        let mut list = self.lock();
        if list.started {
            cx.drain.ask();
        }
        let key = list.conns.insert(cx.clone());
        Enrolled {
            drains: self.clone(),
            key,
        }
    }

    /// Shutdown began: asks every open connection to drain.
    fn start(&self) {
        let mut list = self.lock();
        list.started = true;
        for (_, cx) in &list.conns {
            cx.drain.ask();
        }
    }
}

/// A connection's place in its accept loop's [`Drains`].
struct Enrolled {
    drains: Arc<Drains>,
    key: usize,
}

impl Drop for Enrolled {
    fn drop(&mut self) {
        self.drains.lock().conns.try_remove(self.key);
    }
}

/// A connection on a TLS listener: the handshake (which gives the
/// handshake slot back when it ends), then HTTP/2 if ALPN chose it, else
/// HTTP/1.1.
async fn serve_tls(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    shared: &Shared,
    builder: &auto::Builder<StreamExec>,
    stats: Arc<ListenerStats>,
    drains: &Arc<Drains>,
    slot: Option<tokio::sync::OwnedSemaphorePermit>,
) {
    let Some(tls) = &shared.tls else {
        return;
    };
    // Boxed apart: the handshake's state is not kept beside the
    // connection's once it is done.
    let Some((stream, conn)) = Box::pin(handshake(stream, peer, tls, slot)).await else {
        return;
    };
    let h2 = conn.session.h2;
    let cx = context(shared, peer, Some(conn), stats);
    let _enrolled = drains.enroll(&cx);
    let io = ActivityIo {
        inner: stream,
        cx: cx.clone(),
        h2,
    };
    if h2 {
        serve_h2(io, &cx, builder).await;
    } else {
        serve_h1(&h1::conn(io, &cx), &cx, builder).await;
    }
}

/// The TLS handshake of a connection on a TLS listener, with the
/// listener's serving certificates and timeout; gives the handshake slot
/// back when it ends. `None`: it failed (counted and logged by `tls`).
async fn handshake(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    tls: &TlsListener,
    slot: Option<tokio::sync::OwnedSemaphorePermit>,
) -> Option<(
    tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
    TlsConn,
)> {
    let current = tls.current.load_full();
    let timeout = tls.settings().handshake_timeout;
    let done = tls::accept::handshake(stream, &current, timeout, &tls.stats).await;
    drop(slot);
    match done {
        Ok((stream, session)) => Some((
            stream,
            TlsConn {
                session,
                forward_header: current.forward_header.clone(),
            },
        )),
        Err(why) => {
            tracing::debug!(%peer, listener = tls.name(), reason = why.as_str(), "TLS handshake failed");
            None
        }
    }
}

/// Serves HTTP/1.1 on `conn` (Weir's own connection, [`h1`]) until it
/// ends or the watchdog or a drain closes it; then HTTP/2 through hyper if
/// it opened with HTTP/2's preface, or the tunnel of an upgrade.
async fn serve_h1<S>(conn: &h1::Lock<S>, cx: &Arc<ConnContext>, builder: &auto::Builder<StreamExec>)
where
    S: AsyncRead + AsyncWrite + h1::ReadReady + Unpin + Send + 'static,
{
    // The connection reads the drain signal itself (it closes once the
    // request under way is answered); between requests it closes at once.
    let ended = Supervise::new(h1::serve(conn, cx), cx, |_, cx| cx.h1.is_idle()).await;
    // A plain connection that opened with HTTP/2's preface. This and the
    // tunnel are boxed: rare, and inline they would size every
    // connection's task.
    let ended = match cx.h1.take_h2() {
        Some(h2c) if ended => Box::pin(serve_h2(h2c, cx, builder)).await,
        _ => ended,
    };
    if ended {
        let tunnel = cx.tunnel.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(tunnel) = tunnel {
            Box::pin(watch_tunnel(tunnel, cx, cx.peer)).await;
        }
    }
}

/// Serves HTTP/2 on `io` with hyper until the connection ends (true) or
/// the watchdog or a drain closes it. hyper's connection is boxed: it is
/// large, and only HTTP/2 connections should carry it.
async fn serve_h2<I>(io: I, cx: &Arc<ConnContext>, builder: &auto::Builder<StreamExec>) -> bool
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let svc_cx = cx.clone();
    let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
        let handled = proxy::handle(svc_cx.clone(), req.map(crate::body::ClientBody::Hyper));
        async move {
            let mut resp = handled.await?;
            // hyper writes the map (no response for it keeps its fields
            // as received, but one that did would lose none).
            if let Some(raw) = resp.body_mut().take_raw_head() {
                raw.into_map(resp.headers_mut());
            }
            if let Some(id) = resp.body_mut().take_id() {
                resp.headers_mut()
                    .insert(proxy::headers::X_REQUEST_ID.clone(), id);
            }
            Ok::<_, std::convert::Infallible>(resp)
        }
    });
    let conn = Box::pin(builder.serve_connection_with_upgrades(TokioIo::new(io), svc));
    Supervise::new(conn, cx, |c, _| {
        c.get_mut().as_mut().graceful_shutdown();
        false
    })
    .await
}

pin_project_lite::pin_project! {
    /// Drives a client connection until it ends (`true`) or the watchdog
    /// or a drain closes it (`false`). `drain` starts the connection's
    /// graceful shutdown and says whether it can close at once.
    ///
    /// Written by hand rather than as an `async fn`: it is most of an idle
    /// connection's task, and holds only the connection, one timer and a
    /// few clocks. The timer and the drain signal wake the task when they
    /// fire; polling them on every other wake (every read and response)
    /// would only register the same waker again. So each is polled once,
    /// which registers it, and after that only when its state says it
    /// fired. (A timer poll made without coop budget left registers
    /// nothing, so it does not count.)
    struct Supervise<'a, C, D> {
        #[pin]
        conn: C,
        #[pin]
        sleep: tokio::time::Sleep,
        cx: &'a ConnContext,
        drain: D,
        // The quiet deadline last seen (`Watchdog::quiet_deadline`), and
        // when the timer is set to fire.
        due: u64,
        armed: u64,
        sleep_armed: bool,
        draining: bool,
        drain_registered: bool,
    }
}

impl<'a, C, D, E> Supervise<'a, C, D>
where
    C: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
    D: FnMut(Pin<&mut C>, &ConnContext) -> bool,
{
    fn new(conn: C, cx: &'a ConnContext, drain: D) -> Self {
        let (due, armed) = plan(cx);
        Supervise {
            conn,
            sleep: tokio::time::sleep(wait_until(armed)),
            cx,
            drain,
            due,
            armed,
            sleep_armed: false,
            draining: false,
            drain_registered: false,
        }
    }
}

/// When the connection counts as quiet enough to close, and when to look
/// next (see [`crate::conn::Watchdog`]).
fn plan(cx: &ConnContext) -> (u64, u64) {
    let dog = &cx.watchdog;
    let due = dog.quiet_deadline();
    let now = worker::now_ms();
    let mut armed = due;
    if due <= now && cx.busy() {
        // Past the deadline with a request under way (a slow upstream, a
        // long poll): only the request's end can make the connection
        // closable, so look again a while later rather than every 1 ms.
        armed = now + dog.idle_ms.min(dog.head_ms);
    }
    if let Some(stall) = dog.send_stall() {
        armed = armed.min(stall);
    }
    (due, armed)
}

impl<C, D, E> Future for Supervise<'_, C, D>
where
    C: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
    D: FnMut(Pin<&mut C>, &ConnContext) -> bool,
{
    type Output = bool;

    fn poll(self: Pin<&mut Self>, task: &mut Context<'_>) -> Poll<bool> {
        let mut this = self.project();
        let cx = *this.cx;
        let dog = &cx.watchdog;
        loop {
            // The connection first: it is what wakes this task nearly
            // every time.
            if let Poll::Ready(r) = this.conn.as_mut().poll(task) {
                if let Err(e) = r {
                    tracing::debug!(peer = %cx.peer, error = %e, "client connection ended with an error");
                }
                return Poll::Ready(true);
            }
            if !*this.draining && cx.drain.poll_asked(this.drain_registered, task) {
                *this.draining = true;
                if (this.drain)(this.conn.as_mut(), cx) {
                    return Poll::Ready(false);
                }
                // The connection is polled again: draining may end it.
                continue;
            }
            // The deadline can move closer while the timer waits: a
            // request head starts on a quiet keep-alive connection (its
            // clock is the shorter header timeout), or a new connection's
            // first answer goes out and `idle_timeout` is shorter than
            // `header_read_timeout`. Both happen inside the connection's
            // poll above. Compared with the deadline last seen, not with
            // the timer: a timer set later than a deadline already past
            // stays so.
            let now_due = dog.quiet_deadline();
            let mut closer = *this.armed;
            if now_due < *this.due {
                *this.due = now_due;
                closer = now_due;
            }
            if let Some(stall) = dog.send_stall() {
                closer = closer.min(stall);
            }
            if closer < *this.armed {
                *this.armed = closer;
                this.sleep
                    .as_mut()
                    .reset(tokio::time::Instant::now() + wait_until(closer));
                *this.sleep_armed = false;
            }
            if *this.sleep_armed && !this.sleep.is_elapsed() {
                return Poll::Pending;
            }
            *this.sleep_armed = tokio::task::coop::has_budget_remaining();
            if this.sleep.as_mut().poll(task).is_pending() {
                return Poll::Pending;
            }
            let now = worker::now_ms();
            if now >= dog.quiet_deadline() && !cx.busy() {
                tracing::debug!(peer = %cx.peer, "closing quiet client connection");
                cx.stats.timed_out(dog.quiet_timeout());
                return Poll::Ready(false);
            }
            if dog.send_stall().is_some_and(|stall| now >= stall) {
                tracing::debug!(peer = %cx.peer, "closing client connection: it read nothing for send_timeout");
                cx.stats.timed_out(Timeout::Send);
                return Poll::Ready(false);
            }
            let (due, armed) = plan(cx);
            *this.due = due;
            *this.armed = armed;
            this.sleep
                .as_mut()
                .reset(tokio::time::Instant::now() + wait_until(armed));
            *this.sleep_armed = false;
        }
    }
}

/// Waits for an upgraded connection's tunnel to end, and ends it at the
/// watchdog's tunnel deadline ([`crate::conn::Watchdog::tunnel_deadline`]).
async fn watch_tunnel(mut tunnel: tokio::task::JoinHandle<()>, cx: &ConnContext, peer: SocketAddr) {
    let dog = &cx.watchdog;
    loop {
        // A write can block at any time in the tunnel's own task, which
        // does not wake this one: look again within `send_timeout`, so a
        // stall is seen before its deadline.
        let at = dog.tunnel_deadline().min(worker::now_ms() + dog.send_ms);
        tokio::select! {
            _ = &mut tunnel => return,
            () = tokio::time::sleep(wait_until(at)) => {
                let now = worker::now_ms();
                if now >= dog.tunnel_deadline() {
                    tracing::debug!(%peer, "closing idle or unread upgraded connection");
                    let stalled = dog.send_stall().is_some_and(|stall| now >= stall);
                    cx.stats.timed_out(if stalled { Timeout::Send } else { Timeout::Idle });
                    tunnel.abort();
                    return;
                }
            }
        }
    }
}

/// How long from now until `at` (ms on [`worker::now_ms`]'s clock), at
/// least 1 ms.
fn wait_until(at: u64) -> Duration {
    Duration::from_millis(at.saturating_sub(worker::now_ms()).max(1))
}

/// What a scrape reads from a listener: its `max_connections` slots in
/// use, and a TLS listener's handshake counts (the ones `/admin/tls`
/// shows).
impl ListenerProbe for Shared {
    fn open_connections(&self) -> u64 {
        self.config
            .max_connections
            .saturating_sub(self.connections.available_permits()) as u64
    }

    fn tls_handshakes(&self) -> Option<TlsHandshakes> {
        let stats = &self.tls.as_ref()?.stats;
        let n = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        let f = &stats.failed;
        Some(TlsHandshakes {
            full: n(&stats.full),
            resumed: n(&stats.resumed),
            failed: vec![
                ("timeout", n(&f.timeout)),
                ("not_tls", n(&f.not_tls)),
                ("version", n(&f.version)),
                ("unknown_sni", n(&f.unknown_sni)),
                ("client_cert", n(&f.client_cert)),
                ("closed", n(&f.closed)),
                ("other", n(&f.other)),
            ],
        })
    }
}

/// The client socket, stamping the connection's last activity on every
/// successful read or write so the idle timeout sees real traffic. On an
/// HTTP/2 connection every read also counts as speaking outside a head
/// (HTTP/2 heads have no clock of their own); Weir's HTTP/1.1 connection
/// (`h1`) tells the watchdog itself when a head is under way.
struct ActivityIo<S> {
    inner: S,
    cx: Arc<ConnContext>,
    h2: bool,
}

impl<S: AsyncRead + Unpin> AsyncRead for ActivityIo<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if r.is_ready() {
            self.cx.watchdog.touch();
            if self.h2 && buf.filled().len() > before {
                self.cx.watchdog.read(false);
            }
        }
        r
    }
}

impl<S: h1::ReadReady> h1::ReadReady for ActivityIo<S> {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.inner.poll_read_ready(cx)
    }

    fn now_http2(&mut self) {
        self.h2 = true;
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ActivityIo<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.cx.watchdog.wrote(r.is_ready());
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.cx.watchdog.wrote(r.is_ready());
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
