#!/bin/sh
# Runs the gateway on an embedded default: three mock SFUs on loopback, then a real channel request.
# Usage: scripts/demo.sh   (installs build deps, builds, runs, cleans up on exit)
set -eu
cd "$(dirname "$0")/.."

scripts/deps.sh build >/dev/null

make -s -j"$(nproc 2>/dev/null || echo 2)" all

# Demo keys: the gateway's (Odoo knows it) and one per SFU (only the gateway knows them).
GW_KEY=$(printf 'demo-gateway-key-0123456789abcdef' | base64 | tr -d '\n')
KEYS="c2Z1LWtleS1ldS13ZXN0LWRlbW8tMDEyMzQ1Njc4OWFi c2Z1LWtleS1ldS1ub3J0aC1kZW1vLTAxMjM0NTY3ODlh c2Z1LWtleS11cy1lYXN0LWRlbW8tMDEyMzQ1Njc4OWFi"
REGIONS="eu-west eu-north us-east"
PORT=${DEMO_PORT:-18071}
tmp=$(mktemp -d)
pids=""
cleanup() {
  for p in $pids; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

nodes=""
i=0
for key in $KEYS; do
  i=$((i + 1))
  region=$(echo "$REGIONS" | cut -d' ' -f$i)
  build/mock-sfu --port 0 --key "$key" --quiet > "$tmp/mock$i.out" &
  pids="$pids $!"
  n=0
  until grep -q '^PORT ' "$tmp/mock$i.out" 2>/dev/null; do
    n=$((n + 1)); [ $n -lt 100 ] || { echo "mock SFU $i did not start" >&2; exit 1; }; sleep 0.05
  done
  mport=$(sed -n 's/^PORT //p' "$tmp/mock$i.out")
  echo "mock SFU $i: http://127.0.0.1:$mport region=$region"
  nodes="$nodes${nodes:+,}{\"address\":\"http://127.0.0.1:$mport\",\"region\":\"$region\",\"key\":\"$key\"}"
done

SFU_GATEWAY_KEY=$GW_KEY SFU_GATEWAY_NODES="{\"sfu\":[$nodes]}" \
  build/sfu-gateway --bind 127.0.0.1 --port "$PORT" --workers 2 --config /dev/null \
  2> "$tmp/gateway.log" &
pids="$pids $!"
n=0
until curl -fs "http://127.0.0.1:$PORT/noop" >/dev/null 2>&1; do
  n=$((n + 1)); [ $n -lt 100 ] || { cat "$tmp/gateway.log" >&2; exit 1; }; sleep 0.05
done
echo "gateway: http://127.0.0.1:$PORT (2 workers)"

# Tokens as Odoo sends them: HS256, Python json.dumps spacing, base64url without padding;
# iss names the call. The last request repeats call 1: issuer affinity sends it to the
# same SFU, which answers with the same channel.
ask() { # $1 = call id, $2 = query
  token=$(scripts/token.sh "$GW_KEY" "https://odoo.example.com:channel:$1")
  echo
  echo "\$ curl -H 'Authorization: jwt <token for call $1>' 'http://127.0.0.1:$PORT/v1/channel?$2'"
  curl -s -w '\n(HTTP %{http_code})\n' -H "Authorization: jwt $token" \
    "http://127.0.0.1:$PORT/v1/channel?$2"
}
ask 1 "webRTC=true&region=eu-north"
ask 2 "webRTC=true&country=US"
ask 3 "webRTC=true"
ask 1 "webRTC=true"
echo
echo "\$ curl http://127.0.0.1:$PORT/noop"
curl -s "http://127.0.0.1:$PORT/noop"; echo
echo
echo "\$ curl http://127.0.0.1:$PORT/v1/health"
curl -s "http://127.0.0.1:$PORT/v1/health"; echo
echo
echo "gateway log:"
cat "$tmp/gateway.log"
