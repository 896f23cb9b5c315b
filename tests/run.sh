#!/usr/bin/env bash
# Runs Weir's whole test suite: unit, property and end-to-end tests.
# Installs the one toolchain piece the plugin tests need first.
set -euo pipefail
cd "$(dirname "$0")/.."
rustup target add wasm32-wasip2 >/dev/null
cargo test --workspace "$@"
