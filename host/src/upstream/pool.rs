//! Connections to one endpoint. Each worker thread has its own idle list,
//! so checking a connection out or in never contends with another thread
//! and a connection is always driven by the event loop of the thread that
//! uses it. Connections are opened with a connect timeout and TCP_NODELAY,
//! over TLS when the upstream has it (the handshake within the same
//! timeout, the request never sent to an endpoint whose certificate does
//! not verify). An HTTP/1.1 connection (Weir's own, `h1.rs`) carries one
//! request at a time and waits in the idle list between them, watched
//! there ([`watch`]) so a close by the endpoint closes it at once; HTTP/2
//! connections are shared by many streams (`http2.rs`). With `protocol =
//! "auto"` the first connection's ALPN decides which the endpoint gets,
//! and a later one that negotiates otherwise switches it. Every open
//! connection of an upstream holds one unit of its [`ConnCounter`], so the
//! upstream's `max_connections` bounds pooled and busy ones together, and
//! one of its endpoint's open count, which the metrics read.

use std::future::poll_fn;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use tokio::net::TcpStream;
use tokio_util::either::Either;

use super::counter::{ConnCounter, ConnSlot, LimitReached};
use super::h1::{Connection, Io};
use super::http2::{self, H2Conn, H2Pool};
use crate::config::{Http2Config, PoolConfig, Protocol};
use crate::metrics::EndpointStats;
use crate::worker;

/// A connection ready to carry one request: HTTP/1.1, or a stream on a
/// shared HTTP/2 connection.
#[derive(Debug)]
pub enum Checkout {
    H1(Connection),
    H2(http2::Stream),
}

/// A connection just opened, as ALPN (or the protocol) made it.
enum Opened {
    H1(Connection),
    H2(H2Conn),
}

/// TLS to one endpoint: the upstream's client settings and the name it
/// sends and verifies (none when the endpoint's host is not a valid name).
#[derive(Debug, Clone)]
pub struct EndpointTls {
    pub config: Arc<rustls::ClientConfig>,
    /// The same settings offering only `http/1.1`, for upgrades (WebSocket)
    /// on an upstream whose ALPN also offers `h2`.
    pub http1_config: Arc<rustls::ClientConfig>,
    pub name: Option<rustls_pki_types::ServerName<'static>>,
}

/// Why no connection could be had.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("connect timed out after {0:?}")]
    Timeout(Duration),
    #[error("connect failed: {0}")]
    Io(#[from] std::io::Error),
    /// The TLS handshake failed: the certificate did not verify, no
    /// protocol or cipher in common, the endpoint closed.
    #[error("TLS handshake failed: {0}")]
    Tls(std::io::Error),
    #[error("HTTP/2 handshake failed: {0}")]
    Http2(#[from] h2::Error),
    /// `protocol = "h2"` and the endpoint's ALPN did not pick `h2`.
    #[error("the endpoint did not agree to HTTP/2 by ALPN (it offered {0})")]
    NoH2(String),
    /// An upgrade (WebSocket) needs HTTP/1.1; the upstream speaks HTTP/2.
    #[error("upgrades need HTTP/1.1 and this upstream speaks HTTP/2 (`protocol = \"{0}\"`)")]
    UpgradeOverH2(&'static str),
    /// Not a failure of the endpoint: the upstream's `max_connections`
    /// are all open.
    #[error("the upstream's limit of {limit} open connections is reached")]
    LimitReached { limit: usize },
}

impl From<LimitReached> for ConnectError {
    fn from(e: LimitReached) -> ConnectError {
        ConnectError::LimitReached { limit: e.limit }
    }
}

/// What `auto` learnt of an endpoint from its last connection's ALPN.
const LEARNT_NOTHING: u8 = 0;
const LEARNT_H1: u8 = 1;
const LEARNT_H2: u8 = 2;

#[derive(Debug)]
pub(super) struct EndpointPool {
    idle: Box<[Arc<Mutex<IdleList>>]>,
    cfg: PoolConfig,
    counter: ConnCounter,
    tls: Option<EndpointTls>,
    protocol: Protocol,
    /// HTTP/2 connections, when the protocol may be HTTP/2.
    h2: Option<H2Pool>,
    /// For `auto`: which protocol the endpoint picked last.
    learnt: AtomicU8,
    /// `host:port`, the `:authority` when a request has no `Host`.
    label: String,
    /// Connections open (or opening) to the endpoint, under the limit.
    open: Arc<AtomicUsize>,
    /// The endpoint's counts: new connections here, the rest by the
    /// endpoint and the proxy ([`super::Endpoint::stats`]).
    pub(super) stats: Arc<EndpointStats>,
}

impl EndpointPool {
    pub(super) fn new(
        workers: usize,
        cfg: &PoolConfig,
        counter: ConnCounter,
        protocol: Protocol,
        http2: &Arc<Http2Config>,
        label: &str,
        stats: Arc<EndpointStats>,
    ) -> EndpointPool {
        let lists = (0..workers.max(1))
            .map(|_| {
                Arc::new(Mutex::new(IdleList {
                    conns: Vec::with_capacity(cfg.max_idle.min(64)),
                    watcher: None,
                    spawned: false,
                }))
            })
            .collect();
        EndpointPool {
            idle: lists,
            cfg: cfg.clone(),
            counter,
            tls: None,
            protocol,
            h2: protocol
                .may_be_h2()
                .then(|| H2Pool::new(workers, http2.clone(), cfg.idle_timeout)),
            learnt: AtomicU8::new(LEARNT_NOTHING),
            label: label.to_owned(),
            open: Arc::default(),
            stats,
        }
    }

    /// Connections open or being opened to the endpoint, idle or busy
    /// (health check connections, outside the limit, excluded).
    pub(super) fn open_connections(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Idle connections: HTTP/1.1 ones in the idle lists (some may have
    /// expired or been closed by the endpoint, found out at their next
    /// use) and HTTP/2 ones without streams. Takes each worker's list
    /// lock briefly: for a metrics scrape, not the request path.
    pub(super) fn idle_connections(&self) -> usize {
        let h1: usize = self
            .idle
            .iter()
            .map(|l| l.lock().unwrap_or_else(|e| e.into_inner()).conns.len())
            .sum();
        h1 + self.h2.as_ref().map_or(0, H2Pool::idle)
    }

    pub(super) fn set_tls(&mut self, tls: Option<EndpointTls>) {
        self.tls = tls;
    }

    /// The `:scheme` requests to this endpoint carry over HTTP/2.
    pub(super) fn scheme(&self) -> &'static http::uri::Scheme {
        static HTTP: http::uri::Scheme = http::uri::Scheme::HTTP;
        static HTTPS: http::uri::Scheme = http::uri::Scheme::HTTPS;
        if self.tls.is_some() { &HTTPS } else { &HTTP }
    }

    /// A connection for one request: a stream on an HTTP/2 connection
    /// when the endpoint speaks it, else a pooled HTTP/1.1 connection.
    pub(super) async fn checkout(
        &self,
        addr: SocketAddr,
        connect_timeout: Duration,
        now: Instant,
    ) -> Result<Checkout, ConnectError> {
        match (self.protocol, self.learnt.load(Ordering::Relaxed)) {
            (Protocol::Http1, _) | (Protocol::Auto, LEARNT_H1) => self
                .checkout_h1(addr, connect_timeout, now)
                .await
                .map(Checkout::H1),
            _ => self.checkout_h2(addr, connect_timeout).await,
        }
    }

    async fn checkout_h2(
        &self,
        addr: SocketAddr,
        connect_timeout: Duration,
    ) -> Result<Checkout, ConnectError> {
        let Some(h2) = &self.h2 else {
            unreachable!("an endpoint that may speak HTTP/2 has its pool")
        };
        if let Some(s) = h2.take(false) {
            return Ok(Checkout::H2(s));
        }
        // Boxed: the rare path (a wait and a connect) would otherwise grow
        // every request's future.
        Box::pin(self.open_h2(h2, addr, connect_timeout)).await
    }

    /// Opens another HTTP/2 connection for a request that found none with
    /// room, one at a time per worker.
    async fn open_h2(
        &self,
        h2: &H2Pool,
        addr: SocketAddr,
        connect_timeout: Duration,
    ) -> Result<Checkout, ConnectError> {
        // Waiting for another request's connect counts toward this one's
        // connect timeout, so requests behind an endpoint that does not
        // answer fail together, not one connect timeout after another.
        let started = tokio::time::Instant::now();
        let _turn = tokio::time::timeout(connect_timeout, h2.opening())
            .await
            .map_err(|_| ConnectError::Timeout(connect_timeout))?;
        let connect_timeout = connect_timeout.saturating_sub(started.elapsed());
        // Another request may have opened one while this one waited.
        if let Some(s) = h2.take(false) {
            return Ok(Checkout::H2(s));
        }
        if h2.full()
            && let Some(s) = h2.take(true)
        {
            return Ok(Checkout::H2(s));
        }
        let slot = match self.counter.acquire(&self.open) {
            Ok(slot) => slot,
            // At the upstream's limit: queue on a busy connection if any.
            Err(e) => return h2.take(true).map(Checkout::H2).ok_or(e.into()),
        };
        let opened = self
            .open(addr, connect_timeout, self.h2_mode(h2), Some(slot))
            .await?;
        Ok(match opened {
            Opened::H2(conn) => {
                self.learnt.store(LEARNT_H2, Ordering::Relaxed);
                Checkout::H2(h2.add(conn))
            }
            Opened::H1(conn) => {
                self.learnt.store(LEARNT_H1, Ordering::Relaxed);
                Checkout::H1(conn)
            }
        })
    }

    /// How a connection that may be HTTP/2 is opened: by ALPN's choice
    /// for `auto`, HTTP/2 for the others.
    fn h2_mode<'a>(&self, h2: &'a H2Pool) -> Mode<'a> {
        match self.protocol {
            Protocol::Auto => Mode::Auto(&h2.cfg),
            _ => Mode::H2(&h2.cfg),
        }
    }

    /// Opens a connection, over TLS when the endpoint has it; `slot` is
    /// its unit of the upstream's `max_connections` (none outside the
    /// limit, for health checks).
    async fn open(
        &self,
        addr: SocketAddr,
        timeout: Duration,
        mode: Mode<'_>,
        slot: Option<ConnSlot>,
    ) -> Result<Opened, ConnectError> {
        let pooled = slot.is_some();
        let opened = connect(addr, timeout, mode, self.tls.as_ref(), slot, &self.label).await;
        if pooled && opened.is_ok() {
            self.stats.connection_opened();
        }
        opened
    }

    /// Opens an HTTP/1.1 connection. Boxed: opening is the rare path, and
    /// its future would otherwise make every checkout's (and request's)
    /// future big.
    async fn open_h1(
        &self,
        addr: SocketAddr,
        timeout: Duration,
        upgrades: bool,
        slot: ConnSlot,
    ) -> Result<Connection, ConnectError> {
        let mode = Mode::H1 { upgrades };
        match Box::pin(self.open(addr, timeout, mode, Some(slot))).await? {
            Opened::H1(conn) => Ok(conn),
            Opened::H2(_) => unreachable!("an HTTP/1.1 connection was asked for"),
        }
    }

    fn list(&self) -> &Arc<Mutex<IdleList>> {
        &self.idle[worker::id() % self.idle.len()]
    }

    async fn checkout_h1(
        &self,
        addr: SocketAddr,
        connect_timeout: Duration,
        now: Instant,
    ) -> Result<Connection, ConnectError> {
        let cfg = &self.cfg;
        loop {
            // Most recently used first: it is the least likely to have been
            // closed by the upstream's own idle timeout.
            let conn = self
                .list()
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .conns
                .pop();
            let Some(mut conn) = conn else { break };
            if now.saturating_duration_since(conn.idle_since()) < cfg.idle_timeout
                && conn.is_reusable()
            {
                return Ok(conn);
            }
        }
        let slot = self.counter.acquire(&self.open)?;
        self.open_h1(addr, connect_timeout, false, slot).await
    }

    /// A fresh connection outside the pool and its limit, for an active
    /// health check: HTTP/1.1 or HTTP/2 as the endpoint speaks.
    pub(super) async fn connect_unpooled(
        &self,
        addr: SocketAddr,
        timeout: Duration,
    ) -> Result<Checkout, ConnectError> {
        let mode = match &self.h2 {
            Some(h2) => self.h2_mode(h2),
            None => Mode::H1 { upgrades: false },
        };
        let opened = Box::pin(self.open(addr, timeout, mode, None)).await?;
        Ok(match opened {
            Opened::H1(c) => Checkout::H1(c),
            Opened::H2(c) => Checkout::H2(c.take()),
        })
    }

    /// A fresh connection that is never pooled, for protocol upgrades:
    /// always HTTP/1.1 (ALPN offers only `http/1.1`).
    pub(super) async fn connect_for_upgrade(
        &self,
        addr: SocketAddr,
        connect_timeout: Duration,
    ) -> Result<Connection, ConnectError> {
        if matches!(self.protocol, Protocol::H2c | Protocol::H2) {
            return Err(ConnectError::UpgradeOverH2(self.protocol.as_str()));
        }
        let slot = self.counter.acquire(&self.open)?;
        self.open_h1(addr, connect_timeout, true, slot).await
    }

    pub(super) fn put(&self, mut conn: Connection) {
        let cfg = &self.cfg;
        let now = Instant::now();
        conn.set_idle(now);
        let shared = self.list();
        let mut list = shared.lock().unwrap_or_else(|e| e.into_inner());
        if list.conns.len() < cfg.max_idle {
            match &list.watcher {
                // Watched from now on; one the endpoint has just closed is
                // dropped here.
                Some(w) => {
                    if conn.watch(w) {
                        list.conns.push(conn);
                    }
                }
                None => {
                    list.conns.push(conn);
                    if !list.spawned {
                        list.spawned = true;
                        tokio::spawn(watch(Arc::downgrade(shared)));
                    }
                }
            }
        }
        // Expire from the cold end so a burst does not leave sockets open
        // past the idle timeout for ever.
        let expired =
            |c: &Connection| now.saturating_duration_since(c.idle_since()) >= cfg.idle_timeout;
        if list.conns.first().is_some_and(expired) {
            list.conns.retain(|c| !expired(c));
        }
    }
}

impl Drop for EndpointPool {
    /// Lets each list's watcher see the pool is gone, and end.
    fn drop(&mut self) {
        for list in &self.idle {
            let watcher = list
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .watcher
                .take();
            if let Some(w) = watcher {
                w.wake();
            }
        }
    }
}

/// One worker's idle HTTP/1.1 connections to an endpoint.
#[derive(Debug)]
struct IdleList {
    /// Most recently used last.
    conns: Vec<Connection>,
    /// Wakes the list's watcher: registered on each idle connection's
    /// socket, so an endpoint closing one (or sending bytes nobody asked
    /// for) is seen while it sits here.
    watcher: Option<Waker>,
    /// The watcher task has been started (it lives as long as the pool).
    spawned: bool,
}

/// Watches a worker's idle connections to an endpoint and drops those the
/// endpoint closes, so they close on Weir's side too rather than wait,
/// half closed, for their next use or their idle timeout. One task per
/// endpoint and worker, woken only when an idle socket becomes readable
/// (or its pool is dropped, which ends it).
async fn watch(list: std::sync::Weak<Mutex<IdleList>>) {
    poll_fn(|cx| {
        let Some(list) = list.upgrade() else {
            return Poll::Ready(());
        };
        let mut l = list.lock().unwrap_or_else(|e| e.into_inner());
        if !l.watcher.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            l.watcher = Some(cx.waker().clone());
        }
        l.conns.retain_mut(|c| c.watch(cx.waker()));
        Poll::Pending
    })
    .await
}

/// Which protocol a new connection is to speak.
#[derive(Clone, Copy)]
enum Mode<'a> {
    H1 {
        upgrades: bool,
    },
    /// HTTP/2 by prior knowledge (plain TCP) or ALPN `h2` (TLS, required).
    H2(&'a Http2Config),
    /// Over TLS: what ALPN picks.
    Auto(&'a Http2Config),
}

/// Opens a new connection (over TLS with `tls`) and starts driving it on
/// this thread. `timeout` bounds the TCP connect, the TLS handshake and
/// the HTTP/2 preface together; `slot` is held as long as it is open.
async fn connect(
    addr: SocketAddr,
    timeout: Duration,
    mode: Mode<'_>,
    tls: Option<&EndpointTls>,
    slot: Option<ConnSlot>,
    label: &str,
) -> Result<Opened, ConnectError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let stream = tokio::time::timeout_at(deadline, TcpStream::connect(addr))
        .await
        .map_err(|_| ConnectError::Timeout(timeout))??;
    stream.set_nodelay(true)?;
    let Some(tls) = tls else {
        return tokio::time::timeout_at(
            deadline,
            over(Either::Left(stream), mode, false, slot, label),
        )
        .await
        .map_err(|_| ConnectError::Timeout(timeout))?;
    };
    let name = tls.name.clone().ok_or_else(|| {
        ConnectError::Tls(std::io::Error::other(
            "the endpoint's host is not a name TLS can verify; set `tls.sni`",
        ))
    })?;
    // An HTTP/1.1 connection offers only `http/1.1`, also on an `auto`
    // upstream: an upgrade needs it, and an endpoint `auto` found to pick
    // HTTP/1.1 stays there.
    let config = match mode {
        Mode::H1 { .. } => tls.http1_config.clone(),
        _ => tls.config.clone(),
    };
    let connector = tokio_rustls::TlsConnector::from(config);
    let stream = tokio::time::timeout_at(deadline, connector.connect(name, stream))
        .await
        .map_err(|_| ConnectError::Timeout(timeout))?
        .map_err(ConnectError::Tls)?;
    let alpn_h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
    if let (Mode::H2(_), false) = (mode, alpn_h2) {
        let offered = match stream.get_ref().1.alpn_protocol() {
            Some(p) => format!("`{}`", String::from_utf8_lossy(p)),
            None => "no protocol".to_owned(),
        };
        return Err(ConnectError::NoH2(offered));
    }
    let io = Either::Right(Box::new(stream));
    tokio::time::timeout_at(deadline, over(io, mode, alpn_h2, slot, label))
        .await
        .map_err(|_| ConnectError::Timeout(timeout))?
}

/// The HTTP handshake on an open stream: HTTP/2 for `H2`, or for `Auto`
/// when ALPN picked `h2`; HTTP/1.1 (which has none) otherwise.
async fn over(
    io: Io,
    mode: Mode<'_>,
    alpn_h2: bool,
    slot: Option<ConnSlot>,
    label: &str,
) -> Result<Opened, ConnectError> {
    match mode {
        Mode::H2(cfg) => Ok(Opened::H2(http2::handshake(io, cfg, label, slot).await?)),
        Mode::Auto(cfg) if alpn_h2 => Ok(Opened::H2(http2::handshake(io, cfg, label, slot).await?)),
        Mode::H1 { upgrades } => Ok(Opened::H1(Connection::new(io, upgrades, slot))),
        Mode::Auto(_) => Ok(Opened::H1(Connection::new(io, false, slot))),
    }
}
