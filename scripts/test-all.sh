#!/usr/bin/env bash
# Run every test: formatting, lints, Rust unit + in-process + end-to-end tests (real agent,
# SoftHSM token, openssl as verifier), the benchmark in smoke mode, the TypeScript client's
# type check, unit, integration and headless-Chromium tests, and the fuzz targets briefly.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh

echo "== cargo fmt"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "== cargo clippy (headless agent: no tray feature, no GTK)"
cargo clippy -p keyport --no-default-features -- -D warnings
echo "== cargo test"
cargo build --workspace --bins
cargo test --workspace --no-fail-fast
if [ -x scripts/bench-smoke.sh ]; then
  echo "== benchmark (smoke mode)"
  scripts/bench-smoke.sh
fi
if [ -x scripts/test-js.sh ]; then
  echo "== TypeScript client"
  scripts/test-js.sh
fi
echo "== fuzz targets (30 s each on their corpora)"
FUZZ_SECONDS=${FUZZ_SECONDS:-30} scripts/fuzz.sh
echo "All tests passed."
