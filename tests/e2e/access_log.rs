//! The access log through the real binary: the fields a configuration
//! asks for, the fields plugins set, the combined format, a reopen on
//! SIGUSR1 after a rename (no line lost or doubled), and a writer that
//! cannot write (a pipe nobody reads): lines are dropped and counted in
//! `/metrics`, and requests are answered as before.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::bundled_plugins::bundled;
use crate::support::metrics::{scrape, value};
use crate::support::*;

const ADMIN: &str = "\n[admin]\naddress = \"127.0.0.1:0\"\n";

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn json_lines(path: &Path) -> Vec<serde_json::Value> {
    lines(path)
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

async fn wait_lines(path: &Path, n: usize) -> Vec<String> {
    let ok = eventually(Duration::from_secs(10), || async { lines(path).len() >= n }).await;
    let got = lines(path);
    assert!(
        ok,
        "expected {n} lines in {}, found {}",
        path.display(),
        got.len()
    );
    got
}

/// The value of a sample without labels, e.g. `weir_access_log_lines_dropped_total`.
fn sample(text: &str, name: &str) -> u64 {
    value(text, name).unwrap_or_else(|| panic!("{name} not in:\n{text}")) as u64
}

#[tokio::test]
async fn json_lines_carry_the_configured_fields_in_order() {
    let up = Upstream::echo("app").await;
    let cfg = config(
        "",
        &[("app", up.addr)],
        "[[route]]\nname = \"api\"\nupstream = \"app\"\npath_prefix = \"/hello\"\n",
    ) + "\n[access_log]\npath = \"access.log\"\nfields = [\"method\", \"path\", \"query\", \"status\", \
           \"route\", \"upstream\", \"endpoint\", \"attempts\", \"bytes_in\", \"bytes_out\", \
           \"request_id\", \"user_agent\", \"duration_ms\", \"upstream_duration_ms\"]\n";
    let gw = Gateway::with_config(cfg).start();
    let path = gw.dir().join("access.log");
    let c = client();

    let r = get(
        &c,
        &gw.url("/hello?x=1"),
        &[("user-agent", "probe/1"), ("x-request-id", "rid-7")],
    )
    .await;
    assert_eq!(r.status, 200);
    let body_len = r.body.len() as u64;
    let miss = get(&c, &gw.url("/nowhere"), &[]).await;
    assert_eq!(miss.status, 404);

    wait_lines(&path, 2).await;
    let v = json_lines(&path);
    let first = &v[0];
    // The keys in the line's own order (a parsed object sorts them).
    let raw = &lines(&path)[0];
    let mut keys: Vec<&str> = first
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    keys.sort_by_key(|k| raw.find(&format!("\"{k}\":")).unwrap());
    assert_eq!(
        keys,
        [
            "method",
            "path",
            "query",
            "status",
            "route",
            "upstream",
            "endpoint",
            "attempts",
            "bytes_in",
            "bytes_out",
            "request_id",
            "user_agent",
            "duration_ms",
            "upstream_duration_ms"
        ],
        "{first}"
    );
    assert_eq!(first["method"], "GET");
    assert_eq!(first["path"], "/hello");
    assert_eq!(first["query"], "x=1");
    assert_eq!(first["status"], 200);
    assert_eq!(first["route"], "api");
    assert_eq!(first["upstream"], "app");
    assert_eq!(first["endpoint"], up.addr.to_string());
    assert_eq!(first["attempts"], 1);
    assert_eq!(first["bytes_in"], 0);
    assert_eq!(first["bytes_out"], body_len);
    assert_eq!(first["request_id"], "rid-7");
    assert_eq!(first["user_agent"], "probe/1");
    assert!(
        first["duration_ms"].as_f64().unwrap() >= first["upstream_duration_ms"].as_f64().unwrap()
    );
    // Every line is one JSON object, also for a request no route took.
    assert_eq!(v[1]["status"], 404);
    assert_eq!(v[1]["attempts"], 0);
    assert!(v[1].get("route").is_none(), "{}", v[1]);
}

#[tokio::test]
async fn a_plugin_sets_the_consumer_and_the_combined_format_shows_it() {
    let up = Upstream::echo("app").await;
    let routes = r#"
[[route]]
upstream = "app"
plugins = [{ name = "api-key", config = { keys = { "k-alice-1" = "alice" } } }]
"#;
    for (format, extra) in [("json", ""), ("combined", "format = \"combined\"\n")] {
        let cfg =
            config("", &[("app", up.addr)], routes) + "\n[access_log]\npath = \"a.log\"\n" + extra;
        let gw = Gateway::with_config(cfg)
            .file("plugins/api-key.wasm", bundled("api-key"))
            .start();
        let path = gw.dir().join("a.log");
        let c = client();
        let ok = get(
            &c,
            &gw.url("/x"),
            &[("x-api-key", "k-alice-1"), ("user-agent", "ua/2")],
        )
        .await;
        assert_eq!(ok.status, 200, "{}", ok.text());
        let refused = get(&c, &gw.url("/x"), &[("x-api-key", "wrong")]).await;
        assert_eq!(refused.status, 401);
        let got = wait_lines(&path, 2).await;
        let all = got.join("\n");
        assert!(!all.contains("k-alice-1"), "the key reached the log: {all}");
        if format == "json" {
            let v = json_lines(&path);
            assert_eq!(v[0]["plugin"]["consumer"], "alice", "{}", v[0]);
            assert_eq!(v[1]["status"], 401);
            assert!(v[1].get("plugin").is_none(), "{}", v[1]);
        } else {
            let len = ok.body.len();
            assert!(got[0].starts_with("127.0.0.1 - alice ["), "{}", got[0]);
            assert!(
                got[0].ends_with(&format!("] \"GET /x HTTP/1.1\" 200 {len} \"-\" \"ua/2\"")),
                "{}",
                got[0]
            );
            assert!(got[1].starts_with("127.0.0.1 - - ["), "{}", got[1]);
        }
    }
}

#[tokio::test]
async fn sigusr1_reopens_the_file_and_no_line_is_lost_or_doubled() {
    let up = Upstream::echo("app").await;
    let cfg = config("", &[("app", up.addr)], "[[route]]\nupstream = \"app\"\n")
        + "\n[access_log]\npath = \"access.log\"\nfields = [\"request_id\"]\n";
    let gw = Gateway::with_config(cfg).start();
    let path = gw.dir().join("access.log");
    let rotated: PathBuf = gw.dir().join("access.log.1");

    // Requests keep coming while the file is renamed and reopened.
    let url = gw.url("/r");
    let sender = tokio::spawn(async move {
        let c = client();
        for i in 0..600 {
            let id = format!("n{i}");
            let r = get(&c, &url, &[("x-request-id", &id)]).await;
            assert_eq!(r.status, 200);
            if i % 100 == 99 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    });
    wait_lines(&path, 150).await;
    std::fs::rename(&path, &rotated).unwrap();
    gw.sigusr1();
    assert!(
        eventually(Duration::from_secs(10), || async { path.exists() }).await,
        "SIGUSR1 did not make a new file"
    );
    sender.await.unwrap();

    let ok = eventually(Duration::from_secs(10), || async {
        lines(&rotated).len() + lines(&path).len() >= 600
    })
    .await;
    let (old, new) = (lines(&rotated), lines(&path));
    assert!(ok, "{} + {} lines of 600", old.len(), new.len());
    assert!(
        old.len() >= 150 && !new.is_empty(),
        "{} / {}",
        old.len(),
        new.len()
    );
    let mut ids: Vec<String> = old
        .iter()
        .chain(&new)
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["request_id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    let total = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(total, 600, "a line was doubled or lost");
    assert_eq!(ids.len(), 600, "a line was doubled");
    // The lines before the signal are all in the old file, in order.
    let first_new: usize = new[0]
        .split("\"n")
        .nth(1)
        .and_then(|s| s.trim_end_matches("\"}").parse().ok())
        .unwrap();
    assert_eq!(
        first_new,
        old.len(),
        "the new file starts where the old one ends"
    );
}

#[tokio::test]
async fn a_stalled_writer_drops_and_counts_lines_and_requests_do_not_wait() {
    use rustix::fs::{Mode, OFlags};
    let up = Upstream::echo("app").await;
    let cfg = config("", &[("app", up.addr)], "[[route]]\nupstream = \"app\"\n")
        + "\n[access_log]\npath = \"log.fifo\"\nqueue_lines = 16\n"
        + ADMIN;
    // The log is a pipe that is opened for reading but never read: once
    // its buffer (64 KiB) is full, every write blocks the writer thread.
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("log.fifo");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &fifo,
        rustix::fs::FileType::Fifo,
        Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
    let _reader =
        rustix::fs::open(&fifo, OFlags::RDONLY | OFlags::NONBLOCK, Mode::empty()).unwrap();
    let gw = Gateway::with_config(cfg)
        .symlink("log.fifo", fifo.to_str().unwrap())
        .start();
    let c = client();
    let long = "a".repeat(2000);
    let path = format!("/{long}");
    // 400 lines of over 2 KiB: far more than the pipe and the queue hold.
    for _ in 0..400 {
        let url = format!("http://{}{path}", gw.listener("main"));
        let r = tokio::time::timeout(Duration::from_secs(5), get(&c, &url, &[]))
            .await
            .expect("a request waited for the stalled access log");
        assert_eq!(r.status, 200);
    }
    let text = scrape(&gw).await;
    let queued = sample(&text, "weir_access_log_lines_queued_total");
    let dropped = sample(&text, "weir_access_log_lines_dropped_total");
    assert_eq!(queued + dropped, 400, "{text}");
    assert!(dropped >= 300, "dropped {dropped} of 400");
    assert!(queued >= 16, "queued {queued}");
}

#[tokio::test]
async fn a_log_file_that_cannot_be_opened_stops_start_up_with_its_path() {
    let cfg = config("", &[], "") + "\n[access_log]\npath = \"no/such/dir/access.log\"\n";
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("weir.toml");
    std::fs::write(&path, cfg).unwrap();
    let out = std::process::Command::new(weir_bin())
        .args(["run", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("access log: cannot open") && err.contains("no/such/dir/access.log"),
        "{err}"
    );
}

#[tokio::test]
async fn the_line_carries_the_trace_id_the_upstream_was_sent() {
    let up = Upstream::echo("app").await;
    let cfg = config("", &[("app", up.addr)], "[[route]]\nupstream = \"app\"\n")
        + "\n[tracing]\nenabled = true\n\n[access_log]\npath = \"access.log\"\nfields = [\"trace_id\", \"status\"]\n";
    let gw = Gateway::with_config(cfg).start();
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let r = get(
        &client(),
        &gw.url("/t"),
        &[("traceparent", &format!("00-{trace}-00f067aa0ba902b7-01"))],
    )
    .await;
    assert_eq!(r.status, 200);
    let sent = r.json()["headers"]["traceparent"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(sent.starts_with(&format!("00-{trace}-")), "{sent}");
    let path = gw.dir().join("access.log");
    wait_lines(&path, 1).await;
    let v = json_lines(&path);
    assert_eq!(v[0]["trace_id"], trace, "{}", v[0]);
}

/// A client that goes away while its request waits on the upstream: the
/// request is still logged, with status 499 and its route, and counted in
/// the route's requests (status class 4xx); the upstream's connection is
/// given up.
#[tokio::test]
async fn a_request_its_client_abandons_is_logged_and_counted_as_499() {
    let held = crate::support::held::Held::start().await;
    let cfg = config(
        "",
        &[("held", held.addr)],
        "[[route]]\nname = \"slow\"\nupstream = \"held\"\npath_prefix = \"/\"\n",
    ) + "\n[access_log]\npath = \"access.log\"\nfields = [\"method\", \"path\", \"status\", \
           \"route\", \"request_id\"]\n"
        + ADMIN;
    let gw = Gateway::with_config(cfg).start();
    let path = gw.dir().join("access.log");

    let mut conn = crate::support::raw::RawConn::open(gw.listener("main")).await;
    conn.send(b"GET /wait HTTP/1.1\r\nhost: x\r\nx-request-id: gone-1\r\n\r\n")
        .await;
    assert_eq!(held.arrival().await, "/wait");
    drop(conn);

    let v = wait_lines(&path, 1).await;
    let line: serde_json::Value = serde_json::from_str(&v[0]).unwrap();
    assert_eq!(line["status"], 499, "{line}");
    assert_eq!(line["route"], "slow", "{line}");
    assert_eq!(line["path"], "/wait", "{line}");
    assert_eq!(line["request_id"], "gone-1", "{line}");
    let closed = eventually(Duration::from_secs(10), || async { held.closed() == 1 }).await;
    assert!(closed, "the upstream's connection was kept");

    let text = scrape(&gw).await;
    let counted = value(
        &text,
        r#"weir_requests_total{route="slow",method="GET",status_class="4xx"}"#,
    );
    assert_eq!(counted, Some(1.0), "{text}");
}
