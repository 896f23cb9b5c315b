//! What Weir counts and how a scrape reads it: the process-wide metrics
//! [`Registry`], its sections (one per kind of thing counted: routes,
//! upstreams, listeners, plugins, the access log, the process), and the
//! exposition of `GET /metrics` in the Prometheus text format or, when the
//! scraper's `Accept` asks for it, OpenMetrics.
//!
//! **Counting stays off shared cache lines.** Each route, upstream,
//! listener and plugin gets its stats object once, from configuration, by
//! name ([`Family::get`]); the hot path counts into that object's cells for
//! the current thread ([`cells::PerThread`]) with a plain load and store.
//! A scrape sums every thread's cells. No request writes an atomic that
//! another worker writes.
//!
//! **Labels come from configuration only**: route, upstream, endpoint,
//! listener and plugin names, plus small fixed sets (method class, status
//! class, phase, outcome, reason). Nothing a client sends becomes a label
//! value, so a client cannot grow the number of series.
//!
//! The exposition format is the `prometheus-client` crate's encoder (both
//! the Prometheus 0.0.4 text format and OpenMetrics, with their escaping
//! and histogram layout); Weir feeds it sums it reads at scrape time
//! through one collector, because its own counters are per thread and its
//! gauges live in the objects they describe.

pub mod access_log;
pub mod cells;
pub mod fleet;
pub mod listener;
pub mod plugin;
pub mod process;
pub mod route;
pub mod trace;
pub mod upstream;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeCounterValue, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

pub use cells::{BOUNDS, Bounds, Hist, HistSum, PerThread, Tally};
pub use listener::ListenerStats;
pub use route::{MethodClass, RouteStats};
pub use upstream::{EndpointStats, UpstreamStats};

/// The label value of requests that matched no route (route names are
/// `[A-Za-z0-9._-]+`, so it cannot be a route's name).
pub const NO_ROUTE: &str = "(none)";

/// Stats objects of one kind, by configuration name. An object lives as
/// long as something holds it or its name stays in the configuration, so
/// counts carry over a reload that keeps the name.
#[derive(Debug)]
pub struct Family<T>(Mutex<BTreeMap<String, Arc<T>>>);

impl<T> Default for Family<T> {
    fn default() -> Self {
        Family(Mutex::new(BTreeMap::new()))
    }
}

impl<T: Default> Family<T> {
    /// The stats object of `name`, made on first use.
    pub fn get(&self, name: &str) -> Arc<T> {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = map.get(name) {
            return s.clone();
        }
        let s = Arc::new(T::default());
        map.insert(name.to_owned(), s.clone());
        s
    }
}

impl<T> Family<T> {
    /// Forgets the names `keep` rejects, once the configuration that named
    /// them is gone (a reload), so removed routes stop being exposed.
    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|name, _| keep(name));
    }

    /// The objects by name, in name order (a scrape's snapshot).
    pub fn snapshot(&self) -> Vec<(String, Arc<T>)> {
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.iter().map(|(n, s)| (n.clone(), s.clone())).collect()
    }
}

/// Everything `/metrics` shows, for the whole process.
#[derive(Debug, Default)]
pub struct Registry {
    pub routes: Family<RouteStats>,
    pub upstreams: Family<UpstreamStats>,
    pub listeners: Family<ListenerStats>,
    pub plugins: Family<plugin::PluginStats>,
    /// The access log's lines: queued, dropped, written.
    pub access_log: PerThread<access_log::AccessLogCells>,
    /// Span export (`[tracing.otlp]`).
    pub trace: trace::TraceStats,
    /// Fleet state (`[state] backend = "redis"`).
    pub fleet: fleet::FleetStats,
    /// The stats of requests no route matched, kept at hand.
    no_route: OnceLock<Arc<RouteStats>>,
}

/// The process's registry.
pub fn global() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(Registry::default)
}

/// The `Content-Type` of the Prometheus text format.
pub const TEXT_CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;
/// The `Content-Type` of OpenMetrics text.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Whether a scraper's `Accept` header asks for OpenMetrics (Prometheus
/// sends it first in its list when it can read it).
pub fn wants_openmetrics(accept: Option<&http::HeaderValue>) -> bool {
    accept
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/openmetrics-text"))
}

/// The exposition of every section: `(content type, body)`.
pub fn render(openmetrics: bool) -> (&'static str, String) {
    let mut registry = prometheus_client::registry::Registry::default();
    registry.register_collector(Box::new(Scrape));
    let mut out = String::with_capacity(64 * 1024);
    let done = if openmetrics {
        prometheus_client::encoding::text::encode(&mut out, &registry)
    } else {
        prometheus_client::encoding::prometheus_text::encode(&mut out, &registry)
    };
    // Writing into a String cannot fail, and every value is a number or a
    // configuration name; an error would be an encoder bug, shown as such.
    if let Err(e) = done {
        out.push_str(&format!("# encoding failed: {e}\n"));
    }
    if openmetrics {
        (OPENMETRICS_CONTENT_TYPE, out)
    } else {
        (TEXT_CONTENT_TYPE, out)
    }
}

/// The collector a scrape runs: every section, in a fixed order.
#[derive(Debug)]
struct Scrape;

impl Collector for Scrape {
    fn encode(&self, encoder: DescriptorEncoder<'_>) -> fmt::Result {
        let reg = global();
        let mut out = Out(encoder);
        reg.routes_section(&mut out)?;
        reg.upstreams_section(&mut out)?;
        reg.listeners_section(&mut out)?;
        reg.plugins_section(&mut out)?;
        access_log::encode(&reg.access_log, &mut out)?;
        reg.trace_section(&mut out)?;
        reg.fleet_section(&mut out)?;
        process::encode(&mut out)?;
        Ok(())
    }
}

/// Labels of one series: `(name, value)` pairs, values from configuration
/// or fixed sets only.
pub type Labels<'a> = Vec<(&'static str, &'a str)>;

/// The encoder as the sections use it: one call per metric family with all
/// its series, so a family is never split (the text formats require a
/// family's samples together). A family without series is left out.
pub struct Out<'a>(DescriptorEncoder<'a>);

impl Out<'_> {
    /// A counter family; `name` without `_total` (the encoder adds it).
    /// Names are whole (`weir_…`, or `process_…` for the conventional
    /// process metrics).
    pub fn counter<'l, V: EncodeCounterValue + Copy + fmt::Debug>(
        &mut self,
        name: &str,
        help: &str,
        series: impl IntoIterator<Item = (Labels<'l>, V)>,
    ) -> fmt::Result {
        let series: Vec<_> = series.into_iter().collect();
        if series.is_empty() {
            return Ok(());
        }
        let mut fam = self
            .0
            .encode_descriptor(name, help, None, MetricType::Counter)?;
        for (labels, v) in &series {
            ConstCounter::new(*v).encode(fam.encode_family(labels)?)?;
        }
        Ok(())
    }

    /// A gauge family.
    pub fn gauge<'l>(
        &mut self,
        name: &str,
        help: &str,
        series: impl IntoIterator<Item = (Labels<'l>, f64)>,
    ) -> fmt::Result {
        let series: Vec<_> = series.into_iter().collect();
        if series.is_empty() {
            return Ok(());
        }
        let mut fam = self
            .0
            .encode_descriptor(name, help, None, MetricType::Gauge)?;
        for (labels, v) in &series {
            ConstGauge::new(*v).encode(fam.encode_family(labels)?)?;
        }
        Ok(())
    }

    /// A histogram family of durations in seconds, with `bounds`.
    pub fn histogram<'l, const N: usize>(
        &mut self,
        name: &str,
        help: &str,
        bounds: &Bounds<N>,
        series: impl IntoIterator<Item = (Labels<'l>, HistSum<N>)>,
    ) -> fmt::Result {
        let series: Vec<_> = series.into_iter().collect();
        if series.is_empty() {
            return Ok(());
        }
        let mut fam = self
            .0
            .encode_descriptor(name, help, None, MetricType::Histogram)?;
        for (labels, h) in &series {
            fam.encode_family(labels)?.encode_histogram::<NoExemplar>(
                h.sum_seconds(),
                h.count(),
                &h.pairs(bounds),
                None,
            )?;
        }
        Ok(())
    }
}

/// Histograms here carry no exemplars.
type NoExemplar = Vec<(String, String)>;

#[cfg(test)]
mod tests;
