//! The breaker on repeated deadline traps, through the real gateway: a
//! plugin whose calls keep spinning to their deadline on a worker is
//! refused at once there (503 with `Retry-After`, or skipped when it fails
//! open) for its back-off, then one call probes it: a probe that spins
//! again reopens the breaker, one that answers closes it. `/admin/plugins`
//! shows the state.

use std::time::Duration;

use crate::plugins_support::*;
use crate::support::upstream::Upstream;
use crate::support::*;

/// Calls end at a 100 ms deadline; three in a row open the breaker for
/// 400 ms. One worker, so every request meets the same breaker. No CPU
/// share: three calls of 100 ms would spend the default one (250 ms per
/// second) and be refused by it first (`plugins_share.rs` has the share).
async fn start() -> (Upstream, Gateway) {
    let app = Upstream::echo("app").await;
    let routes = r#"
[plugin_limits.spinner]
deadline = "100ms"
breaker_after = 3
breaker_backoff = "400ms"
cpu_share = "100%"

[plugin_limits.lenient]
deadline = "100ms"
failure = "open"
breaker_after = 3
breaker_backoff = "400ms"
cpu_share = "100%"

[[route]]
name = "plain"
upstream = "app"
path = "/plain"

[[route]]
name = "spin"
upstream = "app"
path = "/spin"
plugins = [{ name = "spinner", config = { mode = "spin-on-demand" } }]

[[route]]
name = "lenient"
upstream = "app"
path = "/lenient"
plugins = [{ name = "lenient", config = { mode = "spin-on-demand" } }]

[admin]
address = "127.0.0.1:0"
"#;
    let cfg = config("", &[("app", app.addr)], routes).replace("workers = 2", "workers = 1");
    let gw = with_plugins(
        Gateway::with_config(cfg),
        &[("spinner", "hostile"), ("lenient", "hostile")],
    )
    .start();
    (app, gw)
}

/// The `breaker` object of one plugin in `/admin/plugins`.
async fn breaker(gw: &Gateway, name: &str) -> serde_json::Value {
    let url = format!("http://{}/admin/plugins", gw.listener("admin"));
    let all = get(&client(), &url, &[]).await.json();
    all["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .map(|p| p["breaker"].clone())
        .unwrap_or(serde_json::Value::Null)
}

const SPIN: [(&str, &str); 1] = [("x-spin", "1")];

/// Opens `path`'s breaker with three deadline traps, each answered `status`.
async fn trip(gw: &Gateway, c: &HttpClient, path: &str, status: u16) {
    for _ in 0..3 {
        let r = get(c, &gw_url(gw, path), &SPIN).await;
        assert_eq!(r.status, status, "{path}: {}", r.text());
    }
}

#[tokio::test]
async fn deadline_traps_in_a_row_open_the_breaker_until_a_probe_answers() {
    let (_app, gw) = start().await;
    let c = client();
    trip(&gw, &c, "/spin", 500).await;
    // A line reaches the harness after its response: wait for all three.
    let stopped = eventually(Duration::from_secs(5), || async {
        log_lines_with(&gw, &["spinner", "exceeded its CPU deadline"]).len() == 3
    })
    .await;
    assert!(stopped, "{}", gw.logs().join("\n"));

    // Open: refused at once, without running the plugin, and so is a
    // request that would not spin.
    let r = get(&c, &gw_url(&gw, "/spin"), &SPIN).await;
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.header("retry-after"), Some("1"));
    let id = r.header("x-request-id").unwrap().to_owned();
    let logged = eventually(Duration::from_secs(5), || async {
        !log_lines_with(&gw, &[&id, "breaker opened after 3 calls in a row"]).is_empty()
    })
    .await;
    assert!(logged, "{}", gw.logs().join("\n"));
    // Refused without running: the spinning request was not stopped at
    // its deadline (timing would say the same, but not on a busy machine).
    assert!(
        log_lines_with(&gw, &[&id, "exceeded its CPU deadline"]).is_empty(),
        "{}",
        gw.logs().join("\n")
    );
    assert_eq!(get(&c, &gw_url(&gw, "/spin"), &[]).await.status, 503);
    let b = breaker(&gw, "spinner").await;
    assert_eq!(b["open_workers"], 1, "{b}");
    assert_eq!(b["opened"], 1, "{b}");
    assert!(b["refused"].as_u64().unwrap() >= 1, "{b}");
    assert_eq!(get(&c, &gw_url(&gw, "/plain"), &[]).await.status, 200);

    // After the back-off one call probes; this one spins again, so the
    // breaker reopens (for twice as long) and the next call is refused.
    let answers = std::sync::Mutex::new(Vec::new());
    let probed = eventually(Duration::from_secs(5), || async {
        let s = get(&c, &gw_url(&gw, "/spin"), &SPIN).await.status;
        answers.lock().unwrap().push(s);
        s == 500
    })
    .await;
    let answers = answers.into_inner().unwrap();
    assert!(probed, "no probe ran: {answers:?}");
    assert!(
        answers[..answers.len() - 1].iter().all(|s| *s == 503),
        "{answers:?}"
    );
    assert_eq!(get(&c, &gw_url(&gw, "/spin"), &[]).await.status, 503);

    // A probe that answers closes it.
    let closed = eventually(Duration::from_secs(5), || async {
        get(&c, &gw_url(&gw, "/spin"), &[]).await.status == 200
    })
    .await;
    assert!(closed, "{}", gw.logs().join("\n"));
    assert_eq!(get(&c, &gw_url(&gw, "/spin"), &[]).await.status, 200);
    let b = breaker(&gw, "spinner").await;
    assert_eq!(b["open_workers"], 0, "{b}");
    assert_eq!(b["opened"], 1, "{b}");
}

#[tokio::test]
async fn failing_open_an_open_breaker_skips_the_plugin_at_once() {
    let (_app, gw) = start().await;
    let c = client();
    trip(&gw, &c, "/lenient", 200).await;
    let r = get(&c, &gw_url(&gw, "/lenient"), &SPIN).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let id = r.header("x-request-id").unwrap().to_owned();
    let logged = eventually(Duration::from_secs(5), || async {
        !log_lines_with(&gw, &[&id, "plugin skipped", "breaker opened"]).is_empty()
    })
    .await;
    assert!(logged, "{}", gw.logs().join("\n"));
    assert!(
        log_lines_with(&gw, &[&id, "exceeded its CPU deadline"]).is_empty(),
        "{}",
        gw.logs().join("\n")
    );
    assert_eq!(breaker(&gw, "lenient").await["open_workers"], 1);
}

/// A URL on the gateway's main listener (it also has an admin one).
fn gw_url(gw: &Gateway, path: &str) -> String {
    format!("http://{}{path}", gw.listener("main"))
}
