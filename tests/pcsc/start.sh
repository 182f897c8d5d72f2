#!/bin/sh
# Usage: tests/pcsc/start.sh DIR
#
# Starts a private pcscd (pcsc-lite 1.9.9, Debian 12) whose only reader is the
# vpcd virtual reader, and leaves the system alone:
#   - pcscd runs in its own mount namespace where DIR/run is bind-mounted on
#     /run, so its socket is DIR/run/pcscd/pcscd.comm and its pid file is
#     DIR/run/pcscd/pcscd.pid (pcsc-lite 1.9.9's daemon always uses the
#     compiled-in /run/pcscd paths; only the client library reads
#     PCSCLITE_CSOCK_NAME);
#   - an empty directory is bind-mounted on /usr/lib/pcsc/drivers there, so it
#     loads no USB driver and cannot grab a real reader the system pcscd owns;
#   - it runs in its own network namespace, so vpcd's listening ports (it binds
#     0.0.0.0:PORT and PORT+1, one per virtual slot) are private: parallel
#     instances do not clash and nothing listens on the host's interfaces.
#     card.sh enters that namespace to start vicc (on 127.0.0.1).
# Needs root (CAP_SYS_ADMIN for unshare). Prints the client environment and
# writes it to DIR/env (a file to source). Stop with stop.sh DIR.
set -eu

die() { echo "start.sh: $*" >&2; exit 1; }
# shellcheck source=SCRIPTDIR/lib.sh
. "$(dirname "$0")/lib.sh"

[ $# -eq 1 ] || { echo "usage: $0 DIR" >&2; exit 2; }
mkdir -p "$1"
DIR=$(cd "$1" && pwd)
case $DIR in *[[:space:]]*) die "DIR must not contain white space (reader.conf syntax)";; esac
PORT=${VPCD_PORT:-35963}
SOCK=$DIR/run/pcscd/pcscd.comm
[ ${#SOCK} -lt 108 ] || die "socket path too long for AF_UNIX: $SOCK"
VPCD_SO=/usr/lib/pcsc/drivers/serial/libifdvpcd.so
[ -e "$VPCD_SO" ] || die "$VPCD_SO missing (apt-get install vsmartcard-vpcd)"
command -v pcscd >/dev/null || die "pcscd missing (apt-get install pcscd)"
command -v opensc-tool >/dev/null || die "opensc-tool missing (apt-get install opensc)"

if [ -s "$DIR/pcscd.pid" ] && alive "$(cat "$DIR/pcscd.pid")"; then
	die "a pcscd from $DIR is already running (pid $(cat "$DIR/pcscd.pid"))"
fi
rm -rf "${DIR:?}/run" "${DIR:?}/reader.conf.d" "${DIR:?}/lib" "${DIR:?}/empty"
mkdir -p "$DIR/run" "$DIR/reader.conf.d" "$DIR/lib" "$DIR/empty"
cp "$VPCD_SO" "$DIR/lib/libifdvpcd.so"
cat >"$DIR/reader.conf.d/vpcd" <<EOF
FRIENDLYNAME "Virtual PCD"
DEVICENAME   /dev/null:$PORT
LIBPATH      $DIR/lib/libifdvpcd.so
CHANNELID    $PORT
EOF

# The inner shell writes its own pid (pcscd keeps it through exec).
# shellcheck disable=SC2016
unshare --mount --net --propagation private -- /bin/sh -c '
	set -e
	echo $$ >"$1/pcscd.pid"
	ip link set lo up
	# Debian 12 vpcd (0.8) writes the length and the APDU in two send()s:
	# Nagle + delayed ACK would cost ~40 ms per APDU, quickack avoids it.
	ip route replace local 127.0.0.1 dev lo table local proto kernel \
		scope host src 127.0.0.1 quickack 1
	mount --bind "$1/run" /run
	mount --bind "$1/empty" /usr/lib/pcsc/drivers
	exec pcscd --foreground ${PCSCD_ARGS:---info} --config "$1/reader.conf.d"
' sh "$DIR" </dev/null >"$DIR/pcscd.log" 2>&1 &
LAUNCHER=$!

export PCSCLITE_CSOCK_NAME="$SOCK"
# Ready when a client sees the vpcd reader (listed once its port listens).
i=0
until [ -S "$SOCK" ] && opensc-tool --list-readers 2>/dev/null | grep -q 'Virtual PCD'; do
	if ! alive "$LAUNCHER"; then
		cat "$DIR/pcscd.log" >&2
		die "pcscd exited"
	fi
	i=$((i + 1))
	if [ "$i" -gt 100 ]; then
		tail -n 20 "$DIR/pcscd.log" >&2
		stop_pid "$DIR/pcscd.pid"
		die "pcscd not ready after 10 s"
	fi
	sleep 0.1
done

cat >"$DIR/env" <<EOF
export PCSCLITE_CSOCK_NAME=$SOCK
export VPCD_PORT=$PORT
export KEYPORT_PCSC_DIR=$DIR
EOF
cat "$DIR/env"
