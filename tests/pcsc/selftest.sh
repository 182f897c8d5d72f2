#!/bin/sh
# Usage: tests/pcsc/selftest.sh
# Checks the whole stack once: private pcscd + vpcd, pgpcard.py inserted and
# removed, OpenSC's PKCS #11 module (slot list, C_WaitForSlotEvent blocking and
# CKF_DONT_BLOCK, C_Finalize unblocking a waiter), key generation, a signature
# verified by openssl. Root only (start.sh needs unshare). Ends with the line
# "N passed, M failed"; exit status 1 when something failed.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
MODULE=${PKCS11_MODULE:-/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so}
T=$(mktemp -d /tmp/pcsc-selftest.XXXXXX) # work files
D=$T/pcsc                                 # start.sh's DIR
PASS=0
FAIL=0
cleanup() { "$HERE/stop.sh" "$D" >/dev/null 2>&1; rm -rf "$T"; }
trap cleanup EXIT INT TERM

check() { # check NAME COMMAND...
	name=$1
	shift
	if "$@" >"$T/out" 2>&1; then
		PASS=$((PASS + 1))
		echo "ok   $name"
	else
		FAIL=$((FAIL + 1))
		echo "FAIL $name"
		sed 's/^/     /' "$T/out" | tail -n 15
	fi
}
has() { grep -q -- "$1" "$T/$2"; }
probe() { "$T/p11probe" "$MODULE" "$@"; }
# bg_probe FILE ARGS...: run p11probe in the background, wait until it has
# called C_Initialize (its first line), so later events happen after it.
bg_probe() {
	out=$1
	shift
	probe "$@" >"$T/$out" 2>&1 &
	BG=$!
	i=0
	while ! grep -qs C_Initialize "$T/$out" && [ "$i" -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
	sleep 0.2
}

check "build p11probe" gcc -O2 -Wall -I/usr/include/p11-kit-1 -o "$T/p11probe" "$HERE/p11probe.c" -ldl -lpthread
check "start pcscd" "$HERE/start.sh" "$D"
export PCSCLITE_CSOCK_NAME="$D/run/pcscd/pcscd.comm"

probe list >"$T/list0" 2>&1
check "two empty vpcd slots" has "slots=2 tokenPresent=0:" list0

bg_probe poll.out poll 3
check "insert OpenPGP card" "$HERE/card.sh" "$D" start openpgp
wait "$BG"
check "C_WaitForSlotEvent(CKF_DONT_BLOCK) sees the insertion" has "DONT_BLOCK) -> CKR_OK" poll.out
probe list >"$T/list1" 2>&1
check "token listed by C_GetSlotList(TRUE)" has "tokenPresent=2:" list1
check "token is an OpenPGP card" has 'token "OpenPGP card' list1

check "generate the signature key" openpgp-tool --verify CHV3 --pin 12345678 --gen-key 1 --key-type rsa2048
echo "keyport pcsc selftest" >"$T/msg"
check "C_Sign (SHA256-RSA-PKCS)" pkcs11-tool --module "$MODULE" --token-label "OpenPGP card (User PIN (sig))" \
	--login --pin 123456 --sign -m SHA256-RSA-PKCS --id 01 -i "$T/msg" -o "$T/sig"
check "read the public key" pkcs11-tool --module "$MODULE" --token-label "OpenPGP card (User PIN (sig))" \
	--read-object --type pubkey --id 01 -o "$T/pub.der"
check "openssl verifies the signature" openssl dgst -sha256 -keyform DER -verify "$T/pub.der" -signature "$T/sig" "$T/msg"

bg_probe wait.out wait 1
check "remove the card" "$HERE/card.sh" "$D" stop
wait "$BG"
check "blocking C_WaitForSlotEvent returns on removal" has "C_WaitForSlotEvent(0) -> CKR_OK" wait.out
probe list >"$T/list2" 2>&1
check "no token after removal" has "tokenPresent=0:" list2

probe finalize 300 >"$T/fin.out" 2>&1
check "C_Finalize unblocks a waiting C_WaitForSlotEvent" has "CKR_CRYPTOKI_NOT_INITIALIZED" fin.out

check "stop pcscd" "$HERE/stop.sh" "$D"
echo "$PASS passed, $FAIL failed"
[ "$FAIL" -eq 0 ]
