#!/usr/bin/env bash
# Build Keyport's Windows installer on Linux: keyport.exe in release for x86_64-pc-windows-gnu
# (mingw-w64), then an MSI with wixl (msitools) from packaging/windows/keyport.wxs.
#
#   scripts/build-msi.sh [--version X.Y.Z] [--out FILE.msi]
#
# Prints the MSI's path (default target/windows/keyport-VERSION-x64.msi) as its last line.
# The version is the crate's (Cargo.toml); --version overrides it (scripts/test-msi.sh builds a
# newer one to test the upgrade). The MSI is not signed: docs/INSTALL.md, "Signing".
# Needs: rustup's x86_64-pc-windows-gnu target, gcc-mingw-w64-x86-64, wixl.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
version="" out=""
while (($#)); do
    case "$1" in
        --version) version="$2"; shift 2 ;;
        --out) out="$2"; shift 2 ;;
        *) echo "usage: $0 [--version X.Y.Z] [--out FILE.msi]" >&2; exit 2 ;;
    esac
done
command -v wixl >/dev/null || { echo "wixl is missing: apt-get install wixl" >&2; exit 1; }
if [ -z "$version" ]; then
    version="$(cargo metadata --no-deps --format-version 1 | python3 -c \
        'import json, sys; print(next(p["version"] for p in json.load(sys.stdin)["packages"] if p["name"] == "keyport"))')"
fi
# An MSI's ProductVersion is numbers only (major.minor.build): 1.2.3-rc.1 is 1.2.3.
msi_version="${version%%[-+]*}"
[[ "$msi_version" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || { echo "bad version: $version" >&2; exit 2; }
out="${out:-$root/target/windows/keyport-$version-x64.msi}"

target="x86_64-pc-windows-gnu"
target_dir="$(cargo metadata --format-version 1 --no-deps | python3 -c \
    'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
cargo build --release --locked --target "$target" -p keyport >&2
exe="$target_dir/$target/release/keyport.exe"
# Only Windows' own DLLs: nothing of mingw's runtime may be needed beside the exe.
imports="$(x86_64-w64-mingw32-objdump -p "$exe" | sed -n 's/^\s*DLL Name: //p' | tr 'A-Z' 'a-z' | sort -u)"
for dll in $imports; do
    case "$dll" in
        libgcc*|libstdc++*|libwinpthread*) echo "keyport.exe needs $dll: link it statically" >&2; exit 1 ;;
    esac
done

# wixl takes the files by the relative paths keyport.wxs names.
stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/en-US" "$(dirname "$out")"
cp "$exe" LICENSE-MIT LICENSE-APACHE "$stage/"
cp packaging/windows/keyport.wxs packaging/windows/Keyport.admx \
    packaging/windows/keyport.toml.example "$stage/"
cp packaging/windows/en-US/Keyport.adml "$stage/en-US/"
(cd "$stage" && wixl --arch x64 --define Version="$msi_version" --output keyport.msi keyport.wxs) >&2
mv "$stage/keyport.msi" "$out"
echo "$out"
