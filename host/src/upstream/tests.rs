use std::collections::HashMap;

use proptest::prelude::*;

use super::*;
use crate::config::Config;

fn upstream(balancer: &str, weights: &[u32], extra: &str) -> Upstream {
    let eps: Vec<String> = weights
        .iter()
        .enumerate()
        .map(|(i, w)| format!("{{ address = \"127.0.0.{}:80\", weight = {w} }}", i + 1))
        .collect();
    let text = format!(
        "[[listener]]\naddress = \"127.0.0.1:0\"\n[[upstream]]\nname = \"u\"\nendpoints = [{}]\nbalancer = \"{balancer}\"\n{extra}\n",
        eps.join(", ")
    );
    let c = Config::parse(std::path::Path::new("t.toml"), &text).unwrap();
    let cfg = c.upstreams[0].clone();
    let addrs: Vec<(usize, SocketAddr)> = cfg
        .endpoints
        .iter()
        .enumerate()
        .map(|(i, e)| (i, format!("{}:{}", e.host, e.port).parse().unwrap()))
        .collect();
    Upstream::new(cfg, &addrs, 1)
}

fn counts(u: &Upstream, n: usize, hash: impl Fn(usize) -> Option<u64>) -> HashMap<u32, usize> {
    let mut m = HashMap::new();
    for i in 0..n {
        let ep = u.pick(hash(i), &Tried::default()).unwrap();
        *m.entry(
            ep.addr
                .ip()
                .to_string()
                .rsplit('.')
                .next()
                .unwrap()
                .parse()
                .unwrap(),
        )
        .or_default() += 1;
    }
    m
}

fn eject(u: &Upstream, which: usize) {
    let ep = &u.endpoints()[which];
    for _ in 0..u.config.outlier.consecutive_connect_failures {
        u.record(ep, Outcome::ConnectFailed, u.try_started());
    }
}

#[test]
fn round_robin_skips_ejected_and_keeps_weights_among_the_rest() {
    let u = upstream("round_robin", &[1, 2, 3], "panic_threshold = 0");
    eject(&u, 0);
    let c = counts(&u, 500, |_| None);
    assert_eq!(c.get(&1), None);
    assert_eq!(c[&2], 200);
    assert_eq!(c[&3], 300);
}

#[test]
fn panic_mode_uses_everyone() {
    let u = upstream("round_robin", &[1, 1, 1, 1], "panic_threshold = 60");
    eject(&u, 0);
    assert!(!u.in_panic());
    eject(&u, 1);
    assert!(u.in_panic());
    assert_eq!(counts(&u, 400, |_| None).len(), 4);
}

#[test]
fn everything_ejected_without_panic_means_no_endpoint() {
    let u = upstream("least_request", &[1], "panic_threshold = 0");
    eject(&u, 0);
    assert!(u.pick(None, &Tried::default()).is_none());
}

#[test]
fn retries_go_elsewhere_and_run_out() {
    for b in ["round_robin", "random", "least_request", "consistent_hash"] {
        let u = upstream(b, &[1, 5, 1], "");
        let mut tried = Tried::default();
        let mut seen = Vec::new();
        while let Some(ep) = u.pick(Some(42), &tried) {
            assert!(!seen.contains(&ep.id), "{b} picked {} twice", ep.addr);
            seen.push(ep.id);
            tried.push(ep.id);
        }
        assert_eq!(seen.len(), 3, "{b}");
    }
}

#[test]
fn hash_key_from_cookie_and_header() {
    let u = upstream("consistent_hash", &[1, 1], "hash_key = \"cookie:sid\"");
    let peer: SocketAddr = "10.0.0.1:5".parse().unwrap();
    let req = |c: &str| {
        http::Request::get("/")
            .header("cookie", c)
            .body(())
            .unwrap()
            .into_parts()
            .0
    };
    let a = u.hash_of(&req("a=1; sid=xyz"), peer);
    assert_eq!(a, Some(stable_hash(b"xyz")));
    assert_eq!(u.hash_of(&req("sid=xyz;b=2"), peer), a);
    assert_eq!(u.hash_of(&req("sidx=xyz"), peer), None);
    let u = upstream("consistent_hash", &[1, 1], "hash_key = \"header:x-user\"");
    let parts = http::Request::get("/")
        .header("x-user", "ann")
        .body(())
        .unwrap()
        .into_parts()
        .0;
    assert_eq!(u.hash_of(&parts, peer), Some(stable_hash(b"ann")));
}

#[test]
fn pending_limit_refuses_at_once() {
    let u = upstream("round_robin", &[1], "max_pending_requests = 2");
    let a = u.admit().unwrap();
    let _b = u.admit().unwrap();
    assert_eq!(u.admit().unwrap_err().limit, 2);
    drop(a);
    assert!(u.admit().is_ok());
}

proptest! {
    #[test]
    fn weighted_picks_within_tolerance(weights in prop::collection::vec(1u32..=10, 1..8), random in any::<bool>()) {
        let u = upstream(if random { "random" } else { "round_robin" }, &weights, "");
        let total: u32 = weights.iter().sum();
        let n = 4000;
        let c = counts(&u, n, |_| None);
        for (i, w) in weights.iter().enumerate() {
            let got = c.get(&(i as u32 + 1)).copied().unwrap_or(0) as f64 / n as f64;
            let want = f64::from(*w) / f64::from(total);
            // Round robin is exact over whole rotations; random gets
            // binomial noise: 0.06 is 7.6 sigma at worst (p = 0.5,
            // n = 4000), far below 1e-9 per run of all cases.
            let tol = if random { 0.06 } else { 0.01 };
            prop_assert!((got - want).abs() <= tol, "endpoint {i}: {got} vs {want}");
        }
    }

    #[test]
    fn same_key_same_endpoint(keys in prop::collection::vec(any::<u64>(), 1..50), n in 1usize..8) {
        let u = upstream("consistent_hash", &vec![1; n], "");
        for k in keys {
            let a = u.pick(Some(k), &Tried::default()).unwrap();
            let b = u.pick(Some(k), &Tried::default()).unwrap();
            prop_assert_eq!(a.id, b.id);
        }
    }

    #[test]
    fn single_and_empty_sets_do_not_panic(b in prop::sample::select(vec!["round_robin", "random", "least_request", "consistent_hash"]), key in any::<u64>()) {
        let u = upstream(b, &[1], "panic_threshold = 0");
        let one = u.pick(Some(key), &Tried::default()).unwrap();
        let mut tried = Tried::default();
        tried.push(one.id);
        prop_assert!(u.pick(Some(key), &tried).is_none());
        eject(&u, 0);
        prop_assert!(u.pick(Some(key), &Tried::default()).is_none());
    }
}

/// An upstream of its own name (the metrics registry is process-wide, and
/// other tests' upstreams are all named `u`).
fn named(name: &str, addrs: &[SocketAddr]) -> Upstream {
    let eps: Vec<String> = addrs.iter().map(|a| format!("\"{a}\"")).collect();
    let text = format!(
        "[[listener]]\naddress = \"127.0.0.1:0\"\n[[upstream]]\nname = \"{name}\"\nendpoints = [{}]\n",
        eps.join(", ")
    );
    let c = Config::parse(std::path::Path::new("t.toml"), &text).unwrap();
    let indexed: Vec<(usize, SocketAddr)> = addrs.iter().copied().enumerate().collect();
    Upstream::new(c.upstreams[0].clone(), &indexed, 1)
}

#[test]
fn an_ejection_is_counted_and_shown_as_the_endpoints_state() {
    use crate::metrics::upstream::UpstreamProbe;
    let a: SocketAddr = "127.0.0.1:80".parse().unwrap();
    let b: SocketAddr = "127.0.0.2:80".parse().unwrap();
    let u = named("metrics-unit-ejection", &[a, b]);
    eject(&u, 0);
    let seen = u.endpoints();
    assert_eq!(seen[0].stats().ejections(), 1);
    assert_eq!(seen[1].stats().ejections(), 0);
    let now = UpstreamProbe::endpoints(&u);
    assert_eq!(now[0].address, "127.0.0.1:80");
    assert!(now[0].ejected && !now[0].healthy);
    assert!(!now[1].ejected && now[1].healthy);
    assert!(!u.in_panic());
    // Failures while ejected do not count another ejection.
    u.record(&seen[0], Outcome::ConnectFailed, u.try_started());
    assert_eq!(seen[0].stats().ejections(), 1);
}

#[tokio::test]
async fn the_pool_counts_new_connections_and_shows_open_and_idle_ones() {
    use crate::metrics::upstream::UpstreamProbe;
    let server = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = server.local_addr().unwrap();
    // Accepts and keeps the connections open; never answers (none is sent).
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((s, _)) = server.accept().await {
            open.push(s);
        }
    });
    let u = named("metrics-unit-pool", &[addr]);
    let ep = u.endpoints()[0].clone();
    let gauges = |u: &Upstream| {
        let e = &UpstreamProbe::endpoints(u)[0];
        (e.open, e.idle)
    };
    let timeout = Duration::from_secs(5);
    let Checkout::H1(conn) = ep
        .checkout(timeout, std::time::Instant::now())
        .await
        .unwrap()
    else {
        panic!("an HTTP/1.1 upstream gives HTTP/1.1 connections")
    };
    assert_eq!(ep.stats().connections_opened(), 1);
    assert_eq!(gauges(&u), (1, 0));
    ep.give_back(conn);
    assert_eq!(gauges(&u), (1, 1));
    // Reused, not opened again.
    let Checkout::H1(conn) = ep
        .checkout(timeout, std::time::Instant::now())
        .await
        .unwrap()
    else {
        panic!("an HTTP/1.1 upstream gives HTTP/1.1 connections")
    };
    assert_eq!(ep.stats().connections_opened(), 1);
    assert_eq!(gauges(&u), (1, 0));
    drop(conn);
    assert_eq!(gauges(&u), (0, 0));
    held.abort();
}
