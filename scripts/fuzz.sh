#!/usr/bin/env bash
# Run the cargo-fuzz (libFuzzer) targets in fuzz/ on their committed corpora.
#
#   scripts/fuzz.sh                 # each target for $FUZZ_SECONDS (default 30) seconds: CI smoke
#   FUZZ_RUNS=10000000 scripts/fuzz.sh rpc_request   # a long run of one target
#
# cargo-fuzz needs nightly compiler flags (-Zsanitizer): it uses the nightly toolchain when one
# is installed, else the machine's one toolchain with RUSTC_BOOTSTRAP=1 (same flags, no download).
# Installs cargo-fuzz from crates.io when it is missing. New inputs that find new coverage are
# added to fuzz/corpus/<target>/; a crash stops the run and leaves its input in fuzz/artifacts/.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

if cargo +nightly --version >/dev/null 2>&1; then
  fuzz() { cargo +nightly fuzz "$@"; }
else
  echo "fuzz: no nightly toolchain; using $(cargo --version) with RUSTC_BOOTSTRAP=1"
  fuzz() { RUSTC_BOOTSTRAP=1 cargo fuzz "$@"; }
fi
command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz

# How the targets are built. A long run (FUZZ_RUNS) gets cargo-fuzz's full build: optimised,
# one codegen unit, AddressSanitizer. The smoke run (CI) gets a build that takes half the time
# (5.7 min instead of 10.4 on a 2-core CI machine): no sanitizer (what the targets reach is
# safe Rust: the parsers, the framing, the request path on the fake backend; the agent's unsafe
# code is FFI and OS calls they never touch), opt-level 1, 16 codegen units, no debug info. It
# still runs 15,000-100,000 inputs a second. FUZZ_FULL=1 asks for the full build anyway.
if [ -n "${FUZZ_RUNS:-}" ] || [ -n "${FUZZ_FULL:-}" ]; then
  build=(-O)
else
  build=(-O -s none --codegen-units 16)
  export CARGO_PROFILE_RELEASE_OPT_LEVEL=1 CARGO_PROFILE_RELEASE_DEBUG=false
fi

targets=("$@")
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(fuzz list)
fuzz build "${build[@]}"
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t"
  if [ -n "${FUZZ_RUNS:-}" ]; then
    # A long run: what it finds joins the committed corpus (minimise it with `fuzz cmin`).
    limit=(-runs="$FUZZ_RUNS")
    dirs=("corpus/$t")
  else
    # The smoke run starts from the corpus but leaves the checkout as it was.
    limit=(-max_total_time="${FUZZ_SECONDS:-30}")
    scratch=$(mktemp -d)
    dirs=("$scratch" "corpus/$t")
  fi
  echo "== fuzz $t (${limit[*]})"
  log=$(mktemp)
  status=0
  fuzz run "${build[@]}" "$t" "${dirs[@]}" -- "${limit[@]}" -print_final_stats=1 >"$log" 2>&1 || status=$?
  [ -z "${scratch:-}" ] || rm -rf "$scratch"
  # libFuzzer's chatter stays in the log; its summary (and any crash) is shown.
  grep -aE '^(#[0-9]+[[:space:]]+DONE|stat::number_of_executed_units|stat::peak_rss_mb|==[0-9]+== ERROR|thread .* panicked|SUMMARY)' "$log" || true
  if [ "$status" -ne 0 ]; then
    tail -40 "$log" >&2
    echo "fuzz: $t failed (its input is in fuzz/artifacts/$t/)" >&2
    rm -f "$log"
    exit 1
  fi
  rm -f "$log"
done
