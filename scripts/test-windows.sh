#!/usr/bin/env bash
# Keyport on Windows, tested under Wine on Linux (issue 21; docs/INSTALL.md, "Windows"):
#   1. the agent's unit tests for x86_64-pc-windows-gnu, run under Wine (module host, job object,
#      pipes, registry policy, the Win32 dialogs driven by window messages);
#   2. the module host's channel soak, and the test token DLL's own tests, under Wine;
#   3. the MSI: built (release keyport.exe), installed, run, upgraded, removed (scripts/test-msi.sh);
#   4. end to end: the MSI installed into a fresh prefix, the installed agent, Linux Chromium on a
#      public site, the agent's dialogs answered with xdotool, openssl verifying
#      (js-client/test/wine/windows.test.mjs).
# Everything runs on a private X display (xvfb-run) and in private Wine prefixes under target/.
#
# Needs `scripts/setup.sh --cross` (mingw-w64, Wine, wixl) and js-client's npm packages (test-js.sh
# installs them). Each step is bounded by a timeout.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${DISPLAY:-}" ]; then
  exec xvfb-run -a -s "-screen 0 1280x1024x24" "$0" "$@"
fi
T=x86_64-pc-windows-gnu
export WINEDEBUG=-all
target_dir="$(cargo metadata --format-version 1 --no-deps | python3 -c \
  'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
win_path() { echo "Z:$1" | tr / '\\'; }

echo "== Windows: build (debug) the agent and the test token DLL"
cargo build --target "$T" -p keyport -p keyport-soft-token
dll="$target_dir/$T/debug/keyport_soft_token.dll"

echo "== Windows: the agent's unit tests under Wine"
timeout 900 cargo test --target "$T" -p keyport --lib --test admx
echo "== Windows: the host channel soak under Wine (20 s, the test token DLL as the library)"
# The token reads its files from beside the DLL (keyport_soft_token.d): a provisioned copy.
tok="$(mktemp -d)"
trap 'rm -rf "$tok"' EXIT
cp "$dll" "$tok/"
tests/soft-token/provision.sh "$tok/keyport_soft_token.d"
KEYPORT_SOAK_SECS=${KEYPORT_SOAK_SECS_WINE:-20} \
  KEYPORT_SOAK_MODULE="$(win_path "$tok/keyport_soft_token.dll")" \
  timeout 600 cargo test --target "$T" -p keyport --test host_channel
echo "== Windows: the test token DLL's tests under Wine"
timeout 600 cargo test --target "$T" -p keyport-soft-token

echo "== Windows: the MSI (release keyport.exe), installed, upgraded, removed"
msi="$(scripts/build-msi.sh | tail -n 1)"
timeout 900 scripts/test-msi.sh "$msi"

echo "== Windows: end to end under Wine (installed agent, Chromium, dialogs, openssl)"
(
  cd js-client
  [ -f demo/keyport-client.js ] || npm run build >/dev/null
  KEYPORT_MSI="$msi" KEYPORT_SOFT_TOKEN_DLL="$dll" timeout 900 \
    node --test --test-force-exit --test-concurrency=1 test/wine/*.test.mjs
)
echo "Windows tests passed."
