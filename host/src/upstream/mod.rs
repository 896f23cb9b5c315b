//! Upstreams: a named set of endpoints, the balancer that picks one for a
//! request, their health, the retry budget, the limits on connections and
//! pending requests, and the keep-alive pool to each endpoint. The proxy
//! asks an [`Upstream`] for an endpoint and a ready connection and reports
//! back how the try went; it never opens sockets itself.
//!
//! The endpoints the balancer may use (the *live set*) are an immutable
//! snapshot behind an `ArcSwap`, with the balancer's table (a smooth
//! weighted schedule or a Maglev table) precomputed for exactly those
//! endpoints. A pick loads the snapshot and indexes it: no lock and no
//! allocation. The snapshot is rebuilt, under a mutex only writers take,
//! when health changes (an ejection starts or ends, an active check flips)
//! or discovery changes the endpoints; per-endpoint state lives in the
//! `Arc<Endpoint>`s, so an endpoint that stays keeps its pool, latency
//! estimate and health across rebuilds.

mod balancer;
mod budget;
mod counter;
pub mod discovery;
mod endpoint;
mod gauges;
mod h1;
mod health;
pub mod http2;
mod pool;

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use http::request::Parts;

use crate::config::{BalancerKind, HashKey, UpstreamConfig};
use crate::worker;
use balancer::{MAGLEV_SIZE, maglev, p2c, smooth_schedule, stable_hash};

pub use balancer::{MAX_TRIES, Tried};
pub use budget::RetryBudget;
pub use endpoint::{Endpoint, Outcome, Outstanding};
pub use h1::{Connection, Error as H1Error, H1Received, Received, SendError};
pub use pool::{Checkout, ConnectError};

/// A named group of endpoints with its balancing state.
#[derive(Debug)]
pub struct Upstream {
    pub config: UpstreamConfig,
    workers: usize,
    connections: counter::ConnCounter,
    live: ArcSwap<LiveSet>,
    /// Serialises rebuilds of `live`; never taken by a pick.
    rebuild: Mutex<()>,
    /// Each worker's position in the round-robin schedule: one cache line
    /// per worker, so round robin writes nothing another worker reads.
    next: Box<[Position]>,
    pending: AtomicUsize,
    pub budget: RetryBudget,
    /// TLS to the endpoints, when the upstream has it.
    tls: Option<Arc<crate::tls::ClientTls>>,
    /// The same TLS settings offering only `http/1.1` by ALPN (upgrades).
    tls_http1: Option<Arc<rustls::ClientConfig>>,
    http2: Arc<crate::config::Http2Config>,
    /// Its counts in `/metrics`, kept by name over reloads.
    pub stats: Arc<crate::metrics::UpstreamStats>,
}

#[derive(Debug)]
struct LiveSet {
    all: Vec<Arc<Endpoint>>,
    /// The available endpoints, or all of them in panic mode.
    live: Vec<Arc<Endpoint>>,
    table: Table,
    panic: bool,
    /// When the earliest passive ejection ends (milliseconds of
    /// [`endpoint::now_us`]), so a
    /// pick knows to rebuild; `u64::MAX` when none is ejected.
    next_change_ms: u64,
}

#[derive(Debug)]
enum Table {
    None,
    /// Indexes into `live`, each appearing `weight` times, interleaved.
    Schedule(Vec<u32>),
    /// Maglev slots, indexes into `live`.
    Maglev(Vec<u16>),
}

#[derive(Debug, Default)]
#[repr(align(64))]
struct Position(AtomicUsize);

/// When a try started, from [`Upstream::try_started`].
#[derive(Debug, Clone, Copy)]
pub struct TryStart(u64);

/// Which per-upstream limit refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// `max_connections`
    Connections,
    /// `max_pending_requests`
    PendingRequests,
}

impl std::fmt::Display for Limit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Limit::Connections => "open connections",
            Limit::PendingRequests => "pending requests",
        })
    }
}

/// The upstream refused the request before sending it: a limit is full.
#[derive(Debug, Clone, Copy)]
pub struct Overloaded {
    pub limit: usize,
}

/// A request counted against `max_pending_requests` until dropped.
#[derive(Debug)]
pub struct Pending<'a>(&'a AtomicUsize);

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Upstream {
    /// Builds an upstream from resolved addresses: pairs of configuration
    /// entry index and address (a DNS name may give several). `workers`
    /// sizes the per-worker connection pools. Call
    /// [`Upstream::spawn_background`] to start health checks and discovery.
    pub fn new(config: UpstreamConfig, addrs: &[(usize, SocketAddr)], workers: usize) -> Upstream {
        Upstream::with_tls(config, addrs, workers, None)
    }

    /// [`Upstream::new`] with the TLS client settings loaded from the
    /// configuration's `tls` (none for a plain upstream).
    pub fn with_tls(
        config: UpstreamConfig,
        addrs: &[(usize, SocketAddr)],
        workers: usize,
        tls: Option<Arc<crate::tls::ClientTls>>,
    ) -> Upstream {
        let connections = counter::ConnCounter::new(config.max_connections);
        let tls_http1 = tls.as_ref().map(|t| {
            if t.config.alpn_protocols == [b"http/1.1".to_vec()] {
                t.config.clone()
            } else {
                let mut c = (*t.config).clone();
                c.alpn_protocols = vec![b"http/1.1".to_vec()];
                Arc::new(c)
            }
        });
        let http2 = Arc::new(config.http2.clone());
        let stats = crate::metrics::global().upstream(&config.name);
        let up = Upstream {
            budget: RetryBudget::new(
                config.retry.budget_per_mille,
                config.retry.budget_min_per_second,
            ),
            config,
            workers,
            connections,
            live: ArcSwap::from_pointee(LiveSet {
                all: Vec::new(),
                live: Vec::new(),
                table: Table::None,
                panic: false,
                next_change_ms: u64::MAX,
            }),
            rebuild: Mutex::new(()),
            next: (0..workers.max(1)).map(|_| Position::default()).collect(),
            pending: AtomicUsize::new(0),
            tls,
            tls_http1,
            http2,
            stats,
        };
        let all = addrs
            .iter()
            .map(|(i, a)| up.make_endpoint(*i, *a))
            .collect();
        up.set_endpoints(all);
        up
    }

    fn make_endpoint(&self, source: usize, addr: SocketAddr) -> Arc<Endpoint> {
        let e = &self.config.endpoints[source];
        let tls = self
            .tls
            .as_ref()
            .zip(self.tls_http1.as_ref())
            .map(|(t, h1)| pool::EndpointTls {
                config: t.config.clone(),
                http1_config: h1.clone(),
                name: t.server_name(&e.host),
            });
        let label = format!("{}:{}", e.host, e.port);
        let pool = pool::EndpointPool::new(
            self.workers,
            &self.config.pool,
            self.connections.clone(),
            self.config.protocol,
            &self.http2,
            &label,
            self.stats.endpoint(&addr.to_string()),
        );
        Arc::new(Endpoint::new(addr, label, source, e.weight, pool).with_tls(tls))
    }

    /// Starts the active health checker (when configured) and DNS
    /// re-resolution (when an endpoint is a name) on the current runtime.
    /// Both hold only a weak reference and stop when the upstream is gone.
    /// Also makes this the upstream `/metrics` shows under its name (by a
    /// weak reference too).
    pub fn spawn_background(self: &Arc<Self>) {
        self.stats.show(Arc::<Upstream>::downgrade(self));
        if let Some(hc) = &self.config.health_check {
            tokio::spawn(health::run(Arc::downgrade(self), Arc::new(hc.clone())));
        }
        if self
            .config
            .endpoints
            .iter()
            .any(|e| e.host.parse::<IpAddr>().is_err())
        {
            tokio::spawn(discovery::run(
                Arc::downgrade(self),
                self.config.dns_refresh,
            ));
        }
    }

    /// Every known endpoint, healthy or not.
    pub fn endpoints(&self) -> Vec<Arc<Endpoint>> {
        self.live.load().all.clone()
    }

    /// Whether the upstream has more than one endpoint, so that a request
    /// sent and failed could be tried again on another one.
    pub fn has_alternatives(&self) -> bool {
        self.live.load().all.len() > 1
    }

    /// Whether too few endpoints are healthy and all are used.
    pub fn in_panic(&self) -> bool {
        self.live.load().panic
    }

    /// Every known endpoint with whether the live set holds it, and
    /// whether the upstream is in panic mode, from one snapshot: what the
    /// balancer sees now (for the admin view).
    pub fn live_view(&self) -> (Vec<(Arc<Endpoint>, bool)>, bool) {
        let set = self.live.load();
        let endpoints = set
            .all
            .iter()
            .map(|e| (e.clone(), set.live.iter().any(|l| l.id == e.id)))
            .collect();
        (endpoints, set.panic)
    }

    /// Counts a request against `max_pending_requests`, or refuses it.
    pub fn admit(&self) -> Result<Pending<'_>, Overloaded> {
        let limit = self.config.max_pending_requests;
        if self.pending.fetch_add(1, Ordering::Relaxed) >= limit {
            self.pending.fetch_sub(1, Ordering::Relaxed);
            return Err(Overloaded { limit });
        }
        Ok(Pending(&self.pending))
    }

    /// Takes one retry from the retry budget, or says no (and counts the
    /// refusal).
    pub fn take_retry(&self, now_ms: u64) -> bool {
        let granted = self.budget.try_retry(now_ms);
        if !granted {
            self.stats.retry_refused();
        }
        granted
    }

    /// The request's hash for `consistent_hash`; `None` for other
    /// balancers, or when the request lacks the key (it is then balanced
    /// at random).
    pub fn hash_of(&self, parts: &Parts, peer: SocketAddr) -> Option<u64> {
        let BalancerKind::ConsistentHash(key) = &self.config.balancer else {
            return None;
        };
        match key {
            HashKey::ClientIp => Some(match peer.ip() {
                IpAddr::V4(ip) => stable_hash(&ip.octets()),
                IpAddr::V6(ip) => stable_hash(&ip.octets()),
            }),
            HashKey::Header(name) => parts.headers.get(name).map(|v| stable_hash(v.as_bytes())),
            HashKey::Cookie(name) => parts
                .headers
                .get_all(http::header::COOKIE)
                .iter()
                .flat_map(|v| v.as_bytes().split(|b| *b == b';'))
                .find_map(|pair| {
                    let pair = pair.trim_ascii_start();
                    let value = pair.strip_prefix(name.as_bytes())?.strip_prefix(b"=")?;
                    Some(stable_hash(value.trim_ascii_end()))
                }),
        }
    }

    /// Picks an endpoint not in `tried`, or `None` when there is none.
    pub fn pick(&self, hash: Option<u64>, tried: &Tried) -> Option<Arc<Endpoint>> {
        let mut set = self.live.load();
        let least_request = self.config.balancer == BalancerKind::LeastRequest;
        // Reading the clock is most of a pick's cost: only least_request
        // and a pending end of ejection need it.
        let now_us = if least_request || set.next_change_ms != u64::MAX {
            endpoint::now_us()
        } else {
            0
        };
        if now_us / 1000 >= set.next_change_ms {
            self.refresh(false);
            set = self.live.load();
        }
        let live = &set.live;
        let excluded = |i: usize| !tried.is_empty() && tried.contains(live[i].id);
        let i = match (&self.config.balancer, &set.table) {
            (BalancerKind::RoundRobin, Table::Schedule(s)) => {
                let w = worker::id() % self.next.len();
                // Workers start spread over the schedule, not all at its head.
                let start =
                    self.next[w].0.fetch_add(1, Ordering::Relaxed) + w * s.len() / self.next.len();
                scan(s, start, excluded)
            }
            (BalancerKind::Random, Table::Schedule(s)) if !s.is_empty() => {
                scan(s, fastrand::usize(..s.len()), excluded)
            }
            (BalancerKind::LeastRequest, _) => p2c(
                live.len(),
                |i| live[i].cost(now_us),
                excluded,
                |n| fastrand::usize(..n),
            ),
            (BalancerKind::ConsistentHash(_), Table::Maglev(t)) if !t.is_empty() => {
                let h = hash.unwrap_or_else(|| fastrand::u64(..));
                scan(t, (h % t.len() as u64) as usize, excluded)
            }
            _ => None,
        }?;
        Some(live[i].clone())
    }

    /// Marks the start of a try, for [`Upstream::record`]: a timestamp
    /// when the balancer learns latencies, 0 (no clock read) otherwise.
    pub fn try_started(&self) -> TryStart {
        TryStart(if self.config.balancer == BalancerKind::LeastRequest {
            endpoint::now_us()
        } else {
            0
        })
    }

    /// Reports how a try went: feeds passive health and, for
    /// `least_request`, the latency estimate.
    pub fn record(&self, ep: &Endpoint, outcome: Outcome, started: TryStart) {
        let least_request = self.config.balancer == BalancerKind::LeastRequest;
        let success = matches!(outcome, Outcome::Status(s) if s < 500);
        // A success under another balancer needs no time: it only resets
        // failure counts.
        let now_us = if least_request || !success {
            endpoint::now_us()
        } else {
            0
        };
        if least_request && let Outcome::Status(_) = outcome {
            ep.record_rtt(
                Duration::from_micros(now_us.saturating_sub(started.0)),
                now_us,
            );
        }
        if ep.record_outcome(outcome, &self.config.outlier, now_us / 1000) {
            self.refresh(true);
        }
    }

    /// Rebuilds the live set from the endpoints' current health. `wait`
    /// false skips the rebuild when another thread is already at it.
    fn refresh(&self, wait: bool) {
        let _guard = if wait {
            self.rebuild.lock().unwrap_or_else(|e| e.into_inner())
        } else {
            match self.rebuild.try_lock() {
                Ok(g) => g,
                Err(_) => return,
            }
        };
        let all = self.live.load().all.clone();
        self.store(all);
    }

    /// Replaces the endpoint set (discovery) and rebuilds the live set.
    fn set_endpoints(&self, all: Vec<Arc<Endpoint>>) {
        let _guard = self.rebuild.lock().unwrap_or_else(|e| e.into_inner());
        self.store(all);
    }

    /// Builds and publishes a live set; the caller holds `rebuild`.
    fn store(&self, all: Vec<Arc<Endpoint>>) {
        let now = endpoint::now_us() / 1000;
        let available: Vec<Arc<Endpoint>> =
            all.iter().filter(|e| e.available(now)).cloned().collect();
        let panic = !all.is_empty()
            && available.len() * 100 < self.config.panic_threshold as usize * all.len();
        let was_panic = self.live.load().panic;
        if panic != was_panic {
            if panic {
                tracing::warn!(
                    upstream = %self.config.name,
                    healthy = available.len(),
                    total = all.len(),
                    "too few healthy endpoints: balancing over all of them (panic mode)"
                );
            } else {
                tracing::info!(upstream = %self.config.name, "enough healthy endpoints again: panic mode over");
            }
        }
        let live = if panic { all.clone() } else { available };
        let weights: Vec<u32> = live.iter().map(|e| e.weight).collect();
        let table = match &self.config.balancer {
            BalancerKind::RoundRobin | BalancerKind::Random => {
                Table::Schedule(smooth_schedule(&weights))
            }
            BalancerKind::ConsistentHash(_) => {
                let keys: Vec<u64> = live.iter().map(|e| e.key).collect();
                Table::Maglev(maglev(&keys, &weights, MAGLEV_SIZE))
            }
            BalancerKind::LeastRequest => Table::None,
        };
        let next_change_ms = all
            .iter()
            .map(|e| e.state.ejected_until_ms.load(Ordering::Relaxed))
            .filter(|t| *t > now)
            .min()
            .unwrap_or(u64::MAX);
        self.live.store(Arc::new(LiveSet {
            all,
            live,
            table,
            panic,
            next_change_ms,
        }));
    }
}

/// The first entry of a rotation, from `start`, whose endpoint is not
/// excluded. Without exclusions this is one index operation.
fn scan<T: Copy + TryInto<usize>>(
    table: &[T],
    start: usize,
    excluded: impl Fn(usize) -> bool,
) -> Option<usize> {
    let n = table.len();
    (0..n)
        .filter_map(|k| table[(start + k) % n].try_into().ok())
        .find(|i| !excluded(*i))
}

#[cfg(test)]
mod tests;
