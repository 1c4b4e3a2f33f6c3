"""A FastAPI application on uvicorn and pyloop that serves its loop's figures
at /metrics through prometheus_client (when installed; pyloop.monitor's own
text otherwise).

    python examples/monitoring/fastapi_metrics.py
        starts the server on a free port, asks /slow and /metrics once, prints
        what it saw of the figures and stops
    python examples/monitoring/fastapi_metrics.py --serve [--port 8080]
        serves until Ctrl-C; then: curl localhost:8080/metrics
"""
import argparse
import asyncio
import contextlib
import os
import sys
import time

sys.path.insert(1, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import pyloop  # noqa: E402
import pyloop.monitor  # noqa: E402


def make_app():
    from fastapi import FastAPI
    from fastapi.responses import PlainTextResponse, Response

    app = FastAPI()
    try:
        import prometheus_client
        registry = prometheus_client.CollectorRegistry()
        registry.register(pyloop.monitor.PrometheusCollector())

        def exposition():
            return prometheus_client.generate_latest(registry)
    except ImportError:
        def exposition():
            return pyloop.monitor.prometheus().encode()

    @app.get("/")
    async def hello():
        return {"message": "Hello, World!"}

    @app.get("/slow")
    async def slow():
        time.sleep(0.15)  # a blocking call in a handler: what the monitor is for
        return {"message": "done, slowly"}

    @app.get("/metrics", response_class=PlainTextResponse)
    async def metrics():
        return Response(exposition(), media_type="text/plain; version=0.0.4")

    return app


async def main(args):
    import uvicorn

    class Server(uvicorn.Server):
        # Ctrl-C stops this program, not just the server.
        @contextlib.contextmanager
        def capture_signals(self):
            yield

    loop = asyncio.get_running_loop()
    pyloop.monitor.enable(loop, tasks=True, name="fastapi")
    # loop="none": uvicorn serves on the running loop, pyloop's.
    server = Server(uvicorn.Config(make_app(), host="127.0.0.1", port=args.port, loop="none",
                                   log_level="warning"))
    serving = asyncio.create_task(server.serve())
    while not server.started:
        if serving.done():
            serving.result()
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        if args.serve:
            print(f"serving on http://127.0.0.1:{port}/ (/metrics, /slow)", flush=True)
            await serving
            return
        import httpx
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            print("GET /slow ->", (await http.get("/slow")).status_code)
            resp = await http.get("/metrics")
        print("GET /metrics ->", resp.status_code, resp.headers["content-type"].split(";")[0])
        for line in resp.text.splitlines():
            if line.startswith(("pyloop_slow_callbacks_total", "pyloop_utilization")):
                name, value = line.rsplit(" ", 1)
                print(f"  {name} {'> 0' if float(value) > 0 else '0'}")
        # The handler's step (and, on a cold start, the imports of the first one).
        print("slow callbacks recorded:", len(pyloop.monitor.slow_callbacks(loop)) >= 1)
    finally:
        server.should_exit = True
        await serving


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--serve", action="store_true")
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args()
    try:
        pyloop.run(main(args))
    except KeyboardInterrupt:
        pass
