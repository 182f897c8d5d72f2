#!/usr/bin/env bash
# Run every test: formatting, lints, Rust unit + in-process + end-to-end tests (real agent,
# SoftHSM token, openssl as verifier), the benchmark in smoke mode, the TypeScript client's
# type check, unit, integration and headless-Chromium tests, Windows under Wine (scripts/
# test-windows.sh: the agent's tests, the MSI, end to end), the Debian package (as root: built,
# installed, run, removed; scripts/test-deb.sh), and the fuzz targets briefly.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --cross
# Each step says when it starts (minutes:seconds into the run): what the suite costs, step by step,
# with the machine's load and its busiest processes, so a slow CI run shows whether something a
# step left behind (or the machine's neighbours) ate the CPU.
step() {
  printf '== [%d:%02d] %s (load %s)\n' $((SECONDS / 60)) $((SECONDS % 60)) "$*" "$(cut -d' ' -f1-3 /proc/loadavg)"
  ps -eo pid=,etimes=,pcpu=,comm= --sort=-pcpu 2>/dev/null | awk '$2 >= 10 && $3 >= 20 { printf "   busy: pid %s, %s s old, %s%% CPU, %s\n", $1, $2, $3, $4 }' | head -5 || true
}

# The release builds here (the Debian package's and the MSI's keyport) are built to be tested,
# not shipped: unoptimised, without LTO, in 16 codegen units. Each is a full build of the agent's
# dependency tree, 6 min or more on 2 cores with the shipped profile. They stay release builds: no
# debug assertions, and the debug-only test hooks (agent/src/hooks.rs) ignored, as installed. The
# packages a person installs come from scripts/build-deb.sh and build-msi.sh with Cargo.toml's
# release profile; KEYPORT_CI_RELEASE=full keeps that profile here too. (fuzz.sh picks its own.)
fast_release=$([ "${KEYPORT_CI_RELEASE:-fast}" = full ] && echo no || echo yes)
if [ "$fast_release" = yes ]; then
  export CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 CARGO_PROFILE_RELEASE_OPT_LEVEL=0
fi

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
# The module-host channel's soak test runs 20 s (KEYPORT_SOAK_SECS sets longer). Each step that
# runs tests has a time limit far above what it takes: a hang fails the step, with its output,
# instead of silently using up CI's 90 minutes.
timeout -k 30 2400 cargo test --workspace --no-fail-fast
if [ -x scripts/bench-smoke.sh ]; then
  step "benchmark (smoke mode)"
  timeout -k 30 900 scripts/bench-smoke.sh
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
    timeout -k 30 1500 scripts/test-deb.sh
    # The package's keyport was built unoptimised (above): not left where tests/tests/readme.rs
    # would check its size as the shipped binary's on the next run.
    [ "$fast_release" = no ] || rm -f target/release/keyport
  else
    step "Debian package: skipped (not root; scripts/test-deb.sh runs it, through sudo)"
  fi
fi
step "fuzz targets (20 s each on their corpora)"
FUZZ_SECONDS=${FUZZ_SECONDS:-20} timeout -k 30 1800 scripts/fuzz.sh
step "All tests passed."
# What the run left on disk (CI's disk is shared: keep an eye on it).
du -sh target fuzz/target 2>/dev/null || true
