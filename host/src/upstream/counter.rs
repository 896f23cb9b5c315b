//! The count of an upstream's open connections against its
//! `max_connections` ([`ConnCounter`]), and the unit of it each open
//! connection holds ([`ConnSlot`]), with its endpoint's open count (which
//! the metrics read). Below both kinds of connection (`h1.rs`, `http2.rs`)
//! and the pool that opens them.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Open connections of one upstream, against its limit.
#[derive(Debug, Clone)]
pub struct ConnCounter {
    open: Arc<AtomicUsize>,
    limit: usize,
}

/// One unit of a [`ConnCounter`] and of its endpoint's open count, given
/// back when the connection drops.
#[derive(Debug)]
pub(super) struct ConnSlot {
    upstream: Arc<AtomicUsize>,
    endpoint: Arc<AtomicUsize>,
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        self.upstream.fetch_sub(1, Ordering::Relaxed);
        self.endpoint.fetch_sub(1, Ordering::Relaxed);
    }
}

impl ConnCounter {
    pub fn new(limit: usize) -> ConnCounter {
        ConnCounter {
            open: Arc::new(AtomicUsize::new(0)),
            limit,
        }
    }

    /// A unit for a connection to the endpoint whose open count is
    /// `endpoint`, or the limit's refusal.
    pub(super) fn acquire(&self, endpoint: &Arc<AtomicUsize>) -> Result<ConnSlot, LimitReached> {
        if self.open.fetch_add(1, Ordering::Relaxed) >= self.limit {
            self.open.fetch_sub(1, Ordering::Relaxed);
            return Err(LimitReached { limit: self.limit });
        }
        endpoint.fetch_add(1, Ordering::Relaxed);
        Ok(ConnSlot {
            upstream: self.open.clone(),
            endpoint: endpoint.clone(),
        })
    }
}

/// The upstream's `max_connections` are all open.
#[derive(Debug, Clone, Copy)]
pub struct LimitReached {
    pub limit: usize,
}
