#!/usr/bin/env bash
# Build Keyport's Debian package (scripts/build-deb.sh), check it, install it, use it, remove it.
#
#   1. the package: control fields, the files it ships, its conffiles, the changelog's version;
#   2. lintian, when installed: its output is printed; errors fail the test, warnings do not,
#      except the tags in LINTIAN_KNOWN below (each says why it is there);
#   3. dpkg -i (apt-get install -f for missing dependencies), then the installed files:
#      keyport --version / --help, the man pages (man, or zcat without man-db), the shell
#      completions (bash; zsh and fish when installed), desktop-file-validate on both desktop
#      entries, systemd-analyze verify --user on the user unit;
#   4. the native-messaging host manifests (Chromium/Brave, Chrome, Edge, Firefox) are exactly
#      what the installed keyport renders; the installed agent on SoftHSM: `keyport --no-tray
#      --listen 127.0.0.1:0 --module /usr/lib/softhsm/libsofthsm2.so` must print its ready line
#      and answer HTTP, and relay through the installed binary started as Chromium starts its
#      host; then SIGTERM must stop it;
#   5. dpkg -r (the binary must be gone, the conffiles kept), then dpkg --purge.
#
# Needs root (or sudo) for dpkg, and the Debian packages dpkg-dev (dpkg-shlibdeps, for cargo-deb),
# desktop-file-utils, systemd (systemd-analyze), softhsm2; lintian and man-db are used when there.
# Idempotent: a keyport package already installed (an earlier run) is replaced, then removed; an
# /etc/keyport that was there before is put back at the end. Exit status non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."

# Errors lintian reports that this package cannot fix by itself yet:
# - malformed-contact, bogus-mail-host-in-debian-changelog: the project has no contact address
#   yet; set `maintainer = "Name <address>"` in [package.metadata.deb] (agent/Cargo.toml) and
#   the same in packaging/debian/changelog, then drop these two.
LINTIAN_KNOWN=${LINTIAN_KNOWN:-malformed-contact,bogus-mail-host-in-debian-changelog}

SOFTHSM_MODULE=/usr/lib/softhsm/libsofthsm2.so
start=$(date +%s)
fail() {
  echo "test-deb.sh: FAILED: $*" >&2
  exit 1
}
step() { echo "== $*"; }
ok() { echo "   ok: $*"; }

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || fail "run as root (dpkg -i / dpkg -r), or install sudo"
  sudo="sudo"
fi
for tool in dpkg-deb dpkg-shlibdeps desktop-file-validate systemd-analyze; do
  command -v "$tool" >/dev/null ||
    fail "$tool is missing: apt-get install dpkg-dev desktop-file-utils systemd"
done
[ -f "$SOFTHSM_MODULE" ] || fail "$SOFTHSM_MODULE is missing: apt-get install softhsm2"

tmp=$(mktemp -d)
agent_pid=""
etc_backup=""
cleanup() {
  local status=$?
  if [ -n "$agent_pid" ] && kill -0 "$agent_pid" 2>/dev/null; then
    kill -KILL "$agent_pid" 2>/dev/null || true
  fi
  # Never leave a half-tested package behind (a failure part-way, Ctrl-C).
  if dpkg-query -W -f='${Status}' keyport 2>/dev/null | grep -qv "not-installed"; then
    $sudo dpkg --purge keyport >/dev/null 2>&1 || true
  fi
  if [ -n "$etc_backup" ]; then
    $sudo rm -rf /etc/keyport
    $sudo mv "$etc_backup" /etc/keyport
    echo "   (put back the /etc/keyport that was there before)"
  fi
  rm -rf "$tmp"
  exit $status
}
trap cleanup EXIT

# ---------------------------------------------------------------------------------------------
step "build (scripts/build-deb.sh)"
deb=$(scripts/build-deb.sh | tail -n 1) || fail "scripts/build-deb.sh failed (above)"
[ -f "$deb" ] || fail "scripts/build-deb.sh reported no package"
ok "$deb ($(du -h "$deb" | cut -f1))"

# ---------------------------------------------------------------------------------------------
step "package: control fields"
dpkg-deb --info "$deb" >"$tmp/info" || fail "dpkg-deb --info cannot read $deb"
sed 's/^/   /' "$tmp/info" | grep -E '^\s+(Package|Version|Architecture|Depends|Recommends|Suggests|Installed-Size):'
field() { dpkg-deb --field "$deb" "$1"; }
[ "$(field Package)" = keyport ] || fail "Package is '$(field Package)', not keyport"
version=$(field Version)
[[ "$(field Depends)" == *libc6* ]] || fail "Depends has no libc6: \$auto (dpkg-shlibdeps) did not run"
for want in libayatana-appindicator3-1 pinentry-gnome3 pinentry-gtk2 pinentry-qt; do
  [[ "$(field Recommends)" == *"$want"* ]] || fail "Recommends lacks $want"
done
for want in opensc p11-kit-modules softhsm2; do
  [[ "$(field Suggests)" == *"$want"* ]] || fail "Suggests lacks $want"
done
ok "keyport $version"

step "package: files"
# The native-messaging host manifests where the browsers read them (Brave reads Chromium's
# folder; docs/BROWSERS.md). Those under /etc/opt (Google Chrome, Microsoft Edge) are links that
# postinst makes to the package's copy in /usr/share/keyport: a package may not ship files there.
host_manifests=(
  /etc/chromium/native-messaging-hosts/org.keyport.agent.json
  /etc/opt/chrome/native-messaging-hosts/org.keyport.agent.json
  /etc/opt/edge/native-messaging-hosts/org.keyport.agent.json
  /usr/lib/mozilla/native-messaging-hosts/org.keyport.agent.json
)
etc_opt_manifests=("${host_manifests[@]:1:2}")
dpkg-deb --contents "$deb" | awk '{print $NF}' | sed 's|^\./|/|' >"$tmp/contents"
expected=(
  /usr/bin/keyport
  /etc/xdg/autostart/keyport.desktop
  /etc/keyport/keyport.toml
  /usr/lib/systemd/user/keyport.service
  /usr/share/applications/keyport.desktop
  /usr/share/icons/hicolor/scalable/apps/keyport.svg
  /usr/share/man/man1/keyport.1.gz
  /usr/share/bash-completion/completions/keyport
  /usr/share/zsh/vendor-completions/_keyport
  /usr/share/fish/vendor_completions.d/keyport.fish
  /usr/share/doc/keyport/copyright
  /usr/share/doc/keyport/changelog.Debian.gz
  /usr/share/doc/keyport/README.md
  /etc/chromium/native-messaging-hosts/org.keyport.agent.json
  /usr/share/keyport/native-messaging/chromium/org.keyport.agent.json
  /usr/lib/mozilla/native-messaging-hosts/org.keyport.agent.json
)
for path in "${expected[@]}"; do
  grep -qxF "$path" "$tmp/contents" || fail "the package lacks $path"
done
ok "${#expected[@]} expected files, $(grep -c '[^/]$' "$tmp/contents") files in all"
grep '^/usr/share/man/man1/.' "$tmp/contents" | sed 's/^/   man page: /'

step "package: conffiles, copyright, changelog"
dpkg-deb --ctrl-tarfile "$deb" | tar -xO ./conffiles >"$tmp/conffiles" 2>/dev/null ||
  fail "the package has no conffiles"
for path in /etc/keyport/keyport.toml /etc/xdg/autostart/keyport.desktop "${host_manifests[0]}"; do
  grep -qxF "$path" "$tmp/conffiles" || fail "$path is not a conffile"
done
if grep -q '^/etc/opt/' "$tmp/contents"; then
  fail "the package ships files under /etc/opt (postinst links them instead)"
fi
mkdir "$tmp/x"
dpkg-deb --extract "$deb" "$tmp/x"
head -n 1 "$tmp/x/usr/share/doc/keyport/copyright" |
  grep -q '^Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/' ||
  fail "usr/share/doc/keyport/copyright is not in the machine-readable format"
changelog_version=$(zcat "$tmp/x/usr/share/doc/keyport/changelog.Debian.gz" | head -n 1 |
  sed -n 's/^keyport (\([^)]*\)).*/\1/p')
[ "$changelog_version" = "$version" ] ||
  fail "packaging/debian/changelog's latest entry is '$changelog_version', the package is $version: add an entry"
# Everything in the example configuration must be commented out: it must not change behaviour.
if grep -vE '^\s*(#|$)' "$tmp/x/etc/keyport/keyport.toml"; then
  fail "/etc/keyport/keyport.toml sets something (above): as shipped it must only hold comments"
fi
ok "conffiles: $(tr '\n' ' ' <"$tmp/conffiles")"

# ---------------------------------------------------------------------------------------------
step "lintian"
if command -v lintian >/dev/null; then
  # Root gets a notice ("running with root privileges is not recommended"): not a finding.
  if lintian --display-info --suppress-tags "$LINTIAN_KNOWN" --fail-on error "$deb" >"$tmp/lintian" 2>&1; then
    lintian_status=0
  else
    lintian_status=$?
  fi
  grep -v 'running with root privileges' "$tmp/lintian" | sed 's/^/   /' || true
  [ "$lintian_status" -eq 0 ] || fail "lintian found errors (above); known ones are listed in LINTIAN_KNOWN"
  ok "no lintian errors (warnings: $(grep -c '^W:' "$tmp/lintian" || true); suppressed: $LINTIAN_KNOWN)"
else
  echo "   skipped: lintian is not installed (apt-get install lintian)"
fi

# ---------------------------------------------------------------------------------------------
step "install (dpkg -i)"
# An administrator's /etc/keyport (edited, or from no package) survives the test: moved aside
# first, put back at the end, even if an installed keyport package is purged in between.
if [ -e /etc/keyport ]; then
  etc_backup=$(mktemp -u /etc/keyport.test-deb-backup.XXXXXX)
  $sudo mv /etc/keyport "$etc_backup"
  echo "   moved the existing /etc/keyport aside (put back at the end)"
fi
if dpkg-query -W -f='${Status}' keyport 2>/dev/null | grep -qv "not-installed"; then
  echo "   a keyport package is installed already ($(dpkg-query -W -f='${Version} ${Status}' keyport)): replacing it"
  $sudo dpkg --purge keyport >/dev/null
fi
export DEBIAN_FRONTEND=noninteractive
if ! $sudo dpkg --force-confdef --force-confold -i "$deb" >"$tmp/dpkg" 2>&1; then
  cat "$tmp/dpkg"
  echo "   dpkg -i failed: installing missing dependencies with apt-get install -f"
  $sudo apt-get install -f -y -q --no-install-recommends || fail "apt-get install -f failed"
fi
[ "$(dpkg-query -W -f='${Status}' keyport)" = "install ok installed" ] ||
  fail "keyport is not installed: $(dpkg-query -W -f='${Status}' keyport)"
ok "$(dpkg-query -W -f='${Package} ${Version}: ${Status}' keyport)"

# Minimal container images tell dpkg to skip /usr/share/man and /usr/share/doc (path-exclude):
# there those files are checked in the package instead.
installed() {
  local path=$1
  [ -e "$path" ] && return 0
  case "$path" in
    /usr/share/man/* | /usr/share/doc/*)
      if grep -qsE '^path-exclude[= ]/usr/share/(man|doc)/' /etc/dpkg/dpkg.cfg /etc/dpkg/dpkg.cfg.d/*; then
        echo "   note: $path not installed: dpkg is told to skip it here (/etc/dpkg/dpkg.cfg.d)"
        return 1
      fi
      ;;
  esac
  fail "$path was not installed"
}
for path in "${expected[@]}"; do
  installed "$path" || true
done

step "the installed binary"
/usr/bin/keyport --version >"$tmp/version" || fail "keyport --version failed"
grep -qx "keyport ${version%-*}" "$tmp/version" || fail "keyport --version says '$(cat "$tmp/version")'"
ok "--version: $(cat "$tmp/version")"
/usr/bin/keyport --help >"$tmp/help" || fail "keyport --help failed"
grep -q -- '--module' "$tmp/help" || fail "keyport --help does not mention --module"
ok "--help mentions --module"

step "man pages"
man_page=/usr/share/man/man1/keyport.1.gz
installed "$man_page" || man_page=$tmp/x/usr/share/man/man1/keyport.1.gz
if command -v man >/dev/null; then
  # Rendered (wide, so that nothing is hyphenated); groff's complaints count as failures.
  pages=0
  for page in "$(dirname "$man_page")"/keyport*.1.gz; do
    LC_ALL=C.UTF-8 MANWIDTH=200 man --warnings -l "$page" >"$tmp/man" 2>"$tmp/man.err" ||
      fail "man -l $page failed: $(cat "$tmp/man.err")"
    [ ! -s "$tmp/man.err" ] || fail "man --warnings -l $page: $(cat "$tmp/man.err")"
    pages=$((pages + 1))
  done
  ok "$pages pages render without groff warnings"
  LC_ALL=C.UTF-8 MANWIDTH=200 man -l "$man_page" >"$tmp/man"
  if [ "$man_page" = /usr/share/man/man1/keyport.1.gz ]; then
    [ "$(man -w keyport)" = "$man_page" ] || fail "man -w keyport finds '$(man -w keyport)'"
    ok "man keyport finds $man_page"
  fi
else
  zcat "$man_page" | sed 's/\\-/-/g' >"$tmp/man"
  echo "   (man-db is not installed: read with zcat)"
fi
grep -q -- '--module' "$tmp/man" || fail "the man page does not mention --module"
ok "keyport(1) mentions --module"

step "shell completions"
bash -c 'source /usr/share/bash-completion/completions/keyport && complete -p keyport' >/dev/null ||
  fail "the bash completion does not load"
ok "bash: loads, completes keyport"
if command -v zsh >/dev/null; then
  zsh -n /usr/share/zsh/vendor-completions/_keyport || fail "the zsh completion has syntax errors"
  ok "zsh: syntax"
fi
if command -v fish >/dev/null; then
  fish -n /usr/share/fish/vendor_completions.d/keyport.fish || fail "the fish completion has syntax errors"
  ok "fish: syntax"
fi

step "desktop entries (desktop-file-validate)"
for file in /usr/share/applications/keyport.desktop /etc/xdg/autostart/keyport.desktop; do
  # Errors (exit status 1) and warnings (status 0) fail; hints are only printed.
  desktop-file-validate "$file" >"$tmp/dfv" 2>&1 || fail "desktop-file-validate $file: $(cat "$tmp/dfv")"
  ! grep -q ': warning: ' "$tmp/dfv" || fail "desktop-file-validate $file: $(cat "$tmp/dfv")"
  sed 's/^/   /' "$tmp/dfv"
  ok "$file"
done

step "systemd user unit (systemd-analyze verify --user)"
# No user manager runs here (CI, containers): --user only needs a private XDG_RUNTIME_DIR. It
# checks the unit's syntax, ExecStart, and Documentation=man:keyport(1) when man-db can find it.
# verify exits 0 on unknown keys and bad values, so any output at all is a failure.
mkdir -m 700 "$tmp/run"
man_check=--man=yes
{ command -v man >/dev/null && [ -e /usr/share/man/man1/keyport.1.gz ]; } || man_check=--man=no
if ! XDG_RUNTIME_DIR=$tmp/run systemd-analyze verify --user "$man_check" \
  /usr/lib/systemd/user/keyport.service >"$tmp/verify" 2>&1 || [ -s "$tmp/verify" ]; then
  cat "$tmp/verify" >&2
  fail "systemd-analyze verify --user /usr/lib/systemd/user/keyport.service (above)"
fi
grep -qx 'ExecStart=/usr/bin/keyport' /usr/lib/systemd/user/keyport.service ||
  fail "the unit does not run /usr/bin/keyport without arguments"
grep -qx 'Exec=/usr/bin/keyport' /etc/xdg/autostart/keyport.desktop ||
  fail "the autostart entry does not run /usr/bin/keyport without arguments"
ok "/usr/lib/systemd/user/keyport.service ($man_check)"

step "native-messaging host manifests"
# Each manifest, where its browser reads it, is exactly what the installed keyport renders for
# itself: valid JSON, path /usr/bin/keyport, the pinned extension id (Chromium family) or Gecko id
# (Firefox).
for path in "${etc_opt_manifests[@]}"; do
  [ -L "$path" ] || fail "postinst did not link $path"
done
for path in "${host_manifests[@]}"; do
  case "$path" in
    /usr/lib/mozilla/*) family=firefox ;;
    *) family=chromium ;;
  esac
  /usr/bin/keyport native-host --print-manifest "$family" >"$tmp/manifest.want" ||
    fail "keyport native-host --print-manifest $family failed"
  cmp -s "$path" "$tmp/manifest.want" || {
    diff "$tmp/manifest.want" "$path" >&2 || true
    fail "$path is not the manifest keyport renders ($family, above)"
  }
done
grep -q '"path": "/usr/bin/keyport"' "$tmp/manifest.want" || fail "the manifest's path is not /usr/bin/keyport"
extension_id=$(sed -n 's|.*"chrome-extension://\([a-p]\{32\}\)/".*|\1|p' /etc/chromium/native-messaging-hosts/org.keyport.agent.json)
[ -n "$extension_id" ] || fail "the Chromium manifest allows no chrome-extension://ID/"
ok "${#host_manifests[@]} manifests; extension id $extension_id; Gecko id keyport@keyport.org"

# ---------------------------------------------------------------------------------------------
step "the installed agent on SoftHSM"
# A private home: the person's config, state and SoftHSM's tokens stay in $tmp.
export HOME=$tmp/home XDG_CONFIG_HOME=$tmp/home/.config XDG_STATE_HOME=$tmp/home/.local/state
mkdir -p "$XDG_CONFIG_HOME" "$XDG_STATE_HOME" "$tmp/tokens"
printf 'directories.tokendir = %s\nobjectstore.backend = file\n' "$tmp/tokens" >"$tmp/softhsm2.conf"
export SOFTHSM2_CONF=$tmp/softhsm2.conf
if grep -qE '^  config( |$)' "$tmp/help"; then
  # `keyport config` (when the CLI has it): the installed /etc/keyport/keyport.toml is read.
  /usr/bin/keyport config >"$tmp/config" 2>&1 || fail "keyport config failed: $(cat "$tmp/config")"
  grep -q '/etc/keyport/keyport.toml' "$tmp/config" ||
    fail "keyport config does not read /etc/keyport/keyport.toml: $(cat "$tmp/config")"
  ok "keyport config reads /etc/keyport/keyport.toml"
fi
/usr/bin/keyport --no-tray --listen 127.0.0.1:0 --module "$SOFTHSM_MODULE" \
  --allow-origin https://deb-test.example >"$tmp/agent.out" 2>"$tmp/agent.err" &
agent_pid=$!
url=""
for _ in $(seq 1 200); do
  url=$(sed -n 's/.*listening on \(ws:\/\/[^ ]*\).*/\1/p' "$tmp/agent.out" | head -n 1)
  [ -n "$url" ] && break
  kill -0 "$agent_pid" 2>/dev/null || break
  sleep 0.1
done
if [ -z "$url" ]; then
  echo "--- agent stdout:" >&2
  cat "$tmp/agent.out" >&2
  echo "--- agent stderr:" >&2
  cat "$tmp/agent.err" >&2
  fail "the installed agent printed no ready line ('listening on ws://...') within 20 s"
fi
ok "ready line: $(head -n 1 "$tmp/agent.out")"
port=${url##*:}
port=${port%%/*}
# It answers HTTP on that port (whatever the answer: a page's request would be a WebSocket).
status=$(timeout 5 bash -c "exec 3<>/dev/tcp/127.0.0.1/$port
  printf 'GET / HTTP/1.1\r\nHost: 127.0.0.1:$port\r\nConnection: close\r\n\r\n' >&3
  head -n 1 <&3") || fail "nothing answers on 127.0.0.1:$port"
[[ "$status" == HTTP/1.1* ]] || fail "127.0.0.1:$port answered '$status', not HTTP"
ok "answers HTTP on 127.0.0.1:$port: ${status%$'\r'}"

# The installed binary as Chromium starts its native-messaging host: a hello in the browsers'
# framing (4-byte length in the machine's order, little-endian here) on stdin, the answer on
# stdout; the agent's address from the person's keyport.toml; stdin's end ends the host.
mkdir -p "$XDG_CONFIG_HOME/keyport"
printf 'listen = "127.0.0.1:%s"\n' "$port" >"$XDG_CONFIG_HOME/keyport/keyport.toml"
frame() { # text (ASCII) -> framed on stdout
  local n=${#1}
  printf "\\x$(printf %02x $((n & 255)))\\x$(printf %02x $(((n >> 8) & 255)))\\x00\\x00"
  printf '%s' "$1"
}
{
  frame '{"keyport":"hello","version":1,"origin":"https://deb-test.example"}'
  frame '{"jsonrpc":"2.0","id":1,"method":"keyport.version"}'
  sleep 1
} | timeout 10 /usr/bin/keyport "chrome-extension://$extension_id/" >"$tmp/host.out" 2>"$tmp/host.err" ||
  fail "the installed host failed or did not exit when stdin closed: $(cat "$tmp/host.err")"
grep -q '{"keyport":"ready","agent":"ws://127.0.0.1:'"$port"'/"}' "$tmp/host.out" ||
  fail "the installed host did not answer ready: $(cat -v "$tmp/host.out") $(cat "$tmp/host.err")"
grep -q '"protocol":' "$tmp/host.out" ||
  fail "keyport.version through the installed host got no answer: $(cat -v "$tmp/host.out")"
ok "the installed host relays: ready, keyport.version answered, exited with stdin"
rm -f "$XDG_CONFIG_HOME/keyport/keyport.toml"

kill -TERM "$agent_pid"
for _ in $(seq 1 100); do
  kill -0 "$agent_pid" 2>/dev/null || break
  sleep 0.1
done
if kill -0 "$agent_pid" 2>/dev/null; then
  fail "the agent did not stop within 10 s of SIGTERM"
fi
agent_status=0
wait "$agent_pid" || agent_status=$?
agent_pid=""
[ "$agent_status" -eq 0 ] || {
  cat "$tmp/agent.err" >&2
  fail "the agent exited with status $agent_status on SIGTERM"
}
ok "stopped by SIGTERM (exit status 0)"

# ---------------------------------------------------------------------------------------------
step "remove (dpkg -r), then purge"
$sudo dpkg -r keyport >/dev/null || fail "dpkg -r keyport failed"
[ ! -e /usr/bin/keyport ] || fail "/usr/bin/keyport is still there after dpkg -r"
[ ! -e /usr/lib/systemd/user/keyport.service ] || fail "the user unit is still there after dpkg -r"
[ -e /etc/keyport/keyport.toml ] || fail "dpkg -r removed the conffile /etc/keyport/keyport.toml"
for path in "${etc_opt_manifests[@]}"; do
  [ ! -e "$path" ] && [ ! -L "$path" ] || fail "postrm left $path after dpkg -r"
done
ok "binary gone, conffiles kept ($(dpkg-query -W -f='${Status}' keyport))"
$sudo dpkg --purge keyport >/dev/null || fail "dpkg --purge keyport failed"
for path in /etc/keyport/keyport.toml /etc/xdg/autostart/keyport.desktop "${host_manifests[@]}"; do
  [ ! -e "$path" ] || fail "$path is still there after dpkg --purge"
done
ok "purged: conffiles gone"

echo "Debian package OK: $deb ($(($(date +%s) - start)) s)"
