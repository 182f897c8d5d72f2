#!/usr/bin/env bash
# The benchmark in smoke mode (tiny counts, debug build): CI checks that it still runs. The
# fault module (a library) is built too: the counts of token calls go through it.
# Real numbers come from a release build: see README "Benchmarks".
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build -p keyport -p keyport-e2e -p keyport-fault-module --bin keyport --bin keyport-bench --lib
target/debug/keyport-bench --smoke
