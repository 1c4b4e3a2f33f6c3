#!/usr/bin/env python3
"""Task rows against the peers: instructions per operation under callgrind and
an interleaved wall-clock/CPU-time run, one process per (loop, workload, rep).

    python benchmarks/steps.py [--loops pyloop,uvloop,rloop,zuvloop]
                               [--only task_gather,sleep0] [--reps 7] [--callgrind]
                               [--before OTHER_CHECKOUT --loops pyloop-before,pyloop,...]

A loop that is not installed is listed as missing; one that fails a row says so.
"""
import argparse
import os
import statistics
import sys

import run
from run import fmt_rate
from workloads_core import REGISTRY

ALL = ("pyloop", "uvloop", "rloop", "zuvloop", "asyncio")
# --before DIR: another checkout (built in place), run as the loop "pyloop-before"
BEFORE = None


def with_checkout(fn, lp, *args, **kw):
    """fn (run.run_worker or run.callgrind_ir) for `lp`, the --before
    checkout's worker.py for "pyloop-before"."""
    if lp != "pyloop-before":
        return fn(lp, *args, **kw)
    own, run.WORKER = run.WORKER, os.path.join(BEFORE, "benchmarks", "worker.py")
    try:
        return fn("pyloop", *args, **kw)
    finally:
        run.WORKER = own


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--loops", default=",".join(ALL))
    ap.add_argument("--only", default="task_gather,sleep0")
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--callgrind", action="store_true",
                    help="instructions per operation instead of timing")
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--before", help="a checkout built in place, run as pyloop-before")
    a = ap.parse_args()
    global BEFORE
    BEFORE = a.before and os.path.abspath(a.before)
    loops, rows = a.loops.split(","), a.only.split(",")
    print(f"Python {sys.version.split()[0]}", flush=True)
    if a.callgrind:
        for w in rows:
            n_hi = max(10, int(REGISTRY[w]["n"] * a.scale / 10))
            n_lo = max(2, n_hi // 5)
            for lp in loops:  # Ir(n) - Ir(n/5): start-up and imports cancel out
                hi, rh = with_checkout(run.callgrind_ir, lp, w, n_hi)
                lo, rl = with_checkout(run.callgrind_ir, lp, w, n_lo)
                if hi is None or lo is None:
                    print(f"{w:12} {lp:8} {rh.get('missing') or rh.get('error') or rl}")
                    continue
                print(f"{w:12} {lp:8} {(hi - lo) / (rh['ops'] - rl['ops']):10.0f} Ir/op",
                      flush=True)
        return
    res = {(w, lp): [] for w in rows for lp in loops}
    notes = {}
    for _ in range(a.reps):
        for w in rows:
            n = max(1, int(REGISTRY[w]["n"] * a.scale))
            for lp in loops:  # interleaved: A B C, A B C, ...
                if (w, lp) in notes:
                    continue
                out = with_checkout(run.run_worker, lp, w, n)
                if "ops" in out:
                    res[w, lp].append((out["ops"] / out["seconds"],
                                       out["cpu_seconds"] / out["ops"] * 1e6))
                else:
                    notes[w, lp] = out.get("missing") or out.get("error")
    print(f"{'workload':12} {'loop':8} {'median ops/s':>12} {'min-max':>17} {'CPU us/op':>9}")
    for w in rows:
        for lp in loops:
            r = res[w, lp]
            if not r:
                print(f"{w:12} {lp:8} {notes.get((w, lp))}")
                continue
            rates = [x[0] for x in r]
            print(f"{w:12} {lp:8} {fmt_rate(statistics.median(rates)):>12} "
                  f"{fmt_rate(min(rates)):>8}-{fmt_rate(max(rates)):<8} "
                  f"{statistics.median(x[1] for x in r):9.3f}")


if __name__ == "__main__":
    main()
