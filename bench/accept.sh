#!/bin/sh
# Measures how evenly workers accept connections (SO_REUSEPORT + cBPF vs one shared socket).
# On loopback: a mock SFU, then the gateway with 4 and 2 workers in each accept mode, each loaded
# by wrk on GET /v1/channel with keep-alive connections and with a new connection per request.
# Prints per-worker accepted connections (from /metrics), mean, max/mean and req/s.
# Usage: [DURATION=30] [CONNECTIONS=64] bench/accept.sh
set -eu
cd "$(dirname "$0")/.."
unset SFU_GATEWAY_ACCEPT_MODE
dur=${DURATION:-30}
conns=${CONNECTIONS:-64}

scripts/deps.sh bench >/dev/null
make -s -j2 all

GW_KEY=$(printf 'bench-accept-gateway-key-0123456789abcdef' | base64 | tr -d '\n')
SFU_KEY=$(printf 'bench-accept-sfu-key-0123456789abcdefghij' | base64 | tr -d '\n')
tmp=$(mktemp -d)
pids=""
cleanup() {
  for p in $pids; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

build/mock-sfu --port 0 --key "$SFU_KEY" --quiet > "$tmp/mock.out" &
pids="$pids $!"
n=0
until grep -q '^PORT ' "$tmp/mock.out" 2>/dev/null; do
  n=$((n + 1)); [ $n -lt 100 ] || { echo "mock SFU did not start" >&2; exit 1; }; sleep 0.05
done
mport=$(sed -n 's/^PORT //p' "$tmp/mock.out")
cat > "$tmp/gw.toml" <<EOF
[gateway]
log_level = "warn"

[[sfu]]
address = "http://127.0.0.1:$mport"
region = "eu-west"
key = "$SFU_KEY"
EOF
tok=$(scripts/token.sh "$GW_KEY" https://odoo.example.com:channel:1 3600)
port=$(( 20000 + $$ % 20000 ))

# Per-worker connections_total, space-separated, in worker order.
accepted() { # $1 = port
  curl -fsS "http://127.0.0.1:$1/metrics" |
    sed -n 's/^sfu_gateway_connections_total{worker="\([0-9]*\)"} \([0-9]*\)$/\1 \2/p' |
    sort -n | awk '{ printf "%s ", $2 }'
}

# One measurement: a fresh gateway, wrk, the per-worker deltas of accepted connections.
run() { # $1 = accept mode, $2 = workers, $3 = keepalive|close
  port=$((port + 1))
  if [ "$1" = shared ]; then
    SFU_GATEWAY_ACCEPT_MODE=shared SFU_GATEWAY_KEY="$GW_KEY" build/sfu-gateway \
      --config "$tmp/gw.toml" --bind 127.0.0.1 --port "$port" --workers "$2" 2>> "$tmp/gw.log" &
  else
    SFU_GATEWAY_KEY="$GW_KEY" build/sfu-gateway \
      --config "$tmp/gw.toml" --bind 127.0.0.1 --port "$port" --workers "$2" 2>> "$tmp/gw.log" &
  fi
  gw=$!
  pids="$pids $gw"
  n=0
  until curl -fs "http://127.0.0.1:$port/noop" >/dev/null 2>&1; do
    n=$((n + 1)); [ $n -lt 100 ] || { cat "$tmp/gw.log" >&2; exit 1; }; sleep 0.05
  done
  before=$(accepted "$port")
  if [ "$3" = close ]; then hdr="Connection: close"; else hdr="X-Keep: 1"; fi
  timeout $((dur + 30)) wrk -t2 -c"$conns" -d"${dur}s" -H "Authorization: jwt $tok" -H "$hdr" \
    "http://127.0.0.1:$port/v1/channel" > "$tmp/wrk.out" 2>&1 || true
  after=$(accepted "$port")
  kill "$gw" 2>/dev/null || true
  wait "$gw" 2>/dev/null || true
  rps=$(awk '/Requests\/sec/ { printf "%.0f", $2 }' "$tmp/wrk.out")
  bad=$(awk '/Non-2xx/ { print $5 } /Socket errors/ { print "socket-errors" }' "$tmp/wrk.out" |
    tr '\n' ' ')
  # Deltas per worker (the closing /metrics scrape counts on one of them).
  echo "$before" "|" "$after" | awk -v m="$1" -v w="$2" -v c="$3" -v rps="${rps:-0}" \
    -v bad="$bad" '{
      k = 0; for (i = 1; $i != "|"; i++) b[++k] = $i
      n = 0; sum = 0; max = 0; list = ""
      for (i = i + 1; i <= NF; i++) {
        d = $i - b[++n]; sum += d; if (d > max) max = d; list = list (n > 1 ? "," : "") d
      }
      mean = n ? sum / n : 0
      printf "%-9s %7d %-9s %9d %9.1f %8.2f  %s %s\n", m, w, c, rps, mean,
        (mean > 0 ? max / mean : 0), list, (bad != "" ? "errors: " bad : "")
    }'
}

echo "bench/accept: wrk -t2 -c$conns -d${dur}s GET /v1/channel, $(nproc) cores," \
  "$(date -u +%Y-%m-%dT%H:%MZ)"
printf '%-9s %7s %-9s %9s %9s %8s  %s\n' mode workers conns req/s mean max/mean \
  "accepted per worker"
# Not in a pipeline: run() must add the gateway's pid to $pids of this shell for cleanup.
for mode in reuseport shared; do
  for workers in 4 2; do
    for c in keepalive close; do
      run "$mode" "$workers" "$c" >> "$tmp/result"
      tail -n 1 "$tmp/result"
    done
  done
done
mkdir -p bench/results
cp "$tmp/result" "bench/results/accept-$(date -u +%Y%m%dT%H%M%SZ).txt"
