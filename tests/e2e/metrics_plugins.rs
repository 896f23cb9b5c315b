//! Plugin metrics through the real gateway and real compiled plugins:
//! known traffic (calls that return, trap, spin to their deadline, blow
//! their memory cap, are skipped under `failure = "open"`, are refused by
//! an open breaker), hot deploys, then `/metrics` on the admin listener
//! read and its plugin series checked for exact counts; `promtool check
//! metrics` must find nothing wrong with the whole scrape.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::plugins_support::{core_module, fixture, main_url, with_plugins};
use crate::support::metrics::{promtool_finds_nothing, scrape};
use crate::support::upstream::Upstream;
use crate::support::*;

/// The samples of a scrape: `name{labels}` → value as written.
fn samples(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.rsplit_once(' '))
        .map(|(series, value)| (series.to_owned(), value.to_owned()))
        .collect()
}

/// The value of one series as a number (0 when the series is absent:
/// zero series are left out of the scrape).
fn value(samples: &BTreeMap<String, String>, series: &str) -> f64 {
    samples.get(series).map_or(0.0, |v| {
        v.parse().unwrap_or_else(|e| panic!("{series} = {v}: {e}"))
    })
}

/// The `series value` lines of `want` (a block in the exposition
/// format; a value of 0 also matches an absent series) that the scrape
/// `text` does not hold.
fn mismatches(text: &str, want: &str) -> Vec<String> {
    let s = samples(text);
    samples(want)
        .iter()
        .filter_map(|(series, v)| {
            let want: f64 = v.parse().unwrap();
            let got = value(&s, series);
            (got != want).then(|| format!("{series}: want {want}, got {got}"))
        })
        .collect()
}

/// Asserts every line of `want` (see [`mismatches`]).
fn expect(text: &str, want: &str) {
    let wrong = mismatches(text, want);
    assert!(
        wrong.is_empty(),
        "{}\nplugin series:\n{}",
        wrong.join("\n"),
        plugin_lines(text)
    );
}

fn plugin_lines(text: &str) -> String {
    text.lines()
        .filter(|l| l.starts_with("weir_plugin"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Scrapes until every line of `want` holds (the log phase runs after the
/// response, a deploy after the file lands), then asserts them; returns
/// the last scrape.
async fn eventually_expect(gw: &Gateway, want: &str) -> String {
    eventually(Duration::from_secs(20), || async {
        mismatches(&scrape(gw).await, want).is_empty()
    })
    .await;
    let text = scrape(gw).await;
    expect(&text, want);
    text
}

fn sha256(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn traffic_config(app: std::net::SocketAddr) -> String {
    let routes = r#"
# No CPU share: calls that spin to their deadline would spend it, and a
# crowded test machine's would too; the share's refusals are not counted
# here. Every hostile entry fails open: its failures are skips.
[plugin_limits.crasher]
failure = "open"
cpu_share = "100%"

[plugin_limits.spinner]
failure = "open"
breaker_after = 0
cpu_share = "100%"

[plugin_limits.bomber]
failure = "open"
memory = "16MiB"
cpu_share = "100%"

[plugin_limits.tripper]
failure = "open"
breaker_after = 1
breaker_backoff = "10s"
cpu_share = "100%"

[[route]]
name = "gate"
upstream = "app"
path = "/gate"
plugins = [{ name = "gate", config = { tag = "g" } }]

[[route]]
name = "crash"
upstream = "app"
path = "/crash"
plugins = [{ name = "crasher", config = { mode = "crash-on-demand" } }]

[[route]]
name = "spin"
upstream = "app"
path = "/spin"
plugins = [{ name = "spinner", config = { mode = "spin-on-demand" } }]

[[route]]
name = "bomb"
upstream = "app"
path = "/bomb"
plugins = [{ name = "bomber", config = { mode = "bomb" } }]

[[route]]
name = "trip"
upstream = "app"
path = "/trip"
plugins = [{ name = "tripper", config = { mode = "spin-on-demand" } }]

[admin]
address = "127.0.0.1:0"
"#;
    config("", &[("app", app)], routes)
}

#[tokio::test]
async fn calls_traps_skips_refusals_and_plugin_counters_are_counted_exactly() {
    let app = Upstream::echo("app").await;
    let gw = with_plugins(
        Gateway::with_config(traffic_config(app.addr)),
        &[
            ("gate", "basic"),
            ("crasher", "hostile"),
            ("spinner", "hostile"),
            ("bomber", "hostile"),
            ("tripper", "hostile"),
        ],
    )
    .start();
    let c = client();
    let ok = |path: &'static str, headers: &'static [(&'static str, &'static str)]| {
        let (c, url) = (c.clone(), main_url(&gw, path));
        async move {
            let r = get(&c, &url, headers).await;
            assert_eq!(r.status, 200, "{path} {headers:?}: {}", r.text());
        }
    };
    // `basic` asks for the request, response and log phases, and counts
    // each request with `counter-add("fixture_basic_requests", 1)`.
    for _ in 0..5 {
        ok("/gate", &[]).await;
    }
    for _ in 0..2 {
        ok("/crash", &[]).await;
    }
    // Each of these fails and is skipped: the upstream still answers.
    for _ in 0..3 {
        ok("/crash", &[("x-crash", "1")]).await;
    }
    for _ in 0..2 {
        ok("/spin", &[("x-spin", "1")]).await;
    }
    ok("/bomb", &[]).await;
    // On one connection (so one worker): the first call spins to its
    // deadline and opens that worker's breaker (`breaker_after = 1`), the
    // second is refused at once. Both are skipped.
    let two = raw(
        gw.listener("main"),
        b"GET /trip HTTP/1.1\r\nhost: a\r\nx-spin: 1\r\n\r\nGET /trip HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n",
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(two.matches("HTTP/1.1 200").count(), 2, "{two}");

    // `basic` calls `counter-add("fixture_basic_requests", 1)` per
    // request. A call an open breaker refused is the breaker's count, not
    // a call's: tripper has no `ok` call.
    let text = eventually_expect(
        &gw,
        r#"
weir_plugin_calls_total{plugin="gate",phase="request",outcome="ok"} 5
weir_plugin_calls_total{plugin="gate",phase="response",outcome="ok"} 5
weir_plugin_calls_total{plugin="gate",phase="log",outcome="ok"} 5
weir_plugin_counted_total{plugin="gate",name="fixture_basic_requests"} 5
weir_plugin_skips_total{plugin="gate"} 0
weir_plugin_calls_total{plugin="crasher",phase="request",outcome="ok"} 2
weir_plugin_calls_total{plugin="crasher",phase="request",outcome="trap"} 3
weir_plugin_traps_total{plugin="crasher",cause="other"} 3
weir_plugin_skips_total{plugin="crasher"} 3
weir_plugin_calls_total{plugin="spinner",phase="request",outcome="trap"} 2
weir_plugin_traps_total{plugin="spinner",cause="deadline"} 2
weir_plugin_skips_total{plugin="spinner"} 2
weir_plugin_calls_total{plugin="bomber",phase="request",outcome="trap"} 1
weir_plugin_traps_total{plugin="bomber",cause="memory"} 1
weir_plugin_skips_total{plugin="bomber"} 1
weir_plugin_calls_total{plugin="tripper",phase="request",outcome="trap"} 1
weir_plugin_calls_total{plugin="tripper",phase="request",outcome="ok"} 0
weir_plugin_traps_total{plugin="tripper",cause="deadline"} 1
weir_plugin_breaker_opens_total{plugin="tripper"} 1
weir_plugin_breaker_refusals_total{plugin="tripper"} 1
weir_plugin_breakers_open{plugin="tripper"} 1
weir_plugin_skips_total{plugin="tripper"} 2
"#,
    )
    .await;
    let s = samples(&text);
    // The duration histogram times one call in 8 per worker thread: at
    // most the calls made, and its buckets add up to its count.
    for phase in ["request", "log"] {
        let labels = format!("plugin=\"gate\",phase=\"{phase}\"");
        let count = value(
            &s,
            &format!("weir_plugin_call_duration_seconds_count{{{labels}}}"),
        );
        let inf = value(
            &s,
            &format!("weir_plugin_call_duration_seconds_bucket{{{labels},le=\"+Inf\"}}"),
        );
        assert!(
            count <= 5.0 && inf == count,
            "{phase}: count {count}, +Inf {inf}"
        );
    }
    // Each plugin made at least its first instance (more as pools grow
    // and trapped instances are replaced, which depends on the workers
    // the requests landed on). The gauge of live instances is there for
    // each; `gate` never trapped, so its instances are all still alive.
    for plugin in ["gate", "crasher", "spinner", "bomber", "tripper"] {
        let init =
            format!(r#"weir_plugin_calls_total{{plugin="{plugin}",phase="init",outcome="ok"}}"#);
        assert!(value(&s, &init) >= 1.0, "{init}\n{}", plugin_lines(&text));
        let live = format!(r#"weir_plugin_instances{{plugin="{plugin}"}}"#);
        assert!(s.contains_key(&live), "{live}\n{}", plugin_lines(&text));
    }
    let gate_init = r#"weir_plugin_calls_total{plugin="gate",phase="init",outcome="ok"}"#;
    assert_eq!(
        value(&s, r#"weir_plugin_instances{plugin="gate"}"#),
        value(&s, gate_init),
        "{}",
        plugin_lines(&text)
    );
    let info = |plugin: &str, fixture_name: &str| {
        format!(
            "weir_plugin_info{{plugin=\"{plugin}\",sha256=\"{}\"}} 1\n",
            sha256(&fixture(fixture_name))
        )
    };
    expect(
        &text,
        &(info("gate", "basic") + &info("crasher", "hostile")),
    );
    // The deadline trap took at least its 10 ms deadline of CPU.
    assert!(
        value(
            &s,
            r#"weir_plugin_call_duration_seconds_bucket{plugin="spinner",phase="request",le="0.005"}"#
        ) == 0.0,
        "{}",
        plugin_lines(&text)
    );
    promtool_finds_nothing(&text);
}

/// The hot-deploy fixture `v1`/`v2` as plugin `ver`, with its compiled
/// code cached in the test's folder.
fn deploy_config(app: std::net::SocketAddr) -> String {
    config(
        "",
        &[("app", app)],
        "[plugins]\ncache_dir = \"cache\"\n\n[[route]]\nname = \"all\"\nupstream = \"app\"\nplugins = [{ name = \"ver\" }]\n\n[admin]\naddress = \"127.0.0.1:0\"\n",
    )
}

/// Deploys the way release tools do: write beside, then rename over.
fn install(gw: &Gateway, bytes: &[u8]) {
    let dir = gw.dir().join("plugins");
    let tmp = dir.join(".ver.wasm.tmp");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, dir.join("ver.wasm")).unwrap();
}

#[tokio::test]
async fn deploys_are_counted_by_outcome_and_counts_carry_over_a_deploy() {
    let app = Upstream::echo("app").await;
    let gw = with_plugins(
        Gateway::with_config(deploy_config(app.addr)),
        &[("ver", "v1")],
    )
    .start();
    let c = client();
    let (v1, v2) = (fixture("v1"), fixture("v2"));
    let served_by = |want: &'static str| {
        let (c, url) = (c.clone(), main_url(&gw, "/x"));
        async move {
            let r = get(&c, &url, &[]).await;
            assert_eq!(r.status, 200, "{}", r.text());
            r.header("x-plugin-version") == Some(want)
        }
    };
    for _ in 0..3 {
        assert!(served_by("1").await);
    }
    let info = |bytes: &[u8], v: u8| {
        format!(
            "weir_plugin_info{{plugin=\"ver\",sha256=\"{}\"}} {v}\n",
            sha256(bytes)
        )
    };
    let calls = r#"weir_plugin_calls_total{plugin="ver",phase="request",outcome="ok"}"#;
    let at_start =
        r#"weir_plugin_deploys_total{plugin="ver",trigger="startup",outcome="deployed"} 1"#;
    expect(
        &scrape(&gw).await,
        &format!("{}{calls} 3\n{at_start}\n", info(&v1, 1)),
    );

    install(&gw, &v2);
    let deployed =
        r#"weir_plugin_deploys_total{plugin="ver",trigger="file-change",outcome="deployed"}"#;
    eventually_expect(&gw, &format!("{deployed} 1\n")).await;
    assert!(
        eventually(Duration::from_secs(20), || served_by("2")).await,
        "v2 never served"
    );
    for _ in 0..2 {
        assert!(served_by("2").await);
    }
    // One info series, the new version's; the calls before the deploy
    // still counted (requests that waited for v2 above too: at least 6).
    let text = scrape(&gw).await;
    expect(&text, &(info(&v2, 1) + &info(&v1, 0)));
    assert!(
        value(&samples(&text), calls) >= 6.0,
        "counts did not carry over the deploy:\n{}",
        plugin_lines(&text)
    );

    // A core module is refused at validation; nothing changes.
    install(&gw, &core_module());
    eventually_expect(
        &gw,
        &format!(
            r#"weir_plugin_deploys_total{{plugin="ver",trigger="file-change",outcome="rejected"}} 1
weir_plugin_deploy_rejections_total{{plugin="ver",trigger="file-change",step="validate"}} 1
{deployed} 1
{}"#,
            info(&v2, 1)
        ),
    )
    .await;

    // The file removed: the last good version keeps serving.
    std::fs::remove_file(gw.dir().join("plugins/ver.wasm")).unwrap();
    let text = eventually_expect(
        &gw,
        &format!(
            r#"weir_plugin_deploys_total{{plugin="ver",trigger="file-change",outcome="removed"}} 1
{}"#,
            info(&v2, 1)
        ),
    )
    .await;
    assert!(served_by("2").await);
    promtool_finds_nothing(&text);
}
