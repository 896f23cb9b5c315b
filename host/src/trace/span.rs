//! One sampled request's spans, recorded on its worker: the server span's
//! facts taken from the request head, a child per plugin call and per try
//! upstream, and the finished record handed to the exporter when the
//! response ends. Recording is plain stores into a struct the request
//! owns (no lock, no channel until the end); turning the record into OTLP
//! is the exporter thread's work (`otlp.rs`).
//!
//! Every part is bounded: attribute values taken from the request at
//! [`MAX_ATTRIBUTE_BYTES`], children at [`MAX_CHILD_SPANS`] per request
//! (more are dropped and counted), other strings come from the
//! configuration (names, endpoint labels).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use http::HeaderMap;

use super::context::{Context, SpanId, TRACEPARENT};
use super::export::Exporter;
use super::record::{self, Child, ChildKind, Server, SpanRecord};
use crate::metrics::{self, trace::SpanDrop};

/// Child spans kept per request; more are dropped and counted
/// (`weir_trace_spans_dropped_total{reason="child_limit"}`). A chain
/// runs each plugin at most four times and a request tries upstream at
/// most six times, so only an unusually long chain reaches it.
pub const MAX_CHILD_SPANS: usize = 64;
/// Attribute values taken from the request (path, host) are cut to this
/// many bytes.
pub const MAX_ATTRIBUTE_BYTES: usize = 256;

/// A request's trace, kept in its record (`proxy::exchange::Trail`).
pub struct Trace {
    pub context: Context,
    /// The spans being recorded: for a sampled request, when spans are
    /// exported; otherwise none, and the hooks cost one branch. Boxed, so
    /// a trace that records none stays small to make and move.
    pub spans: Option<Box<Spans>>,
}

/// What the server span records while the request runs.
pub struct Spans {
    export: Arc<Exporter>,
    /// The request's start on the wall clock (OTLP times are Unix
    /// nanoseconds) and on the monotonic one (every other time is an
    /// `Instant`, placed on the wall clock from these two).
    wall: SystemTime,
    started: Instant,
    server: Server,
    /// The upstream of the last try.
    upstream: Option<String>,
    tries: u32,
    children: Vec<Child>,
    dropped: u32,
}

/// `s` cut to at most `max` bytes on a character boundary.
fn bounded(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

impl Spans {
    pub(super) fn new<B>(
        export: Arc<Exporter>,
        req: &http::Request<B>,
        started: Instant,
        client: IpAddr,
        tls: bool,
    ) -> Spans {
        let host = req.uri().host().or_else(|| {
            req.headers()
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
        });
        Spans {
            export,
            wall: SystemTime::now(),
            started,
            server: Server {
                method: record::method_name(req.method()),
                path: bounded(req.uri().path(), MAX_ATTRIBUTE_BYTES),
                host: host.map(|h| bounded(h, MAX_ATTRIBUTE_BYTES)),
                tls,
                version: req.version(),
                client,
            },
            upstream: None,
            tries: 0,
            children: Vec::new(),
            dropped: 0,
        }
    }

    fn push(&mut self, child: Child) {
        if self.children.len() < MAX_CHILD_SPANS {
            self.children.push(child);
        } else {
            self.dropped += 1;
        }
    }
}

impl Trace {
    /// Whether this request's spans are recorded.
    pub fn recording(&self) -> bool {
        self.spans.is_some()
    }

    /// A try upstream starts: its span's id, also set as the parent in
    /// the `traceparent` the upstream receives.
    pub fn try_begins(&mut self, headers: &mut HeaderMap) -> SpanId {
        let id = SpanId::random();
        headers.insert(TRACEPARENT, self.context.traceparent(id));
        id
    }

    /// A try upstream ended (its response head, or how it failed).
    pub fn try_ended(
        &mut self,
        span_id: SpanId,
        start: Instant,
        (upstream, endpoint): (&str, &str),
        outcome: &'static str,
        status: Option<u16>,
    ) {
        let Some(s) = &mut self.spans else { return };
        s.tries += 1;
        if s.upstream.as_deref() != Some(upstream) {
            s.upstream = Some(upstream.to_owned());
        }
        let kind = ChildKind::Upstream {
            upstream: upstream.to_owned(),
            endpoint: endpoint.to_owned(),
            attempt: s.tries,
            outcome,
            status,
        };
        s.push(Child {
            span_id,
            start,
            end: Instant::now(),
            kind,
        });
    }

    /// Takes in the plugin calls the request's plugin scope recorded.
    pub fn add_plugin_calls(&mut self, calls: &mut PluginCalls) {
        let Some(s) = &mut self.spans else { return };
        s.dropped += std::mem::take(&mut calls.dropped);
        for c in calls.calls.take().into_iter().flatten() {
            s.push(c);
        }
    }

    /// Ends the server span at `end` (the response's end) and hands it to
    /// the exporter; the request never waits for it (a full queue drops
    /// it, counted).
    pub fn finish(self, status: u16, end: Instant, route: Option<&str>) {
        let Trace { context, spans } = self;
        let Some(s) = spans else { return };
        let s = *s;
        if s.dropped > 0 {
            metrics::global()
                .trace
                .dropped(SpanDrop::ChildLimit, u64::from(s.dropped));
        }
        s.export.submit(SpanRecord {
            context,
            wall: s.wall,
            started: s.started,
            end,
            server: s.server,
            status,
            route: route.map(str::to_owned),
            upstream: s.upstream,
            children: s.children,
        });
    }
}

/// The plugin calls of one request, recorded by its plugin scope while
/// the request is sampled and exported. By default it records nothing
/// and reads no clock: [`PluginCalls::start`] is one branch.
#[derive(Default)]
pub struct PluginCalls {
    calls: Option<Vec<Child>>,
    dropped: u32,
}

impl PluginCalls {
    /// A recorder that keeps calls.
    pub fn recording() -> PluginCalls {
        PluginCalls {
            calls: Some(Vec::new()),
            dropped: 0,
        }
    }

    /// A call starts: its start time, when calls are recorded.
    #[inline]
    pub fn start(&self) -> Option<Instant> {
        self.calls.as_ref().map(|_| Instant::now())
    }

    /// A call that started at `started` ended with `outcome`.
    pub fn done(
        &mut self,
        started: Option<Instant>,
        plugin: &Arc<str>,
        phase: &'static str,
        outcome: &'static str,
    ) {
        let (Some(calls), Some(start)) = (&mut self.calls, started) else {
            return;
        };
        if calls.len() >= MAX_CHILD_SPANS {
            self.dropped += 1;
            return;
        }
        calls.push(Child {
            span_id: SpanId::random(),
            start,
            end: Instant::now(),
            kind: ChildKind::Plugin {
                plugin: plugin.clone(),
                phase,
                outcome,
            },
        });
    }
}

impl PluginCalls {
    /// Whether calls are recorded (the request is sampled and exported).
    pub fn is_recording(&self) -> bool {
        self.calls.is_some()
    }

    /// An outbound call plugin `plugin` made to `upstream` and waited for,
    /// between `start` and `end`, as span `span_id` (the parent its
    /// request was sent): `outcome` is `answered` (with the `status`) or
    /// the call's error.
    pub fn call(
        &mut self,
        span_id: SpanId,
        (start, end): (Instant, Instant),
        (plugin, upstream): (&Arc<str>, &str),
        (outcome, status): (&'static str, Option<u16>),
    ) {
        let Some(calls) = &mut self.calls else {
            return;
        };
        let kind = ChildKind::Call {
            plugin: plugin.clone(),
            upstream: upstream.to_owned(),
            outcome,
            status,
        };
        if calls.len() >= MAX_CHILD_SPANS {
            self.dropped += 1;
            return;
        }
        calls.push(Child {
            span_id,
            start,
            end,
            kind,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_calls_are_recorded_only_when_asked_and_bounded() {
        let name: Arc<str> = Arc::from("p");
        let mut off = PluginCalls::default();
        let t = off.start();
        assert!(t.is_none(), "an idle recorder reads no clock");
        off.done(t, &name, "request", "ok");
        assert!(off.calls.is_none());

        let mut on = PluginCalls::recording();
        for _ in 0..MAX_CHILD_SPANS + 6 {
            let t = on.start();
            on.done(t, &name, "request", "ok");
        }
        assert_eq!(on.calls.as_ref().unwrap().len(), MAX_CHILD_SPANS);
        assert_eq!(on.dropped, 6);
    }

    #[test]
    fn request_values_are_cut_on_a_character_boundary() {
        assert_eq!(bounded("/abc", 256), "/abc");
        assert_eq!(bounded("/a\u{e9}", 2), "/a");
        assert_eq!(bounded(&"x".repeat(300), MAX_ATTRIBUTE_BYTES).len(), 256);
    }
}
