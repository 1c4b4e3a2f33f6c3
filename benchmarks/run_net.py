#!/usr/bin/env python3
"""Network benchmarks: echo servers on pyloop, asyncio, uvloop and a plain C
libuv server, driven by one C client (benchmarks/tools/echo_client.c) pinned
to the other core. Reports round trips per second and the server's CPU time
per round trip (user+sys of the server process / round trips), interleaved
across servers, medians over repetitions.

    python benchmarks/run_net.py [--reps N] [--seconds S] [--conns C]
                                 [--only KIND,...] [--sizes 1024,...] [--json PATH]
"""
import argparse
import datetime
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOOLS = os.path.join(HERE, "tools")
RESULTS = os.path.join(HERE, "results")
SERVERS = ("asyncio", "uvloop", "pyloop", "c-libuv")
KINDS = ("protocol", "buffered", "streams", "sock")
CLK_TCK = os.sysconf("SC_CLK_TCK")


def build_tools(outdir):
    """Compile the C client and the C reference server (gcc + libuv)."""
    libuv = subprocess.run(["pkg-config", "--cflags", "--libs", "libuv"], check=True,
                           capture_output=True, text=True).stdout.split()
    client = os.path.join(outdir, "echo_client")
    server = os.path.join(outdir, "uv_echo_server")
    subprocess.run(["gcc", "-O2", "-o", client, os.path.join(TOOLS, "echo_client.c")], check=True)
    subprocess.run(["gcc", "-O2", "-o", server, os.path.join(TOOLS, "uv_echo_server.c"), *libuv],
                   check=True)
    return client, server


def pin(cpu):
    return ["taskset", "-c", str(cpu)] if shutil.which("taskset") and os.cpu_count() > 1 else []


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def start_server(server, kind, where, c_server):
    if server == "c-libuv":
        cmd = [c_server, where]
    else:
        cmd = [sys.executable, os.path.join(HERE, "net_server.py"), server, kind, where]
    proc = subprocess.Popen(pin(0) + cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    line = proc.stdout.readline().strip()
    if line != "ready":
        err = proc.stderr.read()
        proc.kill()
        proc.wait()
        return None, (err.strip().splitlines() or ["did not start"])[-1]
    return proc, None


def one_run(server, kind, size, unix, args, tools, tmp):
    client, c_server = tools
    if unix:
        path = os.path.join(tmp, f"s-{server}-{time.monotonic_ns()}")
        where, host, port = "unix:" + path, "unix:" + path, "-"
    else:
        import socket
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
        s.close()
        where, host = port, "127.0.0.1"
    proc, err = start_server(server, kind, where, c_server)
    if proc is None:
        return {"error": err}
    try:
        cpu0 = cpu_seconds(proc.pid)
        out = subprocess.run(pin(1) + [client, host, port, str(args.conns), str(size),
                                       str(args.seconds)],
                             capture_output=True, text=True, timeout=args.seconds + 60)
        cpu1 = cpu_seconds(proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if out.returncode != 0:
        return {"error": out.stderr.strip()[-200:]}
    trips, secs = out.stdout.split()
    trips, secs = int(trips), float(secs)
    if trips == 0:
        return {"error": "no round trips"}
    return {"rps": trips / secs, "cpu_us": (cpu1 - cpu0) / trips * 1e6}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--conns", type=int, default=10)
    ap.add_argument("--only", help="kinds: " + ",".join(KINDS))
    ap.add_argument("--sizes", default="1024,10240,102400")
    ap.add_argument("--no-unix", action="store_true")
    ap.add_argument("--json")
    args = ap.parse_args()
    kinds = args.only.split(",") if args.only else list(KINDS)
    sizes = [int(x) for x in args.sizes.split(",")]
    rows = [(k, s, False) for k in kinds for s in sizes]
    if not args.no_unix and "protocol" in kinds:
        rows.append(("protocol", 1024, True))
    os.makedirs(RESULTS, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        tools = build_tools(tmp)
        res = {r: {s: {"rps": [], "cpu_us": [], "errors": []} for s in SERVERS} for r in rows}
        for rep in range(args.reps):
            for row in rows:
                kind, size, unix = row
                for server in SERVERS:
                    if server == "c-libuv" and kind != "protocol":
                        continue
                    r = one_run(server, kind, size, unix, args, tools, tmp)
                    cell = res[row][server]
                    if "error" in r:
                        cell["errors"].append(r["error"])
                    else:
                        cell["rps"].append(r["rps"])
                        cell["cpu_us"].append(r["cpu_us"])
            print(f"  repetition {rep + 1}/{args.reps} done", file=sys.stderr, flush=True)

    def med(xs):
        return statistics.median(xs) if xs else None

    print(f"\nTCP/Unix echo, {args.conns} connections, {args.seconds}s per run, "
          f"{args.reps} interleaved repetitions, medians; client pinned to CPU 1, server to CPU 0")
    hdr = (f"{'workload':24} {'asyncio':>16} {'uvloop':>16} {'pyloop':>16} {'c-libuv':>16}"
           f" {'rps p/uv':>9} {'cpu p/uv':>9} {'cpu p/C':>8}")
    print(hdr)
    print(" " * 24 + " (round trips/s | server CPU us per round trip)")
    report = []
    for row in rows:
        kind, size, unix = row
        name = f"{kind}-{'unix' if unix else 'tcp'}-{size // 1024}k"
        cells = {s: (med(res[row][s]["rps"]), med(res[row][s]["cpu_us"])) for s in SERVERS}
        def show(s):
            rps, cpu = cells[s]
            if rps is None:
                errs = res[row][s]["errors"]
                return "error" if errs else "-"
            return f"{rps / 1000:.1f}k|{cpu:.1f}"
        p, u, c = cells["pyloop"], cells["uvloop"], cells["c-libuv"]
        rr = f"{p[0] / u[0]:.2f}x" if p[0] and u[0] else "-"
        cr = f"{p[1] / u[1]:.2f}" if p[1] and u[1] else "-"
        cc = f"{p[1] / c[1]:.2f}" if p[1] and c[1] else "-"
        print(f"{name:24} " + " ".join(f"{show(s):>16}" for s in SERVERS) + f" {rr:>9} {cr:>9} {cc:>8}")
        for s in SERVERS:
            for e in res[row][s]["errors"][:1]:
                print(f"    {s}: {e}")
        report.append({"workload": name, "cells": {s: {"rps": cells[s][0], "cpu_us": cells[s][1],
                                                       "errors": res[row][s]["errors"]}
                                                   for s in SERVERS}})
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = args.json or os.path.join(RESULTS, f"net-{stamp}.json")
    with open(path, "w") as f:
        json.dump({"args": vars(args), "rows": report}, f, indent=1)
    print(f"\nJSON: {path}")


if __name__ == "__main__":
    main()
