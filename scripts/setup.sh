#!/usr/bin/env bash
# Install the system packages Keyport needs on Debian/Ubuntu (as root, or through sudo).
# Reads .ci/packages*.txt. Idempotent: installs only what is missing.
#   --cross: also what the Windows and macOS builds and the Wine tests need (scripts/test-all.sh):
#            .ci/windows-packages.txt and rustup's Windows and macOS standard libraries.
#   --demo:  only what scripts/demo.sh needs (.ci/demo-packages.txt, a subset of the full lists):
#            no browsers, no test tools.
#   --list:  print the packages that would be installed (none missing: nothing), install nothing.
set -euo pipefail
cross=false
demo=false
list=false
for arg in "$@"; do
  case "$arg" in
    --cross) cross=true ;;
    --demo) demo=true ;;
    --list) list=true ;;
    *) echo "setup.sh: unknown option $arg (--cross, --demo, --list)" >&2; exit 2 ;;
  esac
done
cd "$(dirname "$0")/.."

packages() { sed 's/#.*//' "$@" | awk 'NF {print $1}' | sort -u; }
mapfile -t wanted < <(packages .ci/packages*.txt)
if $demo; then
  # The demo's list must stay a subset, so that the full install (the tests, CI) covers the demo.
  extra=$(comm -23 <(packages .ci/demo-packages.txt) <(printf '%s\n' "${wanted[@]}"))
  if [ -n "$extra" ]; then
    echo "setup.sh: .ci/demo-packages.txt names packages missing from .ci/packages*.txt: $extra" >&2
    exit 1
  fi
  mapfile -t wanted < <(packages .ci/demo-packages.txt)
fi
missing=()
for p in "${wanted[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if $list; then
  ((${#missing[@]})) && printf '%s\n' "${missing[@]}"
  exit 0
fi
if ((${#missing[@]})); then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "Installing: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# The Windows build and Wine (issue 21): with their recommended packages (.ci/windows-packages.txt).
windows=()
$cross && mapfile -t windows < <(sed 's/#.*//' .ci/windows-packages.txt | awk 'NF {print $1}')
missing=()
for p in ${windows[@]+"${windows[@]}"}; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "Installing (Windows build and Wine): ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
command -v cargo >/dev/null || { echo "Rust (cargo) is required: https://rustup.rs" >&2; exit 1; }
# Windows and macOS are type-checked by the test command (issue 21): their standard libraries.
if $cross && command -v rustup >/dev/null; then
  installed=$(rustup target list --installed)
  for t in x86_64-pc-windows-gnu aarch64-apple-darwin; do
    grep -qx "$t" <<<"$installed" || rustup target add "$t"
  done
fi
if ! command -v node >/dev/null || [ "$(node -p 'process.versions.node.split(".")[0]')" -lt 20 ]; then
  echo "Node.js 20 or newer is required for the TypeScript client and the demo page." >&2
  exit 1
fi
