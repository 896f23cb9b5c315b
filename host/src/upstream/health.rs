//! Active health checks: every `interval`, each endpoint of an upstream
//! gets `GET path` on a fresh connection, with `timeout` for connect and
//! answer together. `unhealthy_threshold` failures in a row take an
//! endpoint out of the live set; `healthy_threshold` passes in a row bring
//! it back, and also end a passive ejection it may still be serving (the
//! endpoint was restarted: waiting out the ejection would only cost
//! capacity). Endpoints start healthy, so a gateway serves from its first
//! request. Probes run on the runtime that built the upstream (the control
//! thread), never on a worker.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use http::{Request, header};
use tokio::task::JoinSet;

use super::{Endpoint, Upstream};
use crate::body::RequestBody;
use crate::config::HealthCheckConfig;

pub(super) async fn run(up: Weak<Upstream>, cfg: Arc<HealthCheckConfig>) {
    let mut tick = tokio::time::interval(cfg.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(up) = up.upgrade() else { return };
        let mut probes = JoinSet::new();
        for ep in up.endpoints() {
            let cfg = cfg.clone();
            probes.spawn(async move {
                let pass = probe(&ep, &cfg).await;
                (ep, pass)
            });
        }
        while let Some(done) = probes.join_next().await {
            // Publish each change as soon as its verdict is in, not after
            // the round's slowest probe, and log it once it is in effect.
            if let Ok((ep, pass)) = done
                && apply(&ep, pass, &cfg)
            {
                up.refresh(true);
                if pass {
                    tracing::info!(upstream = %up.config.name, endpoint = %ep.label, addr = %ep.addr, "endpoint healthy again");
                } else {
                    tracing::warn!(upstream = %up.config.name, endpoint = %ep.label, addr = %ep.addr, "endpoint failed its health checks");
                }
            }
        }
    }
}

/// One probe: does the endpoint answer `path` with an expected status
/// within the timeout?
async fn probe(ep: &Endpoint, cfg: &HealthCheckConfig) -> bool {
    let attempt = async {
        let mut conn = ep.connect_unpooled(cfg.timeout).await.ok()?;
        let host = cfg.host.as_deref().unwrap_or(&ep.label);
        let req = Request::get(cfg.path.as_str())
            .header(header::HOST, host)
            .header(header::USER_AGENT, "weir-health-check")
            .header(header::CONNECTION, "close")
            .body(RequestBody::Empty)
            .ok()?;
        let resp = conn.sender.send_request(req).await.ok()?;
        Some(resp.status().as_u16())
    };
    match tokio::time::timeout(cfg.timeout, attempt).await {
        Ok(Some(status)) => cfg
            .expected_statuses
            .iter()
            .any(|(lo, hi)| (*lo..=*hi).contains(&status)),
        _ => false,
    }
}

/// Applies one verdict to the endpoint's streaks; true when the endpoint
/// changed state and the live set must be rebuilt.
fn apply(ep: &Endpoint, pass: bool, cfg: &HealthCheckConfig) -> bool {
    let s = &ep.state;
    if pass {
        s.probe_failures.store(0, Ordering::Relaxed);
        let passes = s
            .probe_passes
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1);
        if passes >= cfg.healthy_threshold && s.active_down.load(Ordering::Relaxed) {
            s.active_down.store(false, Ordering::Relaxed);
            ep.uneject();
            return true;
        }
        false
    } else {
        s.probe_passes.store(0, Ordering::Relaxed);
        let failures = s
            .probe_failures
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1);
        if failures >= cfg.unhealthy_threshold && !s.active_down.load(Ordering::Relaxed) {
            s.active_down.store(true, Ordering::Relaxed);
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::PoolConfig;
    use crate::upstream::pool;

    #[test]
    fn thresholds_flip_state_once() {
        let pool = PoolConfig {
            max_idle: 1,
            idle_timeout: Duration::from_secs(1),
        };
        let ep = Endpoint::new(
            "127.0.0.1:1".parse().unwrap(),
            "x:1".into(),
            0,
            1,
            1,
            &pool,
            pool::ConnCounter::new(1),
        );
        let cfg = HealthCheckConfig {
            path: "/".into(),
            host: None,
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            healthy_threshold: 2,
            unhealthy_threshold: 3,
            expected_statuses: vec![(200, 299)],
        };
        let verdicts = [
            false, false, true, false, false, false, false, true, true, true,
        ];
        let flips: Vec<bool> = verdicts.iter().map(|p| apply(&ep, *p, &cfg)).collect();
        assert_eq!(
            flips,
            [
                false, false, false, false, false, true, false, false, true, false
            ]
        );
        assert!(!ep.state.active_down.load(Ordering::Relaxed));
    }
}
