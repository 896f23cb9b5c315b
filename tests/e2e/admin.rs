//! The guarded admin API: with `[admin] token_file` every admin endpoint
//! but `/healthz` asks for the bearer token (a missing and a wrong one get
//! the same 401), the metrics listener serves `/metrics` without it and
//! nothing else, `weir check` refuses an admin listener beyond loopback
//! without a token and a token file that is empty or short, a reload
//! takes a new token and refuses a broken one, `/admin/upstreams` shows an
//! endpoint its health checks took out, and the token itself never shows
//! in the logs or any admin answer.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use crate::support::upstream::ClosedPort;
use crate::support::*;

const TOKEN: &str = "weir-e2e-9f8a7c6d5e4b3a21";
const NEW_TOKEN: &str = "weir-e2e-rotated-0a1b2c3d4e5f";

/// One upstream `app` (its endpoints and extra lines given), a route to
/// it, and `[admin]` holding the `admin` lines.
fn admin_config(endpoints: &[SocketAddr], upstream_extra: &str, admin: &str) -> String {
    let eps = endpoints
        .iter()
        .map(|a| format!("\"{a}\""))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "[server]\nworkers = 2\n\n[[listener]]\nname = \"main\"\naddress = \"127.0.0.1:0\"\n\n\
         [[upstream]]\nname = \"app\"\nendpoints = [{eps}]\nconnect_timeout = \"1s\"\n{upstream_extra}\n\n\
         [[route]]\nname = \"all\"\nupstream = \"app\"\n\n\
         [admin]\n{admin}\n"
    )
}

fn guarded(endpoints: &[SocketAddr]) -> GatewayBuilder {
    Gateway::with_config(admin_config(
        endpoints,
        "",
        "address = \"127.0.0.1:0\"\ntoken_file = \"admin.token\"\nmetrics_address = \"127.0.0.1:0\"",
    ))
    .file("admin.token", format!("{TOKEN}\n"))
}

fn admin_url(gw: &Gateway, path: &str) -> String {
    format!("http://{}{path}", gw.listener("admin"))
}

async fn admin_get(gw: &Gateway, path: &str, token: Option<&str>) -> Reply {
    let bearer = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = bearer
        .iter()
        .map(|b| ("authorization", b.as_str()))
        .collect();
    get(&client(), &admin_url(gw, path), &headers).await
}

/// The metrics listener's address, from its `listening` line (it comes
/// after the admin listener's, which is where the harness stops waiting).
async fn metrics_listener(gw: &Gateway) -> SocketAddr {
    let find = || {
        gw.logs().iter().find_map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).ok()?;
            (v["message"] == "listening" && v["listener"] == "metrics")
                .then(|| v["address"].as_str()?.parse().ok())?
        })
    };
    assert!(
        eventually(Duration::from_secs(10), || async { find().is_some() }).await,
        "the metrics listener never listened; logs:\n{}",
        gw.logs_for_failure()
    );
    find().unwrap()
}

fn assert_refused(r: &Reply, what: &str) {
    assert_eq!(r.status, 401, "{what}: {}", r.text());
    let challenge = r.header("www-authenticate").unwrap_or_default();
    assert!(challenge.starts_with("Bearer"), "{what}: {challenge:?}");
}

#[tokio::test]
async fn the_token_guards_every_admin_endpoint_but_healthz() {
    let up = Upstream::echo("app").await;
    let gw = guarded(&[up.addr]).start();

    let health = admin_get(&gw, "/healthz", None).await;
    assert_eq!((health.status, health.text().as_str()), (200, "ok\n"));

    let wrong = &TOKEN[..TOKEN.len() - 1];
    for path in [
        "/admin/config",
        "/metrics",
        "/admin/upstreams",
        "/admin/nope",
    ] {
        let missing = admin_get(&gw, path, None).await;
        assert_refused(&missing, path);
        let bad = admin_get(&gw, path, Some(wrong)).await;
        assert_refused(&bad, path);
        // No hint which of the two it was.
        assert_eq!(missing.body, bad.body, "{path}");
        assert_eq!(
            missing.header("www-authenticate"),
            bad.header("www-authenticate")
        );
        let basic = get(
            &client(),
            &admin_url(&gw, path),
            &[("authorization", &format!("Basic {TOKEN}"))],
        )
        .await;
        assert_refused(&basic, path);
    }

    let config = admin_get(&gw, "/admin/config", Some(TOKEN)).await;
    assert_eq!(config.status, 200, "{}", config.text());
    assert_eq!(config.json()["last_attempt"]["outcome"], "applied");
    let lower = get(
        &client(),
        &admin_url(&gw, "/admin/plugins"),
        &[("authorization", &format!("bearer {TOKEN}"))],
    )
    .await;
    assert_eq!(lower.status, 200, "the scheme is case-insensitive");
    let unknown = admin_get(&gw, "/admin/nope", Some(TOKEN)).await;
    assert_eq!(unknown.status, 404);

    let metrics = admin_get(&gw, "/metrics", Some(TOKEN)).await;
    assert_eq!(metrics.status, 200);
    assert!(
        metrics
            .header("content-type")
            .unwrap()
            .starts_with("text/plain"),
        "{:?}",
        metrics.headers
    );
    assert!(metrics.text().contains("# TYPE "), "{}", metrics.text());
    let open = get(
        &client(),
        &admin_url(&gw, "/metrics"),
        &[
            ("authorization", &format!("Bearer {TOKEN}")),
            (
                "accept",
                "application/openmetrics-text;version=1.0.0,text/plain;q=0.5",
            ),
        ],
    )
    .await;
    assert_eq!(open.status, 200);
    assert!(
        open.header("content-type")
            .unwrap()
            .starts_with("application/openmetrics-text"),
        "{:?}",
        open.headers
    );
    assert!(open.text().ends_with("# EOF\n"), "{}", open.text());

    // The refusals were logged, without what was presented.
    assert!(
        eventually(Duration::from_secs(5), || async {
            gw.logs()
                .iter()
                .any(|l| l.contains("admin request refused"))
        })
        .await
    );
    let logs = gw.logs().join("\n");
    assert!(!logs.contains(wrong), "a presented token was logged");
}

#[tokio::test]
async fn the_metrics_listener_serves_metrics_without_the_token_and_nothing_else() {
    let up = Upstream::echo("app").await;
    let gw = guarded(&[up.addr]).start();
    let metrics = metrics_listener(&gw).await;
    assert_ne!(metrics, gw.listener("admin"));
    let c = client();

    let scrape = get(&c, &format!("http://{metrics}/metrics"), &[]).await;
    assert_eq!(scrape.status, 200, "{}", scrape.text());
    assert!(scrape.text().contains("# TYPE "), "{}", scrape.text());
    let open = get(
        &c,
        &format!("http://{metrics}/metrics"),
        &[("accept", "application/openmetrics-text; version=1.0.0")],
    )
    .await;
    assert!(open.text().ends_with("# EOF\n"), "{}", open.text());
    let health = get(&c, &format!("http://{metrics}/healthz"), &[]).await;
    assert_eq!(health.status, 200);
    for path in [
        "/admin/config",
        "/admin/upstreams",
        "/admin/plugins",
        "/admin/tls",
        "/",
    ] {
        let bearer = format!("Bearer {TOKEN}");
        let r = get(
            &c,
            &format!("http://{metrics}{path}"),
            &[("authorization", &bearer)],
        )
        .await;
        assert_eq!(r.status, 404, "{path} on the metrics listener");
    }
}

#[tokio::test]
async fn the_token_never_shows_in_logs_or_admin_answers() {
    let up = Upstream::echo("app").await;
    let gw = guarded(&[up.addr]).start();
    let mut seen = String::new();
    for path in [
        "/admin/config",
        "/admin/upstreams",
        "/admin/plugins",
        "/admin/tls",
        "/metrics",
        "/admin/nope",
    ] {
        seen.push_str(&admin_get(&gw, path, Some(TOKEN)).await.text());
        seen.push_str(&admin_get(&gw, path, None).await.text());
    }
    let m = metrics_listener(&gw).await;
    seen.push_str(
        &get(&client(), &format!("http://{m}/metrics"), &[])
            .await
            .text(),
    );
    // A reload (re-reading the token file) and a request through the
    // gateway, so their log lines are in too.
    gw.sighup();
    assert!(
        eventually(Duration::from_secs(10), || async {
            admin_get(&gw, "/admin/config", Some(TOKEN)).await.json()["last_attempt"]["trigger"]
                == "sighup"
        })
        .await
    );
    let r = get(&client(), &format!("http://{}/", gw.listener("main")), &[]).await;
    assert_eq!(r.status, 200);
    assert!(!seen.contains(TOKEN), "an admin answer showed the token");
    let logs = gw.logs().join("\n");
    assert!(logs.contains("\"auth\":\"bearer\""), "{logs}");
    assert!(!logs.contains(TOKEN), "the token was logged");
}

fn check_dir(admin: &str, token: Option<&str>) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    if let Some(t) = token {
        std::fs::write(dir.path().join("admin.token"), t).unwrap();
    }
    let path = dir.path().join("weir.toml");
    let text = admin_config(&["127.0.0.1:9".parse().unwrap()], "", admin);
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

#[test]
fn weir_check_refuses_an_admin_listener_beyond_loopback_without_a_token() {
    let (_dir, path) = check_dir("address = \"0.0.0.0:9901\"", None);
    let (ok, stderr) = weir_check(&path);
    assert!(!ok, "accepted an open admin listener on 0.0.0.0");
    assert!(stderr.contains("admin.address"), "{stderr}");
    assert!(stderr.contains("token_file"), "{stderr}");
    assert!(stderr.contains("not a loopback address"), "{stderr}");

    let (_dir, path) = check_dir(
        "address = \"0.0.0.0:9901\"\ntoken_file = \"admin.token\"",
        Some(TOKEN),
    );
    let (ok, stderr) = weir_check(&path);
    assert!(ok, "{stderr}");

    let (_dir, path) = check_dir("address = \"[::1]:9901\"", None);
    let (ok, stderr) = weir_check(&path);
    assert!(ok, "loopback needs no token: {stderr}");
}

#[test]
fn empty_and_short_token_files_are_refused_with_the_file_named() {
    for (contents, why) in [
        ("", "is empty"),
        ("\n  \n", "is empty"),
        ("sh0rt-t0ken\n", "is 11 bytes long"),
    ] {
        let (dir, path) = check_dir("token_file = \"admin.token\"", Some(contents));
        let file = dir.path().join("admin.token");
        let (ok, stderr) = weir_check(&path);
        assert!(!ok, "{contents:?} accepted");
        assert!(stderr.contains("admin.token_file"), "{stderr}");
        assert!(stderr.contains(&file.display().to_string()), "{stderr}");
        assert!(stderr.contains(why), "{stderr}");
        if !contents.trim().is_empty() {
            assert!(
                !stderr.contains(contents.trim()),
                "the token leaked: {stderr}"
            );
        }
        // `weir run` refuses it the same way, before it listens anywhere.
        let out = Command::new(weir_bin())
            .args(["run", "-c"])
            .arg(&path)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(stderr.contains("admin.token_file"), "{stderr}");
    }
    let (dir, path) = check_dir("token_file = \"missing.token\"", None);
    let (ok, stderr) = weir_check(&path);
    assert!(!ok);
    let missing = dir.path().join("missing.token").display().to_string();
    assert!(
        stderr.contains("admin.token_file") && stderr.contains(&missing),
        "{stderr}"
    );
}

#[test]
fn a_metrics_address_in_use_stops_start_up_with_the_field_named() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let (_dir, path) = check_dir(
        &format!("address = \"127.0.0.1:0\"\nmetrics_address = \"{addr}\""),
        None,
    );
    let mut child = Command::new(weir_bin())
        .args(["run", "-c"])
        .arg(&path)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("weir run kept running with its metrics address taken");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(&format!("admin.metrics_address: cannot listen on {addr}")),
        "{stderr}"
    );
}

/// Replaces the token file the way secret managers do: write aside, then
/// rename.
fn write_token(gw: &Gateway, token: &str) {
    let tmp = gw.dir().join("admin.token.tmp");
    std::fs::write(&tmp, token).unwrap();
    std::fs::rename(&tmp, gw.dir().join("admin.token")).unwrap();
}

#[tokio::test]
async fn a_reload_takes_a_new_token_and_refuses_a_broken_one() {
    let up = Upstream::echo("app").await;
    let gw = guarded(&[up.addr]).start();
    assert_eq!(
        admin_get(&gw, "/admin/config", Some(TOKEN)).await.status,
        200
    );

    write_token(&gw, &format!("{NEW_TOKEN}\n"));
    gw.sighup();
    assert!(
        eventually(Duration::from_secs(10), || async {
            admin_get(&gw, "/admin/config", Some(NEW_TOKEN))
                .await
                .status
                == 200
        })
        .await,
        "the new token never worked; logs:\n{}",
        gw.logs_for_failure()
    );
    assert_refused(&admin_get(&gw, "/admin/config", Some(TOKEN)).await, "old");

    // A broken token file refuses the reload; the token serving stays.
    write_token(&gw, "tiny");
    gw.sighup();
    let rejected = eventually(Duration::from_secs(10), || async {
        let v = admin_get(&gw, "/admin/config", Some(NEW_TOKEN))
            .await
            .json();
        v["last_attempt"]["outcome"] == "rejected"
    })
    .await;
    assert!(rejected, "the broken token file was not refused");
    let status = admin_get(&gw, "/admin/config", Some(NEW_TOKEN))
        .await
        .json();
    let errors = status["last_attempt"]["errors"].to_string();
    assert!(
        errors.contains("admin.token_file") && errors.contains("is 4 bytes long"),
        "{status}"
    );
    assert!(!errors.contains("tiny"), "{status}");
    assert_refused(&admin_get(&gw, "/admin/config", Some("tiny")).await, "tiny");
}

#[tokio::test]
async fn upstreams_view_shows_an_endpoint_its_checks_took_out() {
    let up = Upstream::echo("app").await;
    let closed = ClosedPort::new();
    let gw = Gateway::with_config(admin_config(
        &[up.addr, closed.addr()],
        "health_check = { path = \"/\", interval = \"100ms\", timeout = \"200ms\", unhealthy_threshold = 2 }",
        "address = \"127.0.0.1:0\"\ntoken_file = \"admin.token\"",
    ))
    .file("admin.token", TOKEN)
    .start();

    let endpoint = |v: &serde_json::Value, addr: SocketAddr| {
        v["upstreams"][0]["endpoints"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["address"] == addr.to_string())
            .cloned()
            .unwrap_or_else(|| panic!("no endpoint {addr} in {v}"))
    };
    let down = eventually(Duration::from_secs(10), || async {
        let v = admin_get(&gw, "/admin/upstreams", Some(TOKEN)).await.json();
        endpoint(&v, closed.addr())["health"] == "unhealthy"
    })
    .await;
    assert!(
        down,
        "the closed endpoint never showed unhealthy; logs:\n{}",
        gw.logs_for_failure()
    );
    let v = admin_get(&gw, "/admin/upstreams", Some(TOKEN)).await.json();
    let app = &v["upstreams"][0];
    assert_eq!(app["name"], "app", "{v}");
    assert_eq!(app["balancer"], "round_robin", "{v}");
    assert_eq!(app["protocol"], "http1", "{v}");
    assert_eq!(app["health_check"], true, "{v}");
    let dead = endpoint(&v, closed.addr());
    assert_eq!(dead["live"], false, "{v}");
    assert_eq!(dead["endpoint"], closed.addr().to_string(), "{v}");
    let alive = endpoint(&v, up.addr);
    assert_eq!(alive["health"], "healthy", "{v}");
    assert_eq!(alive["live"], true, "{v}");
    assert_eq!(alive["outstanding"], 0, "{v}");
    assert!(alive["ejected_until"].is_null(), "{v}");
    assert!(alive.get("latency_ewma_ms").is_some(), "{v}");
    // Half of the endpoints healthy is not panic mode (threshold 50 %).
    assert_eq!(app["panic"], false, "{v}");
}
