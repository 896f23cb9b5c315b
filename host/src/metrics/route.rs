//! Per-route request metrics: requests by method class and status class,
//! the request duration histogram, and bytes in and out. A request is
//! counted once, when its response ends (its body sent, failed or
//! abandoned by the client), so the duration and byte counts are the
//! whole exchange's.

use std::fmt;
use std::time::Duration;

use http::Method;

use super::{BOUNDS, Family, Hist, HistSum, Out, PerThread, Registry, Tally};

/// The fixed set a request's method is counted under: the common methods
/// by name, everything else (extension methods a client invents) as
/// `other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MethodClass {
    Get,
    Head,
    Post,
    Put,
    Delete,
    Patch,
    Options,
    Other,
}

impl MethodClass {
    const ALL: [MethodClass; 8] = [
        MethodClass::Get,
        MethodClass::Head,
        MethodClass::Post,
        MethodClass::Put,
        MethodClass::Delete,
        MethodClass::Patch,
        MethodClass::Options,
        MethodClass::Other,
    ];

    pub fn of(m: &Method) -> MethodClass {
        match *m {
            Method::GET => MethodClass::Get,
            Method::HEAD => MethodClass::Head,
            Method::POST => MethodClass::Post,
            Method::PUT => MethodClass::Put,
            Method::DELETE => MethodClass::Delete,
            Method::PATCH => MethodClass::Patch,
            Method::OPTIONS => MethodClass::Options,
            _ => MethodClass::Other,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            MethodClass::Get => "GET",
            MethodClass::Head => "HEAD",
            MethodClass::Post => "POST",
            MethodClass::Put => "PUT",
            MethodClass::Delete => "DELETE",
            MethodClass::Patch => "PATCH",
            MethodClass::Options => "OPTIONS",
            MethodClass::Other => "other",
        }
    }
}

/// Status classes `1xx` to `5xx`.
const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

fn status_class(status: u16) -> usize {
    usize::from(status / 100).clamp(1, 5) - 1
}

/// One thread's counts for one route.
#[derive(Debug, Default)]
pub struct RouteCells {
    requests: [[Tally; 5]; 8],
    duration: Hist,
    bytes_in: Tally,
    bytes_out: Tally,
}

/// A route's stats (one per route name, kept over reloads).
#[derive(Debug, Default)]
pub struct RouteStats {
    cells: PerThread<RouteCells>,
}

/// What one finished request adds to its route.
#[derive(Debug, Clone, Copy)]
pub struct Finished {
    pub method: MethodClass,
    pub status: u16,
    /// From the request head received to the response's end.
    pub duration: Duration,
    /// Body bytes received from the client.
    pub bytes_in: u64,
    /// Body bytes sent to the client.
    pub bytes_out: u64,
}

impl RouteStats {
    #[inline]
    pub fn record(&self, f: &Finished) {
        let c = self.cells.local();
        c.requests[f.method as usize][status_class(f.status)].inc();
        c.duration.observe(f.duration, &BOUNDS);
        c.bytes_in.add(f.bytes_in);
        c.bytes_out.add(f.bytes_out);
    }

    /// Requests counted so far (all methods and statuses), for tests.
    pub fn requests(&self) -> u64 {
        self.cells
            .sum(|c| c.requests.iter().flatten().map(Tally::get).sum())
    }
}

impl Registry {
    /// The stats of route `name` ([`super::NO_ROUTE`] for requests no
    /// route matched).
    pub fn route(&self, name: &str) -> std::sync::Arc<RouteStats> {
        self.routes.get(name)
    }

    /// The stats of requests that matched no route.
    pub fn no_route(&self) -> &RouteStats {
        self.no_route
            .get_or_init(|| self.routes.get(super::NO_ROUTE))
    }

    /// Forgets routes the configuration no longer names (after a reload
    /// swapped in a table of `names`).
    pub fn keep_routes<'a>(&self, names: impl Iterator<Item = &'a str>) {
        let names: std::collections::HashSet<&str> = names.collect();
        self.routes
            .retain(|n| n == super::NO_ROUTE || names.contains(n));
    }

    pub(super) fn routes_section(&self, out: &mut Out<'_>) -> fmt::Result {
        encode(&self.routes, out)
    }
}

fn encode(routes: &Family<RouteStats>, out: &mut Out<'_>) -> fmt::Result {
    let routes = routes.snapshot();
    let mut requests = Vec::new();
    let mut durations = Vec::new();
    let mut bytes_in = Vec::new();
    let mut bytes_out = Vec::new();
    for (name, s) in &routes {
        for m in MethodClass::ALL {
            for (i, class) in STATUS_CLASSES.iter().enumerate() {
                let n = s.cells.sum(|c| c.requests[m as usize][i].get());
                if n > 0 {
                    let labels = vec![
                        ("route", name.as_str()),
                        ("method", m.as_str()),
                        ("status_class", *class),
                    ];
                    requests.push((labels, n));
                }
            }
        }
        let mut h = HistSum::default();
        for c in s.cells.all() {
            h.add(&c.duration);
        }
        if h.count() == 0 {
            continue;
        }
        durations.push((vec![("route", name.as_str())], h));
        bytes_in.push((
            vec![("route", name.as_str())],
            s.cells.sum(|c| c.bytes_in.get()),
        ));
        bytes_out.push((
            vec![("route", name.as_str())],
            s.cells.sum(|c| c.bytes_out.get()),
        ));
    }
    out.counter(
        "weir_requests",
        "Requests by route, method class and status class, counted when the response ends.",
        requests,
    )?;
    out.histogram(
        "weir_request_duration_seconds",
        "Time from a request's head received to its response's end, by route.",
        &BOUNDS,
        durations,
    )?;
    out.counter(
        "weir_request_body_bytes",
        "Request body bytes received from clients, by route.",
        bytes_in,
    )?;
    out.counter(
        "weir_response_body_bytes",
        "Response body bytes sent to clients, by route.",
        bytes_out,
    )
}
