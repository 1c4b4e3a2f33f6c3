"""aiohttp's server and client together on one loop (pyloop and the stdlib
loop), over real TCP sockets on 127.0.0.1."""
import asyncio
import json

import aiohttp
import pytest
from aiohttp import web


SLOW_STARTED = web.AppKey("slow_started", asyncio.Event)


def build_app(events, static_dir=None):
    routes = web.RouteTableDef()

    @routes.get("/")
    async def index(request):
        return web.Response(text="hello")

    @routes.get("/items/{item_id:\\d+}")
    async def item(request):
        return web.json_response({"id": int(request.match_info["item_id"]),
                                  "q": request.query.get("q")})

    @routes.post("/echo-json")
    async def echo_json(request):
        body = await request.json()
        return web.json_response({"got": body, "keys": sorted(body)})

    @routes.post("/upload")
    async def upload(request):
        """Reads a streamed request body chunk by chunk."""
        total, chunks = 0, 0
        async for chunk in request.content.iter_any():
            total += len(chunk)
            chunks += 1
        return web.json_response({"bytes": total, "chunked": request.headers.get(
            "Transfer-Encoding") == "chunked"})

    @routes.get("/stream")
    async def stream(request):
        """A chunked response written piece by piece."""
        resp = web.StreamResponse()
        resp.content_type = "text/plain"
        await resp.prepare(request)
        for i in range(int(request.query["n"])):
            await resp.write(f"line {i}\n".encode())
            await asyncio.sleep(0)
        await resp.write_eof()
        return resp

    @routes.get("/peer")
    async def peer(request):
        return web.json_response({"peer": list(request.transport.get_extra_info("peername"))})

    @routes.get("/slow")
    async def slow(request):
        events.append("slow started")
        request.app[SLOW_STARTED].set()
        await asyncio.sleep(0.3)
        events.append("slow finished")
        return web.Response(text="done slowly")

    @routes.get("/ws")
    async def ws_handler(request):
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                if msg.data == "close":
                    await ws.close(code=4000, message=b"bye")
                else:
                    await ws.send_str(msg.data.upper())
            elif msg.type == aiohttp.WSMsgType.BINARY:
                await ws.send_bytes(msg.data[::-1])
        events.append("ws closed")
        return ws

    app = web.Application()
    app.add_routes(routes)
    if static_dir is not None:
        app.router.add_static("/static", static_dir)
    app[SLOW_STARTED] = asyncio.Event()

    async def on_shutdown(app):
        events.append("on_shutdown")

    async def on_cleanup(app):
        events.append("on_cleanup")

    app.on_shutdown.append(on_shutdown)
    app.on_cleanup.append(on_cleanup)
    return app


async def start(events, static_dir=None, **kw):
    runner = web.AppRunner(build_app(events, static_dir), **kw)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    return runner, f"http://127.0.0.1:{port}"


def run(loop, coro):
    return loop.run_until_complete(asyncio.wait_for(coro, 60))


def test_routing_and_json(loop):
    async def main():
        runner, base = await start([])
        try:
            async with aiohttp.ClientSession() as s:
                async with s.get(base + "/") as r:
                    index = (r.status, await r.text())
                async with s.get(base + "/items/42", params={"q": "x y"}) as r:
                    item = (r.status, r.content_type, await r.json())
                async with s.get(base + "/items/abc") as r:
                    not_found = r.status
                async with s.put(base + "/echo-json", json={}) as r:
                    wrong_method = r.status
                payload = {"b": [1, 2, {"c": None}], "a": "żółw"}
                async with s.post(base + "/echo-json", json=payload) as r:
                    echoed = await r.json()
                async with s.post(base + "/echo-json", data=b"{not json",
                                  headers={"Content-Type": "application/json"}) as r:
                    bad_json = r.status
            return index, item, not_found, wrong_method, echoed, payload, bad_json
        finally:
            await runner.cleanup()

    index, item, not_found, wrong_method, echoed, payload, bad_json = run(loop, main())
    assert index == (200, "hello")
    assert item == (200, "application/json", {"id": 42, "q": "x y"})
    assert not_found == 404
    assert wrong_method == 405
    assert echoed == {"got": payload, "keys": ["a", "b"]}
    assert bad_json == 500  # request.json() raised inside the handler


def test_streaming_bodies(loop):
    """A chunked upload from an async generator, read with iter_any() on the
    server; a chunked response of many small writes, read line by line."""
    piece = b"x" * 65536

    async def body():
        for _ in range(64):  # 4 MiB in all
            yield piece
            await asyncio.sleep(0)

    async def main():
        runner, base = await start([])
        try:
            async with aiohttp.ClientSession() as s:
                async with s.post(base + "/upload", data=body()) as r:
                    uploaded = await r.json()
                async with s.get(base + "/stream", params={"n": "2000"}) as r:
                    chunked = r.headers.get("Transfer-Encoding")
                    lines = [line async for line in r.content]
            return uploaded, chunked, lines
        finally:
            await runner.cleanup()

    uploaded, chunked, lines = run(loop, main())
    assert uploaded == {"bytes": 64 * 65536, "chunked": True}
    assert chunked == "chunked"
    assert lines == [f"line {i}\n".encode() for i in range(2000)]


def test_websocket(loop):
    async def main():
        events = []
        runner, base = await start(events)
        try:
            async with aiohttp.ClientSession() as s:
                async with s.ws_connect(base + "/ws") as ws:
                    await ws.send_str("hello")
                    text = await ws.receive_str()
                    await ws.send_bytes(b"\x01\x02\x03")
                    data = await ws.receive_bytes()
                    big = "a" * 200_000  # several frames' worth of reads
                    await ws.send_str(big)
                    big_back = await ws.receive_str()
                    await ws.send_str("close")
                    closing = await ws.receive()
                    return text, data, len(big_back), closing.type, ws.close_code, events
        finally:
            await runner.cleanup()

    text, data, big_len, closing_type, code, events = run(loop, main())
    assert text == "HELLO"
    assert data == b"\x03\x02\x01"
    assert big_len == 200_000
    assert closing_type == aiohttp.WSMsgType.CLOSE
    assert code == 4000
    assert "ws closed" in events


def test_client_pool_reuses_connections(loop):
    """Sequential requests through one session travel on one keep-alive
    connection (the server sees one client port); concurrent ones beyond the
    connector's limit wait for a pooled connection instead of opening more."""
    async def main():
        runner, base = await start([])
        try:
            connector = aiohttp.TCPConnector(limit=2)
            async with aiohttp.ClientSession(connector=connector) as s:
                async def peer():
                    async with s.get(base + "/peer") as r:
                        return tuple((await r.json())["peer"])

                sequential = [await peer() for _ in range(5)]
                concurrent = await asyncio.gather(*(peer() for _ in range(20)))
            return sequential, concurrent
        finally:
            await runner.cleanup()

    sequential, concurrent = run(loop, main())
    assert len(set(sequential)) == 1
    assert len(set(concurrent)) <= 2
    assert sequential[0] in concurrent  # the pooled connection served some of them


def test_graceful_shutdown(loop):
    """runner.cleanup() while a request is in flight: the server stops
    accepting, lets the running handler finish and answer, then runs the
    shutdown and cleanup hooks."""
    async def main():
        events = []
        runner, base = await start(events, shutdown_timeout=10)
        app = runner.app
        async with aiohttp.ClientSession() as s:
            async def slow():
                async with s.get(base + "/slow") as r:
                    return r.status, await r.text()

            request = asyncio.ensure_future(slow())
            await app[SLOW_STARTED].wait()
            cleanup = asyncio.ensure_future(runner.cleanup())
            status_text = await request
            await cleanup
            events.append("cleanup returned")
            async with aiohttp.ClientSession() as fresh:
                with pytest.raises(aiohttp.ClientConnectionError):
                    async with fresh.get(base + "/") as r:
                        await r.read()
        return status_text, events

    status_text, events = run(loop, main())
    assert status_text == (200, "done slowly")
    assert events.index("slow started") < events.index("slow finished") < events.index(
        "cleanup returned")
    assert events.index("on_shutdown") < events.index("on_cleanup") < events.index(
        "cleanup returned")


def test_large_json_body(loop):
    """A JSON document of a few hundred KiB each way arrives whole."""
    doc = {"rows": [{"i": i, "s": str(i) * 3, "f": i / 7} for i in range(5000)]}

    async def main():
        runner, base = await start([])
        try:
            async with aiohttp.ClientSession() as s:
                async with s.post(base + "/echo-json", json=doc) as r:
                    return await r.read()
        finally:
            await runner.cleanup()

    raw = run(loop, main())
    assert json.loads(raw)["got"] == doc


def test_websocket_heartbeat_keeps_idle_connection(loop):
    """Client pings every 50 ms while nothing else is sent for 300 ms; the
    server (reading, so it answers pings) keeps the connection, and it still
    carries messages afterwards."""
    async def main():
        runner, base = await start([])
        try:
            async with aiohttp.ClientSession() as s:
                async with s.ws_connect(base + "/ws", heartbeat=0.05) as ws:
                    await asyncio.sleep(0.3)
                    await ws.send_str("still there?")
                    return await ws.receive_str(), ws.closed
        finally:
            await runner.cleanup()

    assert run(loop, main()) == ("STILL THERE?", False)


def test_static_files_sendfile_and_ranges(loop, tmp_path):
    """add_static serves files through loop.sendfile: whole, a Range, and a
    conditional GET."""
    data = bytes(range(256)) * 12000  # about 3 MB
    (tmp_path / "blob.bin").write_bytes(data)

    async def main():
        runner, base = await start([], static_dir=tmp_path)
        try:
            async with aiohttp.ClientSession() as s:
                async with s.get(base + "/static/blob.bin") as r:
                    whole = (r.status, await r.read(), r.headers["Last-Modified"])
                async with s.get(base + "/static/blob.bin",
                                 headers={"Range": "bytes=1000-1999"}) as r:
                    part = (r.status, await r.read(), r.headers["Content-Range"])
                async with s.get(base + "/static/blob.bin",
                                 headers={"If-Modified-Since": whole[2]}) as r:
                    cached = r.status
                async with s.get(base + "/static/missing.bin") as r:
                    missing = r.status
            return whole, part, cached, missing
        finally:
            await runner.cleanup()

    whole, part, cached, missing = run(loop, main())
    assert whole[:2] == (200, data)
    assert part == (206, data[1000:2000], f"bytes 1000-1999/{len(data)}")
    assert cached == 304
    assert missing == 404


def test_client_timeout(loop):
    """A total timeout shorter than the handler raises TimeoutError on the
    client; the session goes on working."""
    async def main():
        runner, base = await start([])
        try:
            async with aiohttp.ClientSession() as s:
                with pytest.raises(asyncio.TimeoutError):
                    async with s.get(base + "/slow", timeout=aiohttp.ClientTimeout(total=0.1)):
                        pass
                async with s.get(base + "/") as r:
                    return await r.text()
        finally:
            await runner.cleanup()

    assert run(loop, main()) == "hello"
