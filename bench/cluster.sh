#!/bin/sh
# Benchmarks a gateway cluster on loopback with a real etcd: an issuer's first request with and
# without etcd (p50, p99), the time from a heartbeat at gateway A to its listing at gateway B, and
# 1,000 SFUs heartbeating every 10 s through two gateways (etcd writes per second, gateway CPU).
# Usage: bench/cluster.sh [FIRST_N] [PROPAGATE_N] [FLEET_S]    (defaults 2000 300 40; env BUILD)
set -eu
cd "$(dirname "$0")/.."
first_n=${1:-2000}
prop_n=${2:-300}
fleet_s=${3:-40}

# shellcheck source=bench/lib.sh disable=SC1091
. bench/lib.sh
bench_init
bench_build
make -s -j2 BUILD="$BUILD" "$BUILD/bench-cluster"
command -v etcd >/dev/null 2>&1 || {
  echo "bench: etcd is missing (Debian etcd-server; scripts/deps.sh test installs it)" >&2
  exit 1
}
# bench_tmp, bench_port and bench_pid are set by bench/lib.sh's functions.
# shellcheck disable=SC2154
tmp=$bench_tmp

GW_KEY=$(printf 'bench-gateway-key-0123456789abcdef' | base64 | tr -d '\n')
SFU_KEY=$(printf 'bench-sfu-key-0123456789abcdefghij' | base64 | tr -d '\n')

# One etcd member, data in the temporary folder.
bench_free_port
# shellcheck disable=SC2154
ec=$bench_port
bench_free_port; ep=$bench_port
etcd --name b --data-dir "$tmp/etcd" --listen-client-urls "http://127.0.0.1:$ec" \
  --advertise-client-urls "http://127.0.0.1:$ec" --listen-peer-urls "http://127.0.0.1:$ep" \
  --initial-advertise-peer-urls "http://127.0.0.1:$ep" --initial-cluster "b=http://127.0.0.1:$ep" \
  --logger zap --log-level warn > "$tmp/etcd.log" 2>&1 &
etcd_pid=$!
bench_track "$etcd_pid"
n=0
until curl -s --max-time 1 -X POST -d '{}' "http://127.0.0.1:$ec/v3/maintenance/status" \
  2>/dev/null | grep -q '"leader"'; do
  n=$((n + 1)); [ $n -lt 100 ] || { echo "bench: etcd did not start" >&2; cat "$tmp/etcd.log" >&2; exit 1; }
  sleep 0.1
done

bench_start_mock "$SFU_KEY" mock1; m1=$bench_port
bench_start_mock "$SFU_KEY" mock2; m2=$bench_port
nodes="{\"sfu\":[{\"address\":\"http://127.0.0.1:$m1\",\"key\":\"$SFU_KEY\"},\
{\"address\":\"http://127.0.0.1:$m2\",\"key\":\"$SFU_KEY\"}]}"
printf '[observability]\nmax_age_ms = 0\n' > "$tmp/alone.toml"
printf '[observability]\nmax_age_ms = 0\n[cluster]\netcd = ["http://127.0.0.1:%s"]\nprefix = "/bench/"\n' \
  "$ec" > "$tmp/cluster.toml"
bench_gw_config=$tmp/alone.toml bench_start_gw 2 "$GW_KEY" "$nodes" alone; g0=$bench_port
bench_gw_config=$tmp/cluster.toml bench_start_gw 2 "$GW_KEY" "$nodes" gw-a
# shellcheck disable=SC2154
ga=$bench_port; ga_pid=$bench_pid
bench_gw_config=$tmp/cluster.toml bench_start_gw 2 "$GW_KEY" "" gw-b; gb=$bench_port; gb_pid=$bench_pid
# Both cluster gateways in sync with etcd.
for p in "$ga" "$gb"; do
  n=0
  until curl -s "http://127.0.0.1:$p/v1/health" | grep -q '"cluster":{"state":"ok"'; do
    n=$((n + 1)); [ $n -lt 100 ] || { echo "bench: gateway $p never in sync with etcd" >&2; exit 1; }
    sleep 0.1
  done
done

echo "bench: cluster on loopback, 1 etcd member, 2 workers per gateway, $(nproc) cores, $(date -u +%Y-%m-%dT%H:%MZ)"
: > "$tmp/raw"
# 1. An issuer's first request: alone against the cluster (one etcd transaction), three rounds
#    interleaved; the median round of each.
for r in 1 2 3; do
  echo "alone $("$BUILD/bench-cluster" first "$g0" "$GW_KEY" "$first_n")" >> "$tmp/raw"
  echo "cluster $("$BUILD/bench-cluster" first "$ga" "$GW_KEY" "$first_n")" >> "$tmp/raw"
  : "$r"
done
claims=$(curl -s "http://127.0.0.1:$ga/metrics" | awk -F'[{}" ]+' '/^sfu_gateway_cluster_claims_total/ {
  printf "%s=%s ", $3, $4 }')
echo "claims at A: $claims" | tee -a "$tmp/raw"
for t in alone cluster; do
  grep "^$t " "$tmp/raw" | sed 's/p50_us=//; s/p99_us=//' | sort -k4 -n | awk 'NR == 2 {
    printf "first request %-8s p50 %6d us  p99 %6d us  (median of 3 rounds of %s)\n", $1, $4, $5, $3 }'
done
# 2. A heartbeat at A until B lists the SFU.
"$BUILD/bench-cluster" propagate "$ga" "$gb" "$GW_KEY" "$prop_n" | tee -a "$tmp/raw"

# 3. 1,000 SFUs every 10 s, alternately to A and B: etcd's writes and the gateways' CPU.
etcd_metric() { # $1 = metric name (no labels): its value
  curl -s "http://127.0.0.1:$ec/metrics" | awk -v m="$1" '$1 == m { print $2 }'
}
etcd_txns() { # successful Txn calls
  curl -s "http://127.0.0.1:$ec/metrics" | awk '/^grpc_server_handled_total/ &&
    /grpc_method="Txn"/ && /grpc_code="OK"/ { n += $2 } END { print n + 0 }'
}
tree_ticks() { # $1 = master pid: utime + stime of it and its children, in clock ticks
  t=0
  for p in "$1" $(pgrep -P "$1"); do
    s=$(awk '{ print $14 + $15 }' "/proc/$p/stat" 2>/dev/null || echo 0)
    t=$((t + s))
  done
  echo "$t"
}
hz=$(getconf CLK_TCK)
# The fleet registers during its first interval; measure the steady state after it.
"$BUILD/bench-cluster" fleet "$ga" "$gb" "$GW_KEY" 1000 10000 "$fleet_s" > "$tmp/fleet.out" &
fleet_pid=$!
bench_track "$fleet_pid"
sleep 10
p0=$(etcd_metric etcd_mvcc_put_total); t0=$(etcd_txns)
c0=$(etcd_metric etcd_server_proposals_committed_total)
a0=$(tree_ticks "$ga_pid"); b0=$(tree_ticks "$gb_pid")
e0=$(awk '{ print $14 + $15 }' "/proc/$etcd_pid/stat")
s0=$(date +%s.%N)
wait "$fleet_pid" || true
s1=$(date +%s.%N)
p1=$(etcd_metric etcd_mvcc_put_total); t1=$(etcd_txns)
c1=$(etcd_metric etcd_server_proposals_committed_total)
a1=$(tree_ticks "$ga_pid"); b1=$(tree_ticks "$gb_pid")
e1=$(awk '{ print $14 + $15 }' "/proc/$etcd_pid/stat")
tee -a "$tmp/raw" < "$tmp/fleet.out"
sfus=$(curl -s "http://127.0.0.1:$gb/metrics" | awk '$1 == "sfu_gateway_registry_sfus" { print $2 }')
awk -v p0="$p0" -v p1="$p1" -v t0="$t0" -v t1="$t1" -v c0="$c0" -v c1="$c1" -v a0="$a0" -v a1="$a1" \
  -v b0="$b0" -v b1="$b1" -v e0="$e0" -v e1="$e1" -v s0="$s0" -v s1="$s1" -v hz="$hz" -v sfus="$sfus" 'BEGIN {
  d = s1 - s0
  printf "fleet steady state over %.1f s: etcd puts %.1f/s in %.1f txns/s, raft proposals %.1f/s\n",
    d, (p1 - p0) / d, (t1 - t0) / d, (c1 - c0) / d
  printf "fleet CPU: gateway A %.1f%%, gateway B %.1f%% (all processes), etcd %.1f%% of one core; B lists %d SFUs\n",
    100 * (a1 - a0) / hz / d, 100 * (b1 - b0) / hz / d, 100 * (e1 - e0) / hz / d, sfus }' | tee -a "$tmp/raw"
grep -h "cluster:" "$tmp/gw-a.log" "$tmp/gw-b.log" | grep -v "learned from etcd" | tail -n 5
mkdir -p bench/results
cp "$tmp/raw" "bench/results/cluster-$(date -u +%Y%m%dT%H%M%SZ).txt"
