//! Plugins through the real gateway: a well-behaved fixture plugin
//! exercises every answer of the request phase (continue, respond,
//! route-to), header edits, the request-scoped context, shared state, the
//! body phases and the log phase; `weir check` and start-up refuse
//! missing, non-component and wrong-version plugin files with the file and
//! the reason.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};

use crate::plugins_support::*;
use crate::support::upstream::{Upstream, full};
use crate::support::*;

fn chain_config(app: SocketAddr, other: SocketAddr, isolation: &str) -> String {
    config(
        "",
        &[("app", app), ("other", other)],
        &format!(
            r#"
[plugins]
global = [{{ name = "basic", config = {{ tag = "global" }} }}]

[plugin_limits.basic]
deadline = "200ms"
isolation = "{isolation}"

[[route]]
name = "main"
upstream = "app"
path_prefix = "/"
plugins = [{{ name = "basic", config = {{ tag = "route" }} }}]
"#
        ),
    )
}

fn values(r: &Reply, name: &str) -> Vec<String> {
    r.headers
        .get_all(name)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

async fn chain_behaves(isolation: &str) {
    let app = Upstream::echo("app").await;
    let other = Upstream::echo("other").await;
    let gw = with_plugins(
        Gateway::with_config(chain_config(app.addr, other.addr, isolation)),
        &[("basic", "basic")],
    )
    .start();
    let c = client();

    // Continue, with header edits in chain order and the response phase
    // in reverse order reading the request-scoped context.
    let r = get(&c, &gw.url("/hello?q=1"), &[("x-fx-remove", "gone")]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = r.json();
    assert_eq!(seen["server"], "app");
    assert_eq!(seen["headers"]["x-fx-order"], "global, route");
    assert!(seen["headers"].get("x-fx-remove").is_none(), "{seen}");
    assert_eq!(seen["headers"]["x-fx-rand-len"], "16");
    let now: u64 = seen["headers"]["x-fx-now-ms"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        now > 1_600_000_000_000,
        "now-ms is wall-clock milliseconds: {now}"
    );
    assert_eq!(r.header("x-fx-context"), Some("/hello"));
    assert_eq!(values(&r, "x-fx-resp-order"), ["route", "global"]);
    assert_eq!(r.header("x-fx-upstream-status"), Some("200"));

    // Shared state persists across requests (and instances). The fixture
    // reports its counters in request headers the upstream echoes.
    let counter = |r: &Reply, name: &str| -> i64 {
        r.json()["headers"][name].as_str().unwrap().parse().unwrap()
    };
    let hits = |r: &Reply| counter(r, "x-fx-hits");
    let first = hits(&r);
    let r2 = get(&c, &gw.url("/hello"), &[]).await;
    assert!(hits(&r2) > first, "{} then {}", first, hits(&r2));

    // A counter made with a TTL counts in a fixed window, then starts over
    // (both chain entries count in the one namespace: each request adds
    // the same number).
    let window = |r: &Reply| counter(r, "x-fx-window");
    let ttl = [("x-fx-window-ms", "1000")];
    let per_request = window(&get(&c, &gw.url("/w"), &ttl).await);
    assert!(per_request > 0);
    let second = window(&get(&c, &gw.url("/w"), &ttl).await);
    assert_eq!(second, 2 * per_request);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(window(&get(&c, &gw.url("/w"), &ttl).await), per_request);

    // The response phase may change the status; the request phase the path.
    let r = get(&c, &gw.url("/x"), &[("x-fx-status", "203")]).await;
    assert_eq!(r.status, 203);
    let r = get(&c, &gw.url("/x?keep=1"), &[("x-fx-path", "/rewritten")]).await;
    assert_eq!(r.json()["target"], "/rewritten?keep=1");
    let r = get(&c, &gw.url("/x"), &[("x-fx-path", "no-slash")]).await;
    assert!(
        r.json()["headers"]["x-fx-path-error"]
            .as_str()
            .unwrap()
            .contains("must start with")
    );

    // Respond now: nothing reaches the upstream.
    let before = app.count();
    let r = get(&c, &gw.url("/x"), &[("x-fx-respond", "1")]).await;
    assert_eq!(r.status, 418);
    assert_eq!(r.text(), "short-circuit\n");
    assert_eq!(r.header("x-fx"), Some("short"));
    assert_eq!(app.count(), before);

    // Route to a named upstream; an unknown name is a 500 with a reason.
    let r = get(&c, &gw.url("/x"), &[("x-fx-route", "other")]).await;
    assert_eq!(r.json()["server"], "other");
    let r = get(&c, &gw.url("/x"), &[("x-fx-route", "nowhere")]).await;
    assert_eq!(r.status, 500);
    let id = r.header("x-request-id").unwrap().to_owned();
    assert!(
        eventually(Duration::from_secs(5), || async {
            !log_lines_with(&gw, &["nowhere", "not defined", &id]).is_empty()
        })
        .await,
        "the unknown upstream is logged with the request id"
    );

    // A token bucket in shared state: 2 tokens, so a burst is refused.
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(get(&c, &gw.url("/x"), &[("x-fx-bucket", "1")]).await.status);
    }
    assert!(statuses.contains(&429), "{statuses:?}");

    // The log phase runs after the response and writes shared state.
    assert!(
        eventually(Duration::from_secs(5), || async {
            let r = get(&c, &gw.url("/x"), &[]).await;
            r.json()["headers"]["x-fx-logged"].as_str().unwrap() != "0"
        })
        .await,
        "the log phase ran"
    );
}

/// A plugin that asks only for the request phase in `init` is called in no
/// other, although it implements them all.
#[tokio::test]
async fn a_plugin_runs_only_in_the_phases_it_asked_for() {
    let app = Upstream::echo("app").await;
    let gw = with_plugins(
        Gateway::with_config(config(
            "",
            &[("app", app.addr)],
            r#"
[[route]]
name = "main"
upstream = "app"
path_prefix = "/"
plugins = [{ name = "basic", config = { tag = "t", mode = "request-only" } }]
"#,
        )),
        &[("basic", "basic")],
    )
    .start();
    let c = client();
    for _ in 0..5 {
        let r = get(&c, &gw.url("/p"), &[]).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(
            r.json()["headers"]["x-fx-order"],
            "t",
            "the request phase ran"
        );
        assert_eq!(r.header("x-fx-context"), None, "no response phase");
        assert_eq!(
            r.json()["headers"]["x-fx-logged"],
            "0",
            "no log phase has counted a request"
        );
    }
}

#[tokio::test]
async fn pooled_chain_continues_responds_routes_and_keeps_state() {
    chain_behaves("pooled").await;
}

#[tokio::test]
async fn request_isolation_keeps_context_across_phases() {
    chain_behaves("request").await;
}

#[tokio::test]
async fn plugins_cannot_read_each_others_state() {
    let app = Upstream::echo("app").await;
    let gw = with_plugins(
        Gateway::with_config(config(
            "",
            &[("app", app.addr)],
            r#"
[[route]]
name = "two-plugins"
upstream = "app"
path = "/two"
plugins = [{ name = "writer", config = { mode = "write" } }, { name = "reader", config = { mode = "read" } }]

[[route]]
name = "one-plugin"
upstream = "app"
path = "/one"
plugins = [{ name = "writer", config = { mode = "write" } }, { name = "writer", config = { mode = "read" } }]
"#,
        )),
        &[("writer", "basic"), ("reader", "basic")],
    )
    .start();
    let c = client();
    // Same key, same code, different plugin name: nothing to see.
    let r = get(&c, &gw.url("/two"), &[]).await;
    assert_eq!(r.json()["headers"]["x-fx-found"], "no");
    // The control: the same plugin does see its own key.
    let r = get(&c, &gw.url("/one"), &[]).await;
    assert_eq!(r.json()["headers"]["x-fx-found"], "yes");
}

/// An upstream that answers with the body it received, or 64 KiB at /big.
async fn body_upstream() -> Upstream {
    Upstream::start(|req: http::Request<hyper::body::Incoming>| async move {
        let big = req.uri().path() == "/big";
        let len = req
            .headers()
            .get("content-length")
            .map(|v| v.to_str().unwrap().to_owned());
        let body = req.into_body().collect().await.unwrap().to_bytes();
        let body = if big {
            Bytes::from(vec![b'z'; 64 * 1024])
        } else {
            body
        };
        http::Response::builder()
            .header("x-seen-length", len.unwrap_or_default())
            .body(full(body))
            .unwrap()
    })
    .await
}

#[tokio::test]
async fn body_phases_replace_bodies_within_caps() {
    let app = body_upstream().await;
    let gw = with_plugins(
        Gateway::with_config(config(
            "",
            &[("app", app.addr)],
            r#"
[plugins]
max_request_body_bytes = "1KiB"
max_response_body_bytes = "16KiB"

[[route]]
upstream = "app"
path_prefix = "/"
plugins = [{ name = "basic", config = { mode = "body" } }]
"#,
        )),
        &[("basic", "basic")],
    )
    .start();
    let c = client();
    let post = |path: &str, body: Vec<u8>, extra: Option<(&str, &str)>| {
        let mut b = http::Request::post(gw.url(path));
        if let Some((k, v)) = extra {
            b = b.header(k, v);
        }
        b.body(Full::new(Bytes::from(body))).unwrap()
    };

    let r = send(&c, post("/echo", b"hello".to_vec(), None)).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "HELLO|seen by basic");
    assert_eq!(r.header("x-seen-length"), Some("5"));

    let r = send(
        &c,
        post("/echo", b"abc".to_vec(), Some(("x-fx-body-respond", "1"))),
    )
    .await;
    assert_eq!(r.status, 422);
    assert_eq!(r.text(), "saw 3 bytes\n");

    // Over the request cap: 413, and the upstream never sees it.
    let before = app.count();
    let r = send(&client(), post("/echo", vec![b'a'; 2048], None)).await;
    assert_eq!(r.status, 413);
    assert_eq!(app.count(), before);

    // Over the response cap: 502.
    let r = send(&c, post("/big", Vec::new(), None)).await;
    assert_eq!(r.status, 502);
}

fn one_plugin_config(name: &str) -> String {
    config(
        "",
        &[("app", "127.0.0.1:9".parse().unwrap())],
        &format!(
            r#"
[[route]]
upstream = "app"
plugins = [{{ name = "{name}" }}]
"#
        ),
    )
}

#[test]
fn check_and_start_up_refuse_bad_plugin_files() {
    let cases: Vec<(&str, Option<Vec<u8>>, &str)> = vec![
        ("missing", None, "cannot read the plugin file"),
        (
            "core",
            Some(core_module()),
            "core WebAssembly module, not a component",
        ),
        (
            "old",
            Some(fixture("wrongver")),
            "built against weir:plugin@0.1.0",
        ),
        (
            "junk",
            Some(b"not wasm at all".to_vec()),
            "not a WebAssembly file",
        ),
    ];
    for (name, bytes, reason) in cases {
        let cfg = one_plugin_config(name);
        let files: Vec<(String, Vec<u8>)> = bytes
            .map(|b| vec![(format!("plugins/{name}.wasm"), b)])
            .unwrap_or_default();
        let (ok, out) = check(&cfg, &files);
        assert!(!ok, "{name}: check passed:\n{out}");
        let file = format!("plugins/{name}.wasm");
        assert!(out.contains(&file) && out.contains(reason), "{name}: {out}");
        let err = run_fails(&cfg, &files);
        assert!(err.contains(&file) && err.contains(reason), "{name}: {err}");
    }

    // A plugin that refuses its configuration in `init` is not deployed.
    let cfg = config(
        "",
        &[("app", "127.0.0.1:9".parse().unwrap())],
        r#"
[[route]]
upstream = "app"
plugins = [{ name = "basic", config = { mode = "reject" } }]
"#,
    );
    let files = [("plugins/basic.wasm".to_owned(), fixture("basic"))];
    let (ok, out) = check(&cfg, &files);
    assert!(!ok && out.contains("configuration says reject"), "{out}");

    // And a good one passes.
    let cfg = cfg.replace("reject", "gate");
    let (ok, out) = check(&cfg, &files);
    assert!(ok, "{out}");
    assert!(out.contains("1 plugins"), "{out}");
}
