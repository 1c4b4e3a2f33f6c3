#!/usr/bin/env python3
"""What pyloop.monitor costs, in instructions per operation (callgrind):

    python benchmarks/monitor_overhead.py [--core] [--net] [--only a,b] [--scale S]
                                          [--jobs J] [--json PATH]

Four builds/settings of pyloop, on the core workloads of workloads_core.py and
on the HTTP and streams echo servers of net_server.py:

  no hooks   the extension built from a copy of this tree in which every
             monitoring hook's test (`X->monitor != NULL` in csrc/loop.c,
             loop.h and stream.c) is replaced by 0, so the compiler drops
             the hooks: the loop as if pyloop.monitor did not exist
  off        this tree's extension, monitoring off (the default)
  on         pyloop.monitor.enable(loop): everything but per-task figures
  on+tasks   pyloop.monitor.enable(loop, tasks=True)

Core rows: each workload runs once per variant under valgrind --tool=callgrind
at two sizes, N and N/5, and (Ir(N) - Ir(N/5)) / (ops(N) - ops(N/5)) is the
cost of one operation with start-up and imports cancelled out (as run.py
--callgrind), counted in the loop's thread (the figures of every thread go
to the JSON; monitoring starts no thread unless built without the coarse
clock, monitor.h). Network rows: the loop
thread's instructions per request of net_server.py's HTTP server under wrk
and of its streams echo server under benchmarks/tools/echo_client.c (the 10 s
run after a warm-up and a 4 s run). Instruction
counts do not depend on what else the machine runs; PYTHONHASHSEED is fixed
so that repeated runs execute the same code, and the monitor's slow-callback
threshold is raised to 60 s (loops.py): it is wall-clock time, and callgrind's
slow-down would make callbacks of a few ms slow, recorded and logged."""
import argparse
import concurrent.futures
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import workloads_core  # noqa: E402,F401  (registers the core workloads)
from workloads_core import REGISTRY  # noqa: E402
from loops import CALLGRIND_MONITOR_SLOW, MONITOR_SLOW_ENV  # noqa: E402
from callgrind_echo import thread_instructions  # noqa: E402

VARIANTS = ("no hooks", "off", "on", "on+tasks")
# variant -> (the tree whose benchmarks/ and pyloop/ run it, its loop name)
LOOP_NAME = {"no hooks": "pyloop", "off": "pyloop", "on": "pyloop+monitor",
             "on+tasks": "pyloop+monitor-tasks"}
HOOK_FILES = ("csrc/loop.c", "csrc/loop.h", "csrc/stream.c", "csrc/uvhandle.h", "csrc/uvhandle.c",
              "csrc/pipe.c")
HOOK_TEST = re.compile(r"\b[A-Za-z_]\w*(?:->\w+)*->monitor != NULL")
# PYTHONHASHSEED fixed: repeated runs execute the same code. The monitor's
# slow-callback threshold (wall-clock time) scaled by callgrind's slow-down,
# so that no callback is recorded as slow that would not be natively
# (loops.py); the --cpu runs keep the default.
ENV = {**os.environ, "PYTHONHASHSEED": "0", MONITOR_SLOW_ENV: CALLGRIND_MONITOR_SLOW}


def build_without_hooks(dest):
    """Copy the tree to `dest`, compile the monitoring hooks out, build the
    extension there in place. Returns the number of hook tests removed."""
    ignore = shutil.ignore_patterns("*.so", "results", "__pycache__", ".venv*", ".git")
    for name in ("csrc", "pyloop", "benchmarks", "tools", "third_party", "build"):
        src = os.path.join(ROOT, name)
        if os.path.isdir(src):  # build/ keeps the libuv archive (mtimes copied)
            shutil.copytree(src, os.path.join(dest, name), ignore=ignore, dirs_exist_ok=True)
    for name in ("setup.py", "pyproject.toml", "MANIFEST.in", "README.md"):
        shutil.copy2(os.path.join(ROOT, name), dest)
    removed = 0
    for rel in HOOK_FILES:
        path = os.path.join(dest, rel)
        with open(path) as f:
            text = f.read()
        text, n = HOOK_TEST.subn("0 /* monitoring hook compiled out */", text)
        removed += n
        with open(path, "w") as f:
            f.write(text)
    subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--inplace"], cwd=dest,
                   check=True, stdout=subprocess.DEVNULL, env=ENV)
    # The worker must import the copy's pyloop, not this tree's.
    where = subprocess.run([sys.executable, "-c", "import sys; sys.path.insert(0, sys.argv[1]); "
                            "import pyloop._core as c; print(c.__file__)", dest],
                           check=True, capture_output=True, text=True, env=ENV).stdout.strip()
    if not where.startswith(dest):
        raise RuntimeError(f"the hook-less copy imports {where}, not its own extension")
    return removed


def callgrind_ir(root, loop, workload, n):
    """(instructions of the loop's thread, of every thread, ops) of one worker
    run under callgrind. The threads apart: a monitor thread (the opt-in
    watchdog, the ticker of a build without the coarse clock) wakes a fixed
    number of times per second, and under callgrind a second holds about
    fifty times fewer operations than natively, so its share per operation
    would be fifty times too large."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "cg.out")
        r = subprocess.run(["valgrind", "--tool=callgrind", "--separate-threads=yes",
                            f"--callgrind-out-file={out}", sys.executable,
                            os.path.join(root, "benchmarks", "worker.py"), loop, workload,
                            str(n)], capture_output=True, text=True, env=ENV, timeout=3600)
        lines = [ln for ln in r.stdout.splitlines() if ln.startswith("{")]
        if r.returncode != 0 or not lines:
            raise RuntimeError(f"{loop} {workload} {n}: worker failed: {r.stderr[-2000:]}")
        ops = json.loads(lines[-1])["ops"]
        per_thread = thread_instructions(tmp)
        if 1 not in per_thread:
            raise RuntimeError(f"{loop} {workload}: no totals in callgrind's output")
        return per_thread[1], sum(per_thread.values()), ops


CPU_ENV = {k: v for k, v in ENV.items() if k != MONITOR_SLOW_ENV}
CPU_CODE = """
import json, os, sys, time
sys.path.insert(0, os.path.join(sys.argv[1], "benchmarks"))
from loops import new_loop
from workloads_core import REGISTRY
loop = new_loop(sys.argv[2])
t0 = time.process_time()
ops = REGISTRY[sys.argv[3]]["fn"](loop, int(sys.argv[4]))
dt = time.process_time() - t0
loop.close()
print(json.dumps({"ops": ops, "cpu": dt}))
"""


def cpu(roots, workloads, scale, reps):
    """Median CPU time (user + system of the whole process, time.process_time())
    per operation, the variants interleaved in each repetition."""
    import statistics
    res = {}
    for w in workloads:
        n = max(10, int(REGISTRY[w]["n"] * scale))
        runs = {v: [] for v in VARIANTS}
        for _ in range(reps):
            for v in VARIANTS:
                out = subprocess.run([sys.executable, "-c", CPU_CODE, roots[v], LOOP_NAME[v], w,
                                      str(n)], check=True, capture_output=True, text=True,
                                     env=CPU_ENV).stdout
                r = json.loads(out.splitlines()[-1])
                runs[v].append(r["cpu"] / r["ops"] * 1e9)
        res[w] = {v: statistics.median(runs[v]) for v in VARIANTS}
        print(f"  cpu {w} done", file=sys.stderr, flush=True)
    return res


def core(roots, workloads, scale, jobs):
    jobs_list = []
    for w in workloads:
        n_hi = max(10, int(REGISTRY[w]["n"] * scale / 10))
        for v in VARIANTS:
            for n in (n_hi, max(2, n_hi // 5)):
                jobs_list.append((w, v, n))
    got = {}
    with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
        futs = {pool.submit(callgrind_ir, roots[v], LOOP_NAME[v], w, n): (w, v, n)
                for w, v, n in jobs_list}
        for fut in concurrent.futures.as_completed(futs):
            got[futs[fut]] = fut.result()
            print(f"  callgrind {' '.join(map(str, futs[fut]))} done", file=sys.stderr,
                  flush=True)
    res = {}
    for w in workloads:
        n_hi = max(10, int(REGISTRY[w]["n"] * scale / 10))
        n_lo = max(2, n_hi // 5)
        res[w] = {}
        for v in VARIANTS:
            (ih, ah, oh), (il, al, ol) = got[(w, v, n_hi)], got[(w, v, n_lo)]
            res[w][v] = (ih - il) / (oh - ol)
            res[w][v + " (all threads)"] = (ah - al) / (oh - ol)
    return res


def _loop_thread_ir(path):
    """The loop thread's instructions in a dump of --separate-threads=yes
    (thread 1: net_server.py runs its loop in the main thread)."""
    with open(path) as f:
        for line in f:
            t = re.match(r"(?:summary|totals):\s+(\d+)", line)
            if t:
                return int(t.group(1))
    raise RuntimeError(f"no totals in {path}")


def net_row(root, loop, kind, load, tmp):
    """Instructions of the server's loop thread per request: `load(port,
    seconds)` runs the client and returns its requests; a warm-up, then a
    short and a long run, each dumped; the long run's instructions over its
    requests."""
    from callgrind_net import free_port
    port = free_port()
    out = os.path.join(tmp, f"cg.{kind}.{loop}")
    server = subprocess.Popen(["valgrind", "--tool=callgrind", "--separate-threads=yes",
                               f"--callgrind-out-file={out}", sys.executable,
                               os.path.join(root, "benchmarks", "net_server.py"), loop, kind,
                               str(port)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                              text=True, env=ENV)
    try:
        if server.stdout.readline().strip() != "ready":
            raise RuntimeError(f"{loop} {kind} server did not start")
        load(port, 2)  # warm-up
        reqs = []
        subprocess.run(["callgrind_control", "-z", str(server.pid)], check=True,
                       capture_output=True)
        for seconds in (4, 10):
            reqs.append(load(port, seconds))
            subprocess.run(["callgrind_control", "-d", str(server.pid)], check=True,
                           capture_output=True)
    finally:
        server.terminate()
        server.wait(60)
    ir = [_loop_thread_ir(f"{out}.{n}-01") for n in (1, 2)]
    # The long run alone: its 20 connections' set-up is a few instructions
    # per request, while the difference of two runs of a server sharing the
    # machine can rest on a few thousand requests (how many each run serves
    # follows the machine's load).
    return ir[1] / reqs[1], reqs


def net(roots, conns):
    """The HTTP server (an asyncio.Protocol: its callbacks run inside libuv's
    pass, no handle per request) under wrk, and the streams echo server
    (asyncio.start_server: a task step per message, the handles monitoring
    times) under benchmarks/tools/echo_client.c, 1 KiB messages."""
    from callgrind_net import wrk
    res = {}
    with tempfile.TemporaryDirectory() as tmp:
        client = os.path.join(tmp, "echo_client")
        subprocess.run(["gcc", "-O2", "-o", client,
                        os.path.join(HERE, "tools", "echo_client.c")], check=True)

        def http(port, seconds):
            return wrk(f"http://127.0.0.1:{port}/", conns, seconds)

        def echo(port, seconds):
            out = subprocess.run([client, "127.0.0.1", str(port), str(conns), "1024",
                                  str(seconds)], check=True, capture_output=True,
                                 text=True).stdout
            return int(out.split()[0])

        for kind, row, load in (("http", f"http (wrk -c{conns})", http),
                                ("streams", f"streams echo 1 KiB (c{conns})", echo)):
            res[row] = {}
            for v in VARIANTS:
                res[row][v], reqs = net_row(roots[v], LOOP_NAME[v], kind, load, tmp)
                print(f"  net {row} {v}: {res[row][v]:,.0f} per request {reqs}",
                      file=sys.stderr, flush=True)
    return res


def pct(a, b):
    return f"{(a / b - 1) * 100:+.2f}%"


def table(rows, title):
    print(f"\n{title}")
    print(f"| workload | {' | '.join(VARIANTS)} | off vs no hooks | on vs off | "
          "on+tasks vs off |")
    print("| --- " * (len(VARIANTS) + 4) + "|")
    for w, v in rows.items():
        print(f"| {w} | " + " | ".join(f"{v[k]:,.1f}" if v[k] < 1000 else f"{v[k]:,.0f}"
                                       for k in VARIANTS) +
              f" | {pct(v['off'], v['no hooks'])} | {pct(v['on'], v['off'])} | "
              f"{pct(v['on+tasks'], v['off'])} |")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--core", action="store_true", help="the core rows (default: both)")
    ap.add_argument("--net", action="store_true", help="the network rows (default: both)")
    ap.add_argument("--only", help="core workloads, comma-separated")
    ap.add_argument("--scale", type=float, default=1.0,
                    help="work per run relative to run.py --callgrind's (default 1)")
    ap.add_argument("--jobs", type=int, default=2, help="callgrind runs at once (default 2)")
    ap.add_argument("--conns", type=int, default=20)
    ap.add_argument("--cpu", type=int, metavar="REPS", default=0,
                    help="instead of callgrind: CPU ns per operation of the core rows, the "
                         "median of REPS interleaved runs (noisy on a shared machine)")
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args(argv)
    do_core = args.core or not args.net
    do_net = args.net or not args.core
    workloads = (args.only.split(",") if args.only else
                 [w for w, d in REGISTRY.items() if d["group"] == "core"])
    import pyloop
    print(f"Python {sys.version.split()[0]}, libuv {pyloop.libuv_version()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="pyloop-nohooks-") as copy:
        removed = build_without_hooks(copy)
        print(f"no-hooks build: {removed} hook tests compiled out of {', '.join(HOOK_FILES)}",
              flush=True)
        roots = {v: ROOT for v in VARIANTS}
        roots["no hooks"] = copy
        out = {"python": sys.version.split()[0], "libuv": pyloop.libuv_version(),
               "hooks_removed": removed}
        if args.cpu:
            out["cpu"] = cpu(roots, workloads, args.scale, args.cpu)
            table(out["cpu"], f"core rows: CPU ns per operation (median of {args.cpu}, "
                  "interleaved)")
        elif do_core:
            out["core"] = core(roots, workloads, args.scale, args.jobs)
            table(out["core"], "core rows: instructions per operation (callgrind)")
        if do_net and not args.cpu:
            out["net"] = net(roots, args.conns)
            table(out["net"], "network rows: instructions of the loop's thread per request "
                  "(callgrind)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
