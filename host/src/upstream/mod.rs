//! Upstreams: a named set of endpoints, the balancer that picks one for a
//! request, and the keep-alive connection pool to each endpoint. The proxy
//! asks an [`Upstream`] for an endpoint and a ready connection; it never
//! opens sockets itself.

mod pool;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::config::UpstreamConfig;

pub use pool::{ConnectError, Connection};

/// One address traffic can be sent to.
#[derive(Debug)]
pub struct Endpoint {
    pub addr: SocketAddr,
    /// As written in the configuration (`host:port`), for logs.
    pub label: String,
    pub weight: u32,
    pool: pool::EndpointPool,
}

/// A named group of endpoints with its balancing state.
#[derive(Debug)]
pub struct Upstream {
    pub config: UpstreamConfig,
    pub endpoints: Vec<Endpoint>,
    /// Smooth weighted round-robin order, precomputed: index `i` of the
    /// rotation is the endpoint to use for the i-th pick.
    schedule: Vec<u32>,
    next: AtomicUsize,
}

impl Upstream {
    /// Builds an upstream from resolved addresses, one per configured
    /// endpoint in order. `workers` sizes the per-worker connection pools.
    pub fn new(config: UpstreamConfig, addrs: Vec<SocketAddr>, workers: usize) -> Upstream {
        let endpoints: Vec<Endpoint> = config
            .endpoints
            .iter()
            .zip(addrs)
            .map(|(e, addr)| Endpoint {
                addr,
                label: format!("{}:{}", e.host, e.port),
                weight: e.weight,
                pool: pool::EndpointPool::new(workers, &config.pool),
            })
            .collect();
        let weights: Vec<u32> = endpoints.iter().map(|e| e.weight).collect();
        Upstream {
            schedule: smooth_weighted_schedule(&weights),
            endpoints,
            config,
            next: AtomicUsize::new(0),
        }
    }

    /// Picks the endpoint for the next request.
    pub fn pick(&self) -> Option<usize> {
        if self.schedule.is_empty() {
            return None;
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.schedule.len();
        Some(self.schedule[i] as usize)
    }

    /// A connection to endpoint `ep`, reused from the pool when one is idle.
    pub async fn connect(&self, ep: usize) -> Result<Connection, ConnectError> {
        let e = &self.endpoints[ep];
        e.pool
            .checkout(e.addr, self.config.connect_timeout, &self.config.pool)
            .await
    }

    /// A fresh connection that is never pooled, for protocol upgrades.
    pub async fn connect_for_upgrade(&self, ep: usize) -> Result<Connection, ConnectError> {
        let e = &self.endpoints[ep];
        pool::connect(e.addr, self.config.connect_timeout, true).await
    }

    /// Hands a connection whose response finished back to its pool.
    pub fn give_back(&self, ep: usize, conn: Connection) {
        self.endpoints[ep].pool.put(conn, &self.config.pool);
    }
}

/// The order nginx's smooth weighted round robin produces, computed once:
/// weights 5,1,1 give a a b a c a a rather than a a a a a b c.
fn smooth_weighted_schedule(weights: &[u32]) -> Vec<u32> {
    let total: i64 = weights.iter().map(|w| i64::from(*w)).sum();
    let mut current = vec![0i64; weights.len()];
    let mut out = Vec::with_capacity(total as usize);
    for _ in 0..total {
        let mut best = 0;
        for (i, w) in weights.iter().enumerate() {
            current[i] += i64::from(*w);
            if current[i] > current[best] {
                best = i;
            }
        }
        current[best] -= total;
        out.push(best as u32);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smooth_schedule_interleaves() {
        assert_eq!(
            smooth_weighted_schedule(&[5, 1, 1]),
            vec![0, 0, 1, 0, 2, 0, 0]
        );
        assert_eq!(smooth_weighted_schedule(&[1, 1]), vec![0, 1]);
        assert!(smooth_weighted_schedule(&[]).is_empty());
    }

    #[test]
    fn schedule_honours_weights() {
        let w = [3, 7, 1, 9];
        let s = smooth_weighted_schedule(&w);
        for (i, weight) in w.iter().enumerate() {
            assert_eq!(
                s.iter().filter(|x| **x as usize == i).count(),
                *weight as usize
            );
        }
    }
}
