#!/bin/sh
# Prints an Odoo-style HS256 token (Python json spacing, base64url, no padding) for tests, demo and bench.
# Usage: scripts/token.sh KEY_BASE64 [ISS] [TTL_SECONDS]
set -eu
key=$1
iss=${2:-https://odoo.example.com:channel:42}
ttl=${3:-30}

b64url() { base64 | tr -d '\n=' | tr '+/' '-_'; }
# Keys may be url-safe and unpadded: normalise before decoding.
std=$(printf '%s' "$key" | tr -- '-_' '+/')
while [ $(( ${#std} % 4 )) -ne 0 ]; do std="$std="; done
keyhex=$(printf '%s' "$std" | base64 -d | od -An -tx1 | tr -d ' \n')
exp=$(( $(date +%s) + ttl ))
header=$(printf '{"typ": "JWT", "alg": "HS256"}' | b64url)
claims=$(printf '{"iss": "%s", "key": "3f1c2d9e-7b6a-4c1e-9f0d-2a5b8c7d6e4f", "exp": %s}' "$iss" "$exp" | b64url)
sig=$(printf '%s.%s' "$header" "$claims" | openssl dgst -sha256 -mac HMAC -macopt "hexkey:$keyhex" -binary | b64url)
printf '%s.%s.%s\n' "$header" "$claims" "$sig"
