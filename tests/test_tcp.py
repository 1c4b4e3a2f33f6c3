"""create_connection / create_server / Unix variants / streams on each loop."""
import asyncio
import os
import socket
import sys
import tempfile

import pytest


async def _echo(reader, writer):
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.close()


@pytest.mark.parametrize("size", [1, 10 * 1024, 2 * 1024 * 1024])
def test_streams_echo_tcp(loop, size):
    async def main():
        srv = await asyncio.start_server(_echo, "127.0.0.1", 0)
        async with srv:
            port = srv.sockets[0].getsockname()[1]
            r, w = await asyncio.open_connection("127.0.0.1", port)
            payload = os.urandom(size)
            w.write(payload)
            await w.drain()
            w.write_eof()
            got = await r.read()
            w.close()
            await w.wait_closed()
            return got == payload

    assert loop.run_until_complete(asyncio.wait_for(main(), 60))


def test_streams_echo_unix(loop):
    async def main():
        path = os.path.join(tempfile.mkdtemp(), "sock")
        srv = await asyncio.start_unix_server(_echo, path)
        async with srv:
            r, w = await asyncio.open_unix_connection(path)
            w.write(b"over unix")
            w.write_eof()
            got = await r.read()
            w.close()
            await w.wait_closed()
            return got

    assert loop.run_until_complete(asyncio.wait_for(main(), 30)) == b"over unix"


def test_create_connection_protocol_and_extra_info(loop):
    class Client(asyncio.Protocol):
        def __init__(self):
            self.done = loop.create_future()
            self.data = b""

        def connection_made(self, t):
            self.t = t
            t.write(b"hi")

        def data_received(self, data):
            self.data += data
            self.t.close()

        def connection_lost(self, exc):
            self.done.set_result(self.data)

    async def main():
        srv = await asyncio.start_server(_echo, "127.0.0.1", 0)
        async with srv:
            addr = srv.sockets[0].getsockname()
            t, p = await loop.create_connection(Client, *addr)
            assert isinstance(t, asyncio.Transport)
            assert t.get_extra_info("peername") == addr
            assert isinstance(t.get_extra_info("socket"), asyncio.trsock.TransportSocket)
            return await p.done

    assert loop.run_until_complete(asyncio.wait_for(main(), 30)) == b"hi"


def test_connection_refused(loop):
    async def main():
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection("127.0.0.1", port)

    loop.run_until_complete(main())


def test_create_connection_with_sock(loop):
    async def main():
        srv = await asyncio.start_server(_echo, "127.0.0.1", 0)
        async with srv:
            s = socket.create_connection(srv.sockets[0].getsockname())
            r, w = await asyncio.open_connection(sock=s)
            w.write(b"sock=")
            w.write_eof()
            got = await r.read()
            w.close()
            await w.wait_closed()
            return got

    assert loop.run_until_complete(asyncio.wait_for(main(), 30)) == b"sock="


def test_server_close_and_wait_closed(loop):
    async def main():
        srv = await asyncio.start_server(_echo, "127.0.0.1", 0)
        assert srv.is_serving()
        assert srv.get_loop() is loop
        srv.close()
        await srv.wait_closed()
        assert not srv.is_serving()
        return True

    assert loop.run_until_complete(main())


def test_serve_forever_cancelled(loop):
    async def main():
        srv = await asyncio.start_server(_echo, "127.0.0.1", 0, start_serving=False)
        assert not srv.is_serving()
        task = asyncio.ensure_future(srv.serve_forever())
        await asyncio.sleep(0.01)
        assert srv.is_serving()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not srv.is_serving()

    loop.run_until_complete(main())


@pytest.mark.skipif(sys.version_info < (3, 13), reason="Server.close_clients is new in 3.13")
def test_close_clients(loop):
    async def main():
        closed = loop.create_future()

        async def handler(r, w):
            await r.read()
            closed.set_result(True)

        srv = await asyncio.start_server(handler, "127.0.0.1", 0)
        r, w = await asyncio.open_connection(*srv.sockets[0].getsockname())
        await asyncio.sleep(0.01)
        srv.close()
        srv.close_clients()
        await srv.wait_closed()
        w.close()
        return await closed

    assert loop.run_until_complete(asyncio.wait_for(main(), 30))


def test_many_connections(loop):
    async def main():
        srv = await asyncio.start_server(_echo, "127.0.0.1", 0, backlog=512)
        async with srv:
            addr = srv.sockets[0].getsockname()

            async def one(i):
                r, w = await asyncio.open_connection(*addr)
                msg = str(i).encode() * 10
                w.write(msg)
                w.write_eof()
                got = await r.read()
                w.close()
                await w.wait_closed()
                return got == msg

            results = await asyncio.gather(*(one(i) for i in range(200)))
            return all(results)

    assert loop.run_until_complete(asyncio.wait_for(main(), 60))
