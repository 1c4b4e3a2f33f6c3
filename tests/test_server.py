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


async def _until(predicate):
    for _ in range(2000):
        if predicate():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition not reached")


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

    async def main():
        srv = await loop.create_server(Keep, "127.0.0.1", 0)
        addr = srv.sockets[0].getsockname()
        socks = [socket.create_connection(addr, timeout=10) for _ in range(3)]
        try:
            await _until(lambda: len(made) == 3)
            assert _clients(srv) == 3
            made[0].close()
            await _until(lambda: len(lost) == 1)
            assert _clients(srv) == 2
            waiter = asyncio.ensure_future(srv.wait_closed())
            await asyncio.sleep(0)  # waiting before the server closes
            srv.close()
            for _ in range(20):
                await asyncio.sleep(0)
            assert not waiter.done()  # two connections still open
            made[1].close()
            await _until(lambda: len(lost) == 2)
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
    (pyloop counts them in its own set from C): close_clients() and
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


class _Keep(asyncio.Protocol):
    def __init__(self, made, lost):
        self.made, self.lost = made, lost

    def connection_made(self, transport):
        self.made.append(transport)

    def connection_lost(self, exc):
        self.lost.append(exc)


CLIENTS_SERVERS = ["tcp", "unix", "tls", "debug"]


@pytest.mark.skipif(sys.version_info < (3, 13), reason="Server._clients is 3.13+")
@pytest.mark.parametrize("kind", CLIENTS_SERVERS)
def test_clients_seen_as_a_set(loop, kind, tls_certs):
    """3.13+: a server's _clients holds each open connection once, whether
    its transport was made by pyloop's C accept path (plain TCP, Unix) or the
    stdlib's (TLS, debug mode): len, iteration, membership and copy() agree
    with the connections made, a connection leaves once its connection_lost
    ran, and close_clients() after close() ends the rest and wakes
    wait_closed()."""
    made, lost = [], []
    loop.set_debug(kind == "debug")
    tmp = tempfile.mkdtemp()

    async def main():
        if kind == "unix":
            srv = await loop.create_unix_server(lambda: _Keep(made, lost),
                                                os.path.join(tmp, "sock"))
            path = srv.sockets[0].getsockname()

            def connect():
                s = socket.socket(socket.AF_UNIX)
                s.connect(path)
                return s
        else:
            ssl_ctx = tls_certs.server_context() if kind == "tls" else None
            srv = await loop.create_server(lambda: _Keep(made, lost), "127.0.0.1", 0, ssl=ssl_ctx)
            addr = srv.sockets[0].getsockname()

            def connect():
                return socket.create_connection(addr, timeout=10)
        if kind == "tls":
            # the handshake is the server's before connection_made: clients
            # made with asyncio's own streams, on this loop
            opened = [await asyncio.open_connection(
                *addr, ssl=tls_certs.client_context(), server_hostname="localhost")
                for _ in range(3)]
            peers = [w for _, w in opened]
        else:
            peers = [connect() for _ in range(3)]
        try:
            await _until(lambda: len(made) == 3)
            clients = srv._clients
            assert len(clients) == 3
            if kind == "tls":  # the raw transports are what the server holds
                raw = [t._ssl_protocol._transport for t in made]
            else:
                raw = list(made)
            assert set(clients) == set(raw) and set(clients.copy()) == set(raw)
            assert all(t in clients for t in raw)
            if kind == "tls":
                assert made[0] not in clients
            made[0].close()
            await _until(lambda: len(lost) == 1)
            assert len(clients) == 2 and raw[0] not in clients
            assert set(clients) == set(raw[1:])
            srv.close()
            srv.close_clients()
            await asyncio.wait_for(srv.wait_closed(), 10)
            assert len(lost) == 3 and len(clients) == 0 and list(clients) == []
        finally:
            for p in peers:
                p.close()

    _run(loop, main())


@pytest.mark.skipif(sys.version_info < (3, 13), reason="Server._clients is 3.13+")
def test_clients_attached_and_detached_by_other_code(loop):
    """What other code adds with Server._attach and takes off with _detach
    (any weakly referenceable object) counts as a connection, as in the
    stdlib's set: wait_closed() returns once the last of them and of the
    real connections left a closed server, and a connection taken off by
    hand is not counted twice."""
    made, lost = [], []

    class Other:
        pass

    async def main():
        srv = await loop.create_server(lambda: _Keep(made, lost), "127.0.0.1", 0)
        addr = srv.sockets[0].getsockname()
        sock = socket.create_connection(addr, timeout=10)
        try:
            await _until(lambda: len(made) == 1)
            other = Other()
            srv._attach(other)
            srv._attach(made[0])  # already held: once
            assert len(srv._clients) == 2 and other in srv._clients
            assert set(srv._clients) == {other, made[0]}
            srv._detach(made[0])  # by hand: it leaves now
            assert len(srv._clients) == 1 and made[0] not in srv._clients
            srv._clients.discard(made[0])  # no-op the second time
            assert list(srv._clients) == [other]
            waiter = asyncio.ensure_future(srv.wait_closed())
            srv.close()
            made[0].close()
            await _until(lambda: len(lost) == 1)
            for _ in range(5):
                await asyncio.sleep(0)
            assert not waiter.done()  # `other` is still attached
            srv._detach(other)
            await asyncio.wait_for(waiter, 10)
            assert len(srv._clients) == 0
        finally:
            sock.close()

    _run(loop, main())


@pytest.mark.skipif(sys.version_info < (3, 13), reason="Server._clients is 3.13+")
def test_clients_after_the_loop_closed(loop_factory):
    """Connections still open when their loop is closed: the server's set
    can still be read (its length that of what it lists) and
    close_clients()/abort_clients() raise nothing but the closed loop's
    RuntimeError."""
    lp = loop_factory()
    made, lost = [], []
    srv = lp.run_until_complete(lp.create_server(lambda: _Keep(made, lost), "127.0.0.1", 0))
    addr = srv.sockets[0].getsockname()
    sock = socket.create_connection(addr, timeout=10)
    try:
        lp.run_until_complete(_until(lambda: len(made) == 1))
        assert len(srv._clients) == 1
        lp.close()
        assert len(srv._clients) == len(list(srv._clients))
        assert set(srv._clients) <= set(made)
        srv.close()
        try:
            srv.close_clients()
            srv.abort_clients()
        except RuntimeError as exc:  # the stdlib's transport asks its closed loop
            assert "closed" in str(exc)
    finally:
        sock.close()
