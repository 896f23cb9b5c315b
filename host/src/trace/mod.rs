//! Distributed tracing: the W3C trace context every request carries
//! upstream (`context.rs`), the spans a sampled request records on its
//! worker (`span.rs`), and their export over OTLP/HTTP by a thread of its
//! own (`export.rs`, `otlp.rs`). Off by default (`[tracing] enabled`);
//! when off, nothing here runs and requests carry no trace.
//!
//! **Why not the OpenTelemetry SDK.** Only the protocol's message types
//! come from `opentelemetry-proto` (without its gRPC transport), encoded
//! with `prost`, and posted with hyper's client connection, already in
//! the tree. The SDK's batch span processor does bound its queue and
//! counts what it drops, but keeps that count to itself (a log line at
//! the first drop and at shutdown), where Weir must show drops and failed
//! posts in `/metrics`; and spans would be built on the worker through its
//! `Tracer` (a context, a span object with its attribute list, a
//! processor call per span) while the request runs. Here the worker only
//! fills a plain struct the request owns and hands it over once, at the
//! request's end; the exporter thread builds the OTLP messages.
//!
//! Below `conn` and `proxy`: it knows requests only as `http` heads, and
//! routes, upstreams and plugins by name.

pub mod context;
mod export;
mod otlp;
pub mod record;
pub mod span;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

pub use context::{Context, Policy, SpanId, TraceId};
pub use export::Exporter;
pub use span::{MAX_ATTRIBUTE_BYTES, MAX_CHILD_SPANS, PluginCalls, Trace};

use crate::config::TracingConfig;

/// Tracing as every listener's requests see it, fixed at start-up.
#[derive(Debug)]
pub struct Tracing {
    policy: Policy,
    /// Where sampled requests' spans go, when they are exported.
    export: Option<Arc<Exporter>>,
}

impl Tracing {
    /// Tracing for `cfg`, starting its exporter thread when spans are
    /// exported; `None` when tracing is off.
    pub fn start(cfg: &TracingConfig) -> std::io::Result<Option<Tracing>> {
        if !cfg.enabled {
            return Ok(None);
        }
        let export = cfg.otlp.as_ref().map(Exporter::start).transpose()?;
        Ok(Some(Tracing {
            policy: Policy {
                trust_client: cfg.trust_client_headers,
                sample_rate: cfg.sample_rate,
            },
            export,
        }))
    }

    /// Starts a request's trace: decides its context from the client's
    /// headers and puts the ones the upstream receives in their place
    /// ([`Context::propagate`]), and begins recording its spans when it
    /// is sampled and spans are exported. `started`: when the request
    /// began (its server span's start).
    pub fn begin<B>(
        &self,
        req: &mut http::Request<B>,
        started: Instant,
        client: IpAddr,
        tls: bool,
    ) -> Box<Trace> {
        let context = Context::propagate(req.headers_mut(), self.policy);
        let spans = match &self.export {
            Some(e) if context.sampled => {
                Some(span::Spans::new(e.clone(), req, started, client, tls))
            }
            _ => None,
        };
        Box::new(Trace {
            context,
            spans: spans.map(Box::new),
        })
    }
}
