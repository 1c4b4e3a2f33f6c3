"""An async web server: one small JSON API written twice, as an aiohttp.web
application and as a FastAPI application served by uvicorn, both on the
chosen loop.

    python examples/web_server.py [--loop asyncio]
        starts each server on 127.0.0.1 (a free port), makes a few requests
        against it with an aiohttp client, prints the answers and stops
    python examples/web_server.py --serve aiohttp|fastapi [--port 8080]
        serves until Ctrl-C / SIGTERM (try: curl localhost:8080/items)

The API:  GET /items[?tag=T]   list      POST /items {"name", "tags"}   create (201)
          GET /items/{id}      one item  (404 when there is none, 422 on a bad body)
"""
import asyncio
import contextlib
import signal
import typing

import _loop
from aiohttp import ClientSession, web


class Store:
    """The items both applications serve, in memory."""

    def __init__(self):
        self.items, self.next_id = {}, 1

    def create(self, name, tags):
        item = {"id": self.next_id, "name": name, "tags": list(tags)}
        self.items[item["id"]] = item
        self.next_id += 1
        return item

    def list(self, tag=None):
        return [i for i in self.items.values() if tag is None or tag in i["tags"]]


class Running(typing.NamedTuple):
    port: int
    stop: typing.Callable[[], None]  # ask the server to stop
    task: asyncio.Task               # ends when the server has stopped


# -- aiohttp.web ------------------------------------------------------------

STORE = web.AppKey("store", Store)


def make_aiohttp_app():
    routes = web.RouteTableDef()

    @routes.get("/items")
    async def list_items(request):
        return web.json_response(request.app[STORE].list(request.query.get("tag")))

    @routes.post("/items")
    async def create_item(request):
        try:
            body = await request.json()
            name, tags = body["name"], body.get("tags", [])
            if not isinstance(name, str) or not isinstance(tags, list):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            return web.json_response({"detail": "expected {\"name\": str, \"tags\": [str]}"},
                                     status=422)
        return web.json_response(request.app[STORE].create(name, tags), status=201)

    @routes.get("/items/{item_id:\\d+}")
    async def get_item(request):
        item = request.app[STORE].items.get(int(request.match_info["item_id"]))
        if item is None:
            raise web.HTTPNotFound(text='{"detail": "Item not found"}',
                                   content_type="application/json")
        return web.json_response(item)

    app = web.Application()
    app[STORE] = Store()
    app.add_routes(routes)
    return app


async def start_aiohttp(port):
    runner = web.AppRunner(make_aiohttp_app())
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()

    stopping = asyncio.Event()

    async def serve_until_stopped():
        await stopping.wait()
        await runner.cleanup()
    # aiohttp's server needs no task of its own; this one ends when stop() is called.
    return Running(runner.addresses[0][1], stopping.set, asyncio.create_task(serve_until_stopped()))


# -- FastAPI on uvicorn ------------------------------------------------------

def make_fastapi_app():
    from fastapi import FastAPI, HTTPException
    from pydantic import BaseModel

    class NewItem(BaseModel):
        name: str
        tags: list[str] = []

    app = FastAPI()
    store = Store()

    @app.get("/items")
    async def list_items(tag: str | None = None):
        return store.list(tag)

    @app.post("/items", status_code=201)
    async def create_item(item: NewItem):
        return store.create(item.name, item.tags)

    @app.get("/items/{item_id}")
    async def get_item(item_id: int):
        if item_id not in store.items:
            raise HTTPException(status_code=404, detail="Item not found")
        return store.items[item_id]

    return app


def _embedded_server_class():
    import uvicorn

    class EmbeddedServer(uvicorn.Server):
        # uvicorn.Server takes over SIGINT/SIGTERM while it serves, and raises
        # the signal again once it has stopped. Here the program decides what a
        # signal does (serve() below stops either server the same way), so the
        # server leaves signals alone.
        @contextlib.contextmanager
        def capture_signals(self):
            yield
    return EmbeddedServer


async def start_fastapi(port):
    import uvicorn

    EmbeddedServer = _embedded_server_class()

    # loop="none": uvicorn runs on the loop it is given, ours, instead of making one.
    config = uvicorn.Config(make_fastapi_app(), host="127.0.0.1", port=port,
                            loop="none", log_level="warning")
    server = EmbeddedServer(config)
    serving = asyncio.create_task(server.serve())
    while not server.started:
        if serving.done():
            serving.result()  # it failed to start: raise why
            raise RuntimeError("uvicorn stopped before it started")
        await asyncio.sleep(0.01)

    def stop():
        server.should_exit = True
    return Running(server.servers[0].sockets[0].getsockname()[1], stop, serving)


SERVERS = {"aiohttp": start_aiohttp, "fastapi": start_fastapi}


# -- a client for the demonstration -------------------------------------------

async def exercise(base):
    async with ClientSession(base) as http:
        async def call(method, path, **kw):
            async with http.request(method, path, **kw) as resp:
                body = await resp.json()
                # Error bodies are each framework's own wording; the status is the API.
                shown = body if resp.status < 400 else "(error detail)"
                print(f"  {method} {path} -> {resp.status} {shown}")
                return body

        await call("GET", "/items")
        await call("POST", "/items", json={"name": "pen", "tags": ["office"]})
        await call("POST", "/items", json={"name": "cup", "tags": ["kitchen", "office"]})
        await call("POST", "/items", json={"tags": ["no name"]})
        await call("GET", "/items")
        await call("GET", "/items?tag=kitchen")
        await call("GET", "/items/2")
        status = []
        for path in ("/items/99", "/items/abc"):
            async with http.get(path) as resp:
                status.append(resp.status)
        print(f"  GET /items/99, /items/abc -> {status}")


async def demo():
    for name, start in SERVERS.items():
        server = await start(0)
        print(f"{name} server: started")
        try:
            await exercise(f"http://127.0.0.1:{server.port}")
        finally:
            server.stop()
            await server.task
        print(f"{name} server: stopped")


async def serve(name, port):
    server = await SERVERS[name](port)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, server.stop)
    print(f"serving {name} on http://127.0.0.1:{server.port} "
          f"(loop: {_loop.running_loop_name()})", flush=True)
    await server.task
    print("stopped", flush=True)


if __name__ == "__main__":
    ap = _loop.parser(__doc__.splitlines()[0])
    ap.add_argument("--serve", choices=sorted(SERVERS), help="serve until interrupted")
    ap.add_argument("--port", type=int, default=8080, help="port for --serve (0: any free one)")
    args = ap.parse_args()
    if args.serve:
        with asyncio.Runner(loop_factory=_loop.factory(args)) as runner:
            runner.run(serve(args.serve, args.port))
    else:
        _loop.run(demo, args)
