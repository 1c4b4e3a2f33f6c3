"""httpx.AsyncClient against a local aiohttp server on the same loop
(pyloop and the stdlib loop), over real TCP sockets."""
import asyncio

import httpx
import pytest
from aiohttp import web


async def start_server():
    async def hello(request):
        return web.Response(text=f"hello {request.query.get('name', 'world')}")

    async def echo(request):
        body = await request.json()
        return web.json_response({"method": request.method, "body": body,
                                  "agent": request.headers["User-Agent"].split("/")[0]})

    async def big(request):
        resp = web.StreamResponse()
        await resp.prepare(request)
        for i in range(256):
            await resp.write(bytes([i]) * 4096)
        await resp.write_eof()
        return resp

    async def peer(request):
        return web.Response(text=str(request.transport.get_extra_info("peername")[1]))

    async def slow(request):
        await asyncio.sleep(5)
        return web.Response(text="late")

    async def redirect(request):
        raise web.HTTPFound("/hello?name=redirected")

    app = web.Application()
    app.router.add_get("/hello", hello)
    app.router.add_route("*", "/echo", echo)
    app.router.add_get("/big", big)
    app.router.add_get("/peer", peer)
    app.router.add_get("/slow", slow)
    app.router.add_get("/redirect", redirect)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"


def run(loop, coro):
    return loop.run_until_complete(asyncio.wait_for(coro, 60))


def test_requests_json_redirects(loop):
    async def main():
        runner, base = await start_server()
        try:
            async with httpx.AsyncClient(base_url=base) as client:
                hello = await client.get("/hello", params={"name": "pyloop"})
                posted = await client.post("/echo", json={"x": [1, 2]})
                patched = await client.patch("/echo", json=[None])
                redirected = await client.get("/redirect", follow_redirects=True)
                missing = await client.get("/nope")
            return (hello.status_code, hello.text, posted.json(), patched.json(),
                    redirected.text, [r.status_code for r in redirected.history],
                    missing.status_code)
        finally:
            await runner.cleanup()

    hello_status, hello, posted, patched, redirected, history, missing = run(loop, main())
    assert (hello_status, hello) == (200, "hello pyloop")
    assert posted == {"method": "POST", "body": {"x": [1, 2]}, "agent": "python-httpx"}
    assert patched == {"method": "PATCH", "body": [None], "agent": "python-httpx"}
    assert redirected == "hello redirected" and history == [302]
    assert missing == 404


def test_streamed_download(loop):
    async def main():
        runner, base = await start_server()
        try:
            async with httpx.AsyncClient() as client:
                async with client.stream("GET", base + "/big") as resp:
                    data = bytearray()
                    async for chunk in resp.aiter_bytes():
                        data += chunk
            return bytes(data)
        finally:
            await runner.cleanup()

    data = run(loop, main())
    assert data == b"".join(bytes([i]) * 4096 for i in range(256))


def test_connection_reuse_and_concurrency(loop):
    async def main():
        runner, base = await start_server()
        try:
            limits = httpx.Limits(max_connections=3, max_keepalive_connections=3)
            async with httpx.AsyncClient(base_url=base, limits=limits) as client:
                sequential = [(await client.get("/peer")).text for _ in range(5)]
                concurrent = await asyncio.gather(*(client.get("/peer") for _ in range(30)))
            return sequential, [r.text for r in concurrent]
        finally:
            await runner.cleanup()

    sequential, concurrent = run(loop, main())
    assert len(set(sequential)) == 1
    assert 1 <= len(set(concurrent)) <= 3


def test_timeout(loop):
    """A read timeout shorter than the handler's sleep raises ReadTimeout; the
    client is still usable for the next request."""
    async def main():
        runner, base = await start_server()
        try:
            async with httpx.AsyncClient(base_url=base) as client:
                with pytest.raises(httpx.ReadTimeout):
                    await client.get("/slow", timeout=httpx.Timeout(5.0, read=0.2))
                after = await client.get("/hello")
            return after.text
        finally:
            await runner.cleanup()

    assert run(loop, main()) == "hello world"
