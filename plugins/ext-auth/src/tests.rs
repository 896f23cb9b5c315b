//! Behaviour of `ext-auth` through the SDK's test host, its authorization
//! service scripted per test.

use std::time::Duration;

use serde_json::{Value, json};
use weir_sdk::calls::CallError;
use weir_sdk::testing::{Exchange, TestCallAnswer, TestCallResponse, TestHost, TestRequest};

use super::entry::encode;
use super::memo::MEMO_ENTRIES;
use super::{CONSUMER_FIELD, ExtAuth, MAX_REFUSAL_BODY_BYTES};

fn config() -> Value {
    json!({
        "upstream": "auth",
        "path": "/check",
        "request_headers": ["authorization", "cookie"],
        "upstream_headers": ["x-user", "x-tenant"],
        "consumer_header": "x-user",
    })
}

fn host_with(config: Value) -> TestHost<ExtAuth> {
    let mut host = TestHost::<ExtAuth>::new(config).unwrap();
    host.allow_calls(["auth"]);
    host
}

fn allow() -> TestCallResponse {
    TestCallResponse::new(200)
        .header("x-user", "ada")
        .header("x-tenant", "t1")
        .header("x-other", "not copied")
}

fn bearer(token: &str) -> TestRequest {
    TestRequest::get("/orders/7?full=1").header("authorization", &format!("Bearer {token}"))
}

fn refused_without_forwarding(exchange: &Exchange, status: u16) {
    assert_eq!(exchange.status(), status, "{}", exchange.body_text());
    assert!(exchange.upstream_request().is_none());
}

#[test]
fn an_allowing_answer_lets_the_request_through_with_the_services_headers() {
    let mut host = host_with(config());
    host.answer_calls("auth", allow());
    let exchange = host.run(
        bearer("t-1")
            .header("cookie", "a=1")
            .header("cookie", "b=2")
            .header("x-unrelated", "kept"),
    );
    let upstream = exchange.upstream_request().expect("forwarded");
    assert_eq!(upstream.header("x-user"), Some("ada"));
    assert_eq!(upstream.header("x-tenant"), Some("t1"));
    assert_eq!(upstream.header("x-other"), None);
    assert_eq!(upstream.header("authorization"), Some("Bearer t-1"));
    assert_eq!(exchange.log_field(CONSUMER_FIELD), Some("ada"));

    // The service got the chosen headers, every value, and the request's
    // method and URI; nothing else of the request.
    let [call] = exchange.calls() else {
        panic!("one call: {:?}", exchange.calls())
    };
    assert_eq!(call.upstream(), "auth");
    assert_eq!(call.method(), "GET");
    assert_eq!(call.path(), "/check");
    assert_eq!(call.header("authorization"), Some("Bearer t-1"));
    let cookies: Vec<&str> = call
        .headers()
        .iter()
        .filter(|(n, _)| n == "cookie")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(cookies, ["a=1", "b=2"]);
    assert_eq!(call.header("x-forwarded-method"), Some("GET"));
    assert_eq!(call.header("x-forwarded-uri"), Some("/orders/7?full=1"));
    assert_eq!(call.header("x-unrelated"), None);
    assert!(!call.background());
    // The tag is the cache key: a digest, not the token.
    assert_eq!(call.tag().len(), 64);
    assert!(!call.tag().contains("t-1"));
}

#[test]
fn a_refusal_passes_the_services_status_headers_and_body() {
    let mut host = host_with(config());
    host.answer_calls(
        "auth",
        TestCallResponse::new(403)
            .header("www-authenticate", "Bearer realm=\"shop\"")
            .header("content-type", "application/json")
            .header("x-user", "not for the client")
            .body("{\"error\":\"forbidden\"}"),
    );
    let exchange = host.run(bearer("t-1"));
    refused_without_forwarding(&exchange, 403);
    assert_eq!(
        exchange.header("www-authenticate"),
        Some("Bearer realm=\"shop\"")
    );
    assert_eq!(exchange.header("content-type"), Some("application/json"));
    assert_eq!(exchange.header("x-user"), None);
    assert_eq!(exchange.body_text(), "{\"error\":\"forbidden\"}");
    assert!(exchange.log_fields().is_empty());

    // A login redirect passes `location` when configured to.
    let mut config = config();
    config["client_headers"] = json!(["location", "set-cookie"]);
    let mut host = host_with(config);
    host.answer_calls(
        "auth",
        TestCallResponse::new(302)
            .header("location", "https://login.example/?next=%2F")
            .header("set-cookie", "state=1"),
    );
    let exchange = host.run(TestRequest::get("/"));
    refused_without_forwarding(&exchange, 302);
    assert_eq!(
        exchange.header("location"),
        Some("https://login.example/?next=%2F")
    );
    assert_eq!(exchange.header("set-cookie"), Some("state=1"));
    assert_eq!(exchange.body_text(), "");
}

#[test]
fn an_oversized_refusal_body_is_dropped_not_cut() {
    let mut host = host_with(config());
    host.answer_calls(
        "auth",
        TestCallResponse::new(401)
            .header("content-type", "text/html")
            .body("x".repeat(MAX_REFUSAL_BODY_BYTES + 1)),
    );
    let exchange = host.run(bearer("t-1"));
    refused_without_forwarding(&exchange, 401);
    assert!(exchange.body().is_empty());
    assert_eq!(exchange.header("content-type"), None);
}

#[test]
fn a_cached_decision_makes_no_call() {
    let mut host = host_with(config());
    host.answer_calls_in_order("auth", [TestCallAnswer::from(allow())]);
    let first = host.run(bearer("t-1"));
    assert_eq!(first.calls().len(), 1);
    assert_eq!(host.counter("ext_auth_allowed"), 1);

    // The script has no second answer: a call would fail the request.
    let second = host.run(bearer("t-1").header("x-user", "mallory"));
    assert!(second.calls().is_empty(), "{:?}", second.calls());
    let upstream = second.upstream_request().expect("forwarded");
    assert_eq!(upstream.header_all("x-user"), ["ada"]);
    assert_eq!(upstream.header("x-tenant"), Some("t1"));
    assert_eq!(second.log_field(CONSUMER_FIELD), Some("ada"));
    assert_eq!(host.counter("ext_auth_cache_hit"), 1);
}

#[test]
fn the_cache_key_is_a_digest_of_the_credentials() {
    let mut host = host_with(config());
    host.answer_calls("auth", allow());
    let exchange = host.run(bearer("secret-token"));
    let key = exchange.calls()[0].tag().to_owned();
    let value = host
        .state(&key)
        .expect("the decision is cached under the tag");
    assert!(!String::from_utf8_lossy(&value).contains("secret-token"));
}

#[test]
fn a_decision_expires_after_cache_ttl() {
    let mut config = config();
    config["cache_ttl"] = json!("30s");
    let mut host = host_with(config);
    host.answer_calls("auth", allow());
    assert_eq!(host.run(bearer("t-1")).calls().len(), 1);
    host.advance(Duration::from_secs(29));
    assert!(host.run(bearer("t-1")).calls().is_empty());
    host.advance(Duration::from_secs(2));
    let after = host.run(bearer("t-1"));
    assert_eq!(after.calls().len(), 1);
    assert_eq!(after.status(), 200);
}

#[test]
fn different_credentials_have_different_entries() {
    let mut host = host_with(config());
    host.answer_calls_in_order(
        "auth",
        [
            TestCallAnswer::from(TestCallResponse::new(200).header("x-user", "ada")),
            TestCallAnswer::from(TestCallResponse::new(200).header("x-user", "bob")),
        ],
    );
    let ada = host.run(bearer("t-ada"));
    let bob = host.run(bearer("t-bob"));
    assert_eq!(bob.calls().len(), 1, "another token is asked about");
    assert_ne!(ada.calls()[0].tag(), bob.calls()[0].tag());
    // A cookie added to the same token is another credential too.
    let with_cookie = host.run(bearer("t-ada").header("cookie", "s=1"));
    assert_eq!(
        with_cookie.status(),
        503,
        "a third call, and no answer left"
    );

    let ada_again = host.run(bearer("t-ada"));
    assert!(ada_again.calls().is_empty());
    assert_eq!(
        ada_again.upstream_request().unwrap().header("x-user"),
        Some("ada")
    );
    let bob_again = host.run(bearer("t-bob"));
    assert_eq!(
        bob_again.upstream_request().unwrap().header("x-user"),
        Some("bob")
    );
}

#[test]
fn refusals_are_not_cached_unless_deny_ttl_says_so() {
    let refusal =
        || TestCallAnswer::from(TestCallResponse::new(401).header("www-authenticate", "Bearer"));
    let mut host = host_with(config());
    host.answer_calls_in_order("auth", [refusal(), TestCallAnswer::from(allow())]);
    refused_without_forwarding(&host.run(bearer("t-1")), 401);
    let retried = host.run(bearer("t-1"));
    assert_eq!(retried.calls().len(), 1);
    assert_eq!(retried.status(), 200);

    let mut config = config();
    config["deny_ttl"] = json!("10s");
    let mut host = host_with(config);
    host.answer_calls_in_order("auth", [refusal()]);
    refused_without_forwarding(&host.run(bearer("t-1")), 401);
    let cached = host.run(bearer("t-1"));
    assert!(cached.calls().is_empty());
    refused_without_forwarding(&cached, 401);
    assert_eq!(cached.header("www-authenticate"), Some("Bearer"));
    host.advance(Duration::from_secs(11));
    assert_eq!(
        host.run(bearer("t-1")).status(),
        503,
        "expired: asked again"
    );
}

#[test]
fn a_5xx_answer_is_passed_on_and_never_cached() {
    let mut config = config();
    config["deny_ttl"] = json!("10s");
    let mut host = host_with(config);
    host.answer_calls_in_order(
        "auth",
        [
            TestCallAnswer::from(TestCallResponse::new(500)),
            TestCallAnswer::from(allow()),
        ],
    );
    refused_without_forwarding(&host.run(bearer("t-1")), 500);
    assert_eq!(host.run(bearer("t-1")).status(), 200);
}

#[test]
fn requests_without_credentials_are_asked_about_every_time() {
    let mut host = host_with(config());
    host.answer_calls("auth", allow());
    for _ in 0..2 {
        let exchange = host.run(TestRequest::get("/public"));
        assert_eq!(exchange.calls().len(), 1);
        assert_eq!(exchange.calls()[0].tag(), "", "not cached");
        assert_eq!(exchange.status(), 200);
    }
}

#[test]
fn no_answer_in_time_is_the_failure_status() {
    let mut host = host_with(config());
    host.answer_calls("auth", CallError::Timeout);
    let exchange = host.run(bearer("t-1"));
    refused_without_forwarding(&exchange, 503);
    assert_eq!(
        exchange.body_text(),
        "{\"error\":\"authorization service unavailable\"}"
    );
    let warning = host.logs().last().unwrap().message.clone();
    assert!(
        warning.contains("authorization service `auth` gave no answer"),
        "{warning}"
    );
    assert!(!warning.contains("t-1"));
    assert_eq!(host.counter("ext_auth_failed"), 1);

    // A slow answer past the configured timeout is a timeout too.
    let mut config = config();
    config["timeout"] = json!("200ms");
    config["failure_status"] = json!(504);
    let mut host = host_with(config);
    host.answer_calls("auth", allow().delay(Duration::from_millis(300)));
    let exchange = host.run(bearer("t-1"));
    assert_eq!(
        exchange.calls()[0].timeout(),
        Some(Duration::from_millis(200))
    );
    refused_without_forwarding(&exchange, 504);

    // Nothing was cached from a failure.
    host.answer_calls("auth", allow());
    assert_eq!(host.run(bearer("t-1")).status(), 200);
}

#[test]
fn an_unreachable_service_is_the_failure_status() {
    let mut host = host_with(config());
    host.answer_calls("auth", CallError::Failed("connection refused".into()));
    refused_without_forwarding(&host.run(bearer("t-1")), 503);
}

#[test]
fn a_service_the_gateway_does_not_allow_is_the_failure_status_with_a_clear_log() {
    let mut host = TestHost::<ExtAuth>::new(config()).unwrap();
    host.answer_calls("auth", allow());
    let exchange = host.run(bearer("t-1"));
    refused_without_forwarding(&exchange, 503);
    assert!(exchange.calls().is_empty());
    let warning = host.logs().last().unwrap().message.clone();
    assert!(warning.contains("call not allowed"), "{warning}");
    assert!(warning.contains("plugin_limits"), "{warning}");
}

#[test]
fn client_sent_identity_headers_never_reach_the_upstream() {
    let mut host = host_with(config());
    // The service names no tenant this time.
    host.answer_calls("auth", TestCallResponse::new(204).header("x-user", "ada"));
    let exchange = host.run(
        bearer("t-1")
            .header("x-user", "admin")
            .header("X-Tenant", "root"),
    );
    let upstream = exchange.upstream_request().unwrap();
    assert_eq!(upstream.header_all("x-user"), ["ada"]);
    assert_eq!(upstream.header("x-tenant"), None);
    // Nor to the service.
    assert_eq!(exchange.calls()[0].header("x-user"), None);

    // And a refused request is not forwarded at all; a cached one strips too.
    let cached = host.run(bearer("t-1").header("x-tenant", "root"));
    assert!(cached.calls().is_empty());
    assert_eq!(cached.upstream_request().unwrap().header("x-tenant"), None);
}

#[test]
fn caching_can_be_turned_off() {
    let mut config = config();
    config["cache_ttl"] = json!("0s");
    let mut host = host_with(config);
    host.answer_calls("auth", allow());
    for _ in 0..2 {
        let exchange = host.run(bearer("t-1"));
        assert_eq!(exchange.calls().len(), 1);
        assert_eq!(exchange.calls()[0].tag(), "");
    }
}

#[test]
fn credential_headers_choose_what_keys_the_cache() {
    let mut config = config();
    config["credential_headers"] = json!(["authorization"]);
    let mut host = host_with(config);
    host.answer_calls_in_order("auth", [TestCallAnswer::from(allow())]);
    assert_eq!(
        host.run(bearer("t-1").header("cookie", "a=1")).status(),
        200
    );
    // Another cookie, the same token: the same entry.
    let again = host.run(bearer("t-1").header("cookie", "b=2"));
    assert!(again.calls().is_empty());
}

#[test]
fn method_and_path_are_configurable() {
    let mut config = config();
    config["method"] = json!("post");
    config["path"] = json!("/v1/authorize?app=shop");
    let mut host = host_with(config);
    host.answer_calls("auth", allow());
    let exchange = host.run(TestRequest::new("DELETE", "/orders/7").header("authorization", "k"));
    let call = &exchange.calls()[0];
    assert_eq!(call.method(), "POST");
    assert_eq!(call.path(), "/v1/authorize?app=shop");
    assert_eq!(call.header("x-forwarded-method"), Some("DELETE"));
    assert_eq!(call.header("x-forwarded-uri"), Some("/orders/7"));
}

#[test]
fn oversized_credentials_are_refused_before_any_call() {
    let mut host = host_with(config());
    host.answer_calls("auth", allow());
    let huge = "c".repeat(9000);
    let exchange = host.run(bearer("t").header("cookie", &huge).header("cookie", &huge));
    refused_without_forwarding(&exchange, 431);
    assert!(exchange.calls().is_empty());
    let many = (0..70).fold(bearer("t"), |req, i| {
        req.header("cookie", &format!("c{i}=1"))
    });
    let exchange = host.run(many);
    refused_without_forwarding(&exchange, 431);
    assert!(exchange.calls().is_empty());
}

#[test]
fn invalid_configurations_are_refused() {
    let with = |patch: Value| {
        let mut config = config();
        for (k, v) in patch.as_object().unwrap() {
            config[k] = v.clone();
        }
        config
    };
    let cases = [
        (json!({}), "missing field `upstream`"),
        (with(json!({ "upstream": "" })), "upstream:"),
        (with(json!({ "path": "check" })), "method or path:"),
        (with(json!({ "method": "GE T" })), "method or path:"),
        (
            with(json!({ "request_headers": ["bad name"] })),
            "request_headers:",
        ),
        (
            with(json!({ "request_headers": ["x-forwarded-uri"] })),
            "request_headers: \"x-forwarded-uri\" is always sent",
        ),
        (
            with(json!({ "request_headers": ["cookie", "Cookie"] })),
            "listed twice",
        ),
        (
            with(json!({ "upstream_headers": ["content-length"] })),
            "upstream_headers:",
        ),
        (
            with(json!({ "client_headers": ["transfer-encoding"] })),
            "client_headers:",
        ),
        (
            with(json!({ "consumer_header": "x user" })),
            "consumer_header:",
        ),
        (with(json!({ "cache_ttl": "2h" })), "cache_ttl: at most 1h"),
        (
            with(json!({ "deny_ttl": "soon" })),
            "invalid plugin configuration",
        ),
        (with(json!({ "timeout": "0s" })), "timeout:"),
        (
            with(json!({ "failure_status": 403 })),
            "failure_status: 500..=599",
        ),
        (with(json!({ "upstreams": "auth" })), "unknown field"),
    ];
    for (config, expected) in cases {
        let err = TestHost::<ExtAuth>::new(config.clone())
            .err()
            .unwrap_or_else(|| panic!("accepted {config}"));
        assert!(err.contains(expected), "{config}: {err}");
    }
}

#[test]
fn defaults_send_authorization_and_cache_for_a_minute() {
    let mut host = host_with(json!({ "upstream": "auth" }));
    host.answer_calls("auth", TestCallResponse::new(200));
    let first = host.run(bearer("t-1").header("cookie", "a=1"));
    let call = &first.calls()[0];
    assert_eq!(call.path(), "/");
    assert_eq!(call.method(), "GET");
    assert_eq!(call.header("cookie"), None);
    host.advance(Duration::from_secs(59));
    assert!(host.run(bearer("t-1")).calls().is_empty());
    host.advance(Duration::from_secs(2));
    assert_eq!(host.run(bearer("t-1")).calls().len(), 1);
}

/// The shared-state key of a bearer token alone (with `config()`'s
/// credential headers, `authorization` and `cookie`).
fn key_of(host: &TestHost<ExtAuth>, token: &str) -> String {
    let credentials = [vec![format!("Bearer {token}")], vec![]];
    host.plugin().keys.digest(&credentials).as_str().to_owned()
}

/// An allowed decision as another instance would have kept it.
fn entry_for(user: &str, expires_ms: u64) -> Vec<u8> {
    encode(None, expires_ms, Some(user), &[("x-user", user)], b"")
}

fn user_of(exchange: &Exchange) -> Option<&str> {
    exchange.upstream_request()?.header("x-user")
}

#[test]
fn a_remembered_decision_reads_no_shared_state_and_expires_with_it() {
    let mut config = config();
    config["cache_ttl"] = json!("30s");
    let mut host = host_with(config);
    host.answer_calls_in_order("auth", [TestCallAnswer::from(allow())]);
    let first = host.run(bearer("t-1"));
    let key = first.calls()[0].tag().to_owned();
    assert_eq!(key, key_of(&host, "t-1"));
    // No credential stays in the instance past the request.
    assert!(host.plugin().credentials.iter().all(Vec::is_empty));

    // The shared entry is spoiled: read, it would be a miss and a call
    // (none is scripted: a 503), or another user.
    host.set_state(&key, b"not an entry");
    host.advance(Duration::from_millis(29_999));
    let second = host.run(bearer("t-1").header("x-user", "mallory"));
    assert!(second.calls().is_empty(), "{:?}", second.calls());
    assert_eq!(
        second.upstream_request().unwrap().header_all("x-user"),
        ["ada"]
    );
    assert_eq!(
        second.upstream_request().unwrap().header("x-tenant"),
        Some("t1")
    );
    assert_eq!(second.log_field(CONSUMER_FIELD), Some("ada"));
    assert_eq!(host.counter("ext_auth_cache_hit"), 1);
    host.set_state(&key, &entry_for("mallory", host.now_ms() + 1000));
    assert_eq!(user_of(&host.run(bearer("t-1"))), Some("ada"));

    // At the shared entry's expiry the memo's ends too.
    host.set_state(&key, b"not an entry");
    host.advance(Duration::from_millis(1));
    let expired = host.run(bearer("t-1"));
    assert_eq!(expired.status(), 503, "asked again, and no answer left");
}

#[test]
fn a_decision_from_shared_state_is_remembered_for_what_is_left_of_it() {
    let mut host = host_with(config());
    host.answer_calls_in_order("auth", [TestCallAnswer::from(allow())]);
    // Another instance kept it, 10 s before it expires.
    let key = key_of(&host, "t-bob");
    host.set_state(&key, &entry_for("bob", host.now_ms() + 10_000));
    let from_state = host.run(bearer("t-bob"));
    assert!(from_state.calls().is_empty());
    assert_eq!(user_of(&from_state), Some("bob"));
    assert_eq!(from_state.log_field(CONSUMER_FIELD), Some("bob"));

    host.set_state(&key, b"not an entry");
    host.advance(Duration::from_millis(9_999));
    let remembered = host.run(bearer("t-bob"));
    assert!(remembered.calls().is_empty());
    assert_eq!(user_of(&remembered), Some("bob"));
    assert_eq!(remembered.log_field(CONSUMER_FIELD), Some("bob"));
    assert_eq!(host.counter("ext_auth_cache_hit"), 2);

    host.advance(Duration::from_millis(1));
    let asked = host.run(bearer("t-bob"));
    assert_eq!(asked.calls().len(), 1);
    assert_eq!(user_of(&asked), Some("ada"));
}

#[test]
fn shared_entries_are_remembered_only_within_their_expiry_and_cache_ttl() {
    let mut host = host_with(config());
    host.answer_calls("auth", allow());
    let now = host.now_ms();
    let cases: [(&str, Vec<u8>); 3] = [
        // Written before entries said when they expire: used, from shared
        // state each time.
        ("t-old", b"A\ncbob\nhx-user:bob\n\n".to_vec()),
        // Said to outlive cache_ttl (60 s) from now: a clock ahead of
        // this one, or a route caching longer. Used, not remembered.
        ("t-long", entry_for("bob", now + 3_600_000)),
        // Past its expiry, though shared state still holds it: a miss.
        ("t-past", entry_for("bob", now)),
    ];
    for (token, value) in cases {
        let key = key_of(&host, token);
        host.set_state(&key, &value);
        let first = host.run(bearer(token));
        if token == "t-past" {
            assert_eq!(first.calls().len(), 1, "{token}");
            assert_eq!(user_of(&first), Some("ada"), "{token}");
            continue;
        }
        assert!(first.calls().is_empty(), "{token}");
        assert_eq!(user_of(&first), Some("bob"), "{token}");
        host.set_state(&key, b"not an entry");
        let again = host.run(bearer(token));
        assert_eq!(again.calls().len(), 1, "{token}: not remembered");
        assert_eq!(user_of(&again), Some("ada"), "{token}");
    }
}

#[test]
fn different_credentials_have_different_memo_entries() {
    let mut host = host_with(config());
    host.answer_calls_in_order(
        "auth",
        [
            TestCallAnswer::from(TestCallResponse::new(200).header("x-user", "ada")),
            TestCallAnswer::from(TestCallResponse::new(200).header("x-user", "bob")),
            TestCallAnswer::from(TestCallResponse::new(200).header("x-user", "cat")),
        ],
    );
    let ada = host.run(bearer("t-ada"));
    let bob = host.run(bearer("t-bob"));
    let cat = host.run(bearer("t-ada").header("cookie", "s=1"));
    for exchange in [&ada, &bob, &cat] {
        host.set_state(exchange.calls()[0].tag(), b"not an entry");
    }
    for (request, user) in [
        (bearer("t-ada"), "ada"),
        (bearer("t-bob"), "bob"),
        (bearer("t-ada").header("cookie", "s=1"), "cat"),
        (bearer("t-bob"), "bob"),
        (bearer("t-ada"), "ada"),
    ] {
        let exchange = host.run(request);
        assert!(exchange.calls().is_empty());
        assert_eq!(user_of(&exchange), Some(user));
        assert_eq!(exchange.log_field(CONSUMER_FIELD), Some(user));
    }
    // Another credential is not in the memo.
    assert_eq!(host.run(bearer("t-dan")).status(), 503);
}

#[test]
fn the_memo_is_bounded() {
    let mut host = host_with(config());
    host.answer_calls("auth", allow());
    for i in 0..MEMO_ENTRIES + 50 {
        assert_eq!(host.run(bearer(&format!("t-{i}"))).status(), 200);
        assert!(host.plugin().memo.remembered() <= MEMO_ENTRIES);
    }
    // Emptied when full, then filled again: the latest is remembered.
    assert!(host.plugin().memo.remembered() < MEMO_ENTRIES);
    let last = format!("t-{}", MEMO_ENTRIES + 49);
    host.set_state(&key_of(&host, &last), b"not an entry");
    host.answer_calls_in_order("auth", Vec::<TestCallAnswer>::new());
    assert_eq!(user_of(&host.run(bearer(&last))), Some("ada"));
}

#[test]
fn a_clock_stepped_back_empties_the_memo() {
    let mut host = host_with(config());
    host.answer_calls_in_order("auth", [TestCallAnswer::from(allow())]);
    let key = host.run(bearer("t-1")).calls()[0].tag().to_owned();
    let now = host.now_ms();
    host.set_state(&key, &entry_for("bob", now + 60_000));
    assert_eq!(user_of(&host.run(bearer("t-1"))), Some("ada"), "remembered");
    host.set_now_ms(now - 1);
    assert_eq!(user_of(&host.run(bearer("t-1"))), Some("bob"), "read again");
}

#[test]
fn refusals_are_kept_in_shared_state_only() {
    let mut config = config();
    config["deny_ttl"] = json!("10s");
    let mut host = host_with(config);
    host.answer_calls_in_order(
        "auth",
        [
            TestCallAnswer::from(TestCallResponse::new(401).header("www-authenticate", "Bearer")),
            TestCallAnswer::from(allow()),
        ],
    );
    let refused = host.run(bearer("t-1"));
    refused_without_forwarding(&refused, 401);
    let key = refused.calls()[0].tag().to_owned();
    refused_without_forwarding(&host.run(bearer("t-1")), 401);
    // Not in the memo: with the entry spoiled, asked again.
    host.set_state(&key, b"not an entry");
    let asked = host.run(bearer("t-1"));
    assert_eq!(asked.calls().len(), 1);
    assert_eq!(user_of(&asked), Some("ada"));
}

/// What a cache hit costs natively, for a profiler: `MEASURE_N=10000
/// valgrind --tool=callgrind --toggle-collect='*tests*measured*'` on the
/// test binary (a release build with symbols) with `measure_cache_hit
/// --ignored`. The bench's configuration: one credential header, one
/// header set. The first request reads shared state and fills the memo.
#[test]
#[ignore = "measurement"]
fn measure_cache_hit() {
    use weir_sdk::Plugin;
    use weir_sdk::testing::with_request;
    let n: u32 = std::env::var("MEASURE_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let request = || TestRequest::get("/x").header("x-api-key", "bench-key-09-0123456789abcdef");
    let config: super::Config = serde_json::from_value(json!({
        "upstream": "auth", "path": "/check", "request_headers": ["x-api-key"],
        "upstream_headers": ["x-user"], "cache_ttl": "1h",
    }))
    .unwrap();
    let mut plugin = ExtAuth::new(config).unwrap();
    let key = plugin
        .keys
        .digest(&[vec!["bench-key-09-0123456789abcdef".to_owned()]]);
    let expires = weir_sdk::time::now_ms() + 3_600_000;
    weir_sdk::state::set(
        key.as_str(),
        &encode(None, expires, None, &[("x-user", "bench")], b""),
        Some(Duration::from_secs(3600)),
    )
    .unwrap();
    for _ in 0..n {
        with_request(request(), |req| {
            measured(&mut plugin, req);
            assert_eq!(req.header_all("x-user"), ["bench"]);
        });
    }
}

#[inline(never)]
fn measured(plugin: &mut ExtAuth, req: &mut weir_sdk::Request<'_>) {
    use weir_sdk::Plugin;
    let action = plugin.on_request(std::hint::black_box(req));
    assert!(matches!(action, weir_sdk::Action::Continue));
}
