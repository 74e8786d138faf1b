#!/bin/sh
# Makes ./secrets/ for the compose stack: a session secret, a signing key and
# a self-signed TLS certificate for localhost. Needs openssl. Development
# only: the files are made world-readable so that the container's non-root
# user (uid 65532) can read them through the bind mount.
set -eu
cd "$(dirname "$0")"
mkdir -p secrets
[ -s secrets/session_secret ] || openssl rand -base64 32 > secrets/session_secret
[ -s secrets/signing.pem ] ||
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out secrets/signing.pem
[ -s secrets/tls.crt ] ||
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 365 \
        -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
        -keyout secrets/tls.key -out secrets/tls.crt 2>/dev/null
chmod 0755 secrets
chmod 0644 secrets/*
echo "secrets ready in $(pwd)/secrets"
