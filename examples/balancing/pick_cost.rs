//! Measures what balancing adds to one request, without any I/O: admit
//! against the pending limit, pick an endpoint, count it outstanding, time
//! the try and report the outcome (passive health and, for `least_request`, the
//! latency estimate), for each balancer, on one thread and on two threads
//! picking from the same upstream at once (as two workers do).
//!
//! ```text
//! cargo run --release -p weir --example pick-cost
//! ```

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use weir::config::Config;
use weir::upstream::{Outcome, Outstanding, Tried, Upstream};

const ITERS: u32 = 2_000_000;

fn upstream(balancer: &str) -> Arc<Upstream> {
    let extra = if balancer == "consistent_hash" {
        "hash_key = \"header:x-user\"\n"
    } else {
        ""
    };
    let text = format!(
        "[[listener]]\naddress = \"127.0.0.1:0\"\n[[upstream]]\nname = \"u\"\nbalancer = \"{balancer}\"\n{extra}endpoints = [\"10.0.0.1:80\", \"10.0.0.2:80\", {{ address = \"10.0.0.3:80\", weight = 3 }}, \"10.0.0.4:80\", \"10.0.0.5:80\"]\n"
    );
    let cfg = Config::parse(Path::new("bench.toml"), &text)
        .expect("valid")
        .upstreams
        .remove(0);
    let addrs: Vec<(usize, SocketAddr)> = (0..5)
        .map(|i| (i, format!("10.0.0.{}:80", i + 1).parse().unwrap()))
        .collect();
    Arc::new(Upstream::new(cfg, &addrs, 2))
}

fn run(up: &Upstream) -> Duration {
    let started = Instant::now();
    let tried = Tried::default();
    for i in 0..ITERS {
        let _pending = up.admit().expect("under the limit");
        let ep = up.pick(Some(u64::from(i)), &tried).expect("an endpoint");
        let out = Outstanding::new(ep);
        let try_started = up.try_started();
        up.record(out.endpoint(), Outcome::Status(200), try_started);
    }
    started.elapsed()
}

fn main() {
    println!("balancer          1 thread   2 threads (ns per request, each thread)");
    for b in ["round_robin", "random", "least_request", "consistent_hash"] {
        let up = upstream(b);
        let one = run(&up);
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let up = up.clone();
                std::thread::spawn(move || run(&up))
            })
            .collect();
        let two: Vec<Duration> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        let ns = |d: Duration| d.as_nanos() as f64 / f64::from(ITERS);
        println!(
            "{b:<16} {:>8.1}   {:>8.1} {:>8.1}",
            ns(one),
            ns(two[0]),
            ns(two[1])
        );
    }
}
