#!/bin/sh
# Instructions per proxied GET /v1/channel in the worker, counted by callgrind: repeatable
# for the same binary and inputs whatever else the machine does, so a change's cost on the
# hot path shows even on a noisy shared machine. Runs N1 then N2 requests on one keep-alive
# connection through a 1-worker gateway to one mock SFU; (Ir(N2) - Ir(N1)) / (N2 - N1) leaves
# out start-up. With BASE_BUILD=dir, the gateway built there is counted too. TLS=listener
# sends the requests over HTTPS (the gateway terminates TLS), TLS=upstream reaches the SFU
# over https (both: TLS=both); each costs its handshakes once, then records only.
# Usage: bench/instructions.sh [N1] [N2]    (defaults 1000 3000; needs valgrind and python3)
set -eu
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh disable=SC1091
. bench/lib.sh
bench_init
bench_build
n1=${1:-1000}
n2=${2:-3000}
SFU_KEY=$(printf 'bench-compare-sfu-key-0123456789abcdefgh' | base64 | tr -d '\n')
GW_KEY=$(printf 'bench-compare-gateway-key-0123456789abcd' | base64 | tr -d '\n')
# shellcheck disable=SC2154
tmp=$bench_tmp
tls=${TLS:-}
case "$tls" in ""|listener|upstream|both) ;; *) echo "instructions: TLS=$tls?" >&2; exit 2 ;; esac
bench_tls_cert sfu sfu.bench.test
bench_tls_cert gw gw.bench.test
bench_start_mock "$SFU_KEY" mock --tls-cert "$tmp/sfu.pem" --tls-key "$tmp/sfu.key"
# shellcheck disable=SC2154
up=$bench_port
scheme=http
: > "$tmp/gw.toml"
case "$tls" in upstream|both)
  scheme=https
  printf '[tls]\nca_file = "%s"\n' "$tmp/sfu.ca.pem" >> "$tmp/gw.toml" ;;
esac
case "$tls" in listener|both)
  case "$tls" in both) ;; *) printf '[tls]\n' >> "$tmp/gw.toml" ;; esac
  printf 'cert = "%s"\nkey = "%s"\n' "$tmp/gw.pem" "$tmp/gw.key" >> "$tmp/gw.toml" ;;
esac
nodes="{\"sfu\":[{\"address\":\"$scheme://127.0.0.1:$up\",\"region\":\"eu-west\",\"key\":\"$SFU_KEY\"}]}"
for i in $(seq 1 64); do
  scripts/token.sh "$GW_KEY" "https://odoo.example.com:channel:ir-$i" 3600 >> "$tmp/tokens"
done

listener_scheme() { case "$tls" in listener|both) echo https ;; *) echo http ;; esac; }

# Ir of the busiest process (the worker) after n requests through the gateway binary $1.
count() { # $1 = gateway binary, $2 = requests, $3 = name
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  mkdir -p "$tmp/$3"
  SFU_GATEWAY_KEY=$GW_KEY SFU_GATEWAY_NODES=$nodes valgrind --tool=callgrind \
    --callgrind-out-file="$tmp/$3/cg.%p" "$1" --bind 127.0.0.1 --port "$port" --workers 1 \
    --config "$tmp/gw.toml" --log-level warn 2> "$tmp/$3/valgrind.log" &
  vpid=$!
  bench_pids="$bench_pids $vpid"
  n=0
  until curl -skf "$(listener_scheme)://127.0.0.1:$port/noop" > /dev/null 2>&1; do
    n=$((n + 1)); [ $n -lt 300 ] || { echo "instructions: $3 did not start" >&2; exit 1; }
    sleep 0.1
  done
  python3 - "$port" "$2" "$tmp/tokens" "$(listener_scheme)" <<'PY'
import socket, ssl, sys
port, n, toks = int(sys.argv[1]), int(sys.argv[2]), open(sys.argv[3]).read().split()
s = socket.create_connection(("127.0.0.1", port))
if sys.argv[4] == "https":
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    s = ctx.wrap_socket(s)
f = s.makefile("rb")
for i in range(n):
    s.sendall(("GET /v1/channel HTTP/1.1\r\nHost: gw\r\nAuthorization: jwt %s\r\n\r\n"
               % toks[i % len(toks)]).encode())
    status, length = f.readline(), 0
    while True:
        h = f.readline()
        if h in (b"\r\n", b""):
            break
        if h.lower().startswith(b"content-length:"):
            length = int(h.split(b":")[1])
    f.read(length)
    if b" 200 " not in status:
        sys.exit("instructions: request %d answered %r" % (i, status))
PY
  kill -TERM "$vpid"
  wait "$vpid" 2>/dev/null || true
  for f in "$tmp/$3"/cg.*; do sed -n 's/^summary: //p' "$f"; done | sort -n | tail -1
  rm -rf "${tmp:?}/$3"
}

per_request() { # $1 = gateway binary, $2 = label
  a=$(count "$1" "$n1" "$2-a")
  b=$(count "$1" "$n2" "$2-b")
  echo "$2 $(( (b - a) / (n2 - n1) ))"
}

echo "instructions per proxied /v1/channel in the worker ($n1 and $n2 requests, callgrind${tls:+, TLS $tls}):" >&2
cur=$(per_request "$BUILD/sfu-gateway" current)
echo "$cur"
if [ -n "${BASE_BUILD:-}" ]; then
  base=$(per_request "$BASE_BUILD/sfu-gateway" base)
  echo "$base"
  awk -v c="${cur#* }" -v b="${base#* }" 'BEGIN { printf "current / base: %.3f\n", c / b }'
fi
