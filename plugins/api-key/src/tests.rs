//! Behaviour of `api-key` through the SDK's test host.

use serde_json::{Value, json};
use weir_sdk::testing::{Exchange, TestHost, TestRequest};

use super::{ApiKey, CONSUMER_FIELD, MAX_KEY_BYTES};

fn host(config: Value) -> TestHost<ApiKey> {
    TestHost::new(config).unwrap()
}

fn keys() -> Value {
    json!({ "k-alice-123": "alice", "k-bob-456": "bob" })
}

fn assert_denied(exchange: &Exchange, reason: &str) {
    assert_eq!(exchange.status(), 401);
    assert!(exchange.upstream_request().is_none());
    assert_eq!(
        exchange.header("www-authenticate"),
        Some("ApiKey realm=\"weir\"")
    );
    assert_eq!(exchange.body_text(), format!("{{\"error\":\"{reason}\"}}"));
}

#[test]
fn valid_header_key_forwards_consumer_and_strips_the_key() {
    let mut host = host(json!({ "keys": keys() }));
    let exchange = host.run(TestRequest::get("/orders").header("x-api-key", "k-bob-456"));
    let upstream = exchange.upstream_request().expect("forwarded");
    assert_eq!(upstream.header("x-consumer"), Some("bob"));
    assert_eq!(upstream.header("x-api-key"), None);
    assert_eq!(exchange.status(), 200);
    // The access log names the consumer, never the key.
    assert_eq!(
        exchange.log_fields(),
        [(CONSUMER_FIELD.to_owned(), "bob".to_owned())]
    );
}

#[test]
fn refused_requests_name_no_consumer_in_the_access_log() {
    let mut host = host(json!({ "keys": keys() }));
    for request in [
        TestRequest::get("/"),
        TestRequest::get("/").header("x-api-key", "k-bob-45"),
        TestRequest::get("/")
            .header("x-api-key", "k-bob-456")
            .header("x-api-key", "k-alice-123"),
    ] {
        let exchange = host.run(request);
        assert_eq!(exchange.status(), 401);
        assert!(exchange.log_fields().is_empty());
    }
}

#[test]
fn missing_key_is_401_with_challenge() {
    let mut host = host(json!({ "keys": keys() }));
    assert_denied(&host.run(TestRequest::get("/")), "missing api key");
    assert_denied(
        &host.run(TestRequest::get("/").header("x-api-key", "")),
        "missing api key",
    );
    assert_eq!(host.counter("api_key_rejected"), 2);
}

#[test]
fn wrong_key_is_401_including_prefixes_and_overlong_keys() {
    let mut host = host(json!({ "keys": keys() }));
    for wrong in ["k-bob-45", "k-bob-4567", "K-BOB-456", "alice"] {
        assert_denied(
            &host.run(TestRequest::get("/").header("x-api-key", wrong)),
            "invalid api key",
        );
    }
    let huge = "k".repeat(MAX_KEY_BYTES + 1);
    assert_denied(
        &host.run(TestRequest::get("/").header("x-api-key", &huge)),
        "invalid api key",
    );
}

#[test]
fn two_key_headers_are_refused_as_ambiguous() {
    let mut host = host(json!({ "keys": keys() }));
    let exchange = host.run(
        TestRequest::get("/")
            .header("x-api-key", "k-bob-456")
            .header("x-api-key", "k-alice-123"),
    );
    assert_denied(&exchange, "more than one api key");
}

#[test]
fn client_cannot_spoof_the_consumer_header() {
    let mut host = host(json!({ "keys": keys() }));
    let exchange = host.run(
        TestRequest::get("/")
            .header("x-consumer", "admin")
            .header("x-api-key", "k-alice-123"),
    );
    assert_eq!(
        exchange
            .upstream_request()
            .unwrap()
            .header_all("x-consumer"),
        ["alice"]
    );
}

#[test]
fn query_parameter_key_is_accepted_and_removed_from_the_query() {
    let mut host = host(json!({ "keys": keys(), "source": "query" }));
    let exchange = host.run(TestRequest::get("/s?q=1&api_key=k-alice-123&page=2"));
    let upstream = exchange.upstream_request().expect("forwarded");
    assert_eq!(upstream.header("x-consumer"), Some("alice"));
    assert_eq!(upstream.query(), Some("q=1&page=2"));

    let only_key = host.run(TestRequest::get("/s?api_key=k-alice-123"));
    assert_eq!(only_key.upstream_request().unwrap().query(), None);

    // With the query configured, a header key is not looked at.
    assert_denied(
        &host.run(TestRequest::get("/").header("x-api-key", "k-alice-123")),
        "missing api key",
    );
}

#[test]
fn percent_encoded_query_key_is_decoded() {
    let mut host = host(json!({ "keys": { "a b/c": "carol" }, "source": "query", "name": "key" }));
    let exchange = host.run(TestRequest::get("/?key=a%20b%2Fc"));
    assert_eq!(
        exchange.upstream_request().unwrap().header("x-consumer"),
        Some("carol")
    );
}

#[test]
fn configurable_names_and_keeping_the_key() {
    let mut host = host(json!({
        "keys": keys(),
        "name": "authorization-key",
        "consumer_header": "x-client",
        "remove_key": false,
        "realm": "shop",
    }));
    let ok = host.run(TestRequest::get("/").header("authorization-key", "k-alice-123"));
    let upstream = ok.upstream_request().unwrap();
    assert_eq!(upstream.header("x-client"), Some("alice"));
    assert_eq!(upstream.header("authorization-key"), Some("k-alice-123"));
    let denied = host.run(TestRequest::get("/"));
    assert_eq!(
        denied.header("www-authenticate"),
        Some("ApiKey realm=\"shop\"")
    );
}

#[test]
fn invalid_configurations_are_refused_with_the_key_named() {
    let cases = [
        (json!({}), "missing field `keys`"),
        (json!({ "keys": {} }), "keys: at least one"),
        (json!({ "keys": { "": "x" } }), "keys: every key"),
        (json!({ "keys": keys(), "name": "bad header" }), "name:"),
        (
            json!({ "keys": keys(), "source": "cookie" }),
            "unknown variant `cookie`",
        ),
        (
            json!({ "keys": keys(), "consumer_header": "" }),
            "consumer_header:",
        ),
        (json!({ "keys": { "k": "line\nbreak" } }), "keys: consumer"),
        // A consumer is also an access-log field value: no tab, and at
        // most 512 bytes.
        (
            json!({ "keys": { "k": "tab\there" } }),
            "keys: consumer \"tab\\there\": a log field value cannot hold control",
        ),
        (
            json!({ "keys": { "k": "c".repeat(513) } }),
            "a log field value is at most 512 bytes",
        ),
        (json!({ "keys": keys(), "realm": "a\"b" }), "realm:"),
        (
            json!({ "keys": keys(), "source": "query", "name": "a&b" }),
            "name:",
        ),
        (
            json!({ "keys": keys(), "nmae": "x" }),
            "unknown field `nmae`",
        ),
    ];
    for (config, expected) in cases {
        let err = TestHost::<ApiKey>::new(config.clone())
            .err()
            .unwrap_or_else(|| panic!("accepted {config}"));
        assert!(err.contains(expected), "{config}: {err}");
    }
}

#[test]
fn each_of_many_keys_finds_its_own_consumer() {
    let keys: serde_json::Map<String, Value> = (0..500)
        .map(|i| (format!("key-{i:04}"), json!(format!("consumer-{i}"))))
        .collect();
    let mut host = host(json!({ "keys": keys }));
    for i in (0..500).step_by(7) {
        let exchange = host.run(TestRequest::get("/").header("x-api-key", &format!("key-{i:04}")));
        let upstream = exchange.upstream_request().expect("forwarded");
        assert_eq!(
            upstream.header("x-consumer"),
            Some(format!("consumer-{i}").as_str())
        );
        assert_eq!(
            exchange.log_field(CONSUMER_FIELD),
            Some(format!("consumer-{i}").as_str())
        );
    }
    assert_denied(
        &host.run(TestRequest::get("/").header("x-api-key", "key-0500")),
        "invalid api key",
    );
}
