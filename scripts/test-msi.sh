#!/usr/bin/env bash
# Test Keyport's MSI under Wine: install it silently, check what it put where, run the installed
# keyport.exe (its --version, and `keyport config` reading the administrator's policy from
# %ProgramData%\Keyport\keyport.toml and HKLM\Software\Policies\Keyport), upgrade it to a newer
# MSI, uninstall it, and check that everything it installed is gone while the administrator's
# policy is untouched. Fails at the first thing that is wrong.
#
#   scripts/test-msi.sh [KEYPORT.msi]      (default: build it with scripts/build-msi.sh)
#
# Runs in a Wine prefix of its own, made afresh (target/wine-msi; KEYPORT_WINEPREFIX names
# another, used as it is). Every Wine command is bounded by a timeout.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
# The agent started at login shows its tray icon: it needs a display.
if [ -z "${DISPLAY:-}" ]; then
    exec timeout 900 xvfb-run -a "$0" "$@"
fi
step() { echo "== $*"; }
fail() { echo "FAIL: $*" >&2; exit 1; }

if [ -n "${KEYPORT_WINEPREFIX:-}" ]; then
    prefix="$KEYPORT_WINEPREFIX"
else
    prefix="$root/target/wine-msi"
    rm -rf "$prefix"
fi
export KEYPORT_WINEPREFIX="$prefix"
# No menu entries or file associations written into the Linux desktop (winemenubuilder).
export WINEDLLOVERRIDES="winemenubuilder.exe=d"
wineserver=/usr/lib/wine/wineserver
[ -x "$wineserver" ] || wineserver="$(command -v wineserver64 || command -v wineserver)"
# One Wine session for the whole test (no wineboot between commands), ended on exit.
trap 'WINEPREFIX="$prefix" timeout 30 "$wineserver" -k 2>/dev/null || true' EXIT

w() { timeout "${WINE_TIMEOUT:-120}" scripts/wine-run.sh "$@"; }
# `reg query`'s data of value $2 under key $1 (empty: no such value), without Wine's CRs.
reg_value() {
    { w reg query "$1" /v "$2" 2>/dev/null || true; } | tr -d '\r' |
        awk -v name="$2" 'tolower($1) == tolower(name) { $1 = ""; $2 = ""; sub(/^  */, ""); print }'
}
winpath() { echo "Z:${1//\//\\}"; }

step "the Group Policy template and the installer's source are well-formed XML"
xmllint --noout packaging/windows/Keyport.admx packaging/windows/en-US/Keyport.adml \
    packaging/windows/keyport.wxs

if [ $# -ge 1 ]; then
    msi="$(realpath "$1")"
    new_msi=""
else
    step "build the MSI (scripts/build-msi.sh)"
    msi="$(scripts/build-msi.sh | tail -n 1)"
fi
version="$(msiinfo export "$msi" Property | tr -d '\r' | awk '$1 == "ProductVersion" { print $2 }')"
code="$(msiinfo export "$msi" Property | tr -d '\r' | awk '$1 == "ProductCode" { print $2 }')"
[ -n "$version" ] && [ -n "$code" ] || fail "no ProductVersion/ProductCode in $msi"
echo "$msi: Keyport $version, product code $code"

step "a Wine prefix ($prefix)"
scripts/wine-prefix.sh "$prefix"
# A server that outlives each command: its first process runs wineboot (which starts what the
# Run key names, as at a login), the later ones do not.
WINEPREFIX="$prefix" "$wineserver" -p 600 </dev/null >/dev/null 2>&1
w cmd /c exit 0 >/dev/null
drive_c="$prefix/drive_c"
program_files="$drive_c/Program Files/Keyport"
start_menu="$drive_c/ProgramData/Microsoft/Windows/Start Menu/Programs"
USER="${USER:-$(id -un)}"
uninstall_key="HKLM\\Software\\Microsoft\\Windows\\CurrentVersion\\Uninstall\\$code"
run_key='HKLM\Software\Microsoft\Windows\CurrentVersion\Run'
policy_key='HKLM\Software\Policies\Keyport'

step "the administrator's policy, before any install"
mkdir -p "$drive_c/ProgramData/Keyport"
admin_file="$drive_c/ProgramData/Keyport/keyport.toml"
printf '%s\n' '# the administrator'"'"'s' 'no_origin = "deny"' \
    'allow_origins = ["https://file.example"]' 'consent_timeout_secs = 20' >"$admin_file"
admin_sum="$(sha256sum <"$admin_file")"
w reg add "$policy_key\\allow_origins" /v 1 /t REG_SZ /d https://gpo.example /f >/dev/null
w reg add "$policy_key\\allow_origins" /v 2 /t REG_SZ /d https://gpo2.example /f >/dev/null
w reg add "$policy_key\\modules" /v 1 /t REG_EXPAND_SZ /d '%SystemRoot%\System32\opensc-pkcs11.dll' /f >/dev/null
w reg add "$policy_key" /v user_may_add_origins /t REG_DWORD /d 0 /f >/dev/null
w reg add "$policy_key" /v consent_timeout_secs /t REG_DWORD /d 45 /f >/dev/null
# A port of the test's own (other agents may hold Keyport's usual one on this machine).
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
w reg add "$policy_key" /v listen /t REG_SZ /d "127.0.0.1:$port" /f >/dev/null
policy_before="$(w reg query "$policy_key" /s | tr -d '\r')"

step "msiexec /i /qn"
w msiexec /i "$(winpath "$msi")" /qn /l*v "$(winpath "$root/target/msi-install.log")" ||
    fail "msiexec /i failed (log: target/msi-install.log)"

step "the files"
for f in keyport.exe LICENSE-MIT.txt LICENSE-APACHE.txt policy/Keyport.admx \
    policy/en-US/Keyport.adml policy/keyport.toml.example; do
    [ -f "$program_files/$f" ] || fail "not installed: Program Files\\Keyport\\$f"
done
cmp -s packaging/windows/Keyport.admx "$program_files/policy/Keyport.admx" || fail "Keyport.admx differs"
cmp -s packaging/windows/en-US/Keyport.adml "$program_files/policy/en-US/Keyport.adml" || fail "Keyport.adml differs"

step "started at login: the Run value"
run="$(reg_value "$run_key" Keyport)"
[ "$run" = '"C:\Program Files\Keyport\keyport.exe"' ] || fail "Run value Keyport is [$run]"

step "the Start-menu shortcut"
# Windows puts a per-machine install's ProgramMenuFolder in All Users' Start menu; Wine 8's msi
# always uses the installing person's (its ProgramMenuFolder ignores ALLUSERS): either will do.
lnk="$start_menu/Keyport.lnk"
[ -f "$lnk" ] || lnk="$drive_c/users/$USER/AppData/Roaming/Microsoft/Windows/Start Menu/Programs/Keyport.lnk"
[ -f "$lnk" ] || fail "no Keyport.lnk in either Start menu"
# The link names its target (as ANSI or UTF-16 text).
tr -d '\0' <"$lnk" | grep -qi 'Keyport\\keyport.exe' || fail "the shortcut does not point at keyport.exe"

step "Add/Remove programs"
[ "$(reg_value "$uninstall_key" DisplayName)" = "Keyport" ] || fail "no uninstall entry $uninstall_key"
[ "$(reg_value "$uninstall_key" DisplayVersion)" = "$version" ] || fail "DisplayVersion is not $version"
reg_value "$uninstall_key" UninstallString | grep -qi "msiexec" || fail "no UninstallString"

step "at login the agent starts, and listens"
# What Windows does at logon for the Run key, Wine's wineboot does when run plainly.
listening() { ss -ltn | grep -q "127.0.0.1:$port "; }
listening && fail "127.0.0.1:$port is taken before the agent starts"
w wineboot </dev/null >/dev/null 2>&1
for _ in $(seq 1 60); do listening && break; sleep 0.5; done
listening || fail "no agent listens on 127.0.0.1:$port after the login's Run key"
w taskkill /f /im keyport.exe </dev/null >/dev/null 2>&1 || fail "taskkill keyport.exe failed"
for _ in $(seq 1 40); do listening || break; sleep 0.5; done
listening && fail "the agent still listens after taskkill"

step "keyport.exe --version, from the install folder"
out="$(w "C:\\Program Files\\Keyport\\keyport.exe" --version | tr -d '\r')" || fail "keyport.exe --version failed"
[ "$out" = "keyport $version" ] || fail "keyport.exe --version said [$out]"

step "keyport config: the policy from the registry over the ProgramData file"
config="$(w "C:\\Program Files\\Keyport\\keyport.exe" config | tr -d '\r')" || fail "keyport config failed"
expect() {
    grep -qxF -- "$1" <<<"$config" || { echo "$config" >&2; fail "keyport config lacks: $1"; }
}
expect '# Read: registry HKLM\Software\Policies\Keyport (administrator)'
expect '# Read: C:\ProgramData\Keyport\keyport.toml (administrator)'
expect 'allow_origins = ["https://gpo.example", "https://gpo2.example"]  # administrator (registry HKLM\Software\Policies\Keyport)'
# (%SystemRoot% expanded; TOML writes a text with backslashes between single quotes)
expect "modules = ['C:\\windows\\System32\\opensc-pkcs11.dll']  # administrator (registry HKLM\\Software\\Policies\\Keyport)"
expect 'consent_timeout_secs = 45  # administrator (registry HKLM\Software\Policies\Keyport)'
expect 'no_origin = "deny"  # administrator (C:\ProgramData\Keyport\keyport.toml)'
expect "listen = \"127.0.0.1:$port\"  # administrator (registry HKLM\\Software\\Policies\\Keyport)"

step "keyport config: a bad policy value is an error that names it"
w reg add "$policy_key" /v tray /t REG_SZ /d yes /f >/dev/null
set +e
err="$(w "C:\\Program Files\\Keyport\\keyport.exe" config 2>&1 >/dev/null | tr -d '\r')"
code_bad=$?
set -e
w reg delete "$policy_key" /v tray /f >/dev/null
[ "$code_bad" -eq 2 ] || fail "keyport config with a bad value exited $code_bad"
grep -qF 'invalid policy value HKLM\Software\Policies\Keyport\tray: a REG_SZ "yes" where a REG_DWORD 1 (true) or 0 (false) belongs' <<<"$err" ||
    fail "the error does not name the value: $err"

if [ $# -eq 0 ]; then
    step "upgrade: a newer MSI replaces this one"
    IFS=. read -r major minor patch <<<"$version"
    newer="$major.$minor.$((patch + 1))"
    new_msi="$(scripts/build-msi.sh --version "$newer" --out "$root/target/windows/keyport-upgrade-test.msi" | tail -n 1)"
    new_code="$(msiinfo export "$new_msi" Property | tr -d '\r' | awk '$1 == "ProductCode" { print $2 }')"
    w msiexec /i "$(winpath "$new_msi")" /qn || fail "msiexec /i (upgrade) failed"
    [ -z "$(reg_value "$uninstall_key" DisplayName)" ] || fail "the old version is still registered"
    uninstall_key="HKLM\\Software\\Microsoft\\Windows\\CurrentVersion\\Uninstall\\$new_code"
    [ "$(reg_value "$uninstall_key" DisplayVersion)" = "$newer" ] || fail "the upgrade is not registered"
    [ -f "$program_files/keyport.exe" ] || fail "keyport.exe is gone after the upgrade"
    [ -n "$(reg_value "$run_key" Keyport)" ] || fail "the Run value is gone after the upgrade"
    msi="$new_msi"
fi

step "msiexec /x /qn"
w msiexec /x "$(winpath "$msi")" /qn || fail "msiexec /x failed"
[ ! -e "$program_files" ] || fail "Program Files\\Keyport is still there: $(ls -R "$program_files")"
[ ! -e "$lnk" ] || fail "the shortcut is still there"
[ -z "$(reg_value "$run_key" Keyport)" ] || fail "the Run value is still there"
[ -z "$(reg_value "$uninstall_key" DisplayName)" ] || fail "the uninstall entry is still there"

step "the administrator's policy is untouched"
[ "$(sha256sum <"$admin_file")" = "$admin_sum" ] || fail "%ProgramData%\\Keyport\\keyport.toml changed"
[ "$(w reg query "$policy_key" /s | tr -d '\r')" = "$policy_before" ] || fail "the registry policy changed"

echo "MSI test: install, files, Run value and login start, shortcut, uninstall entry, keyport.exe, policy, upgrade, uninstall: all passed"
