//! Behaviour of `rate-limit` through the SDK's test host.

use std::time::Duration;

use serde_json::json;
use weir_sdk::fleet::FleetAnswer;
use weir_sdk::testing::{FleetMode, FleetOpKind, Phase, TestHost, TestRequest};

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
        (
            json!({ "capacity": 1, "refill_per_second": 1, "fleet": "yes" }),
            "invalid type",
        ),
    ];
    for (config, expected) in cases {
        let err = TestHost::<RateLimit>::new(config.clone())
            .err()
            .unwrap_or_else(|| panic!("accepted {config}"));
        assert!(err.contains(expected), "{config}: {err}");
    }
}

#[test]
fn the_default_takes_from_this_gateways_state_and_makes_no_fleet_operation() {
    let mut host = host(json!({ "capacity": 1, "refill_per_second": 1 }));
    // Whatever the fleet's mode and state, the default never asks it.
    host.fleet_mode(FleetMode::Strict).fleet_unavailable(true);
    let ok = host.run(TestRequest::get("/"));
    assert_eq!(ok.status(), 200);
    assert!(ok.fleet().is_empty());
    assert_eq!(ok.phases(), [Phase::Request, Phase::Response]);
    assert_eq!(host.run(TestRequest::get("/")).status(), 429);
}

#[test]
fn fleet_local_mode_decides_at_once_from_the_fleets_bucket() {
    let mut host = host(json!({ "capacity": 2, "refill_per_second": 1, "fleet": true }));
    // The same key in this gateway's state holds no bucket: a take there
    // would be refused (and the request let through).
    host.set_state("ip:192.0.2.9", b"not a bucket");
    for remaining in ["1", "0"] {
        let ok = host.run(TestRequest::get("/").client_ip("192.0.2.9"));
        assert_eq!(ok.status(), 200);
        assert_eq!(ok.header("ratelimit-remaining"), Some(remaining));
        assert_eq!(ok.phases(), [Phase::Request, Phase::Response]);
        let take = &ok.fleet()[0];
        assert_eq!(take.key(), "ip:192.0.2.9");
        assert!(matches!(take.kind(), FleetOpKind::Take { cost: 1, .. }));
        assert_eq!(take.pending(), None);
    }
    let refused = host.run(TestRequest::get("/").client_ip("192.0.2.9"));
    assert_eq!(refused.status(), 429);
    assert_eq!(refused.header("retry-after"), Some("1"));
    assert_eq!(host.counter("rate_limited"), 1);
    assert_eq!(host.counter("rate_limit_errors"), 0);
}

#[test]
fn fleet_strict_mode_waits_and_decides_with_the_answer() {
    let mut host = host(json!({ "capacity": 2, "refill_per_second": 1, "fleet": true }));
    host.fleet_mode(FleetMode::Strict);
    for remaining in ["1", "0"] {
        let ok = host.run(TestRequest::get("/"));
        assert_eq!(ok.status(), 200);
        assert!(ok.upstream_request().is_some());
        assert_eq!(
            ok.phases(),
            [Phase::Request, Phase::RequestCalls, Phase::Response]
        );
        assert_eq!(ok.header("ratelimit-limit"), Some("2"));
        assert_eq!(ok.header("ratelimit-remaining"), Some(remaining));
        assert_eq!(
            ok.header("ratelimit-reset"),
            Some(if remaining == "1" { "1" } else { "2" })
        );
        assert!(ok.fleet()[0].pending().is_some());
    }
    let refused = host.run(TestRequest::get("/"));
    assert_eq!(refused.status(), 429);
    assert!(refused.upstream_request().is_none());
    assert_eq!(refused.phases(), [Phase::Request, Phase::RequestCalls]);
    assert_eq!(refused.header("retry-after"), Some("1"));
    assert_eq!(refused.header("ratelimit-remaining"), Some("0"));
    let Ok(FleetAnswer::Bucket(outcome)) = refused.fleet()[0].outcome() else {
        panic!("{:?}", refused.fleet());
    };
    assert!(!outcome.allowed);
    assert_eq!(host.counter("rate_limited"), 1);
    // Strict and local modes take from the same fleet bucket.
    host.advance(Duration::from_secs(1));
    host.fleet_mode(FleetMode::Local);
    assert_eq!(host.run(TestRequest::get("/")).status(), 200);
    assert_eq!(host.run(TestRequest::get("/")).status(), 429);
}

#[test]
fn fleet_store_unavailable_fails_closed_with_503() {
    for mode in [FleetMode::Sync, FleetMode::Strict] {
        let mut host = host(json!({ "capacity": 5, "refill_per_second": 1, "fleet": true }));
        host.fleet_mode(mode).fleet_unavailable(true);
        let refused = host.run(TestRequest::get("/"));
        assert_eq!(refused.status(), 503, "{mode:?}");
        assert!(refused.upstream_request().is_none());
        assert_eq!(refused.header("retry-after"), Some("1"));
        assert_eq!(refused.header("content-type"), Some("application/json"));
        assert_eq!(
            refused.body_text(),
            r#"{"error":"rate limit store unavailable"}"#
        );
        assert_eq!(host.counter("rate_limit_unavailable"), 1, "{mode:?}");
        assert_eq!(host.counter("rate_limit_errors"), 0);
        // Reachable again, requests are limited as before.
        host.fleet_unavailable(false);
        assert_eq!(host.run(TestRequest::get("/")).status(), 200, "{mode:?}");
    }
}

#[test]
fn a_strict_take_left_unanswered_fails_closed_with_503() {
    let mut host = host(json!({ "capacity": 5, "refill_per_second": 1, "fleet": true }));
    host.fleet_mode(FleetMode::Strict).fleet_times_out(true);
    let refused = host.run(TestRequest::get("/"));
    assert_eq!(refused.phases(), [Phase::Request, Phase::RequestCalls]);
    assert_eq!(refused.status(), 503);
    assert_eq!(refused.header("retry-after"), Some("1"));
    assert_eq!(
        refused.body_text(),
        r#"{"error":"rate limit store unavailable"}"#
    );
    assert_eq!(host.counter("rate_limit_unavailable"), 1);
}

#[test]
fn other_fleet_errors_let_the_request_through_and_log() {
    // One bucket per client until the plugin holds all the fleet keys it
    // may: the next client's take is refused (a limit, not an empty
    // bucket), and the request goes on.
    let mut host = host(json!({ "capacity": 5, "refill_per_second": 1, "fleet": true }));
    for i in 0..weir_sdk::state::MAX_KEYS {
        let ip = format!("10.{}.{}.{}", i >> 16, (i >> 8) & 0xff, i & 0xff);
        assert_eq!(host.run(TestRequest::get("/").client_ip(&ip)).status(), 200);
    }
    let through = host.run(TestRequest::get("/").client_ip("192.0.2.1"));
    assert_eq!(through.status(), 200);
    assert!(through.upstream_request().is_some());
    assert_eq!(through.header("ratelimit-limit"), None);
    assert_eq!(host.counter("rate_limit_errors"), 1);
    assert_eq!(host.counter("rate_limit_unavailable"), 0);
    let logged = host.logs().pop().unwrap().message;
    assert!(
        logged.starts_with("token bucket unavailable, request allowed: fleet limit reached: "),
        "{logged}"
    );
}
