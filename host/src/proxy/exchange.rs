//! A request's record, from its head to the end of its response: what the
//! pipeline learns about it on the way (its route, its body's progress),
//! and what it leaves behind when it ends (its counts in the metrics, its
//! spans).
//!
//! The record rides in the response body ([`super::ResponseBody`]), which
//! counts the bytes sent through it, and is finished when the body is
//! dropped: after its last byte, on an error, or when the client goes
//! away mid-body. A request is therefore counted exactly once, with the
//! whole exchange's duration and bytes. With metrics, the access log and
//! tracing off the pipeline keeps no record at all
//! ([`crate::conn::Observe::any`]).

use std::sync::Arc;
use std::time::Instant;

use crate::body::{RequestBody, Stalled};
use crate::metrics::{self, MethodClass, route::Finished};
use crate::router::Router;

/// What the pipeline learns about a request while it runs, on the
/// request's own stack: cheap to fill whether or not it is kept.
#[derive(Default)]
pub struct Trail {
    /// The table the request was routed by (loaded once per request).
    pub router: Option<Arc<Router>>,
    /// Its route's place in `router`.
    pub route: Option<usize>,
    /// The client's body, for its byte count.
    pub body: BodySeen,
    /// Its trace (`[tracing]` on): the context it carries upstream and,
    /// when sampled and exported, the spans it records. Boxed: a request
    /// without tracing carries one pointer of it.
    pub trace: Option<Box<crate::trace::Trace>>,
}

impl Trail {
    /// The request's trace id as lower-case hex (32 characters), when
    /// tracing is on.
    pub fn trace_id_hex(&self) -> Option<String> {
        self.trace.as_ref().map(|t| t.context.trace_id.to_string())
    }
}

/// The client's body as the record sees it: a streamed body counts its
/// own bytes as they pass; one that request-body plugins buffered is
/// counted whole.
#[derive(Default)]
pub struct BodySeen {
    streamed: Option<Arc<Stalled>>,
    buffered: u64,
}

impl BodySeen {
    /// Notes the body on its way upstream.
    pub fn note(&mut self, body: &RequestBody) {
        match body {
            RequestBody::Full(Some(b)) => self.buffered = b.len() as u64,
            _ => self.streamed = body.stalled().cloned(),
        }
    }

    fn bytes(&self) -> u64 {
        self.streamed
            .as_ref()
            .map_or(self.buffered, |b| b.received())
    }
}

/// A kept record, finished when dropped.
pub struct Exchange {
    started: Instant,
    method: MethodClass,
    trail: Trail,
    status: u16,
    /// Body bytes the client has been sent so far.
    pub bytes_out: u64,
    metrics: bool,
}

impl Exchange {
    pub fn new(
        started: Instant,
        method: MethodClass,
        trail: Trail,
        status: u16,
        metrics: bool,
    ) -> Exchange {
        Exchange {
            started,
            method,
            trail,
            status,
            bytes_out: 0,
            metrics,
        }
    }
}

impl Drop for Exchange {
    fn drop(&mut self) {
        let duration = self.started.elapsed();
        let route = match (&self.trail.router, self.trail.route) {
            (Some(router), Some(i)) => router.route_at(i),
            _ => None,
        };
        if self.metrics {
            let finished = Finished {
                method: self.method,
                status: self.status,
                duration,
                bytes_in: self.trail.body.bytes(),
                bytes_out: self.bytes_out,
            };
            match route {
                Some(route) => route.stats.record(&finished),
                None => metrics::global().no_route().record(&finished),
            }
        }
        if let Some(trace) = self.trail.trace.take() {
            let end = self.started + duration;
            trace.finish(self.status, end, route.map(|r| r.name.as_str()));
        }
    }
}
