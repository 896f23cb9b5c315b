#!/usr/bin/env bash
# HTTPS in one command: makes a CA, a certificate for localhost and a
# client certificate with openssl (make-certs.sh, into certs/ beside this
# file, anew each run), builds Weir and the demo upstream, starts the upstream on
# 127.0.0.1:9100 and Weir on weir.toml beside this file (HTTPS on :8443,
# plain HTTP redirecting on :8088, admin on :9911), and prints what to
# try. Ctrl-C stops both.
set -euo pipefail

here=$PWD
cd "$(dirname "$0")/../.."
root=$PWD
example=examples/tls
certs=$example/certs

if [[ -n ${CARGO_TARGET_DIR:-} && $CARGO_TARGET_DIR != /* ]]; then
    export CARGO_TARGET_DIR=$here/$CARGO_TARGET_DIR
fi
target=${CARGO_TARGET_DIR:-target}

# A path as the reader types it: relative when they ran this from the
# repository root, absolute otherwise.
show() {
    if [[ $1 == /* || $here == "$root" ]]; then echo "$1"; else echo "$root/$1"; fi
}

for port in 8443 8088 9100 9911; do
    if (: </dev/tcp/127.0.0.1/$port) 2>/dev/null; then
        echo "127.0.0.1:$port is in use (is the example already running?)" >&2
        exit 1
    fi
done
for tool in openssl curl; do
    command -v $tool >/dev/null || { echo "the example needs $tool; install it first" >&2; exit 1; }
done

echo "==> Making a CA, a certificate for localhost and a client certificate in $certs"
$example/make-certs.sh $certs

echo "==> Building Weir and the demo upstream (the first time: about 3 minutes on 2 cores)"
cargo build --profile quickstart -p weir --bin weir --example echo-upstream
"$target/quickstart/weir" check -c $example/weir.toml

upstream='' gateway=''
trap 'kill $upstream $gateway 2>/dev/null || true; wait' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
"$target/quickstart/examples/echo-upstream" 127.0.0.1:9100 &
upstream=$!
"$target/quickstart/weir" run -c $example/weir.toml &
gateway=$!

for _ in $(seq 600); do
    for pid in $upstream $gateway; do
        kill -0 "$pid" 2>/dev/null || { echo "failed to start; see the log above" >&2; exit 1; }
    done
    if curl -so /dev/null 127.0.0.1:9100 && curl -sfo /dev/null 127.0.0.1:9911/healthz; then
        break
    fi
    sleep 0.1
done
curl -sfo /dev/null 127.0.0.1:9911/healthz || { echo "Weir did not start within a minute" >&2; exit 1; }

ca=$(show $certs/ca.pem)
cat <<TRIES

Weir serves https://localhost:8443 with a certificate from the example's
CA ($ca), and http://localhost:8088 redirects there. The demo upstream
behind it answers every request with what it received. Try these from
another terminal:

1. HTTPS: 200 over HTTP/2, and the upstream is told the client used it:
   its echo shows "x-forwarded-proto": "https".

    curl -si --cacert $ca https://localhost:8443/hello

2. Plain HTTP: a 308 redirect to the same path over HTTPS.

    curl -si http://localhost:8088/hello

3. A route for clients with a certificate: with the example's client
   certificate, 200, and the echo shows the verified "x-client-cert"; the
   same request without it gets 404 (no route serves it to that client).

    curl -si --cacert $ca --cert $(show $certs/client.pem) --key $(show $certs/client.key) https://localhost:8443/internal/status
    curl -si --cacert $ca https://localhost:8443/internal/status

The certificates and how handshakes ended: curl -s 127.0.0.1:9911/admin/tls

Ctrl-C here stops Weir and the demo upstream.
TRIES
wait $gateway
