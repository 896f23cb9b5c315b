use std::path::Path;

use super::super::Config;
use super::*;

const BASE: &str = "[[listener]]\naddress = \"127.0.0.1:0\"\n\n";

fn parse(s: &str) -> Result<Config, String> {
    Config::parse(Path::new("t.toml"), &format!("{BASE}{s}")).map_err(|e| e.to_string())
}

#[test]
fn everything_configurable_loads() {
    let c = parse(
            r#"
[[upstream]]
name = "app"
endpoints = ["127.0.0.1:1", "127.0.0.1:2"]
balancer = "consistent_hash"
hash_key = "cookie:session"
panic_threshold = 30
max_connections = 50
max_pending_requests = 20
dns_refresh = "10s"
health_check = { path = "/healthz", interval = "1s", timeout = "200ms", healthy_threshold = 1, unhealthy_threshold = 2, expected_statuses = [200, "300-302"] }
outlier = { consecutive_5xx = 0, consecutive_connect_failures = 2, base_ejection = "1s", max_ejection = "1m" }
retry = { attempts = 3, statuses = [503], backoff = "5ms", max_backoff = "50ms", budget_ratio = 0.1, budget_min_per_second = 0 }
"#,
        )
        .unwrap();
    let u = &c.upstreams[0];
    assert_eq!(
        u.balancer,
        BalancerKind::ConsistentHash(HashKey::Cookie("session".into()))
    );
    assert_eq!(u.panic_threshold, 30);
    let h = u.health_check.as_ref().unwrap();
    assert_eq!(h.expected_statuses, vec![(200, 200), (300, 302)]);
    assert_eq!(u.outlier.consecutive_5xx, 0);
    assert_eq!(u.retry.budget_per_mille, 100);
    assert_eq!(u.retry.statuses, vec![503]);
}

#[test]
fn bad_values_are_named() {
    let all = parse(
        r#"
[[upstream]]
name = "app"
endpoints = ["127.0.0.1:1"]
balancer = "fastest"
hash_key = "query:x"
panic_threshold = 101
health_check = { path = "healthz", interval = "1ms", expected_statuses = ["299-200"] }
retry = { attempts = 9, budget_ratio = 3.0, statuses = [700] }
outlier = { base_ejection = "1m", max_ejection = "1s" }
"#,
    )
    .unwrap_err();
    for needle in [
        "unknown balancer `fastest`",
        "hash_key",
        "panic_threshold",
        "health_check.path",
        "health_check.interval",
        "expected_statuses",
        "retry.attempts",
        "retry.budget_ratio",
        "retry.statuses",
        "outlier.max_ejection",
    ] {
        assert!(all.contains(needle), "{needle} missing from:\n{all}");
    }
    assert!(all.contains("t.toml:5: upstream[0] (app)"), "{all}");
}

#[test]
fn hash_keys() {
    for (s, want) in [
        ("client_ip", HashKey::ClientIp),
        (
            "header:X-User",
            HashKey::Header(HeaderName::from_static("x-user")),
        ),
        ("cookie:sid", HashKey::Cookie("sid".into())),
    ] {
        let c = parse(&format!(
                "[[upstream]]\nname = \"a\"\nendpoints = [\"127.0.0.1:1\"]\nbalancer = \"consistent_hash\"\nhash_key = \"{s}\"\n"
            ))
            .unwrap();
        assert_eq!(c.upstreams[0].balancer, BalancerKind::ConsistentHash(want));
    }
}
