#!/usr/bin/env python3
"""Network benchmarks: echo servers on pyloop, asyncio, uvloop, rloop, zuvloop and a plain C
libuv server, driven by one C client (benchmarks/tools/echo_client.c) pinned
to the other core, and an httptools HTTP/1.1 hello-world server on the three
Python loops driven by wrk (keep-alive, 100 connections). The tls rows are
the Protocol echo server with ssl= (TLS 1.3, a self-signed certificate made
for the run with the openssl command), driven by a C OpenSSL client
(benchmarks/tools/tls_echo_client.c: one SSL_write of the whole message, so
one record per 16 KiB, a round trip when the whole echo is back). Each size
runs twice: `-warm` rows after one TLS connection has been served and closed
(the client's --warmup), as in any server that has been up a while, and
`-fresh` rows as the first traffic of a fresh server process, which costs
uvloop an mmap/munmap per record (docs/performance.md, "TLS"). The https row
is the hello world with ssl= under wrk's https. The churn row is the hello
world under wrk -c20 -H "Connection: close": a new connection per request.
rloop and zuvloop run where installed (the bench extra), else their cells say
"not installed"; a server whose every run failed shows "fails". Reports round trips
(or requests) per second and the server's CPU time per round trip (or request):
user+sys of the server process divided by what it served. Servers are
interleaved within each repetition, medians over repetitions.

    python benchmarks/run_net.py [--reps N] [--seconds S] [--conns C]
                                 [--only KIND,...] [--sizes 1024,...] [--json PATH]
                                 [--monitor]

--monitor adds the server "pyloop+monitor" (pyloop with pyloop.monitor.enable(),
per-task figures off) right after pyloop in every repetition, and a column of
its CPU per round trip or request over pyloop's (1.000: monitoring costs nothing).
"""
import argparse
import datetime
import importlib.util
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOOLS = os.path.join(HERE, "tools")
RESULTS = os.path.join(HERE, "results")
SERVERS = ("asyncio", "uvloop", "pyloop", "rloop", "zuvloop", "c-libuv")
KINDS = ("protocol", "buffered", "streams", "sock", "http", "churn", "tls", "https")
WRK_KINDS = ("http", "churn", "https")
CHURN_CONNS = 20  # the churn row: a new connection per request (Connection: close)
TLS_SIZES = (1024, 102400)
TLS_VARIANTS = ("warm", "fresh")  # client --warmup or not
HTTP_CONNS = 100
CLK_TCK = os.sysconf("SC_CLK_TCK")

from loops import BEFORE_LOOP, PEER_PACKAGES, use_before  # noqa: E402  (this script's folder is on sys.path)

MONITOR_SERVER = "pyloop+monitor"  # --monitor


def build_tools(outdir, tls):
    """Compile the C clients and the C reference server (gcc + libuv, and
    OpenSSL for the TLS client when a TLS row runs)."""
    libuv = subprocess.run(["pkg-config", "--cflags", "--libs", "libuv"], check=True,
                           capture_output=True, text=True).stdout.split()
    client = os.path.join(outdir, "echo_client")
    server = os.path.join(outdir, "uv_echo_server")
    subprocess.run(["gcc", "-O2", "-o", client, os.path.join(TOOLS, "echo_client.c")], check=True)
    subprocess.run(["gcc", "-O2", "-o", server, os.path.join(TOOLS, "uv_echo_server.c"), *libuv],
                   check=True)
    tools = {"client": client, "c_server": server, "tls_client": None, "cert": None}
    if tls:
        tools["tls_client"] = os.path.join(outdir, "tls_echo_client")
        subprocess.run(["gcc", "-O2", "-o", tools["tls_client"],
                        os.path.join(TOOLS, "tls_echo_client.c"), "-lssl", "-lcrypto"], check=True)
        cert, key = os.path.join(outdir, "cert.pem"), os.path.join(outdir, "key.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                        "-subj", "/CN=127.0.0.1", "-keyout", key, "-out", cert],
                       check=True, capture_output=True)
        tools["cert"] = (cert, key)
    return tools


def pin(cpu):
    return ["taskset", "-c", str(cpu)] if shutil.which("taskset") and os.cpu_count() > 1 else []


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def last_line(path, default=""):
    with open(path) as f:
        return (f.read().strip().splitlines() or [default])[-1]


def not_installed(server):
    """Why a peer's server cannot run with this Python (its package is not
    installed: the bench extra installs it where it has wheels), or None."""
    package = PEER_PACKAGES.get(server)
    if package and importlib.util.find_spec(package) is None:
        return f"{package} is not installed for this Python"
    return None


def start_server(server, kind, where, tools, log):
    """The server's stderr goes to the file `log` (a pipe nobody reads could
    fill up and stall a server that logs per connection)."""
    if server == "c-libuv":
        cmd = [tools["c_server"], where]
    else:
        # the churn row's server is the hello world: only the client differs
        cmd = [sys.executable, os.path.join(HERE, "net_server.py"), server,
               "http" if kind == "churn" else kind, where]
        if kind in ("tls", "https"):
            cmd += tools["cert"]
    with open(log, "w") as err:
        proc = subprocess.Popen(pin(0) + cmd, stdout=subprocess.PIPE, stderr=err, text=True)
    line = proc.stdout.readline().strip()
    if line != "ready":
        proc.kill()
        proc.wait()
        return None, last_line(log, "did not start")
    return proc, None


def stop_server(proc, log, warnings, grace=10):
    """SIGTERM, SIGKILL if still running after `grace` seconds; that, and the
    last line the server wrote to its stderr file `log`, go to `warnings`."""
    proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        warnings.append(f"server still running {grace} s after SIGTERM, killed")
        proc.kill()
        proc.wait()
    if os.path.getsize(log):
        warnings.append(f"server stderr: {last_line(log)}")


def record(cell, run):
    """One run's result (or error) into a server's cell of the table."""
    if "error" in run:
        cell["errors"].append(run["error"])
        return
    cell["rps"].append(run["rps"])
    cell["cpu_us"].append(run["cpu_us"])
    cell["warnings"] += run.get("warnings", [])
    if "latency" in run:
        cell["latency"].append(run["latency"])


def median(xs):
    return statistics.median(xs) if xs else None


def cell_text(cell, digits=1):
    """One server's medians as the tables show them: `12.3k|4.5` (thousands
    per second | CPU us each), `not installed`, `fails` when every run failed
    (the notes under the row say how), else `-`."""
    rate, cpu = median(cell["rps"]), median(cell["cpu_us"])
    if cell.get("missing"):
        return "not installed"
    if rate is None:
        return "fails" if cell["errors"] else "-"
    return f"{rate / 1000:.{digits}f}k|{cpu:.{digits}f}"


def print_notes(cells, reps):
    """Under a table row: each server's failed runs and warnings, if any."""
    for name, cell in cells.items():
        errs, warns = cell["errors"], cell["warnings"]
        if errs:
            print(f"    {name}: {len(errs)} of {reps} runs failed, first: {errs[0]}")
        if warns:
            more = f" (+{len(warns) - 1} more)" if len(warns) > 1 else ""
            print(f"    {name}: {warns[0]}{more}")


def write_json(args, report, prefix):
    """The run's options and rows to --json, or results/PREFIX-<time>.json."""
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = args.json or os.path.join(RESULTS, f"{prefix}-{stamp}.json")
    with open(path, "w") as f:
        json.dump({"args": vars(args), "rows": report}, f, indent=1)
    print(f"\nJSON: {path}")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def http_check(port, tls=False):
    """Before a wrk run: two pipelined keep-alive requests and a third with
    `Connection: close` on one connection must get exactly the three fixed
    answers and then end of stream; a request that does not parse must get the
    connection closed. Returns what went wrong, or None."""
    import ssl
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    from net_server import HTTP_CLOSE, HTTP_KEEP
    get = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    cases = (("keep-alive/close", (get + b"\r\n") * 2 + get + b"Connection: close\r\n\r\n",
              HTTP_KEEP * 2 + HTTP_CLOSE),
             ("parse error", b"NOT HTTP\r\n\r\n", b""))
    for what, request, want in cases:
        got = b""
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
                    (ctx.wrap_socket(raw) if tls else raw) as c:
                c.sendall(request)
                while chunk := c.recv(65536):
                    got += chunk
        except OSError as exc:
            return f"http check ({what}): {exc!r} after {got[:80]!r}"
        if got != want:
            return f"http check ({what}): got {got[:120]!r}"
    return None


def run_wrk(port, seconds, scheme="http", conns=HTTP_CONNS, close=False):
    """wrk on CPU 1; returns (requests, requests/s, error, warnings, latency).
    close: every request says `Connection: close`, so each is a new connection."""
    secs = max(1, round(seconds))  # wrk takes whole seconds
    extra = ["-H", "Connection: close"] if close else []
    out = subprocess.run(pin(1) + ["wrk", "-t1", f"-c{conns}", f"-d{secs}s", "--latency", *extra,
                                   f"{scheme}://127.0.0.1:{port}/"],
                         capture_output=True, text=True, timeout=secs + 60)
    text = out.stdout
    total = re.search(r"^\s*(\d+) requests in ", text, re.M)
    rate = re.search(r"^Requests/sec:\s*([\d.]+)", text, re.M)
    if out.returncode != 0 or not total or not rate:
        return None, None, (out.stderr.strip() or text.strip())[-200:] or "wrk failed", [], {}
    warnings = ["wrk: " + m.group(0).strip() for m in
                re.finditer(r"^\s*Socket errors:.*$", text, re.M)]
    error = None
    bad = re.search(r"^\s*Non-2xx or 3xx responses: (\d+)", text, re.M)
    if bad:
        error = bad.group(0).strip()
    latency = dict(re.findall(r"^\s+(50|75|90|99)%\s+(\S+)", text, re.M))
    return int(total.group(1)), float(rate.group(1)), error, warnings, latency


def one_run(server, kind, size, unix, variant, args, tools, tmp):
    client = [tools["tls_client"]] if kind == "tls" else [tools["client"]]
    if variant == "warm":
        client.append("--warmup")
    if unix:
        path = os.path.join(tmp, f"s-{server}-{time.monotonic_ns()}")
        where, host, port = "unix:" + path, "unix:" + path, "-"
    else:
        port = str(free_port())
        where, host = port, "127.0.0.1"
    log = os.path.join(tmp, f"stderr-{server}-{kind}")
    proc, err = start_server(server, kind, where, tools, log)
    if proc is None:
        return {"error": err}
    result = {"warnings": []}
    try:
        if kind in WRK_KINDS:
            err = http_check(int(port), tls=kind == "https")
            if err:
                return {"error": err}
            cpu0 = cpu_seconds(proc.pid)
            if kind == "churn":
                served, rps, err, warnings, latency = run_wrk(port, args.seconds, "http",
                                                              CHURN_CONNS, close=True)
            else:
                served, rps, err, warnings, latency = run_wrk(port, args.seconds, kind)
            cpu1 = cpu_seconds(proc.pid)
            if err:
                return {"error": err}
            result.update(warnings=warnings, latency=latency)
        else:
            cpu0 = cpu_seconds(proc.pid)
            out = subprocess.run(pin(1) + client + [host, port, str(args.conns), str(size),
                                           str(args.seconds)],
                                 capture_output=True, text=True, timeout=args.seconds + 60)
            cpu1 = cpu_seconds(proc.pid)
            if out.returncode != 0:
                return {"error": out.stderr.strip()[-200:]}
            served, secs = out.stdout.split()
            served, secs = int(served), float(secs)
            rps = served / secs if served else 0
        if proc.poll() is not None:
            return {"error": f"server exited with {proc.returncode}: {last_line(log)}"}
    finally:
        stop_server(proc, log, result["warnings"])
    if served == 0:
        return {"error": "nothing served"}
    result.update(rps=rps, cpu_us=(cpu1 - cpu0) / served * 1e6)
    return result


def skip_reason(kind):
    """Why a kind cannot run on this machine, or None."""
    if kind in ("tls", "https") and not (shutil.which("openssl")
                                         and os.path.exists("/usr/include/openssl/ssl.h")):
        return "openssl or its headers not found (PYLOOP_BENCH=1 tools/sysdeps.sh installs them)"
    if kind in WRK_KINDS:
        if not shutil.which("wrk"):
            return "wrk not found (PYLOOP_BENCH=1 tools/sysdeps.sh installs it)"
        if importlib.util.find_spec("httptools") is None:
            return "httptools not installed (pip install -e '.[bench]')"
    return None


def row_name(row):
    kind, size, unix, variant = row
    if kind == "churn":
        return f"churn-tcp-wrk-c{CHURN_CONNS}-close"
    if kind in ("http", "https"):
        return f"{kind}-tcp-wrk-c{HTTP_CONNS}"
    return f"{kind}-{'unix' if unix else 'tcp'}-{size // 1024}k" + (f"-{variant}" if variant else "")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=2.0,
                    help="per run (wrk, for the http row, rounds to whole seconds)")
    ap.add_argument("--conns", type=int, default=10, help="echo connections (http: 100)")
    ap.add_argument("--only", help="kinds: " + ",".join(KINDS))
    ap.add_argument("--sizes", default="1024,10240,102400", help="echo message sizes")
    ap.add_argument("--no-unix", action="store_true")
    ap.add_argument("--tls-variants", default=",".join(TLS_VARIANTS),
                    help="tls rows: warm (after one closed connection), fresh (first traffic)")
    ap.add_argument("--servers", help="comma-separated servers to run (default: all of "
                    + ",".join(SERVERS) + ")")
    ap.add_argument("--before", metavar="DIR",
                    help="also run the pyloop of another checkout built in place as the server "
                         "pyloop-before (the code before a change, in the same interleaved run)")
    ap.add_argument("--monitor", action="store_true",
                    help="also run pyloop with pyloop.monitor on as the server " + MONITOR_SERVER)
    ap.add_argument("--json")
    args = ap.parse_args()
    servers = [s for s in (args.servers or ",".join(SERVERS)).split(",") if s]
    if set(servers) - set(SERVERS):
        ap.error(f"--servers: choose from {','.join(SERVERS)}")
    if args.before:
        use_before(args.before)
        at = servers.index("pyloop") + 1 if "pyloop" in servers else len(servers)
        servers.insert(at, BEFORE_LOOP)
    if args.monitor:
        at = servers.index("pyloop") + 1 if "pyloop" in servers else len(servers)
        servers.insert(at, MONITOR_SERVER)
    kinds = args.only.split(",") if args.only else list(KINDS)
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        ap.error(f"unknown kind(s) {','.join(unknown)}; choose from {','.join(KINDS)}")
    sizes = [int(x) for x in args.sizes.split(",")]
    variants = args.tls_variants.split(",")
    if set(variants) - set(TLS_VARIANTS):
        ap.error(f"--tls-variants: choose from {','.join(TLS_VARIANTS)}")
    rows = [(k, s, False, None) for k in kinds if k not in (*WRK_KINDS, "tls") for s in sizes]
    if not args.no_unix and "protocol" in kinds:
        rows.append(("protocol", 1024, True, None))
    if "http" in kinds:
        rows.append(("http", None, False, None))
    if "churn" in kinds:
        rows.append(("churn", None, False, None))
    if "tls" in kinds:
        rows += [("tls", s, False, v) for v in variants for s in TLS_SIZES]
    if "https" in kinds:
        rows.append(("https", None, False, None))
    skipped = {row: skip_reason(row[0]) for row in rows if skip_reason(row[0])}
    os.makedirs(RESULTS, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        tls = any(row[0] in ("tls", "https") and row not in skipped for row in rows)
        tools = build_tools(tmp, tls)
        absent = {s: not_installed(s) if s in servers else "not run" for s in SERVERS}
        absent[BEFORE_LOOP] = None if BEFORE_LOOP in servers else "not run"
        absent[MONITOR_SERVER] = None if MONITOR_SERVER in servers else "not run"
        res = {r: {s: {"rps": [], "cpu_us": [], "errors": [], "warnings": [], "latency": [],
                       "missing": absent[s]}
                   for s in absent} for r in rows}
        for rep in range(args.reps):
            for row in rows:
                if row in skipped:
                    continue
                kind, size, unix, variant = row
                for server in servers:
                    if (server == "c-libuv" and kind != "protocol") or absent[server]:
                        continue
                    r = one_run(server, kind, size, unix, variant, args, tools, tmp)
                    record(res[row][server], r)
            print(f"  repetition {rep + 1}/{args.reps} done", file=sys.stderr, flush=True)

    print(f"\nNetwork servers, {args.seconds}s per run, {args.reps} interleaved repetitions, "
          f"medians; client pinned to CPU 1, server to CPU 0")
    if any(row[0] not in WRK_KINDS for row in rows):
        print(f"echo rows: C echo client, {args.conns} connections, one message in flight each"
              f" (tls rows: the same over TLS 1.3, handshakes not timed, one record per 16 KiB"
              f" of message; -warm: after one connection served and closed, -fresh: the first"
              f" traffic of the server process)")
    if "http" in kinds or "https" in kinds:
        print(f"http(s) rows: wrk -t1 -c{HTTP_CONNS} keep-alive against an httptools hello world; "
              f"requests/s as wrk reports it")
    if "churn" in kinds:
        print(f"churn row: the same server, wrk -t1 -c{CHURN_CONNS} -H 'Connection: close': "
              f"a new TCP connection per request")
    before = BEFORE_LOOP in servers
    mon = MONITOR_SERVER in servers
    hdr = (f"{'workload':24} " + " ".join(f"{s:>16}" for s in servers)
           + f" {'rps p/uv':>9} {'cpu p/uv':>9} {'cpu p/C':>8}"
           + (f" {'cpu p/before':>13}" if before else "")
           + (f" {'cpu mon/p':>10}" if mon else ""))
    print(hdr)
    print(" " * 24 + " (round trips or requests/s | server CPU us per round trip or request)")
    report = []
    for row in rows:
        name = row_name(row)
        if row in skipped:
            print(f"{name:24} skipped: {skipped[row]}")
            report.append({"workload": name, "skipped": skipped[row]})
            continue
        cells = {s: (median(res[row][s]["rps"]), median(res[row][s]["cpu_us"])) for s in absent}
        p, u, c, b = cells["pyloop"], cells["uvloop"], cells["c-libuv"], cells[BEFORE_LOOP]
        rr = f"{p[0] / u[0]:.2f}x" if p[0] and u[0] else "-"
        cr = f"{p[1] / u[1]:.2f}" if p[1] and u[1] else "-"
        cc = f"{p[1] / c[1]:.2f}" if p[1] and c[1] else "-"
        cb = f"{p[1] / b[1]:.3f}" if p[1] and b[1] else "-"
        mp = cells[MONITOR_SERVER]
        cm = f"{mp[1] / p[1]:.3f}" if p[1] and mp[1] else "-"
        print(f"{name:24} " + " ".join(f"{cell_text(res[row][s]):>16}" for s in servers)
              + f" {rr:>9} {cr:>9} {cc:>8}" + (f" {cb:>13}" if before else "")
              + (f" {cm:>10}" if mon else ""))
        print_notes(res[row], args.reps)
        report.append({"workload": name,
                       "cells": {s: {"rps": cells[s][0], "cpu_us": cells[s][1],
                                     "missing": res[row][s]["missing"],
                                     "errors": res[row][s]["errors"],
                                     "warnings": res[row][s]["warnings"],
                                     "latency": res[row][s]["latency"]}
                                 for s in absent}})
    write_json(args, report, "net")


if __name__ == "__main__":
    main()
