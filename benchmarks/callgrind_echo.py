#!/usr/bin/env python3
"""Instructions per echo round trip on pyloop, counted by callgrind: a
Protocol (or BufferedProtocol) echo server and a client, both on one pyloop
loop in one process, over TCP or a Unix socket. Run twice (N and 2N round
trips) and subtracted, so start-up and teardown cancel; the figure is the
whole loop's cost of one round trip (client write, server read + write,
client read: two transport reads and two writes).

    python benchmarks/callgrind_echo.py [--tree TREE ...] [--n 4000] [--size 1024]
                                        [--kind protocol|buffered] [--unix] [--monitor]
                                        [--watchdog]

With several --tree (checkouts with pyloop/_core built in place, e.g. the
code before a change: `git worktree add /tmp/before REV` and build it), each
is measured the same way, in turn, for an A/B of a change. Instruction counts
do not depend on the machine's load, which wall-clock figures on a shared
2-core machine do.

--monitor measures each tree with pyloop.monitor off and on (enable(), its
slow-callback threshold at 60 s: loops.py says why), and gives the loop
thread's figure beside the whole process's. Monitoring starts no thread
(its tick is the kernel's coarse clock: the two figures then agree); --watchdog turns the
stack-sampling watchdog on too (enable(watchdog=True)), whose thread, as the
ticker thread of other CPUs, wakes by wall-clock time, a few hundred times
more often per round trip under callgrind than natively."""
import argparse
import os
import re
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from loops import CALLGRIND_MONITOR_SLOW  # noqa: E402

CHILD = r"""
import asyncio, os, socket, sys, tempfile
sys.path.insert(0, sys.argv[1])
import pyloop  # the tree's, before benchmarks/ (this checkout's) goes on the path
sys.path.insert(1, sys.argv[6])
from net_server import EchoBuffered, EchoProtocol
n, size, kind, unix = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5] == "1"
monitored = sys.argv[7] == "1"
watchdog = sys.argv[9] == "1"


class Client(asyncio.Protocol):
    def __init__(self, loop, n, msg):
        self.left, self.msg, self.got = n, msg, 0
        self.done = loop.create_future()

    def connection_made(self, t):
        self.t = t
        if self.left:
            t.write(self.msg)
        else:
            self.done.set_result(None)

    def data_received(self, data):
        self.got += len(data)
        if self.got < len(self.msg):
            return
        self.got = 0
        self.left -= 1
        if self.left:
            self.t.write(self.msg)
        else:
            self.done.set_result(None)


async def main(loop):
    factory = EchoBuffered if kind == "buffered" else EchoProtocol
    if unix:
        path = os.path.join(tempfile.mkdtemp(), "s")
        server = await loop.create_unix_server(factory, path)
        t, c = await loop.create_unix_connection(lambda: Client(loop, n, b"x" * size), path)
    else:
        server = await loop.create_server(factory, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        t, c = await loop.create_connection(lambda: Client(loop, n, b"x" * size), "127.0.0.1", port)
    await c.done
    t.close()
    server.close()
    await server.wait_closed()


loop = pyloop.new_event_loop()
if monitored:
    import pyloop.monitor
    # no watchdog argument unless asked: a tree from before it still runs
    pyloop.monitor.enable(loop, slow_callback_duration=float(sys.argv[8]),
                          **({"watchdog": True} if watchdog else {}))
loop.run_until_complete(main(loop))
loop.close()
"""


def thread_instructions(folder):
    """{thread: instructions} of a `valgrind --tool=callgrind --separate-threads=yes
    --callgrind-out-file=FOLDER/cg.out` run (its dumps cg.out-01, cg.out-02 ...)."""
    per_thread = {}
    for name in os.listdir(folder):
        t = re.fullmatch(r"cg\.out-(\d+)", name)
        if t is None:
            continue
        with open(os.path.join(folder, name)) as f:
            for line in f:
                m = re.match(r"(?:summary|totals):\s+(\d+)", line)
                if m:
                    per_thread[int(t.group(1))] = int(m.group(1))
                    break
    return per_thread


def instructions(tree, n, size, kind, unix, monitored=False, watchdog=False):
    """(the loop thread's instructions, every thread's)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "cg.out")
        script = os.path.join(tmp, "child.py")
        with open(script, "w") as f:
            f.write(CHILD)
        subprocess.run(["valgrind", "--tool=callgrind", "--separate-threads=yes",
                        f"--callgrind-out-file={out}",
                        sys.executable, script, tree, str(n), str(size), kind,
                        "1" if unix else "0", HERE, "1" if monitored else "0",
                        CALLGRIND_MONITOR_SLOW, "1" if watchdog else "0"], check=True,
                       capture_output=True)
        per_thread = thread_instructions(tmp)
    if 1 not in per_thread:
        raise RuntimeError("no callgrind summary")
    return per_thread[1], sum(per_thread.values())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tree", action="append",
                    help="a checkout with pyloop built in place (default: this one)")
    ap.add_argument("--n", type=int, default=4000)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--kind", default="protocol", choices=["protocol", "buffered"])
    ap.add_argument("--unix", action="store_true")
    ap.add_argument("--monitor", action="store_true",
                    help="each tree with pyloop.monitor off and on")
    ap.add_argument("--watchdog", action="store_true",
                    help="with --monitor: the watchdog on too (enable(watchdog=True))")
    args = ap.parse_args()
    trees = args.tree or [os.path.dirname(HERE)]
    print(f"Python {sys.version.split()[0]}, {args.kind} echo, {args.size} B, "
          f"{'Unix' if args.unix else 'TCP'}: instructions per round trip")
    for tree in trees:
        per = {}
        for monitored in ((False, True) if args.monitor else (False,)):
            dog = monitored and args.watchdog
            a = instructions(tree, args.n, args.size, args.kind, args.unix, monitored, dog)
            b = instructions(tree, 2 * args.n, args.size, args.kind, args.unix, monitored, dog)
            per[monitored] = [(b[i] - a[i]) / args.n for i in (0, 1)]
        if not args.monitor:
            print(f"{tree}: {per[False][1]:,.0f}")
            continue
        (off1, off), (on1, on) = per[False], per[True]
        print(f"{tree}: loop thread off {off1:,.0f}, on {on1:,.0f} ({(on1 / off1 - 1) * 100:+.2f}%);"
              f" all threads off {off:,.0f}, on {on:,.0f} ({(on / off - 1) * 100:+.2f}%)")


if __name__ == "__main__":
    main()
