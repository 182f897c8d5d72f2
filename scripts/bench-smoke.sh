#!/usr/bin/env bash
# The benchmark in smoke mode (tiny counts, debug build): CI checks that it still runs.
# Real numbers come from a release build: see README "Benchmarks".
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build -p keyport -p keyport-e2e --bin keyport --bin keyport-bench
target/debug/keyport-bench --smoke
