#!/usr/bin/env bash
# Makes a throwaway CA and certificates for trying `tls+tcp://` (tests use it too):
#   DIR/ca.pem          the CA certificate (give it to every side with --tls-ca)
#   DIR/server.pem      the coordinator's certificate + key (--tls-cert), for localhost,
#                       127.0.0.1 and the extra names given as arguments
#   DIR/client.pem      a client/node certificate + key signed by the same CA
# Usage: scripts/make-test-certs.sh DIR [NAME|IP ...]     (needs openssl)
# For real deployments use your own CA; keys here are unencrypted and valid for 30 days.
set -euo pipefail
dir=${1:?usage: make-test-certs.sh DIR [NAME|IP ...]}
shift
mkdir -p "$dir"
cd "$dir"
san="DNS:localhost,IP:127.0.0.1"
for name in "$@"; do
    if [[ $name =~ ^[0-9.]+$ ]]; then san="$san,IP:$name"; else san="$san,DNS:$name"; fi
done
ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
openssl req -x509 "${ec[@]}" -keyout ca.key -out ca.pem -days 30 -subj /CN=colony-test-ca 2>/dev/null
for who in server client; do
    openssl req "${ec[@]}" -keyout "$who.key" -out "$who.csr" -subj "/CN=colony-$who" 2>/dev/null
    printf 'subjectAltName=%s\n' "$san" >"$who.ext"
    openssl x509 -req -in "$who.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -out "$who.crt" -days 30 \
        -extfile "$who.ext" 2>/dev/null
    cat "$who.crt" "$who.key" >"$who.pem"
    chmod 600 "$who.pem" "$who.key"
    rm -f "$who.csr" "$who.ext"
done
echo "certificates in $dir: ca.pem, server.pem, client.pem"
