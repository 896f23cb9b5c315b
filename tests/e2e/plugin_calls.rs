//! Outbound calls from plugins (the contract's `calls`) through the real
//! gateway, real upstreams and the `caller` fixture: calls run side by
//! side and come back in start order, time out, are refused outside the
//! plugin's `calls` list and past their bounds, drive routing and the
//! forwarded request's headers, run in the response phase and in the
//! background; a client that leaves cancels its calls; a redeploy does not
//! switch a waiting request to the new version.
//!
//! The fixture (tests/fixtures/plugins/caller.rs) reports what it saw as
//! a JSON summary: `{"v", "rounds": [{"started", "refused", "results"}]}`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use serde_json::{Value, json};

use crate::plugins_support::*;
use crate::support::held::Held;
use crate::support::upstream::{ClosedPort, full};
use crate::support::*;

/// A JSON value written as a TOML inline value: the fixture's
/// configuration is written as JSON, which is what it receives. TOML's
/// basic strings take JSON's escapes, so strings and keys are quoted as
/// JSON quotes them.
fn toml(v: &Value) -> String {
    let list = |items: Vec<String>| items.join(", ");
    match v {
        Value::Object(m) => format!(
            "{{ {} }}",
            list(
                m.iter()
                    .map(|(k, v)| format!("{} = {}", json!(k), toml(v)))
                    .collect()
            )
        ),
        Value::Array(a) => format!("[{}]", list(a.iter().map(toml).collect())),
        other => other.to_string(),
    }
}

/// A route at `path` (exact) to upstream `app` through the `caller`
/// plugin with this configuration; `extra` lines go into the route.
fn route(path: &str, config: Value, extra: &str) -> String {
    format!(
        "\n[[route]]\nname = \"{}\"\nupstream = \"app\"\npath = \"{path}\"\n{extra}\nplugins = [{{ name = \"caller\", config = {} }}]\n",
        path.trim_start_matches('/'),
        toml(&config)
    )
}

/// A gateway with these upstreams (one named `app`), the caller plugin
/// under `[plugin_limits.caller]` `limits`, the `routes`, and an admin
/// listener.
fn start(upstreams: &[(&str, SocketAddr)], limits: &str, routes: &str) -> Gateway {
    let text =
        format!("[plugin_limits.caller]\n{limits}\n{routes}\n[admin]\naddress = \"127.0.0.1:0\"\n");
    with_plugins(
        Gateway::with_config(config("", upstreams, &text)),
        &[("caller", "caller")],
    )
    .start()
}

async fn call(gw: &Gateway, path: &str, headers: &[(&str, &str)]) -> Reply {
    get(&client(), &main_url(gw, path), headers).await
}

/// The summary a request phase answered with (status 200 expected).
async fn summary(gw: &Gateway, path: &str) -> Value {
    let r = call(gw, path, &[]).await;
    assert_eq!(
        r.status,
        200,
        "{path}: {}\n{}",
        r.text(),
        gw.logs_for_failure()
    );
    assert_eq!(r.header("x-caller-version"), Some("1"), "{path}");
    r.json()
}

/// What became of the call tagged `tag`: its result, or what `start`
/// answered when it refused it.
fn outcome<'a>(summary: &'a Value, tag: &str) -> &'a Value {
    summary["rounds"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|round| {
            let refused = round["refused"].as_array().unwrap().iter();
            refused.chain(round["results"].as_array().unwrap())
        })
        .find(|o| o["tag"] == tag)
        .unwrap_or_else(|| panic!("no call tagged {tag} in {summary}"))
}

/// Asserts that the call tagged `tag` ended in error `error` whose detail
/// (message) contains `detail`.
fn assert_error(summary: &Value, tag: &str, error: &str, detail: &str) {
    let o = outcome(summary, tag);
    assert_eq!(o["error"], error, "{tag}: {summary}");
    let text = o["detail"]
        .as_str()
        .map_or(o["detail"].to_string(), str::to_owned);
    assert!(text.contains(detail), "{tag}: {text:?} lacks {detail:?}");
}

/// An upstream whose every request waits (up to 5 s) until the other
/// upstream sharing `barrier` has received one too, then answers `met`
/// (else 504 `alone`). Two calls to two of these can both answer `met`
/// only if the gateway sends them at the same time.
async fn meeting(barrier: Arc<tokio::sync::Barrier>) -> Upstream {
    Upstream::start(move |_req: Request<Incoming>| {
        let barrier = barrier.clone();
        async move {
            let met = tokio::time::timeout(Duration::from_secs(5), barrier.wait())
                .await
                .is_ok();
            let (status, body) = if met { (200, "met") } else { (504, "alone") };
            Response::builder().status(status).body(full(body)).unwrap()
        }
    })
    .await
}

/// An upstream with canned answers: `/bytes/N` is N bytes; `/auth` says
/// `x-route: other` and `x-user: alice`; `/stay` says `x-user: bob`.
async fn answers() -> Upstream {
    Upstream::start(|req: Request<Incoming>| async move {
        let path = req.uri().path().to_owned();
        let mut b = Response::builder();
        let body = match path.as_str() {
            "/auth" => {
                b = b.header("x-route", "other").header("x-user", "alice");
                "allowed".to_owned()
            }
            "/stay" => {
                b = b.header("x-user", "bob");
                "allowed".to_owned()
            }
            p => match p.strip_prefix("/bytes/") {
                Some(n) => "z".repeat(n.parse().unwrap()),
                None => "ok".to_owned(),
            },
        };
        b.body(full(body)).unwrap()
    })
    .await
}

#[tokio::test]
async fn calls_are_sent_together_and_come_back_in_start_order() {
    let app = Upstream::echo("app").await;
    let echo = Upstream::echo("echo").await;
    let barrier = Arc::new(tokio::sync::Barrier::new(2));
    let (a, b) = (meeting(barrier.clone()).await, meeting(barrier).await);
    let routes = route(
        "/together",
        json!({"calls": [
            {"upstream": "a", "path": "/a", "tag": "a"},
            {"upstream": "b", "path": "/b", "tag": "b"},
            {"upstream": "echo", "method": "POST", "path": "/e?y=1",
             "headers": [["x-k", "v"], ["x-k", "w"]], "body": "hello", "tag": "e"},
        ]}),
        "",
    ) + &route(
        "/twice",
        json!({"calls": [{"upstream": "echo", "path": "/first", "tag": "first"}],
               "again": [{"upstream": "echo", "path": "/second", "tag": "second"}]}),
        "",
    );
    let gw = start(
        &[
            ("app", app.addr),
            ("a", a.addr),
            ("b", b.addr),
            ("echo", echo.addr),
        ],
        "calls = [\"a\", \"b\", \"echo\"]\ncall_timeout = \"10s\"",
        &routes,
    );

    // Each of a and b answers `met` only once the other has its call: sent
    // one after the other, the first would wait alone.
    let s = summary(&gw, "/together").await;
    let round = &s["rounds"][0];
    let results = round["results"].as_array().unwrap();
    let ids: Vec<&Value> = results.iter().map(|r| &r["id"]).collect();
    let tags: Vec<&Value> = results.iter().map(|r| &r["tag"]).collect();
    assert_eq!(tags, ["a", "b", "e"], "{s}");
    assert_eq!(
        round["started"]
            .as_array()
            .unwrap()
            .iter()
            .collect::<Vec<_>>(),
        ids,
        "{s}"
    );
    assert!(
        ids[0] != ids[1] && ids[1] != ids[2] && ids[0] != ids[2],
        "{s}"
    );
    for tag in ["a", "b"] {
        assert_eq!(outcome(&s, tag)["status"], 200, "{s}");
        assert_eq!(outcome(&s, tag)["body"], "met", "{s}");
    }
    // The call went out as the plugin wrote it, with the host's `host`.
    let e = outcome(&s, "e");
    assert_eq!(e["status"], 200, "{s}");
    let seen: Value = serde_json::from_str(e["body"].as_str().unwrap()).unwrap();
    assert_eq!(seen["method"], "POST", "{seen}");
    assert_eq!(seen["target"], "/e?y=1", "{seen}");
    assert_eq!(seen["headers"]["x-k"], "v, w", "{seen}");
    assert_eq!(seen["body_bytes"], 5, "{seen}");
    assert_eq!(seen["headers"]["host"], echo.addr.to_string(), "{seen}");
    assert_eq!(e["body_len"], e["body"].as_str().unwrap().len(), "{s}");
    // The plugin answered: the route's upstream saw nothing.
    assert_eq!(app.count(), 0);

    // A `-calls` export may wait again: two rounds, ids unique in the
    // request.
    let s = summary(&gw, "/twice").await;
    assert_eq!(s["rounds"].as_array().unwrap().len(), 2, "{s}");
    let second = &outcome(&s, "second")["id"];
    assert_ne!(&outcome(&s, "first")["id"], second, "{s}");
    assert_eq!(s["rounds"][1]["started"], json!([second]), "{s}");
    let targets: Vec<String> = echo
        .seen
        .lock()
        .unwrap()
        .iter()
        .map(|r| r.target.clone())
        .collect();
    assert!(
        targets.ends_with(&["/first".into(), "/second".into()]),
        "{targets:?}"
    );
}

#[tokio::test]
async fn a_slow_or_unreachable_call_ends_in_its_error_and_the_request_still_answers() {
    let app = Upstream::echo("app").await;
    let held = Held::start().await;
    let nothing = ClosedPort::new();
    let routes = route(
        "/slow",
        json!({"calls": [
            {"upstream": "held", "path": "/own", "timeout_ms": 200, "tag": "own"},
            {"upstream": "held", "path": "/policy", "tag": "policy"},
            {"upstream": "nothing", "path": "/", "tag": "refused"},
        ]}),
        "",
    );
    let gw = start(
        &[
            ("app", app.addr),
            ("held", held.addr),
            ("nothing", nothing.addr()),
        ],
        "calls = [\"held\", \"nothing\"]\ncall_timeout = \"300ms\"",
        &routes,
    );
    let s = summary(&gw, "/slow").await;
    // Its own limit, then the plugin's `call_timeout`.
    assert_error(&s, "own", "timeout", "");
    assert_error(&s, "policy", "timeout", "");
    assert_error(&s, "refused", "failed", "");
    // Both timed-out calls were sent.
    let mut arrived = [held.arrival().await, held.arrival().await];
    arrived.sort();
    assert_eq!(arrived, ["/own", "/policy"]);
}

#[tokio::test]
async fn the_request_deadline_caps_a_call_and_refuses_one_started_after_it() {
    let app = Upstream::echo("app").await;
    let held = Held::start().await;
    // The route's 300 ms, not the 10 s the plugin's calls may take.
    let routes = route(
        "/late",
        json!({"calls": [{"upstream": "held", "path": "/capped", "tag": "capped"}],
               "again": [{"upstream": "held", "path": "/late", "tag": "late"}]}),
        "timeout = \"300ms\"",
    );
    let gw = start(
        &[("app", app.addr), ("held", held.addr)],
        "calls = [\"held\"]\ncall_timeout = \"10s\"",
        &routes,
    );
    let s = summary(&gw, "/late").await;
    assert_error(&s, "capped", "timeout", "");
    assert_error(&s, "late", "deadline", "");
    assert_eq!(s["rounds"][1]["started"], json!([]), "{s}");
}

#[tokio::test]
async fn only_the_upstreams_in_the_calls_list_may_be_called() {
    let app = Upstream::echo("app").await;
    let other = Upstream::echo("other").await;
    let routes = route(
        "/list",
        json!({"calls": [
            {"upstream": "app", "path": "/listed", "tag": "listed"},
            {"upstream": "other", "path": "/", "tag": "unlisted"},
            {"upstream": "nowhere", "path": "/", "tag": "unknown"},
        ]}),
        "",
    );
    let gw = start(
        &[("app", app.addr), ("other", other.addr)],
        "calls = [\"app\"]",
        &routes,
    );
    let s = summary(&gw, "/list").await;
    assert_eq!(outcome(&s, "listed")["status"], 200, "{s}");
    assert_error(&s, "unlisted", "not-allowed", "other");
    assert_error(&s, "unknown", "not-allowed", "nowhere");
    assert_eq!(other.count(), 0, "a refused call was sent");
}

#[test]
fn check_and_start_up_refuse_a_calls_list_naming_an_unknown_upstream() {
    let text = config(
        "",
        &[("app", "127.0.0.1:9".parse().unwrap())],
        &format!(
            "[plugin_limits.caller]\ncalls = [\"app\", \"nope\"]\n{}",
            route("/r", json!({}), "")
        ),
    );
    let files = [("plugins/caller.wasm".to_owned(), fixture("caller"))];
    for out in [check(&text, &files).1, run_fails(&text, &files)] {
        assert!(
            out.contains("weir.toml")
                && out.contains("plugin_limits.caller.calls")
                && out.contains("nope"),
            "{out}"
        );
    }
    let (ok, out) = check(&text.replace(", \"nope\"", ""), &files);
    assert!(ok, "{out}");
}

#[tokio::test]
async fn calls_past_their_bounds_are_refused_and_answers_past_the_cap_are_too_large() {
    let app = Upstream::echo("app").await;
    let echo = Upstream::echo("echo").await;
    let big = answers().await;
    let call = |path: &str, tag: &str| json!({"upstream": "echo", "path": path, "tag": tag});
    let bad = |tag: &str, method: &str, path: &str, header: (&str, &str)| {
        json!({"upstream": "echo", "method": method, "path": path,
               "headers": [[header.0, header.1]], "tag": tag})
    };
    let routes = [
        route(
            "/count",
            json!({"calls": [call("/", "c0"), call("/", "c1"), call("/", "c2"), call("/", "c3")]}),
            "",
        ),
        // The bound is per request: the second round has one call left.
        route(
            "/rounds",
            json!({"calls": [call("/", "r0"), call("/", "r1")],
                   "again": [call("/", "r2"), call("/", "r3")]}),
            "",
        ),
        route(
            "/send",
            json!({"calls": [
                {"upstream": "echo", "method": "POST", "path": "/", "body_bytes": 1024, "tag": "at-cap"},
                {"upstream": "echo", "method": "POST", "path": "/", "body_bytes": 1025, "tag": "over"},
            ]}),
            "",
        ),
        route(
            "/answer",
            json!({"calls": [
                {"upstream": "big", "path": "/bytes/1024", "tag": "at-cap"},
                {"upstream": "big", "path": "/bytes/1025", "tag": "over"},
            ]}),
            "",
        ),
        route(
            "/invalid",
            json!({"calls": [
                bad("method", "GE T", "/", ("x-k", "v")),
                bad("connect", "CONNECT", "/", ("x-k", "v")),
                bad("relative", "GET", "no-slash", ("x-k", "v")),
                bad("space", "GET", "/a b", ("x-k", "v")),
                bad("connection", "GET", "/", ("connection", "close")),
                bad("chunked", "GET", "/", ("transfer-encoding", "chunked")),
                bad("length", "GET", "/", ("content-length", "3")),
                bad("crlf", "GET", "/", ("x-k", "a\r\nb")),
                bad("name", "GET", "/", ("x k", "v")),
                {"upstream": "echo", "path": "/", "tag": "t".repeat(257)},
                // Still room for a good one: refused calls do not count.
                call("/fine", "fine"),
            ]}),
            "",
        ),
    ]
    .concat();
    let gw = start(
        &[("app", app.addr), ("echo", echo.addr), ("big", big.addr)],
        "calls = [\"echo\", \"big\"]\nmax_calls_per_request = 3\nmax_call_body_bytes = \"1KiB\"",
        &routes,
    );

    let s = summary(&gw, "/count").await;
    assert_eq!(
        s["rounds"][0]["started"].as_array().unwrap().len(),
        3,
        "{s}"
    );
    assert_error(&s, "c3", "limit", "max_calls_per_request");

    let s = summary(&gw, "/rounds").await;
    assert_eq!(outcome(&s, "r2")["status"], 200, "{s}");
    assert_error(&s, "r3", "limit", "max_calls_per_request");

    let s = summary(&gw, "/send").await;
    let seen: Value =
        serde_json::from_str(outcome(&s, "at-cap")["body"].as_str().unwrap()).unwrap();
    assert_eq!(seen["body_bytes"], 1024, "{s}");
    assert_error(&s, "over", "limit", "max_call_body_bytes");

    let s = summary(&gw, "/answer").await;
    assert_eq!(outcome(&s, "at-cap")["body_len"], 1024, "{s}");
    assert_error(&s, "over", "too-large", "1024");

    let before = echo.count();
    let s = summary(&gw, "/invalid").await;
    let long = "t".repeat(257);
    for tag in [
        "method",
        "connect",
        "relative",
        "space",
        "connection",
        "chunked",
        "length",
        "crlf",
        "name",
        &long,
    ] {
        assert_error(&s, tag, "invalid", "");
    }
    assert_eq!(outcome(&s, "fine")["status"], 200, "{s}");
    assert_eq!(echo.count(), before + 1, "only the good call was sent");
}

#[tokio::test]
async fn waiting_without_a_call_started_fails_the_plugin() {
    let app = Upstream::echo("app").await;
    let routes = [
        route("/request", json!({"wait_empty": true}), ""),
        route(
            "/response",
            json!({"phase": "response", "wait_empty": true}),
            "",
        ),
        // All refused, and waits anyway.
        route(
            "/refused",
            json!({"calls": [{"upstream": "app", "path": "x", "tag": "x"}], "wait_empty": true}),
            "",
        ),
        // The control: no call, no wait.
        route("/none", json!({}), ""),
    ]
    .concat();
    let gw = start(&[("app", app.addr)], "calls = [\"app\"]", &routes);
    for path in ["/request", "/response", "/refused"] {
        let r = call(&gw, path, &[]).await;
        assert_eq!(r.status, 500, "{path}: {}", r.text());
    }
    let s = summary(&gw, "/none").await;
    assert_eq!(
        s["rounds"],
        json!([{"started": [], "refused": [], "results": []}])
    );
}

#[tokio::test]
async fn calls_in_flight_count_across_requests_up_to_the_plugins_bound() {
    let app = Upstream::echo("app").await;
    let held = Held::start().await;
    let routes = route(
        "/held",
        json!({"calls": [{"upstream": "held", "path": "/h", "tag": "h"}]}),
        "",
    ) + &route(
        "/other",
        json!({"calls": [{"upstream": "app", "path": "/o", "tag": "o"}]}),
        "",
    );
    let gw = start(
        &[("app", app.addr), ("held", held.addr)],
        "calls = [\"held\", \"app\"]\nmax_calls_in_flight = 1\ncall_timeout = \"10s\"",
        &routes,
    );
    let url = main_url(&gw, "/held");
    let waiting = tokio::spawn(async move { get(&client(), &url, &[]).await });
    assert_eq!(held.arrival().await, "/h");

    // One call in flight for the plugin: another request's call is refused.
    let s = summary(&gw, "/other").await;
    assert_error(&s, "o", "limit", "max_calls_in_flight");

    held.release();
    let r = waiting.await.unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(outcome(&r.json(), "h")["body"], "held:/h");
    // The finished call gave its place back.
    let s = summary(&gw, "/other").await;
    assert_eq!(outcome(&s, "o")["status"], 200, "{s}");
}

#[tokio::test]
async fn a_client_that_leaves_cancels_its_calls_and_the_log_phase_still_runs() {
    let app = Upstream::echo("app").await;
    let held = Held::start().await;
    let routes = route(
        "/held",
        json!({"calls": [{"upstream": "held", "path": "/h", "tag": "h"}]}),
        "",
    ) + &route("/report", json!({"phase": "report"}), "");
    let gw = start(
        &[("app", app.addr), ("held", held.addr)],
        "calls = [\"held\"]\ncall_timeout = \"30s\"",
        &routes,
    );
    let mut conn = raw::RawConn::open(gw.listener("main")).await;
    conn.send(b"GET /held HTTP/1.1\r\nhost: x\r\nx-caller-key: gone\r\n\r\n")
        .await;
    assert_eq!(held.arrival().await, "/h");
    drop(conn);

    let closed = eventually(Duration::from_secs(10), || async { held.closed() == 1 }).await;
    assert!(
        closed,
        "the call's connection was not closed:\n{}",
        gw.logs_for_failure()
    );
    let logged = eventually(Duration::from_secs(10), || async {
        let r = call(&gw, "/report", &[("x-caller-key", "gone")]).await;
        r.json()["log"]["status"] == 499
    })
    .await;
    let r = call(&gw, "/report", &[("x-caller-key", "gone")]).await;
    assert!(logged, "no log phase with 499: {}", r.text());
}

fn sha256(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test]
async fn a_request_waiting_on_a_call_finishes_on_its_version_after_a_redeploy() {
    let app = Upstream::echo("app").await;
    let held = Held::start().await;
    let routes = route(
        "/held",
        json!({"calls": [{"upstream": "held", "path": "/h", "tag": "h"}]}),
        "",
    ) + &route(
        "/quick",
        json!({"calls": [{"upstream": "app", "path": "/q", "tag": "q"}]}),
        "",
    );
    let gw = start(
        &[("app", app.addr), ("held", held.addr)],
        "calls = [\"held\", \"app\"]\ncall_timeout = \"30s\"",
        &routes,
    );
    let version = |r: Reply| r.json()["v"].as_str().unwrap().to_owned();
    assert_eq!(version(call(&gw, "/quick", &[]).await), "1");
    let url = main_url(&gw, "/held");
    let waiting = tokio::spawn(async move { get(&client(), &url, &[]).await });
    assert_eq!(held.arrival().await, "/h");

    // Version 2 replaces the file the way release tools do.
    let v2 = fixture("caller2");
    let plugins = gw.dir().join("plugins");
    std::fs::write(plugins.join(".caller.wasm.tmp"), &v2).unwrap();
    std::fs::rename(
        plugins.join(".caller.wasm.tmp"),
        plugins.join("caller.wasm"),
    )
    .unwrap();
    let deployed = eventually(Duration::from_secs(20), || async {
        admin_plugin_view(&gw, "caller", "sha256").await == sha256(&v2)
    })
    .await;
    assert!(
        deployed,
        "version 2 not deployed:\n{}",
        gw.logs_for_failure()
    );
    let served = eventually(Duration::from_secs(20), || async {
        version(call(&gw, "/quick", &[]).await) == "2"
    })
    .await;
    assert!(served, "new requests are not served by version 2");

    held.release();
    let r = waiting.await.unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-caller-version"), Some("1"));
    let s = r.json();
    assert_eq!(s["v"], "1", "the waiting request switched versions: {s}");
    assert_eq!(outcome(&s, "h")["body"], "held:/h", "{s}");
    let r = call(&gw, "/held", &[]).await;
    assert_eq!(r.json()["v"], "2", "{}", r.text());
}

#[tokio::test]
async fn calls_in_the_response_phase_report_in_a_response_header() {
    let app = Upstream::echo("app").await;
    let echo = Upstream::echo("echo").await;
    let routes = route(
        "/resp",
        json!({"phase": "response",
               "calls": [{"upstream": "echo", "path": "/r1", "tag": "r1"}],
               "again": [{"upstream": "echo", "path": "/r2", "tag": "r2"}]}),
        "",
    );
    let gw = start(
        &[("app", app.addr), ("echo", echo.addr)],
        "calls = [\"echo\"]",
        &routes,
    );
    let r = call(&gw, "/resp", &[]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["server"], "app", "the upstream's answer went on");
    assert_eq!(r.header("x-caller-version"), Some("1"));
    let s: Value = serde_json::from_str(r.header("x-calls").expect("x-calls")).unwrap();
    assert_eq!(s["rounds"].as_array().unwrap().len(), 2, "{s}");
    for tag in ["r1", "r2"] {
        let seen: Value = serde_json::from_str(outcome(&s, tag)["body"].as_str().unwrap()).unwrap();
        assert_eq!(seen["target"], format!("/{tag}"), "{s}");
    }
}

#[tokio::test]
async fn background_calls_report_after_the_response_and_before_the_log_phase() {
    let app = Upstream::echo("app").await;
    let held = Held::start().await;
    let routes = route(
        "/bg",
        json!({"phase": "background", "start_in_log": true,
               "calls": [{"upstream": "held", "path": "/bg", "tag": "bg"}]}),
        "",
    ) + &route("/report", json!({"phase": "report"}), "");
    let gw = start(
        &[("app", app.addr), ("held", held.addr)],
        "calls = [\"held\"]\ncall_timeout = \"30s\"",
        &routes,
    );
    let report = || async { call(&gw, "/report", &[("x-caller-key", "k1")]).await.json() };

    // The request is answered while its call is still held.
    let r = call(&gw, "/bg", &[("x-caller-key", "k1")]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["server"], "app");
    assert_eq!(held.arrival().await, "/bg");
    assert_eq!(report().await["background"], Value::Null);

    held.release();
    let done = eventually(Duration::from_secs(10), || async {
        report().await["log"] != Value::Null
    })
    .await;
    let seen = report().await;
    assert!(done, "no log phase: {seen}");
    let bg = &seen["background"];
    assert_eq!(outcome(bg, "bg")["status"], 200, "{seen}");
    assert_eq!(outcome(bg, "bg")["headers"]["x-held"], "/bg", "{seen}");
    assert_eq!(seen["log"]["status"], 200, "{seen}");
    assert_eq!(seen["log"]["after_background"], true, "{seen}");
    // No calls start outside the request and response phases.
    assert_eq!(seen["log_start"]["error"], "invalid", "{seen}");
}

#[tokio::test]
async fn a_call_result_routes_the_request_and_its_headers_go_upstream() {
    let app = Upstream::echo("app").await;
    let other = Upstream::echo("other").await;
    let auth = answers().await;
    let forward = |path: &str| {
        json!({"then": "forward", "copy": ["x-user"],
               "calls": [{"upstream": "auth", "path": path, "tag": "auth"}]})
    };
    let routes = route("/fwd", forward("/auth"), "") + &route("/stay", forward("/stay"), "");
    let gw = start(
        &[
            ("app", app.addr),
            ("other", other.addr),
            ("auth", auth.addr),
        ],
        "calls = [\"auth\"]",
        &routes,
    );
    let r = call(&gw, "/fwd", &[]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = r.json();
    assert_eq!(seen["server"], "other", "{seen}");
    assert_eq!(seen["headers"]["x-user"], "alice", "{seen}");
    assert_eq!(seen["headers"]["x-caller-version"], "1", "{seen}");

    let seen = call(&gw, "/stay", &[]).await.json();
    assert_eq!(seen["server"], "app", "{seen}");
    assert_eq!(seen["headers"]["x-user"], "bob", "{seen}");
}

/// A call carries its request's trace context as the upstream gets it:
/// with tracing on, the client's trace id and Weir's span as the parent,
/// so the called service's spans join the request's trace; a call whose
/// plugin sets its own `traceparent` keeps it.
#[tokio::test]
async fn calls_carry_the_requests_trace_context_unless_the_plugin_sets_one() {
    const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    const CLIENT_SPAN: &str = "00f067aa0ba902b7";
    let app = Upstream::echo("app").await;
    let echo = Upstream::echo("echo").await;
    let own = "00-11111111111111111111111111111111-2222222222222222-01";
    let routes = "[tracing]\nenabled = true\n".to_owned()
        + &route(
            "/traced",
            json!({"calls": [{"upstream": "echo", "path": "/t", "tag": "t"}], "then": "forward"}),
            "",
        )
        + &route(
            "/own",
            json!({"calls": [{"upstream": "echo", "path": "/o", "tag": "o",
                              "headers": [["traceparent", own]]}]}),
            "",
        );
    let gw = start(
        &[("app", app.addr), ("echo", echo.addr)],
        "calls = [\"echo\"]",
        &routes,
    );
    let sent = format!("00-{TRACE}-{CLIENT_SPAN}-01");
    let r = call(
        &gw,
        "/traced",
        &[("traceparent", &sent), ("tracestate", "vendor=1")],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let header = |u: &Upstream, name: &str| {
        let seen = u.seen.lock().unwrap();
        let last = seen.last().expect("a request arrived");
        last.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    let call_tp = header(&echo, "traceparent").expect("the call carries a traceparent");
    let upstream_tp = header(&app, "traceparent").expect("the upstream gets a traceparent");
    let parts: Vec<&str> = call_tp.split('-').collect();
    assert_eq!(parts[1], TRACE, "{call_tp}");
    assert_ne!(
        parts[2], CLIENT_SPAN,
        "Weir's span is the call's parent: {call_tp}"
    );
    assert_eq!(
        call_tp.split('-').nth(1),
        upstream_tp.split('-').nth(1),
        "one trace: {call_tp} {upstream_tp}"
    );
    assert_eq!(header(&echo, "tracestate").as_deref(), Some("vendor=1"));

    let r = call(&gw, "/own", &[("traceparent", &sent)]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(header(&echo, "traceparent").as_deref(), Some(own));
}
