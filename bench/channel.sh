#!/bin/sh
# Benchmarks GET /v1/channel with wrk on loopback: the mock SFU directly (the limit) against the
# gateway with 1 and 2 workers in front of it, interleaved in one run; prints req/s, p50, p99, ratios.
# Usage: bench/channel.sh [DURATION_S] [CONNECTIONS] [ROUNDS]    (defaults 8 64 3)
set -eu
cd "$(dirname "$0")/.."
dur=${1:-8}
conns=${2:-64}
rounds=${3:-3}

scripts/deps.sh bench >/dev/null
make -s -j2 all

GW_KEY=$(printf 'bench-gateway-key-0123456789abcdef' | base64 | tr -d '\n')
SFU_KEY=$(printf 'bench-sfu-key-0123456789abcdefghij' | base64 | tr -d '\n')
tmp=$(mktemp -d)
pids=""
cleanup() {
  for p in $pids; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

build/mock-sfu --port 0 --key "$SFU_KEY" --quiet > "$tmp/mock.out" &
pids="$pids $!"
n=0
until grep -q '^PORT ' "$tmp/mock.out" 2>/dev/null; do
  n=$((n + 1)); [ $n -lt 100 ] || { echo "mock SFU did not start" >&2; exit 1; }; sleep 0.05
done
mport=$(sed -n 's/^PORT //p' "$tmp/mock.out")
nodes="{\"sfu\":[{\"address\":\"http://127.0.0.1:$mport\",\"region\":\"eu-west\",\"key\":\"$SFU_KEY\"}]}"

start_gw() { # $1 = port, $2 = workers
  SFU_GATEWAY_KEY=$GW_KEY SFU_GATEWAY_NODES=$nodes build/sfu-gateway --bind 127.0.0.1 \
    --port "$1" --workers "$2" --config /dev/null --log-level warn 2>> "$tmp/gw.log" &
  pids="$pids $!"
  n=0
  until curl -fs "http://127.0.0.1:$1/noop" >/dev/null 2>&1; do
    n=$((n + 1)); [ $n -lt 100 ] || { cat "$tmp/gw.log" >&2; exit 1; }; sleep 0.05
  done
}
gw1=$(( 20000 + $$ % 20000 )); gw2=$(( gw1 + 1 ))
start_gw "$gw1" 1
start_gw "$gw2" 2

# One token per target: the mock verifies its own key, the gateway the gateway key.
tok_mock=$(scripts/token.sh "$SFU_KEY" https://odoo.example.com:channel:1 3600)
tok_gw=$(scripts/token.sh "$GW_KEY" https://odoo.example.com:channel:1 3600)

# wrk's --latency output: req/s and the 50%/99% lines (converted to ms).
run() { # $1 = name, $2 = port, $3 = token
  wrk -t2 -c"$conns" -d"${dur}s" --latency -H "Authorization: jwt $3" \
    "http://127.0.0.1:$2/v1/channel" > "$tmp/wrk.out" 2>&1 || true
  awk -v name="$1" '
    function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; if (v ~ /s$/) return v * 1000; return v }
    /Requests\/sec/ { rps = $2 }
    /^ +50%/ { p50 = ms($2) }
    /^ +99%/ { p99 = ms($2) }
    /Non-2xx/ { bad = $5 }
    END { printf "%s %.0f %.3f %.3f %d\n", name, rps, p50, p99, bad }' "$tmp/wrk.out" >> "$tmp/raw"
}

echo "bench: ${rounds} rounds x ${dur}s, $conns connections, wrk -t2, $(nproc) cores, $(date -u +%Y-%m-%dT%H:%MZ)"
for r in $(seq 1 "$rounds"); do
  run mock-direct "$mport" "$tok_mock"
  run gateway-1w "$gw1" "$tok_gw"
  run gateway-2w "$gw2" "$tok_gw"
done

# Median of the rounds per target; ratios against the gateway with 2 workers.
printf '%-12s %10s %9s %9s %8s %s\n' target req/s p50_ms p99_ms non2xx vs_gw2
for t in mock-direct gateway-1w gateway-2w; do
  grep "^$t " "$tmp/raw" | sort -k2 -n | awk -v n="$rounds" 'NR == int((n + 1) / 2)'
done > "$tmp/med"
ref=$(awk '$1 == "gateway-2w" { print $2 }' "$tmp/med")
awk -v ref="$ref" '{ printf "%-12s %10d %9.3f %9.3f %8d %.2f\n", $1, $2, $3, $4, $5, (ref > 0 ? $2 / ref : 0) }' "$tmp/med"
mkdir -p bench/results
cp "$tmp/raw" "bench/results/channel-$(date -u +%Y%m%dT%H%M%SZ).txt"
