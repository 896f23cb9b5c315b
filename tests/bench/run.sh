#!/usr/bin/env bash
# Weir side by side with nginx and HAProxy, one command:
#
#   tests/bench/run.sh            # full: 3 rounds, ~30 minutes
#   tests/bench/run.sh --quick    # 1 round, short runs, ~7 minutes
#
# Installs nginx, HAProxy, wrk, openssl (the TLS certificate, s_time),
# h2load (nghttp2-client), curl, python3-venv, valgrind (the instruction
# counts, callgrind; the plain and plugin rows' allocations, dhat),
# strace (the plain scenario's system calls), redis-server (the fleet
# phase's Redis) and the nginx Lua module when one is missing
# (apt-get, needs root), builds Weir in release mode (and
# the plugins in plugins/, when that folder exists, the test fixture
# plugins, and the gRPC upstream of tests/bench/grpc_upstream), makes a
# Python virtual environment with grpcio (target/bench-venv, pip) for the
# gRPC set-up check, then hands over to bench.py. Any other argument is
# passed to bench.py (see --help there).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"

need_install=0
for tool in nginx haproxy wrk openssl python3 h2load curl valgrind callgrind_control strace \
    redis-server; do
    command -v "$tool" >/dev/null 2>&1 || need_install=1
done
[ -f /usr/lib/nginx/modules/ngx_http_lua_module.so ] || need_install=1
# `python3 -m venv` needs ensurepip (Debian's python3-venv).
python3 -c 'import ensurepip' >/dev/null 2>&1 || need_install=1
if [ "$need_install" = 1 ]; then
    echo "bench: installing nginx-light haproxy wrk openssl libnginx-mod-http-lua" \
        "nghttp2-client curl python3-venv valgrind strace redis-server" >&2
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
        nginx-light haproxy wrk openssl libnginx-mod-http-lua python3 \
        nghttp2-client curl python3-venv valgrind strace redis-server
fi

echo "bench: cargo build --release -p weir" >&2
(cd "$repo" && cargo build --release -p weir)

# The first-party plugins, for the plugin scenarios. Without them (or
# without a plugin runtime in Weir) those scenarios are reported as skipped.
if [ -f "$repo/plugins/Cargo.toml" ]; then
    echo "bench: cargo build --release --target wasm32-wasip2 (plugins/)" >&2
    if ! (rustup target add wasm32-wasip2 >/dev/null &&
        cd "$repo/plugins" && cargo build --release --target wasm32-wasip2); then
        echo "bench: building the plugins failed; their scenarios will be skipped" >&2
    fi
fi

# The hostile test-fixture plugin, for the plugin-attack scenario (the
# same build and folder as the end-to-end tests use).
echo "bench: cargo build --release --target wasm32-wasip2 (tests/fixtures/plugins)" >&2
if ! (cd "$repo/tests/fixtures/plugins" && env -u RUSTFLAGS -u CARGO_ENCODED_RUSTFLAGS \
    cargo build --release --target wasm32-wasip2 --target-dir "$repo/target/fixture-plugins"); then
    echo "bench: building the fixture plugins failed; the attack scenario will be skipped" >&2
fi

# The gRPC upstream of the h2 phase (a tonic server, its own workspace).
echo "bench: cargo build --release (tests/bench/grpc_upstream)" >&2
if ! (cd "$repo" && cargo build --release --manifest-path tests/bench/grpc_upstream/Cargo.toml \
    --target-dir target/bench-upstream); then
    echo "bench: building the gRPC upstream failed; the gRPC scenario will not be measured" >&2
fi

# A real gRPC client (grpcio) for the gRPC scenario's set-up check.
venv="$repo/target/bench-venv"
if ! "$venv/bin/python" -c 'import grpc' >/dev/null 2>&1; then
    echo "bench: python3 -m venv target/bench-venv; pip install grpcio" >&2
    if ! (python3 -m venv "$venv" && "$venv/bin/pip" install -q grpcio); then
        echo "bench: no grpcio; the gRPC set-up check will skip its grpcio call" >&2
    fi
fi

# 10,000 idle client connections need more than the usual 1024 files.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# bench.py writes the id of every process it starts here; if it dies
# without stopping them, the trap does, by id.
pidfile="$(mktemp -t weir-bench-pids.XXXXXX)"
cleanup() {
    if [ -s "$pidfile" ]; then
        while read -r pid; do
            kill -KILL -- "-$pid" 2>/dev/null || true
        done <"$pidfile"
    fi
    rm -f "$pidfile"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

BENCH_PIDFILE="$pidfile" python3 "$here/bench.py" "$@"
