#!/usr/bin/env python3
# Pipelining cost: connections that each send N pipelined GET /noop in one write to a
# one-worker gateway on loopback; prints wall time and the worker's CPU, interleaved
# (BASE_BUILD=dir adds that build's gateway before this one, two rounds each).
# Usage: bench/pipeline.py N CONNECTIONS   e.g. BASE_BUILD=/tmp/old/build bench/pipeline.py 2000 150
import socket, subprocess, sys, time, os, tempfile
def run(binary, port):
    d=tempfile.mkdtemp()
    open(d+"/c.toml","w").write("# empty\n")
    p=subprocess.Popen([binary,"--port",str(port),"--bind","127.0.0.1","--workers","1","--config",d+"/c.toml"],stderr=subprocess.DEVNULL,env=dict(os.environ,SFU_GATEWAY_KEY="cGlwZWxpbmUtYmVuY2gta2V5LTAxMjM0NTY3ODlhYmNk"))
    deadline=time.time()+10
    while time.time()<deadline:
        try: socket.create_connection(("127.0.0.1",port)).close(); break
        except OSError: time.sleep(0.05)
    req=b"GET /noop HTTP/1.1\r\nHost: x\r\n\r\n"
    n=int(sys.argv[1]); batch=req*n; rounds=int(sys.argv[2])
    t0=time.time()
    for r in range(rounds):
        s=socket.create_connection(("127.0.0.1",port)); s.sendall(batch)
        got=0; buf=b""
        s.settimeout(10)
        while got<n:
            b=s.recv(1<<20)
            if not b: break
            buf+=b; got=buf.count(b"HTTP/1.1 200")
        s.close()
        assert got==n,(got,n)
    el=time.time()-t0
    # CPU of the worker(s): children of the master
    kids=subprocess.run(["pgrep","-P",str(p.pid)],capture_output=True,text=True).stdout.split()
    cpu=0
    for k in kids:
        f=open(f"/proc/{k}/stat").read().split(")")[1].split()
        cpu+=int(f[11])+int(f[12])
    p.terminate(); p.wait()
    return el, cpu/os.sysconf("SC_CLK_TCK")
builds=[("this", os.environ.get("BUILD","build")+"/sfu-gateway")]
if os.environ.get("BASE_BUILD"):
    builds.insert(0,("base", os.environ["BASE_BUILD"]+"/sfu-gateway"))
for i in range(2):
    for name,b in builds:
        el,cpu=run(b, 18200+i*2+(name=="this"))
        print(f"{name}: {sys.argv[2]} connections x {sys.argv[1]} pipelined /noop: wall {el:.2f} s, worker CPU {cpu:.2f} s")
