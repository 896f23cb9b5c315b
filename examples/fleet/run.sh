#!/usr/bin/env bash
# A fleet of three gateways on one machine sharing a rate limit through
# Redis: builds Weir, the demo upstream and the rate-limit plugin, starts
# Redis on 127.0.0.1:6390 (no persistence), the demo upstream on
# 127.0.0.1:9000 and three gateways running weir.toml beside this file
# (traffic on 127.0.0.1:8081-8083, admin on 127.0.0.1:9901-9903), and
# prints what to try. Everything runs in a temporary folder, removed on
# exit; Ctrl-C stops it all.
#
#   ./examples/fleet/run.sh          # rate-limit's fleet mode "sync"
#   ./examples/fleet/run.sh strict   # each take decided in Redis
set -euo pipefail

mode=${1:-sync}
if [[ $mode != sync && $mode != strict ]]; then
    echo "usage: $0 [sync|strict]" >&2
    exit 2
fi

here=$PWD
cd "$(dirname "$0")/../.."
fleet=examples/fleet

# Cargo's output folders, as examples/quickstart/run.sh finds them.
if [[ -n ${CARGO_TARGET_DIR:-} && $CARGO_TARGET_DIR != /* ]]; then
    export CARGO_TARGET_DIR=$here/$CARGO_TARGET_DIR
fi
target=${CARGO_TARGET_DIR:-target}
wasm=${CARGO_TARGET_DIR:-plugins/target}/wasm32-wasip2/release

for port in 6390 9000 8081 8082 8083 9901 9902 9903; do
    if (: </dev/tcp/127.0.0.1/$port) 2>/dev/null; then
        echo "127.0.0.1:$port is in use (is the example already running?)" >&2
        exit 1
    fi
done
command -v redis-server >/dev/null || {
    echo "redis-server is not installed (Debian: apt-get install redis-server)" >&2
    exit 1
}
command -v curl >/dev/null || echo "note: the tries below use curl, which is not installed" >&2

if ! rustup target list --installed | grep -qx wasm32-wasip2; then
    rustup target add wasm32-wasip2
fi

echo "==> Building Weir and the demo upstream (as the quickstart does)"
cargo build --profile quickstart -p weir --bin weir --example echo-upstream
echo "==> Building the rate-limit plugin for wasm32-wasip2"
(cd plugins && cargo build --release --target wasm32-wasip2 -p rate-limit)
weir=$target/quickstart/weir

# Each gateway gets a folder of its own: its configuration (weir.toml with
# its ports and the fleet mode asked for), its plugin folder and its log.
tmp=$(mktemp -d -t weir-fleet.XXXXXX)
pids=()
cleanup() {
    if ((${#pids[@]})); then
        kill "${pids[@]}" 2>/dev/null || true
        wait "${pids[@]}" 2>/dev/null || true
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

for n in 1 2 3; do
    mkdir -p "$tmp/node-$n/plugins.d"
    cp "$wasm/rate_limit.wasm" "$tmp/node-$n/plugins.d/rate-limit.wasm"
    sed -e "s/127\.0\.0\.1:8081/127.0.0.1:808$n/" \
        -e "s/127\.0\.0\.1:9901/127.0.0.1:990$n/" \
        -e "s/^fleet = \"sync\"/fleet = \"$mode\"/" \
        $fleet/weir.toml >"$tmp/node-$n/weir.toml"
    "$weir" check -c "$tmp/node-$n/weir.toml" >/dev/null
done

mkdir "$tmp/redis"
redis-server --bind 127.0.0.1 --port 6390 --save '' --appendonly no \
    --dir "$tmp/redis" >"$tmp/redis/redis.log" 2>&1 &
pids+=($!)
# The gateways would start without it (their fallback answering), but
# would log an outage first.
for _ in $(seq 100); do
    (: </dev/tcp/127.0.0.1/6390) 2>/dev/null && break
    sleep 0.1
done
"$target/quickstart/examples/echo-upstream" 127.0.0.1:9000 >"$tmp/upstream.log" 2>&1 &
pids+=($!)
for n in 1 2 3; do
    "$weir" run -c "$tmp/node-$n/weir.toml" >"$tmp/node-$n/weir.log" 2>&1 &
    pids+=($!)
done

# Up within a minute: Redis, the upstream, and three gateways that each
# see the other two (weir_fleet_nodes 3).
nodes() { curl -s "127.0.0.1:990$1/metrics" | sed -n 's/^weir_fleet_nodes \([0-9]*\).*/\1/p'; }
for _ in $(seq 600); do
    for pid in "${pids[@]}"; do
        kill -0 "$pid" 2>/dev/null || {
            echo "failed to start; the logs:" >&2
            tail -n 20 "$tmp"/redis/redis.log "$tmp"/node-*/weir.log >&2
            exit 1
        }
    done
    if [[ $(nodes 1) == 3 && $(nodes 2) == 3 && $(nodes 3) == 3 ]]; then
        break
    fi
    sleep 0.1
done
[[ $(nodes 1) == 3 ]] || { echo "the gateways did not find each other within a minute" >&2; exit 1; }

cat <<EOF

Three gateways serve http://127.0.0.1:8081, :8082 and :8083 (admin :9901,
:9902, :9903), rate-limit in fleet mode "$mode", Redis on 127.0.0.1:6390.
The route allows each client address 10 requests at once, then 1 per
second, over the whole fleet. Try these from another terminal:

1. 18 requests spread over the three gateways: 10 get 200, then 429
   (each gateway alone would allow 10: 30 in all). With "sync" a few more
   can pass: each gateway decides from its third of the bucket, and the
   three reconcile every 100 ms.

    for i in \$(seq 6); do for port in 8081 8082 8083; do
      curl -s -o /dev/null -w "\$port %{http_code}\n" http://127.0.0.1:\$port/
    done; done

2. The bucket in Redis, and what each gateway reports about the fleet:

    redis-cli -p 6390 --scan --pattern 'weir-example:*'
    curl -s 127.0.0.1:9902/metrics | grep '^weir_fleet'

3. Redis out of reach for 15 seconds: each gateway logs it once and
   logs again when Redis is back. Meanwhile each allows about a third of
   the limit on its own (fleet_fallback = "local"): run 1 again within
   the 15 seconds, 10 seconds or more after its last run (the bucket
   refills at 1 per second).

    redis-cli -p 6390 client pause 15000

4. Every gateway serves the same plugin (deploying to a fleet is copying
   the new .wasm into each gateway's plugin folder, $tmp/node-N/plugins.d):

    for port in 9901 9902 9903; do
      curl -s 127.0.0.1:\$port/admin/plugins | grep -o '"sha256": *"[0-9a-f]*"' | head -n 1
    done

The gateways' logs follow. Ctrl-C stops everything.
EOF

tail -n +1 -F "$tmp"/node-*/weir.log &
pids+=($!)
wait "${pids[2]}"
