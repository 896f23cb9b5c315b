//! Finished span records as OTLP protobuf (`ExportTraceServiceRequest`),
//! on the exporter thread. Attribute names follow the OpenTelemetry HTTP
//! semantic conventions where one fits (`http.request.method`,
//! `url.path`, `server.address`, …) and `weir.*` for what is Weir's own
//! (route, upstream, endpoint, plugin). No header value is recorded, and
//! no query string: either may carry a secret.

use std::time::{Instant, UNIX_EPOCH};

use http::Version;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    ResourceSpans, ScopeSpans, Span, SpanFlags, Status, span::SpanKind, status::StatusCode,
};
use prost::Message as _;

use super::record::{ChildKind, SpanRecord};

fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn text(key: &str, value: &str) -> KeyValue {
    kv(key, any_value::Value::StringValue(value.to_owned()))
}

fn int(key: &str, value: i64) -> KeyValue {
    kv(key, any_value::Value::IntValue(value))
}

fn protocol_version(v: Version) -> &'static str {
    match v {
        Version::HTTP_09 => "0.9",
        Version::HTTP_10 => "1.0",
        Version::HTTP_2 => "2",
        Version::HTTP_3 => "3",
        _ => "1.1",
    }
}

/// `host[:port]` split into the conventions' address and port.
fn address_and_port(s: &str) -> (&str, Option<i64>) {
    match s.rsplit_once(':') {
        Some((h, p)) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => (
            h.trim_start_matches('[').trim_end_matches(']'),
            p.parse().ok(),
        ),
        _ => (s, None),
    }
}

fn error_status(message: &str) -> Option<Status> {
    Some(Status {
        message: message.to_owned(),
        code: StatusCode::Error as i32,
    })
}

/// Turns monotonic times of one record into Unix nanoseconds.
struct Clock {
    wall_nanos: u64,
    started: Instant,
}

impl Clock {
    fn of(r: &SpanRecord) -> Clock {
        let wall = r
            .wall
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        Clock {
            wall_nanos: u64::try_from(wall).unwrap_or(u64::MAX),
            started: r.started,
        }
    }

    fn nanos(&self, t: Instant) -> u64 {
        let since = t.saturating_duration_since(self.started).as_nanos();
        self.wall_nanos
            .saturating_add(u64::try_from(since).unwrap_or(u64::MAX))
    }
}

/// The span flags: the W3C flags (sampled) and whether the parent came
/// from another process.
fn flags(remote_parent: bool) -> u32 {
    let mut f = super::context::SAMPLED as u32 | SpanFlags::ContextHasIsRemoteMask as u32;
    if remote_parent {
        f |= SpanFlags::ContextIsRemoteMask as u32;
    }
    f
}

/// The record's server span and its children, appended to `out`.
fn spans_of(r: &SpanRecord, out: &mut Vec<Span>) {
    let clock = Clock::of(r);
    let cx = &r.context;
    let trace_id = cx.trace_id.0.to_vec();
    let server_id = cx.span_id.0.to_vec();
    let method = r.server.method;
    let s = &r.server;
    let mut attributes = vec![
        text("http.request.method", method),
        text("url.path", &s.path),
        text("url.scheme", if s.tls { "https" } else { "http" }),
        text("network.protocol.version", protocol_version(s.version)),
        text("client.address", &s.client.to_string()),
        int("http.response.status_code", i64::from(r.status)),
    ];
    if let Some(host) = &s.host {
        let (address, port) = address_and_port(host);
        attributes.push(text("server.address", address));
        if let Some(p) = port {
            attributes.push(int("server.port", p));
        }
    }
    if let Some(route) = &r.route {
        attributes.push(text("weir.route", route));
    }
    if let Some(upstream) = &r.upstream {
        attributes.push(text("weir.upstream", upstream));
    }
    let name = match &r.route {
        Some(route) => format!("{method} {route}"),
        None => method.to_owned(),
    };
    // A server span is in error for a 5xx only: a 4xx is the client's.
    let status = (r.status >= 500).then(|| error_status("5xx")).flatten();
    out.push(Span {
        trace_id: trace_id.clone(),
        span_id: server_id.clone(),
        trace_state: cx
            .tracestate
            .as_ref()
            .and_then(|t| t.to_str().ok())
            .unwrap_or_default()
            .to_owned(),
        parent_span_id: cx.parent.map(|p| p.0.to_vec()).unwrap_or_default(),
        flags: flags(cx.parent.is_some()),
        name,
        kind: SpanKind::Server as i32,
        start_time_unix_nano: clock.nanos(r.started),
        end_time_unix_nano: clock.nanos(r.end),
        attributes,
        status,
        ..Default::default()
    });
    for c in &r.children {
        let (name, kind, attributes, status) = match &c.kind {
            ChildKind::Plugin {
                plugin,
                phase,
                outcome,
            } => (
                format!("plugin {plugin} {phase}"),
                SpanKind::Internal,
                vec![
                    text("weir.plugin", plugin),
                    text("weir.plugin.phase", phase),
                    text("weir.plugin.outcome", outcome),
                ],
                (*outcome != "ok").then(|| error_status(outcome)).flatten(),
            ),
            ChildKind::Call {
                plugin,
                upstream,
                outcome,
                status,
            } => {
                let mut a = vec![
                    text("weir.plugin", plugin),
                    text("weir.upstream", upstream),
                    text("weir.call.outcome", outcome),
                ];
                if let Some(code) = status {
                    a.push(int("http.response.status_code", i64::from(*code)));
                }
                let failed = *outcome != "answered" || status.is_some_and(|s| s >= 500);
                (
                    format!("plugin {plugin} call {upstream}"),
                    SpanKind::Client,
                    a,
                    failed.then(|| error_status(outcome)).flatten(),
                )
            }
            ChildKind::Upstream {
                upstream,
                endpoint,
                attempt,
                outcome,
                status,
            } => {
                let (address, port) = address_and_port(endpoint);
                let mut a = vec![
                    text("http.request.method", method),
                    text("weir.upstream", upstream),
                    text("weir.endpoint", endpoint),
                    text("server.address", address),
                    int("weir.attempt", i64::from(*attempt)),
                    text("weir.attempt.outcome", outcome),
                ];
                if let Some(p) = port {
                    a.push(int("server.port", p));
                }
                if let Some(code) = status {
                    a.push(int("http.response.status_code", i64::from(*code)));
                }
                let failed = *outcome != "answered" || status.is_some_and(|s| s >= 500);
                (
                    format!("{method} upstream {upstream}"),
                    SpanKind::Client,
                    a,
                    failed.then(|| error_status(outcome)).flatten(),
                )
            }
        };
        out.push(Span {
            trace_id: trace_id.clone(),
            span_id: c.span_id.0.to_vec(),
            parent_span_id: server_id.clone(),
            flags: flags(false),
            name,
            kind: kind as i32,
            start_time_unix_nano: clock.nanos(c.start),
            end_time_unix_nano: clock.nanos(c.end),
            attributes,
            status,
            ..Default::default()
        });
    }
}

/// One export request's protobuf body for a batch of records, and the
/// number of spans in it (server spans and their children).
pub fn encode(batch: &[SpanRecord], service_name: &str) -> (Vec<u8>, u64) {
    let mut spans = Vec::with_capacity(batch.len() * 4);
    for r in batch {
        spans_of(r, &mut spans);
    }
    let count = spans.len() as u64;
    let request = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![
                    text("service.name", service_name),
                    text("service.version", env!("CARGO_PKG_VERSION")),
                ],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "weir".to_owned(),
                    version: env!("CARGO_PKG_VERSION").to_owned(),
                    ..Default::default()
                }),
                spans,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    };
    (request.encode_to_vec(), count)
}
