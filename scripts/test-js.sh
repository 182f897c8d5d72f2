#!/usr/bin/env bash
# The TypeScript client (js-client/): install, type check, build, then unit tests (fake agent),
# integration tests (the built package against the real agent on a SoftHSM token, openssl as the
# verifier) and headless-Chromium tests of the demo page.
#
# Needs: Node 20.14+, `cargo build -p keyport` done (or KEYPORT_BIN=/path/to/keyport), and the Debian
# packages softhsm2, opensc, gnutls-bin, openssl, dbus, chromium and firefox-esr (CHROMIUM_BIN and
# FIREFOX_BIN override /usr/bin/chromium and /usr/bin/firefox-esr).
set -euo pipefail
cd "$(dirname "$0")/.."

# The test runs use the test runner's --test-force-exit (Node 20.14+): a test that fails and
# leaves a timer or a connection behind must not keep its process, and the CI run, alive.
if ! node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 20 || (a === 20 && b >= 14) ? 0 : 1)'; then
  echo "test-js: the tests need Node.js 20.14 or newer (found $(node --version))." >&2
  exit 1
fi

bin=${KEYPORT_BIN:-target/debug/keyport}
if [ ! -x "$bin" ]; then
  echo "test-js: no agent binary at $bin: run \`cargo build -p keyport\` first, or set KEYPORT_BIN." >&2
  exit 1
fi
KEYPORT_BIN=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")
export KEYPORT_BIN
# The browser tests also load the fault-injecting PKCS #11 module (a simulated PIN pad, a card
# pulled and put back), run the scripted pinentry and the scripted notification server (consent
# through the extension door): build them where the tests look. The extension tests start
# $KEYPORT_BIN as the browsers' native-messaging host too.
if [ -z "${KEYPORT_FAULT_MODULE:-}" ] || [ -z "${KEYPORT_FAKE_PINENTRY:-}" ] || [ -z "${KEYPORT_FAKE_NOTIFICATIONS:-}" ]; then
  cargo build -p keyport-fault-module -p keyport-e2e --bin fake-pinentry --bin fake-notifications
fi

cd js-client
npm ci --no-audit --no-fund --loglevel=error
npm run typecheck
npm run build
# Each run is also bounded as a whole (each test is, by --test-timeout in package.json).
timeout -k 30 900 npm test
timeout -k 30 1800 npm run test:integration
timeout -k 30 1800 npm run test:browser
