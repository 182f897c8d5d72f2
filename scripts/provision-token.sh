#!/usr/bin/env bash
# Provision a private SoftHSM2 token store with demo keys and certificates.
#
#   scripts/provision-token.sh DIR [USER_PIN]
#
# Creates DIR/softhsm2.conf and DIR/tokens/, then two tokens:
#   keyport-demo   RSA-2048 (id 01), EC P-256 (id 02), EC P-384 (id 03), EC P-521 (id 04), each
#                  with a self-signed certificate made with the on-token key; the public key objects
#                  are then deleted, so the token holds only certificates and private keys (like
#                  most smart cards); and a certificate with no key (id 09), unless
#                  KEYPORT_NO_ORPHAN=1.
#   keyport-empty  an initialised token with no objects.
# Prints nothing but errors; writes DIR/env with `export SOFTHSM2_CONF=...`.
# Needs: softhsm2, opensc (pkcs11-tool), gnutls-bin (certtool).
set -euo pipefail

dir=${1:?usage: provision-token.sh DIR [USER_PIN]}
pin=${2:-1234}
so_pin=${KEYPORT_SO_PIN:-87654321}
module=${KEYPORT_MODULE:-/usr/lib/softhsm/libsofthsm2.so}

mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
rm -rf "$dir/tokens" && mkdir -p "$dir/tokens" "$dir/certs"
cat > "$dir/softhsm2.conf" <<CONF
directories.tokendir = $dir/tokens
objectstore.backend = file
log.level = ERROR
slots.removable = false
CONF
export SOFTHSM2_CONF="$dir/softhsm2.conf"
echo "export SOFTHSM2_CONF=$dir/softhsm2.conf" > "$dir/env"

softhsm2-util --init-token --free --label keyport-demo --so-pin "$so_pin" --pin "$pin" >/dev/null
softhsm2-util --init-token --free --label keyport-empty --so-pin "$so_pin" --pin "$pin" >/dev/null

p11() { pkcs11-tool --module "$module" --token-label keyport-demo "$@" >/dev/null 2>&1; }

make_key() { # id key-type label common-name
  local id=$1 type=$2 label=$3 cn=$4
  p11 --login --pin "$pin" --keypairgen --key-type "$type" --id "$id" --label "$label"
  cat > "$dir/certs/$label.tmpl" <<TMPL
cn = "$cn"
organization = "Keyport Demo"
country = "BE"
serial = $((0x$id + 1000))
expiration_days = 3650
signing_key
tls_www_client
TMPL
  GNUTLS_PIN="$pin" certtool --provider "$module" --generate-self-signed \
    --load-privkey "pkcs11:token=keyport-demo;id=%$id;type=private" \
    --load-pubkey "pkcs11:token=keyport-demo;id=%$id;type=public" \
    --template "$dir/certs/$label.tmpl" --outder --outfile "$dir/certs/$label.der" >/dev/null 2>&1
  p11 --login --pin "$pin" --write-object "$dir/certs/$label.der" --type cert --id "$id" --label "$label"
  p11 --login --pin "$pin" --delete-object --type pubkey --id "$id"
}

make_key 01 rsa:2048 rsa-2048 "Keyport Demo RSA-2048"
make_key 02 EC:prime256v1 ec-p256 "Keyport Demo P-256"
make_key 03 EC:secp384r1 ec-p384 "Keyport Demo P-384"
make_key 04 EC:secp521r1 ec-p521 "Keyport Demo P-521"

# For the tests, a certificate whose CKA_ID matches no private key (KEY_NOT_FOUND).
# The demo leaves it out (KEYPORT_NO_ORPHAN=1): it would only confuse a person trying the page.
if [ -z "${KEYPORT_NO_ORPHAN:-}" ]; then
  p11 --login --pin "$pin" --write-object "$dir/certs/rsa-2048.der" --type cert --id 09 --label orphan-cert
fi
