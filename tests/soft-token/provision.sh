#!/usr/bin/env bash
# Provision a token directory for the Keyport soft token (tests/soft-token/README.md).
#
#   tests/soft-token/provision.sh DIR [USER_PIN]
#
# Writes, with openssl:
#   DIR/ca.crt, DIR/ca.key.pem   a demo CA ("CN=Keyport Soft Demo CA"), P-256; not read by the token
#   DIR/keys/01-rsa.p8           RSA-2048 private key, PKCS #8 DER   (CKA_ID 01, CKA_LABEL "rsa")
#   DIR/keys/01-rsa.crt          its certificate, DER, "CN=Keyport Soft RSA", issued by the CA
#   DIR/keys/02-ec.p8            P-256 private key, PKCS #8 DER      (CKA_ID 02, CKA_LABEL "ec")
#   DIR/keys/02-ec.crt           its certificate, DER, "CN=Keyport Soft EC", issued by the CA
#   DIR/pin                      the user PIN (default 123456)
# and removes what a token left from an earlier use (wrong-PIN counters, PIN-pad and fault files).
# Prints nothing but errors.
set -euo pipefail

dir=${1:?usage: provision.sh DIR [USER_PIN]}
pin=${2:-123456}
if [ ${#pin} -lt 4 ] || [ ${#pin} -gt 64 ]; then
  echo "provision.sh: the PIN must have 4 to 64 characters" >&2
  exit 2
fi

mkdir -p "$dir/keys"
dir=$(cd "$dir" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
rm -f "$dir"/keys/*.p8 "$dir"/keys/*.crt "$dir"/slot*.tries "$dir"/slot*.tries.tmp \
  "$dir"/pinpad-pin "$dir"/pinpad-cancel "$dir"/pinpad-timeout-ms "$dir"/crash-on-sign "$dir"/hang-on-sign

ssl() { openssl "$@" 2>"$work/err" || { cat "$work/err" >&2; exit 1; }; }

# The CA.
ssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$dir/ca.key.pem"
ssl req -x509 -new -key "$dir/ca.key.pem" -subj "/O=Keyport Test/CN=Keyport Soft Demo CA" \
  -days 3650 -sha256 -addext "basicConstraints=critical,CA:TRUE" \
  -addext "keyUsage=critical,keyCertSign,cRLSign" -outform DER -out "$dir/ca.crt"
ssl x509 -inform DER -in "$dir/ca.crt" -out "$work/ca.pem"

cat > "$work/leaf.ext" <<'EXT'
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, nonRepudiation
extendedKeyUsage = clientAuth, emailProtection
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EXT

# issue ID LABEL COMMON-NAME SERIAL GENPKEY-ARGS...
issue() {
  local id=$1 label=$2 cn=$3 serial=$4
  shift 4
  local key="$dir/keys/$id-$label.p8"
  ssl genpkey "$@" -out "$work/$label.pem"
  # PKCS #8 for sure (genpkey's DER is the key type's own format, e.g. PKCS #1 for RSA).
  ssl pkcs8 -topk8 -nocrypt -in "$work/$label.pem" -outform DER -out "$key"
  ssl req -new -key "$work/$label.pem" -subj "/O=Keyport Test/CN=$cn" -out "$work/$label.csr"
  ssl x509 -req -in "$work/$label.csr" -CA "$work/ca.pem" -CAkey "$dir/ca.key.pem" \
    -set_serial "$serial" -days 3650 -sha256 -extfile "$work/leaf.ext" \
    -outform DER -out "$dir/keys/$id-$label.crt"
}

issue 01 rsa "Keyport Soft RSA" 4097 -algorithm RSA -pkeyopt rsa_keygen_bits:2048
issue 02 ec "Keyport Soft EC" 4098 -algorithm EC -pkeyopt ec_paramgen_curve:P-256

umask 077
printf '%s\n' "$pin" > "$dir/pin"
