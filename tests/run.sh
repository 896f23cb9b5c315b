#!/usr/bin/env bash
# Runs Weir's whole test suite: the gateway's unit, property and end-to-end
# tests and the SDK's (root workspace), then the bundled plugins' own tests
# (the separate plugins/ workspace, natively through the SDK's test host).
set -euo pipefail
cd "$(dirname "$0")/.."
rustup target add wasm32-wasip2 >/dev/null
cargo test --workspace "$@"
(cd plugins && cargo test "$@")
