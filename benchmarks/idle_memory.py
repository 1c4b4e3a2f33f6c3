#!/usr/bin/env python3
"""Server memory per idle TCP connection, per loop.

    python benchmarks/idle_memory.py [--conns 5000] [--reps 3] [--loops asyncio,uvloop,pyloop]
                                     [--before DIR]

Each loop serves in its own process (a Protocol that keeps its transport and
does nothing else: an idle keep-alive connection); this process opens
--conns plain blocking client sockets to it, so only the server's side of
each connection is counted there. Figures: the growth of the server's VmRSS
(KiB per connection) from before the clients connected to after all of them
were accepted (tracemalloc off), and in a separate run the growth of what
tracemalloc sees (Python's allocators: objects, and the C allocations a loop
makes through PyMem; libuv's own mallocs are not seen). The loops take turns,
--reps rounds. Memory, not time: the machine's load barely moves it.
--before DIR adds "pyloop-before", the pyloop of another checkout built in
place (the code before a change), to the loops."""
import argparse
import os
import socket
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from loops import BEFORE_LOOP, use_before  # noqa: E402  (this script's folder)

SERVER = r"""
import asyncio, gc, sys, tracemalloc
sys.path.insert(0, sys.argv[1])
from loops import new_loop
conns, traced = int(sys.argv[3]), sys.argv[4] == "traced"


def rss_kib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])


class Idle(asyncio.Protocol):
    kept = []

    def connection_made(self, transport):
        Idle.kept.append(transport)


async def main():
    loop = asyncio.get_running_loop()
    srv = await loop.create_server(Idle, "127.0.0.1", 0, backlog=1024)
    print(srv.sockets[0].getsockname()[1], flush=True)
    # one connection first: what every later one shares (caches, types)
    while len(Idle.kept) < 1:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.1)
    gc.collect()
    before = tracemalloc.get_traced_memory()[0] if traced else rss_kib()
    print("ready", flush=True)
    while len(Idle.kept) < conns + 1:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.2)
    gc.collect()
    after = tracemalloc.get_traced_memory()[0] / 1024 if traced else rss_kib()
    print((after - (before / 1024 if traced else before)) / conns, flush=True)
    sys.stdin.readline()  # until the clients are gone
    srv.close()


if traced:
    tracemalloc.start()
loop = new_loop(sys.argv[2])
loop.run_until_complete(main())
loop.close()
"""


def one_run(loop_name, conns, mode):
    proc = subprocess.Popen([sys.executable, "-c", SERVER, HERE, loop_name, str(conns), mode],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    socks = []
    try:
        port = int(proc.stdout.readline())
        socks.append(socket.create_connection(("127.0.0.1", port)))
        if proc.stdout.readline().strip() != "ready":
            raise RuntimeError(f"{loop_name} server failed")
        for _ in range(conns):
            socks.append(socket.create_connection(("127.0.0.1", port)))
        return float(proc.stdout.readline())
    finally:
        for s in socks:
            s.close()
        proc.stdin.close()
        proc.wait(timeout=60)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--conns", type=int, default=5000)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--loops", default="asyncio,uvloop,pyloop")
    ap.add_argument("--before", metavar="DIR",
                    help="a pyloop checkout built in place, measured too as " + BEFORE_LOOP)
    args = ap.parse_args()
    names = args.loops.split(",")
    if args.before:
        use_before(args.before)
        names.append(BEFORE_LOOP)
    results = {name: [] for name in names}
    for _ in range(args.reps):
        for name in names:
            try:
                results[name].append((one_run(name, args.conns, "rss"),
                                      one_run(name, args.conns, "traced")))
            except (RuntimeError, ValueError, OSError) as exc:
                print(f"{name}: failed ({exc})")
    print(f"Python {sys.version.split()[0]}, {args.conns} idle connections, "
          f"KiB per connection (median of {args.reps}):")
    for name, runs in results.items():
        if runs:
            rss = sorted(r for r, _ in runs)[len(runs) // 2]
            traced = sorted(t for _, t in runs)[len(runs) // 2]
            print(f"  {name:14s} RSS {rss:6.2f}   tracemalloc {traced:6.2f}   "
                  f"(RSS runs: {', '.join(f'{r:.2f}' for r, _ in runs)})")


if __name__ == "__main__":
    main()
