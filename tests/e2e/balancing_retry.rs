//! Retries and limits through the real gateway: a retried request lands on
//! a different endpoint; a request with a body is not replayed on a
//! status; connect failures are retried; the retry budget stops retries
//! from multiplying an outage; and the pending-request and connection
//! limits answer 503 at once instead of queueing.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::Response;
use tokio::sync::Semaphore;

use crate::balancing::*;
use crate::support::upstream::{ClosedPort, full};
use crate::support::*;

#[tokio::test]
async fn a_retry_lands_on_a_different_endpoint() {
    let failing = Scripted::start(503, Duration::ZERO).await;
    let b = Scripted::start(200, Duration::ZERO).await;
    let c = Scripted::start(200, Duration::ZERO).await;
    let gw = Gateway::with_config(lb_config(&format!(
        "{}\nbalancer = \"consistent_hash\"\nhash_key = \"header:x-request-id\"\noutlier = {{ consecutive_5xx = 0 }}\nretry = {{ attempts = 2, statuses = [503], backoff = \"1ms\", max_backoff = \"5ms\", budget_ratio = 1.0 }}",
        endpoints(&[(failing.up.addr, 1), (b.up.addr, 1), (c.up.addr, 1)])
    )))
    .start();
    // (The budget allows a retry per request here: a third of these
    // requests need one, more than the default 20% budget would grant.)
    let client = client();
    for i in 0..60 {
        let id = format!("req-{i}");
        let r = get(&client, &gw.url("/"), &[("x-request-id", &id)]).await;
        assert_eq!(r.status, 200, "{id}: {}", r.text());
    }
    // Hashing pins each request to one endpoint, so only the exclusion of
    // tried endpoints can move a retry elsewhere.
    let failed_ids = failing.ids.lock().unwrap().clone();
    assert!(
        failed_ids.len() >= 3,
        "the failing endpoint saw {}",
        failed_ids.len()
    );
    for id in &failed_ids {
        assert_eq!(
            failing.saw(id),
            1,
            "{id} was retried on the endpoint that failed it"
        );
        assert_eq!(
            b.saw(id) + c.saw(id),
            1,
            "{id} was not retried exactly once elsewhere"
        );
    }

    // A request with a body cannot be replayed: its 503 goes to the client.
    let posted_before = failing.hits();
    let mut req = post(&gw.url("/"), "payload");
    req.headers_mut()
        .insert("x-request-id", failed_ids[0].parse().unwrap());
    let r = send(&client, req).await;
    assert_eq!(
        r.status, 503,
        "a POST hashed to the failing endpoint was retried"
    );
    assert_eq!(failing.hits(), posted_before + 1);
}

#[tokio::test]
async fn connect_failures_are_retried_even_with_a_body() {
    let dead = ClosedPort::new();
    let live = Upstream::echo("live").await;
    let gw = Gateway::with_config(lb_config(&format!(
        "{}\noutlier = {{ consecutive_connect_failures = 0 }}",
        endpoints(&[(dead.addr(), 1), (live.addr, 1)])
    )))
    .start();
    let client = client();
    for _ in 0..10 {
        let r = send(&client, post(&gw.url("/"), "hello")).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["body_bytes"], 5);
    }
    assert_eq!(live.count(), 10);
}

#[tokio::test]
async fn the_budget_stops_retries_when_every_endpoint_fails() {
    let ups = [
        Scripted::start(503, Duration::ZERO).await,
        Scripted::start(503, Duration::ZERO).await,
        Scripted::start(503, Duration::ZERO).await,
    ];
    let eps: Vec<_> = ups.iter().map(|u| (u.up.addr, 1)).collect();
    let gw = Gateway::with_config(lb_config(&format!(
        "{}\noutlier = {{ consecutive_5xx = 0 }}\nretry = {{ attempts = 2, statuses = [503], backoff = \"1ms\", max_backoff = \"1ms\", budget_ratio = 0.1, budget_min_per_second = 0 }}",
        endpoints(&eps)
    )))
    .start();
    let client = client();
    let n = 200;
    let statuses = get_n(&client, &gw.url("/"), n).await;
    assert!(statuses.iter().all(|s| *s == 503));
    let tries: usize = ups.iter().map(Scripted::hits).sum();
    eprintln!("retry budget: {tries} upstream tries for {n} requests");
    // Without a budget: 3 tries per request (600). The budget allows 10%
    // of the requests in a window of two seconds, so at most 2 x 10%.
    assert!(tries > n, "no retry happened at all ({tries})");
    assert!(tries <= n + n / 5 + 2, "{tries} tries for {n} requests");
}

/// An upstream whose answers wait for permits the test hands out; the
/// counter says how many requests have arrived.
async fn gated(gate: Arc<Semaphore>) -> (Upstream, Arc<AtomicUsize>) {
    let arrived = Arc::new(AtomicUsize::new(0));
    let counter = arrived.clone();
    let up = Upstream::start(move |_req| {
        let gate = gate.clone();
        counter.fetch_add(1, Ordering::SeqCst);
        async move {
            gate.acquire().await.unwrap().forget();
            Response::new(full("released"))
        }
    })
    .await;
    (up, arrived)
}

/// Starts `n` requests that the gated upstream holds, and waits until
/// it has them all.
async fn hold(url: &str, n: usize, arrived: &AtomicUsize) -> Vec<tokio::task::JoinHandle<u16>> {
    let held = (0..n)
        .map(|_| {
            let url = url.to_owned();
            tokio::spawn(async move { get(&client(), &url, &[]).await.status })
        })
        .collect();
    assert!(
        eventually(Duration::from_secs(10), || async {
            arrived.load(Ordering::SeqCst) == n
        })
        .await
    );
    held
}

#[tokio::test]
async fn the_pending_limit_answers_503_at_once() {
    let gate = Arc::new(Semaphore::new(0));
    let (up, arrived) = gated(gate.clone()).await;
    let gw = Gateway::with_config(lb_config(&format!(
        "{}\nmax_pending_requests = 2",
        endpoints(&[(up.addr, 1)])
    )))
    .start();
    let url = gw.url("/");
    let held = hold(&url, 2, &arrived).await;
    // The upstream holds both: an answer to a third request while they
    // wait can only come from the gateway refusing it.
    let r = get(&client(), &url, &[]).await;
    assert_eq!(r.status, 503);
    assert!(r.text().contains("pending request limit"), "{}", r.text());
    assert_eq!(arrived.load(Ordering::SeqCst), 2);
    gate.add_permits(2);
    for h in held {
        assert_eq!(h.await.unwrap(), 200);
    }
    // Below the limit again: served.
    gate.add_permits(1);
    assert_eq!(get(&client(), &url, &[]).await.status, 200);
}

#[tokio::test]
async fn the_connection_limit_answers_503_at_once() {
    let gate = Arc::new(Semaphore::new(0));
    let (up, arrived) = gated(gate.clone()).await;
    let gw = Gateway::with_config(lb_config(&format!(
        "{}\nmax_connections = 1",
        endpoints(&[(up.addr, 1)])
    )))
    .start();
    let url = gw.url("/");
    let held = hold(&url, 1, &arrived).await;
    // Its one connection is busy: a second request would need another.
    let r = get(&client(), &url, &[]).await;
    assert_eq!(r.status, 503);
    assert!(r.text().contains("connection limit"), "{}", r.text());
    gate.add_permits(1);
    assert_eq!(held.into_iter().next().unwrap().await.unwrap(), 200);
}

#[tokio::test]
async fn a_route_can_turn_retries_off() {
    let dead = ClosedPort::new();
    let live = Upstream::echo("live").await;
    let config = format!(
        "[server]\nworkers = 1\n\n[[listener]]\nname = \"main\"\naddress = \"127.0.0.1:0\"\n\n[[upstream]]\nname = \"app\"\n{}\noutlier = {{ consecutive_connect_failures = 0 }}\n\n[[route]]\nname = \"no-retry\"\nupstream = \"app\"\npath_prefix = \"/once\"\nretry_attempts = 0\n\n[[route]]\nupstream = \"app\"\n",
        endpoints(&[(dead.addr(), 1), (live.addr, 1)])
    );
    let gw = Gateway::with_config(config).start();
    let client = client();
    // Round robin alternates between the dead and the live endpoint.
    let retried = get_n(&client, &gw.url("/"), 10).await;
    assert!(retried.iter().all(|s| *s == 200), "{retried:?}");
    let once = get_n(&client, &gw.url("/once"), 10).await;
    assert_eq!(once.iter().filter(|s| **s == 502).count(), 5, "{once:?}");
    assert_eq!(once.iter().filter(|s| **s == 200).count(), 5, "{once:?}");
}
