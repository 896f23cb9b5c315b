#!/usr/bin/env bash
# gRPC in one command: makes a Python environment with grpcio (once, in
# target/grpc-venv), builds Weir, starts two gRPC servers (alpha on
# 127.0.0.1:9051, beta on :9052; tests/e2e/grpc/server.py) and Weir on
# weir.toml beside this file (gRPC on 127.0.0.1:8091, admin on :9921),
# makes a few calls of each kind through Weir and prints what they
# returned, then prints three things to try. Ctrl-C stops everything.
set -euo pipefail

here=$PWD
cd "$(dirname "$0")/../.."
root=$PWD
example=examples/grpc
scripts=tests/e2e/grpc

if [[ -n ${CARGO_TARGET_DIR:-} && $CARGO_TARGET_DIR != /* ]]; then
    export CARGO_TARGET_DIR=$here/$CARGO_TARGET_DIR
fi
target=${CARGO_TARGET_DIR:-target}
venv=$target/grpc-venv
python=$venv/bin/python

# A path as the reader types it: relative when they ran this from the
# repository root, absolute otherwise.
show() {
    if [[ $1 == /* || $here == "$root" ]]; then echo "$1"; else echo "$root/$1"; fi
}

# Every port is below Linux's ephemeral range (32768 and up), so no
# client socket on this machine can be holding one when it starts.
for port in 8091 9921 9051 9052; do
    if (: </dev/tcp/127.0.0.1/$port) 2>/dev/null; then
        echo "127.0.0.1:$port is in use (is the example already running?)" >&2
        exit 1
    fi
done
command -v python3 >/dev/null || { echo "the example needs python3; install it first" >&2; exit 1; }

if ! "$python" -c 'import grpc, grpc_health' 2>/dev/null; then
    echo "==> Making a Python environment with grpcio in $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check -r $scripts/requirements.txt
fi

echo "==> Building Weir (the first time: about 3 minutes on 2 cores)"
cargo build --profile quickstart -p weir --bin weir
"$target/quickstart/weir" check -c $example/weir.toml

# Each server reads its health statuses from a file here (see server.py).
state=$(mktemp -d)
alpha='' beta='' gateway=''
# Ctrl-C stops the three servers; one still there after 5 s (a gRPC
# server can hang on its way out) is killed, so the ports are always freed.
stop_all() {
    kill $alpha $beta $gateway 2>/dev/null || true
    for _ in $(seq 50); do
        kill -0 $alpha $beta $gateway 2>/dev/null || break
        sleep 0.1
    done
    kill -9 $alpha $beta $gateway 2>/dev/null || true
    wait
    rm -rf "$state"
}
trap stop_all EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
"$python" $scripts/server.py --port 9051 --name alpha --health-file "$state/alpha.health" >"$state/alpha.out" &
alpha=$!
"$python" $scripts/server.py --port 9052 --name beta --health-file "$state/beta.health" >"$state/beta.out" &
beta=$!
"$target/quickstart/weir" run -c $example/weir.toml &
gateway=$!

client() {
    "$python" $scripts/client.py --target 127.0.0.1:8091 "$@"
}
# Both servers answer through Weir within a minute, or the script stops.
both='import json, sys; r = json.load(sys.stdin); sys.exit({"alpha", "beta"} > set(r.get("names", [])))'
ready=''
for _ in $(seq 120); do
    for pid in $alpha $beta $gateway; do
        kill -0 "$pid" 2>/dev/null || { echo "failed to start; see the log above" >&2; exit 1; }
    done
    if (: </dev/tcp/127.0.0.1/8091) 2>/dev/null && client whoami --count 4 2>/dev/null | "$python" -c "$both"; then
        ready=1
        break
    fi
    sleep 0.5
done
[[ -n $ready ]] || { echo "the servers did not answer through Weir within a minute" >&2; exit 1; }

cat <<EOF

==> A few calls through Weir, one of each kind. client.py prints each
    call's result as JSON: the status code, the replies, and the trailing
    metadata (x-server names the server that answered).

- Unary: the reply is the request.
EOF
echo "  $(client unary --text 'hello through Weir')"
echo "- Server streaming: 3 replies of 4 bytes to one request."
echo "  $(client server_stream --count 3 --size 4)"
echo "- Client streaming: 3 requests of 1000 bytes, one reply counting them."
echo "  $(client client_stream --count 3 --size 1000)"
echo "- Bidirectional: each message sent once the previous one came back."
echo "  $(client bidi --count 3 --size 8)"
echo "- A server error: its status, message and trailing metadata, unchanged."
echo "  $(client fail)"

py=$(show "$python")
cl=$(show $scripts/client.py)
cat <<TRIES

Weir serves gRPC on 127.0.0.1:8091 (h2c), in front of alpha and beta
(admin: http://127.0.0.1:9921). Try these from another terminal:

1. Six calls on one channel: Weir balances them over both servers, so the
   names alternate between alpha and beta.

    $py $cl --target 127.0.0.1:8091 whoami --count 6

2. Make alpha report NOT_SERVING for echo.Echo. Weir's gRPC health check
   asks every half second, so within a second the same six calls all name
   beta; the last command makes alpha SERVING again, and it is back
   within a second.

    echo 'echo.Echo=NOT_SERVING' > $state/alpha.health
    $py $cl --target 127.0.0.1:8091 whoami --count 6
    echo SERVING > $state/alpha.health

3. A service no route serves: Weir answers the gRPC way, status
   UNIMPLEMENTED (HTTP 200 with grpc-status 12), not an HTTP 404.

    $py $cl --target 127.0.0.1:8091 call --method /other.Service/Method

Ctrl-C here stops Weir and the two gRPC servers.
TRIES
wait $gateway
