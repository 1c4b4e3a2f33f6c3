#!/usr/bin/env python3
"""Instructions per short-lived connection on the server side, counted by
callgrind: a server (a Protocol that answers one request and closes, as an
HTTP/1.0 or `Connection: close` server does) runs under callgrind on one
loop; a plain blocking client in another process connects, sends a request,
reads the answer to EOF and closes, N times and then 2N times; the two
totals are subtracted so start-up and teardown cancel.

    python benchmarks/callgrind_churn.py [--loop pyloop --loop uvloop ...] [--n 2000]
                                         [--tree TREE] [--profile OUT]

--tree runs pyloop from another checkout (built in place) for an A/B of a
change; --profile keeps the 2N run's callgrind file for callgrind_annotate."""
import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))

SERVER = r"""
import asyncio, sys
sys.path.insert(0, sys.argv[1])
loop_name, port_file = sys.argv[2], sys.argv[3]
if loop_name == "pyloop":
    import pyloop  # the tree's, before benchmarks/ (this checkout's) goes on the path
sys.path.insert(1, sys.argv[4])
from loops import new_loop
RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello")


class OneShot(asyncio.Protocol):
    def connection_made(self, t):
        self.t = t

    def data_received(self, data):
        if b"\r\n\r\n" in data:
            self.t.write(RESPONSE)
            self.t.close()


async def main(loop):
    server = await loop.create_server(OneShot, "127.0.0.1", 0, backlog=1024)
    with open(port_file + ".tmp", "w") as f:
        f.write(str(server.sockets[0].getsockname()[1]))
    import os
    os.rename(port_file + ".tmp", port_file)
    stop = loop.create_future()
    loop.add_signal_handler(15, stop.set_result, None)
    await stop
    server.close()


loop = new_loop(loop_name)
loop.run_until_complete(main(loop))
loop.close()
"""

REQUEST = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"


def drive(port, n):
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(REQUEST)
        while s.recv(4096):
            pass
        s.close()


def instructions(tree, loop_name, n, keep=None):
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "cg.out")
        script = os.path.join(tmp, "server.py")
        port_file = os.path.join(tmp, "port")
        with open(script, "w") as f:
            f.write(SERVER)
        proc = subprocess.Popen(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                                 sys.executable, script, tree, loop_name, port_file, HERE],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 120
            while not os.path.exists(port_file):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{loop_name} server did not start")
                time.sleep(0.1)
            with open(port_file) as f:
                port = int(f.read())
            drive(port, n)
        finally:
            proc.terminate()
            proc.wait(timeout=120)
        if keep:
            shutil.copy(out, keep)
        with open(out) as f:
            for line in f:
                m = re.match(r"(?:summary|totals): (\d+)", line)
                if m:
                    return int(m.group(1))
    raise RuntimeError("no callgrind summary")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--loop", action="append", help="pyloop, uvloop, rloop, asyncio")
    ap.add_argument("--tree", default=os.path.dirname(HERE))
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--profile")
    args = ap.parse_args()
    loops = args.loop or ["pyloop", "uvloop", "asyncio"]
    print(f"Python {sys.version.split()[0]}: server instructions per connection "
          f"(accept, one request, answer, close)")
    for name in loops:
        try:
            a = instructions(args.tree, name, args.n)
            b = instructions(args.tree, name, 2 * args.n,
                             keep=f"{args.profile}.{name}" if args.profile else None)
        except (RuntimeError, OSError) as exc:
            print(f"{name}: failed ({exc})")
            continue
        print(f"{name}: {(b - a) / args.n:,.0f}")


if __name__ == "__main__":
    main()
