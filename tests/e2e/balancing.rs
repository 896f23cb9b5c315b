//! Balancing policies through the real gateway: weighted round robin and
//! random honour weights over real requests, consistent hashing keeps a
//! key on one endpoint (in two separate gateway processes alike) and moves
//! few keys when an endpoint is removed, and least_request steers traffic
//! away from a slow endpoint. Helpers shared by the other `balancing_*`
//! files live here too.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;

use crate::support::upstream::full;
use crate::support::*;

/// A gateway config with one upstream (`block` holds its keys after
/// `name`, endpoints included) and one catch-all route.
pub fn lb_config(block: &str) -> String {
    format!(
        "[server]\nworkers = 2\n\n[[listener]]\nname = \"main\"\naddress = \"127.0.0.1:0\"\n\n[[upstream]]\nname = \"app\"\nconnect_timeout = \"1s\"\n{block}\n\n[[route]]\nupstream = \"app\"\n"
    )
}

/// `endpoints = [...]` for these upstreams with these weights.
pub fn endpoints(ups: &[(SocketAddr, u32)]) -> String {
    let list: Vec<String> = ups
        .iter()
        .map(|(a, w)| format!("{{ address = \"{a}\", weight = {w} }}"))
        .collect();
    format!("endpoints = [{}]", list.join(", "))
}

/// An upstream that answers every request with `status` after `delay`,
/// recording each request's `x-request-id`.
pub struct Scripted {
    pub up: Upstream,
    pub ids: Arc<Mutex<Vec<String>>>,
}

impl Scripted {
    pub async fn start(status: u16, delay: Duration) -> Scripted {
        let ids = Arc::new(Mutex::new(Vec::new()));
        let record = ids.clone();
        let up = Upstream::start(move |req: Request<Incoming>| {
            let record = record.clone();
            async move {
                let id = req
                    .headers()
                    .get("x-request-id")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_owned();
                record.lock().unwrap().push(id);
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                Response::builder()
                    .status(status)
                    .body(full(format!("status {status}")))
                    .unwrap()
            }
        })
        .await;
        Scripted { up, ids }
    }

    pub fn hits(&self) -> usize {
        self.ids.lock().unwrap().len()
    }

    pub fn saw(&self, id: &str) -> usize {
        self.ids.lock().unwrap().iter().filter(|x| *x == id).count()
    }
}

/// Sends `n` GETs one after another and returns their statuses.
pub async fn get_n(client: &HttpClient, url: &str, n: usize) -> Vec<u16> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(get(client, url, &[]).await.status);
    }
    out
}

fn share(count: usize, of: usize) -> f64 {
    count as f64 / of as f64
}

#[tokio::test]
async fn weighted_round_robin_over_1000_requests() {
    let ups = [
        Upstream::echo("a").await,
        Upstream::echo("b").await,
        Upstream::echo("c").await,
    ];
    let weights = [1, 3, 6];
    let eps: Vec<(SocketAddr, u32)> = ups.iter().zip(weights).map(|(u, w)| (u.addr, w)).collect();
    let gw = Gateway::with_config(lb_config(&format!(
        "{}\nbalancer = \"round_robin\"",
        endpoints(&eps)
    )))
    .start();
    let client = client();
    let statuses = get_n(&client, &gw.url("/"), 1000).await;
    assert!(statuses.iter().all(|s| *s == 200));
    for (u, w) in ups.iter().zip(weights) {
        let got = share(u.count(), 1000);
        let want = f64::from(w) / 10.0;
        assert!(
            (got - want).abs() <= 0.05,
            "weight {w}: share {got}, want {want}"
        );
    }
}

#[tokio::test]
async fn weighted_random_over_2000_requests() {
    let ups = [Upstream::echo("a").await, Upstream::echo("b").await];
    let eps = [(ups[0].addr, 1), (ups[1].addr, 3)];
    let gw = Gateway::with_config(lb_config(&format!(
        "{}\nbalancer = \"random\"",
        endpoints(&eps)
    )))
    .start();
    let client = client();
    let statuses = get_n(&client, &gw.url("/"), 2000).await;
    assert!(statuses.iter().all(|s| *s == 200));
    let got = share(ups[1].count(), 2000);
    assert!((got - 0.75).abs() <= 0.05, "weight 3 of 4 got {got}");
}

/// The server name each of `keys` lands on, hashing on `x-user`.
async fn placement(gw: &Gateway, keys: &[String]) -> Vec<String> {
    let client = client();
    let mut out = Vec::with_capacity(keys.len());
    for k in keys {
        let r = get(&client, &gw.url("/"), &[("x-user", k)]).await;
        assert_eq!(r.status, 200);
        out.push(r.json()["server"].as_str().unwrap().to_owned());
    }
    out
}

#[tokio::test]
async fn consistent_hash_is_sticky_and_removal_remaps_few_keys() {
    let mut ups = Vec::new();
    for name in ["a", "b", "c", "d", "e"] {
        ups.push(Upstream::echo(name).await);
    }
    let hash = "balancer = \"consistent_hash\"\nhash_key = \"header:x-user\"";
    let all: Vec<(SocketAddr, u32)> = ups.iter().map(|u| (u.addr, 1)).collect();
    let five = Gateway::with_config(lb_config(&format!("{}\n{hash}", endpoints(&all)))).start();
    let keys: Vec<String> = (0..1000).map(|i| format!("user-{i}")).collect();

    let first = placement(&five, &keys).await;
    let again = placement(&five, &keys[..300]).await;
    assert_eq!(
        first[..300],
        again[..],
        "a key moved between two identical requests"
    );
    let mut per_server: HashMap<&str, usize> = HashMap::new();
    for s in &first {
        *per_server.entry(s).or_default() += 1;
    }
    assert_eq!(per_server.len(), 5, "{per_server:?}");

    // The same endpoints minus one, in another gateway process: keys that
    // stay must mostly stay where they were (and land where the first
    // gateway put them: the hash does not depend on the process).
    let four =
        Gateway::with_config(lb_config(&format!("{}\n{hash}", endpoints(&all[..4])))).start();
    let after = placement(&four, &keys).await;
    let moved = first.iter().zip(&after).filter(|(a, b)| a != b).count();
    eprintln!("consistent_hash: {moved} of 1000 keys moved when one of five endpoints went");
    // The ports decide the endpoint keys, so every run draws a new Maglev
    // table. Usually under 3 % of the kept keys move; when two endpoints'
    // skips collide (about 1 run in 7,000) up to a third can (see
    // `balancer::maglev`). Modulo hashing moves about 800 keys, 640 of
    // them needlessly: the bounds sit between.
    assert!(moved <= 550, "{moved} of 1000 keys moved");
    let moved_needlessly = first
        .iter()
        .zip(&after)
        .filter(|(a, b)| a.as_str() != "e" && a != b)
        .count();
    assert!(
        moved_needlessly <= 300,
        "{moved_needlessly} keys of kept endpoints moved"
    );
}

#[tokio::test]
async fn least_request_sends_most_traffic_away_from_a_slow_endpoint() {
    let fast1 = Scripted::start(200, Duration::ZERO).await;
    let fast2 = Scripted::start(200, Duration::ZERO).await;
    let slow = Scripted::start(200, Duration::from_millis(150)).await;
    let eps = [(fast1.up.addr, 1), (fast2.up.addr, 1), (slow.up.addr, 1)];
    let gw = Gateway::with_config(lb_config(&format!(
        "{}\nbalancer = \"least_request\"",
        endpoints(&eps)
    )))
    .start();
    let url = gw.url("/");
    let client = client();
    // Eight clients at once, 50 requests each.
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let client = client.clone();
        let url = url.clone();
        tasks.push(tokio::spawn(async move { get_n(&client, &url, 50).await }));
    }
    for t in tasks {
        assert!(t.await.unwrap().iter().all(|s| *s == 200));
    }
    let total = fast1.hits() + fast2.hits() + slow.hits();
    assert_eq!(total, 400);
    eprintln!(
        "least_request: fast {} and {}, slow {}",
        fast1.hits(),
        fast2.hits(),
        slow.hits()
    );
    // Round robin would give it a third (133).
    assert!(
        share(slow.hits(), total) < 0.10,
        "slow endpoint got {} of {total}",
        slow.hits()
    );
}

/// A plain request with a body, for tests that need a POST.
pub fn post(url: &str, body: &'static str) -> Request<Full<Bytes>> {
    Request::post(url)
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap()
}

pub const OK: u16 = StatusCode::OK.as_u16();
