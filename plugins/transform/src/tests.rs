//! Behaviour of `transform` through the SDK's test host.

use serde_json::{Value, json};
use weir_sdk::Phases;
use weir_sdk::testing::{Phase, TestHost, TestRequest, TestResponse};

use super::Transform;

fn host(config: Value) -> TestHost<Transform> {
    TestHost::new(config).unwrap()
}

#[test]
fn request_headers_remove_rename_set_add_in_order() {
    let mut host = host(json!({ "request_headers": {
        "remove": ["cookie"],
        "rename": { "x-old": "x-new" },
        "set": { "x-env": "prod", "x-new": "overridden-by-set" },
        "add": { "via": "weir" },
    }}));
    let exchange = host.run(
        TestRequest::get("/")
            .header("cookie", "session=1")
            .header("x-old", "a")
            .header("x-old", "b")
            .header("x-env", "dev")
            .header("via", "proxy-1"),
    );
    let upstream = exchange.upstream_request().unwrap();
    assert_eq!(upstream.header("cookie"), None);
    assert_eq!(upstream.header("x-old"), None);
    // Set runs after rename, so it wins.
    assert_eq!(upstream.header_all("x-new"), ["overridden-by-set"]);
    assert_eq!(upstream.header_all("x-env"), ["prod"]);
    assert_eq!(upstream.header_all("via"), ["proxy-1", "weir"]);
}

#[test]
fn rename_moves_every_value_and_skips_absent_headers() {
    let mut host = host(json!({ "request_headers": { "rename": { "x-a": "x-b" } } }));
    let moved = host.run(
        TestRequest::get("/")
            .header("x-a", "1")
            .header("x-a", "2")
            .header("x-b", "old"),
    );
    assert_eq!(
        moved.upstream_request().unwrap().header_all("x-b"),
        ["1", "2"]
    );
    let untouched = host.run(TestRequest::get("/").header("x-b", "kept"));
    assert_eq!(
        untouched.upstream_request().unwrap().header_all("x-b"),
        ["kept"]
    );
}

#[test]
fn response_headers_are_rewritten() {
    let mut host = host(json!({ "response_headers": {
        "remove": ["server"],
        "set": { "cache-control": "no-store" },
        "rename": { "x-upstream-id": "x-id" },
    }}));
    let exchange = host.run(
        TestRequest::get("/").upstream(
            TestResponse::new(200)
                .header("server", "nginx")
                .header("cache-control", "max-age=60")
                .header("x-upstream-id", "42"),
        ),
    );
    assert_eq!(exchange.header("server"), None);
    assert_eq!(exchange.header("cache-control"), Some("no-store"));
    assert_eq!(exchange.header("x-id"), Some("42"));
    assert_eq!(exchange.header("x-upstream-id"), None);
}

#[test]
fn path_is_rewritten_with_capture_groups_and_query_kept() {
    let mut host = host(
        json!({ "path": { "pattern": "^/v1/users/([0-9]+)$", "replacement": "/v2/accounts/$1" } }),
    );
    let exchange = host.run(TestRequest::get("/v1/users/42?full=1"));
    let upstream = exchange.upstream_request().unwrap();
    assert_eq!(upstream.path(), "/v2/accounts/42");
    assert_eq!(upstream.query(), Some("full=1"));
    let no_match = host.run(TestRequest::get("/v1/users/abc"));
    assert_eq!(no_match.upstream_request().unwrap().path(), "/v1/users/abc");
}

#[test]
fn path_patterns_may_use_perl_classes_and_case_insensitivity() {
    // The slimmed regex build keeps `\d`/`\w` and `(?i)`; this guards that.
    let mut host = host(
        json!({ "path": { "pattern": "(?i)^/API/(\\w+)/(\\d+)$", "replacement": "/$1?id=$2" } }),
    );
    let exchange = host.run(TestRequest::get("/api/orders/7"));
    assert_eq!(
        exchange.status(),
        400,
        "`?` in a path is refused, not forwarded"
    );
    let mut host = host_with_path("(?i)^/API/(\\w+)/(\\d+)$", "/$1/$2");
    let exchange = host.run(TestRequest::get("/api/orders/7"));
    assert_eq!(exchange.upstream_request().unwrap().path(), "/orders/7");
}

fn host_with_path(pattern: &str, replacement: &str) -> TestHost<Transform> {
    host(json!({ "path": { "pattern": pattern, "replacement": replacement } }))
}

#[test]
fn a_rewrite_producing_an_invalid_path_is_refused() {
    let mut host = host(json!({ "path": { "pattern": "^/(.*)$", "replacement": "$1" } }));
    let exchange = host.run(TestRequest::get("/x"));
    assert_eq!(exchange.status(), 400);
    assert!(exchange.upstream_request().is_none());
}

#[test]
fn json_body_fields_are_set_and_removed() {
    let mut host = host(json!({ "json_body": {
        "remove": ["/is_admin", "/user/password"],
        "set": { "/source": "gateway", "/meta/version": 2 },
    }}));
    assert_eq!(host.phases(), Phases::REQUEST_BODY);
    let body = json!({ "is_admin": true, "user": { "name": "ada", "password": "x" } });
    let exchange = host.run(
        TestRequest::post("/")
            .header("content-type", "application/json")
            .body(body.to_string()),
    );
    let upstream = exchange.upstream_request().unwrap();
    let sent: Value = serde_json::from_slice(upstream.body()).unwrap();
    assert_eq!(
        sent,
        json!({ "user": { "name": "ada" }, "source": "gateway", "meta": { "version": 2 } })
    );
    assert_eq!(
        upstream.header("content-length"),
        Some(upstream.body().len().to_string().as_str())
    );
}

#[test]
fn non_json_or_incompatible_bodies_get_400_and_empty_bodies_pass() {
    let mut host = host(json!({ "json_body": { "set": { "/a/b": 1 } } }));
    let garbage = host.run(TestRequest::post("/").body("not json"));
    assert_eq!(garbage.status(), 400);
    assert!(garbage.upstream_request().is_none());
    assert_eq!(
        garbage.body_text(),
        r#"{"error":"request body is not valid JSON"}"#
    );

    let wrong_shape = host.run(TestRequest::post("/").body(r#"{"a":"text"}"#));
    assert_eq!(wrong_shape.status(), 400);

    let empty = host.run(TestRequest::get("/"));
    assert_eq!(empty.status(), 200);
    assert_eq!(empty.upstream_request().unwrap().body(), b"");
}

#[test]
fn without_body_rules_the_body_is_not_asked_for() {
    let host = host(json!({ "request_headers": { "set": { "x": "1" } } }));
    assert_eq!(host.phases(), Phases::REQUEST);
}

#[test]
fn only_the_phases_with_rules_run() {
    let mut host = host(json!({ "response_headers": { "set": { "x": "1" } } }));
    assert_eq!(host.phases(), Phases::RESPONSE);
    let exchange = host.run(TestRequest::get("/"));
    assert_eq!(exchange.phases(), [Phase::Response]);
    assert_eq!(exchange.header("x"), Some("1"));
    let host = self::host(json!({ "path": { "pattern": "^/a", "replacement": "/b" } }));
    assert_eq!(host.phases(), Phases::REQUEST);
}

#[test]
fn invalid_configurations_are_refused_with_the_field_named() {
    let many: Vec<String> = (0..101).map(|i| format!("x-{i}")).collect();
    let cases = [
        (
            json!({ "request_headers": { "remove": ["bad name"] } }),
            "request_headers.remove:",
        ),
        (
            json!({ "response_headers": { "set": { "x": "a\nb" } } }),
            "response_headers.set:",
        ),
        (
            json!({ "request_headers": { "rename": { "a": "b c" } } }),
            "request_headers.rename:",
        ),
        (
            json!({ "request_headers": { "remove": many } }),
            "at most 100",
        ),
        (
            json!({ "path": { "pattern": "(", "replacement": "/" } }),
            "path.pattern:",
        ),
        (
            json!({ "path": { "pattern": "a".repeat(2000), "replacement": "/" } }),
            "path.pattern: at most",
        ),
        (
            json!({ "path": { "pattern": "\\w{1000}{1000}", "replacement": "/" } }),
            "path.pattern:",
        ),
        (
            json!({ "json_body": { "set": { "no-slash": 1 } } }),
            "json_body.set:",
        ),
        (
            json!({ "json_body": { "remove": [""] } }),
            "json_body.remove:",
        ),
        (json!({ "json_body": {} }), "json_body: give at least one"),
        (json!({ "request_header": {} }), "unknown field"),
    ];
    for (config, expected) in cases {
        let err = TestHost::<Transform>::new(config.clone())
            .err()
            .unwrap_or_else(|| panic!("accepted {config}"));
        assert!(err.contains(expected), "{config}: {err}");
    }
}
