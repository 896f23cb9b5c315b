//! Keys from a JWKS endpoint: the first fetch, the shared cache, background
//! refreshes, key rotation, the rate limit on unknown key ids, and an
//! endpoint that is down.

use std::time::Duration;

use serde_json::json;
use weir_sdk::calls::CallError;
use weir_sdk::testing::{TestCallAnswer, TestCallResponse, TestHost};

use super::*;

fn jwks_host() -> TestHost<JwtAuth> {
    let mut host = TestHost::<JwtAuth>::new(json!({
        "jwks": {
            "upstream": "idp",
            "refresh": "5m",
            "min_refresh_interval": "10s",
            "timeout": "500ms",
        },
        "issuer": "https://idp.example",
        "forward_claims": { "sub": "x-user" },
    }))
    .unwrap();
    host.allow_calls(["idp"]);
    host
}

fn key_set(keys: Vec<Value>) -> TestCallAnswer {
    TestCallResponse::new(200)
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&json!({ "keys": keys })).unwrap())
        .into()
}

fn ok_with(host: &mut TestHost<JwtAuth>, token: &str) -> Exchange {
    let exchange = host.run(with_token(token));
    assert_eq!(exchange.status(), 200, "{}", exchange.body_text());
    assert_eq!(
        exchange.upstream_request().unwrap().header("x-user"),
        Some("user-42")
    );
    exchange
}

#[test]
fn the_first_request_waits_for_the_key_set() {
    let mut host = jwks_host();
    let one = ec_key(1);
    host.answer_calls_in_order("idp", [key_set(vec![ec_jwk("one", &one)])]);
    let exchange = ok_with(&mut host, &es256("one", valid_claims(), &one));
    let [call] = exchange.calls() else {
        panic!("one call: {:?}", exchange.calls())
    };
    assert_eq!(call.upstream(), "idp");
    assert_eq!(call.method(), "GET");
    assert_eq!(call.path(), "/.well-known/jwks.json");
    assert_eq!(call.timeout(), Some(Duration::from_millis(500)));
    assert!(!call.background());
    // No credential goes to the identity provider.
    assert_eq!(call.header("authorization"), None);
    assert_eq!(host.counter("jwks_fetched"), 1);
}

#[test]
fn cached_keys_need_no_call() {
    let mut host = jwks_host();
    let one = ec_key(1);
    host.answer_calls_in_order("idp", [key_set(vec![ec_jwk("one", &one)])]);
    ok_with(&mut host, &es256("one", valid_claims(), &one));
    for _ in 0..3 {
        host.advance(Duration::from_secs(60));
        let exchange = ok_with(&mut host, &es256("one", valid_claims(), &one));
        assert!(exchange.calls().is_empty());
    }
}

#[test]
fn the_key_set_is_shared_through_state() {
    // Another instance's fetch, left in shared state, serves this one.
    let one = ec_key(1);
    let mut first = jwks_host();
    first.answer_calls("idp", key_set(vec![ec_jwk("one", &one)]));
    ok_with(&mut first, &es256("one", valid_claims(), &one));
    let (doc, meta) = shared_keys();

    let mut second = jwks_host();
    second.set_state(&doc, &first.state(&doc).unwrap());
    second.set_state(&meta, &first.state(&meta).unwrap());
    let exchange = ok_with(&mut second, &es256("one", valid_claims(), &one));
    assert!(exchange.calls().is_empty());
}

/// The shared-state keys of the test endpoint's key set and its meta.
fn shared_keys() -> (String, String) {
    use sha2::Digest;
    let digest = Sha256::digest(b"idp\n/.well-known/jwks.json");
    let prefix: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
    (format!("jwks:{prefix}:doc"), format!("jwks:{prefix}:meta"))
}

#[test]
fn a_stale_set_is_used_while_a_background_refresh_runs() {
    let mut host = jwks_host();
    let (one, two) = (ec_key(1), ec_key(2));
    host.answer_calls_in_order(
        "idp",
        [
            key_set(vec![ec_jwk("one", &one)]),
            key_set(vec![ec_jwk("one", &one), ec_jwk("two", &two)]),
        ],
    );
    ok_with(&mut host, &es256("one", valid_claims(), &one));
    host.advance(Duration::from_secs(301));

    // Stale: the request goes through with the cached key, without waiting.
    let stale = ok_with(&mut host, &es256("one", valid_claims(), &one));
    let [refresh] = stale.calls() else {
        panic!("one refresh: {:?}", stale.calls())
    };
    assert!(refresh.background());
    // Only one refresh per interval, over all requests.
    assert!(
        ok_with(&mut host, &es256("one", valid_claims(), &one))
            .calls()
            .is_empty()
    );

    // The refresh brought key "two": no fetch needed for it.
    let next = ok_with(&mut host, &es256("two", valid_claims(), &two));
    assert!(next.calls().is_empty());
    assert_eq!(host.counter("jwks_fetched"), 2);
}

#[test]
fn a_failed_background_refresh_keeps_the_keys() {
    let mut host = jwks_host();
    let one = ec_key(1);
    host.answer_calls_in_order(
        "idp",
        [
            key_set(vec![ec_jwk("one", &one)]),
            CallError::Failed("connection refused".into()).into(),
        ],
    );
    ok_with(&mut host, &es256("one", valid_claims(), &one));
    host.advance(Duration::from_secs(301));
    let stale = ok_with(&mut host, &es256("one", valid_claims(), &one));
    assert!(stale.calls()[0].background());
    assert_eq!(host.counter("jwks_fetch_failed"), 1);
    let warning = host.logs().last().unwrap().message.clone();
    assert!(
        warning.contains("JWKS fetch from upstream `idp` failed"),
        "{warning}"
    );
    // Still accepted, and no retry within the interval.
    assert!(
        ok_with(&mut host, &es256("one", valid_claims(), &one))
            .calls()
            .is_empty()
    );
}

#[test]
fn a_rotated_key_is_fetched_when_first_seen() {
    let mut host = jwks_host();
    let (one, two) = (ec_key(1), ec_key(2));
    host.answer_calls_in_order(
        "idp",
        [
            key_set(vec![ec_jwk("one", &one)]),
            key_set(vec![ec_jwk("two", &two)]),
        ],
    );
    ok_with(&mut host, &es256("one", valid_claims(), &one));
    host.advance(Duration::from_secs(11));
    let rotated = ok_with(&mut host, &es256("two", valid_claims(), &two));
    assert_eq!(rotated.calls().len(), 1);
    assert!(!rotated.calls()[0].background());

    // The old key was dropped from the set: its tokens are refused now.
    host.advance(Duration::from_secs(1));
    let old = host.run(with_token(&es256("one", valid_claims(), &one)));
    assert_invalid(&old, "unknown key id");
    assert!(old.calls().is_empty(), "rate-limited");
}

#[test]
fn unknown_key_ids_fetch_at_most_once_per_interval() {
    let mut host = jwks_host();
    let one = ec_key(1);
    host.answer_calls("idp", key_set(vec![ec_jwk("one", &one)]));
    ok_with(&mut host, &es256("one", valid_claims(), &one));

    // Within the interval of the first fetch: refused without a call.
    host.advance(Duration::from_secs(5));
    let unknown = host.run(with_token(&es256("nope", valid_claims(), &one)));
    assert_invalid(&unknown, "unknown key id");
    assert!(unknown.calls().is_empty());

    // After it: one fetch, still unknown, refused; the next waits again.
    host.advance(Duration::from_secs(6));
    let fetched = host.run(with_token(&es256("nope", valid_claims(), &one)));
    assert_invalid(&fetched, "unknown key id");
    assert_eq!(fetched.calls().len(), 1);
    let again = host.run(with_token(&es256("other", valid_claims(), &one)));
    assert_invalid(&again, "unknown key id");
    assert!(again.calls().is_empty());
    assert_eq!(host.counter("jwks_fetched"), 2);
}

#[test]
fn an_endpoint_that_is_down_is_503_and_not_called_by_every_request() {
    let mut host = jwks_host();
    let one = ec_key(1);
    host.answer_calls_in_order(
        "idp",
        [
            CallError::Timeout.into(),
            key_set(vec![ec_jwk("one", &one)]),
        ],
    );
    let token = es256("one", valid_claims(), &one);
    let down = host.run(with_token(&token));
    assert_eq!(down.status(), 503);
    assert!(down.upstream_request().is_none());
    assert_eq!(down.header("retry-after"), Some("10"));
    assert_eq!(down.header("www-authenticate"), None);
    assert_eq!(down.calls().len(), 1);

    // Within the interval: 503 again, without calling.
    host.advance(Duration::from_secs(3));
    let still = host.run(with_token(&token));
    assert_eq!(still.status(), 503);
    assert!(still.calls().is_empty());

    host.advance(Duration::from_secs(10));
    assert_eq!(ok_with(&mut host, &token).calls().len(), 1);
}

#[test]
fn a_bad_answer_from_the_endpoint_is_503() {
    let one = ec_key(1);
    let token = es256("one", valid_claims(), &one);
    let answers: [TestCallAnswer; 3] = [
        TestCallResponse::new(500).into(),
        TestCallResponse::new(200).body("<html>").into(),
        key_set(vec![json!({ "kty": "oct", "kid": "one", "k": "c2VjcmV0" })]),
    ];
    for answer in answers {
        let mut host = jwks_host();
        host.answer_calls("idp", answer);
        let exchange = host.run(with_token(&token));
        assert_eq!(exchange.status(), 503, "{}", exchange.body_text());
        assert_eq!(host.counter("jwks_fetch_failed"), 1);
    }
}

#[test]
fn an_endpoint_the_gateway_does_not_allow_is_503_with_a_clear_log() {
    let mut host = TestHost::<JwtAuth>::new(json!({ "jwks": { "upstream": "idp" } })).unwrap();
    host.answer_calls("idp", key_set(vec![]));
    let exchange = host.run(with_token(&es256("one", valid_claims(), &ec_key(1))));
    assert_eq!(exchange.status(), 503);
    assert!(exchange.calls().is_empty());
    let warning = host.logs().last().unwrap().message.clone();
    assert!(warning.contains("call not allowed"), "{warning}");
}

#[test]
fn rs256_keys_come_from_the_set_too() {
    let mut host = jwks_host();
    host.answer_calls(
        "idp",
        key_set(vec![rsa_jwk("rsa-1"), ec_jwk("ec-1", &ec_key(1))]),
    );
    ok_with(
        &mut host,
        &rs256_with(json!({ "alg": "RS256", "kid": "rsa-1" }), valid_claims()),
    );
    // The kid picks the key, the key its algorithm.
    let confused = rs256_with(json!({ "alg": "RS256", "kid": "ec-1" }), valid_claims());
    assert_invalid(&host.run(with_token(&confused)), "invalid signature");
}

#[test]
fn tokens_must_name_their_key_and_cannot_use_hs256() {
    let mut host = jwks_host();
    host.answer_calls("idp", key_set(vec![ec_jwk("one", &ec_key(1))]));
    let no_kid = es256_with(json!({ "alg": "ES256" }), valid_claims(), &ec_key(1));
    assert_invalid(&host.run(with_token(&no_kid)), "token has no key id");
    // An HMAC over a published key's text is never checked against it.
    let jwk_text = ec_jwk("one", &ec_key(1)).to_string();
    let hs = hs256(
        json!({ "alg": "HS256", "kid": "one" }),
        valid_claims(),
        &jwk_text,
    );
    assert_invalid(&host.run(with_token(&hs)), "unsupported algorithm");
    assert_eq!(host.counter("jwks_fetched"), 0);
}

#[test]
fn configured_keys_and_the_endpoint_work_together() {
    let (local, remote) = (ec_key(1), ec_key(2));
    let mut host = TestHost::<JwtAuth>::new(json!({
        "keys": [ec_jwk("local", &local)],
        "jwks": { "upstream": "idp" },
    }))
    .unwrap();
    host.allow_calls(["idp"]);
    host.answer_calls("idp", key_set(vec![ec_jwk("remote", &remote)]));
    let configured = host.run(with_token(&es256("local", valid_claims(), &local)));
    assert_eq!(configured.status(), 200);
    assert!(configured.calls().is_empty());
    let fetched = host.run(with_token(&es256("remote", valid_claims(), &remote)));
    assert_eq!(fetched.status(), 200);
    assert_eq!(fetched.calls().len(), 1);
}

#[test]
fn invalid_jwks_configurations_are_refused() {
    let jwks = |patch: Value| {
        let mut jwks = json!({ "upstream": "idp" });
        for (k, v) in patch.as_object().unwrap() {
            jwks[k] = v.clone();
        }
        json!({ "jwks": jwks })
    };
    let cases = [
        (json!({ "jwks": {} }), "missing field `upstream`"),
        (jwks(json!({ "upstream": "" })), "jwks.upstream:"),
        (jwks(json!({ "path": "jwks.json" })), "jwks.path:"),
        (
            jwks(json!({ "refresh": "500ms" })),
            "jwks.refresh: between 1s and 1day",
        ),
        (jwks(json!({ "refresh": "2days" })), "jwks.refresh:"),
        (
            jwks(json!({ "min_refresh_interval": "10ms" })),
            "jwks.min_refresh_interval:",
        ),
        (
            jwks(json!({ "refresh": "5s", "min_refresh_interval": "10s" })),
            "jwks.min_refresh_interval: at most jwks.refresh",
        ),
        (jwks(json!({ "timeout": "2min" })), "jwks.timeout:"),
        (
            jwks(json!({ "refresh": 300 })),
            "invalid plugin configuration",
        ),
        (jwks(json!({ "url": "https://idp" })), "unknown field `url`"),
    ];
    for (config, expected) in cases {
        let err = TestHost::<JwtAuth>::new(config.clone())
            .err()
            .unwrap_or_else(|| panic!("accepted {config}"));
        assert!(err.contains(expected), "{config}: {err}");
    }
}
