#!/bin/sh
# Usage: tests/pcsc/card.sh DIR start [VICC_ARGS...]   insert a vicc card
#        tests/pcsc/card.sh DIR start openpgp [-v]     insert pgpcard.py's OpenPGP card
#        tests/pcsc/card.sh DIR stop                   remove it
#
# start runs vicc (Debian: vsmartcard-vpicc + python3-virtualsmartcard), or
# pgpcard.py (a card OpenSC binds as a PKCS #11 token), inside
# the network namespace of the pcscd that start.sh DIR started, connected to
# the first vpcd slot (reader "Virtual PCD 00 00"), and returns once pcscd
# reports a card in that reader (bounded polling, 10 s). VICC_ARGS default to
# "-t iso7816"; CARD_TIMEOUT (tenths of a second, default 100) bounds the wait.
# Log: DIR/vicc.log.
set -eu

die() { echo "card.sh: $*" >&2; exit 1; }

[ $# -ge 2 ] || { echo "usage: $0 DIR start [VICC_ARGS...] | stop" >&2; exit 2; }
DIR=$(cd "$1" && pwd)
ACTION=$2
shift 2
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=SCRIPTDIR/lib.sh
. "$HERE/lib.sh"

# card_present: 0 when reader "Virtual PCD 00 00" has a card.
card_present() {
	PCSCLITE_CSOCK_NAME=$DIR/run/pcscd/pcscd.comm opensc-tool --list-readers 2>/dev/null |
		grep -q '^0 *Yes .*Virtual PCD 00 00'
}

wait_for() { # wait_for present|absent [PID that must stay alive]
	i=0
	while :; do
		if [ -n "${2:-}" ] && ! alive "$2"; then return 1; fi
		if card_present; then [ "$1" = present ] && return 0
		else [ "$1" = absent ] && return 0
		fi
		i=$((i + 1))
		[ "$i" -le "${CARD_TIMEOUT:-100}" ] || return 1
		sleep 0.1
	done
}

case $ACTION in
start)
	[ -s "$DIR/pcscd.pid" ] || die "no pcscd in $DIR (run start.sh $DIR)"
	PCSCD=$(cat "$DIR/pcscd.pid")
	alive "$PCSCD" || die "pcscd $PCSCD from $DIR is not running"
	if [ -s "$DIR/vicc.pid" ] && alive "$(cat "$DIR/vicc.pid")"; then
		die "a vicc from $DIR is already running"
	fi
	[ $# -gt 0 ] || set -- -t iso7816
	PORT=$(sed -n 's/^export VPCD_PORT=//p' "$DIR/env")
	if [ "$1" = openpgp ]; then
		# Our OpenPGP card (pgpcard.py); its state persists in DIR/openpgp.json.
		shift
		set -- "$HERE/pgpcard.py" --state "$DIR/openpgp.json" --port "$PORT" "$@"
	else
		# Debian 12's vicc needs its package dir on PYTHONPATH and a Crypto ->
		# Cryptodome alias (pyshim/).
		set -- /usr/bin/vicc -v --hostname 127.0.0.1 --port "$PORT" "$@"
	fi
	# /usr/bin/python3, not whatever python3 comes first on PATH.
	PYTHONDONTWRITEBYTECODE=1 PYTHONPATH=$HERE/pyshim:/usr/lib/python3/site-packages/virtualsmartcard \
		nsenter --net="/proc/$PCSCD/ns/net" /usr/bin/python3 "$@" \
		</dev/null >"$DIR/vicc.log" 2>&1 &
	echo $! >"$DIR/vicc.pid"
	if ! wait_for present $!; then
		tail -n 20 "$DIR/vicc.log" >&2
		die "no card in 'Virtual PCD 00 00' after vicc start"
	fi
	;;
stop)
	if [ -s "$DIR/vicc.pid" ]; then
		stop_pid "$DIR/vicc.pid"
		if [ -S "$DIR/run/pcscd/pcscd.comm" ] && ! wait_for absent; then
			die "card still present after vicc stop"
		fi
	fi
	;;
*) die "unknown action: $ACTION" ;;
esac
