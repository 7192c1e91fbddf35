#!/bin/sh
# How large a /v1/stats the probe and the agent read: a real odoo/sfu holding N channels,
# probed as a static SFU by one gateway and registered by sfu-gateway-agent with another;
# prints the body size and what each gateway's /v1/health reports. Loopback only.
# Usage: bench/stats_size.sh [CHANNELS...]    (default 1000 10000 50000; needs node and npm)
set -eu
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh disable=SC1091
. bench/lib.sh
bench_init
bench_build
make -s -j2 BUILD="$BUILD" "$BUILD/sfu-gateway-agent"
# shellcheck disable=SC2154
tmp=$bench_tmp
scripts/interop-peer.sh "$tmp/sfu" 2>/dev/null
KEY=$(printf 'stats-size-sfu-key-0123456789abcdef' | base64 | tr -d '\n')
GWKEY=$(printf 'stats-size-gateway-key-0123456789ab' | base64 | tr -d '\n')
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
health_channels() { # $1 = gateway port -> "channels" of its one SFU, or "-"
  curl -s --max-time 5 "http://127.0.0.1:$1/v1/health" |
    python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["sfus"][0]["channels"] if d["sfus"] else "-")' 2>/dev/null || echo -
}
wait_channels() { # $1 = port, $2 = want; polls up to 30 s
  n=0
  while [ "$(health_channels "$1")" != "$2" ] && [ $n -lt 300 ]; do sleep 0.1; n=$((n + 1)); done
  health_channels "$1"
}
[ $# -gt 0 ] || set -- 1000 10000 50000
for want in "$@"; do
  sp=$(free_port)
  (cd "$tmp/sfu" && AUTH_KEY=$KEY PUBLIC_IP=127.0.0.1 PORT=$sp HTTP_INTERFACE=127.0.0.1 PROXY=1 \
    LOG_LEVEL=error exec node --import tsx sfu_http.ts) > "$tmp/sfu.$want.log" 2>&1 &
  sfu_pid=$!
  bench_pids="$bench_pids $sfu_pid"
  n=0
  until curl -sf "http://127.0.0.1:$sp/v1/noop" > /dev/null; do
    sleep 0.1; n=$((n + 1)); [ $n -lt 200 ] || { echo "stats_size: the SFU did not start" >&2; exit 1; }
  done
  # N channels, created on the SFU directly, 64 requests at a time over keep-alive.
  node -e '
    const http = require("http"), crypto = require("crypto");
    const [port, keyB64, total] = [+process.argv[1], process.argv[2], +process.argv[3]];
    const key = Buffer.from(keyB64, "base64"), agent = new http.Agent({ keepAlive: true });
    const b64 = (s) => Buffer.from(s).toString("base64url");
    let sent = 0, done = 0;
    function one() {
      if (sent >= total) return;
      const i = sent++, h = b64(JSON.stringify({ alg: "HS256", typ: "JWT" }));
      const c = b64(JSON.stringify({ iss: "https://odoo.example.com:channel:" + i,
        exp: Math.floor(Date.now() / 1000) + 600 }));
      const sig = crypto.createHmac("sha256", key).update(h + "." + c).digest("base64url");
      http.get({ port, host: "127.0.0.1", path: "/v1/channel?webRTC=false", agent,
        headers: { authorization: "jwt " + h + "." + c + "." + sig,
                   "x-forwarded-for": "10.0." + (i >> 8 & 255) + "." + (i & 255) } }, (r) => {
        r.resume(); r.on("end", () => { if (++done === total) process.exit(0); one(); });
      }).on("error", (e) => { console.error(e.message); process.exit(1); });
    }
    for (let k = 0; k < 64; k++) one();
  ' "$sp" "$KEY" "$want"
  bytes=$(curl -s "http://127.0.0.1:$sp/v1/stats" | wc -c)
  gp=$(free_port)
  SFU_GATEWAY_KEY=$GWKEY SFU_GATEWAY_NODES="{\"sfu\":[{\"address\":\"http://127.0.0.1:$sp\",\"key\":\"$KEY\"}]}" \
    "$BUILD/sfu-gateway" --bind 127.0.0.1 --port "$gp" --workers 1 --config /dev/null \
    --log-level warn > "$tmp/gw.$want.log" 2>&1 &
  gw_pid=$!
  bench_pids="$bench_pids $gw_pid"
  ap=$(free_port)
  SFU_GATEWAY_KEY=$GWKEY "$BUILD/sfu-gateway" --bind 127.0.0.1 --port "$ap" --workers 1 \
    --config /dev/null --log-level warn > "$tmp/gwa.$want.log" 2>&1 &
  gwa_pid=$!
  bench_pids="$bench_pids $gwa_pid"
  sleep 0.5
  "$BUILD/sfu-gateway-agent" --gateway-url "http://127.0.0.1:$ap" --interval 1000 \
    --region eu-west --address "http://127.0.0.1:$sp" --auth-key "$KEY" \
    --registration-key "$GWKEY" --log-level warn > "$tmp/agent.$want.log" 2>&1 &
  agent_pid=$!
  bench_pids="$bench_pids $agent_pid"
  probed=$(wait_channels "$gp" "$want")
  registered=$(wait_channels "$ap" "$want")
  printf 'channels %6s  /v1/stats %9s bytes  probe reads %6s  agent reads %6s\n' \
    "$want" "$bytes" "$probed" "$registered"
  kill "$agent_pid" "$gw_pid" "$gwa_pid" "$sfu_pid" 2>/dev/null || true
  wait "$agent_pid" "$gw_pid" "$gwa_pid" "$sfu_pid" 2>/dev/null || true
done
