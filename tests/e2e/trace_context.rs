//! W3C trace context and OTLP span export (`[tracing]`), through the real
//! gateway: what a recording upstream receives as `traceparent` and
//! `tracestate`, and what a real OTLP/HTTP receiver in the test decodes
//! from the gateway's posts.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use prost::Message as _;

use crate::plugins_support::with_plugins;
use crate::support::upstream::{ClosedPort, full};
use crate::support::{Gateway, Upstream, client, config, eventually, get};

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";

fn traceparent(flags: &str) -> String {
    format!("00-{TRACE}-{CLIENT_SPAN}-{flags}")
}

/// `[tracing]` lines, then a route to `app` on every path.
fn traced(app: std::net::SocketAddr, tracing: &str) -> String {
    config(
        "",
        &[("app", app)],
        &format!("[tracing]\n{tracing}\n\n[[route]]\nname = \"r\"\nupstream = \"app\"\n"),
    )
}

/// The trace headers the upstream received with its latest request.
fn received(app: &Upstream) -> (Option<String>, Option<String>) {
    let seen = app.seen.lock().unwrap();
    let last = seen.last().expect("the upstream saw a request");
    let value = |n: &str| {
        let all: Vec<_> = last.headers.get_all(n).iter().collect();
        assert!(all.len() <= 1, "{n} sent {} times", all.len());
        all.first().map(|v| v.to_str().unwrap().to_owned())
    };
    (value("traceparent"), value("tracestate"))
}

/// `(trace id, parent id, flags)` of a `traceparent` Weir sent, checked to
/// be a well-formed version-00 value.
fn fields(tp: &str) -> (String, String, String) {
    let parts: Vec<&str> = tp.split('-').collect();
    assert_eq!(parts.len(), 4, "{tp}");
    assert_eq!(parts[0], "00", "{tp}");
    let hex = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    assert!(hex(parts[1], 32) && parts[1] != "0".repeat(32), "{tp}");
    assert!(hex(parts[2], 16) && parts[2] != "0".repeat(16), "{tp}");
    (parts[1].into(), parts[2].into(), parts[3].into())
}

#[tokio::test]
async fn a_clients_trace_is_continued_with_a_new_parent() {
    let app = Upstream::echo("app").await;
    let gw = Gateway::with_config(traced(app.addr, "enabled = true")).start();
    let c = client();

    for flags in ["01", "00"] {
        let tp = traceparent(flags);
        let r = get(
            &c,
            &gw.url("/a"),
            &[
                ("traceparent", &tp),
                ("tracestate", "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"),
            ],
        )
        .await;
        assert_eq!(r.status, 200);
        let (tp, ts) = received(&app);
        let (trace, parent, sent_flags) = fields(&tp.expect("a traceparent upstream"));
        assert_eq!(trace, TRACE);
        assert_ne!(parent, CLIENT_SPAN, "the upstream's parent is Weir's span");
        assert_eq!(sent_flags, flags);
        assert_eq!(
            ts.as_deref(),
            Some("congo=t61rcWkgMzE,rojo=00f067aa0ba902b7")
        );
    }
}

#[tokio::test]
async fn a_trace_is_started_when_the_client_sends_none() {
    let app = Upstream::echo("app").await;
    let gw = Gateway::with_config(traced(app.addr, "enabled = true")).start();
    let c = client();

    get(&c, &gw.url("/a"), &[]).await;
    let (first, ts) = received(&app);
    let (first_trace, _, flags) = fields(&first.unwrap());
    assert_eq!(flags, "01", "sample_rate defaults to 1");
    assert_eq!(ts, None);
    get(&c, &gw.url("/a"), &[("tracestate", "congo=t61")]).await;
    let (second, ts) = received(&app);
    let (second_trace, _, _) = fields(&second.unwrap());
    assert_ne!(
        first_trace, second_trace,
        "each request starts its own trace"
    );
    assert_eq!(
        ts, None,
        "a tracestate without a traceparent is not forwarded"
    );
}

#[tokio::test]
async fn a_malformed_traceparent_is_replaced_and_its_tracestate_dropped() {
    let app = Upstream::echo("app").await;
    let gw = Gateway::with_config(traced(app.addr, "enabled = true")).start();
    let c = client();

    let upper = format!("00-{}-{CLIENT_SPAN}-01", TRACE.to_uppercase());
    let zero = format!("00-{}-{CLIENT_SPAN}-01", "0".repeat(32));
    let long = format!("{}-extra", traceparent("01"));
    let ff = format!("ff-{TRACE}-{CLIENT_SPAN}-01");
    for bad in [
        "garbage",
        upper.as_str(),
        zero.as_str(),
        long.as_str(),
        ff.as_str(),
    ] {
        get(
            &c,
            &gw.url("/a"),
            &[("traceparent", bad), ("tracestate", "congo=t61")],
        )
        .await;
        let (tp, ts) = received(&app);
        let tp = tp.expect("a traceparent upstream");
        assert_ne!(tp, bad);
        let (trace, parent, _) = fields(&tp);
        assert_ne!(trace.to_uppercase(), TRACE.to_uppercase(), "{bad}");
        assert_ne!(parent, CLIENT_SPAN, "{bad}");
        assert_eq!(ts, None, "{bad}: its tracestate went upstream");
    }

    // Two traceparent fields are invalid even when each is valid.
    let tp = traceparent("01");
    let req = http::Request::get(gw.url("/a"))
        .header("traceparent", &tp)
        .header("traceparent", &tp)
        .header("tracestate", "congo=t61")
        .body(Default::default())
        .unwrap();
    crate::support::send(&c, req).await;
    let (tp, ts) = received(&app);
    assert_ne!(fields(&tp.unwrap()).0, TRACE);
    assert_eq!(ts, None);

    // A malformed tracestate beside a valid traceparent is dropped alone.
    get(
        &c,
        &gw.url("/a"),
        &[
            ("traceparent", &traceparent("01")),
            ("tracestate", "Bad Key=1"),
        ],
    )
    .await;
    let (tp, ts) = received(&app);
    assert_eq!(fields(&tp.unwrap()).0, TRACE);
    assert_eq!(ts, None);
}

#[tokio::test]
async fn untrusted_client_headers_are_replaced() {
    let app = Upstream::echo("app").await;
    let gw = Gateway::with_config(traced(
        app.addr,
        "enabled = true\ntrust_client_headers = false",
    ))
    .start();
    get(
        &client(),
        &gw.url("/a"),
        &[
            ("traceparent", &traceparent("00")),
            ("tracestate", "congo=t61"),
        ],
    )
    .await;
    let (tp, ts) = received(&app);
    let (trace, parent, flags) = fields(&tp.unwrap());
    assert_ne!(trace, TRACE);
    assert_ne!(parent, CLIENT_SPAN);
    assert_eq!(flags, "01", "Weir's sampling decision, not the client's");
    assert_eq!(ts, None);
}

#[tokio::test]
async fn tracing_off_leaves_trace_headers_alone() {
    let app = Upstream::echo("app").await;
    let gw = Gateway::with_config(traced(app.addr, "")).start();
    get(&client(), &gw.url("/a"), &[("traceparent", "garbage")]).await;
    // Off, Weir is not a participant: it neither reads nor writes them.
    assert_eq!(received(&app).0.as_deref(), Some("garbage"));
}

/// An OTLP/HTTP receiver: a real HTTP server on port 0 that decodes each
/// protobuf body and keeps its spans.
struct Collector {
    server: Upstream,
    spans: Arc<Mutex<Vec<Span>>>,
}

impl Collector {
    async fn start() -> Collector {
        let spans: Arc<Mutex<Vec<Span>>> = Arc::default();
        let keep = spans.clone();
        let server = Upstream::start(move |req: Request<Incoming>| {
            let keep = keep.clone();
            async move {
                assert_eq!(req.uri().path(), "/v1/traces");
                assert_eq!(req.headers()["content-type"], "application/x-protobuf");
                let body = req.into_body().collect().await.unwrap().to_bytes();
                let export = ExportTraceServiceRequest::decode(body).expect("an OTLP body");
                for rs in export.resource_spans {
                    let resource = rs.resource.unwrap();
                    assert_eq!(
                        text(&resource.attributes, "service.name"),
                        Some("edge".into())
                    );
                    for ss in rs.scope_spans {
                        keep.lock().unwrap().extend(ss.spans);
                    }
                }
                Response::new(full(""))
            }
        })
        .await;
        Collector { server, spans }
    }

    fn endpoint(&self) -> String {
        format!("http://{}/v1/traces", self.server.addr)
    }

    /// The spans of trace `trace` (hex) received so far.
    fn of(&self, trace: &str) -> Vec<Span> {
        self.spans
            .lock()
            .unwrap()
            .iter()
            .filter(|s| hex(&s.trace_id) == trace)
            .cloned()
            .collect()
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn text(attrs: &[opentelemetry_proto::tonic::common::v1::KeyValue], key: &str) -> Option<String> {
    attrs.iter().find(|kv| kv.key == key).and_then(|kv| {
        match kv.value.as_ref()?.value.as_ref()? {
            Value::StringValue(s) => Some(s.clone()),
            Value::IntValue(i) => Some(i.to_string()),
            other => Some(format!("{other:?}")),
        }
    })
}

fn otlp(collector: &str, extra: &str) -> String {
    format!(
        "enabled = true\n{extra}\n[tracing.otlp]\nendpoint = \"{collector}\"\n\
         service_name = \"edge\"\nexport_interval = \"50ms\"\nexport_timeout = \"500ms\"\n"
    )
}

#[tokio::test]
async fn spans_reach_the_collector_with_their_children() {
    let collector = Collector::start().await;
    let app = Upstream::echo("app").await;
    let cfg = config(
        "",
        &[("app", app.addr)],
        &format!(
            "[tracing]\n{}\n[[route]]\nname = \"api\"\nupstream = \"app\"\npath_prefix = \"/\"\n\
             plugins = [{{ name = \"basic\", config = {{ tag = \"t\" }} }}]\n",
            otlp(&collector.endpoint(), "")
        ),
    );
    let gw = with_plugins(Gateway::with_config(cfg), &[("basic", "basic")]).start();
    let r = get(
        &client(),
        &gw.url("/items/7?secret=s3cret"),
        &[
            ("traceparent", &traceparent("01")),
            ("tracestate", "congo=t61"),
        ],
    )
    .await;
    assert_eq!(r.status, 200);
    let (sent, _) = received(&app);
    let (_, upstream_parent, _) = fields(&sent.unwrap());

    // The server span, one span per plugin call (request and response
    // phases), one per try upstream.
    let whole = eventually(Duration::from_secs(10), || async {
        collector.of(TRACE).len() >= 4
    })
    .await;
    let spans = collector.of(TRACE);
    assert!(
        whole,
        "spans received: {spans:#?}\n{}",
        gw.logs_for_failure()
    );
    assert_eq!(spans.len(), 4, "{spans:#?}");

    let server = spans
        .iter()
        .find(|s| s.kind == SpanKind::Server as i32)
        .unwrap();
    assert_eq!(server.name, "GET api");
    assert_eq!(hex(&server.parent_span_id), CLIENT_SPAN);
    assert_eq!(server.trace_state, "congo=t61");
    assert_eq!(
        text(&server.attributes, "http.request.method").as_deref(),
        Some("GET")
    );
    assert_eq!(
        text(&server.attributes, "url.path").as_deref(),
        Some("/items/7")
    );
    assert_eq!(
        text(&server.attributes, "http.response.status_code").as_deref(),
        Some("200")
    );
    assert_eq!(
        text(&server.attributes, "weir.route").as_deref(),
        Some("api")
    );
    assert_eq!(
        text(&server.attributes, "weir.upstream").as_deref(),
        Some("app")
    );
    let server_id = hex(&server.span_id);
    for s in &spans {
        assert!(s.end_time_unix_nano >= s.start_time_unix_nano, "{s:?}");
        let shown = format!("{s:?}");
        assert!(!shown.contains("s3cret"), "a span shows the query: {shown}");
    }

    let children: Vec<&Span> = spans
        .iter()
        .filter(|s| s.span_id != server.span_id)
        .collect();
    for c in &children {
        assert_eq!(hex(&c.parent_span_id), server_id, "{c:?}");
        assert!(c.start_time_unix_nano >= server.start_time_unix_nano);
        assert!(c.end_time_unix_nano <= server.end_time_unix_nano);
    }
    let mut plugin_names: Vec<&str> = children
        .iter()
        .filter(|s| s.kind == SpanKind::Internal as i32)
        .map(|s| s.name.as_str())
        .collect();
    plugin_names.sort();
    assert_eq!(
        plugin_names,
        ["plugin basic request", "plugin basic response"]
    );
    let request_call = children
        .iter()
        .find(|s| s.name == "plugin basic request")
        .unwrap();
    assert_eq!(
        text(&request_call.attributes, "weir.plugin.outcome").as_deref(),
        Some("ok")
    );

    let attempt = children
        .iter()
        .find(|s| s.kind == SpanKind::Client as i32)
        .unwrap();
    assert_eq!(
        hex(&attempt.span_id),
        upstream_parent,
        "the upstream's parent is the try's span"
    );
    assert_eq!(
        text(&attempt.attributes, "weir.endpoint"),
        Some(app.addr.to_string())
    );
    assert_eq!(
        text(&attempt.attributes, "weir.attempt.outcome").as_deref(),
        Some("answered")
    );
    assert_eq!(
        text(&attempt.attributes, "http.response.status_code").as_deref(),
        Some("200")
    );
}

#[tokio::test]
async fn unsampled_requests_send_flag_0_and_export_nothing() {
    let collector = Collector::start().await;
    let app = Upstream::echo("app").await;
    let tracing = otlp(&collector.endpoint(), "sample_rate = 0.0");
    let gw = Gateway::with_config(traced(app.addr, &tracing)).start();
    let c = client();

    let mut unsampled = Vec::new();
    for _ in 0..5 {
        get(&c, &gw.url("/a"), &[]).await;
        let (trace, _, flags) = fields(&received(&app).0.unwrap());
        assert_eq!(flags, "00");
        unsampled.push(trace);
    }
    // A client's sampled decision is still followed (its headers are
    // trusted): once its span has arrived, anything queued before it has
    // been exported too.
    get(&c, &gw.url("/a"), &[("traceparent", &traceparent("01"))]).await;
    let arrived = eventually(Duration::from_secs(10), || async {
        !collector.of(TRACE).is_empty()
    })
    .await;
    assert!(arrived, "{}", gw.logs_for_failure());
    for t in &unsampled {
        assert!(collector.of(t).is_empty(), "trace {t} was exported");
    }
}

#[tokio::test]
async fn a_collector_that_is_down_costs_counted_drops_only() {
    let down = ClosedPort::new();
    let app = Upstream::echo("app").await;
    let endpoint = format!("http://{}/v1/traces", down.addr());
    let cfg = format!(
        "{}\n[admin]\naddress = \"127.0.0.1:0\"\n",
        traced(app.addr, &otlp(&endpoint, ""))
    );
    let gw = Gateway::with_config(cfg).start();
    let c = client();
    let url = format!("http://{}/a", gw.listener("main"));
    for _ in 0..20 {
        assert_eq!(get(&c, &url, &[]).await.status, 200);
    }
    let metrics = format!("http://{}/metrics", gw.listener("admin"));
    let last = Mutex::new(String::new());
    let counted = eventually(Duration::from_secs(10), || {
        let (c, metrics, last) = (&c, &metrics, &last);
        async move {
            let text = get(c, metrics, &[]).await.text();
            let value = |name: &str| -> u64 {
                text.lines()
                    .find(|l| l.starts_with(name))
                    .and_then(|l| l.rsplit(' ').next())
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0)
            };
            let done = value("weir_trace_export_failures_total") >= 1
                && value("weir_trace_spans_dropped_total{reason=\"export_failed\"}") >= 1;
            *last.lock().unwrap() = text;
            done
        }
    })
    .await;
    let last = last.into_inner().unwrap();
    assert!(
        counted,
        "metrics:\n{last}\nlogs:\n{}",
        gw.logs_for_failure()
    );
    assert!(last.contains("weir_trace_spans_exported_total 0"), "{last}");
    assert!(
        gw.logs().iter().any(|l| l.contains("span export failed")),
        "the failure is logged once"
    );
}

#[tokio::test]
async fn a_reload_that_changes_tracing_asks_for_a_restart() {
    let app = Upstream::echo("app").await;
    let admin = "\n[admin]\naddress = \"127.0.0.1:0\"\n";
    let on = format!("{}{admin}", traced(app.addr, "enabled = true"));
    let gw = Gateway::with_config(on.clone()).start();
    let url = format!("http://{}/a", gw.listener("main"));
    let c = client();

    let off = on.replace("enabled = true", "enabled = false");
    let tmp = gw.dir().join("weir.toml.tmp");
    std::fs::write(&tmp, off).unwrap();
    std::fs::rename(&tmp, gw.dir().join("weir.toml")).unwrap();
    let admin_config = format!("http://{}/admin/config", gw.listener("admin"));
    let reported = eventually(Duration::from_secs(10), || async {
        let last = get(&c, &admin_config, &[]).await.json()["last_attempt"].clone();
        last["outcome"] == "applied"
            && last["needs_restart"]
                .as_array()
                .is_some_and(|a| a.iter().any(|s| s == "tracing"))
    })
    .await;
    assert!(reported, "{}", gw.logs_for_failure());
    // The running gateway keeps the tracing it started with.
    get(&c, &url, &[("traceparent", "garbage")]).await;
    assert_ne!(received(&app).0.as_deref(), Some("garbage"));
}

/// A plugin's call it waits for is a span of the request's trace, child
/// of Weir's server span, and the span the called service is told is its
/// parent.
#[tokio::test]
async fn a_plugins_call_is_a_span_and_the_called_services_parent() {
    let collector = Collector::start().await;
    let app = Upstream::echo("app").await;
    let auth = Upstream::echo("auth").await;
    let cfg = config(
        "",
        &[("app", app.addr), ("auth", auth.addr)],
        &format!(
            "[tracing]\n{}\n[plugin_limits.caller]\ncalls = [\"auth\"]\n\n\
             [[route]]\nname = \"api\"\nupstream = \"app\"\npath_prefix = \"/\"\n\
             plugins = [{{ name = \"caller\", config = {{ calls = [{{ upstream = \"auth\", \
             path = \"/check\", tag = \"c\" }}], then = \"forward\" }} }}]\n",
            otlp(&collector.endpoint(), "")
        ),
    );
    let gw = with_plugins(Gateway::with_config(cfg), &[("caller", "caller")]).start();
    let r = get(
        &client(),
        &gw.url("/x"),
        &[("traceparent", &traceparent("01"))],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let (told, _) = received(&auth);
    let (trace, call_parent, _) = fields(&told.expect("the call carries a traceparent"));
    assert_eq!(trace, TRACE);

    // The server span, the request phase and its -calls call, the call,
    // the try upstream.
    let whole = eventually(Duration::from_secs(10), || async {
        collector.of(TRACE).len() >= 5
    })
    .await;
    let spans = collector.of(TRACE);
    assert!(
        whole,
        "spans received: {spans:#?}\n{}",
        gw.logs_for_failure()
    );
    let server = spans
        .iter()
        .find(|s| s.kind == SpanKind::Server as i32)
        .unwrap();
    let call = spans
        .iter()
        .find(|s| s.name == "plugin caller call auth")
        .unwrap_or_else(|| panic!("no call span: {spans:#?}"));
    assert_eq!(call.kind, SpanKind::Client as i32);
    assert_eq!(
        hex(&call.span_id),
        call_parent,
        "the service's parent is the call's span"
    );
    assert_eq!(hex(&call.parent_span_id), hex(&server.span_id));
    assert_eq!(
        text(&call.attributes, "weir.call.outcome").as_deref(),
        Some("answered")
    );
    assert_eq!(
        text(&call.attributes, "http.response.status_code").as_deref(),
        Some("200")
    );
    assert!(
        spans
            .iter()
            .any(|s| s.name == "plugin caller request_calls"),
        "{spans:#?}"
    );
}
