#!/bin/sh
# Benchmarks the observability routes at 1,024 SFUs on loopback: worker CPU per GET /metrics,
# /v1/health and /noop request, and GET /v1/channel throughput alone and during a /metrics flood,
# as ratios within one run; "uncached" is the same gateway rendering every request
# ([observability] max_age_ms = 0), "refused" the same with a token the clients do not have
# (every /metrics and /v1/health answer is a 401). BASE_BUILD=dir measures the
# gateway built there the same way, in the same run, so a change is compared with its predecessor.
# Usage: bench/observe.sh [DURATION_S] [FLOOD_CONNECTIONS] [ROUNDS]  (defaults 4 32 3; env BUILD,
# BASE_BUILD)
set -eu
cd "$(dirname "$0")/.."
dur=${1:-4}
flood=${2:-32}
rounds=${3:-3}
nsfus=1024
case "$dur$flood$rounds" in
  *[!0-9]*) echo "usage: $0 [DURATION_S] [FLOOD_CONNECTIONS] [ROUNDS]" >&2; exit 2 ;;
esac
if [ -n "${BASE_BUILD:-}" ] && [ ! -x "$BASE_BUILD/sfu-gateway" ]; then
  echo "observe: no $BASE_BUILD/sfu-gateway" >&2; exit 2
fi

# bench_tmp, bench_port and bench_result are set by bench/lib.sh's functions; checking this
# file alone (without -x) cannot see that, hence the SC1091/SC2154 line directives below.
# shellcheck source=bench/lib.sh disable=SC1091
. bench/lib.sh
bench_init
bench_build

GW_KEY=$(printf 'bench-observe-gateway-key-0123456789abcd' | base64 | tr -d '\n')
SFU_KEY=$(printf 'bench-observe-sfu-key-0123456789abcdefgh' | base64 | tr -d '\n')
# shellcheck disable=SC2154
tmp=$bench_tmp
hz=$(getconf CLK_TCK)

# One mock SFU in eu-west takes the channels; 1,023 static SFUs in ap-south listen nowhere
# (127.1.x.y port 9 on loopback: refused at once), so the registry is full, every one of them
# shows in /metrics and /v1/health, and channel requests hinted to eu-west reach the mock.
bench_start_mock "$SFU_KEY" mock
# shellcheck disable=SC2154
mport=$bench_port
sfus() {
  printf '[gateway]\nmax_sfus = %d\nlog_level = "info"\n\n' "$nsfus"
  printf '[[sfu]]\naddress = "http://127.0.0.1:%s"\nregion = "eu-west"\nkey = "%s"\n' \
    "$mport" "$SFU_KEY"
  i=1
  while [ $i -lt $nsfus ]; do
    printf '[[sfu]]\naddress = "http://127.1.%d.%d:9"\nregion = "ap-south"\nkey = "%s"\n' \
      $((i / 256)) $((i % 256)) "$SFU_KEY"
    i=$((i + 1))
  done
}
sfus > "$tmp/gateway.toml"
cp "$tmp/gateway.toml" "$tmp/base.toml"
{ printf '[observability]\ntoken = "bench-observe-token-not-given"\n\n'; sfus; } > "$tmp/refused.toml"
{ printf '[observability]\nmax_age_ms = 0\n\n'; sfus; } > "$tmp/uncached.toml"

launch_gw() { # $1 = binary, $2 = name
  SFU_GATEWAY_KEY=$GW_KEY "$1" --bind 127.0.0.1 --port "$bench_port" --workers 2 \
    --config "$tmp/$2.toml" --log-level info >> "$tmp/$2.log" 2>&1 &
}
# "name=port" and "name=worker pids" of every contender.
ports=""
workers=""
start_gw() { # $1 = binary, $2 = name
  bench_serve "$2" "$tmp/$2.log" launch_gw "$@"
  ports="$ports $2=$bench_port"
  n=0
  until [ "$(grep -c 'started worker pid=' "$tmp/$2.log")" -ge 2 ]; do
    n=$((n + 1)); [ $n -lt 100 ] || { echo "observe: $2 has no workers" >&2; exit 1; }
    sleep 0.05
  done
  workers="$workers $2=$(sed -n 's/.*started worker pid=\([0-9]*\) .*/\1/p' "$tmp/$2.log" |
    tr '\n' ',' | sed 's/,$//')"
}
contenders="gateway uncached refused"
start_gw "$BUILD/sfu-gateway" gateway
start_gw "$BUILD/sfu-gateway" uncached
start_gw "$BUILD/sfu-gateway" refused
if [ -n "${BASE_BUILD:-}" ]; then
  contenders="base $contenders"
  start_gw "$BASE_BUILD/sfu-gateway" base
fi
port_of() { for np in $ports; do [ "${np%%=*}" != "$1" ] || echo "${np#*=}"; done; }
pids_of() { for np in $workers; do [ "${np%%=*}" != "$1" ] || echo "${np#*=}" | tr ',' ' '; done; }

tok=$(scripts/token.sh "$GW_KEY" https://odoo.example.com:channel:bench-observe 3600)
for c in $contenders; do
  p=$(port_of "$c")
  # Every SFU is listed before anything is measured.
  auth="Authorization: Bearer bench-observe-token-not-given"
  n=0
  until [ "$(curl -s -H "$auth" "http://127.0.0.1:$p/metrics" |
    grep -c '^sfu_gateway_sfu_sessions{')" -eq $nsfus ]; do
    n=$((n + 1)); [ $n -lt 100 ] || { echo "observe: $c does not list $nsfus SFUs" >&2; exit 1; }
    sleep 0.1
  done
  code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: jwt $tok" \
    "http://127.0.0.1:$p/v1/channel?region=eu-west")
  [ "$code" = 200 ] || { echo "observe: $c answered $code to a channel request" >&2; exit 1; }
done

# CPU ticks (user + system) of the workers of a contender, summed.
cpu_of() { # $1 = contender
  for pid in $(pids_of "$1"); do awk '{ print $14 + $15 }' "/proc/$pid/stat"; done |
    awk '{ s += $1 } END { print s + 0 }'
}

# Worker CPU per request of one path: wrk on 4 connections, CPU from /proc; prints
# "requests cpu_us_per_request".
cpu_per_request() { # $1 = contender, $2 = path
  c0=$(cpu_of "$1")
  timeout $((dur + 15)) wrk -t1 -c4 -d"${dur}s" --timeout 5s "http://127.0.0.1:$(port_of "$1")$2" \
    > "$tmp/wrk.cpu" 2>&1 || true
  c1=$(cpu_of "$1")
  reqs=$(awk '/requests in/ { print $1 }' "$tmp/wrk.cpu")
  awk -v r="${reqs:-0}" -v t=$((c1 - c0)) -v hz="$hz" \
    'BEGIN { printf "%d %.1f\n", r, (r > 0) ? t * 1e6 / hz / r : 0 }'
}

# Channel req/s with 64 connections, with and without a /metrics flood of $flood connections
# running at the same time.
channel_rps() { # $1 = contender, $2 = flood connections (0 for none)
  p=$(port_of "$1")
  fpid=""
  if [ "$2" -gt 0 ]; then
    timeout $((dur + 20)) wrk -t1 -c"$2" -d"$((dur + 3))s" --timeout 10s \
      "http://127.0.0.1:$p/metrics" > "$tmp/wrk.flood" 2>&1 &
    fpid=$!
    sleep 1
  fi
  bench_wrk "$p" "$tok" 64 "$dur"
  [ -z "$fpid" ] || { kill "$fpid" 2>/dev/null || true; wait "$fpid" 2>/dev/null || true; }
  # shellcheck disable=SC2154
  echo "$bench_result" | awk '{ print $1 }'
}
# bench_wrk has no query string: point it at the eu-west mock through the hint.
bench_wrk() { # $1 = port, $2 = token, $3 = connections, $4 = duration (s)
  timeout $(($4 + 15)) wrk -t2 -c"$3" -d"$4s" --timeout 5s -H "Authorization: jwt $2" \
    "http://127.0.0.1:$1/v1/channel?region=eu-west" > "$tmp/wrk.out" 2>&1 &
  bench_wrk_pid=$!
  wait "$bench_wrk_pid" || true
  bench_wrk_pid=""
  bench_result=$(awk '/Requests\/sec/ { print $2 }' "$tmp/wrk.out")
}

stamp=$(date -u +%Y%m%dT%H%M%SZ)
info="$nsfus SFUs, 2 workers, ${rounds} rounds x ${dur}s, flood $flood conns, $(nproc) cores"
echo "observe: $info, $stamp" >&2
: > "$tmp/raw"
for r in $(seq 1 "$rounds"); do
  for c in $contenders; do
    for path in /noop /metrics /v1/health; do
      res=$(cpu_per_request "$c" "$path")
      echo "$r $c cpu $path $res" >> "$tmp/raw"
      printf 'observe: round %s %-8s cpu %-11s %8s requests %9s us/request\n' "$r" "$c" "$path" \
        "${res% *}" "${res#* }" >&2
    done
    for f in 0 "$flood"; do
      rps=$(channel_rps "$c" "$f")
      echo "$r $c channel flood=$f ${rps:-0}" >> "$tmp/raw"
      printf 'observe: round %s %-8s channel req/s with a /metrics flood of %2s conns: %s\n' \
        "$r" "$c" "$f" "${rps:-0}" >&2
    done
  done
done

# Medians over the rounds, then the ratios.
awk -v order="$contenders" -v flood="$flood" "$bench_awk_median"'
  $3 == "cpu" { cpu[$2 " " $4] = cpu[$2 " " $4] " " $6 }
  $3 == "channel" { rps[$2 " " $4] = rps[$2 " " $4] " " $5 }
  END {
    no = split(order, ol, " ")
    printf "%-8s %12s %12s %12s %9s %9s %12s %12s %9s\n", "gateway", "noop_us", "metrics_us",
      "health_us", "metr/noop", "hlth/noop", "chan_rps", "chan_flood", "flood/no"
    for (b = 1; b <= no; b++) {
      c = ol[b]
      n = median(cpu[c " /noop"]); m = median(cpu[c " /metrics"]); h = median(cpu[c " /v1/health"])
      r0 = median(rps[c " flood=0"]); r1 = median(rps[c " flood=" flood])
      # Parenthesised: a bare ">" in print arguments would be an output redirection.
      printf "%-8s %12.1f %12.1f %12.1f %9.1f %9.1f %12.0f %12.0f %9.3f\n", c, n, m, h,
        (n > 0) ? m / n : 0, (n > 0) ? h / n : 0, r0, r1, (r0 > 0) ? r1 / r0 : 0
    }
  }' "$tmp/raw" > "$tmp/summary"
cat "$tmp/summary"
mkdir -p bench/results
{
  echo "# bench/observe.sh $stamp: $info"
  echo "# raw: round contender cpu path requests cpu_us_per_request"
  echo "#      round contender channel flood=N req/s"
  cat "$tmp/raw"
  sed 's/^/# /' "$tmp/summary"
} > "bench/results/observe-$stamp.txt"
echo "observe: wrote bench/results/observe-$stamp.txt" >&2
