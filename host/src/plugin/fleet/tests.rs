use std::time::{Duration, Instant};

use super::view::{Push, Read, View};
use super::*;

/// The time constant of the fleet's averaged takes, in these tests.
const AVG: Duration = Duration::from_secs(1);

fn take(view: &View, key: &str, nodes: u32, now: Instant) -> Bucket {
    view.take(key, (30, 10), 1, nodes, true, now).unwrap()
}

#[test]
fn a_sync_share_is_the_bucket_over_the_nodes_and_refills_at_their_share() {
    let view = View::default();
    let t0 = Instant::now();
    // 3 nodes: a share of 30 / 3 = 10 tokens, refilled at 10 / 3 per second.
    let allowed = (0..15).filter(|_| take(&view, "k", 3, t0).allowed).count();
    assert_eq!(allowed, 10);
    let denied = take(&view, "k", 3, t0);
    assert!(!denied.allowed);
    // One token at 10/3 per second: 300 ms.
    assert_eq!(denied.retry_after_ms, 300);
    assert!(!take(&view, "k", 3, t0 + Duration::from_millis(290)).allowed);
    assert!(take(&view, "k", 3, t0 + Duration::from_millis(310)).allowed);
}

#[test]
fn a_round_reports_what_was_taken_and_settles_on_the_fleets_value() {
    let view = View::default();
    let t0 = Instant::now();
    for _ in 0..4 {
        assert!(take(&view, "k", 2, t0).allowed);
    }
    let sent = view.collect(Duration::from_millis(100), t0);
    assert_eq!(
        sent,
        vec![(
            "k".to_owned(),
            Push::Bucket {
                capacity: 30,
                refill: 10,
                taken: 4
            }
        )]
    );
    // Taken while the round is under way: not in what Redis reads back.
    assert!(take(&view, "k", 2, t0).allowed);
    // The fleet's bucket holds 6 after every node's takes, half of them
    // this node's: its share is 6 / 2 = 3, less the take since the round
    // was sent.
    view.settle(
        "k",
        Read::Bucket {
            tokens: 6.0,
            takes: 8.0,
        },
        (2, AVG),
        t0,
    );
    let allowed = (0..5).filter(|_| take(&view, "k", 2, t0).allowed).count();
    assert_eq!(allowed, 2);
    // The next round reports the take made during the last one and these.
    let sent = view.collect(Duration::from_millis(100), t0);
    assert!(
        matches!(sent[0].1, Push::Bucket { taken: 3, .. }),
        "{sent:?}"
    );
}

#[test]
fn a_gateway_holds_its_part_of_the_fleets_takes_and_a_share_again_when_redis_is_down() {
    let view = View::default();
    let t0 = Instant::now();
    // Three gateways, 30 tokens at 10/s: a share of 10 at first.
    let first = (0..40).filter(|_| take(&view, "k", 3, t0).allowed).count();
    assert_eq!(first, 10);
    view.collect(Duration::from_millis(100), t0);
    // The fleet's takes are all this gateway's: the bucket is its alone.
    view.settle(
        "k",
        Read::Bucket {
            tokens: 20.0,
            takes: 10.0,
        },
        (3, AVG),
        t0,
    );
    let alone = (0..40).filter(|_| take(&view, "k", 3, t0).allowed).count();
    assert_eq!(alone, 20);
    // A second later the others took 50 between them: averaged, this
    // gateway's 20 + 10 e^-1 against the fleet's 20 + 10 e^-1 + 50 is
    // less than a third, so its part is a third.
    let t1 = t0 + AVG;
    view.collect(Duration::from_millis(100), t1);
    let fleet = 20.0 + 10.0 * (-1f64).exp() + 50.0;
    view.settle(
        "k",
        Read::Bucket {
            tokens: 9.0,
            takes: fleet,
        },
        (3, AVG),
        t1,
    );
    let shared = (0..40).filter(|_| take(&view, "k", 3, t1).allowed).count();
    assert_eq!(shared, 3);
    // Redis down: a third of the refill, as every gateway's.
    let t2 = t1 + Duration::from_millis(900);
    let down = (0..40)
        .filter(|_| view.take("k", (30, 10), 1, 3, false, t2).unwrap().allowed)
        .count();
    assert_eq!(down, 3);
}

#[test]
fn a_failed_round_reports_its_takes_again_and_a_debt_stops_takes() {
    let view = View::default();
    let t0 = Instant::now();
    assert!(take(&view, "k", 1, t0).allowed);
    view.collect(Duration::from_millis(100), t0);
    view.unsend("k");
    assert!(take(&view, "k", 1, t0).allowed);
    let sent = view.collect(Duration::from_millis(100), t0);
    assert!(
        matches!(sent[0].1, Push::Bucket { taken: 2, .. }),
        "{sent:?}"
    );
    // Other nodes overshot: the fleet is 5 tokens in debt, so this node
    // admits nothing until the refill has paid it back (0.5 s at 10/s).
    view.settle(
        "k",
        Read::Bucket {
            tokens: -5.0,
            takes: 2.0,
        },
        (1, AVG),
        t0,
    );
    assert!(!take(&view, "k", 1, t0 + Duration::from_millis(450)).allowed);
    assert!(take(&view, "k", 1, t0 + Duration::from_millis(610)).allowed);
}

#[test]
fn keys_idle_for_long_leave_the_view_and_recent_ones_are_read_back() {
    let view = View::default();
    let t0 = Instant::now();
    take(&view, "old", 1, t0);
    view.collect(Duration::from_millis(100), t0);
    view.settle(
        "old",
        Read::Bucket {
            tokens: 29.0,
            takes: 1.0,
        },
        (1, AVG),
        t0,
    );
    // Used 150 ms ago, nothing taken since: still read back (2 intervals).
    assert_eq!(
        view.collect(Duration::from_millis(100), t0 + Duration::from_millis(150))
            .len(),
        1
    );
    view.settle(
        "old",
        Read::Bucket {
            tokens: 29.0,
            takes: 1.0,
        },
        (1, AVG),
        t0,
    );
    // Idle past 2 intervals: kept, not read; past 10 s: dropped.
    assert!(
        view.collect(Duration::from_millis(100), t0 + Duration::from_secs(1))
            .is_empty()
    );
    assert_eq!(view.len(), 1);
    view.collect(Duration::from_millis(100), t0 + Duration::from_secs(11));
    assert_eq!(view.len(), 0);
}

#[test]
fn a_sync_counter_counts_its_own_increments_for_every_node_until_a_round() {
    let view = View::default();
    let t0 = Instant::now();
    let ttl = Some(60_000);
    assert_eq!(view.increment("c", 1, ttl, 3, t0).unwrap(), 3);
    assert_eq!(view.increment("c", 1, ttl, 3, t0).unwrap(), 6);
    let sent = view.collect(Duration::from_millis(100), t0);
    assert_eq!(
        sent[0].1,
        Push::Counter {
            delta: 2,
            ttl_ms: ttl
        }
    );
    // The fleet counted 10 in all; the window ends in 1 s.
    view.settle("c", Read::Counter(10, Some(1000)), (3, AVG), t0);
    assert_eq!(view.increment("c", 1, ttl, 3, t0).unwrap(), 13);
    // Past the window: counting starts again (this node's increment since
    // the round, for every node).
    assert_eq!(
        view.increment("c", 1, ttl, 3, t0 + Duration::from_millis(1001))
            .unwrap(),
        6
    );
    assert!(matches!(
        view.take("c", (1, 1), 1, 1, true, t0),
        Err(FleetError::Invalid(m)) if m.contains("holds a counter")
    ));
}

#[test]
fn the_local_fallback_divides_a_bucket_and_multiplies_a_counter() {
    let ns = Namespace::default();
    let op = Op::Take {
        key: "k".into(),
        capacity: 10,
        refill_per_second: 0,
        cost: 1,
    };
    // 10 over 3 nodes, rounded up: 4.
    let allowed = (0..10)
        .filter(|_| matches!(local(&ns, &op, 3), Ok(Answer::Bucket(b)) if b.allowed))
        .count();
    assert_eq!(allowed, 4);
    let count = Op::Increment {
        key: "c".into(),
        delta: 1,
        ttl_ms: None,
    };
    assert_eq!(local(&ns, &count, 3).unwrap(), Answer::Counter(3));
    assert_eq!(local(&ns, &count, 3).unwrap(), Answer::Counter(6));
    // A bucket smaller than the nodes still admits one take per node.
    let small = Op::Take {
        key: "s".into(),
        capacity: 1,
        refill_per_second: 0,
        cost: 1,
    };
    assert!(matches!(local(&ns, &small, 3), Ok(Answer::Bucket(b)) if b.allowed));
}

#[test]
fn operations_are_checked_before_any_mode() {
    let policy = FleetPolicy::new(
        "p".into(),
        FleetMode::Local,
        FleetFallback::Local,
        Arc::default(),
    );
    let long = "k".repeat(MAX_KEY_BYTES + 1);
    for (op, tag, text) in [
        (
            Op::Increment {
                key: String::new(),
                delta: 1,
                ttl_ms: None,
            },
            "",
            "fleet keys are 1 to 256 bytes",
        ),
        (
            Op::Increment {
                key: long,
                delta: 1,
                ttl_ms: None,
            },
            "",
            "fleet keys are 1 to 256 bytes",
        ),
        (
            Op::Take {
                key: "k".into(),
                capacity: 0,
                refill_per_second: 1,
                cost: 1,
            },
            "",
            "bucket capacity must be 1 to",
        ),
        (
            Op::Take {
                key: "k".into(),
                capacity: 1,
                refill_per_second: MAX_BUCKET + 1,
                cost: 1,
            },
            "",
            "refill at most",
        ),
    ] {
        let e = policy.start(true, 0, op, tag.into()).unwrap_err();
        assert!(
            matches!(&e, FleetError::Invalid(m) if m.contains(text)),
            "{e:?}"
        );
    }
    let e = policy
        .start(
            true,
            0,
            Op::Increment {
                key: "k".into(),
                delta: 1,
                ttl_ms: None,
            },
            "t".repeat(MAX_TAG_BYTES + 1),
        )
        .unwrap_err();
    assert!(
        matches!(&e, FleetError::Invalid(m) if m.contains("tag")),
        "{e:?}"
    );
    // Without Redis, every mode answers at once from this process.
    let done = policy
        .start(
            true,
            0,
            Op::Increment {
                key: "k".into(),
                delta: 2,
                ttl_ms: None,
            },
            String::new(),
        )
        .unwrap();
    assert!(
        matches!(done, Decision::Done(Answer::Counter(2))),
        "{done:?}"
    );
}

/// A real `redis-server` on a free loopback port, stopped when dropped.
struct Redis {
    child: std::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Redis {
    fn start() -> Redis {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = tempfile::tempdir().unwrap();
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .current_dir(dir.path())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server must be installed (.ci/run installs it)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Redis {
            child,
            port,
            _dir: dir,
        }
    }

    fn cli(&self, args: &[&str]) -> String {
        let out = std::process::Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli must be installed");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn the_redis_store_decides_strict_operations_and_reconciles_sync_views() {
    let redis = Redis::start();
    let config = crate::config::RedisConfig {
        url: format!("redis://127.0.0.1:{}", redis.port),
        password: None,
        password_file: None,
        ca: None,
        ca_file: None,
        pool_size: 2,
        connect_timeout: Duration::from_millis(500),
        command_timeout: Duration::from_millis(500),
        sync_interval: Duration::from_millis(20),
        prefix: "unit".into(),
        max_pending: 100,
    };
    let store = Store::start(config).unwrap();
    tokio::task::spawn_blocking({
        let store = store.clone();
        move || wait_for("the first round", || store.is_up())
    })
    .await
    .unwrap();
    assert_eq!(store.nodes(), 1);

    // Strict: each take decided in Redis, exactly.
    let take = Op::Take {
        key: "k".into(),
        capacity: 5,
        refill_per_second: 0,
        cost: 1,
    };
    let mut allowed = 0;
    for _ in 0..7 {
        match store.strict("p", &take).await.unwrap() {
            Answer::Bucket(b) if b.allowed => allowed += 1,
            Answer::Bucket(b) => assert_eq!(b.retry_after_ms, u64::MAX),
            a => panic!("{a:?}"),
        }
    }
    assert_eq!(allowed, 5);
    let count = Op::Increment {
        key: "c".into(),
        delta: 2,
        ttl_ms: Some(60_000),
    };
    assert_eq!(store.strict("p", &count).await.unwrap(), Answer::Counter(2));
    assert_eq!(store.strict("p", &count).await.unwrap(), Answer::Counter(4));
    let ttl: i64 = redis.cli(&["PTTL", "unit:p:c:c"]).parse().unwrap();
    assert!((1..=60_000).contains(&ttl), "{ttl}");

    // Sync: takes answered here, reported by the next rounds.
    let plugin = Arc::new(PluginFleet::default());
    store.watch(&"q".into(), &plugin);
    let now = Instant::now();
    for _ in 0..4 {
        assert!(
            plugin
                .view
                .take("s", (10, 0), 1, 1, true, now)
                .unwrap()
                .allowed
        );
    }
    tokio::task::spawn_blocking({
        let port = redis.port;
        move || {
            wait_for("the takes to reach Redis", || {
                let out = std::process::Command::new("redis-cli")
                    .args(["-p", &port.to_string(), "HGET", "unit:q:b:s", "t"])
                    .output()
                    .unwrap();
                String::from_utf8_lossy(&out.stdout).trim() == "6"
            })
        }
    })
    .await
    .unwrap();
    assert_eq!(redis.cli(&["ZCARD", "unit:nodes"]), "1");

    // Redis gone: the rounds fail, and a strict operation is answered by
    // its fallback.
    drop(redis);
    tokio::task::spawn_blocking({
        let store = store.clone();
        move || wait_for("the store to see Redis down", || !store.is_up())
    })
    .await
    .unwrap();
    let op = FleetOp {
        id: 7,
        tag: "t".into(),
        op: take,
        name: "p".into(),
        plugin: Arc::default(),
        fallback: FleetFallback::Closed,
        store: store.clone(),
    };
    let done = op.run().await;
    assert_eq!((done.id, done.tag.as_str()), (7, "t"));
    assert!(
        matches!(done.outcome, Err(FleetError::Unavailable(_))),
        "{done:?}"
    );
}
