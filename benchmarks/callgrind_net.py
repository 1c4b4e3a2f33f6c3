#!/usr/bin/env python3
"""Instructions per request of a network server under callgrind, by shared
object: where a loop spends its work (OpenSSL, libpython, the loop itself).

    python benchmarks/callgrind_net.py [--loops pyloop,uvloop] [--kind https]
                                       [--conns 20] [--short 5] [--long 12]

The server (benchmarks/net_server.py) runs under valgrind --tool=callgrind;
wrk loads it twice, for --short and then --long seconds, and callgrind's
counters are dumped after each run. Every wrk run opens its connections anew,
so both runs hold the same handshakes: (long - short) instructions over
(long - short) requests is the cost of a request without them. Needs wrk and
valgrind (`PYLOOP_BENCH=1 tools/sysdeps.sh`)."""
import argparse
import collections
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def self_cost_by_object(path):
    """{shared object: self instructions} from a callgrind dump (names are
    compressed: "(id) name" the first time, "(id)" after)."""
    names = {"ob": {}, "fn": {}, "fl": {}}
    cost = collections.Counter()
    obj = None
    after_call = False
    with open(path) as f:
        for line in f:
            key, sep, value = line.rstrip("\n").partition("=")
            if sep and key in ("ob", "cob", "fn", "cfn", "fl", "fi", "fe", "cfi", "cfl"):
                table = "ob" if key in ("ob", "cob") else "fn" if key in ("fn", "cfn") else "fl"
                m = re.match(r"\((\d+)\)(?: (.*))?", value)
                if m and m.group(2) is not None:
                    names[table][m.group(1)] = m.group(2)
                if key == "ob":
                    obj = names["ob"].get(m.group(1), "?") if m else value
                continue
            if line.startswith("calls="):
                after_call = True  # the next cost line is the call's inclusive cost
                continue
            if line[:1] in "0123456789+-*":
                parts = line.split()
                if len(parts) >= 2:
                    if after_call:
                        after_call = False
                    else:
                        cost[os.path.basename(obj or "?")] += int(parts[1])
    return cost


def wrk(url, conns, seconds):
    out = subprocess.run(["wrk", "-t1", f"-c{conns}", f"-d{seconds}s", url], check=True,
                         capture_output=True, text=True).stdout
    return int(re.search(r"(\d+) requests in", out).group(1))


def measure(loop, kind, conns, short, long_, tmp, cert):
    port = free_port()
    out = os.path.join(tmp, f"cg.{loop}")
    cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable,
           os.path.join(HERE, "net_server.py"), loop, kind, str(port)]
    if kind in ("tls", "https"):
        cmd += cert
    server = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        if server.stdout.readline().strip() != "ready":
            raise RuntimeError(f"{loop} server did not start")
        scheme = "https" if kind == "https" else "http"
        url = f"{scheme}://127.0.0.1:{port}/"
        wrk(url, conns, 2)  # warm-up
        subprocess.run(["callgrind_control", "-z", str(server.pid)], check=True,
                       capture_output=True)
        r1 = wrk(url, conns, short)
        subprocess.run(["callgrind_control", "-d", str(server.pid)], check=True,
                       capture_output=True)
        r2 = wrk(url, conns, long_)
        subprocess.run(["callgrind_control", "-d", str(server.pid)], check=True,
                       capture_output=True)
    finally:
        server.terminate()
        server.wait(60)
    c1, c2 = self_cost_by_object(f"{out}.1"), self_cost_by_object(f"{out}.2")
    if r2 <= r1:
        raise RuntimeError(f"{loop}: the long run served no more requests ({r1} then {r2})")
    return {o: (c2[o] - c1[o]) / (r2 - r1) for o in set(c1) | set(c2)}, r1, r2


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--loops", default="pyloop,uvloop")
    ap.add_argument("--kind", default="https", choices=("http", "https"))
    ap.add_argument("--conns", type=int, default=20)
    ap.add_argument("--short", type=int, default=5)
    ap.add_argument("--long", type=int, default=12)
    ap.add_argument("--keep", metavar="DIR",
                    help="copy the callgrind dumps here (callgrind_annotate them by function)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cert = [os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")]
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                        "-subj", "/CN=127.0.0.1", "-keyout", cert[1], "-out", cert[0]],
                       check=True, capture_output=True)
        for loop in args.loops.split(","):
            per_obj, r1, r2 = measure(loop, args.kind, args.conns, args.short, args.long, tmp,
                                      cert)
            total = sum(per_obj.values())
            if args.keep:
                os.makedirs(args.keep, exist_ok=True)
                for n in (1, 2):
                    shutil.copy(os.path.join(tmp, f"cg.{loop}.{n}"), args.keep)
            print(f"{loop}: {total:,.0f} instructions per request "
                  f"({args.kind}, wrk -c{args.conns}, {r1} and {r2} requests)")
            for obj, n in sorted(per_obj.items(), key=lambda kv: -kv[1])[:8]:
                print(f"  {n:9,.0f}  {obj}")
            time.sleep(1)


if __name__ == "__main__":
    main()
