#!/usr/bin/env bash
# Runs Weir's whole test suite: the gateway's unit, property and end-to-end
# tests and the SDK's (root workspace), then the bundled plugins' own tests
# (the separate plugins/ workspace, natively through the SDK's test host).
set -euo pipefail
cd "$(dirname "$0")/.."
rustup target add wasm32-wasip2 >/dev/null
# The end-to-end tests build these two Wasm workspaces on first use, with
# exactly these commands (tests/e2e/plugins_support.rs). Building them
# first keeps a release build from sharing the two cores with the timing
# tests that run meanwhile; the tests' own builds then find nothing to do.
root=$PWD
for ws in tests/fixtures/plugins:fixture-plugins plugins:bundled-plugins; do
    (cd "${ws%%:*}" && env -u RUSTFLAGS -u CARGO_ENCODED_RUSTFLAGS \
        cargo build --release --target wasm32-wasip2 --target-dir "$root/target/${ws##*:}")
done
# The gRPC tests (tests/e2e/grpc.rs) and examples/grpc run a real grpcio
# server and client from this virtual environment, with pinned versions.
[ -x target/grpc-venv/bin/python ] || python3 -m venv target/grpc-venv
target/grpc-venv/bin/pip install -q --disable-pip-version-check -r tests/e2e/grpc/requirements.txt
cargo test --workspace "$@"
(cd plugins && cargo test "$@")
