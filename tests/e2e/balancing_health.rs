//! Endpoint health through the real gateway: active checks take a killed
//! endpoint out (with retries off, so only the checks can be what keeps
//! clients error-free) and bring it back once it is restarted on its
//! port; consecutive 5xx eject an endpoint passively; and stopping one of
//! two endpoints under steady load costs clients nothing. Also the check
//! of [`ClosedPort`], the held port these tests stop an endpoint on.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use crate::balancing::*;
use crate::support::upstream::ClosedPort;
use crate::support::*;

fn logged(gw: &Gateway, message: &str) -> bool {
    gw.logs().iter().any(|l| l.contains(message))
}

#[tokio::test]
async fn killed_endpoint_is_ejected_by_active_checks_and_returns_when_restarted() {
    let a = Upstream::echo("a").await;
    // b's port stays held while b is down, so that no other bind to port 0
    // takes it before the restart (the checker would probe that server).
    let (listener, b_port) = ClosedPort::beside_listener();
    let b = Upstream::echo_on(listener, "b").await;
    let gw = Gateway::with_config(lb_config(&format!(
        "{}\nhealth_check = {{ path = \"/healthz\", interval = \"100ms\", timeout = \"200ms\", healthy_threshold = 2, unhealthy_threshold = 2 }}\noutlier = {{ consecutive_5xx = 0, consecutive_connect_failures = 0 }}\nretry = {{ attempts = 0 }}",
        endpoints(&[(a.addr, 1), (b.addr, 1)])
    )))
    .start();
    let client = client();
    assert!(
        get_n(&client, &gw.url("/"), 10)
            .await
            .iter()
            .all(|s| *s == OK)
    );
    // Round robin alternates on each worker: b gets half, give or take
    // one per worker the client's connections landed on.
    assert!((4..=6).contains(&served(&b)), "b served {}", served(&b));
    // The checker probes `path`.
    assert!(eventually(Duration::from_secs(5), || async { probed(&b) > 0 }).await);

    drop(b);
    assert!(
        eventually(Duration::from_secs(10), || async {
            logged(&gw, "endpoint failed its health checks")
        })
        .await,
        "the dead endpoint was never marked down"
    );
    // Retries are off: a single request sent to the dead endpoint would
    // be a 502. Every one succeeds, on the live endpoint.
    let before = served(&a);
    assert!(
        get_n(&client, &gw.url("/"), 50)
            .await
            .iter()
            .all(|s| *s == OK)
    );
    assert_eq!(served(&a), before + 50);

    // Restart on the same port: what the checker probes is the address.
    let listener = b_port.listen();
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = seen.clone();
    let _b2 = Upstream::start_on(
        listener,
        move |req: http::Request<hyper::body::Incoming>| {
            if req.uri().path() == "/" {
                counter.fetch_add(1, Ordering::Relaxed);
            }
            async { http::Response::new(crate::support::upstream::full("b again")) }
        },
    )
    .await;
    assert!(
        eventually(Duration::from_secs(10), || async {
            logged(&gw, "endpoint healthy again")
        })
        .await,
        "the restarted endpoint never came back"
    );
    let statuses = get_n(&client, &gw.url("/"), 20).await;
    assert!(statuses.iter().all(|s| *s == OK));
    let back = seen.load(Ordering::Relaxed);
    assert!(
        (9..=11).contains(&back),
        "traffic did not return evenly: {back} of 20"
    );
}

/// Requests an echo upstream served on `/` (health probes excluded).
fn served(u: &Upstream) -> usize {
    u.seen
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.target == "/")
        .count()
}

fn probed(u: &Upstream) -> usize {
    u.seen
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.target == "/healthz")
        .count()
}

#[tokio::test]
async fn consecutive_5xx_eject_an_endpoint() {
    let bad = Scripted::start(500, Duration::ZERO).await;
    let good = Upstream::echo("good").await;
    let gw = Gateway::with_config(lb_config(&format!(
        "{}\noutlier = {{ consecutive_5xx = 3, base_ejection = \"1m\" }}\nretry = {{ attempts = 0 }}",
        endpoints(&[(bad.up.addr, 1), (good.addr, 1)])
    )))
    .start();
    let client = client();
    let statuses = get_n(&client, &gw.url("/"), 40).await;
    // Round robin alternates; the third 500 ejects the endpoint at once.
    assert_eq!(bad.hits(), 3);
    assert_eq!(statuses.iter().filter(|s| **s == 500).count(), 3);
    assert_eq!(good.count(), 37);
    // The log line may still be on its way through the pipe.
    assert!(
        eventually(Duration::from_secs(5), || async {
            logged(&gw, "endpoint ejected")
        })
        .await,
        "the ejection was not logged"
    );
}

#[tokio::test]
async fn stopping_one_of_two_endpoints_under_load_costs_clients_nothing() {
    let a = Upstream::echo("a").await;
    // Held until the end, so that once b is stopped no other server can
    // come to listen on its port and answer in its place.
    let (listener, _b_port) = ClosedPort::beside_listener();
    let b = Upstream::echo_on(listener, "b").await;
    let gw = Gateway::with_config(lb_config(&endpoints(&[(a.addr, 1), (b.addr, 1)]))).start();
    let url = gw.url("/");
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (stop, errors, done, url) = (stop.clone(), errors.clone(), done.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            let client = client();
            while !stop.load(Ordering::Relaxed) {
                let req = http::Request::get(&url)
                    .body(http_body_util::Full::new(bytes::Bytes::new()))
                    .unwrap();
                match tokio::time::timeout(Duration::from_secs(10), client.request(req)).await {
                    Ok(Ok(r)) if r.status() == 200 => {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    assert!(eventually(Duration::from_secs(10), || async { b.count() >= 100 }).await);
    drop(b);
    let at_stop = done.load(Ordering::Relaxed);
    assert!(
        eventually(Duration::from_secs(20), || async {
            done.load(Ordering::Relaxed) >= at_stop + 500
        })
        .await
    );
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(errors.load(Ordering::Relaxed), 0, "clients saw errors");
    assert!(a.count() >= 500);
}

/// An upstream whose health endpoint fails while it serves traffic fine.
async fn sick_but_serving() -> Upstream {
    Upstream::start(|req: http::Request<hyper::body::Incoming>| async move {
        let status = if req.uri().path() == "/healthz" {
            500
        } else {
            200
        };
        http::Response::builder()
            .status(status)
            .body(crate::support::upstream::full("x"))
            .unwrap()
    })
    .await
}

#[tokio::test]
async fn panic_mode_serves_from_all_when_too_few_are_healthy() {
    for (threshold, want) in [(50, OK), (0, 503)] {
        let (a, b) = (sick_but_serving().await, sick_but_serving().await);
        let gw = Gateway::with_config(lb_config(&format!(
            "{}\npanic_threshold = {threshold}\nhealth_check = {{ path = \"/healthz\", interval = \"100ms\", unhealthy_threshold = 1 }}",
            endpoints(&[(a.addr, 1), (b.addr, 1)])
        )))
        .start();
        assert!(
            eventually(Duration::from_secs(10), || async {
                gw.logs()
                    .iter()
                    .filter(|l| l.contains("endpoint failed its health checks"))
                    .count()
                    == 2
            })
            .await
        );
        let client = client();
        let r = get(&client, &gw.url("/"), &[]).await;
        assert_eq!(
            r.status,
            want,
            "panic_threshold = {threshold}: {}",
            r.text()
        );
        if want == 503 {
            assert!(r.text().contains("no healthy upstream endpoint"));
        } else {
            assert!(logged(&gw, "panic mode"));
        }
    }
}

/// What the tests that use [`ClosedPort`] rely on: connections to a held
/// port are refused, and a spare port listens again on request. (Here, not
/// in the shared harness, so that it runs once, not in every test binary.)
#[tokio::test]
async fn a_closed_port_refuses_connections_until_it_listens() {
    use std::io::ErrorKind::ConnectionRefused;
    use tokio::net::TcpStream;

    let closed = ClosedPort::new();
    let refused = TcpStream::connect(closed.addr()).await.unwrap_err();
    assert_eq!(refused.kind(), ConnectionRefused, "{refused}");

    let (listener, spare) = ClosedPort::beside_listener();
    let addr = spare.addr();
    let _open = TcpStream::connect(addr).await.unwrap();
    drop(listener);
    let refused = TcpStream::connect(addr).await.unwrap_err();
    assert_eq!(refused.kind(), ConnectionRefused, "{refused}");
    let again = spare.listen();
    let _client = TcpStream::connect(addr).await.unwrap();
    let (_server, _) = again.accept().await.unwrap();
}
