//! `GET /admin/upstreams`: each upstream of the route table serving now,
//! in the configuration's order, with its balancer and protocol, and per
//! endpoint what the balancer sees: its health, the requests in flight on
//! it, its latency estimate and whether the live set holds it.

use std::time::SystemTime;

use serde::Serialize;

use super::status::rfc3339;
use crate::config::BalancerKind;
use crate::router::Router;
use crate::upstream::{Endpoint, Upstream};

#[derive(Serialize)]
pub(super) struct UpstreamsView {
    upstreams: Vec<UpstreamView>,
}

#[derive(Serialize)]
struct UpstreamView {
    name: String,
    balancer: &'static str,
    protocol: &'static str,
    tls: bool,
    /// Whether active health checks run.
    health_check: bool,
    /// Too few endpoints are healthy, so the balancer uses all of them.
    panic: bool,
    endpoints: Vec<EndpointView>,
}

#[derive(Serialize)]
struct EndpointView {
    /// As the configuration names it (`host:port`).
    endpoint: String,
    /// What it resolved to.
    address: String,
    weight: u32,
    /// `healthy`, `unhealthy` (failing its active checks) or `ejected`
    /// (by passive outlier detection, until `ejected_until`).
    health: &'static str,
    ejected_until: Option<String>,
    outstanding: u32,
    /// The peak EWMA of its response times, in milliseconds; `null` until
    /// it has one (only `least_request` measures).
    latency_ewma_ms: Option<f64>,
    /// Whether the balancer picks from it now. The live set is rebuilt on
    /// a health change, and at the first pick after an ejection ends.
    live: bool,
}

/// The view of the upstreams named `names` in `router`; a name the table
/// no longer holds (a reload is being applied) is left out.
pub(super) fn view(router: &Router, names: &[String]) -> UpstreamsView {
    let now = SystemTime::now();
    UpstreamsView {
        upstreams: names
            .iter()
            .filter_map(|n| router.upstream(n))
            .map(|u| upstream(u, now))
            .collect(),
    }
}

fn upstream(u: &Upstream, now: SystemTime) -> UpstreamView {
    let (endpoints, panic) = u.live_view();
    UpstreamView {
        name: u.config.name.clone(),
        balancer: match u.config.balancer {
            BalancerKind::RoundRobin => "round_robin",
            BalancerKind::LeastRequest => "least_request",
            BalancerKind::ConsistentHash(_) => "consistent_hash",
            BalancerKind::Random => "random",
        },
        protocol: u.config.protocol.as_str(),
        tls: u.config.tls.is_some(),
        health_check: u.config.health_check.is_some(),
        panic,
        endpoints: endpoints
            .iter()
            .map(|(e, live)| endpoint(e, *live, now))
            .collect(),
    }
}

fn endpoint(e: &Endpoint, live: bool, now: SystemTime) -> EndpointView {
    let ejected_for = e.ejected_for();
    let health = if e.failing_active_checks() {
        "unhealthy"
    } else if ejected_for.is_some() {
        "ejected"
    } else {
        "healthy"
    };
    EndpointView {
        endpoint: e.label.clone(),
        address: e.addr.to_string(),
        weight: e.weight,
        health,
        ejected_until: ejected_for.map(|d| rfc3339(now + d)),
        outstanding: e.outstanding(),
        latency_ewma_ms: e
            .latency_estimate()
            .map(|d| (d.as_secs_f64() * 1e6).round() / 1e3),
        live,
    }
}
