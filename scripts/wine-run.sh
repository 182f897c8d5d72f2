#!/usr/bin/env bash
# Run a Windows program (x86_64-pc-windows-gnu) under Wine, in Keyport's private Wine prefix.
#
#   scripts/wine-run.sh PROGRAM.exe [ARGS...]
#
# cargo uses it as the runner of the Windows target (.cargo/config.toml), so
# `cargo test --target x86_64-pc-windows-gnu` runs the tests under Wine. The prefix
# ($KEYPORT_WINEPREFIX, default target/wine-prefix) is created on first use, and gets the test-only
# bcryptprimitives.dll (tests/wine/bcryptprimitives.c: Wine 8.0 lacks ProcessPrng, which Rust's std
# imports). Windows that programs open need an X display: run under xvfb-run, or set DISPLAY.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
prefix="${KEYPORT_WINEPREFIX:-$root/target/wine-prefix}"
wine=/usr/lib/wine/wine64
[ -x "$wine" ] || wine="$(command -v wine64 || command -v wine)"
export WINEPREFIX="$prefix" WINEDEBUG="${WINEDEBUG:--all}" WINEARCH=win64
# No Mono/Gecko download prompts; the shim is a native DLL.
export WINEDLLOVERRIDES="mscoree,mshtml=;bcryptprimitives=n,b${WINEDLLOVERRIDES:+;$WINEDLLOVERRIDES}"
"$root/scripts/wine-prefix.sh" "$prefix" >&2
exec "$wine" "$@"
