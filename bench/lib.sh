# Shell functions shared by the bench/ scripts (POSIX sh): build, temp dir, processes that are
# always cleaned up, free loopback ports, start-up polling, mock SFUs, gateways, one parsed wrk run.
# Source it from the repository root after `set -eu`; call bench_init first.
# shellcheck shell=sh

# Sets BUILD (binaries directory, env BUILD, default build), bench_tmp and the traps: whatever
# was registered with bench_track is killed on exit, on Ctrl-C and on SIGTERM.
# The awk function median(s): the median of the space-separated numbers in s (the mean of
# the middle two for an even count). Put it before a program: awk "$bench_awk_median"'...'.
# shellcheck disable=SC2034 # used by the scripts that source this file
bench_awk_median='
  function median(s,   v, n, i, j, t) {
    n = split(s, v, " ")
    for (i = 2; i <= n; i++)
      for (j = i; j > 1 && v[j - 1] + 0 > v[j] + 0; j--) { t = v[j]; v[j] = v[j - 1]; v[j - 1] = t }
    return n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
  }
'

bench_init() {
  BUILD=${BUILD:-build}
  bench_tmp=$(mktemp -d)
  bench_pids=""
  bench_ports=""
  bench_wrk_pid=""
  trap bench_cleanup EXIT
  trap 'exit 130' INT TERM
}

bench_track() { # $1 = pid
  bench_pids="$bench_pids $1"
}

# TERM to everything started, a bounded wait for it to go, then KILL for what is left.
bench_cleanup() {
  [ -z "$bench_wrk_pid" ] || kill "$bench_wrk_pid" 2>/dev/null || true
  for p in $bench_pids; do kill "$p" 2>/dev/null || true; done
  n=0
  for p in $bench_pids; do
    while kill -0 "$p" 2>/dev/null && [ $n -lt 50 ]; do n=$((n + 1)); sleep 0.1; done
    kill -9 "$p" 2>/dev/null || true
  done
  wait 2>/dev/null || true
  rm -rf "$bench_tmp"
}

# Installs the bench packages if missing, builds the gateway and the mock SFU into $BUILD.
bench_build() {
  scripts/deps.sh bench >/dev/null
  make -s -j2 BUILD="$BUILD" "$BUILD/sfu-gateway" "$BUILD/mock-sfu"
}

# Sets bench_port to a loopback TCP port no socket uses (in any state: a client socket's local
# port blocks a bind too), below the kernel's ephemeral range so that no outgoing connection
# takes it later, and not handed out by this run yet.
bench_free_port() {
  bench_used=$(awk 'NR > 1 { split($2, a, ":"); print a[2] }' /proc/net/tcp /proc/net/tcp6 \
    2>/dev/null | sort -u | tr '\n' ' ')
  bench_hi=$(awk '{ print $1 }' /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
  [ "$bench_hi" -gt 12000 ] || bench_hi=65000
  p=$(( 10000 + ($$ * 7 + ${#bench_ports} * 13) % (bench_hi - 10000) ))
  n=0
  while :; do
    case " $bench_used $bench_ports " in
      *" $(printf '%04X' "$p") "*|*" $p "*) ;;
      *) break ;;
    esac
    n=$((n + 1)); [ $n -lt 1000 ] || { echo "bench: no free port" >&2; exit 1; }
    p=$((p + 1)); [ $p -lt "$bench_hi" ] || p=10000
  done
  bench_ports="$bench_ports $p"
  bench_port=$p
}

# Polls until something answers HTTP (HTTPS when bench_scheme=https, certificate not checked)
# on the port. Returns 1 if the process died first (so the caller may retry), exits if nothing
# answered within 5 s.
bench_wait_http() { # $1 = port, $2 = pid
  n=0
  until curl -sk -o /dev/null --max-time 1 "${bench_scheme:-http}://127.0.0.1:$1/" 2>/dev/null; do
    kill -0 "$2" 2>/dev/null || return 1
    n=$((n + 1))
    [ $n -lt 100 ] || { echo "bench: nothing answers on port $1 after 5 s" >&2; exit 1; }
    sleep 0.05
  done
}

# Starts a server on a free port and waits until it answers; sets bench_port. Another program
# may take the port between the choice and the bind, so a server that dies at start-up is
# retried on another port, twice; then its log is shown and the script exits.
bench_serve() { # $1 = name, $2 = log file, $3... = function starting it in the background
  bench_name=$1
  bench_log=$2
  shift 2
  for _ in 1 2 3; do
    bench_free_port
    "$@"
    bench_pid=$!
    bench_track "$bench_pid"
    ! bench_wait_http "$bench_port" "$bench_pid" || return 0
  done
  echo "bench: $bench_name did not start:" >&2
  cat "$bench_log" >&2 2>/dev/null || true
  exit 1
}

# Starts a mock SFU on an ephemeral port; sets bench_port. Extra arguments go to the mock
# (--tls-cert FILE --tls-key FILE: it serves HTTPS too).
bench_start_mock() { # $1 = key (base64), $2 = name, $3... = more mock arguments
  bench_mock_key=$1
  bench_mock_name=$2
  shift 2
  "$BUILD/mock-sfu" --port 0 --key "$bench_mock_key" --quiet "$@" > "$bench_tmp/$bench_mock_name.out" 2>&1 &
  bench_track $!
  n=0
  until grep -q '^PORT ' "$bench_tmp/$bench_mock_name.out" 2>/dev/null; do
    n=$((n + 1))
    [ $n -lt 100 ] || { echo "bench: mock SFU $bench_mock_name did not start" >&2; exit 1; }
    sleep 0.05
  done
  bench_port=$(sed -n 's/^PORT //p' "$bench_tmp/$bench_mock_name.out")
}

# Starts the gateway on a free port; sets bench_port.
bench_start_gw() { # $1 = workers, $2 = gateway key, $3 = SFU_GATEWAY_NODES json, $4 = name
  bench_serve "$4" "$bench_tmp/$4.log" bench_launch_gw "$@"
}

bench_launch_gw() { # the arguments of bench_start_gw; bench_gw_config: a config file
  SFU_GATEWAY_KEY=$2 SFU_GATEWAY_NODES=$3 "${bench_gw_bin:-$BUILD/sfu-gateway}" --bind 127.0.0.1 \
    --port "$bench_port" --workers "$1" --config "${bench_gw_config:-/dev/null}" --log-level warn \
    >> "$bench_tmp/$4.log" 2>&1 &
}

# A throwaway CA and one certificate it signs (EC P-256, SHA-256) for the name $2 and
# 127.0.0.1, made with the openssl command in $bench_tmp: $1.ca.pem, $1.pem, $1.key (0600).
bench_tls_cert() { # $1 = file prefix, $2 = DNS name
  (
    cd "$bench_tmp"
    umask 077
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -sha256 -days 2 \
      -subj "/CN=bench CA" -keyout "$1.ca.key" -out "$1.ca.pem" 2>/dev/null
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -sha256 \
      -subj "/CN=$2" -keyout "$1.key" -out "$1.csr" 2>/dev/null
    printf 'subjectAltName=DNS:%s,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n' "$2" > "$1.ext"
    openssl x509 -req -in "$1.csr" -CA "$1.ca.pem" -CAkey "$1.ca.key" -CAcreateserial \
      -sha256 -days 1 -extfile "$1.ext" -out "$1.pem" 2>/dev/null
    chmod 644 "$1.pem" "$1.ca.pem"
  ) || { echo "bench: openssl could not make a certificate" >&2; exit 1; }
}

# Fails loudly unless GET /v1/channel on the port answers 200 with a uuid (over HTTPS when
# bench_scheme=https).
bench_check_channel() { # $1 = name, $2 = port, $3 = token
  code=$(curl -sk -o "$bench_tmp/check.body" -w '%{http_code}' --max-time 3 \
    -H "Authorization: jwt $3" "${bench_scheme:-http}://127.0.0.1:$2/v1/channel" 2>/dev/null) || true
  if [ "$code" != 200 ] || ! grep -Eq \
    '"uuid" *: *"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"' \
    "$bench_tmp/check.body"; then
    echo "bench: $1 (port $2) answered HTTP ${code:-none} to GET /v1/channel:" >&2
    cat "$bench_tmp/check.body" >&2 2>/dev/null || true
    echo >&2
    exit 1
  fi
}

# One wrk run against GET /v1/channel (over HTTPS when bench_scheme=https: wrk keeps each
# connection, so a connection costs one handshake); sets bench_result to
# "rps p50_ms p99_ms non2xx socket_errors". wrk runs in the background so that a TERM to the
# script stops it too (the trap kills bench_wrk_pid); the pid is forgotten once reaped.
bench_wrk() { # $1 = port, $2 = token, or a file of tokens (cycled), $3 = connections, $4 = duration (s)
  url="${bench_scheme:-http}://127.0.0.1:$1/v1/channel"
  if [ -f "$2" ]; then
    BENCH_TOKENS=$2 timeout $(( $4 + 15 )) wrk -t2 -c"$3" -d"$4s" --timeout 5s --latency \
      -s bench/tokens.lua "$url" > "$bench_tmp/wrk.out" 2>&1 &
  else
    timeout $(( $4 + 15 )) wrk -t2 -c"$3" -d"$4s" --timeout 5s --latency \
      -H "Authorization: jwt $2" "$url" > "$bench_tmp/wrk.out" 2>&1 &
  fi
  bench_wrk_pid=$!
  wait "$bench_wrk_pid" || true
  bench_wrk_pid=""
  # shellcheck disable=SC2034 # the result is for the sourcing script
  bench_result=$(awk '
    function ms(v) {
      if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0
      if (v ~ /m$/) return v * 60000; if (v ~ /s$/) return v * 1000; return v
    }
    /Requests\/sec/ { rps = $2 }
    /^ +50%/ { p50 = ms($2) }
    /^ +99%/ { p99 = ms($2) }
    /Non-2xx/ { bad = $5 }
    /Socket errors/ { gsub(",", ""); err = $4 + $6 + $8 + $10 }
    END { printf "%.0f %.3f %.3f %d %d\n", rps, p50, p99, bad, err }' "$bench_tmp/wrk.out")
}
