#!/usr/bin/env bash
# Builds Weir and the demo upstream, starts three demo upstreams on
# 127.0.0.1:9001-9003 and Weir on examples/balancing/weir.toml (port 8080).
# Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build -p weir --bin weir --example echo-upstream
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT
for port in 9001 9002 9003; do
  target/debug/examples/echo-upstream "127.0.0.1:$port" &
  pids+=($!)
done
target/debug/weir check -c examples/balancing/weir.toml
echo "Try: for i in 1 2 3 4 5; do curl -s http://127.0.0.1:8080/; echo; done"
target/debug/weir run -c examples/balancing/weir.toml
