//! A request's record, from its head to the end of its response: what the
//! pipeline learns about it on the way (its route, its body's progress,
//! its tries upstream, the fields its plugins set), and what it leaves
//! behind when it ends (its counts in the metrics, its access-log line,
//! its spans).
//!
//! The record rides in the response body ([`super::ResponseBody`]), which
//! counts the bytes sent through it, and is finished when the body is
//! dropped: after its last byte, on an error, or when the client goes
//! away mid-body. A request is therefore counted and logged exactly once,
//! with the whole exchange's duration and bytes. With metrics, the
//! access log and tracing off the pipeline keeps no record at all
//! ([`crate::conn::Observe::any`]).

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use http::{HeaderValue, Method, Uri, Version, header};

use crate::access_log::Line;
use crate::body::{RequestBody, Stalled};
use crate::conn::ConnContext;
use crate::metrics::{self, MethodClass, route::Finished};
use crate::plugin::LogFields;
use crate::router::Router;
use crate::upstream::{Endpoint, Upstream};

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
    /// Its tries upstream.
    pub tries: Tries,
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

/// A request's tries upstream, as the access log shows them: how many,
/// where the last one went, and the time from the first try's start to
/// the end of the last (its response head, or its failure). The upstream
/// and endpoint are kept only when `wanted` (the access log is on).
#[derive(Default)]
pub struct Tries {
    pub wanted: bool,
    count: u32,
    time: Option<Duration>,
    upstream: Option<Arc<Upstream>>,
    endpoint: Option<Arc<Endpoint>>,
}

impl Tries {
    /// The last try is over: `count` tries since `started`, the last on
    /// `ep`.
    pub fn note(
        &mut self,
        count: u32,
        upstream: &Arc<Upstream>,
        ep: &Arc<Endpoint>,
        started: Instant,
    ) {
        self.count = count;
        if self.wanted {
            self.time = Some(started.elapsed());
            self.upstream = Some(upstream.clone());
            self.endpoint = Some(ep.clone());
        }
    }
}

/// What the access log needs beyond the metrics, copied from the request
/// head before the pipeline consumes it.
pub struct LogInfo {
    pub cx: Arc<ConnContext>,
    pub id: HeaderValue,
    pub method: Method,
    pub uri: Uri,
    pub version: Version,
    pub user_agent: Option<HeaderValue>,
    pub referer: Option<HeaderValue>,
    pub plugin: LogFields,
}

impl LogInfo {
    pub fn of(
        cx: &Arc<ConnContext>,
        req: &http::Request<crate::body::ClientBody>,
        id: &HeaderValue,
    ) -> LogInfo {
        // Two header look-ups a line need not pay for when it shows
        // neither header (the default JSON fields).
        let heads = cx
            .observe
            .access_log
            .as_ref()
            .is_some_and(|l| l.shows_headers());
        let header = |name| heads.then(|| req.headers().get(name).cloned()).flatten();
        LogInfo {
            cx: cx.clone(),
            id: id.clone(),
            method: req.method().clone(),
            uri: req.uri().clone(),
            version: req.version(),
            user_agent: header(header::USER_AGENT),
            referer: header(header::REFERER),
            plugin: LogFields::for_request(),
        }
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
    log: Option<LogInfo>,
}

impl Exchange {
    pub fn new(
        started: Instant,
        method: MethodClass,
        trail: Trail,
        status: u16,
        metrics: bool,
        log: Option<LogInfo>,
    ) -> Exchange {
        Exchange {
            started,
            method,
            trail,
            status,
            bytes_out: 0,
            metrics,
            log,
        }
    }

    fn write_log(&self, log: &LogInfo, duration: Duration, bytes_in: u64, route: Option<&str>) {
        let Some(access_log) = &log.cx.observe.access_log else {
            return;
        };
        let tls = log.cx.tls.as_ref().map(|t| &t.session);
        let tries = &self.trail.tries;
        access_log.write(&Line {
            time: SystemTime::now() - duration,
            request_id: &log.id,
            trace_id: self.trail.trace_id_hex().as_deref(),
            client_ip: &log.cx.peer_ip,
            method: &log.method,
            uri: &log.uri,
            version: log.version,
            status: self.status,
            bytes_in,
            bytes_out: self.bytes_out,
            duration,
            upstream_duration: tries.time,
            route,
            upstream: tries.upstream.as_ref().map(|u| u.config.name.as_str()),
            endpoint: tries.endpoint.as_ref().map(|e| e.label.as_str()),
            attempts: tries.count,
            tls_version: tls.map(|s| s.version),
            sni: tls.and_then(|s| s.sni.as_deref()),
            user_agent: log.user_agent.as_ref(),
            referer: log.referer.as_ref(),
            plugin: log.plugin.iter().collect(),
        });
    }
}

impl Drop for Exchange {
    fn drop(&mut self) {
        let duration = self.started.elapsed();
        let bytes_in = self.trail.body.bytes();
        let route = match (&self.trail.router, self.trail.route) {
            (Some(router), Some(i)) => router.route_at(i),
            _ => None,
        };
        if self.metrics {
            let finished = Finished {
                method: self.method,
                status: self.status,
                duration,
                bytes_in,
                bytes_out: self.bytes_out,
            };
            match route {
                Some(route) => route.stats.record(&finished),
                None => metrics::global().no_route().record(&finished),
            }
        }
        if let Some(log) = &self.log {
            self.write_log(log, duration, bytes_in, route.map(|r| r.name.as_str()));
        }
        if let Some(trace) = self.trail.trace.take() {
            let end = self.started + duration;
            trace.finish(self.status, end, route.map(|r| r.name.as_str()));
        }
    }
}
