#!/usr/bin/env bash
# Build Keyport's Debian package with cargo-deb (release build): target/debian/keyport_*.deb.
# Installs cargo-deb first if it is missing; generates the man pages and shell completions from
# the real command-line definition (cargo run -p xtask -- dist-assets). Extra arguments go to
# `cargo deb` (e.g. --no-build, --target). The last line on stdout is the .deb's path.
# Packaging metadata: [package.metadata.deb] in agent/Cargo.toml; files: packaging/.
set -euo pipefail
cd "$(dirname "$0")/.."

# cargo-deb's major version decides how the metadata is read: install the one this was made with.
CARGO_DEB_VERSION=${CARGO_DEB_VERSION:-3.8.0}
have=$(cargo deb --version 2>/dev/null | awk '{print $2}') || true
if [ "${have%%.*}" != "${CARGO_DEB_VERSION%%.*}" ]; then
  echo "== cargo install --locked cargo-deb@$CARGO_DEB_VERSION (found: ${have:-none})" >&2
  cargo install --locked cargo-deb --version "$CARGO_DEB_VERSION" >&2
fi

echo "== man pages and shell completions: cargo run -p xtask -- dist-assets target/dist-assets" >&2
cargo run -q -p xtask -- dist-assets target/dist-assets >/dev/null

echo "== cargo deb -p keyport (release build)" >&2
# cargo-deb warns that ../target/dist-assets is not a build product: it is not meant to be one.
deb=$(cargo deb -p keyport "$@" 2> >(grep -v "^warning: Only source paths starting with exactly 'target/release/'" >&2) | tail -n 1)
if [ ! -f "$deb" ]; then
  echo "build-deb.sh: cargo deb did not report a package (got: '$deb')" >&2
  exit 1
fi
echo "Built $deb" >&2
echo "$deb"
