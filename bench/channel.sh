#!/bin/sh
# Benchmarks GET /v1/channel with wrk on loopback: the mock SFU directly (the limit) against the
# gateway with 1 and 2 workers in front of it, interleaved in one run; prints req/s, p50, p99, ratios.
# Usage: bench/channel.sh [DURATION_S] [CONNECTIONS] [ROUNDS]    (defaults 8 64 3; env BUILD)
set -eu
cd "$(dirname "$0")/.."
dur=${1:-8}
conns=${2:-64}
rounds=${3:-3}

# bench_tmp, bench_port and bench_result are set by bench/lib.sh's functions; checking this
# file alone (without -x) cannot see that, hence the SC1091/SC2154 line directives below.
# shellcheck source=bench/lib.sh disable=SC1091
. bench/lib.sh
bench_init
bench_build

GW_KEY=$(printf 'bench-gateway-key-0123456789abcdef' | base64 | tr -d '\n')
SFU_KEY=$(printf 'bench-sfu-key-0123456789abcdefghij' | base64 | tr -d '\n')
# shellcheck disable=SC2154
tmp=$bench_tmp

bench_start_mock "$SFU_KEY" mock
# shellcheck disable=SC2154
mport=$bench_port
nodes="{\"sfu\":[{\"address\":\"http://127.0.0.1:$mport\",\"region\":\"eu-west\",\"key\":\"$SFU_KEY\"}]}"
bench_start_gw 1 "$GW_KEY" "$nodes" gateway-1w; gw1=$bench_port
bench_start_gw 2 "$GW_KEY" "$nodes" gateway-2w; gw2=$bench_port

# One token per target: the mock verifies its own key, the gateway the gateway key.
tok_mock=$(scripts/token.sh "$SFU_KEY" https://odoo.example.com:channel:1 3600)
tok_gw=$(scripts/token.sh "$GW_KEY" https://odoo.example.com:channel:1 3600)

# Raw line per run: name req/s p50_ms p99_ms non2xx socket_errors.
: > "$tmp/raw"
run() { # $1 = name, $2 = port, $3 = token
  bench_wrk "$2" "$3" "$conns" "$dur"
  # shellcheck disable=SC2154
  echo "$1 $bench_result" >> "$tmp/raw"
}

echo "bench: ${rounds} rounds x ${dur}s, $conns connections, wrk -t2, $(nproc) cores, $(date -u +%Y-%m-%dT%H:%MZ)"
for _ in $(seq 1 "$rounds"); do
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
