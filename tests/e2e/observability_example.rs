//! examples/observability: its Prometheus configuration passes
//! `promtool check config`, and every metric its Grafana dashboard queries
//! is one docs/observability.md describes (the metrics tests check the
//! descriptions against real scrapes), so a renamed metric cannot leave the
//! dashboard showing nothing. (Its weir.toml is checked with the other
//! examples, in `check`.)

use std::collections::BTreeSet;
use std::process::Command;

use crate::support::repo_root;

/// The metric names (`weir_…`, `process_…`) in a text, without the
/// suffixes of a histogram's or a counter's samples.
fn metric_names(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("weir_") || w.starts_with("process_"))
        .map(|w| {
            ["_bucket", "_sum", "_count", "_total"]
                .iter()
                .find_map(|s| w.strip_suffix(s))
                .unwrap_or(w)
                .to_owned()
        })
        .collect()
}

#[test]
fn the_prometheus_configuration_passes_promtool() {
    let cfg = repo_root().join("examples/observability/prometheus.yml");
    let out = Command::new("promtool")
        .args(["check", "config"])
        .arg(&cfg)
        .output()
        .expect("promtool is not installed: apt-get install -y prometheus (.ci/run does)");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn every_metric_the_dashboard_queries_is_documented() {
    let root = repo_root();
    let dash = std::fs::read_to_string(root.join("examples/observability/grafana-dashboard.json"))
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&dash).expect("the dashboard is JSON");
    let mut exprs = String::new();
    for p in v["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().into_iter().flatten() {
            exprs.push_str(t["expr"].as_str().unwrap());
            exprs.push('\n');
        }
    }
    let queried = metric_names(&exprs);
    assert!(queried.len() > 30, "{queried:?}");
    let docs = metric_names(&std::fs::read_to_string(root.join("docs/observability.md")).unwrap());
    let missing: Vec<_> = queried.difference(&docs).collect();
    assert!(
        missing.is_empty(),
        "queried but not documented: {missing:?}"
    );
}
