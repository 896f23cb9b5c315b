#!/usr/bin/env bash
# The quickstart: builds Weir, the demo upstream and three bundled plugins,
# starts the upstream on 127.0.0.1:9000 and Weir on weir.toml beside this
# file (traffic on 127.0.0.1:8080, admin on 127.0.0.1:9901), and prints
# three things to try. Ctrl-C stops both.
set -euo pipefail

here=$PWD
cd "$(dirname "$0")/../.."
root=$PWD
quickstart=examples/quickstart

# Cargo's output folders; CARGO_TARGET_DIR, when set, holds both builds.
if [[ -n ${CARGO_TARGET_DIR:-} && $CARGO_TARGET_DIR != /* ]]; then
    export CARGO_TARGET_DIR=$here/$CARGO_TARGET_DIR
fi
target=${CARGO_TARGET_DIR:-target}
wasm=${CARGO_TARGET_DIR:-plugins/target}/wasm32-wasip2/release

# A path as the reader types it: relative when they ran this from the
# repository root, absolute otherwise.
show() {
    if [[ $1 == /* || $here == "$root" ]]; then echo "$1"; else echo "$root/$1"; fi
}

for port in 8080 9000 9901; do
    if (: </dev/tcp/127.0.0.1/$port) 2>/dev/null; then
        echo "127.0.0.1:$port is in use (is the quickstart already running?)" >&2
        exit 1
    fi
done
command -v curl >/dev/null || echo "note: the tries below use curl, which is not installed" >&2

if ! rustup target list --installed | grep -qx wasm32-wasip2; then
    rustup target add wasm32-wasip2
fi

echo "==> Building Weir and the demo upstream (the first time: about 3 minutes on 2 cores)"
cargo build --profile quickstart -p weir --bin weir --example echo-upstream
echo "==> Building the api-key, header-rewrite and noop plugins for wasm32-wasip2"
(cd plugins && cargo build --release --target wasm32-wasip2 -p api-key -p header-rewrite -p noop)

# The plugin folder weir.toml names. header-rewrite starts as a placeholder
# (noop under its name); the third try deploys the real one.
mkdir -p $quickstart/plugins.d
cp "$wasm/api_key.wasm" $quickstart/plugins.d/api-key.wasm
cp "$wasm/noop.wasm" $quickstart/plugins.d/header-rewrite.wasm
"$target/quickstart/weir" check -c $quickstart/weir.toml

upstream='' gateway=''
trap 'kill $upstream $gateway 2>/dev/null || true; wait' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
"$target/quickstart/examples/echo-upstream" 127.0.0.1:9000 &
upstream=$!
"$target/quickstart/weir" run -c $quickstart/weir.toml &
gateway=$!

# Both answer within a minute, or the script stops with what they logged.
for _ in $(seq 600); do
    for pid in $upstream $gateway; do
        kill -0 "$pid" 2>/dev/null || { echo "failed to start; see the log above" >&2; exit 1; }
    done
    if curl -so /dev/null 127.0.0.1:9000 && curl -sfo /dev/null 127.0.0.1:9901/healthz; then
        break
    fi
    sleep 0.1
done
curl -sfo /dev/null 127.0.0.1:9901/healthz || { echo "Weir did not start within a minute" >&2; exit 1; }

cat <<EOF

Weir serves http://127.0.0.1:8080 (admin: http://127.0.0.1:9901). The demo
upstream behind it answers every request with what it received.
Try these from another terminal:

1. A request without a key: the api-key plugin refuses it with 401.

    curl -i http://127.0.0.1:8080/api/hello

2. The same request with a key: 200 from the upstream, whose echo shows
   "x-consumer": "demo-app" (set by api-key, which also removed the key).

    curl -i -H 'x-api-key: k-demo-1' http://127.0.0.1:8080/api/hello

3. Deploy a plugin while Weir serves. The route's second plugin,
   header-rewrite, is still a placeholder (the bundled noop plugin); copy
   the real one in, and the admin view shows its new sha256 and deployed_at:

    cp $(show "$wasm/header_rewrite.wasm") $(show $quickstart/plugins.d/header-rewrite.wasm)
    curl -s 127.0.0.1:9901/admin/plugins

   Then run 2 again: the echo now also shows
   "x-hello": "from a plugin deployed while serving".

Ctrl-C here stops Weir and the demo upstream.
EOF
wait $gateway
