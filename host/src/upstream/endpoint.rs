//! One endpoint and what Weir knows about it: its connection pool, the
//! requests outstanding on it, its latency estimate (peak EWMA), and its
//! health, both active (probe verdict) and passive (outlier ejection with
//! a backoff that doubles with each ejection). All of it is atomics shared
//! by every worker: reading costs no lock, and writers race only in ways
//! that make an estimate slightly stale, never wrong in kind.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::balancer::stable_hash;
#[cfg(test)]
use super::counter::ConnCounter;
use super::h1::Connection;
use super::pool::{Checkout, ConnectError, EndpointPool};
use crate::config::OutlierConfig;
use crate::metrics::EndpointStats;

/// How fast the latency estimate forgets a slow response: after this long
/// its weight has fallen to 1/e (linkerd's default decay), in microseconds.
const EWMA_DECAY_US: f64 = 10_000_000.0;

static EPOCH: OnceLock<Instant> = OnceLock::new();

/// Microseconds since the first call: the one clock of the upstream
/// module. Latency samples need better than milliseconds: at a thousand
/// responses a second, millisecond stamps would say no time passed between
/// samples and the average would never move.
pub fn now_us() -> u64 {
    EPOCH.get_or_init(Instant::now).elapsed().as_micros() as u64
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// One address traffic can be sent to.
#[derive(Debug)]
pub struct Endpoint {
    /// Unique in this process; stays with the endpoint across discovery.
    pub id: u64,
    pub addr: SocketAddr,
    /// As written in the configuration (`host:port`), for logs.
    pub label: String,
    /// Index of the configuration entry this endpoint came from.
    pub(super) source: usize,
    pub weight: u32,
    /// Hash of the address: the endpoint's place in a Maglev table is the
    /// same in every gateway that lists it.
    pub(super) key: u64,
    pool: EndpointPool,
    pub(super) state: EndpointState,
}

#[derive(Debug, Default)]
pub(super) struct EndpointState {
    pub outstanding: AtomicU32,
    /// Microseconds, as f64 bits.
    rtt_ewma: AtomicU64,
    rtt_stamp_us: AtomicU64,
    consecutive_5xx: AtomicU32,
    consecutive_connect_failures: AtomicU32,
    /// When an ejection ends, in milliseconds of [`now_us`]; 0 when not ejected.
    pub ejected_until_ms: AtomicU64,
    ejections: AtomicU32,
    last_ejected_ms: AtomicU64,
    /// The active checker's verdict.
    pub active_down: AtomicBool,
    pub probe_passes: AtomicU32,
    pub probe_failures: AtomicU32,
}

/// What one try against an endpoint came to, for passive health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    ConnectFailed,
    /// The request was sent and the connection broke or timed out.
    Failed,
    Status(u16),
}

impl Endpoint {
    pub(super) fn new(
        addr: SocketAddr,
        label: String,
        source: usize,
        weight: u32,
        pool: EndpointPool,
    ) -> Endpoint {
        Endpoint {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            key: stable_hash(addr.to_string().as_bytes()),
            pool,
            addr,
            label,
            source,
            weight,
            state: EndpointState::default(),
        }
    }

    /// A connection for one request: an HTTP/1.1 one reused from this
    /// worker's idle list when possible (`now`, the request's start,
    /// judges whether an idle one is too old), or a stream on a shared
    /// HTTP/2 connection.
    pub async fn checkout(
        &self,
        connect_timeout: Duration,
        now: Instant,
    ) -> Result<Checkout, ConnectError> {
        self.pool.checkout(self.addr, connect_timeout, now).await
    }

    /// The `:scheme` of requests to this endpoint over HTTP/2.
    pub fn scheme(&self) -> &'static http::uri::Scheme {
        self.pool.scheme()
    }

    /// A fresh, never pooled connection for a protocol upgrade.
    pub async fn connect_for_upgrade(
        &self,
        connect_timeout: Duration,
    ) -> Result<Connection, ConnectError> {
        self.pool
            .connect_for_upgrade(self.addr, connect_timeout)
            .await
    }

    /// The same endpoint, reached over TLS with `tls`.
    pub(super) fn with_tls(mut self, tls: Option<super::pool::EndpointTls>) -> Endpoint {
        self.pool.set_tls(tls);
        self
    }

    /// A fresh connection outside the pool and its limit, for an active
    /// health check.
    pub(super) async fn connect_unpooled(
        &self,
        timeout: Duration,
    ) -> Result<Checkout, ConnectError> {
        self.pool.connect_unpooled(self.addr, timeout).await
    }

    /// Hands a connection whose response finished back to the pool.
    pub fn give_back(&self, conn: Connection) {
        self.pool.put(conn);
    }

    /// Its counts in `/metrics` (kept by upstream name and address).
    pub fn stats(&self) -> &Arc<EndpointStats> {
        &self.pool.stats
    }

    /// Pool connections open or opening to it (for the metrics).
    pub(super) fn open_connections(&self) -> usize {
        self.pool.open_connections()
    }

    /// Idle pool connections to it (for the metrics).
    pub(super) fn idle_connections(&self) -> usize {
        self.pool.idle_connections()
    }

    /// Requests sent to this endpoint and not finished yet.
    pub fn outstanding(&self) -> u32 {
        self.state.outstanding.load(Ordering::Relaxed)
    }

    /// Whether the active health checker has marked it down.
    pub fn failing_active_checks(&self) -> bool {
        self.state.active_down.load(Ordering::Relaxed)
    }

    /// How long its passive ejection still lasts; `None` when it is not
    /// ejected.
    pub fn ejected_for(&self) -> Option<Duration> {
        let until = self.state.ejected_until_ms.load(Ordering::Relaxed);
        let now = now_us() / 1000;
        (until > now).then(|| Duration::from_millis(until - now))
    }

    /// The latency estimate (peak EWMA) as the balancer would read it now,
    /// decayed for the time since its last sample; `None` before the first
    /// sample (only `least_request` takes samples).
    pub fn latency_estimate(&self) -> Option<Duration> {
        let s = &self.state;
        let rtt = f64::from_bits(s.rtt_ewma.load(Ordering::Relaxed));
        if rtt == 0.0 {
            return None;
        }
        let age = now_us().saturating_sub(s.rtt_stamp_us.load(Ordering::Relaxed));
        Some(Duration::from_secs_f64(rtt * decay(age as f64) / 1e6))
    }

    /// Whether the balancer may use this endpoint at `now_ms`.
    pub(super) fn available(&self, now_ms: u64) -> bool {
        !self.state.active_down.load(Ordering::Relaxed)
            && self.state.ejected_until_ms.load(Ordering::Relaxed) <= now_ms
    }

    /// The least-request cost: latency estimate, decayed for the time
    /// since it was last fed, times the requests it would be queued behind,
    /// divided by weight. A fresh endpoint's estimate is zero, so it is
    /// tried at once and learns its real latency.
    pub(super) fn cost(&self, now_us: u64) -> f64 {
        let s = &self.state;
        let rtt = f64::from_bits(s.rtt_ewma.load(Ordering::Relaxed));
        let age = now_us.saturating_sub(s.rtt_stamp_us.load(Ordering::Relaxed));
        // Under a millisecond the decay is below 0.01%: skip it.
        let decayed = if age < 1_000 {
            rtt
        } else {
            rtt * decay(age as f64)
        };
        let pending = f64::from(s.outstanding.load(Ordering::Relaxed)) + 1.0;
        (decayed + 1.0) * pending / f64::from(self.weight.max(1))
    }

    /// Feeds a response time into the peak EWMA: a slower sample replaces
    /// the estimate at once, a faster one blends in with a weight that
    /// grows with the time since the last sample.
    pub(super) fn record_rtt(&self, rtt: Duration, now_us: u64) {
        let s = &self.state;
        let sample = rtt.as_micros() as f64;
        let prev = f64::from_bits(s.rtt_ewma.load(Ordering::Relaxed));
        let age = now_us.saturating_sub(s.rtt_stamp_us.swap(now_us, Ordering::Relaxed)) as f64;
        let next = if sample > prev {
            sample
        } else {
            let w = decay(age);
            prev * w + sample * (1.0 - w)
        };
        s.rtt_ewma.store(next.to_bits(), Ordering::Relaxed);
    }

    /// Counts an outcome towards passive ejection. Returns true when this
    /// outcome ejected the endpoint (the caller then rebuilds the live set).
    pub(super) fn record_outcome(
        &self,
        outcome: Outcome,
        cfg: &OutlierConfig,
        now_ms: u64,
    ) -> bool {
        let s = &self.state;
        let tripped = match outcome {
            Outcome::ConnectFailed => {
                let n = s
                    .consecutive_connect_failures
                    .fetch_add(1, Ordering::Relaxed)
                    + 1;
                cfg.consecutive_connect_failures > 0 && n >= cfg.consecutive_connect_failures
            }
            Outcome::Failed | Outcome::Status(500..=599) => {
                s.consecutive_connect_failures.store(0, Ordering::Relaxed);
                let n = s.consecutive_5xx.fetch_add(1, Ordering::Relaxed) + 1;
                cfg.consecutive_5xx > 0 && n >= cfg.consecutive_5xx
            }
            Outcome::Status(_) => {
                // Loads, not stores, on the common path: a store would
                // bounce the cache line between workers on every request.
                if s.consecutive_5xx.load(Ordering::Relaxed) != 0 {
                    s.consecutive_5xx.store(0, Ordering::Relaxed);
                }
                if s.consecutive_connect_failures.load(Ordering::Relaxed) != 0 {
                    s.consecutive_connect_failures.store(0, Ordering::Relaxed);
                }
                false
            }
        };
        tripped && self.eject(cfg, now_ms)
    }

    /// Ejects for `base * 2^(n-1)`, capped at `max`, where n counts recent
    /// ejections; an endpoint that stayed in for `max` starts again at 1.
    /// Only one thread wins the ejection when several see the trip.
    fn eject(&self, cfg: &OutlierConfig, now_ms: u64) -> bool {
        let s = &self.state;
        let until = s.ejected_until_ms.load(Ordering::Relaxed);
        if until > now_ms {
            return false;
        }
        let max_ms = cfg.max_ejection.as_millis() as u64;
        if now_ms.saturating_sub(s.last_ejected_ms.load(Ordering::Relaxed)) > 2 * max_ms {
            s.ejections.store(0, Ordering::Relaxed);
        }
        let n = s.ejections.load(Ordering::Relaxed).min(20);
        let ms = (cfg.base_ejection.as_millis() as u64)
            .saturating_mul(1 << n)
            .min(max_ms)
            .max(1);
        if s.ejected_until_ms
            .compare_exchange(until, now_ms + ms, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            return false;
        }
        s.ejections.fetch_add(1, Ordering::Relaxed);
        s.last_ejected_ms.store(now_ms, Ordering::Relaxed);
        s.consecutive_5xx.store(0, Ordering::Relaxed);
        s.consecutive_connect_failures.store(0, Ordering::Relaxed);
        self.stats().ejected();
        tracing::warn!(endpoint = %self.label, addr = %self.addr, ejected_for_ms = ms, "endpoint ejected");
        true
    }

    /// Ends a passive ejection early (an active check passed).
    pub(super) fn uneject(&self) -> bool {
        self.state.ejected_until_ms.swap(0, Ordering::Relaxed) != 0
    }
}

/// The weight left to an estimate `age_us` old: e^(-age/decay). Ages are
/// usually a tiny fraction of the decay time, where the first terms of
/// the series are exact to 1e-9 and much cheaper than `exp`.
fn decay(age_us: f64) -> f64 {
    let x = age_us / EWMA_DECAY_US;
    if x < 0.001 {
        1.0 - x + x * x / 2.0
    } else {
        (-x).exp()
    }
}

/// Counts a request as outstanding on an endpoint until dropped.
#[derive(Debug)]
pub struct Outstanding(Arc<Endpoint>);

impl Outstanding {
    pub fn new(ep: Arc<Endpoint>) -> Outstanding {
        ep.state.outstanding.fetch_add(1, Ordering::Relaxed);
        Outstanding(ep)
    }

    pub fn endpoint(&self) -> &Arc<Endpoint> {
        &self.0
    }
}

impl Drop for Outstanding {
    fn drop(&mut self) {
        self.0.state.outstanding.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{PoolConfig, Protocol};

    fn ep() -> Endpoint {
        let pool = PoolConfig {
            max_idle: 1,
            idle_timeout: Duration::from_secs(1),
        };
        Endpoint::new(
            "127.0.0.1:1".parse().unwrap(),
            "x:1".into(),
            0,
            1,
            EndpointPool::new(
                1,
                &pool,
                ConnCounter::new(1),
                Protocol::Http1,
                &Arc::default(),
                "x:1",
                Arc::default(),
            ),
        )
    }

    fn outlier() -> OutlierConfig {
        OutlierConfig {
            consecutive_5xx: 3,
            consecutive_connect_failures: 2,
            base_ejection: Duration::from_millis(100),
            max_ejection: Duration::from_millis(350),
        }
    }

    #[test]
    fn ejection_backoff_grows_and_is_capped() {
        let e = ep();
        let cfg = outlier();
        let mut now = 1_000;
        let mut lengths = Vec::new();
        for _ in 0..4 {
            assert!(!e.record_outcome(Outcome::ConnectFailed, &cfg, now));
            assert!(e.record_outcome(Outcome::ConnectFailed, &cfg, now));
            assert!(!e.available(now));
            let until = e.state.ejected_until_ms.load(Ordering::Relaxed);
            lengths.push(until - now);
            now = until;
            assert!(e.available(now));
        }
        assert_eq!(lengths, vec![100, 200, 350, 350]);
    }

    #[test]
    fn success_resets_the_streak() {
        let e = ep();
        let cfg = outlier();
        for _ in 0..10 {
            assert!(!e.record_outcome(Outcome::Status(503), &cfg, 5));
            assert!(!e.record_outcome(Outcome::Status(502), &cfg, 5));
            assert!(!e.record_outcome(Outcome::Status(200), &cfg, 5));
        }
        assert!(!e.record_outcome(Outcome::Failed, &cfg, 5));
        assert!(!e.record_outcome(Outcome::Status(500), &cfg, 5));
        assert!(e.record_outcome(Outcome::Status(599), &cfg, 5));
        assert!(!e.available(5));
        // Already ejected: another failure does not extend it.
        assert!(!e.record_outcome(Outcome::Status(500), &cfg, 6));
    }

    #[test]
    fn decay_series_matches_exp() {
        for age in [0.0, 1.0, 500.0, 9_999.0, 10_001.0, 1e6, 1e8] {
            let exact = (-age / EWMA_DECAY_US).exp();
            assert!((decay(age) - exact).abs() < 1e-9, "{age}");
        }
    }

    #[test]
    fn peak_ewma_jumps_up_and_decays() {
        let e = ep();
        e.record_rtt(Duration::from_millis(1), 0);
        let fast = e.cost(0);
        e.record_rtt(Duration::from_millis(50), 10);
        assert!(e.cost(10) > 40.0 * fast);
        // Fast samples a millisecond apart pull the estimate down slowly
        // (time-based weights), but they do pull it.
        let mut now = 10;
        for _ in 0..2_000 {
            now += 1_000;
            e.record_rtt(Duration::from_millis(1), now);
        }
        assert!(e.cost(now) < 0.9 * 50_000.0);
        // Ten decay periods without news and the slow past is forgotten.
        assert!(e.cost(now + 100_000_000) < fast);
    }
}
