//! Reading what the gRPC test client (`tests/e2e/grpc/client.py`) prints:
//! one JSON result a run. Shared by the gRPC tests (`grpc.rs`) and the
//! quickstart test's run of `examples/grpc/run.sh`, which uses the same
//! client.

use serde_json::Value;

/// The server names a `whoami` result lists.
pub fn names(result: &Value) -> Vec<String> {
    result["names"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|n| n.as_str().unwrap_or("").to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Whether `pairs` (a client result's `initial` or `trailing`) holds
/// `[key, value]`.
pub fn has_pair(pairs: &Value, key: &str, value: &str) -> bool {
    pairs
        .as_array()
        .is_some_and(|a| a.iter().any(|p| p[0] == key && p[1] == value))
}
