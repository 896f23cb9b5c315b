//! Upstream and listener metrics through the real gateway, scraped from
//! the admin listener's `/metrics` after known traffic, with exact counts:
//! tries and retries with one endpoint down (each retried on the other),
//! the retry budget's refusals, an ejection by passive health, a
//! connection that waited at a listener's `max_connections`, Weir's own
//! 4xx answers by reason, header read timeouts, and requests per route by
//! status class. Also: no request can create a label value (random hosts,
//! paths, methods and header names leave the number of series as the
//! first request of each kind left it), and `promtool check metrics`
//! finds nothing wrong with a scrape.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::balancing::{Scripted, endpoints};
use crate::plugins_support::main_url;
use crate::support::metrics::{promtool_finds_nothing, scrape, value};
use crate::support::raw::RawConn;
use crate::support::upstream::ClosedPort;
use crate::support::*;

const ADMIN: &str = "\n[admin]\naddress = \"127.0.0.1:0\"\n";

/// Scrapes until every `(series, value)` holds (counts land when a
/// response's body is dropped, a moment after the client has read it),
/// then asserts them with the scrape shown on failure.
async fn expect(gw: &Gateway, expected: &[(String, f64)]) -> String {
    let holds = |text: &str| expected.iter().all(|(s, v)| value(text, s) == Some(*v));
    eventually(Duration::from_secs(10), || async {
        holds(&scrape(gw).await)
    })
    .await;
    let text = scrape(gw).await;
    for (s, v) in expected {
        assert_eq!(value(&text, s), Some(*v), "{s}\nin the scrape:\n{text}");
    }
    text
}

fn attempts(upstream: &str, endpoint: SocketAddr, outcome: &str) -> String {
    format!(
        "weir_upstream_attempts_total{{upstream=\"{upstream}\",endpoint=\"{endpoint}\",outcome=\"{outcome}\"}}"
    )
}

fn per_endpoint(name: &str, upstream: &str, endpoint: SocketAddr) -> String {
    format!("{name}{{upstream=\"{upstream}\",endpoint=\"{endpoint}\"}}")
}

fn per_upstream(name: &str, upstream: &str) -> String {
    format!("{name}{{upstream=\"{upstream}\"}}")
}

fn route_requests(route: &str, method: &str, class: &str) -> String {
    format!("weir_requests_total{{route=\"{route}\",method=\"{method}\",status_class=\"{class}\"}}")
}

fn per_listener(name: &str, listener: &str, label: Option<(&str, &str)>) -> String {
    match label {
        None => format!("{name}{{listener=\"{listener}\"}}"),
        Some((k, v)) => format!("{name}{{listener=\"{listener}\",{k}=\"{v}\"}}"),
    }
}

#[tokio::test]
async fn tries_retries_and_the_retry_budget_are_counted_per_upstream_and_endpoint() {
    // Nothing listens on `dead`: each try there fails to connect.
    let dead = ClosedPort::new();
    let live = Upstream::echo("live").await;
    let down = [
        Scripted::start(503, Duration::ZERO).await,
        Scripted::start(503, Duration::ZERO).await,
    ];
    // One worker: its round robin over [dead, live] advances once per
    // pick, a retry's pick included, so every request tries `dead` first
    // and is retried on `live`.
    let config = format!(
        "[server]\nworkers = 1\n\n[[listener]]\nname = \"main\"\naddress = \"127.0.0.1:0\"\n\n\
         [[upstream]]\nname = \"flaky\"\n{}\nconnect_timeout = \"1s\"\n\
         outlier = {{ consecutive_connect_failures = 0 }}\n\
         retry = {{ backoff = \"1ms\", max_backoff = \"1ms\", budget_ratio = 1.0 }}\n\n\
         [[upstream]]\nname = \"down\"\n{}\n\
         outlier = {{ consecutive_5xx = 0 }}\n\
         retry = {{ statuses = [503], backoff = \"1ms\", max_backoff = \"1ms\", budget_ratio = 0.0, budget_min_per_second = 0 }}\n\n\
         [[route]]\nname = \"flaky-route\"\nupstream = \"flaky\"\npath_prefix = \"/flaky\"\n\n\
         [[route]]\nname = \"down-route\"\nupstream = \"down\"\npath_prefix = \"/down\"\n{ADMIN}",
        endpoints(&[(dead.addr(), 1), (live.addr, 1)]),
        endpoints(&[(down[0].up.addr, 1), (down[1].up.addr, 1)]),
    );
    let gw = Gateway::with_config(config).start();
    let c = client();
    for _ in 0..10 {
        let r = get(&c, &main_url(&gw, "/flaky"), &[]).await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    for _ in 0..4 {
        assert_eq!(get(&c, &main_url(&gw, "/down"), &[]).await.status, 503);
    }
    assert_eq!(
        down[0].hits() + down[1].hits(),
        4,
        "a refused retry was sent"
    );

    let text = expect(
        &gw,
        &[
            (attempts("flaky", dead.addr(), "connect_error"), 10.0),
            (attempts("flaky", live.addr, "response"), 10.0),
            (per_upstream("weir_upstream_retries_total", "flaky"), 10.0),
            (
                per_upstream("weir_upstream_retry_budget_exhausted_total", "flaky"),
                0.0,
            ),
            (
                per_endpoint(
                    "weir_upstream_response_head_duration_seconds_count",
                    "flaky",
                    live.addr,
                ),
                10.0,
            ),
            // No ejection (turned off), no active checks: still healthy.
            (
                per_endpoint("weir_upstream_endpoint_healthy", "flaky", dead.addr()),
                1.0,
            ),
            (
                per_endpoint("weir_upstream_requests_in_flight", "flaky", live.addr),
                0.0,
            ),
            (per_upstream("weir_upstream_pending_requests", "flaky"), 0.0),
            // Every retry of `down` was refused by its empty budget.
            (per_upstream("weir_upstream_retries_total", "down"), 0.0),
            (
                per_upstream("weir_upstream_retry_budget_exhausted_total", "down"),
                4.0,
            ),
            (route_requests("flaky-route", "GET", "2xx"), 10.0),
            (route_requests("down-route", "GET", "5xx"), 4.0),
        ],
    )
    .await;
    let down_responses: f64 = down
        .iter()
        .filter_map(|d| value(&text, &attempts("down", d.up.addr, "response")))
        .sum();
    assert_eq!(down_responses, 4.0, "{text}");
    // The dead endpoint never had a connection; the live one had its
    // keep-alive connection(s), opened once and reused.
    let opened = |e| {
        value(
            &text,
            &per_endpoint("weir_upstream_connections_opened_total", "flaky", e),
        )
    };
    assert_eq!(opened(dead.addr()), Some(0.0), "{text}");
    assert!(
        opened(live.addr).is_some_and(|n| (1.0..10.0).contains(&n)),
        "{text}"
    );
    assert_eq!(
        value(
            &text,
            &per_endpoint("weir_upstream_connections_open", "flaky", dead.addr())
        ),
        Some(0.0)
    );
}

#[tokio::test]
async fn an_ejection_is_counted_and_the_endpoint_shown_ejected() {
    let bad = Scripted::start(500, Duration::ZERO).await;
    let good = Upstream::echo("good").await;
    let config = format!(
        "[server]\nworkers = 2\n\n[[listener]]\nname = \"main\"\naddress = \"127.0.0.1:0\"\n\n\
         [[upstream]]\nname = \"app\"\n{}\n\
         outlier = {{ consecutive_5xx = 3, base_ejection = \"1m\" }}\nretry = {{ attempts = 0 }}\n\n\
         [[route]]\nname = \"all\"\nupstream = \"app\"\n{ADMIN}",
        endpoints(&[(bad.up.addr, 1), (good.addr, 1)]),
    );
    let gw = Gateway::with_config(config).start();
    let c = client();
    for _ in 0..40 {
        get(&c, &main_url(&gw, "/"), &[]).await;
    }
    // Round robin alternates; the third 500 ejects the endpoint at once.
    assert_eq!(bad.hits(), 3);
    expect(
        &gw,
        &[
            (attempts("app", bad.up.addr, "response"), 3.0),
            (attempts("app", good.addr, "response"), 37.0),
            (
                per_endpoint("weir_upstream_endpoint_ejections_total", "app", bad.up.addr),
                1.0,
            ),
            (
                per_endpoint("weir_upstream_endpoint_ejected", "app", bad.up.addr),
                1.0,
            ),
            (
                per_endpoint("weir_upstream_endpoint_healthy", "app", bad.up.addr),
                0.0,
            ),
            (
                per_endpoint("weir_upstream_endpoint_healthy", "app", good.addr),
                1.0,
            ),
            (
                per_endpoint("weir_upstream_endpoint_ejections_total", "app", good.addr),
                0.0,
            ),
            (per_upstream("weir_upstream_panic_mode", "app"), 0.0),
            (route_requests("all", "GET", "5xx"), 3.0),
            (route_requests("all", "GET", "2xx"), 37.0),
        ],
    )
    .await;
}

/// Two listeners: `main` takes one connection at a time, `edge` is where
/// the bad requests go; both cut a request head off after 1 s.
fn listeners_config(up: SocketAddr) -> String {
    format!(
        "[server]\nworkers = 2\n\n\
         [[listener]]\nname = \"main\"\naddress = \"127.0.0.1:0\"\nmax_connections = 1\nheader_read_timeout = \"1s\"\n\n\
         [[listener]]\nname = \"edge\"\naddress = \"127.0.0.1:0\"\nheader_read_timeout = \"1s\"\n\
         max_header_bytes = \"8KiB\"\nmax_uri_bytes = \"1KiB\"\n\n\
         [[upstream]]\nname = \"app\"\nendpoints = [\"{up}\"]\n\n\
         [[route]]\nname = \"app\"\nupstream = \"app\"\npath_prefix = \"/app\"\n{ADMIN}"
    )
}

/// Reads until the gateway closes the connection (bounded).
async fn closed_by_gateway(s: &mut tokio::net::TcpStream) -> String {
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .expect("the gateway did not close the connection")
        .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn listeners_count_the_connection_limit_refusals_by_reason_and_timeouts() {
    let up = Upstream::echo("app").await;
    let gw = Gateway::with_config(listeners_config(up.addr)).start();
    let (main, edge) = (gw.listener("main"), gw.listener("edge"));

    // `main` at its limit: `a` holds its one slot, `b` is accepted and
    // waits for it.
    let mut a = RawConn::open(main).await;
    a.send(b"GET /app HTTP/1.1\r\nHost: t\r\n\r\n").await;
    assert_eq!(a.response().await.status, 200);
    let mut b = tokio::net::TcpStream::connect(main).await.unwrap();
    expect(
        &gw,
        &[
            (
                per_listener("weir_listener_connections_limited_total", "main", None),
                1.0,
            ),
            (
                per_listener("weir_listener_connections_open", "main", None),
                1.0,
            ),
        ],
    )
    .await;
    // `a` goes; `b` gets the slot, says nothing, and is closed after the
    // header read timeout.
    drop(a);
    assert_eq!(closed_by_gateway(&mut b).await, "");

    // On `edge`: a head that never ends is cut off by the same timeout.
    let mut partial = tokio::net::TcpStream::connect(edge).await.unwrap();
    partial
        .write_all(b"GET /app HTTP/1.1\r\nHost: t\r\n")
        .await
        .unwrap();
    assert_eq!(closed_by_gateway(&mut partial).await, "");

    // Weir's own 4xx answers, one of each kind.
    let refusals = [
        (
            "GET /app HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n".to_owned(),
            400,
        ),
        ("GET /app/../x HTTP/1.1\r\nHost: t\r\n\r\n".to_owned(), 400),
        (
            "GET /app HTTP/1.1\r\nHost: t\r\nBad Header\r\n\r\n".to_owned(),
            400,
        ),
        (
            format!("GET /app/{} HTTP/1.1\r\nHost: t\r\n\r\n", "u".repeat(2_000)),
            414,
        ),
        (
            format!(
                "GET /app HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n",
                "a".repeat(10_000)
            ),
            431,
        ),
    ];
    for (req, status) in refusals {
        let mut s = tokio::net::TcpStream::connect(edge).await.unwrap();
        s.write_all(req.as_bytes()).await.unwrap();
        let answer = closed_by_gateway(&mut s).await;
        assert_eq!(raw_status(&answer), Some(status), "{answer}");
    }
    let mut nowhere = RawConn::open(edge).await;
    nowhere
        .send(b"GET /nowhere HTTP/1.1\r\nHost: t\r\n\r\n")
        .await;
    assert_eq!(nowhere.response().await.status, 404);

    let reason = |r: &str| {
        per_listener(
            "weir_listener_client_errors_total",
            "edge",
            Some(("reason", r)),
        )
    };
    let timeout =
        |l: &str, t: &str| per_listener("weir_listener_timeouts_total", l, Some(("timeout", t)));
    let text = expect(
        &gw,
        &[
            (
                per_listener("weir_listener_connections_accepted_total", "main", None),
                2.0,
            ),
            (
                per_listener("weir_listener_connections_limited_total", "main", None),
                1.0,
            ),
            (timeout("main", "header_read"), 1.0),
            (timeout("edge", "header_read"), 1.0),
            (
                per_listener("weir_listener_connections_accepted_total", "edge", None),
                7.0,
            ),
            (
                per_listener("weir_listener_connections_limited_total", "edge", None),
                0.0,
            ),
            (
                per_listener("weir_listener_connections_open", "edge", None),
                1.0,
            ),
            (reason("bad_framing"), 1.0),
            (reason("bad_target"), 1.0),
            (reason("malformed"), 1.0),
            (reason("uri_too_long"), 1.0),
            (reason("headers_too_large"), 1.0),
            (reason("no_route"), 1.0),
            // The refusals Weir made itself (not hyper's) are requests
            // that matched no route; the one served is `app`'s.
            (route_requests("(none)", "GET", "4xx"), 4.0),
            (route_requests("app", "GET", "2xx"), 1.0),
        ],
    )
    .await;
    assert!(
        !text.contains("listener=\"main\",reason="),
        "main refused nothing: {text}"
    );
    drop(nowhere);
}

#[tokio::test]
async fn a_tls_listener_shows_its_handshakes_and_their_failures_by_reason() {
    let up = Upstream::echo("app").await;
    let ca = crate::support::pki::Ca::new("Metrics CA");
    let cert = ca.server(&["a.test"], false);
    let config = format!(
        "[server]\nworkers = 2\n\n[[listener]]\nname = \"main\"\naddress = \"127.0.0.1:0\"\n\
         [listener.tls]\ncertificates = [{{ cert = \"a.pem\", key = \"a.key\" }}]\n\n\
         [[upstream]]\nname = \"app\"\nendpoints = [\"{}\"]\n\n\
         [[route]]\nname = \"app\"\nupstream = \"app\"\n{ADMIN}",
        up.addr
    );
    let gw = Gateway::with_config(config)
        .file("a.pem", cert.cert.as_bytes())
        .file("a.key", cert.key.as_bytes())
        .start();
    let main = gw.listener("main");

    // One handshake that completes, then plain HTTP to the TLS port.
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pki_types::CertificateDer::pem_slice_iter(ca.pem().as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let tls = rustls::ClientConfig::builder_with_provider(weir::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(main).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("a.test").unwrap();
    let done = tokio_rustls::TlsConnector::from(std::sync::Arc::new(tls))
        .connect(name, tcp)
        .await;
    assert!(done.is_ok(), "{done:?}");
    drop(done);
    let plain = raw(
        main,
        b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(raw_status(&plain), Some(400), "{plain}");

    let tls_series = |name: &str, k: &str, v: &str| per_listener(name, "main", Some((k, v)));
    let text = expect(
        &gw,
        &[
            (
                tls_series("weir_listener_tls_handshakes_total", "kind", "full"),
                1.0,
            ),
            (
                tls_series("weir_listener_tls_handshakes_total", "kind", "resumed"),
                0.0,
            ),
            (
                tls_series(
                    "weir_listener_tls_handshake_failures_total",
                    "reason",
                    "not_tls",
                ),
                1.0,
            ),
            (
                per_listener("weir_listener_connections_accepted_total", "main", None),
                2.0,
            ),
        ],
    )
    .await;
    assert_eq!(
        text.matches("weir_listener_tls_handshake_failures_total{")
            .count(),
        1,
        "{text}"
    );
}

/// An HTTP method token no one registered: `X` and 8 random letters and
/// digits.
fn random_token(len: usize) -> String {
    (0..len)
        .map(|_| {
            let c = fastrand::alphanumeric();
            c.to_ascii_uppercase()
        })
        .collect()
}

/// Series in a scrape: the lines that are not comments.
fn series(text: &str) -> Vec<&str> {
    text.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.rsplit_once(' ').map_or(l, |(s, _)| s))
        .collect()
}

/// One raw request with this method, path, host and extra header; the
/// answer's status.
async fn ask(addr: SocketAddr, method: &str, path: &str, host: &str, header: &str) -> u16 {
    let mut c = RawConn::open(addr).await;
    c.send(format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\n{header}\r\n\r\n").as_bytes())
        .await;
    c.response().await.status
}

#[tokio::test]
async fn clients_cannot_create_label_values_random_hosts_paths_methods_and_headers_add_no_series() {
    let up = Upstream::echo("app").await;
    let gw = Gateway::with_config(listeners_config(up.addr)).start();
    let edge = gw.listener("edge");

    // Warm-up: one request of each kind creates the fixed series it
    // counts under (a route and no route, a common and an unknown method).
    assert_eq!(ask(edge, "GET", "/app", "t", "X-A: 1").await, 200);
    assert_eq!(ask(edge, "FOO123", "/app", "t", "X-A: 1").await, 200);
    assert_eq!(ask(edge, "GET", "/nowhere", "t", "X-A: 1").await, 404);
    assert_eq!(ask(edge, "FOO123", "/nowhere", "t", "X-A: 1").await, 404);
    let before = expect(
        &gw,
        &[
            (route_requests("(none)", "GET", "4xx"), 1.0),
            (route_requests("(none)", "other", "4xx"), 1.0),
            (route_requests("app", "GET", "2xx"), 1.0),
            (route_requests("app", "other", "2xx"), 1.0),
        ],
    )
    .await;

    let mut sent = Vec::new();
    for i in 0..40 {
        let method = format!("X{}", random_token(8));
        let host = format!("h{}.example", random_token(10).to_ascii_lowercase());
        let name = format!("x-{}", random_token(12).to_ascii_lowercase());
        let segment = random_token(12).to_ascii_lowercase();
        let (path, status) = if i % 2 == 0 {
            (format!("/app/{segment}?q={segment}"), 200)
        } else {
            (format!("/{segment}"), 404)
        };
        let header = format!("{name}: {segment}");
        assert_eq!(ask(edge, &method, &path, &host, &header).await, status);
        sent.extend([method, host, name, segment]);
    }
    // Every one of them was counted, under the fixed series.
    let after = expect(
        &gw,
        &[
            (route_requests("(none)", "other", "4xx"), 21.0),
            (route_requests("app", "other", "2xx"), 21.0),
            (
                per_listener(
                    "weir_listener_client_errors_total",
                    "edge",
                    Some(("reason", "no_route")),
                ),
                22.0,
            ),
        ],
    )
    .await;
    assert_eq!(
        series(&before),
        series(&after),
        "the set of series changed:\nbefore:\n{before}\nafter:\n{after}"
    );
    for token in &sent {
        assert!(
            !after.contains(token.as_str()),
            "{token} became part of a series"
        );
    }
}

#[tokio::test]
async fn promtool_finds_no_problem_in_a_scrape() {
    let dead = ClosedPort::new();
    let live = Upstream::echo("live").await;
    let config = format!(
        "[server]\nworkers = 2\n\n[[listener]]\nname = \"main\"\naddress = \"127.0.0.1:0\"\n\n\
         [[upstream]]\nname = \"app\"\n{}\noutlier = {{ consecutive_connect_failures = 0 }}\n\n\
         [[route]]\nname = \"app\"\nupstream = \"app\"\npath_prefix = \"/app\"\n{ADMIN}",
        endpoints(&[(dead.addr(), 1), (live.addr, 1)]),
    );
    let gw = Gateway::with_config(config).start();
    let c = client();
    for _ in 0..6 {
        assert_eq!(get(&c, &main_url(&gw, "/app"), &[]).await.status, 200);
    }
    assert_eq!(get(&c, &main_url(&gw, "/nowhere"), &[]).await.status, 404);
    let text = expect(&gw, &[(route_requests("(none)", "GET", "4xx"), 1.0)]).await;
    assert!(text.contains("weir_upstream_attempts_total{"), "{text}");
    assert!(
        text.contains("weir_listener_connections_accepted_total{"),
        "{text}"
    );

    promtool_finds_nothing(&text);
}
