#!/bin/sh
# The external registry on loopback: (1) the time from a registry change to the first channel
# request routed by it, p50/max over many changes, at two poll intervals; (2) the cost of
# polling a list of 1,000 SFUs: the reaper's CPU per 304, per 200 of an unchanged list and
# per 200 where every SFU's load changed, and the time a 200 takes to parse and apply.
# Usage: bench/registry.sh [CHANGES] [SFUS] [POLLS]   (defaults 40 1000 200)
set -eu
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh disable=SC1091
. bench/lib.sh
bench_init
bench_build
make -s -j2 BUILD="$BUILD" "$BUILD/mock-registry"
for t in python3 curl; do
  command -v "$t" >/dev/null || { echo "$t is needed" >&2; exit 1; }
done
# shellcheck disable=SC2154
BUILD=$BUILD TMP=$bench_tmp python3 - "${1:-40}" "${2:-1000}" "${3:-200}" <<'EOF'
import base64, hashlib, hmac, http.client, json, os, signal, statistics, subprocess, sys, time

changes, nsfus, npolls = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
build, tmp = os.environ["BUILD"], os.environ["TMP"]
GW_KEY = base64.b64encode(b"bench-registry-gateway-key-0123456789").decode()
SFU_KEY = base64.b64encode(b"bench-registry-sfu-key-0123456789abcd").decode()
procs = []

def start(argv, log, env=None):
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=open(log, "w"), env=env)
    procs.append(p)
    return p

def port_of(p):
    line = p.stdout.readline().decode()
    assert line.startswith("PORT "), line
    return int(line.split()[1])

def stop_all():
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            p.kill()

def b64u(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()

def token(iss):
    head = b64u(json.dumps({"typ": "JWT", "alg": "HS256"}).encode())
    claims = b64u(json.dumps({"iss": iss, "exp": int(time.time()) + 3600}).encode())
    sig = hmac.new(base64.b64decode(GW_KEY), (head + "." + claims).encode(), hashlib.sha256)
    return head + "." + claims + "." + b64u(sig.digest())

def req(port, method, path, body=None, headers=None, conn=None):
    c = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request(method, path, body=body, headers=headers or {})
    r = c.getresponse()
    data = r.read()
    if conn is None:
        c.close()
    return r.status, data

def free_port():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p

def start_gateway(reg_port, poll_ms, workers=2):
    conf = os.path.join(tmp, "gw.toml")
    with open(conf, "w") as f:
        f.write('[registry]\nurl = "http://127.0.0.1:%d/sfu-list"\npoll_ms = %d\n'
                'min_poll_ms = 100\nmax_sfus = 65536\nmax_bytes = 67108864\n'
                '[probe]\ninterval_ms = 3600000\n' % (reg_port, poll_ms))
    port = free_port()
    env = dict(os.environ, SFU_GATEWAY_KEY=GW_KEY)
    gw = start([build + "/sfu-gateway", "--bind", "127.0.0.1", "--port", str(port), "--workers",
                str(workers), "--config", conf, "--log-level", "info"], tmp + "/gw.log", env)
    for _ in range(200):
        try:
            if req(port, "GET", "/noop")[0] == 200:
                return gw, port
        except OSError:
            time.sleep(0.05)
    sys.exit("the gateway did not start: " + open(tmp + "/gw.log").read())

def reaper_of(gw):
    import re
    m = re.findall(r"started reaper pid=(\d+)", open(tmp + "/gw.log").read())
    assert m, "no reaper in the log"
    return int(m[-1])

def cpu_ms(pid):
    # schedstat's first field: nanoseconds on a CPU (utime/stime tick in 10 ms).
    return int(open("/proc/%d/schedstat" % pid).read().split()[0]) / 1e6

def metric(port, name):
    text = req(port, "GET", "/metrics")[1].decode()
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.split()[-1])
    return None

def stats(reg_port):
    return json.loads(req(reg_port, "GET", "/mock/stats")[1])

def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]

try:
    # ---- (1) from a change to the first request routed by it
    mocks = []
    for name in ("a", "b"):
        m = start([build + "/mock-sfu", "--port", "0", "--key", SFU_KEY, "--quiet"],
                  tmp + "/mock-%s.log" % name)
        mocks.append(port_of(m))
    reg = start([build + "/mock-registry", "--port", "0", "--quiet"], tmp + "/reg.log")
    reg_port = port_of(reg)
    doc = lambda p: json.dumps({"sfu": [{"address": "http://127.0.0.1:%d" % p, "key": SFU_KEY}]})
    print("registry change -> first request routed by it (%d changes each, loopback, "
          "2 workers, sequential keep-alive requests)" % changes)
    seq = 0
    for poll_ms in (1000, 100):
        req(reg_port, "POST", "/mock/doc", doc(mocks[0]))
        gw, port = start_gateway(reg_port, poll_ms)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        lat, failed, total = [], 0, 0
        rnd = __import__("random").Random(poll_ms)
        for i in range(changes + 1):
            target = mocks[(i + 1) % 2]
            # Changes come at any moment of the poll period, not right after a fetch.
            time.sleep(rnd.random() * poll_ms / 1000.0)
            t0 = time.perf_counter()
            req(reg_port, "POST", "/mock/doc", doc(target))
            while True:
                seq += 1
                st, body = req(port, "GET", "/v1/channel",
                               headers={"Authorization": "jwt " + token("iss-%d" % seq)},
                               conn=conn)
                total += 1
                if st != 200:
                    failed += 1
                    continue
                if json.loads(body)["url"] == "http://127.0.0.1:%d" % target:
                    break
                if time.perf_counter() - t0 > 30:
                    sys.exit("no request reached the new SFU in 30 s")
            if i > 0:  # the first one also waits for the gateway's first fetch
                lat.append((time.perf_counter() - t0) * 1000)
        conn.close()
        print("  poll_ms=%5d: p50 %6.1f ms  p90 %6.1f ms  max %6.1f ms   (%d requests, %d "
              "failed)" % (poll_ms, statistics.median(lat), pct(lat, 0.9), max(lat), total,
                          failed))
        gw.send_signal(signal.SIGTERM)
        gw.wait(10)

    # ---- (2) the cost of polling a list of nsfus SFUs
    def big(version):
        sfus = []
        for i in range(nsfus):
            sfus.append({"address": "http://10.%d.%d.%d:8070" % (i >> 16 & 255, i >> 8 & 255,
                                                                 i & 255),
                         "region": ["eu-west", "us-east", "ap-south"][i % 3], "key": SFU_KEY,
                         "channels": (i * 7 + version) % 50, "sessions": (i * 13 + version) % 90,
                         "cpuUsage": ((i + version) % 100) / 100.0,
                         "memoryUsage": ((i * 3 + version) % 100) / 100.0, "maxSessions": 100})
        return json.dumps({"sfu": sfus})
    body0 = big(0)
    req(reg_port, "POST", "/mock/doc", body0)
    gw, port = start_gateway(reg_port, 100)
    reaper = reaper_of(gw)
    for _ in range(300):
        if metric(port, "sfu_gateway_registry_source_sfus") == nsfus:
            break
        time.sleep(0.05)
    first_apply = metric(port, "sfu_gateway_registry_source_last_apply_seconds") * 1000
    first_batch = metric(port, "sfu_gateway_registry_source_last_batch_seconds") * 1000
    # The key check of the new SFUs (unreachable addresses) settles within its 2 s timeout.
    time.sleep(3)
    print("\npolling a list of %d SFUs (%d bytes), poll_ms=100, %d polls each:"
          % (nsfus, len(body0), npolls))
    print("  first 200 (all %d added): parse+apply %.2f ms, batch window %.3f ms"
          % (nsfus, first_apply, first_batch))

    # The reaper's own ticks (expiry sweep, probe and key-check scans of every slot each
    # 250 ms) cost CPU whether it polls or not: measured while a fetch hangs (no poll ends),
    # before and after the polls, and the lower rate taken out.
    def idle_rate():
        req(reg_port, "POST", "/mock/fault?mode=hang")
        n0 = stats(reg_port)["requests"]
        while stats(reg_port)["requests"] == n0:
            time.sleep(0.01)
        c0, t0 = cpu_ms(reaper), time.perf_counter()
        time.sleep(4)
        rate = (cpu_ms(reaper) - c0) / (time.perf_counter() - t0)
        req(reg_port, "POST", "/mock/fault?mode=ok")
        time.sleep(6)  # the hung fetch times out (5 s) and the backoff ends
        return rate
    idle = idle_rate()

    results = []

    def measure(label, churn):
        s0, c0, t0 = stats(reg_port), cpu_ms(reaper), time.perf_counter()
        applies, batches, version = [], [], 1
        while True:
            s = stats(reg_port)
            if s["requests"] - s0["requests"] >= npolls:
                break
            if churn:
                version += 1
                req(reg_port, "POST", "/mock/doc", big(version))
            a = metric(port, "sfu_gateway_registry_source_last_apply_seconds")
            b = metric(port, "sfu_gateway_registry_source_last_batch_seconds")
            if churn:
                applies.append(a * 1000)
                batches.append(b * 1000)
            time.sleep(0.02)
        s, c, t = stats(reg_port), cpu_ms(reaper), time.perf_counter()
        n = s["requests"] - s0["requests"]
        results.append((label, (c - c0) / n, t - t0, n, s["ok"] - s0["ok"],
                        s["not_modified"] - s0["not_modified"], applies, batches))

    measure("304 (unchanged, If-None-Match):", False)
    req(reg_port, "POST", "/mock/etag?on=0")
    measure("200, the same list (no ETag):", False)
    req(reg_port, "POST", "/mock/etag?on=1")
    measure("200, every SFU's load changed:", True)
    idle = min(idle, idle_rate())
    print("  the reaper's ticks alone: %.3f ms of CPU per second (taken out below)" % idle)
    for label, raw, secs, n, ok, nm, applies, batches in results:
        print("  %-34s reaper CPU %6.3f ms/poll (%6.3f with its ticks) over %d polls "
              "(%d x 200, %d x 304)" % (label, raw - idle * secs / n, raw, n, ok, nm))
        if applies:
            print("  %-34s parse+apply p50 %.2f ms max %.2f ms; batch window p50 %.3f ms "
                  "max %.3f ms" % ("", statistics.median(applies), max(applies),
                                   statistics.median(batches), max(batches)))
    gw.send_signal(signal.SIGTERM)
    gw.wait(10)
finally:
    stop_all()
EOF
