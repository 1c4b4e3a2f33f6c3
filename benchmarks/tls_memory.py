#!/usr/bin/env python3
"""Resident memory per open TLS connection, per loop.

    python benchmarks/tls_memory.py [--conns 500] [--loops asyncio,uvloop,pyloop]

Each loop runs in its own process: a TLS server (asyncio.start_server with
ssl=) and --conns TLS clients (asyncio.open_connection) connected to it, so
every connection has both of its ends in the process. The figure is the
growth of VmRSS from before the connections were opened to after all of them
completed their handshakes, per connection (both ends). Memory, not time:
one run is enough, and the machine's load does not change it much."""
import argparse
import asyncio
import os
import resource
import ssl
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from loops import LOOPS, new_loop  # noqa: E402


def rss_kib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


async def measure(conns, cert, key):
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_ctx.load_verify_locations(cert)
    accepted = []

    async def handle(reader, writer):
        accepted.append(writer)

    srv = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_ctx)
    port = srv.sockets[0].getsockname()[1]
    # one connection first: what every later one shares (contexts, caches)
    _, w = await asyncio.open_connection("127.0.0.1", port, ssl=client_ctx,
                                         server_hostname="localhost")
    w.close()
    await w.wait_closed()
    await asyncio.sleep(0.2)
    before = rss_kib()
    clients = [await asyncio.open_connection("127.0.0.1", port, ssl=client_ctx,
                                             server_hostname="localhost")
               for _ in range(conns)]
    while len(accepted) < conns + 1:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.2)
    after = rss_kib()
    for _, w in clients:
        w.close()
    for w in accepted:
        w.close()
    srv.close()
    return (after - before) / conns


def child(loop_name, conns, cert, key):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 4 * conns + 64)), hard))
    loop = new_loop(loop_name)
    try:
        print(f"{loop.run_until_complete(measure(conns, cert, key)):.1f}")
    finally:
        loop.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--conns", type=int, default=500)
    ap.add_argument("--loops", default=",".join(LOOPS))
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--cert", help=argparse.SUPPRESS)
    ap.add_argument("--key", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.conns, args.cert, args.key)
        return
    with tempfile.TemporaryDirectory() as tmp:
        cert, key = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1", "-subj",
                        "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
                        "-keyout", key, "-out", cert], check=True, capture_output=True)
        print(f"resident memory per TLS connection (both ends in one process), {args.conns} "
              "connections")
        for name in args.loops.split(","):
            out = subprocess.run([sys.executable, __file__, "--child", name, "--conns",
                                  str(args.conns), "--cert", cert, "--key", key],
                                 capture_output=True, text=True)
            if out.returncode != 0:
                last = (out.stderr.strip().splitlines() or ["failed"])[-1]
                print(f"  {name:8} -  ({last})")
                continue
            print(f"  {name:8} {float(out.stdout.strip()):8.1f} KiB")


if __name__ == "__main__":
    main()
