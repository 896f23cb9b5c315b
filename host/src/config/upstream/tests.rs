use std::path::Path;

use super::super::Config;
use super::*;

const BASE: &str = "[[listener]]\naddress = \"127.0.0.1:0\"\n\n";

fn parse(s: &str) -> Result<Config, String> {
    Config::parse(Path::new("t.toml"), &format!("{BASE}{s}")).map_err(|e| e.to_string())
}

#[test]
fn everything_configurable_loads() {
    let c = parse(
            r#"
[[upstream]]
name = "app"
endpoints = ["127.0.0.1:1", "127.0.0.1:2"]
balancer = "consistent_hash"
hash_key = "cookie:session"
panic_threshold = 30
max_connections = 50
max_pending_requests = 20
dns_refresh = "10s"
health_check = { path = "/healthz", interval = "1s", timeout = "200ms", healthy_threshold = 1, unhealthy_threshold = 2, expected_statuses = [200, "300-302"] }
outlier = { consecutive_5xx = 0, consecutive_connect_failures = 2, base_ejection = "1s", max_ejection = "1m" }
retry = { attempts = 3, statuses = [503], backoff = "5ms", max_backoff = "50ms", budget_ratio = 0.1, budget_min_per_second = 0 }
"#,
        )
        .unwrap();
    let u = &c.upstreams[0];
    assert_eq!(
        u.balancer,
        BalancerKind::ConsistentHash(HashKey::Cookie("session".into()))
    );
    assert_eq!(u.panic_threshold, 30);
    let h = u.health_check.as_ref().unwrap();
    assert_eq!(h.expected_statuses, vec![(200, 200), (300, 302)]);
    assert_eq!(u.outlier.consecutive_5xx, 0);
    assert_eq!(u.retry.budget_per_mille, 100);
    assert_eq!(u.retry.statuses, vec![503]);
}

#[test]
fn bad_values_are_named() {
    let all = parse(
        r#"
[[upstream]]
name = "app"
endpoints = ["127.0.0.1:1"]
balancer = "fastest"
hash_key = "query:x"
panic_threshold = 101
health_check = { path = "healthz", interval = "1ms", expected_statuses = ["299-200"] }
retry = { attempts = 9, budget_ratio = 3.0, statuses = [700] }
outlier = { base_ejection = "1m", max_ejection = "1s" }
"#,
    )
    .unwrap_err();
    for needle in [
        "unknown balancer `fastest`",
        "hash_key",
        "panic_threshold",
        "health_check.path",
        "health_check.interval",
        "expected_statuses",
        "retry.attempts",
        "retry.budget_ratio",
        "retry.statuses",
        "outlier.max_ejection",
    ] {
        assert!(all.contains(needle), "{needle} missing from:\n{all}");
    }
    assert!(all.contains("t.toml:5: upstream[0] (app)"), "{all}");
}

#[test]
fn hash_keys() {
    for (s, want) in [
        ("client_ip", HashKey::ClientIp),
        (
            "header:X-User",
            HashKey::Header(HeaderName::from_static("x-user")),
        ),
        ("cookie:sid", HashKey::Cookie("sid".into())),
    ] {
        let c = parse(&format!(
                "[[upstream]]\nname = \"a\"\nendpoints = [\"127.0.0.1:1\"]\nbalancer = \"consistent_hash\"\nhash_key = \"{s}\"\n"
            ))
            .unwrap();
        assert_eq!(c.upstreams[0].balancer, BalancerKind::ConsistentHash(want));
    }
}

#[test]
fn http2_upstreams_load_with_their_settings() {
    let c = parse(
        r#"
[[upstream]]
name = "grpc"
protocol = "h2c"
endpoints = ["127.0.0.1:1"]
health_check = { type = "grpc", service = "echo.Echo", interval = "1s" }
http2 = { max_connections_per_endpoint = 2, max_concurrent_streams = 50, initial_stream_window = "256KiB", initial_connection_window = "8MiB", max_header_list_size = "16KiB", keepalive_interval = "0s", keepalive_timeout = "2s" }

[[upstream]]
name = "tls"
protocol = "auto"
endpoints = ["https://a.example"]
"#,
    )
    .unwrap();
    let u = &c.upstreams[0];
    assert_eq!(u.protocol, Protocol::H2c);
    assert_eq!(u.http2.max_connections_per_endpoint, 2);
    assert_eq!(u.http2.max_concurrent_streams, 50);
    assert_eq!(u.http2.initial_stream_window, 256 * 1024);
    assert_eq!(u.http2.initial_connection_window, 8 * 1024 * 1024);
    assert_eq!(u.http2.max_header_list_size, 16 * 1024);
    assert_eq!(u.http2.keepalive_interval, None);
    assert_eq!(
        u.health_check.as_ref().unwrap().kind,
        CheckKind::Grpc {
            service: "echo.Echo".into()
        }
    );
    let t = &c.upstreams[1];
    assert_eq!(t.protocol, Protocol::Auto);
    assert_eq!(
        t.tls.as_ref().unwrap().alpn,
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    );
    assert_eq!(t.http2, Http2Config::default());
}

#[test]
fn http2_mistakes_are_named() {
    for (toml, needles) in [
        (r#"protocol = "h2""#, &["protocol", "needs TLS", "h2c"][..]),
        (r#"protocol = "h3""#, &["unknown protocol `h3`"][..]),
        (
            r#"protocol = "h2c"
tls = true"#,
            &["`h2c` is HTTP/2 over plain TCP"][..],
        ),
        (
            "http2 = { max_concurrent_streams = 5 }",
            &["http2", "speaks HTTP/1.1"][..],
        ),
        (
            r#"protocol = "h2c"
http2 = { initial_stream_window = "1KiB", max_connections_per_endpoint = 0, keepalive_interval = "10ms" }"#,
            &[
                "initial_stream_window",
                "max_connections_per_endpoint",
                "keepalive_interval",
            ][..],
        ),
        (
            r#"health_check = { type = "grpc" }"#,
            &["gRPC runs over HTTP/2"][..],
        ),
        (
            r#"protocol = "h2c"
health_check = { type = "grpc", path = "/x" }"#,
            &["always asks `/grpc.health.v1.Health/Check`"][..],
        ),
        (
            r#"health_check = { type = "tcp", path = "/" }"#,
            &["unknown health check `tcp`"][..],
        ),
        (
            r#"health_check = { interval = "1s" }"#,
            &["needs the `path`"][..],
        ),
    ] {
        let err = parse(&format!(
            "[[upstream]]\nname = \"u\"\nendpoints = [\"127.0.0.1:1\"]\n{toml}\n"
        ))
        .unwrap_err();
        for n in needles {
            assert!(err.contains(n), "{toml}: `{n}` not in {err}");
        }
    }
}
