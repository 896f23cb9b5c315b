//! What a metrics scrape reads from an upstream's live state (see
//! `metrics::upstream`): each endpoint's health, ejection, requests in
//! flight and pool connections, the pending requests and panic mode, all
//! from the atomics and snapshot the balancer itself uses.

use std::sync::atomic::Ordering;

use super::{Upstream, endpoint};
use crate::metrics::upstream::{EndpointNow, UpstreamProbe};

impl UpstreamProbe for Upstream {
    fn endpoints(&self) -> Vec<EndpointNow> {
        let now_ms = endpoint::now_us() / 1000;
        self.live
            .load()
            .all
            .iter()
            .map(|e| EndpointNow {
                address: e.addr.to_string(),
                stats: e.stats().clone(),
                healthy: e.available(now_ms),
                ejected: e.state.ejected_until_ms.load(Ordering::Relaxed) > now_ms,
                in_flight: u64::from(e.state.outstanding.load(Ordering::Relaxed)),
                open: e.open_connections() as u64,
                idle: e.idle_connections() as u64,
            })
            .collect()
    }

    fn pending(&self) -> u64 {
        self.pending.load(Ordering::Relaxed) as u64
    }

    fn in_panic(&self) -> bool {
        self.live.load().panic
    }
}
