#!/usr/bin/env bash
# Makes the TLS example's certificates in the folder given (created anew):
# a CA (ca.pem, ca.key), a certificate for localhost and 127.0.0.1 signed
# by it (server.pem, server.key) and a client certificate for
# demo-client.internal (client.pem, client.key). ECDSA P-256, valid for a
# year. Used by run.sh, and by the test that checks every example
# configuration.
set -euo pipefail
certs=${1:?usage: make-certs.sh FOLDER}
command -v openssl >/dev/null || { echo "make-certs.sh needs openssl" >&2; exit 1; }
rm -rf "$certs" && mkdir -p "$certs"
ec=(-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes)
openssl req -x509 "${ec[@]}" -days 365 -subj "/CN=Weir example CA" \
    -keyout "$certs/ca.key" -out "$certs/ca.pem" \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign 2>/dev/null
issue() { # name subject extensions
    openssl req "${ec[@]}" -subj "$2" -keyout "$certs/$1.key" -out "$certs/$1.csr" 2>/dev/null
    openssl x509 -req -in "$certs/$1.csr" -CA "$certs/ca.pem" -CAkey "$certs/ca.key" \
        -CAcreateserial -days 365 -out "$certs/$1.pem" -extfile <(printf '%s\n' "$3") 2>/dev/null
    rm "$certs/$1.csr"
}
issue server /CN=localhost $'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth'
issue client /CN=demo-client $'subjectAltName=DNS:demo-client.internal\nextendedKeyUsage=clientAuth'
