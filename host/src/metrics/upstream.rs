//! Upstream and endpoint metrics: each try on an endpoint by how it
//! ended, the time to a response head, retries and the retry budget's
//! refusals, requests the upstream's limits refused, new pool
//! connections and ejections (counted here, per thread); and the state
//! the balancer works from (health, ejection, requests in flight, open
//! and idle connections, pending requests, panic mode), read at scrape
//! time from the upstream itself through [`UpstreamProbe`], never kept
//! twice.
//!
//! The `endpoint` label is the endpoint's address (`ip:port`, as
//! configured or as DNS resolved it). A scrape shows exactly the
//! endpoints the upstream has now, so endpoints DNS discovery removed
//! stop being shown at once, and their counts are forgotten once nothing
//! holds them. Counts are kept per (upstream name, address), so they
//! carry over a reload that keeps both.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use super::{BOUNDS, Family, Hist, HistSum, Labels, Out, PerThread, Registry, Tally};

/// How one try on an endpoint ended: the fixed set of the `outcome`
/// label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TryOutcome {
    /// A response head arrived, whatever its status.
    Response,
    /// The connection could not be opened (refused, unreachable, TLS or
    /// HTTP/2 handshake failed).
    ConnectError,
    /// Opening the connection took longer than `connect_timeout`.
    ConnectTimeout,
    /// The request never left: the pooled connection (or HTTP/2
    /// connection) it was given had closed.
    ClosedBeforeSend,
    /// The HTTP/2 endpoint refused the stream unprocessed
    /// (`REFUSED_STREAM`).
    RefusedStream,
    /// The HTTP/2 connection was going away (GOAWAY).
    GoAway,
    /// Sent, then the connection or stream failed before a response head.
    Reset,
    /// The request's deadline passed before a response head.
    Timeout,
    /// The client's own body ended the try (too large, broken off, too
    /// slow): not the endpoint's doing.
    ClientBody,
    /// Weir did not send it (a request head HTTP/2 cannot carry, an
    /// upgrade over HTTP/2).
    LocalError,
}

impl TryOutcome {
    const ALL: [TryOutcome; 10] = [
        TryOutcome::Response,
        TryOutcome::ConnectError,
        TryOutcome::ConnectTimeout,
        TryOutcome::ClosedBeforeSend,
        TryOutcome::RefusedStream,
        TryOutcome::GoAway,
        TryOutcome::Reset,
        TryOutcome::Timeout,
        TryOutcome::ClientBody,
        TryOutcome::LocalError,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TryOutcome::Response => "response",
            TryOutcome::ConnectError => "connect_error",
            TryOutcome::ConnectTimeout => "connect_timeout",
            TryOutcome::ClosedBeforeSend => "closed_before_send",
            TryOutcome::RefusedStream => "refused_stream",
            TryOutcome::GoAway => "goaway",
            TryOutcome::Reset => "reset",
            TryOutcome::Timeout => "timeout",
            TryOutcome::ClientBody => "client_body",
            TryOutcome::LocalError => "local_error",
        }
    }
}

/// Which of an upstream's limits refused a request: the `limit` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitKind {
    /// `max_pending_requests`
    PendingRequests,
    /// `max_connections`
    Connections,
}

impl LimitKind {
    const ALL: [LimitKind; 2] = [LimitKind::PendingRequests, LimitKind::Connections];

    fn as_str(self) -> &'static str {
        match self {
            LimitKind::PendingRequests => "pending_requests",
            LimitKind::Connections => "connections",
        }
    }
}

/// One thread's counts for one endpoint.
#[derive(Debug, Default)]
struct EndpointCells {
    tries: [Tally; TryOutcome::ALL.len()],
    to_head: Hist,
    opened: Tally,
    ejections: Tally,
}

/// One endpoint's counts (one per upstream name and address).
#[derive(Debug, Default)]
pub struct EndpointStats {
    cells: PerThread<EndpointCells>,
}

impl EndpointStats {
    /// A try that ended without a response head.
    #[inline]
    pub fn tried(&self, outcome: TryOutcome) {
        self.cells.local().tries[outcome as usize].inc();
    }

    /// A try that got a response head `took` after it started.
    #[inline]
    pub fn answered(&self, took: Duration) {
        let c = self.cells.local();
        c.tries[TryOutcome::Response as usize].inc();
        c.to_head.observe(took, &BOUNDS);
    }

    /// A pool connection opened (not a health check's).
    pub fn connection_opened(&self) {
        self.cells.local().opened.inc();
    }

    /// Passive health ejected the endpoint.
    pub fn ejected(&self) {
        self.cells.local().ejections.inc();
    }

    /// Tries counted so far with `outcome` (for tests).
    pub fn tries(&self, outcome: TryOutcome) -> u64 {
        self.cells.sum(|c| c.tries[outcome as usize].get())
    }

    /// Ejections counted so far (for tests).
    pub fn ejections(&self) -> u64 {
        self.cells.sum(|c| c.ejections.get())
    }

    /// Pool connections opened so far (for tests).
    pub fn connections_opened(&self) -> u64 {
        self.cells.sum(|c| c.opened.get())
    }
}

/// One thread's counts for one upstream as a whole.
#[derive(Debug, Default)]
struct UpstreamCells {
    retries: Tally,
    budget_refused: Tally,
    limited: [Tally; LimitKind::ALL.len()],
}

/// What a scrape reads from an upstream's live state: implemented by the
/// upstream, which the metrics module cannot name (it sits below it).
pub trait UpstreamProbe: Send + Sync + fmt::Debug {
    /// Every endpoint the upstream has now.
    fn endpoints(&self) -> Vec<EndpointNow>;
    /// Requests counted against `max_pending_requests` now.
    fn pending(&self) -> u64;
    /// Whether too few endpoints are healthy and all are used.
    fn in_panic(&self) -> bool;
}

/// One endpoint as a scrape sees it.
#[derive(Debug)]
pub struct EndpointNow {
    /// `ip:port`, the key of `stats` in its upstream's stats.
    pub address: String,
    pub stats: Arc<EndpointStats>,
    /// The balancer may pick it: no failed active checks, not ejected.
    pub healthy: bool,
    /// Passive health has ejected it.
    pub ejected: bool,
    /// Tries sent to it and not finished.
    pub in_flight: u64,
    /// Pool connections open (or being opened) to it.
    pub open: u64,
    /// Of those, idle ones (HTTP/1.1 in the idle lists, HTTP/2 without
    /// streams).
    pub idle: u64,
}

/// One upstream's counts, its endpoints' counts by address, and the
/// upstreams that can show their live state (see [`UpstreamStats::show`]).
#[derive(Debug, Default)]
pub struct UpstreamStats {
    cells: PerThread<UpstreamCells>,
    endpoints: Family<EndpointStats>,
    probes: Mutex<Vec<Weak<dyn UpstreamProbe>>>,
}

impl UpstreamStats {
    /// The stats of the endpoint at `address`, resolved once when the
    /// endpoint is made.
    pub fn endpoint(&self, address: &str) -> Arc<EndpointStats> {
        self.endpoints.get(address)
    }

    /// Makes `probe` the upstream a scrape shows under this name. The
    /// newest live one is shown: a reload's new upstream replaces the old
    /// one, and one a failed reload built and dropped leaves the one
    /// serving in place.
    pub fn show(&self, probe: Weak<dyn UpstreamProbe>) {
        let mut probes = self.probes.lock().unwrap_or_else(|e| e.into_inner());
        probes.retain(|p| p.strong_count() > 0);
        probes.push(probe);
    }

    fn probe(&self) -> Option<Arc<dyn UpstreamProbe>> {
        let probes = self.probes.lock().unwrap_or_else(|e| e.into_inner());
        probes.iter().rev().find_map(Weak::upgrade)
    }

    /// A retry was sent.
    #[inline]
    pub fn retried(&self) {
        self.cells.local().retries.inc();
    }

    /// The retry budget refused a retry.
    pub fn retry_refused(&self) {
        self.cells.local().budget_refused.inc();
    }

    /// A limit refused a request at once (503).
    pub fn limited(&self, limit: LimitKind) {
        self.cells.local().limited[limit as usize].inc();
    }

    /// Retries counted so far (for tests).
    pub fn retries(&self) -> u64 {
        self.cells.sum(|c| c.retries.get())
    }
}

impl Registry {
    /// The stats of upstream `name`, resolved once when the upstream is
    /// built.
    pub fn upstream(&self, name: &str) -> Arc<UpstreamStats> {
        self.upstreams.get(name)
    }

    pub(super) fn upstreams_section(&self, out: &mut Out<'_>) -> fmt::Result {
        forget_unheld(&self.upstreams);
        let mut shown = Vec::new();
        for (name, stats) in self.upstreams.snapshot() {
            // An upstream no configuration serves any more is not shown.
            let Some(probe) = stats.probe() else { continue };
            let endpoints = merged(probe.endpoints());
            forget_unheld(&stats.endpoints);
            shown.push(Shown {
                name,
                stats,
                probe,
                endpoints,
            });
        }
        encode(&shown, out)
    }
}

/// An upstream as one scrape shows it.
struct Shown {
    name: String,
    stats: Arc<UpstreamStats>,
    probe: Arc<dyn UpstreamProbe>,
    endpoints: Vec<EndpointNow>,
}

/// Drops the stats objects only the family still holds: their upstream
/// or endpoint is gone, so nothing can count into them or show them.
/// (Under the family's lock, so a [`Family::get`] cannot race it.)
fn forget_unheld<T>(family: &Family<T>) {
    let mut map = family.0.lock().unwrap_or_else(|e| e.into_inner());
    map.retain(|_, s| Arc::strong_count(s) > 1);
}

/// The endpoints in address order, one per address: two configuration
/// entries that resolve to the same address share its counts, and their
/// gauges are added up (so the series stay unique).
fn merged(endpoints: Vec<EndpointNow>) -> Vec<EndpointNow> {
    let mut by_address: BTreeMap<String, EndpointNow> = BTreeMap::new();
    for e in endpoints {
        match by_address.get_mut(&e.address) {
            None => {
                by_address.insert(e.address.clone(), e);
            }
            Some(m) => {
                m.healthy &= e.healthy;
                m.ejected |= e.ejected;
                m.in_flight += e.in_flight;
                m.open += e.open;
                m.idle += e.idle;
            }
        }
    }
    by_address.into_values().collect()
}

fn flag(b: bool) -> f64 {
    if b { 1.0 } else { 0.0 }
}

fn up(s: &Shown) -> Labels<'_> {
    vec![("upstream", s.name.as_str())]
}

fn ep<'a>(s: &'a Shown, e: &'a EndpointNow) -> Labels<'a> {
    vec![
        ("upstream", s.name.as_str()),
        ("endpoint", e.address.as_str()),
    ]
}

/// One series per endpoint shown, of what `f` reads from it.
fn per_endpoint<V>(shown: &[Shown], f: impl Fn(&EndpointNow) -> V) -> Vec<(Labels<'_>, V)> {
    shown
        .iter()
        .flat_map(|s| s.endpoints.iter().map(move |e| (ep(s, e), e)))
        .map(|(labels, e)| (labels, f(e)))
        .collect()
}

fn encode(shown: &[Shown], out: &mut Out<'_>) -> fmt::Result {
    let mut tries = Vec::new();
    let mut to_head = Vec::new();
    for s in shown {
        for e in &s.endpoints {
            for o in TryOutcome::ALL {
                let n = e.stats.cells.sum(|c| c.tries[o as usize].get());
                if n > 0 {
                    let mut labels = ep(s, e);
                    labels.push(("outcome", o.as_str()));
                    tries.push((labels, n));
                }
            }
            let mut h = HistSum::default();
            for c in e.stats.cells.all() {
                h.add(&c.to_head);
            }
            if h.count() > 0 {
                to_head.push((ep(s, e), h));
            }
        }
    }
    out.counter(
        "weir_upstream_attempts",
        "Tries sent to an endpoint (first tries and retries), by how they ended.",
        tries,
    )?;
    out.histogram(
        "weir_upstream_response_head_duration_seconds",
        "Time from a try's start (connection included) to the endpoint's response head.",
        &BOUNDS,
        to_head,
    )?;
    out.counter(
        "weir_upstream_retries",
        "Retries sent, to another endpoint or on a fresh connection.",
        shown
            .iter()
            .map(|s| (up(s), s.stats.cells.sum(|c| c.retries.get()))),
    )?;
    out.counter(
        "weir_upstream_retry_budget_exhausted",
        "Retries the retry budget refused (the failed try's answer went to the client).",
        shown
            .iter()
            .map(|s| (up(s), s.stats.cells.sum(|c| c.budget_refused.get()))),
    )?;
    let mut limited = Vec::new();
    for s in shown {
        for l in LimitKind::ALL {
            let n = s.stats.cells.sum(|c| c.limited[l as usize].get());
            if n > 0 {
                let mut labels = up(s);
                labels.push(("limit", l.as_str()));
                limited.push((labels, n));
            }
        }
    }
    out.counter(
        "weir_upstream_limited",
        "Requests refused at once (503) because a limit of the upstream was full.",
        limited,
    )?;
    out.gauge(
        "weir_upstream_pending_requests",
        "Requests waiting for a response head, counted against max_pending_requests.",
        shown.iter().map(|s| (up(s), s.probe.pending() as f64)),
    )?;
    out.gauge(
        "weir_upstream_panic_mode",
        "1 while too few endpoints are healthy and the balancer uses all of them.",
        shown.iter().map(|s| (up(s), flag(s.probe.in_panic()))),
    )?;
    out.gauge(
        "weir_upstream_endpoint_healthy",
        "1 when the balancer may pick the endpoint (active checks passing, not ejected), else 0.",
        per_endpoint(shown, |e| flag(e.healthy)),
    )?;
    out.gauge(
        "weir_upstream_endpoint_ejected",
        "1 while passive health (outlier detection) has the endpoint ejected, else 0.",
        per_endpoint(shown, |e| flag(e.ejected)),
    )?;
    out.counter(
        "weir_upstream_endpoint_ejections",
        "Times passive health ejected the endpoint.",
        per_endpoint(shown, |e| e.stats.cells.sum(|c| c.ejections.get())),
    )?;
    out.gauge(
        "weir_upstream_requests_in_flight",
        "Tries sent to the endpoint whose response has not ended.",
        per_endpoint(shown, |e| e.in_flight as f64),
    )?;
    out.gauge(
        "weir_upstream_connections_open",
        "Pool connections open or opening to the endpoint, idle and busy.",
        per_endpoint(shown, |e| e.open as f64),
    )?;
    out.gauge(
        "weir_upstream_connections_idle",
        "Idle pool connections to the endpoint (HTTP/1.1 kept alive, HTTP/2 without streams).",
        per_endpoint(shown, |e| e.idle as f64),
    )?;
    out.counter(
        "weir_upstream_connections_opened",
        "Pool connections opened to the endpoint (health check connections excluded).",
        per_endpoint(shown, |e| e.stats.cells.sum(|c| c.opened.get())),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Fixed(Vec<(String, Arc<EndpointStats>, bool)>);

    impl UpstreamProbe for Fixed {
        fn endpoints(&self) -> Vec<EndpointNow> {
            self.0
                .iter()
                .map(|(address, stats, healthy)| EndpointNow {
                    address: address.clone(),
                    stats: stats.clone(),
                    healthy: *healthy,
                    ejected: !*healthy,
                    in_flight: 2,
                    open: 3,
                    idle: 1,
                })
                .collect()
        }
        fn pending(&self) -> u64 {
            4
        }
        fn in_panic(&self) -> bool {
            false
        }
    }

    fn line<'t>(text: &'t str, prefix: &str) -> Vec<&'t str> {
        text.lines().filter(|l| l.starts_with(prefix)).collect()
    }

    #[test]
    fn an_upstream_shows_its_endpoints_counts_and_gauges_while_it_lives() {
        let reg = super::super::global();
        let stats = reg.upstream("metrics-unit-upstream");
        let a = stats.endpoint("10.0.0.1:80");
        let b = stats.endpoint("10.0.0.2:80");
        a.answered(Duration::from_millis(2));
        a.answered(Duration::from_millis(2));
        a.tried(TryOutcome::ConnectTimeout);
        b.tried(TryOutcome::ConnectError);
        b.ejected();
        stats.retried();
        stats.retry_refused();
        stats.limited(LimitKind::Connections);
        let probe: Arc<dyn UpstreamProbe> = Arc::new(Fixed(vec![
            ("10.0.0.1:80".into(), a.clone(), true),
            ("10.0.0.2:80".into(), b.clone(), false),
        ]));
        stats.show(Arc::downgrade(&probe));

        let (_, text) = super::super::render(false);
        let u = "upstream=\"metrics-unit-upstream\"";
        for expected in [
            format!(
                "weir_upstream_attempts_total{{{u},endpoint=\"10.0.0.1:80\",outcome=\"response\"}} 2\n"
            ),
            format!(
                "weir_upstream_attempts_total{{{u},endpoint=\"10.0.0.1:80\",outcome=\"connect_timeout\"}} 1\n"
            ),
            format!(
                "weir_upstream_attempts_total{{{u},endpoint=\"10.0.0.2:80\",outcome=\"connect_error\"}} 1\n"
            ),
            format!(
                "weir_upstream_response_head_duration_seconds_bucket{{{u},endpoint=\"10.0.0.1:80\",le=\"0.0025\"}} 2\n"
            ),
            format!("weir_upstream_retries_total{{{u}}} 1\n"),
            format!("weir_upstream_retry_budget_exhausted_total{{{u}}} 1\n"),
            format!("weir_upstream_limited_total{{{u},limit=\"connections\"}} 1\n"),
            format!("weir_upstream_pending_requests{{{u}}} 4.0\n"),
            format!("weir_upstream_endpoint_healthy{{{u},endpoint=\"10.0.0.2:80\"}} 0.0\n"),
            format!("weir_upstream_endpoint_ejected{{{u},endpoint=\"10.0.0.2:80\"}} 1.0\n"),
            format!("weir_upstream_endpoint_ejections_total{{{u},endpoint=\"10.0.0.2:80\"}} 1\n"),
            format!("weir_upstream_requests_in_flight{{{u},endpoint=\"10.0.0.1:80\"}} 2.0\n"),
            format!("weir_upstream_connections_idle{{{u},endpoint=\"10.0.0.1:80\"}} 1.0\n"),
        ] {
            assert!(text.contains(&expected), "missing {expected}in\n{text}");
        }
        // A family is whole: one TYPE line, all its series after it.
        assert_eq!(
            line(&text, "# TYPE weir_upstream_attempts_total counter").len(),
            1
        );

        // DNS drops 10.0.0.2: it is shown no more, and once nothing holds
        // its stats they are forgotten.
        let probe2: Arc<dyn UpstreamProbe> =
            Arc::new(Fixed(vec![("10.0.0.1:80".into(), a.clone(), true)]));
        stats.show(Arc::downgrade(&probe2));
        drop((probe, b));
        let (_, text) = super::super::render(false);
        assert!(!text.contains("10.0.0.2:80"), "{text}");
        assert!(text.contains(&format!("{u},endpoint=\"10.0.0.1:80\"")));
        assert_eq!(
            stats
                .endpoint("10.0.0.2:80")
                .tries(TryOutcome::ConnectError),
            0
        );

        // The upstream is gone (a reload removed it): nothing is shown.
        drop(probe2);
        let (_, text) = super::super::render(false);
        assert!(!text.contains(u), "{text}");
    }

    #[test]
    fn the_same_address_twice_is_one_series() {
        let stats = UpstreamStats::default();
        let s = stats.endpoint("10.0.0.9:80");
        let twice = merged(vec![
            EndpointNow {
                address: "10.0.0.9:80".into(),
                stats: s.clone(),
                healthy: true,
                ejected: false,
                in_flight: 1,
                open: 2,
                idle: 1,
            },
            EndpointNow {
                address: "10.0.0.9:80".into(),
                stats: s,
                healthy: false,
                ejected: false,
                in_flight: 1,
                open: 1,
                idle: 0,
            },
        ]);
        assert_eq!(twice.len(), 1);
        assert!(!twice[0].healthy);
        assert_eq!(
            (twice[0].in_flight, twice[0].open, twice[0].idle),
            (2, 3, 1)
        );
    }
}
