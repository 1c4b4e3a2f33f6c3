#!/usr/bin/env python3
"""Two builds of pyloop (two source trees, each built in place) and uvloop,
interleaved: the net_server.py HTTP(S) server of each under wrk, repetition
after repetition, so that a change is measured against the code before it in
the same minutes of this noisy machine.

    python benchmarks/ab_net.py --a NAME=TREE --b NAME=TREE [--kind https]
                                [--reps 10] [--seconds 4]

Prints, per build, the median requests/s and server CPU µs per request and
every repetition's CPU figure (a pair of builds is compared rep by rep).
A tree is a checkout with pyloop/_core built in place; the other tree for
the code before a change: `git worktree add /tmp/before HEAD~1` and build it."""
import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from run_net import cpu_seconds, free_port, pin  # noqa: E402


def one_run(tree, loop, kind, seconds, cert):
    port = free_port()
    cmd = [sys.executable, os.path.join(tree, "benchmarks", "net_server.py"), loop, kind, str(port)]
    if kind == "https":
        cmd += cert
    server = subprocess.Popen(pin(0) + cmd, stdout=subprocess.PIPE, text=True)
    try:
        if server.stdout.readline().strip() != "ready":
            raise RuntimeError(f"server from {tree} did not start")
        url = f"{'https' if kind == 'https' else 'http'}://127.0.0.1:{port}/"
        subprocess.run(["wrk", "-t1", "-c100", "-d1s", url], check=True, capture_output=True)
        before = cpu_seconds(server.pid)
        out = subprocess.run(pin(1) + ["wrk", "-t1", "-c100", f"-d{seconds}s", url], check=True,
                             capture_output=True, text=True).stdout
        used = cpu_seconds(server.pid) - before
    finally:
        server.terminate()
        server.wait(30)
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    return rps, used / requests * 1e6


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--a", required=True, help="NAME=TREE")
    ap.add_argument("--b", required=True, help="NAME=TREE")
    ap.add_argument("--kind", default="https", choices=("http", "https"))
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--seconds", type=int, default=4)
    args = ap.parse_args()
    builds = [tuple(spec.split("=", 1)) for spec in (args.a, args.b)]
    servers = [(name, os.path.abspath(tree), "pyloop") for name, tree in builds]
    servers.append(("uvloop", os.path.dirname(HERE), "uvloop"))
    results = {name: [] for name, _, _ in servers}
    with tempfile.TemporaryDirectory() as tmp:
        cert = [os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")]
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                        "-subj", "/CN=127.0.0.1", "-keyout", cert[1], "-out", cert[0]],
                       check=True, capture_output=True)
        for rep in range(args.reps):
            for name, tree, loop in servers:
                results[name].append(one_run(tree, loop, args.kind, args.seconds, cert))
            print(f"  repetition {rep + 1}/{args.reps} done", file=sys.stderr)
    for name, runs in results.items():
        rps = statistics.median(r for r, _ in runs)
        cpu = statistics.median(c for _, c in runs)
        print(f"{name:>10}: {rps / 1000:6.1f}k requests/s | {cpu:5.2f} us CPU/request   per rep: "
              + " ".join(f"{c:.1f}" for _, c in runs))


if __name__ == "__main__":
    main()
