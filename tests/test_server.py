"""Server objects (and transports) used wrongly or after close, on each loop:
the calls raise what the stdlib loop raises, or nothing where it raises
nothing, and never crash."""
import asyncio
import os
import socket
import sys
import tempfile

import pytest


def _run(loop, coro, timeout=30):
    return loop.run_until_complete(asyncio.wait_for(coro, timeout))


def _assert_refused(addr):
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(addr, timeout=10).close()


def test_close_twice_then_wait_closed(loop):
    async def main():
        srv = await loop.create_server(asyncio.Protocol, "127.0.0.1", 0)
        addr = srv.sockets[0].getsockname()
        srv.close()
        srv.close()
        assert not srv.is_serving()
        assert srv.sockets == ()
        assert srv.get_loop() is loop
        await srv.wait_closed()
        await srv.wait_closed()
        return addr

    _assert_refused(_run(loop, main()))


def test_calls_on_a_closed_server(loop):
    async def main():
        srv = await loop.create_server(asyncio.Protocol, "127.0.0.1", 0)
        addr = srv.sockets[0].getsockname()
        srv.close()
        await srv.wait_closed()
        with pytest.raises(RuntimeError, match="is closed"):
            await srv.serve_forever()
        # The stdlib's Server iterates its sockets, which close() dropped.
        with pytest.raises(TypeError):
            await srv.start_serving()
        async with srv as same:
            assert same is srv
        assert srv.sockets == ()
        return addr

    _assert_refused(_run(loop, main()))


def test_serve_forever_twice_then_close(loop):
    async def main():
        srv = await loop.create_server(asyncio.Protocol, "127.0.0.1", 0,
                                       start_serving=False)
        addr = srv.sockets[0].getsockname()
        forever = asyncio.ensure_future(srv.serve_forever())
        await asyncio.sleep(0)  # the task now awaits inside serve_forever
        assert srv.is_serving()
        with pytest.raises(RuntimeError, match="already being awaited"):
            await srv.serve_forever()
        srv.close()
        with pytest.raises(asyncio.CancelledError):
            await forever
        assert not srv.is_serving()
        return addr

    _assert_refused(_run(loop, main()))


def test_server_outlives_its_loop(loop_factory):
    lp = loop_factory()
    serving = lp.run_until_complete(lp.create_server(asyncio.Protocol, "127.0.0.1", 0))
    idle = lp.run_until_complete(lp.create_server(asyncio.Protocol, "127.0.0.1", 0,
                                                  start_serving=False))
    addr = serving.sockets[0].getsockname()
    lp.close()
    serving.close()  # stops serving on a closed loop: no error
    assert serving.sockets == ()
    _assert_refused(addr)
    coro = idle.start_serving()
    with pytest.raises(RuntimeError, match="is closed"):
        coro.send(None)
    idle.close()


@pytest.fixture
def odd_sockets():
    with socket.socket(type=socket.SOCK_DGRAM) as udp, socket.socket() as tcp:
        tcp.bind(("127.0.0.1", 0))
        yield {"udp": udp, "tcp": tcp}


WRONG_SERVER_CALLS = {
    "sock_is_udp": (ValueError, lambda lp, s: lp.create_server(asyncio.Protocol,
                                                                sock=s["udp"])),
    "host_and_sock": (ValueError, lambda lp, s: lp.create_server(
        asyncio.Protocol, "127.0.0.1", 0, sock=s["tcp"])),
    "handshake_timeout_without_ssl": (ValueError, lambda lp, s: lp.create_server(
        asyncio.Protocol, "127.0.0.1", 0, ssl_handshake_timeout=1)),
    "host_is_int": (TypeError, lambda lp, s: lp.create_server(asyncio.Protocol, 1, 0)),
    "unix_path_is_float": (TypeError, lambda lp, s: lp.create_unix_server(asyncio.Protocol,
                                                                          1.5)),
    "unix_without_path": (ValueError, lambda lp, s: lp.create_unix_server(asyncio.Protocol)),
    "unix_sock_is_tcp": (ValueError, lambda lp, s: lp.create_unix_server(asyncio.Protocol,
                                                                         sock=s["tcp"])),
}


@pytest.mark.parametrize("name", sorted(WRONG_SERVER_CALLS))
def test_create_server_wrong_arguments(loop, odd_sockets, name):
    exc_type, call = WRONG_SERVER_CALLS[name]
    with pytest.raises(exc_type):
        _run(loop, call(loop, odd_sockets))


def test_unix_server_closed_twice(loop):
    async def main():
        path = os.path.join(tempfile.mkdtemp(), "sock")
        srv = await loop.create_unix_server(asyncio.Protocol, path)
        srv.close()
        srv.close()
        await srv.wait_closed()
        with pytest.raises(RuntimeError, match="is closed"):
            await srv.serve_forever()
        return path

    path = _run(loop, main())
    with socket.socket(socket.AF_UNIX) as s, pytest.raises(OSError):
        s.connect(path)  # refused, or gone if the server unlinked it


def test_transport_calls_after_close(loop, write_type_error):
    async def main():
        srv = await loop.create_server(asyncio.Protocol, "127.0.0.1", 0)
        async with srv:
            lost = loop.create_future()

            class P(asyncio.Protocol):
                def connection_lost(self, exc):
                    lost.set_result(exc)

            addr = srv.sockets[0].getsockname()
            t, _ = await loop.create_connection(P, *addr)
            t.close()
            assert await lost is None
            with pytest.raises(TypeError, match=write_type_error):
                t.write("text")
            if sys.version_info >= (3, 14):
                # 3.14 drops writelines() to a lost connection unread.
                t.writelines(["text"])
            else:
                with pytest.raises(TypeError):
                    t.writelines(["text"])
            with pytest.raises(ValueError):
                t.set_write_buffer_limits(high=1, low=2)
            # Dropped or ignored on a closed transport, as in the stdlib.
            # (Not writelines(): the stdlib's fails on a closed transport
            # from 3.12 on, calling a _write_ready it has dropped.)
            t.write(b"dropped")
            t.write_eof()
            t.pause_reading()
            t.resume_reading()
            t.close()
            t.abort()
            assert t.is_closing()
            assert not t.is_reading()
            assert t.get_write_buffer_size() == 0
            assert t.get_extra_info("peername") == addr
            with pytest.raises(TypeError):
                t.get_extra_info()

    _run(loop, main())


def _clients(server):
    # what the stdlib's Server counts its connections in
    return server._active_count if sys.version_info < (3, 13) else len(server._clients)


def test_wait_closed_waits_for_the_last_connection(loop):
    """The server counts its connections as they come and go (pyloop does
    it in C for 3.11/3.12's Server), and a wait_closed() that was waiting
    when the server closed returns once the last connection is lost."""
    made, lost = [], []

    class Keep(asyncio.Protocol):
        def connection_made(self, transport):
            made.append(transport)

        def connection_lost(self, exc):
            lost.append(exc)

    async def until(predicate):
        for _ in range(2000):
            if predicate():
                return
            await asyncio.sleep(0.005)
        raise AssertionError("condition not reached")

    async def main():
        srv = await loop.create_server(Keep, "127.0.0.1", 0)
        addr = srv.sockets[0].getsockname()
        socks = [socket.create_connection(addr, timeout=10) for _ in range(3)]
        try:
            await until(lambda: len(made) == 3)
            assert _clients(srv) == 3
            made[0].close()
            await until(lambda: len(lost) == 1)
            assert _clients(srv) == 2
            waiter = asyncio.ensure_future(srv.wait_closed())
            await asyncio.sleep(0)  # waiting before the server closes
            srv.close()
            for _ in range(20):
                await asyncio.sleep(0)
            assert not waiter.done()  # two connections still open
            made[1].close()
            await until(lambda: len(lost) == 2)
            assert _clients(srv) == 1 and not waiter.done()
            made[2].close()
            await asyncio.wait_for(waiter, 10)
            assert _clients(srv) == 0 and lost == [None, None, None]
        finally:
            for s in socks:
                s.close()

    _run(loop, main())


@pytest.mark.skipif(sys.version_info < (3, 13), reason="close_clients/abort_clients are 3.13+")
@pytest.mark.parametrize("how", ["close_clients", "abort_clients"])
def test_close_or_abort_clients(loop, how):
    """3.13+: the server reaches every open connection through its clients
    (pyloop adds them to the server's WeakSet from C): close_clients() and
    abort_clients() end them all, and each one's connection_lost runs."""
    made, lost = [], []

    class Keep(asyncio.Protocol):
        def connection_made(self, transport):
            made.append(transport)
            transport.write(b"x" * 10)

        def connection_lost(self, exc):
            lost.append(exc)

    async def main():
        srv = await loop.create_server(Keep, "127.0.0.1", 0)
        addr = srv.sockets[0].getsockname()
        socks = [socket.create_connection(addr, timeout=10) for _ in range(4)]
        try:
            for _ in range(2000):
                if len(made) == 4:
                    break
                await asyncio.sleep(0.005)
            assert set(srv._clients) == set(made)
            srv.close()
            getattr(srv, how)()
            await asyncio.wait_for(srv.wait_closed(), 10)
            assert len(lost) == 4 and all(t.is_closing() for t in made)
            assert len(srv._clients) == 0
            for s in socks:  # each peer sees its connection end
                data = b""
                while chunk := s.recv(100):
                    data += chunk
                assert data in (b"", b"x" * 10)
        except ConnectionResetError:
            assert how == "abort_clients"
        finally:
            for s in socks:
                s.close()

    _run(loop, main())
