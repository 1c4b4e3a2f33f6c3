"""The real-application benchmark processes that run_apps.py starts, one loop
each:

    python benchmarks/apps.py aiohttp LOOP PORT
        an aiohttp hello world (GET / -> "Hello, World!"), web.run_app on LOOP
    python -m uvicorn apps:fastapi_app --app-dir benchmarks --loop ... --port PORT
        a FastAPI JSON endpoint (GET / -> {"message": "Hello, World!"}); this
        module only defines the app
    (both also answer GET /loop with the running loop's module, which the
    runner checks before measuring)
    python benchmarks/apps.py asyncpg LOOP DSN SECONDS CONNS
        CONNS connections each running `SELECT $1::int` round trips one after
        another for SECONDS; prints one JSON line: queries, seconds, cpu
        (user+sys of this process during the run)
"""
import asyncio
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from loops import new_loop  # noqa: E402

HELLO = "Hello, World!"

try:
    from fastapi import FastAPI
except ImportError:  # only the uvicorn row needs it
    fastapi_app = None
else:
    fastapi_app = FastAPI()

    @fastapi_app.get("/")
    async def hello_json():
        return {"message": HELLO}

    @fastapi_app.get("/loop")
    async def loop_module():
        return {"loop": type(asyncio.get_running_loop()).__module__}


def serve_aiohttp(loop_name, port):
    from aiohttp import web

    async def hello(request):
        return web.Response(text=HELLO)

    async def loop_module(request):
        return web.json_response({"loop": type(asyncio.get_running_loop()).__module__})

    app = web.Application()
    app.router.add_get("/", hello)
    app.router.add_get("/loop", loop_module)
    # run_app closes the loop itself; SIGTERM/SIGINT end it gracefully.
    web.run_app(app, host="127.0.0.1", port=port, loop=new_loop(loop_name),
                access_log=None, print=None, shutdown_timeout=1, backlog=1024)


async def pg_round_trips(dsn, seconds, conns):
    import asyncpg
    connections = [await asyncpg.connect(dsn) for _ in range(conns)]
    try:
        for c in connections:  # prepare the statement on every connection first
            await c.fetchval("SELECT $1::int", 0)
        stop = time.perf_counter() + seconds
        counts = [0] * conns

        async def client(i, conn):
            n = 0
            while time.perf_counter() < stop:
                assert await conn.fetchval("SELECT $1::int", n) == n
                n += 1
            counts[i] = n

        t0, cpu0 = time.perf_counter(), time.process_time()
        await asyncio.gather(*(client(i, c) for i, c in enumerate(connections)))
        t1, cpu1 = time.perf_counter(), time.process_time()
        return {"queries": sum(counts), "seconds": t1 - t0, "cpu": cpu1 - cpu0}
    finally:
        for c in connections:
            await c.close()


def main():
    what, loop_name = sys.argv[1:3]
    if what == "aiohttp":
        serve_aiohttp(loop_name, int(sys.argv[3]))
    elif what == "asyncpg":
        dsn, seconds, conns = sys.argv[3], float(sys.argv[4]), int(sys.argv[5])
        loop = new_loop(loop_name)
        try:
            result = loop.run_until_complete(pg_round_trips(dsn, seconds, conns))
        finally:
            loop.close()
        print(json.dumps({"loop": loop_name, **result}), flush=True)
    else:
        raise SystemExit(f"unknown benchmark process {what!r}")


if __name__ == "__main__":
    main()
