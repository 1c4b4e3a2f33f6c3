"""An aiohttp application on pyloop that serves its loop's figures at /metrics
(Prometheus text format) and the live view's socket.

    python examples/monitoring/aiohttp_metrics.py
        starts the server on a free port, asks /slow and /metrics once, prints
        what it saw of the figures and stops
    python examples/monitoring/aiohttp_metrics.py --serve [--port 8080] [--socket PATH]
        serves until Ctrl-C; then: curl localhost:8080/metrics
        and, with --socket: python -m pyloop monitor PATH
"""
import argparse
import asyncio
import os
import sys
import time

sys.path.insert(1, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import pyloop  # noqa: E402
import pyloop.monitor  # noqa: E402
from aiohttp import ClientSession, web  # noqa: E402


async def hello(request):
    return web.Response(text="Hello, World!")


async def slow(request):
    time.sleep(0.15)  # a blocking call in a handler: what the monitor is for
    return web.Response(text="done, slowly")


async def metrics(request):
    return web.Response(text=pyloop.monitor.prometheus(),
                        content_type="text/plain", charset="utf-8",
                        headers={"X-Prometheus-Format": "0.0.4"})


def make_app():
    app = web.Application()
    app.add_routes([web.get("/", hello), web.get("/slow", slow), web.get("/metrics", metrics)])
    return app


async def main(args):
    loop = asyncio.get_running_loop()
    pyloop.monitor.enable(loop, tasks=True, name="aiohttp")
    live = pyloop.monitor.serve(args.socket) if args.socket else None
    runner = web.AppRunner(make_app())
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", args.port).start()
    port = runner.addresses[0][1]
    try:
        if args.serve:
            print(f"serving on http://127.0.0.1:{port}/ (/metrics, /slow)", flush=True)
            await asyncio.Event().wait()
        async with ClientSession(f"http://127.0.0.1:{port}") as http:
            async with http.get("/slow") as resp:
                print("GET /slow ->", resp.status)
            async with http.get("/metrics") as resp:
                text = await resp.text()
        print("GET /metrics ->", resp.status, resp.content_type)
        for line in text.splitlines():
            if line.startswith(("pyloop_slow_callbacks_total", "pyloop_utilization")):
                name, value = line.rsplit(" ", 1)
                print(f"  {name} {'> 0' if float(value) > 0 else '0'}")
        # The handler's step (and, on a cold start, the imports of the first one).
        print("slow callbacks recorded:", len(pyloop.monitor.slow_callbacks(loop)) >= 1)
    finally:
        await runner.cleanup()
        if live is not None:
            live.close()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--serve", action="store_true")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--socket", help="also serve the live view on this Unix socket")
    args = ap.parse_args()
    try:
        pyloop.run(main(args))
    except KeyboardInterrupt:
        pass
