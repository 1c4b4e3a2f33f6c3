"""An async HTTP client: one aiohttp ClientSession fetching many URLs
concurrently, GET and POST with JSON, errors and timeouts.

    python examples/http_client.py [--loop asyncio] [--urls 50] [--limit 10]

The example starts its own small aiohttp server on 127.0.0.1 (a free port)
to fetch from, so it needs no internet.
"""
import asyncio

import _loop
from aiohttp import ClientError, ClientSession, ClientTimeout, TCPConnector, web


# -- the local server the client talks to ------------------------------------

HITS = web.AppKey("hits", dict)


def make_server_app():
    app = web.Application()
    app[HITS] = {"items": 0}  # a mutable value: the app itself is frozen once started

    async def item(request):
        request.app[HITS]["items"] += 1
        n = int(request.match_info["n"])
        await asyncio.sleep(0.001 * (n % 5))  # answers finish out of order
        return web.json_response({"n": n, "square": n * n})

    async def echo(request):
        body = await request.json()
        return web.json_response({"received": body, "keys": sorted(body)}, status=201)

    async def slow(request):
        await asyncio.sleep(10)
        return web.json_response({})

    app.router.add_get("/items/{n:\\d+}", item)
    app.router.add_post("/echo", echo)
    app.router.add_get("/slow", slow)
    return app


async def start_server():
    # handler_cancellation: a handler whose client went away (as /slow's does
    # on its timeout) is cancelled instead of running on to its end.
    runner = web.AppRunner(make_server_app(), handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    return runner, f"http://{host}:{port}"


# -- the client -------------------------------------------------------------

async def fetch_json(session, url, limit):
    async with limit:  # at most --limit requests in flight
        async with session.get(url) as resp:
            resp.raise_for_status()
            return await resp.json()


async def client(base, args):
    # One session for all requests: it keeps a pool of connections.
    async with ClientSession(base, connector=TCPConnector(limit=args.limit)) as session:
        limit = asyncio.Semaphore(args.limit)
        urls = [f"/items/{n}" for n in range(args.urls)]
        results = await asyncio.gather(*(fetch_json(session, u, limit) for u in urls))
        # gather keeps the order of the URLs, whatever order the answers came in.
        assert [r["n"] for r in results] == list(range(args.urls))
        print(f"GET {len(urls)} URLs concurrently (at most {args.limit} at once): "
              f"sum of squares = {sum(r['square'] for r in results)}")
        print(f"  first three: {results[:3]}")

        # as_completed: handle each answer as soon as it arrives.
        seen = []
        for next_result in asyncio.as_completed([fetch_json(session, u, limit) for u in urls[:10]]):
            seen.append((await next_result)["n"])
        print(f"  as_completed handled {len(seen)} answers, each once: {sorted(seen) == list(range(10))}")

        async with session.post("/echo", json={"name": "pyloop", "tags": ["c", "libuv"]}) as resp:
            print(f"POST /echo -> {resp.status} {resp.content_type}: {await resp.json()}")

        async with session.get("/items/not-a-number") as resp:
            print(f"GET /items/not-a-number -> {resp.status}")
        try:
            await fetch_json(session, "/missing", limit)
        except ClientError as exc:
            print(f"  raise_for_status: {type(exc).__name__} {exc.status}")

        try:
            async with session.get("/slow", timeout=ClientTimeout(total=0.05)):
                pass
        except asyncio.TimeoutError:
            print("GET /slow with a 0.05 s timeout -> TimeoutError")


async def main(args):
    runner, base = await start_server()
    try:
        await client(base, args)
        # --urls for gather and 10 for as_completed: /items/not-a-number does
        # not match the route's pattern, so it never reaches the handler.
        print(f"server handled {runner.app[HITS]['items']} item requests")
    finally:
        await runner.cleanup()


if __name__ == "__main__":
    ap = _loop.parser(__doc__.splitlines()[0])
    ap.add_argument("--urls", type=int, default=50, help="how many URLs to fetch")
    ap.add_argument("--limit", type=int, default=10, help="requests in flight at once")
    args = ap.parse_args()
    _loop.run(lambda: main(args), args)
