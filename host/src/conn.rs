//! What one client connection's task (`listener`) and its requests
//! (`proxy`) share: who the client is (and, over TLS, what its handshake
//! settled), the route table, the count the drain reads, the shutdown's
//! word to drain ([`DrainSignal`]), the [`Watchdog`]'s clocks, and the
//! socket an HTTP/1.1 connection hands to an upgrade's tunnel
//! ([`Upgraded`]). It sits below both, so neither imports the other for
//! it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Waker};

use arc_swap::ArcSwap;
use http::HeaderValue;

use crate::config::ListenerConfig;
use crate::metrics::ListenerStats;
use crate::metrics::listener::Timeout;
use crate::router::Router;
use crate::worker;

pub use crate::wire::{ClientIo, Upgraded};

/// What every request on one client connection shares.
#[derive(Debug)]
pub struct ConnContext {
    pub peer: SocketAddr,
    /// `peer`'s IP as a header value, made once for `X-Forwarded-For`.
    pub peer_ip: HeaderValue,
    pub listener: Arc<ListenerConfig>,
    pub router: Arc<ArcSwap<Router>>,
    /// What the listener's requests leave behind (metrics, access log).
    pub observe: Arc<Observe>,
    /// When the connection is quiet or stuck enough to close.
    pub watchdog: Watchdog,
    /// Requests whose response head has not been produced yet.
    pub in_flight: AtomicUsize,
    /// The tunnel of an upgraded connection (WebSocket). The connection's
    /// task waits for it after hyper lets the connection go, so a tunnel
    /// keeps holding its `max_connections` permit, counts as open for the
    /// drain, and is closed after `idle_timeout` without bytes.
    pub tunnel: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// What the TLS handshake settled; none on a plain connection.
    pub tls: Option<Box<TlsConn>>,
    /// The listener's counts in `/metrics` (refusals, timeouts).
    pub stats: Arc<ListenerStats>,
    /// Between the listener's task and Weir's HTTP/1.1 connection (kept
    /// here, in the allocation the connection has anyway, rather than in
    /// one more of its own).
    pub h1: H1Control,
    /// Set by the accept loop when shutdown begins.
    pub drain: DrainSignal,
}

/// Shutdown's word to one connection: set once, by its accept loop, which
/// then wakes the connection's task. One flag and one waker per
/// connection, where a future waiting on the shutdown channel would be
/// 120 bytes of every connection's task.
#[derive(Debug, Default)]
pub struct DrainSignal {
    asked: AtomicBool,
    waker: std::sync::Mutex<Option<Waker>>,
}

impl DrainSignal {
    /// Asks the connection to drain and wakes its task.
    pub fn ask(&self) {
        self.asked.store(true, Ordering::Release);
        let waker = self.waker.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Whether a drain was asked for: an HTTP/1.1 connection then closes
    /// once the request under way is answered.
    pub fn is_asked(&self) -> bool {
        self.asked.load(Ordering::Acquire)
    }

    /// Whether a drain was asked for. Until it is, the first call with
    /// `registered` false leaves `task`'s waker to be woken by [`ask`]
    /// (and sets `registered`): the caller is a connection's task, whose
    /// waker stays the same for its life.
    ///
    /// [`ask`]: DrainSignal::ask
    pub fn poll_asked(&self, registered: &mut bool, task: &Context<'_>) -> bool {
        if self.asked.load(Ordering::Acquire) {
            return true;
        }
        if !*registered {
            *registered = true;
            *self.waker.lock().unwrap_or_else(|p| p.into_inner()) = Some(task.waker().clone());
            // Asked between the first look and the registration.
            return self.asked.load(Ordering::Acquire);
        }
        false
    }
}

/// What Weir's HTTP/1.1 connection (`listener::h1`) tells the listener's
/// task: whether it can close at once, and the socket when it turned out
/// to speak HTTP/2. (Shutdown's word goes the other way through
/// [`DrainSignal`].)
#[derive(Debug, Default)]
pub struct H1Control {
    /// Between requests with nothing buffered: safe to close at once.
    pub idle: AtomicBool,
    /// The connection opened with the HTTP/2 preface (h2c by prior
    /// knowledge): its socket and the bytes read, for hyper.
    pub h2: std::sync::Mutex<Option<Upgraded>>,
}

impl H1Control {
    pub fn is_idle(&self) -> bool {
        self.idle.load(Ordering::Relaxed)
    }

    /// The connection, when it turned out to speak HTTP/2.
    pub fn take_h2(&self) -> Option<Upgraded> {
        self.h2.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

/// What every request of a listener leaves behind when it ends, fixed at
/// start-up: counts in the metrics, a line in the access log, spans.
/// With all of it off, a request keeps no record of itself at all.
#[derive(Debug, Default)]
pub struct Observe {
    /// `[server] metrics`: requests counted per route.
    pub metrics: bool,
    /// The access log, when on (`[access_log]`).
    pub access_log: Option<crate::access_log::AccessLog>,
    /// Trace context and span export, when `[tracing]` is on.
    pub tracing: Option<crate::trace::Tracing>,
}

impl Observe {
    /// Whether a request needs its record ([`crate::proxy::exchange`]).
    pub fn any(&self) -> bool {
        self.metrics || self.access_log.is_some() || self.tracing.is_some()
    }
}

/// A TLS connection's facts, for its requests.
#[derive(Debug)]
pub struct TlsConn {
    pub session: crate::tls::Session,
    /// The header that carries the client certificate upstream, if the
    /// listener forwards it (see `[listener.tls.client_auth]`).
    pub forward_header: Option<http::HeaderName>,
}

impl ConnContext {
    pub fn new(
        peer: SocketAddr,
        peer_ip: HeaderValue,
        listener: Arc<ListenerConfig>,
        router: Arc<ArcSwap<Router>>,
        observe: Arc<Observe>,
        tls: Option<Box<TlsConn>>,
        stats: Arc<ListenerStats>,
    ) -> ConnContext {
        ConnContext {
            peer,
            peer_ip,
            watchdog: Watchdog::new(&listener),
            listener,
            router,
            observe,
            in_flight: AtomicUsize::new(0),
            tunnel: std::sync::Mutex::new(None),
            tls,
            stats,
            h1: H1Control::default(),
            drain: DrainSignal::default(),
        }
    }

    /// Whether a request is under way (its response head not produced).
    pub fn busy(&self) -> bool {
        self.in_flight.load(Ordering::Relaxed) > 0
    }
}

/// The clocks that decide when a connection is closed, stamped by the
/// client socket and read by the connection's task. Times are
/// milliseconds on [`worker::now_ms`]'s clock; 0 means "not set".
///
/// Three clocks close a quiet connection:
/// - a new connection that has sent nothing: `header_read_timeout`
///   (hyper's own timer only starts with the first byte);
/// - a request head that started arriving and is not complete:
///   `header_read_timeout` from its first byte (slow-header clients);
/// - no request in flight and no bytes moving: `idle_timeout`.
///
/// A fourth closes it whatever is in flight: a write that stays blocked
/// for `send_timeout` (the client reads nothing of what it asked for).
#[derive(Debug)]
pub struct Watchdog {
    pub idle_ms: u64,
    pub head_ms: u64,
    pub send_ms: u64,
    /// The last read or write.
    last_activity: AtomicU64,
    /// When a write to the client found the socket full and no write has
    /// gone through since. The connection is closed once this is
    /// `send_timeout` old, even while the client keeps sending (an HTTP/2
    /// client can ping without reading).
    write_blocked: AtomicU64,
    /// Whether the client has sent any byte yet.
    spoke: AtomicBool,
    /// When the first bytes of a still incomplete request head arrived.
    head_started: AtomicU64,
}

impl Watchdog {
    fn new(cfg: &ListenerConfig) -> Watchdog {
        Watchdog {
            idle_ms: cfg.idle_timeout.as_millis() as u64,
            head_ms: cfg.header_read_timeout.as_millis() as u64,
            send_ms: cfg.send_timeout.as_millis() as u64,
            last_activity: AtomicU64::new(worker::now_ms()),
            write_blocked: AtomicU64::new(0),
            spoke: AtomicBool::new(false),
            head_started: AtomicU64::new(0),
        }
    }

    /// When the connection counts as quiet enough to close, if no request
    /// is in flight.
    pub fn quiet_deadline(&self) -> u64 {
        let head = self.head_started.load(Ordering::Relaxed);
        if head != 0 {
            head + self.head_ms
        } else if !self.spoke.load(Ordering::Relaxed) {
            self.last_activity.load(Ordering::Relaxed) + self.head_ms
        } else {
            self.last_activity.load(Ordering::Relaxed) + self.idle_ms
        }
    }

    /// Which timeout [`Watchdog::quiet_deadline`] is now: the header read
    /// (nothing sent yet, or a request head under way) or idleness.
    pub fn quiet_timeout(&self) -> Timeout {
        if self.head_started.load(Ordering::Relaxed) != 0 || !self.spoke.load(Ordering::Relaxed) {
            Timeout::HeaderRead
        } else {
            Timeout::Idle
        }
    }

    /// When the client's blocked write runs out of `send_timeout`, if a
    /// write is blocked.
    pub fn send_stall(&self) -> Option<u64> {
        let blocked = self.write_blocked.load(Ordering::Relaxed);
        (blocked != 0).then(|| blocked + self.send_ms)
    }

    /// When an upgraded connection's tunnel is to be closed: `idle_timeout`
    /// without a byte either way (both directions pass through the client
    /// socket), or a write blocked for `send_timeout`.
    pub fn tunnel_deadline(&self) -> u64 {
        let idle = self.last_activity.load(Ordering::Relaxed) + self.idle_ms;
        self.send_stall().map_or(idle, |stall| stall.min(idle))
    }

    /// A read or write went through.
    pub fn touch(&self) {
        self.last_activity
            .store(worker::now_ms(), Ordering::Relaxed);
    }

    /// Bytes arrived; `in_partial_head` says whether they leave a request
    /// head incomplete (its clock starts at the first such read).
    pub fn read(&self, in_partial_head: bool) {
        self.spoke.store(true, Ordering::Relaxed);
        let started = self.head_started.load(Ordering::Relaxed);
        match (in_partial_head, started) {
            (true, 0) => self
                .head_started
                .store(worker::now_ms().max(1), Ordering::Relaxed),
            (false, s) if s != 0 => self.head_started.store(0, Ordering::Relaxed),
            _ => {}
        }
    }

    /// A write's outcome: activity when it went through, the start of a
    /// blocked spell when the socket was full.
    pub fn wrote(&self, went_through: bool) {
        if went_through {
            self.touch();
            if self.write_blocked.load(Ordering::Relaxed) != 0 {
                self.write_blocked.store(0, Ordering::Relaxed);
            }
        } else if self.write_blocked.load(Ordering::Relaxed) == 0 {
            // 0 means "not blocked", so the first millisecond counts as 1.
            self.write_blocked
                .store(worker::now_ms().max(1), Ordering::Relaxed);
        }
    }
}

/// A request extension on Weir's own HTTP/1.1 path: where the connection
/// comes once the upstream's 101 has been written to the client. (Shared
/// and taken once: `http`'s extensions must be cloneable.)
#[derive(Debug, Clone)]
pub struct PendingUpgrade(Arc<std::sync::Mutex<Option<tokio::sync::oneshot::Receiver<Upgraded>>>>);

impl PendingUpgrade {
    pub fn new(rx: tokio::sync::oneshot::Receiver<Upgraded>) -> PendingUpgrade {
        PendingUpgrade(Arc::new(std::sync::Mutex::new(Some(rx))))
    }

    /// The receiver, the first time.
    pub fn take(&self) -> Option<tokio::sync::oneshot::Receiver<Upgraded>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}
