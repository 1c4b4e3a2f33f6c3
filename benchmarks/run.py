#!/usr/bin/env python3
"""pyloop benchmark harness: each workload runs in its own process for pyloop,
asyncio and uvloop, interleaved (A B C A B C ...), and the medians and ratios
are printed, written as JSON and drawn as a PNG bar chart.

    python benchmarks/run.py [--quick] [--reps N] [--only a,b] [--callgrind]
                             [--json PATH] [--chart PATH]
"""
import argparse
import datetime
import json
import math
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from loops import (BEFORE_LOOP, CALLGRIND_MONITOR_SLOW, LOOPS, MONITOR_LOOPS, MONITOR_SLOW_ENV,  # noqa: E402
                   use_before)
import workloads_core  # noqa: E402,F401
import workloads_os  # noqa: E402,F401
from workloads_core import REGISTRY  # noqa: E402

RESULTS = os.path.join(HERE, "results")
WORKER = os.path.join(HERE, "worker.py")
TARGET_GEOMEAN = 1.3
TARGET_EACH = 1.1
# The loops run: LOOPS, plus the pyloop+monitor variants with --monitor.
RUN_LOOPS = list(LOOPS)
# The tables' columns: LOOPS, and pyloop-before right after pyloop with --before.
TABLE_LOOPS = list(LOOPS)


def run_worker(loop, workload, n=None, prefix=(), timeout=600, env=None):
    cmd = [*prefix, sys.executable, WORKER, loop, workload]
    if n is not None:
        cmd.append(str(n))
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL, env=env)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout}s"}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        return {"error": f"exit {proc.returncode}: {proc.stderr.strip()[-300:]}"}
    return json.loads(lines[-1])


# The OS-surface issue's targets: workload -> ((other loop, minimum ratio), ...).
OS_TARGETS = {
    "udp_echo": (("uvloop", 1.2),),
    "subprocess_spawn": (("asyncio", 1.0), ("uvloop", 1.5)),
}


def geomean(xs):
    xs = [x for x in xs if x and x > 0]
    return math.exp(sum(map(math.log, xs)) / len(xs)) if xs else float("nan")


def fmt_rate(x):
    if x is None:
        return "-"
    return f"{x / 1e6:.3f}M" if x >= 1e6 else f"{x / 1e3:.1f}k"


def timing(workloads, reps, scale):
    """{workload: {loop: {"rates": [...], "median": x} | {"missing"/"error": ...}}}"""
    res = {w: {lp: {"rates": []} if lp in RUN_LOOPS else {"missing": "not run"}
               for lp in dict.fromkeys([*TABLE_LOOPS, *RUN_LOOPS])} for w in workloads}
    for rep in range(reps):
        for w in workloads:
            n = max(1, int(REGISTRY[w]["n"] * scale))
            for lp in RUN_LOOPS:  # interleaved: A B C, A B C, ...
                cell = res[w][lp]
                if "missing" in cell:
                    continue
                out = run_worker(lp, w, n)
                if "missing" in out:
                    cell["missing"] = out["missing"]
                elif "error" in out:
                    cell.setdefault("errors", []).append(out["error"])
                else:
                    cell["rates"].append(out["ops"] / out["seconds"])
        print(f"  repetition {rep + 1}/{reps} done", file=sys.stderr, flush=True)
    for w in workloads:
        for lp in res[w]:
            cell = res[w][lp]
            cell["median"] = statistics.median(cell["rates"]) if cell.get("rates") else None
    return res


def callgrind_ir(loop, workload, n):
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "cg.out")
        # pyloop.monitor's wall-clock threshold scaled by callgrind's slow-down (loops.py)
        env = {**os.environ, MONITOR_SLOW_ENV: CALLGRIND_MONITOR_SLOW}
        r = run_worker(loop, workload, n, timeout=1800, env=env,
                       prefix=("valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"))
        if "ops" not in r:
            return None, r
        with open(out) as f:
            for line in f:
                m = re.match(r"(?:summary|totals):\s+(\d+)", line)
                if m:
                    return int(m.group(1)), r
    return None, {"error": "no totals in callgrind output"}


def callgrind(workloads, scale):
    """Instructions per operation: (Ir(n) - Ir(n/5)) / (ops(n) - ops(n/5)), so
    interpreter start-up and imports cancel out."""
    res = {}
    for w in workloads:
        n_hi = max(10, int(REGISTRY[w]["n"] * scale / 10))
        n_lo = max(2, n_hi // 5)
        res[w] = {lp: {"missing": "not run"} for lp in TABLE_LOOPS if lp not in RUN_LOOPS}
        for lp in RUN_LOOPS:
            hi, rh = callgrind_ir(lp, w, n_hi)
            lo, rl = callgrind_ir(lp, w, n_lo)
            if hi is None or lo is None:
                res[w][lp] = {"missing": rh.get("missing") or rl.get("missing")
                              or rh.get("error") or rl.get("error")}
                continue
            res[w][lp] = {"ir_per_op": (hi - lo) / (rh["ops"] - rl["ops"])}
        print(f"  callgrind {w} done", file=sys.stderr, flush=True)
    return res


def show_cell(cell):
    """A loop's cell: its median rate, `not installed`, or `fails` when every
    run of an installed loop failed (a peer failing a row stays in the table)."""
    if "missing" in cell:
        return "not installed" if "not installed" in cell["missing"] else "missing"
    if cell.get("median") is None:
        return "fails" if cell.get("errors") else "-"
    return fmt_rate(cell["median"])


def print_table(res, targets=None):
    others = [lp for lp in TABLE_LOOPS if lp != "pyloop"]
    cols = ["workload", *(f"{lp} ops/s" for lp in TABLE_LOOPS), *(f"pyloop/{lp}" for lp in others)]
    rows = []
    ratios_a, ratios_u = [], []
    for w, cells in res.items():
        med = {lp: cells[lp].get("median") for lp in TABLE_LOOPS}
        ratio = {lp: med["pyloop"] / med[lp] if med["pyloop"] and med[lp] else None
                 for lp in others}
        if ratio["asyncio"]:
            ratios_a.append(ratio["asyncio"])
        if ratio["uvloop"]:
            ratios_u.append(ratio["uvloop"])
        rows.append([w, *(show_cell(cells[lp]) for lp in TABLE_LOOPS),
                     *(f"{ratio[lp]:.2f}x" if ratio[lp] else "-" for lp in others)])
    widths = [max(len(str(r[i])) for r in rows + [cols]) for i in range(len(cols))]
    line = " | ".join(c.ljust(widths[i]) for i, c in enumerate(cols))
    print(line)
    print("-|-".join("-" * w for w in widths))
    for r in rows:
        print(" | ".join(str(c).ljust(widths[i]) for i, c in enumerate(r)))
    ga, gu = geomean(ratios_a), geomean(ratios_u)
    print(f"geometric mean: pyloop/asyncio {ga:.2f}x, pyloop/uvloop {gu:.2f}x")
    for w, cells in res.items():
        for lp in TABLE_LOOPS:
            if cells[lp].get("errors"):
                print(f"  {w} on {lp}: {len(cells[lp]['errors'])} run(s) failed, first: "
                      f"{cells[lp]['errors'][0]}")
    if targets is not None:
        # Per-workload targets (the OS-surface issue's): (against, minimum).
        for w, wanted in targets.items():
            if w not in res:
                continue
            for other, minimum in wanted:
                mine, theirs = res[w]["pyloop"].get("median"), res[w][other].get("median")
                if not (mine and theirs):
                    print(f"target {w} pyloop/{other} >= {minimum}: not evaluated")
                    continue
                r = mine / theirs
                print(f"target {w} pyloop/{other} >= {minimum}: "
                      f"{'met' if r >= minimum else 'NOT met'} ({r:.2f})")
    elif ratios_u:
        worst = min(ratios_u)
        met = gu >= TARGET_GEOMEAN and worst >= TARGET_EACH
        print(f"target (geomean pyloop/uvloop >= {TARGET_GEOMEAN}, each >= {TARGET_EACH}): "
              f"{'met' if met else 'NOT met'} (geomean {gu:.2f}, lowest {worst:.2f})")
    else:
        print("target: not evaluated (uvloop or pyloop missing)")
    return ga, gu


def print_callgrind(cg):
    print("\ninstructions per operation (valgrind --tool=callgrind; lower is better)")
    before = BEFORE_LOOP in TABLE_LOOPS
    print(f"{'workload':22} " + " ".join(f"{lp:>13}" for lp in TABLE_LOOPS) + f" {'uvloop/pyloop':>14}"
          + (f" {'pyloop/before':>14}" if before else ""))
    for w, cells in cg.items():
        vals = {lp: cells[lp].get("ir_per_op") for lp in TABLE_LOOPS}

        def ratio(a, b):
            return f"{vals[a] / vals[b]:.3f}x" if vals[a] and vals[b] else "-"
        print(f"{w:22} " + " ".join(f"{vals[lp]:13.0f}" if vals[lp] else f"{'missing':>13}"
                                    for lp in TABLE_LOOPS) + f" {ratio('uvloop', 'pyloop'):>14}"
              + (f" {ratio('pyloop', BEFORE_LOOP):>14}" if before else ""))


def print_monitor(res, cg):
    """What pyloop.monitor costs: each variant against plain pyloop, from the
    same interleaved run (above 1: slower with monitoring)."""
    variants = [lp for lp in MONITOR_LOOPS if lp in RUN_LOOPS]
    print("\nmonitoring overhead (time per operation of pyloop+monitor / pyloop; "
          "1.00 = no cost)")
    head = f"{'workload':22} " + " ".join(f"{v + ' time':>26}" for v in variants)
    if cg:
        head += " " + " ".join(f"{v + ' instr':>27}" for v in variants)
    print(head)
    for w, cells in res.items():
        base = cells["pyloop"].get("median")
        row = f"{w:22} "
        for v in variants:
            mine = cells[v].get("median")
            row += f"{(base / mine if base and mine else float('nan')):26.3f} "
        if cg:
            b = cg[w]["pyloop"].get("ir_per_op")
            for v in variants:
                m = cg[w][v].get("ir_per_op")
                row += (f"{m / b:14.3f} ({m - b:+8.0f}/op) " if b and m else f"{'-':>27} ")
        print(row.rstrip())


def chart(res, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print(f"chart skipped: matplotlib is not installed", file=sys.stderr)
        return False
    names = list(res)
    fig, ax = plt.subplots(figsize=(max(6, 1.4 * len(names)), 4.5))
    width = 0.8 / len(TABLE_LOOPS)
    for i, lp in enumerate(TABLE_LOOPS):
        vals = []
        for w in names:
            base = res[w]["asyncio"].get("median")
            v = res[w][lp].get("median")
            vals.append(v / base if v and base else 0)
        xs = [x + (i - (len(TABLE_LOOPS) - 1) / 2) * width for x in range(len(names))]
        bars = ax.bar(xs, vals, width, label=lp)
        for x, v in zip(xs, vals):
            if v:
                ax.text(x, v, f"{v:.1f}", ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("throughput relative to asyncio (higher is better)")
    ax.set_title(f"pyloop and its peers vs asyncio, Python {platform.python_version()} (median)")
    ax.axhline(1.0, color="grey", linewidth=0.8)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return True


def main(argv=None):
    ap = argparse.ArgumentParser(description="pyloop benchmark harness")
    ap.add_argument("--quick", action="store_true", help="smaller workloads, 5 repetitions")
    ap.add_argument("--reps", type=int, default=5, help="repetitions per loop (>= 5 recommended)")
    ap.add_argument("--only", help="comma-separated workload names")
    ap.add_argument("--callgrind", action="store_true", help="also count instructions per op")
    ap.add_argument("--json", help="where to write the results (default benchmarks/results/)")
    ap.add_argument("--chart", help="where to write the PNG chart (default benchmarks/results/)")
    ap.add_argument("--monitor", action="store_true",
                    help="also run pyloop with pyloop.monitor on (" + ", ".join(MONITOR_LOOPS)
                    + ") and print its overhead against pyloop")
    ap.add_argument("--loops", help="comma-separated loops to run (default: all; with "
                                    "--monitor e.g. pyloop,pyloop+monitor)")
    ap.add_argument("--before", metavar="DIR",
                    help="also run the pyloop of another checkout built in place (e.g. a git "
                         "worktree of the commit before a change) as the loop pyloop-before")
    args = ap.parse_args(argv)
    if args.monitor:
        RUN_LOOPS.extend(MONITOR_LOOPS)
    if args.before:
        use_before(args.before)
        RUN_LOOPS.insert(RUN_LOOPS.index("pyloop") + 1, BEFORE_LOOP)
        TABLE_LOOPS.insert(TABLE_LOOPS.index("pyloop") + 1, BEFORE_LOOP)
    if args.loops:
        wanted = [lp for lp in args.loops.split(",") if lp]
        unknown = [lp for lp in wanted if lp not in RUN_LOOPS]
        if unknown:
            ap.error(f"unknown loops: {', '.join(unknown)}; known: {', '.join(RUN_LOOPS)}")
        RUN_LOOPS[:] = wanted

    workloads = list(REGISTRY)
    if args.only:
        workloads = [w for w in args.only.split(",") if w]
        unknown = [w for w in workloads if w not in REGISTRY]
        if unknown:
            ap.error(f"unknown workloads: {', '.join(unknown)}; known: {', '.join(REGISTRY)}")
    scale = 0.25 if args.quick else 1.0
    os.makedirs(RESULTS, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    json_path = args.json or os.path.join(RESULTS, f"bench-{stamp}.json")
    chart_path = args.chart or os.path.join(RESULTS, f"bench-{stamp}.png")

    print(f"pyloop benchmarks: Python {platform.python_version()}, {os.cpu_count()} CPUs, "
          f"{args.reps} interleaved repetitions, scale {scale}", flush=True)
    for w in workloads:
        print(f"  {w}: {REGISTRY[w]['doc']}")
    res = timing(workloads, args.reps, scale)
    core = {w: r for w, r in res.items() if REGISTRY[w]["group"] == "core"}
    other = {w: r for w, r in res.items() if REGISTRY[w]["group"] != "core"}
    ga = gu = None
    if core:
        print()
        ga, gu = print_table(core)
    if other:
        print("\nOS surface (UDP, subprocesses, pipes)")
        print_table(other, targets=OS_TARGETS)
    cg = None
    if args.callgrind and core:
        # Instruction counts say little about spawning or pipes to a child
        # (the kernel's and the child's work is not counted): core only.
        cg = callgrind(list(core), scale)
        print_callgrind(cg)
    if args.monitor and "pyloop" in RUN_LOOPS:
        print_monitor(res, cg)
    report = {
        "python": platform.python_version(), "machine": platform.machine(),
        "cpus": os.cpu_count(), "reps": args.reps, "scale": scale,
        "command": " ".join([os.path.relpath(sys.argv[0])] + (argv or sys.argv[1:])),
        "timing": res, "geomean_pyloop_over_asyncio": ga, "geomean_pyloop_over_uvloop": gu,
        "callgrind": cg,
    }
    with open(json_path, "w") as f:
        json.dump(report, f, indent=1)
    print(f"\nJSON: {json_path}")
    if chart(res, chart_path):
        print(f"chart: {chart_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
