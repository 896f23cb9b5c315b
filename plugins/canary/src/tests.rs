//! Behaviour of `canary` through the SDK's test host.

use serde_json::json;
use weir_sdk::testing::{TestHost, TestRequest};

use super::Canary;

fn host(config: serde_json::Value) -> TestHost<Canary> {
    TestHost::new(config).unwrap()
}

#[test]
fn zero_and_hundred_percent_are_absolute() {
    let mut none = host(json!({ "upstream": "v2", "percent": 0 }));
    let mut all = host(json!({ "upstream": "v2", "percent": 100 }));
    for _ in 0..200 {
        assert_eq!(none.run(TestRequest::get("/")).routed_to(), None);
        assert_eq!(all.run(TestRequest::get("/")).routed_to(), Some("v2"));
    }
}

#[test]
fn percentage_splits_new_clients_roughly_as_configured() {
    let mut host = host(json!({ "upstream": "v2", "percent": 25 }));
    host.seed_random(42);
    let canary = (0..4000)
        .filter(|_| host.run(TestRequest::get("/")).routed_to() == Some("v2"))
        .count();
    // 25 % of 4000 = 1000; the deterministic generator lands well inside
    // a ±15 % band, which a wrong scale (percent vs. fraction) would not.
    assert!(
        (850..=1150).contains(&canary),
        "{canary} of 4000 went to the canary"
    );
}

#[test]
fn a_fresh_draw_is_remembered_in_a_cookie_and_honoured() {
    let mut host = host(json!({ "upstream": "v2", "percent": 100 }));
    let first = host.run(TestRequest::get("/"));
    assert_eq!(first.routed_to(), Some("v2"));
    assert_eq!(
        first.header("set-cookie"),
        Some("weir_canary=canary; Path=/; Max-Age=86400; HttpOnly; SameSite=Lax")
    );
    assert_eq!(first.context("new-decision"), Some("canary"));

    // A client pinned to stable stays there although the draw says canary,
    // and is not given a new cookie.
    let pinned = host.run(TestRequest::get("/").header("cookie", "a=1; weir_canary=stable; b=2"));
    assert_eq!(pinned.routed_to(), None);
    assert_eq!(pinned.header("set-cookie"), None);
}

#[test]
fn pinned_canary_client_stays_on_the_canary_at_zero_percent() {
    let mut host = host(json!({ "upstream": "v2", "percent": 0 }));
    let pinned = host.run(TestRequest::get("/").header("cookie", "weir_canary=canary"));
    assert_eq!(pinned.routed_to(), Some("v2"));
    // Cookies split over several headers (HTTP/2) are read too.
    let split = host.run(
        TestRequest::get("/")
            .header("cookie", "a=1")
            .header("cookie", "weir_canary=canary"),
    );
    assert_eq!(split.routed_to(), Some("v2"));
}

#[test]
fn a_tampered_cookie_is_ignored_and_redrawn() {
    let mut host = host(json!({ "upstream": "v2", "percent": 0 }));
    let exchange = host.run(TestRequest::get("/").header("cookie", "weir_canary=../admin"));
    assert_eq!(exchange.routed_to(), None);
    assert_eq!(
        exchange.header("set-cookie"),
        Some("weir_canary=stable; Path=/; Max-Age=86400; HttpOnly; SameSite=Lax")
    );
}

#[test]
fn opt_in_header_wins_over_cookie_and_draw() {
    let mut host = host(json!({
        "upstream": "v2",
        "percent": 0,
        "header": { "name": "x-beta", "values": ["1", "yes"] },
    }));
    let opted = host.run(
        TestRequest::get("/")
            .header("x-beta", "yes")
            .header("cookie", "weir_canary=stable"),
    );
    assert_eq!(opted.routed_to(), Some("v2"));
    assert_eq!(opted.header("set-cookie"), None);
    let other_value = host.run(TestRequest::get("/").header("x-beta", "no"));
    assert_eq!(other_value.routed_to(), None);
}

#[test]
fn non_sticky_mode_sets_no_cookie_and_ignores_existing_ones() {
    let mut host = host(json!({
        "upstream": "v2", "percent": 0, "sticky": false, "cookie": "cnry", "cookie_max_age": 60,
    }));
    let exchange = host.run(TestRequest::get("/").header("cookie", "cnry=canary"));
    assert_eq!(exchange.routed_to(), None);
    assert_eq!(exchange.header("set-cookie"), None);
}

#[test]
fn cookie_name_and_age_are_configurable() {
    let mut host =
        host(json!({ "upstream": "v2", "percent": 100, "cookie": "cnry", "cookie_max_age": 60 }));
    assert_eq!(
        host.run(TestRequest::get("/")).header("set-cookie"),
        Some("cnry=canary; Path=/; Max-Age=60; HttpOnly; SameSite=Lax")
    );
}

#[test]
fn invalid_configurations_are_refused() {
    let cases = [
        (json!({}), "missing field `upstream`"),
        (json!({ "upstream": "" }), "upstream:"),
        (json!({ "upstream": "v2", "percent": 101 }), "percent:"),
        (json!({ "upstream": "v2", "percent": -1 }), "percent:"),
        (
            json!({ "upstream": "v2", "header": { "name": "x", "values": [] } }),
            "header.values:",
        ),
        (
            json!({ "upstream": "v2", "header": { "name": "a b", "values": ["1"] } }),
            "header.name:",
        ),
        (json!({ "upstream": "v2", "cookie": "a=b" }), "cookie:"),
        (
            json!({ "upstream": "v2", "cookie_max_age": 999_999_999 }),
            "cookie_max_age:",
        ),
        (json!({ "upstream": "v2", "percnt": 5 }), "unknown field"),
    ];
    for (config, expected) in cases {
        let err = TestHost::<Canary>::new(config.clone())
            .err()
            .unwrap_or_else(|| panic!("accepted {config}"));
        assert!(err.contains(expected), "{config}: {err}");
    }
}
