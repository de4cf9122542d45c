#!/bin/sh
# A development CA and a server certificate for Mosquitto's TLS listener (port 8883).
#
#   deploy/tls/make-dev-ca.sh [OUT_DIR] [NAME ...]
#
# OUT_DIR (default: this script's directory) receives
#   ca/ca.key  ca/ca.crt                          the CA; its key stays here, never on a broker
#   certs/ca.crt  certs/server.crt  certs/server.key   what the broker needs (compose mounts
#                                                 deploy/tls/certs at /mosquitto/certs)
# NAMEs are the host names and IP addresses devices use to reach the broker; they go into the
# certificate's subjectAltName, which is what clients check (not the CN). Default: localhost,
# mosquitto (the compose service), this machine's name, 127.0.0.1.
#
# Running it again keeps the CA (devices that trust it keep working) and issues a new server
# certificate. Devices get certs/ca.crt. For production use a certificate from your faculty's
# CA or Let's Encrypt, installed under the same three names.
#
# Mosquitto reads the key after dropping to its own user, so that user must be able to read it:
# set KEY_OWNER (as root) to give it the key, e.g. KEY_OWNER=1883 for the eclipse-mosquitto
# image's user, or KEY_OWNER=mosquitto for Debian's package. Otherwise the key stays the
# caller's, mode 0600.
#
# Keys are ECDSA P-256: small and fast on constrained devices, and accepted by every TLS 1.2
# stack devices run (mbedTLS, wolfSSL, OpenSSL).
set -eu

out=${1:-$(dirname "$0")}
[ $# -gt 0 ] && shift
if [ $# -eq 0 ]; then
    set -- localhost mosquitto "$(hostname)" 127.0.0.1
fi
command -v openssl >/dev/null || { echo "openssl not found: apt-get install -y openssl" >&2; exit 1; }

mkdir -p "$out/ca" "$out/certs"
umask 077
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

san=""
for name in "$@"; do
    case "$name" in
        *:*) entry="IP:$name" ;;           # an IPv6 address
        *[!0-9.]*) entry="DNS:$name" ;;  # anything but digits and dots is a host name
        *) entry="IP:$name" ;;
    esac
    san="${san:+$san,}$entry"
done

cat >"$work/openssl.cnf" <<EOF
[req]
distinguished_name = dn
prompt = no
[dn]
CN = Pilot Telemetry development CA
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = $san
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid, issuer
EOF

if [ ! -f "$out/ca/ca.key" ]; then
    openssl req -x509 -new -config "$work/openssl.cnf" -extensions ca \
        -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout "$out/ca/ca.key" -out "$out/ca/ca.crt" -days 3650 2>/dev/null
    echo "new CA: $out/ca/ca.crt"
fi

openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -subj "/CN=$1" -keyout "$work/server.key" -out "$work/server.csr" 2>/dev/null
openssl x509 -req -in "$work/server.csr" -CA "$out/ca/ca.crt" -CAkey "$out/ca/ca.key" \
    -CAcreateserial -CAserial "$out/ca/ca.srl" -days 825 \
    -extfile "$work/openssl.cnf" -extensions server -out "$work/server.crt" 2>/dev/null

cp "$out/ca/ca.crt" "$out/certs/ca.crt"
mv "$work/server.crt" "$out/certs/server.crt"
mv "$work/server.key" "$out/certs/server.key"
# Certificates are public; the key is its owner's alone.
chmod 0644 "$out/certs/ca.crt" "$out/certs/server.crt"
if [ -n "${KEY_OWNER:-}" ]; then
    chown "$KEY_OWNER" "$out/certs/server.key"
fi
echo "server certificate for $san: $out/certs/server.crt (key: server.key); give devices certs/ca.crt"
