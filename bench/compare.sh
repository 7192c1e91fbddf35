#!/bin/sh
# Compares GET /v1/channel throughput and latency on loopback: one mock SFU directly (the limit),
# the gateway (1 and 2 workers, re-signing), HAProxy (1 and 2 threads) and nginx (1 and 2
# workers) round-robin over the same 2 mock SFUs that share one key; wrk interleaves the
# contenders at 64 and 256 connections. Prints medians and ratios, writes raw numbers and a chart.
# Usage: bench/compare.sh [DURATION_S] [ROUNDS]    (defaults 5 3; env BUILD=dir of the binaries)
# BASE_BUILD=dir adds base-1w and base-2w, the gateway built there (say, from an older commit),
# so a change is measured against its predecessor in the same interleaved run; ACCESS_LOG=1
# adds access-1w and access-2w, the gateway writing its access log ([log] access) to a file;
# CONTENDERS limits the run to some of the names.
set -eu
cd "$(dirname "$0")/.."
dur=${1:-5}
rounds=${2:-3}
conns_list="64 256"
contenders=${CONTENDERS:-"sfu-direct gateway-1w gateway-2w haproxy-1t haproxy-2t nginx-1w nginx-2w"}
if [ -n "${BASE_BUILD:-}" ]; then
  [ -x "$BASE_BUILD/sfu-gateway" ] || { echo "compare: no $BASE_BUILD/sfu-gateway" >&2; exit 2; }
  case " $contenders " in *" base-"*) ;; *) contenders="$contenders base-1w base-2w" ;; esac
fi
if [ "${ACCESS_LOG:-0}" = 1 ]; then
  case " $contenders " in *" access-"*) ;; *) contenders="$contenders access-1w access-2w" ;; esac
fi
case "$dur$rounds" in
  *[!0-9]*) echo "usage: $0 [DURATION_S] [ROUNDS]" >&2; exit 2 ;;
esac
if [ "$dur" -lt 1 ] || [ "$rounds" -lt 1 ]; then
  echo "usage: $0 [DURATION_S] [ROUNDS]" >&2; exit 2
fi

# bench_tmp, bench_port and bench_result are set by bench/lib.sh's functions; checking this
# file alone (without -x) cannot see that, hence the SC1091/SC2154 line directives below.
# shellcheck source=bench/lib.sh disable=SC1091
. bench/lib.sh
bench_init
bench_build

# Every SFU has the same key K (what a shared-key HAProxy/nginx setup needs); only the gateway
# has a key of its own and re-signs with K.
SFU_KEY=$(printf 'bench-compare-sfu-key-0123456789abcdefgh' | base64 | tr -d '\n')
GW_KEY=$(printf 'bench-compare-gateway-key-0123456789abcd' | base64 | tr -d '\n')
# shellcheck disable=SC2154
tmp=$bench_tmp

bench_start_mock "$SFU_KEY" mock1
# shellcheck disable=SC2154
up1=$bench_port
bench_start_mock "$SFU_KEY" mock2; up2=$bench_port
nodes="{\"sfu\":[{\"address\":\"http://127.0.0.1:$up1\",\"region\":\"eu-west\",\"key\":\"$SFU_KEY\"},\
{\"address\":\"http://127.0.0.1:$up2\",\"region\":\"eu-west\",\"key\":\"$SFU_KEY\"}]}"

# "name=port" of every contender.
ports="sfu-direct=$up1"
bench_start_gw 1 "$GW_KEY" "$nodes" gateway-1w; ports="$ports gateway-1w=$bench_port"
bench_start_gw 2 "$GW_KEY" "$nodes" gateway-2w; ports="$ports gateway-2w=$bench_port"
if [ -n "${BASE_BUILD:-}" ]; then
  # shellcheck disable=SC2034 # read by bench/lib.sh's bench_launch_gw
  bench_gw_bin=$BASE_BUILD/sfu-gateway
  bench_start_gw 1 "$GW_KEY" "$nodes" base-1w; ports="$ports base-1w=$bench_port"
  bench_start_gw 2 "$GW_KEY" "$nodes" base-2w; ports="$ports base-2w=$bench_port"
  # shellcheck disable=SC2034
  bench_gw_bin=
fi

# (bench/lib.sh's functions use n: the loop's own variable must be another.)
for aw in 1 2; do
  case " $contenders " in
  *" access-${aw}w "*)
    printf '[log]\naccess = "%s"\n' "$tmp/access-${aw}w.log" > "$tmp/access-${aw}w.toml"
    # shellcheck disable=SC2034 # read by bench/lib.sh's bench_launch_gw
    bench_gw_config=$tmp/access-${aw}w.toml
    bench_start_gw "$aw" "$GW_KEY" "$nodes" "access-${aw}w"
    ports="$ports access-${aw}w=$bench_port"
    # shellcheck disable=SC2034
    bench_gw_config=
    ;;
  esac
done

launch_haproxy() { # $1 = threads, $2 = name
  sed -e "s/@NBTHREAD@/$1/" -e "s/@PORT@/$bench_port/" -e "s/@UP1@/$up1/" -e "s/@UP2@/$up2/" \
    bench/haproxy.cfg.in > "$tmp/$2.cfg"
  haproxy -f "$tmp/$2.cfg" -db >> "$tmp/$2.log" 2>&1 &
}
start_haproxy() { bench_serve "$2" "$tmp/$2.log" launch_haproxy "$@"; }
start_haproxy 1 haproxy-1t; ports="$ports haproxy-1t=$bench_port"
start_haproxy 2 haproxy-2t; ports="$ports haproxy-2t=$bench_port"

# nginx drops to "nobody" for its workers unless told otherwise, and nobody cannot enter the
# 0700 temp dir; as root run the workers as root, as anyone else nginx keeps the current user.
if [ "$(id -u)" -eq 0 ]; then nginx_user="user root;"; else nginx_user=""; fi
launch_nginx() { # $1 = workers, $2 = name
  sed -e "s|@USER@|$nginx_user|" -e "s/@WORKERS@/$1/" -e "s|@TMP@|$tmp|g" -e "s/@NAME@/$2/g" \
    -e "s/@PORT@/$bench_port/" -e "s/@UP1@/$up1/" -e "s/@UP2@/$up2/" \
    bench/nginx.conf.in > "$tmp/$2.conf"
  nginx -p "$tmp" -c "$tmp/$2.conf" -e "$tmp/$2.err" >> "$tmp/$2.out" 2>&1 &
}
start_nginx() { bench_serve "$2" "$tmp/$2.err" launch_nginx "$@"; }
start_nginx 1 nginx-1w; ports="$ports nginx-1w=$bench_port"
start_nginx 2 nginx-2w; ports="$ports nginx-2w=$bench_port"

# Odoo-sized tokens: a long issuer pads each to about 250 bytes. They must outlive the run.
ttl=$(( rounds * 14 * (dur + 2) + 600 ))
iss=https://odoo.example.com:channel:bench-compare
tok_sfu=$(scripts/token.sh "$SFU_KEY" "$iss" "$ttl")
while [ ${#tok_sfu} -lt 248 ]; do
  iss="${iss}0"
  tok_sfu=$(scripts/token.sh "$SFU_KEY" "$iss" "$ttl")
done
tok_gw=$(scripts/token.sh "$GW_KEY" "$iss" "$ttl")
# Odoo sends one issuer per call: the measured load cycles through many calls, so that
# issuer affinity spreads them as it would in production (one token = one call pinned
# to one SFU, which would measure affinity, not the proxy).
ncalls=${BENCH_CALLS:-128}
for i in $(seq 1 "$ncalls"); do
  scripts/token.sh "$SFU_KEY" "$iss-$i" "$ttl" >> "$tmp/tokens.sfu"
  scripts/token.sh "$GW_KEY" "$iss-$i" "$ttl" >> "$tmp/tokens.gw"
done

port_of() { for np in $ports; do [ "${np%%=*}" != "$1" ] || echo "${np#*=}"; done; }
token_of() { case "$1" in gateway-*|base-*|access-*) echo "$tok_gw" ;; *) echo "$tok_sfu" ;; esac; }
tokens_of() {
  case "$1" in gateway-*|base-*|access-*) echo "$tmp/tokens.gw" ;; *) echo "$tmp/tokens.sfu" ;; esac
}

for c in $contenders; do
  bench_check_channel "$c" "$(port_of "$c")" "$(token_of "$c")"
done

stamp=$(date -u +%Y%m%dT%H%M%SZ)
ncont=$(echo "$contenders" | wc -w)
nconns=$(echo "$conns_list" | wc -w)
info="${rounds} rounds x ${dur}s, conns ${conns_list}, wrk -t2, token ${#tok_sfu} B, $ncalls calls, $(nproc) cores"
echo "compare: $info, $stamp" >&2
echo "compare: sfu-direct = 1 mock SFU; the others spread over 2 (same key); about \
$(( rounds * nconns * ncont * (dur + 1) )) s" >&2

# Interleaved: every contender once per (round, connections), so noise hits all alike.
: > "$tmp/raw"
for r in $(seq 1 "$rounds"); do
  for conns in $conns_list; do
    for c in $contenders; do
      bench_wrk "$(port_of "$c")" "$(tokens_of "$c")" "$conns" "$dur"
      # shellcheck disable=SC2154
      echo "$r $conns $c $bench_result" >> "$tmp/raw"
      printf 'compare: round %s/%s  %4s conns  %-11s %s\n' "$r" "$rounds" "$conns" "$c" \
        "$bench_result" >&2
    done
  done
done

# Medians over the rounds (mean of the middle two for an even count); error counts are totals.
awk -v order="$contenders" -v conns_list="$conns_list" "$bench_awk_median"'
  { k = $2 " " $3; rps[k] = rps[k] " " $4; p50[k] = p50[k] " " $5; p99[k] = p99[k] " " $6
    bad[k] += $7; err[k] += $8 }
  END {
    nc = split(conns_list, cl, " "); no = split(order, ol, " ")
    for (a = 1; a <= nc; a++) {
      for (b = 1; b <= no; b++) {
        k = cl[a] " " ol[b]; m[k] = median(rps[k])
      }
      for (b = 1; b <= no; b++) {
        name = ol[b]; k = cl[a] " " name
        g2 = m[cl[a] " gateway-2w"]
        same = name ~ /-1[wt]$/ ? m[cl[a] " gateway-1w"] : name ~ /-2[wt]$/ ? g2 : 0
        # Parenthesised: a bare ">" in print arguments would be an output redirection.
        r2 = (g2 > 0) ? sprintf("%.2f", m[k] / g2) : "-"
        rn = (same > 0) ? sprintf("%.2f", m[k] / same) : "-"
        printf "%s %s %.0f %.3f %.3f %d %d %s %s\n", name, cl[a], m[k], median(p50[k]),
          median(p99[k]), bad[k], err[k], r2, rn
      }
    }
  }' "$tmp/raw" > "$tmp/summary"

table() {
  printf '%-11s %5s %9s %8s %8s %7s %7s %6s %7s\n' contender conns req/s p50_ms p99_ms \
    non2xx sockerr vs_gw2 vs_gw_n
  awk '{ printf "%-11s %5s %9d %8.3f %8.3f %7d %7d %6s %7s\n", $1, $2, $3, $4, $5, $6, $7, $8, $9 }' \
    "$tmp/summary"
}
table
for aw in 1 2; do
  if [ -f "$tmp/access-${aw}w.log" ]; then
    echo "compare: access-${aw}w wrote $(wc -l < "$tmp/access-${aw}w.log") access log lines" >&2
  fi
done

mkdir -p bench/results
out=bench/results/compare-$stamp
{
  echo "# bench/compare.sh $stamp: $info"
  echo "# sfu-direct = 1 mock SFU; gateway/haproxy/nginx spread over 2 mock SFUs sharing one key"
  echo "# $(haproxy -v 2>&1 | head -n 1); $(nginx -v 2>&1); $(wrk -v 2>&1 | head -n 1)"
  echo "# raw: round conns contender req/s p50_ms p99_ms non2xx socket_errors"
  cat "$tmp/raw"
  echo "# medians (req/s, p50, p99) over rounds, error totals, ratios to gateway-2w and to the"
  echo "# gateway with the same worker count:"
  table | sed 's/^/# /'
} > "$out.txt"

# Chart data: one row per contender, a req/s column per connection count.
for c in $contenders; do
  printf '%s' "$c"
  for conns in $conns_list; do
    awk -v c="$c" -v n="$conns" '$1 == c && $2 == n { printf " %s", $3 }' "$tmp/summary"
  done
  echo
done > "$tmp/chart.dat"
gnuplot -e "datafile='$tmp/chart.dat'; outfile='$out.png'; charttitle='GET /v1/channel, $info'" \
  bench/plot.gp
echo "compare: wrote $out.txt and $out.png" >&2
