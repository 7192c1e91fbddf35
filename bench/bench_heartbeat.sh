#!/bin/sh
# Benchmarks POST /v1/sfu with wrk on loopback: registers N SFUs, then hammers heartbeat updates
# cycling over all of them (each with its own token), against the gateway with 1 and 2 workers.
# Usage: bench/bench_heartbeat.sh [DURATION_S] [CONNECTIONS] [SFUS] [ROUNDS]  (defaults 5 32 1000 3)
set -eu
cd "$(dirname "$0")/.."
dur=${1:-5}
conns=${2:-32}
nsfus=${3:-1000}
rounds=${4:-3}

[ -x build/sfu-gateway ] || { echo "build/sfu-gateway is missing: run make first" >&2; exit 1; }
for t in wrk python3 curl; do
  command -v "$t" >/dev/null || { echo "$t is needed" >&2; exit 1; }
done

GW_KEY=$(printf 'bench-heartbeat-gateway-key-0123456789' | base64 | tr -d '\n')
SFU_KEY=$(printf 'bench-heartbeat-sfu-key-0123456789abcd' | base64 | tr -d '\n')
tmp=$(mktemp -d)
pids=""
cleanup() {
  for p in $pids; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

# Bodies, one per SFU, and a wrk Lua script that signs every request afresh: heartbeat
# tokens (wire format v2, sfu-gateway(8)) carry the body's SHA-256 and a seq that must grow
# per SFU, so a replayed token is refused. The script signs with OpenSSL's HMAC through
# LuaJIT's FFI (wrk links libcrypto); each wrk thread owns every nth SFU and counts its
# seqs, and an SFU comes round again only after nsfus / threads requests of its thread.
# A real SFU sends one heartbeat at a time; here a worker that stalls while the other one
# serves a whole round can see an older heartbeat of an SFU after a newer one: the gateway
# refuses it as a replay, which shows as a few non-2xx at 2 workers (about 1 in 10^4).
python3 - "$GW_KEY" "$SFU_KEY" "$nsfus" "$tmp" <<'EOF'
import base64, hashlib, json, random, sys
gw_key, sfu_key, n, tmp = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
rnd = random.Random(1)
regions = ["eu-west", "eu-central", "us-east", "ap-southeast", "sa-east"]
rows = []
for i in range(n):
    addr = "http://10.%d.%d.%d:8070" % ((i >> 16) & 255, (i >> 8) & 255, i & 255)
    body = json.dumps({"status": "up", "address": addr, "region": regions[i % 5],
                       "key": sfu_key, "channels": rnd.randint(0, 20),
                       "sessions": rnd.randint(0, 80), "cpuUsage": round(rnd.random(), 3),
                       "memoryUsage": round(rnd.random(), 3), "maxSessions": 100},
                      separators=(",", ":"))
    rows.append((addr, body, b64(hashlib.sha256(body.encode()).digest())))
with open(tmp + "/rows.tsv", "w") as f:
    for r in rows:
        f.write("\t".join(r) + "\n")
lua = lambda s: '"' + "".join("\\%03d" % ord(c) if ord(c) < 32 or ord(c) > 126 or c in '"\\'
                              else c for c in s) + '"'
with open(tmp + "/hb.lua", "w") as f:
    f.write("local key = %s\n" % lua(base64.b64decode(gw_key).decode("latin-1")))
    f.write("local hb = {\n")
    for addr, body, sha in rows:
        f.write("{%s,%s,%s},\n" % (lua(addr), lua(body), lua(sha)))
    f.write("}\n")
    f.write("""
local ffi = require("ffi")
ffi.cdef[[
typedef struct evp_md_st EVP_MD;
const EVP_MD *EVP_sha256(void);
unsigned char *HMAC(const EVP_MD *md, const void *key, int key_len, const unsigned char *d,
                    size_t n, unsigned char *out, unsigned int *out_len);
int EVP_EncodeBlock(unsigned char *t, const unsigned char *f, int n);
]]
local crypto = ffi.load("crypto")
local mac = ffi.new("unsigned char[32]")
local mac_len = ffi.new("unsigned int[1]")
local enc = ffi.new("unsigned char[4096]")
local url = { ["+"] = "-", ["/"] = "_", ["="] = "" }
local function b64url(s, len)
  local m = crypto.EVP_EncodeBlock(enc, s, len)
  return (ffi.string(enc, m):gsub("[+/=]", url))
end
local header = b64url('{"alg":"HS256","typ":"JWT"}', 27)
local n = #hb
-- id (1-based) is a global setup sets in each thread's own Lua state before the thread
-- starts; the thread count comes as the script's argument (a thread may start before
-- the next one is set up, so setup cannot tell it).
local count = 0
local i, base, sent, nthreads = 0, 0, {}, 1
function setup(thread)
  count = count + 1
  thread:set("id", count)
end
function init(args)
  nthreads = tonumber(args[1])
  i = id - nthreads
  base = os.time() * 1000
end
function request()
  i = i + nthreads
  if i > n then i = id end
  local row = hb[i]
  local now = os.time()
  sent[i] = (sent[i] or 0) + 1
  local claims = string.format('{"address":"%s","iat":%d,"exp":%d,"sha256":"%s","seq":%d}',
    row[1], now, now + 60, row[3], base + sent[i])
  local signed = header .. "." .. b64url(claims, #claims)
  crypto.HMAC(crypto.EVP_sha256(), key, #key, signed, #signed, mac, mac_len)
  local token = signed .. "." .. b64url(mac, 32)
  return wrk.format("POST", "/v1/sfu", { ["Authorization"] = "Bearer " .. token,
    ["Content-Type"] = "application/json" }, row[2])
end
""")
EOF

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

cat > "$tmp/gw.toml" <<EOF
[gateway]
max_sfus = $(( nsfus + 24 ))
log_level = "warn"

[registration]
stale_after_ms = 600000
EOF

start_gw() { # $1 = workers; sets $port (not a subshell: $pids must keep the pid)
  port=$(free_port)
  SFU_GATEWAY_KEY=$GW_KEY build/sfu-gateway --bind 127.0.0.1 --port "$port" --workers "$1" \
    --config "$tmp/gw.toml" > /dev/null 2>> "$tmp/gw.log" &
  pids="$pids $!"
  n=0
  until curl -fs "http://127.0.0.1:$port/noop" >/dev/null 2>&1; do
    n=$((n + 1)); [ $n -lt 100 ] || { cat "$tmp/gw.log" >&2; exit 1; }; sleep 0.05
  done
}

# Registers every SFU with one keep-alive connection; fails unless all say "registered".
register_all() { # $1 = port
  python3 - "$1" "$tmp/rows.tsv" "$GW_KEY" <<'EOF'
import base64, hashlib, hmac, http.client, json, sys, time
port, rows = int(sys.argv[1]), [l.rstrip("\n").split("\t") for l in open(sys.argv[2])]
key = base64.b64decode(sys.argv[3])
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
head = b64(b'{"alg":"HS256","typ":"JWT"}')
c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
t0 = time.monotonic()
for addr, body, sha in rows:
    now = int(time.time())
    # seq 1: every seq of the load runs (ms since the epoch) is above it.
    claims = b64(json.dumps({"address": addr, "iat": now, "exp": now + 60, "sha256": sha,
                             "seq": 1}, separators=(",", ":")).encode())
    sig = b64(hmac.new(key, (head + "." + claims).encode(), hashlib.sha256).digest())
    auth = "Bearer %s.%s.%s" % (head, claims, sig)
    c.request("POST", "/v1/sfu", body, {"Authorization": auth, "Content-Type": "application/json"})
    r = c.getresponse()
    got = r.read()
    if r.status != 200 or b'"registered"' not in got:
        sys.exit("registering %s: %d %s" % (addr, r.status, got.decode()))
dt = time.monotonic() - t0
print("registered %d SFUs in %.2f s (one connection, sequential: %.0f/s)" % (len(rows), dt, len(rows) / dt))
EOF
}

metric() { # $1 = port, $2 = series
  curl -fs "http://127.0.0.1:$1/metrics" | awk -v s="$2" '$1 == s { print $2 }'
}

run() { # $1 = name, $2 = port
  wrk -t2 -c"$conns" -d"${dur}s" --latency -s "$tmp/hb.lua" "http://127.0.0.1:$2/v1/sfu" \
    -- 2 > "$tmp/wrk.out" 2>&1 || true
  awk -v name="$1" '
    function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; if (v ~ /s$/) return v * 1000; return v }
    /Requests\/sec/ { rps = $2 }
    /^ +50%/ { p50 = ms($2) }
    /^ +99%/ { p99 = ms($2) }
    /Non-2xx/ { bad = $5 }
    END { printf "%s %.0f %.3f %.3f %d\n", name, rps, p50, p99, bad }' "$tmp/wrk.out" >> "$tmp/raw"
}

echo "bench: heartbeats with $nsfus registered SFUs, ${rounds} rounds x ${dur}s, $conns connections," \
  "wrk -t2, $(nproc) cores, load $(cut -d' ' -f1 /proc/loadavg), $(date -u +%Y-%m-%dT%H:%MZ)"
start_gw 1; gw1=$port
start_gw 2; gw2=$port
for p in "$gw1" "$gw2"; do
  register_all "$p"
  got=$(metric "$p" sfu_gateway_registry_sfus)
  [ "$got" = "$nsfus" ] || { echo "registry holds $got SFUs, not $nsfus" >&2; exit 1; }
done
for _ in $(seq 1 "$rounds"); do
  run gateway-1w "$gw1"
  run gateway-2w "$gw2"
done
for p in "$gw1" "$gw2"; do
  got=$(metric "$p" sfu_gateway_registry_sfus)
  [ "$got" = "$nsfus" ] || { echo "after the run the registry holds $got SFUs" >&2; exit 1; }
  echo "port $p: updated=$(metric "$p" 'sfu_gateway_heartbeats_total{result="updated"}')" \
    "rejected=$(metric "$p" 'sfu_gateway_heartbeats_total{result="rejected"}')"
done

printf '%-12s %12s %9s %9s %8s\n' target heartbeats/s p50_ms p99_ms non2xx
for t in gateway-1w gateway-2w; do
  grep "^$t " "$tmp/raw" | sort -k2 -n | awk -v n="$rounds" 'NR == int((n + 1) / 2)'
done | awk '{ printf "%-12s %12d %9.3f %9.3f %8d\n", $1, $2, $3, $4, $5 }'
mkdir -p bench/results
cp "$tmp/raw" "bench/results/heartbeat-$(date -u +%Y%m%dT%H%M%SZ).txt"
