//! Configuration reload: edits of the file (and SIGHUP) swap routes and
//! upstreams under load without a failed request; an invalid edit is
//! refused, reported in `/admin/config`, and the old configuration keeps
//! serving.

use std::time::Duration;

use crate::support::*;

const ADMIN: &str = "\n[admin]\naddress = \"127.0.0.1:0\"\n";

fn routed_to(name: &str, a: std::net::SocketAddr, b: std::net::SocketAddr) -> String {
    config(
        "",
        &[("a", a), ("b", b)],
        &format!("[[route]]\nname = \"all\"\nupstream = \"{name}\"\n{ADMIN}"),
    )
}

async fn admin_config(gw: &Gateway) -> serde_json::Value {
    let url = format!("http://{}/admin/config", gw.listener("admin"));
    get(&client(), &url, &[]).await.json()
}

/// Replaces the file the way deploy tools do: write aside, then rename.
fn replace(gw: &Gateway, text: &str) {
    let tmp = gw.dir().join("weir.toml.tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, gw.dir().join("weir.toml")).unwrap();
}

#[tokio::test]
async fn reloads_under_load_without_failed_requests() {
    let a = Upstream::echo("a").await;
    let b = Upstream::echo("b").await;
    let gw = Gateway::with_config(routed_to("a", a.addr, b.addr)).start();
    let url = format!("http://{}/x", gw.listener("main"));

    let load = Load::start(&url, 4);
    let server = |load: &Load| {
        load.last()
            .map(|r| r.json()["server"].as_str().unwrap().to_owned())
    };

    for round in 0..10 {
        let target = if round % 2 == 0 { "b" } else { "a" };
        replace(&gw, &routed_to(target, a.addr, b.addr));
        let seen = eventually(Duration::from_secs(10), || {
            let now = server(&load);
            async move { now.as_deref() == Some(target) }
        })
        .await;
        assert!(
            seen,
            "round {round}: traffic never moved to {target}; logs:\n{}",
            gw.logs_for_failure()
        );
    }
    load.finish_without_failures(&gw, 100).await;
    let status = admin_config(&gw).await;
    assert_eq!(status["last_attempt"]["outcome"], "applied", "{status}");
    assert_eq!(status["last_attempt"]["trigger"], "file-change", "{status}");
}

#[tokio::test]
async fn invalid_edit_is_refused_and_reported() {
    let a = Upstream::echo("a").await;
    let b = Upstream::echo("b").await;
    let gw = Gateway::with_config(routed_to("a", a.addr, b.addr)).start();
    let url = format!("http://{}/x", gw.listener("main"));
    let before = admin_config(&gw).await;

    let broken =
        routed_to("a", a.addr, b.addr).replace("name = \"all\"", "name = \"all\"\nupstrem = \"b\"");
    replace(&gw, &broken);
    let reported = eventually(Duration::from_secs(10), || async {
        admin_config(&gw).await["last_attempt"]["outcome"] == "rejected"
    })
    .await;
    assert!(reported, "the invalid edit was never reported");
    let status = admin_config(&gw).await;
    let errors = status["last_attempt"]["errors"].to_string();
    assert!(errors.contains("unknown field `upstrem`"), "{status}");
    assert!(errors.contains("weir.toml:"), "{status}");
    // The serving configuration did not change.
    assert_eq!(status["sha256"], before["sha256"]);
    let r = get(&client(), &url, &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["server"], "a");
    // The log line may still be on its way through the pipe.
    let logged = eventually(Duration::from_secs(5), || async {
        gw.logs()
            .iter()
            .any(|l| l.contains("configuration reload refused"))
    })
    .await;
    assert!(logged, "the refused reload was not logged");
}

#[tokio::test]
async fn sighup_reloads() {
    let a = Upstream::echo("a").await;
    let b = Upstream::echo("b").await;
    let gw = Gateway::with_config(routed_to("a", a.addr, b.addr)).start();
    gw.sighup();
    let reloaded = eventually(Duration::from_secs(10), || async {
        admin_config(&gw).await["last_attempt"]["trigger"] == "sighup"
    })
    .await;
    assert!(reloaded, "SIGHUP did not reload");
    assert_eq!(
        admin_config(&gw).await["last_attempt"]["outcome"],
        "applied"
    );
    let health = get(
        &client(),
        &format!("http://{}/healthz", gw.listener("admin")),
        &[],
    )
    .await;
    assert_eq!((health.status, health.text().as_str()), (200, "ok\n"));
}

/// Bytes the process has read so far (`rchar` of /proc/PID/io).
fn bytes_read(pid: u32) -> u64 {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).unwrap();
    io.lines()
        .find_map(|l| l.strip_prefix("rchar: "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap()
}

/// Reading the configuration file is not a change of it: an idle gateway
/// does not keep reading its own configuration (with a watcher that
/// reported opens and reads, each reload's read of the file announced the
/// next reload, forever).
#[tokio::test]
async fn an_idle_gateway_does_not_reread_its_configuration() {
    let a = Upstream::echo("a").await;
    let b = Upstream::echo("b").await;
    let gw = Gateway::with_config(routed_to("a", a.addr, b.addr)).start();
    let size = std::fs::metadata(gw.dir().join("weir.toml")).unwrap().len();
    // An edit is still picked up (and read) at once.
    replace(&gw, &routed_to("b", a.addr, b.addr));
    let reloaded = eventually(Duration::from_secs(10), || async {
        admin_config(&gw).await["last_attempt"]["outcome"] == "applied"
    })
    .await;
    assert!(reloaded, "the edit was not applied");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = bytes_read(gw.pid());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let read = bytes_read(gw.pid()) - before;
    assert!(
        read < size,
        "an idle gateway read {read} bytes in 1.5 s (its configuration is {size} bytes)"
    );
}
