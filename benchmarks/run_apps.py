#!/usr/bin/env python3
"""Real-application benchmarks on asyncio, uvloop and pyloop, interleaved
within each repetition, medians over repetitions (benchmarks/apps.py holds
the servers and the client):

  aiohttp-hello   aiohttp web.run_app hello world, driven by wrk
  fastapi-json    FastAPI JSON endpoint on uvicorn (one process, --http
                  httptools, --loop asyncio | uvloop | pyloop:new_event_loop),
                  driven by wrk
  asyncpg-cN      asyncpg `SELECT $1::int` round trips on N connections against
                  a throwaway local PostgreSQL (examples/_pg.py)

The HTTP rows use run_net.py's wrk driver (taskset -c 1 wrk -t1 -c100, keep-
alive) with the server pinned to CPU 0, and report requests/s and the
server's CPU time per request. The asyncpg rows pin the client process to
CPU 0 and the PostgreSQL server to CPU 1, and report queries/s and the
client's CPU time per query.

    python benchmarks/run_apps.py [--reps N] [--seconds S] [--only ROW,...]
                                  [--pg-conns 1,10] [--json PATH]
"""
import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from run_net import (HTTP_CONNS, RESULTS, cell_text, cpu_seconds, free_port,  # noqa: E402
                     last_line, median, pin, print_notes, record, run_wrk,
                     stop_server, write_json)

LOOPS = ("asyncio", "uvloop", "pyloop")
UVICORN_LOOP = {"asyncio": "asyncio", "uvloop": "uvloop", "pyloop": "pyloop:new_event_loop"}
APPS = os.path.join(HERE, "apps.py")
EXPECT = {"aiohttp-hello": b"Hello, World!", "fastapi-json": b'{"message":"Hello, World!"}'}


def server_cmd(row, loop, port):
    if row == "aiohttp-hello":
        return [sys.executable, APPS, "aiohttp", loop, str(port)]
    return [sys.executable, "-m", "uvicorn", "apps:fastapi_app", "--app-dir", HERE,
            "--loop", UVICORN_LOOP[loop], "--http", "httptools", "--host", "127.0.0.1",
            "--port", str(port), "--no-access-log", "--log-level", "warning"]


def get(port, path):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
        return r.read()


def wait_http(proc, port, row, loop, log, timeout=60):
    """Until the server answers; then GET / must give the row's answer and
    GET /loop must name a module of the loop asked for. Returns what went
    wrong, or None."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return f"server exited with {proc.returncode}: {last_line(log)}"
        try:
            body = get(port, "/")
        except OSError:
            time.sleep(0.05)
            continue
        if body != EXPECT[row]:
            return f"GET / answered {body[:100]!r}"
        running = json.loads(get(port, "/loop"))["loop"]
        if running.split(".")[0] != loop:
            return f"asked for {loop}, the server runs a loop from {running}"
        return None
    return "server did not answer within a minute"


def http_run(row, loop, seconds, tmp):
    port = free_port()
    log = os.path.join(tmp, f"stderr-{row}-{loop}")
    with open(log, "w") as err:
        proc = subprocess.Popen(pin(0) + server_cmd(row, loop, port), cwd=ROOT,
                                stdin=subprocess.DEVNULL, stdout=err, stderr=err)
    result = {"warnings": []}
    try:
        err = wait_http(proc, port, row, loop, log)
        if err:
            return {"error": err}
        cpu0 = cpu_seconds(proc.pid)
        served, rps, err, warnings, latency = run_wrk(port, seconds)
        cpu1 = cpu_seconds(proc.pid)
        if err:
            return {"error": err}
        if proc.poll() is not None:
            return {"error": f"server exited with {proc.returncode}: {last_line(log)}"}
        result.update(warnings=warnings, latency=latency)
    finally:
        stop_server(proc, log, result["warnings"], grace=15)
    if not served:
        return {"error": "nothing served"}
    result.update(rps=rps, cpu_us=(cpu1 - cpu0) / served * 1e6)
    return result


def pg_run(conns, loop, seconds, dsn):
    out = subprocess.run(pin(0) + [sys.executable, APPS, "asyncpg", loop, dsn, str(seconds),
                                   str(conns)],
                         capture_output=True, text=True, timeout=seconds + 120)
    if out.returncode != 0:
        return {"error": (out.stderr.strip() or "client failed")[-300:]}
    r = json.loads(out.stdout.strip().splitlines()[-1])
    if not r["queries"]:
        return {"error": "no queries completed"}
    return {"rps": r["queries"] / r["seconds"], "cpu_us": r["cpu"] / r["queries"] * 1e6,
            "warnings": [f"client stderr: {out.stderr.strip().splitlines()[-1]}"]
            if out.stderr.strip() else []}


def start_postgres():
    """A TempPostgres whose processes run on CPU 1 (they inherit the affinity
    of pg_ctl, which inherits ours while it starts)."""
    sys.path.insert(0, os.path.join(ROOT, "examples"))
    import _pg
    pg = _pg.TempPostgres()
    before = os.sched_getaffinity(0)
    if len(before) > 1 and 1 in before:
        os.sched_setaffinity(0, {1})
    try:
        pg.start()
    finally:
        os.sched_setaffinity(0, before)
    return pg


def skip_reason(row):
    if row in EXPECT:
        if not shutil.which("wrk"):
            return "wrk not found (PYLOOP_BENCH=1 tools/sysdeps.sh installs it)"
        mods = ("aiohttp",) if row == "aiohttp-hello" else ("fastapi", "uvicorn", "httptools")
    else:
        mods = ("asyncpg",)
    missing = [m for m in mods if importlib.util.find_spec(m) is None]
    if missing:
        return f"{', '.join(missing)} not installed (pip install -e '.[bench]')"
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=3.0,
                    help="per run (wrk rounds to whole seconds)")
    ap.add_argument("--pg-conns", default="1,10", help="connection counts of the asyncpg rows")
    ap.add_argument("--only", help="rows: aiohttp-hello,fastapi-json,asyncpg")
    ap.add_argument("--json")
    args = ap.parse_args()
    pg_rows = [f"asyncpg-c{int(n)}" for n in args.pg_conns.split(",")]
    rows = ["aiohttp-hello", "fastapi-json"] + pg_rows
    if args.only:
        wanted = args.only.split(",")
        unknown = [w for w in wanted if w not in rows and w != "asyncpg"]
        if unknown:
            ap.error(f"unknown row(s) {','.join(unknown)}")
        rows = [r for r in rows if r in wanted or (r.startswith("asyncpg") and "asyncpg" in wanted)]
    skipped = {r: skip_reason(r) for r in rows if skip_reason(r)}
    pg = None
    if any(r.startswith("asyncpg") and r not in skipped for r in rows):
        try:
            pg = start_postgres()
        except Exception as exc:  # no binaries, or the server failed to start
            for r in rows:
                if r.startswith("asyncpg"):
                    skipped[r] = f"no PostgreSQL: {str(exc).splitlines()[0]}"
    # "rps": requests or queries per second
    res = {r: {lp: {"rps": [], "cpu_us": [], "errors": [], "warnings": [], "latency": []}
               for lp in LOOPS}
           for r in rows}
    os.makedirs(RESULTS, exist_ok=True)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for rep in range(args.reps):
                for row in rows:
                    if row in skipped:
                        continue
                    for lp in LOOPS:
                        if row.startswith("asyncpg"):
                            r = pg_run(int(row[len("asyncpg-c"):]), lp, args.seconds, pg.dsn)
                        else:
                            r = http_run(row, lp, args.seconds, tmp)
                        record(res[row][lp], r)
                print(f"  repetition {rep + 1}/{args.reps} done", file=sys.stderr, flush=True)
    finally:
        if pg is not None:
            pg.stop()

    print(f"\nReal applications, {args.seconds}s per run, {args.reps} interleaved repetitions, "
          f"medians")
    print(f"http rows: wrk -t1 -c{HTTP_CONNS} keep-alive on CPU 1, server on CPU 0; "
          f"requests/s | server CPU us per request")
    print("asyncpg rows: client on CPU 0, PostgreSQL on CPU 1; queries/s | client CPU us per query")
    print(f"{'workload':16} {'asyncio':>15} {'uvloop':>15} {'pyloop':>15} {'p/asyncio':>10}"
          f" {'p/uvloop':>9} {'cpu p/uv':>9}")
    report = []
    for row in rows:
        if row in skipped:
            print(f"{row:16} skipped: {skipped[row]}")
            report.append({"workload": row, "skipped": skipped[row]})
            continue
        cells = {lp: (median(res[row][lp]["rps"]), median(res[row][lp]["cpu_us"])) for lp in LOOPS}

        def ratio(a, b, i):
            return f"{cells[a][i] / cells[b][i]:.2f}" if cells[a][i] and cells[b][i] else "-"

        pa, pu, cu = ratio("pyloop", "asyncio", 0), ratio("pyloop", "uvloop", 0), \
            ratio("pyloop", "uvloop", 1)
        print(f"{row:16} " + " ".join(f"{cell_text(res[row][lp]):>15}" for lp in LOOPS) +
              f" {pa + 'x':>10} {pu + 'x':>9} {cu:>9}")
        print_notes(res[row], args.reps)
        report.append({"workload": row, "cells": {
            lp: {"median_rps": cells[lp][0], "median_cpu_us": cells[lp][1], **res[row][lp]}
            for lp in LOOPS}})
    target = [r["workload"] for r in report if "cells" in r
              and r["cells"]["pyloop"]["median_rps"] and r["cells"]["uvloop"]["median_rps"]
              and r["cells"]["pyloop"]["median_rps"] < r["cells"]["uvloop"]["median_rps"]]
    measured = [r for r in report if "cells" in r]
    if measured:
        print("target (each row >= 1.0x uvloop): " +
              ("met" if not target else f"not met on {', '.join(target)}"))
    write_json(args, report, "apps")


if __name__ == "__main__":
    main()
