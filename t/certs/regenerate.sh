#!/bin/sh
# Regenerates the TLS test certificates used by t/tls/wss-trust-and-certificates.t.
#
#   ca.pem / ca-key.pem                 test CA (trusted by the tests via ssl_ca)
#   server.pem / server-key.pem         localhost, 127.0.0.1, ::1; signed by the
#                                       test CA; key PKCS#8 (BEGIN PRIVATE KEY)
#   client.pem / client-key.pem         client certificate for mTLS; signed by
#                                       the test CA; key EC prime256v1
#                                       (BEGIN EC PRIVATE KEY)
#   wrong-name.pem / wrong-name-key.pem DNS:wrong.example only; signed by the
#                                       test CA; key RSA PKCS#1
#                                       (BEGIN RSA PRIVATE KEY)
#   other-ca.pem / other-ca-key.pem     an unrelated CA
#   other-server.pem / other-server-key.pem
#                                       localhost, 127.0.0.1, ::1; signed by the
#                                       other CA (untrusted by the tests)
#
# Everything is valid for 36500 days.  Running it again replaces every file
# with fresh keys and certificates of the same layout.
set -eu
cd "$(dirname "$0")"

DAYS=36500
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT INT TERM

cat > "$TMP/ca.ext" <<'EXT'
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
EXT

# leaf_ext FILE KEY_USAGE EXTENDED_KEY_USAGE SUBJECT_ALT_NAME
leaf_ext() {
    cat > "$TMP/$1" <<EXT
basicConstraints = critical, CA:FALSE
keyUsage = critical, $2
extendedKeyUsage = $3
subjectAltName = $4
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EXT
}

leaf_ext server-rsa.ext "digitalSignature, keyEncipherment" serverAuth "DNS:localhost, IP:127.0.0.1, IP:::1"
leaf_ext server-ec.ext digitalSignature serverAuth "DNS:localhost, IP:127.0.0.1, IP:::1"
leaf_ext client-ec.ext digitalSignature clientAuth "DNS:client.test"
leaf_ext wrong-name.ext "digitalSignature, keyEncipherment" serverAuth "DNS:wrong.example"

# make_ca NAME SUBJECT KEYCMD...: a self-signed CA
make_ca() {
    name=$1 subj=$2
    shift 2
    "$@" > "$name-key.pem"
    openssl req -new -sha256 -key "$name-key.pem" -subj "$subj" \
        -out "$TMP/$name.csr"
    openssl x509 -req -sha256 -days "$DAYS" -set_serial 1 \
        -in "$TMP/$name.csr" -signkey "$name-key.pem" \
        -extfile "$TMP/ca.ext" -out "$name.pem" 2>/dev/null
}

# make_leaf NAME SUBJECT CA SERIAL EXTFILE KEYCMD...
make_leaf() {
    name=$1 subj=$2 ca=$3 serial=$4 ext=$5
    shift 5
    "$@" > "$name-key.pem"
    openssl req -new -sha256 -key "$name-key.pem" -subj "$subj" \
        -out "$TMP/$name.csr"
    openssl x509 -req -sha256 -days "$DAYS" -set_serial "$serial" \
        -in "$TMP/$name.csr" -CA "$ca.pem" -CAkey "$ca-key.pem" \
        -extfile "$TMP/$ext.ext" -out "$name.pem" 2>/dev/null
}

# Key generators, one per format.
pkcs8_rsa() { openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 2>/dev/null; }
pkcs1_rsa() {
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 2>/dev/null |
        openssl pkey -traditional 2>/dev/null ||
        openssl genrsa 2048 2>/dev/null    # OpenSSL 1.x writes PKCS#1 itself
}
sec1_ec() { openssl ecparam -name prime256v1 -genkey -noout; }

make_ca   ca           "/CN=EV-Websockets Test CA"  pkcs8_rsa
make_leaf server       "/CN=localhost"               ca  1001 server-rsa pkcs8_rsa
make_leaf client       "/CN=EV-Websockets Test Client" ca 1002 client-ec sec1_ec
make_leaf wrong-name   "/CN=wrong.example"           ca  1003 wrong-name pkcs1_rsa

make_ca   other-ca     "/CN=EV-Websockets Other CA" sec1_ec
make_leaf other-server "/CN=localhost"               other-ca 2001 server-ec sec1_ec

# Sanity: the formats and chains the tests rely on.
grep -q 'BEGIN PRIVATE KEY'     server-key.pem
grep -q 'BEGIN EC PRIVATE KEY'  client-key.pem
grep -q 'BEGIN RSA PRIVATE KEY' wrong-name-key.pem
openssl verify -CAfile ca.pem -purpose sslserver server.pem wrong-name.pem >/dev/null
openssl verify -CAfile ca.pem -purpose sslclient client.pem >/dev/null
openssl verify -CAfile other-ca.pem -purpose sslserver other-server.pem >/dev/null
if openssl verify -CAfile ca.pem other-server.pem >/dev/null 2>&1; then
    echo "other-server.pem must not verify against ca.pem" >&2
    exit 1
fi
echo "certificates written to $(pwd)"
