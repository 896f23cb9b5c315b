//! Endpoint discovery: IP endpoints are static; a DNS name is resolved at
//! start (every address it gives becomes an endpoint) and again every
//! `dns_refresh`. A new resolution is merged into the current set by
//! address, so endpoints that stay keep their pools, latency estimates and
//! health, and only those that appear or vanish change. A name that fails
//! to resolve later keeps its previous endpoints: a resolver hiccup must
//! not empty an upstream. An upstream never has more than
//! `limits::MAX_ENDPOINTS` (1,024) endpoints, however many addresses its
//! names give.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Weak};
use std::time::Duration;

use super::{Endpoint, Upstream};
use crate::config::{EndpointConfig, UpstreamConfig, limits};

/// At most this many addresses are taken from one DNS answer.
pub const MAX_ADDRS_PER_NAME: usize = 64;

/// A configured endpoint that could not be resolved.
#[derive(Debug, thiserror::Error)]
#[error("cannot resolve `{endpoint}`: {reason}")]
pub struct ResolveError {
    pub endpoint: String,
    pub reason: String,
}

/// Resolves every configured endpoint: pairs of entry index and address.
pub async fn resolve(cfg: &UpstreamConfig) -> Result<Vec<(usize, SocketAddr)>, ResolveError> {
    let mut out = Vec::with_capacity(cfg.endpoints.len());
    for (i, e) in cfg.endpoints.iter().enumerate() {
        let addrs = resolve_one(e).await.map_err(|reason| ResolveError {
            endpoint: format!("{}:{}", e.host, e.port),
            reason,
        })?;
        out.extend(addrs.into_iter().map(|a| (i, a)));
    }
    cap(&cfg.name, &mut out);
    Ok(out)
}

/// Keeps an upstream at [`limits::MAX_ENDPOINTS`] endpoints however many
/// addresses its names resolve to: balancer tables are sized for it.
fn cap(upstream: &str, resolved: &mut Vec<(usize, SocketAddr)>) {
    if resolved.len() > limits::MAX_ENDPOINTS {
        tracing::warn!(%upstream, resolved = resolved.len(), kept = limits::MAX_ENDPOINTS, "too many addresses; keeping the first ones");
        resolved.truncate(limits::MAX_ENDPOINTS);
    }
}

async fn resolve_one(e: &EndpointConfig) -> Result<Vec<SocketAddr>, String> {
    if let Ok(ip) = e.host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, e.port)]);
    }
    let found = tokio::net::lookup_host((e.host.as_str(), e.port))
        .await
        .map_err(|e| e.to_string())?;
    let mut seen = HashSet::new();
    let addrs: Vec<SocketAddr> = found
        .filter(|a| seen.insert(*a))
        .take(MAX_ADDRS_PER_NAME)
        .collect();
    if addrs.is_empty() {
        return Err("no addresses".into());
    }
    Ok(addrs)
}

/// The new endpoint list: the current endpoint for every (entry, address)
/// that is still resolved, a new one from `make` for each that is new.
fn merge(
    current: &[Arc<Endpoint>],
    resolved: &[(usize, SocketAddr)],
    make: impl Fn(usize, SocketAddr) -> Arc<Endpoint>,
) -> Vec<Arc<Endpoint>> {
    resolved
        .iter()
        .map(|(src, addr)| {
            current
                .iter()
                .find(|e| e.source == *src && e.addr == *addr)
                .cloned()
                .unwrap_or_else(|| make(*src, *addr))
        })
        .collect()
}

/// Re-resolves DNS-named endpoints every `every` until the upstream is dropped.
pub(super) async fn run(up: Weak<Upstream>, every: Duration) {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(up) = up.upgrade() else { return };
        refresh(&up, resolve_one).await;
    }
}

/// One round of re-resolution with `resolve`; true when the endpoint set
/// changed.
async fn refresh(
    up: &Upstream,
    resolve: impl AsyncFn(&EndpointConfig) -> Result<Vec<SocketAddr>, String>,
) -> bool {
    let current = up.endpoints();
    let mut resolved = Vec::with_capacity(current.len());
    for (i, e) in up.config.endpoints.iter().enumerate() {
        match resolve(e).await {
            Ok(addrs) => resolved.extend(addrs.into_iter().map(|a| (i, a))),
            Err(reason) => {
                tracing::warn!(upstream = %up.config.name, endpoint = %format!("{}:{}", e.host, e.port), %reason, "re-resolving failed; keeping the previous addresses");
                resolved.extend(
                    current
                        .iter()
                        .filter(|c| c.source == i)
                        .map(|c| (i, c.addr)),
                );
            }
        }
    }
    cap(&up.config.name, &mut resolved);
    let next = merge(&current, &resolved, |i, a| up.make_endpoint(i, a));
    // DNS answers come in any order: only a change of the set counts.
    let same =
        next.len() == current.len() && next.iter().all(|a| current.iter().any(|b| a.id == b.id));
    if !same {
        tracing::info!(upstream = %up.config.name, before = current.len(), after = next.len(), "endpoints changed");
        up.set_endpoints(next);
    }
    !same
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::*;
    use crate::config::Config;
    use crate::upstream::Tried;

    #[tokio::test]
    async fn merge_keeps_state_of_endpoints_that_stay() {
        let text = "[[listener]]\naddress = \"127.0.0.1:0\"\n[[upstream]]\nname = \"u\"\nendpoints = [\"localhost:8080\", \"10.0.0.9:80\"]\n";
        let cfg = Config::parse(std::path::Path::new("t.toml"), text)
            .unwrap()
            .upstreams[0]
            .clone();
        let resolved = resolve(&cfg).await.unwrap();
        assert!(
            resolved
                .iter()
                .any(|(i, a)| *i == 0 && a.ip().is_loopback())
        );
        assert_eq!(resolved.last().unwrap().1, "10.0.0.9:80".parse().unwrap());

        let a: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let b: SocketAddr = "127.0.0.2:8080".parse().unwrap();
        let c: SocketAddr = "127.0.0.3:8080".parse().unwrap();
        let up = Upstream::new(cfg, &[(0, a), (0, b)], 1);
        let before = up.endpoints();
        before[0].state.outstanding.store(7, Ordering::Relaxed);
        let next = merge(&before, &[(0, a), (0, c)], |i, addr| {
            up.make_endpoint(i, addr)
        });
        assert_eq!(next[0].id, before[0].id);
        assert_eq!(next[0].state.outstanding.load(Ordering::Relaxed), 7);
        assert_ne!(next[1].id, before[1].id);
        assert_eq!(next[1].addr, c);
        up.set_endpoints(next);
        assert_eq!(up.endpoints().len(), 2);
    }

    #[tokio::test]
    async fn refresh_follows_dns_and_survives_its_failures() {
        let text = "[[listener]]\naddress = \"127.0.0.1:0\"\n[[upstream]]\nname = \"u\"\nendpoints = [\"svc.test:80\", \"10.0.0.9:80\"]\n";
        let cfg = Config::parse(std::path::Path::new("t.toml"), text)
            .unwrap()
            .upstreams[0]
            .clone();
        let ip = |s: &str| -> SocketAddr { s.parse().unwrap() };
        let fixed = ip("10.0.0.9:80");
        let up = Upstream::new(
            cfg,
            &[(0, ip("10.1.0.1:80")), (0, ip("10.1.0.2:80")), (1, fixed)],
            1,
        );
        let first = up.endpoints();

        // The name now answers with one old and one new address.
        let answer = |addrs: &'static [&'static str]| {
            async move |e: &EndpointConfig| -> Result<Vec<SocketAddr>, String> {
                if e.host == "svc.test" {
                    Ok(addrs.iter().map(|a| a.parse().unwrap()).collect())
                } else {
                    resolve_one(e).await
                }
            }
        };
        assert!(refresh(&up, answer(&["10.1.0.2:80", "10.1.0.3:80"])).await);
        let second = up.endpoints();
        let addrs: Vec<SocketAddr> = second.iter().map(|e| e.addr).collect();
        assert_eq!(addrs, vec![ip("10.1.0.2:80"), ip("10.1.0.3:80"), fixed]);
        assert_eq!(
            second[0].id, first[1].id,
            "a kept address keeps its endpoint"
        );
        assert_eq!(second[2].id, first[2].id);
        // The live set follows: round robin reaches the new address.
        let picked: Vec<SocketAddr> = (0..3)
            .map(|_| up.pick(None, &Tried::default()).unwrap().addr)
            .collect();
        assert!(picked.contains(&ip("10.1.0.3:80")) && !picked.contains(&ip("10.1.0.1:80")));

        // The same addresses in another order change nothing.
        assert!(!refresh(&up, answer(&["10.1.0.3:80", "10.1.0.2:80"])).await);

        // A failing resolver keeps what the name had.
        let failing = async |e: &EndpointConfig| -> Result<Vec<SocketAddr>, String> {
            if e.host == "svc.test" {
                Err("SERVFAIL".into())
            } else {
                resolve_one(e).await
            }
        };
        let before: Vec<u64> = up.endpoints().iter().map(|e| e.id).collect();
        refresh(&up, failing).await;
        let after: Vec<u64> = up.endpoints().iter().map(|e| e.id).collect();
        assert_eq!(before, after);
    }
}
