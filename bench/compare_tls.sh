#!/bin/sh
# Compares GET /v1/channel through the gateway, HAProxy and nginx with TLS in the path, on
# loopback, interleaved in one run, at equal workers (gateway workers = HAProxy threads = nginx
# workers), over the same 2 mock SFUs sharing one key:
#   upstream   clients speak plain HTTP; the SFUs are https (certificate verified against the
#              test CA and for their name, keep-alive to them, TLS sessions reused)
#   listener   clients speak HTTPS (one certificate for all three; wrk keeps its connections,
#              so each costs one handshake); the SFUs are plain HTTP
#   handshake  (not by default) clients speak HTTPS with Connection: close: a full handshake
#              per request
# Prints medians and ratios, writes raw numbers to bench/results/compare-tls-<stamp>.txt.
# Usage: bench/compare_tls.sh [DURATION_S] [ROUNDS]   (defaults 5 3)
# Env: MODES (default "upstream listener"), WORKERS (default "1 2"), CONNS (default "64"),
# BUILD=dir of the binaries; BASE_BUILD=dir adds the gateway built there as base-<n>w.
set -eu
cd "$(dirname "$0")/.."
dur=${1:-5}
rounds=${2:-3}
modes=${MODES:-"upstream listener"}
workers_list=${WORKERS:-"1 2"}
conns_list=${CONNS:-"64"}
case "$dur$rounds" in
  *[!0-9]*) echo "usage: $0 [DURATION_S] [ROUNDS]" >&2; exit 2 ;;
esac
if [ "$dur" -lt 1 ] || [ "$rounds" -lt 1 ]; then
  echo "usage: $0 [DURATION_S] [ROUNDS]" >&2; exit 2
fi
if [ -n "${BASE_BUILD:-}" ] && [ ! -x "$BASE_BUILD/sfu-gateway" ]; then
  echo "compare_tls: no $BASE_BUILD/sfu-gateway" >&2; exit 2
fi

# shellcheck source=bench/lib.sh disable=SC1091
. bench/lib.sh
bench_init
bench_build

SFU_KEY=$(printf 'bench-compare-sfu-key-0123456789abcdefgh' | base64 | tr -d '\n')
GW_KEY=$(printf 'bench-compare-gateway-key-0123456789abcd' | base64 | tr -d '\n')
# shellcheck disable=SC2154 # set by bench/lib.sh
tmp=$bench_tmp

# The SFUs' certificate (sfu.bench.test, 127.0.0.1) and the listeners' (gw.bench.test), each
# from its own throwaway CA.
bench_tls_cert sfu sfu.bench.test
bench_tls_cert gw gw.bench.test
cat "$tmp/gw.pem" "$tmp/gw.key" > "$tmp/gw.combined.pem" # HAProxy's crt: both in one file

bench_start_mock "$SFU_KEY" mock1 --tls-cert "$tmp/sfu.pem" --tls-key "$tmp/sfu.key"
# shellcheck disable=SC2154
up1=$bench_port
bench_start_mock "$SFU_KEY" mock2 --tls-cert "$tmp/sfu.pem" --tls-key "$tmp/sfu.key"
up2=$bench_port

if [ "$(id -u)" -eq 0 ]; then nginx_user="user root;"; else nginx_user=""; fi

# "mode:name=port" of every contender.
ports=""
contenders=""
add() { # $1 = mode, $2 = name, $3 = port
  ports="$ports $1:$2=$3"
  contenders="$contenders $1:$2"
}

start_gateway() { # $1 = mode, $2 = workers, $3 = name, $4 = binary
  if [ "$1" = upstream ]; then
    nodes="{\"sfu\":[{\"address\":\"https://127.0.0.1:$up1\",\"key\":\"$SFU_KEY\"},\
{\"address\":\"https://127.0.0.1:$up2\",\"key\":\"$SFU_KEY\"}]}"
    printf '[tls]\nca_file = "%s"\n' "$tmp/sfu.ca.pem" > "$tmp/$1-$3.toml"
  else
    nodes="{\"sfu\":[{\"address\":\"http://127.0.0.1:$up1\",\"key\":\"$SFU_KEY\"},\
{\"address\":\"http://127.0.0.1:$up2\",\"key\":\"$SFU_KEY\"}]}"
    printf '[tls]\ncert = "%s"\nkey = "%s"\n' "$tmp/gw.pem" "$tmp/gw.key" > "$tmp/$1-$3.toml"
  fi
  # shellcheck disable=SC2034 # read by bench/lib.sh's bench_launch_gw
  bench_gw_config=$tmp/$1-$3.toml
  # shellcheck disable=SC2034
  bench_gw_bin=$4
  bench_start_gw "$2" "$GW_KEY" "$nodes" "$1-$3"
  # shellcheck disable=SC2034
  bench_gw_config=
  # shellcheck disable=SC2034
  bench_gw_bin=
  add "$1" "$3" "$bench_port"
}

launch_haproxy() { # $1 = mode, $2 = threads, $3 = name
  front="" back=""
  if [ "$1" = upstream ]; then
    back="ssl verify required ca-file $tmp/sfu.ca.pem sni str(sfu.bench.test) verifyhost sfu.bench.test"
  else
    front="ssl crt $tmp/gw.combined.pem alpn http/1.1"
  fi
  cat > "$tmp/$1-$3.cfg" <<EOF
global
	nbthread $2
	maxconn 4096
defaults
	mode http
	option http-keep-alive
	option forwardfor
	http-reuse always
	timeout connect 2s
	timeout client 30s
	timeout server 30s
	timeout http-keep-alive 30s
	timeout http-request 10s
frontend sfu_front
	bind 127.0.0.1:$bench_port $front
	default_backend sfu_fleet
backend sfu_fleet
	balance roundrobin
	server sfu1 127.0.0.1:$up1 $back
	server sfu2 127.0.0.1:$up2 $back
EOF
  haproxy -f "$tmp/$1-$3.cfg" -db >> "$tmp/$1-$3.log" 2>&1 &
}

launch_nginx() { # $1 = mode, $2 = workers, $3 = name
  listen="" certs="" scheme=http upssl=""
  if [ "$1" = upstream ]; then
    scheme=https
    upssl="proxy_ssl_verify on; proxy_ssl_trusted_certificate $tmp/sfu.ca.pem;
			proxy_ssl_name sfu.bench.test; proxy_ssl_server_name on;
			proxy_ssl_session_reuse on; proxy_ssl_protocols TLSv1.2 TLSv1.3;"
  else
    listen=ssl
    # nginx 1.22 leaves TLS 1.3 out by default (1.23.4 added it): the gateway and HAProxy
    # speak 1.2 and 1.3, so nginx does too, or it would resume sessions the cheaper 1.2 way.
    certs="ssl_certificate $tmp/gw.pem; ssl_certificate_key $tmp/gw.key;
		ssl_protocols TLSv1.2 TLSv1.3;"
  fi
  cat > "$tmp/$1-$3.conf" <<EOF
$nginx_user
worker_processes $2;
daemon off;
master_process on;
pid $tmp/$1-$3.pid;
error_log $tmp/$1-$3.err warn;
events { worker_connections 4096; }
http {
	access_log off;
	client_body_temp_path $tmp/$1-$3-body;
	proxy_temp_path $tmp/$1-$3-proxy;
	fastcgi_temp_path $tmp/$1-$3-fastcgi;
	uwsgi_temp_path $tmp/$1-$3-uwsgi;
	scgi_temp_path $tmp/$1-$3-scgi;
	keepalive_requests 1000000;
	upstream sfu_fleet {
		server 127.0.0.1:$up1;
		server 127.0.0.1:$up2;
		keepalive 64;
		keepalive_requests 1000000;
	}
	server {
		listen 127.0.0.1:$bench_port $listen;
		$certs
		location / {
			proxy_pass $scheme://sfu_fleet;
			proxy_http_version 1.1;
			proxy_set_header Connection "";
			proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
			$upssl
		}
	}
}
EOF
  nginx -p "$tmp" -c "$tmp/$1-$3.conf" -e "$tmp/$1-$3.err" >> "$tmp/$1-$3.out" 2>&1 &
}

for mode in $modes; do
  case "$mode" in
    upstream) bench_scheme=http ;;
    listener|handshake) bench_scheme=https ;;
    *) echo "compare_tls: unknown mode $mode" >&2; exit 2 ;;
  esac
  for w in $workers_list; do
    start_gateway "$mode" "$w" "gateway-${w}w" "$BUILD/sfu-gateway"
    [ -z "${BASE_BUILD:-}" ] || start_gateway "$mode" "$w" "base-${w}w" "$BASE_BUILD/sfu-gateway"
    bench_serve "$mode-haproxy-${w}t" "$tmp/$mode-haproxy-${w}t.log" launch_haproxy "$mode" "$w" \
      "haproxy-${w}t"
    add "$mode" "haproxy-${w}t" "$bench_port"
    bench_serve "$mode-nginx-${w}w" "$tmp/$mode-nginx-${w}w.err" launch_nginx "$mode" "$w" \
      "nginx-${w}w"
    add "$mode" "nginx-${w}w" "$bench_port"
  done
done

# Odoo-sized tokens for many calls, as bench/compare.sh makes them.
ttl=$(( rounds * 40 * (dur + 2) + 600 ))
iss=https://odoo.example.com:channel:bench-compare-tls
tok_sfu=$(scripts/token.sh "$SFU_KEY" "$iss" "$ttl")
while [ ${#tok_sfu} -lt 248 ]; do
  iss="${iss}0"
  tok_sfu=$(scripts/token.sh "$SFU_KEY" "$iss" "$ttl")
done
tok_gw=$(scripts/token.sh "$GW_KEY" "$iss" "$ttl")
ncalls=${BENCH_CALLS:-128}
for i in $(seq 1 "$ncalls"); do
  scripts/token.sh "$SFU_KEY" "$iss-$i" "$ttl" >> "$tmp/tokens.sfu"
  scripts/token.sh "$GW_KEY" "$iss-$i" "$ttl" >> "$tmp/tokens.gw"
done

port_of() { for np in $ports; do [ "${np%%=*}" != "$1" ] || echo "${np#*=}"; done; }
is_gw() { case "${1#*:}" in gateway-*|base-*) return 0 ;; *) return 1 ;; esac; }
scheme_of() { case "${1%%:*}" in upstream) echo http ;; *) echo https ;; esac; }

for c in $contenders; do
  bench_scheme=$(scheme_of "$c")
  if is_gw "$c"; then t=$tok_gw; else t=$tok_sfu; fi
  bench_check_channel "$c" "$(port_of "$c")" "$t"
done

# The handshake mode: wrk reconnects after every answer that says Connection: close.
cat > "$tmp/close.lua" <<'EOF'
local tokens = {}
for line in io.lines(os.getenv("BENCH_TOKENS")) do
  tokens[#tokens + 1] = line
end
local i = 0
request = function()
  i = i + 1
  return wrk.format("GET", "/v1/channel", { ["Authorization"] = "jwt " .. tokens[(i % #tokens) + 1],
                                          ["Connection"] = "close" })
end
EOF

stamp=$(date -u +%Y%m%dT%H%M%SZ)
ncont=$(echo "$contenders" | wc -w)
nconns=$(echo "$conns_list" | wc -w)
info="${rounds} rounds x ${dur}s, conns ${conns_list}, wrk -t2, token ${#tok_sfu} B, $ncalls calls, $(nproc) cores, EC P-256"
echo "compare_tls: $info, $stamp" >&2
echo "compare_tls: about $(( rounds * nconns * ncont * (dur + 1) )) s" >&2

: > "$tmp/raw"
for r in $(seq 1 "$rounds"); do
  for conns in $conns_list; do
    for c in $contenders; do
      # shellcheck disable=SC2034 # read by bench/lib.sh's bench_wrk
      bench_scheme=$(scheme_of "$c")
      if is_gw "$c"; then toks=$tmp/tokens.gw; else toks=$tmp/tokens.sfu; fi
      if [ "${c%%:*}" = handshake ]; then
        url="https://127.0.0.1:$(port_of "$c")/v1/channel"
        BENCH_TOKENS=$toks timeout $(( dur + 15 )) wrk -t2 -c"$conns" -d"${dur}s" --timeout 5s \
          --latency -s "$tmp/close.lua" "$url" > "$tmp/wrk.out" 2>&1 || true
        bench_result=$(awk '
          function ms(v) {
            if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0
            if (v ~ /m$/) return v * 60000; if (v ~ /s$/) return v * 1000; return v
          }
          /Requests\/sec/ { rps = $2 } /^ +50%/ { p50 = ms($2) } /^ +99%/ { p99 = ms($2) }
          /Non-2xx/ { bad = $5 } /Socket errors/ { gsub(",", ""); err = $4 + $6 + $8 + $10 }
          END { printf "%.0f %.3f %.3f %d %d\n", rps, p50, p99, bad, err }' "$tmp/wrk.out")
      else
        bench_wrk "$(port_of "$c")" "$toks" "$conns" "$dur"
      fi
      # shellcheck disable=SC2154
      echo "$r $conns $c $bench_result" >> "$tmp/raw"
      printf 'compare_tls: round %s/%s %4s conns  %-26s %s\n' "$r" "$rounds" "$conns" "$c" \
        "$bench_result" >&2
    done
  done
done

# Medians over the rounds; ratios of the gateway to HAProxy and nginx at the same worker
# count and mode (req/s: gateway / other, above 1 = the gateway is faster; p99: gateway /
# other, below 1 = the gateway's tail is shorter).
awk -v order="$contenders" -v conns_list="$conns_list" "$bench_awk_median"'
  { k = $2 " " $3; rps[k] = rps[k] " " $4; p50[k] = p50[k] " " $5; p99[k] = p99[k] " " $6
    bad[k] += $7; err[k] += $8 }
  END {
    nc = split(conns_list, cl, " "); no = split(order, ol, " ")
    for (a = 1; a <= nc; a++)
      for (b = 1; b <= no; b++) {
        k = cl[a] " " ol[b]
        printf "%s %s %.0f %.3f %.3f %d %d\n", ol[b], cl[a], median(rps[k]), median(p50[k]),
          median(p99[k]), bad[k], err[k]
      }
  }' "$tmp/raw" > "$tmp/summary"

table() {
  printf '%-26s %5s %9s %8s %8s %7s %7s\n' contender conns req/s p50_ms p99_ms non2xx sockerr
  awk '{ printf "%-26s %5s %9d %8.3f %8.3f %7d %7d\n", $1, $2, $3, $4, $5, $6, $7 }' \
    "$tmp/summary"
  echo
  printf '%-10s %5s %-8s %-10s %8s %8s\n' mode conns workers vs rps_x p99_x
  awk '
    { split($1, mn, ":"); mode = mn[1]; name = mn[2]; n = name; sub(/^[a-z]+-/, "", n)
      w = substr(n, 1, length(n) - 1)
      key = mode " " $2 " " w
      if (name ~ /^gateway-/) { grps[key] = $3; gp99[key] = $5 }
      else if (name ~ /^(haproxy|nginx)-/) { split(name, nn, "-"); other[key " " nn[1]] = $3 " " $5 }
      keys[key] = 1 }
    END {
      for (key in keys) for (o in other) if (index(o, key " ") == 1 && grps[key] > 0) {
        split(other[o], v, " "); split(o, parts, " ")
        printf "%-10s %5s %-8s %-10s %8.2f %8.2f\n", parts[1], parts[2], parts[3], parts[4],
          grps[key] / v[1], (v[2] > 0 ? gp99[key] / v[2] : 0)
      }
    }' "$tmp/summary" | sort
}
table

mkdir -p bench/results
out=bench/results/compare-tls-$stamp
{
  echo "# bench/compare_tls.sh $stamp: $info"
  echo "# modes: $modes; upstream = https SFUs (verified, keep-alive, session reuse); listener ="
  echo "# HTTPS clients (keep-alive); handshake = HTTPS clients, Connection: close"
  echo "# $(haproxy -v 2>&1 | head -n 1); $(nginx -v 2>&1); $(wrk -v 2>&1 | head -n 1);"
  echo "# $(openssl version)"
  echo "# raw: round conns mode:contender req/s p50_ms p99_ms non2xx socket_errors"
  cat "$tmp/raw"
  echo "# medians over rounds, error totals; then gateway / other at equal workers"
  table | sed 's/^/# /'
} > "$out.txt"
echo "compare_tls: wrote $out.txt" >&2
