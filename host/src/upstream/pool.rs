//! Keep-alive connections to one endpoint. Each worker thread has its own
//! idle list, so checking a connection out or in never contends with
//! another thread and a connection is always driven by the event loop of
//! the thread that uses it. Connections are HTTP/1.1 (hyper's client
//! connection), opened with a connect timeout and TCP_NODELAY, over TLS
//! when the upstream has it (the handshake within the same timeout, the
//! request never sent to an endpoint whose certificate does not verify);
//! a TLS connection is pooled and reused like a plain one. Every open
//! connection of an upstream holds one unit of its [`ConnCounter`], so the
//! upstream's `max_connections` bounds pooled and busy ones together.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::body::RequestBody;
use crate::config::PoolConfig;
use crate::worker;

/// A connection ready to carry one request.
pub struct Connection {
    pub sender: http1::SendRequest<RequestBody>,
    idle_since: Instant,
    _slot: Option<ConnSlot>,
}

/// Open connections of one upstream, against its limit.
#[derive(Debug, Clone)]
pub struct ConnCounter {
    open: Arc<AtomicUsize>,
    limit: usize,
}

/// One unit of a [`ConnCounter`], given back when the connection drops.
#[derive(Debug)]
struct ConnSlot(Arc<AtomicUsize>);

impl Drop for ConnSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl ConnCounter {
    pub fn new(limit: usize) -> ConnCounter {
        ConnCounter {
            open: Arc::new(AtomicUsize::new(0)),
            limit,
        }
    }

    fn acquire(&self) -> Result<ConnSlot, ConnectError> {
        if self.open.fetch_add(1, Ordering::Relaxed) >= self.limit {
            self.open.fetch_sub(1, Ordering::Relaxed);
            return Err(ConnectError::LimitReached { limit: self.limit });
        }
        Ok(ConnSlot(self.open.clone()))
    }
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection").finish_non_exhaustive()
    }
}

/// TLS to one endpoint: the upstream's client settings and the name it
/// sends and verifies (none when the endpoint's host is not a valid name).
#[derive(Debug, Clone)]
pub struct EndpointTls {
    pub config: Arc<rustls::ClientConfig>,
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
    #[error("HTTP handshake failed: {0}")]
    Handshake(#[from] hyper::Error),
    /// Not a failure of the endpoint: the upstream's `max_connections`
    /// are all open.
    #[error("the upstream's limit of {limit} open connections is reached")]
    LimitReached { limit: usize },
}

#[derive(Debug)]
pub(super) struct EndpointPool {
    idle: Box<[Mutex<Vec<Connection>>]>,
    cfg: PoolConfig,
    counter: ConnCounter,
    tls: Option<EndpointTls>,
}

impl EndpointPool {
    pub(super) fn new(workers: usize, cfg: &PoolConfig, counter: ConnCounter) -> EndpointPool {
        let lists = (0..workers.max(1))
            .map(|_| Mutex::new(Vec::with_capacity(cfg.max_idle.min(64))))
            .collect();
        EndpointPool {
            idle: lists,
            cfg: cfg.clone(),
            counter,
            tls: None,
        }
    }

    pub(super) fn set_tls(&mut self, tls: Option<EndpointTls>) {
        self.tls = tls;
    }

    fn list(&self) -> &Mutex<Vec<Connection>> {
        &self.idle[worker::id() % self.idle.len()]
    }

    pub(super) async fn checkout(
        &self,
        addr: SocketAddr,
        connect_timeout: Duration,
        now: Instant,
    ) -> Result<Connection, ConnectError> {
        let cfg = &self.cfg;
        loop {
            // Most recently used first: it is the least likely to have been
            // closed by the upstream's own idle timeout.
            let conn = self.list().lock().unwrap_or_else(|e| e.into_inner()).pop();
            let Some(mut conn) = conn else { break };
            if conn.sender.is_closed()
                || now.saturating_duration_since(conn.idle_since) >= cfg.idle_timeout
            {
                continue;
            }
            if conn.sender.ready().await.is_ok() {
                return Ok(conn);
            }
        }
        let slot = self.counter.acquire()?;
        // Boxed: opening a connection is the rare path, and its future
        // would otherwise make every checkout's (and request's) future big.
        let mut conn = Box::pin(connect(addr, connect_timeout, false, self.tls.as_ref())).await?;
        conn._slot = Some(slot);
        Ok(conn)
    }

    /// A fresh connection outside the pool and its limit.
    pub(super) async fn connect_unpooled(
        &self,
        addr: SocketAddr,
        timeout: Duration,
    ) -> Result<Connection, ConnectError> {
        Box::pin(connect(addr, timeout, false, self.tls.as_ref())).await
    }

    /// A fresh connection that is never pooled, for protocol upgrades.
    pub(super) async fn connect_for_upgrade(
        &self,
        addr: SocketAddr,
        connect_timeout: Duration,
    ) -> Result<Connection, ConnectError> {
        let slot = self.counter.acquire()?;
        let mut conn = Box::pin(connect(addr, connect_timeout, true, self.tls.as_ref())).await?;
        conn._slot = Some(slot);
        Ok(conn)
    }

    pub(super) fn put(&self, mut conn: Connection) {
        let cfg = &self.cfg;
        if conn.sender.is_closed() {
            return;
        }
        let now = Instant::now();
        conn.idle_since = now;
        let mut list = self.list().lock().unwrap_or_else(|e| e.into_inner());
        if list.len() < cfg.max_idle {
            list.push(conn);
        }
        // Expire from the cold end so a burst does not leave sockets open
        // past the idle timeout for ever.
        let expired =
            |c: &Connection| now.saturating_duration_since(c.idle_since) >= cfg.idle_timeout;
        if list.first().is_some_and(expired) {
            list.retain(|c| !expired(c));
        }
    }
}

/// Opens a new HTTP/1.1 connection (over TLS with `tls`) and starts
/// driving it on this thread. `timeout` bounds the TCP connect and the
/// TLS handshake together.
pub(crate) async fn connect(
    addr: SocketAddr,
    timeout: Duration,
    upgrades: bool,
    tls: Option<&EndpointTls>,
) -> Result<Connection, ConnectError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let stream = tokio::time::timeout_at(deadline, TcpStream::connect(addr))
        .await
        .map_err(|_| ConnectError::Timeout(timeout))??;
    stream.set_nodelay(true)?;
    let sender = match tls {
        None => {
            let (sender, conn) = http1::Builder::new()
                .handshake(TokioIo::new(stream))
                .await?;
            drive(conn, upgrades);
            sender
        }
        Some(tls) => {
            let name = tls.name.clone().ok_or_else(|| {
                ConnectError::Tls(std::io::Error::other(
                    "the endpoint's host is not a name TLS can verify; set `tls.sni`",
                ))
            })?;
            let connector = tokio_rustls::TlsConnector::from(tls.config.clone());
            let stream = tokio::time::timeout_at(deadline, connector.connect(name, stream))
                .await
                .map_err(|_| ConnectError::Timeout(timeout))?
                .map_err(ConnectError::Tls)?;
            let (sender, conn) = http1::Builder::new()
                .handshake(TokioIo::new(stream))
                .await?;
            drive(conn, upgrades);
            sender
        }
    };
    Ok(Connection {
        sender,
        idle_since: Instant::now(),
        _slot: None,
    })
}

/// Spawns the task that drives a client connection on this thread.
fn drive<T>(conn: http1::Connection<T, RequestBody>, upgrades: bool)
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    if upgrades {
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(error = %e, "upstream connection ended");
            }
        });
    } else {
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "upstream connection ended");
            }
        });
    }
}
