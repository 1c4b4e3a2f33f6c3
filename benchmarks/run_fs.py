"""File-I/O benchmark: pyloop.fs against aiofiles and against
run_in_executor(None, os.pread, ...), on the stdlib loop and on uvloop, in one
interleaved run (every repetition runs every implementation once, in turn).

    python benchmarks/run_fs.py [--reps 5] [--scale 1.0] [--json PATH]
    python benchmarks/run_fs.py --callgrind    # instructions per 4 KiB read instead

Rows: 4 KiB reads from a cached file (one task; 64 concurrent tasks), stat,
1 MiB sequential reads, writing then reading 1,000 small files (pyloop.fs
with write_bytes/read_bytes, and again through open()). pyloop.fs runs twice:
as it is (cached reads answered on the loop thread) and as "pyloop.fs(pool)"
(PYLOOP_FS_NOWAIT=0, every read a thread-pool request). For each row
and implementation: the median throughput and the CPU time per operation
(process CPU, every thread included: the thread pools' work counts), then
pyloop.fs's ratios to aiofiles on each loop. The "executor" rows call
os.pread/os.stat (and, for the small files, one function writing or reading
a whole file) through the loop's default executor: the least a thread-pool
hop costs.
"""
import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import aiofiles  # noqa: E402
import aiofiles.os  # noqa: E402

import pyloop.fs  # noqa: E402
from loops import LoopMissing, new_loop  # noqa: E402

KIB = 1024
MIB = 1024 * KIB

# (implementation, loop) pairs, in the order each repetition runs them.
IMPLS = [("pyloop.fs", "pyloop"), ("pyloop.fs(pool)", "pyloop"), ("aiofiles", "asyncio"),
         ("aiofiles", "uvloop"), ("executor", "asyncio"), ("executor", "uvloop")]
# "pyloop.fs(pool)" is pyloop.fs with PYLOOP_FS_NOWAIT=0: every read a
# thread-pool request, as the issue asked (the page-cache fast path off).
POOL_ONLY = "pyloop.fs(pool)"


# ---- workloads: each returns the number of operations it did ----------------------

async def read4k(impl, path, n, tasks):
    per_task = max(n // tasks, 1)
    size = os.path.getsize(path)

    async def one_pyloop():
        async with pyloop.fs.open(path, "rb") as f:
            for _ in range(per_task):
                if not await f.read(4 * KIB):
                    await f.seek(0)
                    await f.read(4 * KIB)

    async def one_aiofiles():
        async with aiofiles.open(path, "rb") as f:
            for _ in range(per_task):
                if not await f.read(4 * KIB):
                    await f.seek(0)
                    await f.read(4 * KIB)

    async def one_executor(fd):
        loop = asyncio.get_running_loop()
        off = 0
        for _ in range(per_task):
            await loop.run_in_executor(None, os.pread, fd, 4 * KIB, off)
            off = (off + 4 * KIB) % size

    if impl == "executor":
        fd = os.open(path, os.O_RDONLY)
        try:
            await asyncio.gather(*(one_executor(fd) for _ in range(tasks)))
        finally:
            os.close(fd)
    else:
        one = one_pyloop if impl == "pyloop.fs" else one_aiofiles
        await asyncio.gather(*(one() for _ in range(tasks)))
    return per_task * tasks


async def stat(impl, path, n, tasks=8):
    per_task = n // tasks
    loop = asyncio.get_running_loop()

    async def one():
        for _ in range(per_task):
            if impl == "pyloop.fs":
                await pyloop.fs.stat(path)
            elif impl == "aiofiles":
                await aiofiles.os.stat(path)
            else:
                await loop.run_in_executor(None, os.stat, path)

    await asyncio.gather(*(one() for _ in range(tasks)))
    return per_task * tasks


async def seq1m(impl, path, n):
    """n MiB read in 1 MiB reads (the file is read again from the start
    when it ends); one operation is one MiB."""
    done = 0
    if impl == "executor":
        loop = asyncio.get_running_loop()
        fd = os.open(path, os.O_RDONLY)
        size = os.path.getsize(path)
        try:
            off = 0
            while done < n:
                await loop.run_in_executor(None, os.pread, fd, MIB, off)
                off = (off + MIB) % size
                done += 1
        finally:
            os.close(fd)
        return done
    opener = pyloop.fs.open if impl == "pyloop.fs" else aiofiles.open
    async with opener(path, "rb") as f:
        while done < n:
            if not await f.read(MIB):
                await f.seek(0)
                continue
            done += 1
    return done


def _write_file(p, data):
    with open(p, "wb") as f:
        f.write(data)


def _read_file(p):
    with open(p, "rb") as f:
        return f.read()


async def small_files(impl, directory, n, tasks=16, whole=True):
    """Write n files of 200 bytes, then read them back (16 tasks at a time);
    one operation is one file written and read. pyloop.fs uses its
    whole-file helpers (write_bytes/read_bytes: one thread-pool job each)
    when `whole`, else open()/write()/read()/close() as aiofiles does;
    aiofiles has no whole-file helper and always opens."""
    data = b"x" * 200
    loop = asyncio.get_running_loop()
    names = [os.path.join(directory, f"small-{i}") for i in range(n)]

    async def write(p):
        if impl == "executor":
            await loop.run_in_executor(None, _write_file, p, data)
        elif impl == "pyloop.fs" and whole:
            await pyloop.fs.write_bytes(p, data)
        elif impl == "pyloop.fs":
            async with pyloop.fs.open(p, "wb") as f:
                await f.write(data)
        else:
            async with aiofiles.open(p, "wb") as f:
                await f.write(data)

    async def read(p):
        if impl == "executor":
            got = await loop.run_in_executor(None, _read_file, p)
        elif impl == "pyloop.fs" and whole:
            got = await pyloop.fs.read_bytes(p)
        elif impl == "pyloop.fs":
            async with pyloop.fs.open(p, "rb") as f:
                got = await f.read()
        else:
            async with aiofiles.open(p, "rb") as f:
                got = await f.read()
        assert got == data

    async def worker(step, k):
        for p in names[k::tasks]:
            await step(p)

    await asyncio.gather(*(worker(write, k) for k in range(tasks)))
    await asyncio.gather(*(worker(read, k) for k in range(tasks)))
    for p in names:
        os.unlink(p)
    return n


ROWS = [
    # name, unit, function, base n
    ("read 4 KiB, 1 task", "ops/s", lambda impl, env, n: read4k(impl, env["cached"], n, 1), 20000),
    ("read 4 KiB, 64 tasks", "ops/s", lambda impl, env, n: read4k(impl, env["cached"], n, 64),
     40000),
    ("stat", "ops/s", lambda impl, env, n: stat(impl, env["cached"], n), 20000),
    ("read 1 MiB sequential", "MiB/s", lambda impl, env, n: seq1m(impl, env["big"], n), 256),
    ("write+read 1,000 small files", "files/s",
     lambda impl, env, n: small_files(impl, env["dir"], n), 1000),
    ("small files through open()", "files/s",
     lambda impl, env, n: small_files(impl, env["dir"], n, whole=False), 1000),
]


def run_one(impl, loop_name, fn, env, n):
    # the variable is read when a file is opened: set for this run only
    os.environ["PYLOOP_FS_NOWAIT"] = "0" if impl == POOL_ONLY else "1"
    if impl == POOL_ONLY:
        impl = "pyloop.fs"
    loop = new_loop(loop_name)
    try:
        cpu0, t0 = time.process_time(), time.perf_counter()
        ops = loop.run_until_complete(fn(impl, env, n))
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        loop.run_until_complete(loop.shutdown_default_executor())
    finally:
        loop.close()
    return ops, wall, cpu


def _callgrind_total(impl, loop_name, path, n):
    """Instructions (every thread) of a process doing n 4 KiB reads, one task."""
    with tempfile.TemporaryDirectory(prefix="pyloop-fscg-") as tmp:
        out = os.path.join(tmp, "cg.out")
        subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                        sys.executable, os.path.abspath(__file__), "--one-read4k", impl,
                        loop_name, path, str(n)], check=True, capture_output=True)
        with open(out) as f:
            m = re.search(r"^(?:summary|totals):\s+(\d+)", f.read(), re.M)
    if m is None:
        raise RuntimeError("no totals in callgrind output")
    return int(m.group(1))


def callgrind_read4k(impls, n_hi=3000, n_lo=1000):
    """Instructions per cached 4 KiB read (one task): the difference of two
    runs, so interpreter start-up and imports cancel out."""
    with tempfile.TemporaryDirectory(prefix="pyloop-fsbench-") as d:
        path = os.path.join(d, "cached")
        with open(path, "wb") as f:
            f.write(os.urandom(MIB))
        _read_file(path)
        print(f"instructions per 4 KiB read from a cached file, one task (valgrind "
              f"--tool=callgrind, every thread; Python {sys.version.split()[0]}, libuv "
              f"{pyloop.libuv_version()})")
        for impl, loop_name in impls:
            hi = _callgrind_total(impl, loop_name, path, n_hi)
            lo = _callgrind_total(impl, loop_name, path, n_lo)
            print(f"  {impl}@{loop_name}: {(hi - lo) / (n_hi - n_lo):,.0f}")


def main(argv=None):
    if argv is None and sys.argv[1:2] == ["--one-read4k"]:
        impl, loop_name, path, n = sys.argv[2:6]  # callgrind_read4k's child
        fn = lambda impl, env, n: read4k(impl, path, n, 1)  # noqa: E731
        run_one(impl, loop_name, fn, {}, int(n))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--scale", type=float, default=1.0, help="multiply every size")
    ap.add_argument("--json", help="write the raw results here")
    ap.add_argument("--callgrind", action="store_true",
                    help="count instructions per 4 KiB read (valgrind) instead")
    args = ap.parse_args(argv)

    impls = []
    for impl, loop_name in IMPLS:
        try:
            new_loop(loop_name).close()
            impls.append((impl, loop_name))
        except LoopMissing as exc:
            print(f"{impl} on {loop_name}: missing ({exc})")
    if args.callgrind:
        callgrind_read4k(impls)
        return 0

    with tempfile.TemporaryDirectory(prefix="pyloop-fsbench-") as d:
        env = {"dir": d, "cached": os.path.join(d, "cached"), "big": os.path.join(d, "big")}
        with open(env["cached"], "wb") as f:
            f.write(os.urandom(MIB))
        with open(env["big"], "wb") as f:
            f.write(os.urandom(32 * MIB))
        for p in (env["cached"], env["big"]):
            _read_file(p)  # into the page cache
        results = {}
        for name, unit, fn, base in ROWS:
            n = max(int(base * args.scale), 2)
            for rep in range(args.reps):
                for impl, loop_name in impls:
                    ops, wall, cpu = run_one(impl, loop_name, fn, env, n)
                    results.setdefault(name, {}).setdefault(f"{impl}@{loop_name}", []).append(
                        {"ops": ops, "seconds": wall, "cpu": cpu})

    keys = [f"{i}@{lp}" for i, lp in impls]
    print(f"libuv {pyloop.libuv_version()}, Python {sys.version.split()[0]}, "
          f"UV_USE_IO_URING={os.environ.get('UV_USE_IO_URING', '(unset)')}, "
          f"UV_THREADPOOL_SIZE={os.environ.get('UV_THREADPOOL_SIZE', '(default 4)')}, "
          f"reps={args.reps}, scale={args.scale}")
    print()
    mine = [k for k in ("pyloop.fs@pyloop", f"{POOL_ONLY}@pyloop") if k in keys]
    pairs = [(m, o) for m in mine for o in ("aiofiles@asyncio", "aiofiles@uvloop")]
    head = "| row | " + " | ".join(keys) + " | " + \
        " | ".join(f"{m.split('@')[0]} / {o}" for m, o in pairs) + " |"
    print(head)
    print("|" + " --- |" * (len(keys) + len(pairs) + 1))
    summary = {}
    for name, unit, _fn, _base in ROWS:
        cells, rate, cpu_op = [], {}, {}
        for k in keys:
            runs = results[name][k]
            rate[k] = statistics.median(r["ops"] / r["seconds"] for r in runs)
            cpu_op[k] = statistics.median(r["cpu"] / r["ops"] for r in runs)
            cpu_txt = (f"{cpu_op[k] * 1e3:.2f} ms" if cpu_op[k] >= 1e-3
                       else f"{cpu_op[k] * 1e6:.1f} µs")
            cells.append(f"{rate[k]:,.0f} {unit}, CPU {cpu_txt}/op")
        ratios = []
        for m, other in pairs:
            if other in rate:
                r = rate[m] / rate[other]
                c = cpu_op[m] / cpu_op[other]
                ratios.append(f"{r:.2f}x speed, {c:.2f}x CPU")
            else:
                ratios.append("n/a")
        summary[name] = {"rate": rate, "cpu_per_op": cpu_op}
        print(f"| {name} | " + " | ".join(cells) + " | " + " | ".join(ratios) + " |")
    print()
    print("Targets: small operations (4 KiB reads, stat, small files) >= 3x aiofiles, "
          "1 MiB sequential >= 1x, lower CPU per operation in every row.")
    for name, s in summary.items():
        target = 1.0 if "sequential" in name else 3.0
        checks = []
        for m, other in pairs:
            if other in s["rate"]:
                ok = (s["rate"][m] >= target * s["rate"][other] and
                      s["cpu_per_op"][m] < s["cpu_per_op"][other])
                checks.append(f"{m.split('@')[0]} vs {other}: {'met' if ok else 'NOT met'}")
        print(f"  {name}: " + ", ".join(checks))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"results": results, "summary": summary}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
