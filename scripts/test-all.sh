#!/usr/bin/env bash
# Run every test: formatting, lints, Rust unit + in-process + end-to-end tests (real agent,
# SoftHSM token, openssl as verifier), the benchmark in smoke mode, the TypeScript client's
# type check, unit, integration and headless-Chromium tests, Windows under Wine (scripts/
# test-windows.sh: the agent's tests, the MSI, end to end), the Debian package (as root: built,
# installed, run, removed; scripts/test-deb.sh), and the fuzz targets briefly.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --cross
# Each step says when it starts (minutes:seconds into the run): what the suite costs, step by step.
step() { printf '== [%d:%02d] %s\n' $((SECONDS / 60)) $((SECONDS % 60)) "$*"; }

step "cargo fmt"
cargo fmt --all -- --check
step "cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
step "cargo clippy (headless agent: no tray feature, no GTK)"
cargo clippy -p keyport --no-default-features -- -D warnings
step "cargo clippy (Windows, run under Wine below; macOS, type-checked only)"
cargo clippy --target x86_64-pc-windows-gnu -p keyport -p keyport-soft-token --all-targets -- -D warnings
cargo clippy --target aarch64-apple-darwin -p keyport --all-targets -- -D warnings
step "cargo test"
# Libraries too: the fault module's cdylib lands in target/debug/, where the JS tests load it.
cargo build --workspace
# The module-host channel's soak test runs a minute here (20 s by default).
KEYPORT_SOAK_SECS=${KEYPORT_SOAK_SECS:-60} cargo test --workspace --no-fail-fast
if [ -x scripts/bench-smoke.sh ]; then
  step "benchmark (smoke mode)"
  scripts/bench-smoke.sh
fi
if [ -x scripts/test-js.sh ]; then
  step "TypeScript client"
  scripts/test-js.sh
fi
step "Windows under Wine (the agent's tests, the module host, the MSI, end to end with Chromium)"
scripts/test-windows.sh
if [ -x scripts/test-deb.sh ]; then
  # Installs and removes a package: only where the run is root (CI); elsewhere run it with sudo.
  if [ "$(id -u)" -eq 0 ]; then
    step "Debian package (build, lintian, install, run on SoftHSM, remove)"
    scripts/test-deb.sh
  else
    step "Debian package: skipped (not root; scripts/test-deb.sh runs it, through sudo)"
  fi
fi
step "fuzz targets (30 s each on their corpora)"
FUZZ_SECONDS=${FUZZ_SECONDS:-30} scripts/fuzz.sh
step "All tests passed."
# What the run left on disk (CI's disk is shared: keep an eye on it).
du -sh target fuzz/target 2>/dev/null || true
