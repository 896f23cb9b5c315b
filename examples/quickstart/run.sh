#!/usr/bin/env bash
# Builds Weir and a demo upstream, starts the upstream on 127.0.0.1:9000 and
# Weir on examples/quickstart/weir.toml (port 8080). Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build -p weir --bin weir --example echo-upstream
target/debug/examples/echo-upstream 127.0.0.1:9000 &
upstream=$!
trap 'kill "$upstream" 2>/dev/null || true' EXIT
target/debug/weir check -c examples/quickstart/weir.toml
echo "Try: curl -i http://127.0.0.1:8080/api/hello"
target/debug/weir run -c examples/quickstart/weir.toml
