#!/usr/bin/env bash
# Run the Keyport agent on a ready-made SoftHSM demo token, with the demo page.
# No hardware, no manual steps: installs what is missing, builds, provisions, runs.
#   PORT=10443 scripts/demo.sh
#   TRUST_DEMO=1 scripts/demo.sh   # no desktop to ask (a server, SSH): the demo page signs unasked
set -euo pipefail
cd "$(dirname "$0")/.."
# Only what the demo needs (.ci/demo-packages.txt): the test command installs the rest.
scripts/setup.sh --demo
cargo build --release -p keyport
bin=${CARGO_TARGET_DIR:-target}/release/keyport
if [ -f js-client/package.json ]; then
  (
    cd js-client
    # npm ci (8-13 s) only when the lock file, the installed tree or Node changed since the last
    # one: npm rewrites node_modules/.package-lock.json whenever it changes node_modules.
    stamp=node_modules/.keyport-demo-npm-ci
    state() { cat package-lock.json node_modules/.package-lock.json 2>/dev/null | sha256sum; node --version; }
    if [ ! -f "$stamp" ] || [ "$(state)" != "$(cat "$stamp")" ]; then
      npm ci --no-audit --no-fund --loglevel=error
      state >"$stamp"
    fi
    npm run --silent build
  )
fi
state=${KEYPORT_DEMO_STATE:-$PWD/target/demo}
# (Re)provision when there is no token yet, or one from before the demo had its P-521 key.
if [ ! -f "$state/token/softhsm2.conf" ] || [ ! -f "$state/token/certs/ec-p521.der" ]; then
  KEYPORT_NO_ORPHAN=1 scripts/provision-token.sh "$state/token" 1234
fi
export SOFTHSM2_CONF="$state/token/softhsm2.conf"
port=${PORT:-10443}
# TRUST_DEMO=1: pre-approve the demo page on this very port (its origin is http://127.0.0.1:PORT),
# for machines where no consent prompt can be shown; any other page is still asked.
trust=()
if [ "${TRUST_DEMO:-0}" = 1 ]; then
  trust=(--trust-origin "http://127.0.0.1:$port")
  echo "TRUST_DEMO=1: the demo page (http://127.0.0.1:$port) signs without asking."
fi
echo "Demo token: 'keyport-demo' (PIN 1234) with RSA-2048, P-256, P-384 and P-521 keys."
echo "Open http://127.0.0.1:$port/demo in a browser. Ctrl-C stops the agent."
exec "$bin" --demo --demo-dir js-client/demo \
  --listen "127.0.0.1:$port" \
  --module /usr/lib/softhsm/libsofthsm2.so \
  --state-file "$state/sites.json" "${trust[@]}" "$@"
