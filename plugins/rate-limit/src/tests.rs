//! Behaviour of `rate-limit` through the SDK's test host.

use std::time::Duration;

use serde_json::json;
use weir_sdk::testing::{TestHost, TestRequest};

use super::RateLimit;

fn host(config: serde_json::Value) -> TestHost<RateLimit> {
    TestHost::new(config).unwrap()
}

#[test]
fn allows_the_burst_then_refuses_with_429_and_headers() {
    let mut host = host(json!({ "capacity": 3, "refill_per_second": 1 }));
    for remaining in ["2", "1", "0"] {
        let ok = host.run(TestRequest::get("/"));
        assert_eq!(ok.status(), 200);
        assert!(ok.upstream_request().is_some());
        assert_eq!(ok.header("ratelimit-limit"), Some("3"));
        assert_eq!(ok.header("ratelimit-remaining"), Some(remaining));
    }
    let refused = host.run(TestRequest::get("/"));
    assert_eq!(refused.status(), 429);
    assert!(refused.upstream_request().is_none());
    assert_eq!(refused.header("retry-after"), Some("1"));
    assert_eq!(refused.header("ratelimit-limit"), Some("3"));
    assert_eq!(refused.header("ratelimit-remaining"), Some("0"));
    assert_eq!(refused.header("ratelimit-reset"), Some("1"));
    assert_eq!(host.counter("rate_limited"), 1);
}

#[test]
fn reset_counts_seconds_until_the_bucket_is_full() {
    let mut host = host(json!({ "capacity": 10, "refill_per_second": 2 }));
    let first = host.run(TestRequest::get("/"));
    assert_eq!(first.header("ratelimit-remaining"), Some("9"));
    assert_eq!(first.header("ratelimit-reset"), Some("1"));
    for _ in 0..4 {
        host.run(TestRequest::get("/"));
    }
    let sixth = host.run(TestRequest::get("/"));
    assert_eq!(sixth.header("ratelimit-remaining"), Some("4"));
    assert_eq!(sixth.header("ratelimit-reset"), Some("3"));
}

#[test]
fn tokens_come_back_with_time() {
    let mut host = host(json!({ "capacity": 1, "refill_per_second": 1 }));
    assert_eq!(host.run(TestRequest::get("/")).status(), 200);
    assert_eq!(host.run(TestRequest::get("/")).status(), 429);
    host.advance(Duration::from_millis(999));
    assert_eq!(host.run(TestRequest::get("/")).status(), 429);
    host.advance(Duration::from_millis(1));
    assert_eq!(host.run(TestRequest::get("/")).status(), 200);
}

#[test]
fn retry_after_rounds_up_slow_refills() {
    // 800 ms to wait is announced as 1 s: "0" would invite an instant retry.
    let mut host = host(json!({ "capacity": 1, "refill_per_second": 1 }));
    host.run(TestRequest::get("/"));
    host.advance(Duration::from_millis(200));
    let refused = host.run(TestRequest::get("/"));
    assert_eq!(refused.header("retry-after"), Some("1"));
}

#[test]
fn buckets_are_per_client_ip() {
    let mut host = host(json!({ "capacity": 1, "refill_per_second": 1 }));
    let a = || TestRequest::get("/").client_ip("192.0.2.1");
    let b = || TestRequest::get("/").client_ip("192.0.2.2");
    assert_eq!(host.run(a()).status(), 200);
    assert_eq!(host.run(a()).status(), 429);
    assert_eq!(host.run(b()).status(), 200);
}

#[test]
fn header_key_separates_clients_and_falls_back_to_ip() {
    let mut host = host(
        json!({ "capacity": 1, "refill_per_second": 1, "key": "header", "header": "x-tenant" }),
    );
    let tenant = |t: &str| TestRequest::get("/").header("x-tenant", t);
    assert_eq!(host.run(tenant("a")).status(), 200);
    assert_eq!(host.run(tenant("a")).status(), 429);
    assert_eq!(host.run(tenant("b")).status(), 200);
    // No header: the client IP's bucket, separate from any header value,
    // even one that spells an IP.
    assert_eq!(host.run(tenant("ip:127.0.0.1")).status(), 200);
    assert_eq!(host.run(TestRequest::get("/")).status(), 200);
    assert_eq!(host.run(TestRequest::get("/")).status(), 429);
}

#[test]
fn consumer_key_uses_the_api_key_header_and_hashes_long_values() {
    let mut host = host(json!({ "capacity": 1, "refill_per_second": 1, "key": "consumer" }));
    let long_a = "a".repeat(500);
    let long_b = format!("{}b", "a".repeat(499));
    let consumer = |c: &str| TestRequest::get("/").header("x-consumer", c);
    assert_eq!(host.run(consumer(&long_a)).status(), 200);
    assert_eq!(host.run(consumer(&long_a)).status(), 429);
    assert_eq!(host.run(consumer(&long_b)).status(), 200);
}

#[test]
fn invalid_configurations_are_refused() {
    let cases = [
        (
            json!({ "refill_per_second": 1 }),
            "missing field `capacity`",
        ),
        (
            json!({ "capacity": 0, "refill_per_second": 1 }),
            "capacity:",
        ),
        (
            json!({ "capacity": 1, "refill_per_second": 0 }),
            "refill_per_second:",
        ),
        (
            json!({ "capacity": 1, "refill_per_second": 1, "key": "header" }),
            "header: required",
        ),
        (
            json!({ "capacity": 1, "refill_per_second": 1, "header": "x" }),
            "header: only used",
        ),
        (
            json!({ "capacity": 1, "refill_per_second": 1, "key": "consumer", "header": "a b" }),
            "header:",
        ),
        (
            json!({ "capacity": 1, "refill_per_second": 1, "key": "cookie" }),
            "unknown variant",
        ),
        (json!({ "capacity": 1, "refill": 1 }), "unknown field"),
    ];
    for (config, expected) in cases {
        let err = TestHost::<RateLimit>::new(config.clone())
            .err()
            .unwrap_or_else(|| panic!("accepted {config}"));
        assert!(err.contains(expected), "{config}: {err}");
    }
}
