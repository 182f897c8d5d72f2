#!/usr/bin/env bash
# Create Keyport's private Wine prefix (once) and put the test-only ProcessPrng shim in it.
#   scripts/wine-prefix.sh PREFIX
#   scripts/wine-prefix.sh --kill PREFIX   stop every Wine process of the prefix (its wineserver)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ "${1:-}" = "--kill" ]; then
    WINEPREFIX="$2" /usr/lib/wine/wineserver -k 2>/dev/null || true
    exit 0
fi
prefix="$1"
sys32="$prefix/drive_c/windows/system32"
shim="$sys32/bcryptprimitives.dll"
src="$root/tests/wine/bcryptprimitives.c"
mkdir -p "$(dirname "$prefix")"
# Two processes may start at once (cargo runs test binaries in parallel): one creates the prefix.
exec 9>"$prefix.lock"
flock 9
if [ ! -f "$prefix/system.reg" ]; then
    WINEPREFIX="$prefix" WINEDEBUG=-all WINEARCH=win64 WINEDLLOVERRIDES="mscoree,mshtml=" \
        /usr/lib/wine/wine64 wineboot --init >/dev/null 2>&1
    WINEPREFIX="$prefix" /usr/lib/wine/wineserver -w
fi
if [ ! -f "$shim" ] || [ "$src" -nt "$shim" ]; then
    x86_64-w64-mingw32-gcc -O2 -shared -o "$shim.tmp" "$src" \
        "$root/tests/wine/bcryptprimitives.def" -ladvapi32
    mv "$shim.tmp" "$shim"
fi
