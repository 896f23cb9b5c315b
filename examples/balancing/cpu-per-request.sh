#!/usr/bin/env bash
# Gateway CPU time per request for each balancer, measured with wrk
# against two demo upstreams: the cost of a policy as a share of a whole
# proxied request (the pick alone is measured by `--example pick-cost`).
# Needs wrk. Uses ports 38910-38912 on 127.0.0.1; one worker thread.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release -p weir --bin weir --example echo-upstream
T=target/release
$T/examples/echo-upstream 127.0.0.1:38911 >/dev/null 2>&1 & U1=$!
$T/examples/echo-upstream 127.0.0.1:38912 >/dev/null 2>&1 & U2=$!
trap 'kill $U1 $U2 2>/dev/null || true' EXIT
sleep 0.5
clk=$(getconf CLK_TCK)
conf=$(mktemp)
for round in 1 2 3; do
  for b in round_robin least_request random consistent_hash; do
    cat > "$conf" <<TOML
[server]
workers = 1
[[listener]]
address = "127.0.0.1:38910"
[[upstream]]
name = "app"
endpoints = ["127.0.0.1:38911", "127.0.0.1:38912"]
balancer = "$b"
[[route]]
upstream = "app"
TOML
    $T/weir --log-level warn run -c "$conf" & G=$!
    sleep 0.5
    wrk -t1 -c16 -d2s http://127.0.0.1:38910/ >/dev/null   # warm-up
    s0=$(awk '{print $14+$15}' /proc/$G/stat)
    out=$(wrk -t1 -c16 -d8s http://127.0.0.1:38910/)
    s1=$(awk '{print $14+$15}' /proc/$G/stat)
    n=$(echo "$out" | awk '/requests in/ {print $1}')
    awk -v b="$b" -v t=$((s1 - s0)) -v c="$clk" -v n="$n" \
      'BEGIN { printf "%-16s %8d requests  %6.2f us CPU per request\n", b, n, t / c * 1e6 / n }'
    kill $G
    wait $G 2>/dev/null || true
  done
done
rm -f "$conf"
