"""create_connection / create_server / Unix variants / streams on each loop."""
import asyncio
import errno
import gc
import json
import os
import socket
import subprocess
import sys
import tempfile
import textwrap

import pytest
from test_stream import PAIRS


async def _echo(reader, writer):
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.close()


async def _say_and_hear(r, w, data):
    """Send `data` and EOF, read the answer to EOF, close."""
    w.write(data)
    await w.drain()
    w.write_eof()
    got = await r.read()
    w.close()
    await w.wait_closed()
    return got


@pytest.mark.parametrize("size", [1, 10 * 1024, 2 * 1024 * 1024])
def test_streams_echo_tcp(loop, size):
    async def main():
        srv = await asyncio.start_server(_echo, "127.0.0.1", 0)
        async with srv:
            port = srv.sockets[0].getsockname()[1]
            r, w = await asyncio.open_connection("127.0.0.1", port)
            payload = os.urandom(size)
            return await _say_and_hear(r, w, payload) == payload

    assert loop.run_until_complete(asyncio.wait_for(main(), 60))


def test_streams_echo_unix(loop):
    async def main():
        path = os.path.join(tempfile.mkdtemp(), "sock")
        srv = await asyncio.start_unix_server(_echo, path)
        async with srv:
            r, w = await asyncio.open_unix_connection(path)
            return await _say_and_hear(r, w, b"over unix")

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
            return await _say_and_hear(r, w, b"sock=")

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


# ---- faults -------------------------------------------------------------------

def _run(loop, coro, timeout=30):
    return loop.run_until_complete(asyncio.wait_for(coro, timeout))


class _Recorder(asyncio.Protocol):
    """Records what the transport reports; `lost` resolves with connection_lost's
    argument. `on_made`, `on_data` and `on_eof` hook the scenario in."""

    def __init__(self, loop, on_made=None, on_data=None, on_eof=None):
        self.events = []
        self.data = b""
        self.made = loop.create_future()
        self.got_eof = loop.create_future()
        self.lost = loop.create_future()
        self._hooks = on_made, on_data, on_eof

    def connection_made(self, t):
        self.t = t
        self.events.append("made")
        self.made.set_result(t)
        if self._hooks[0]:
            self._hooks[0](self)

    def data_received(self, data):
        if self.events[-1] != "data":
            self.events.append("data")
        self.data += data
        if self._hooks[1]:
            self._hooks[1](self)

    def eof_received(self):
        self.events.append("eof")
        self.got_eof.set_result(self.data)
        if self._hooks[2]:
            self._hooks[2](self)
        return True  # keep the write side open: a half-close

    def connection_lost(self, exc):
        self.events.append("lost")
        self.lost.set_result(exc)


class _Flood(asyncio.Protocol):
    """Writes whenever it may, so that data is always queued in the transport."""

    CHUNK = b"f" * (256 * 1024)

    def __init__(self, loop):
        self.paused = loop.create_future()
        self.lost = loop.create_future()

    def connection_made(self, t):
        self.t = t
        self.resume_writing()

    def pause_writing(self):
        if not self.paused.done():
            self.paused.set_result(self.t.get_write_buffer_size())
        self._writing = False

    def resume_writing(self):
        self._writing = True
        while self._writing and not self.t.is_closing():
            self.t.write(self.CHUNK)

    def connection_lost(self, exc):
        self.lost.set_result(exc)


FAMILIES = ["tcp", "unix"]
# Half-close payloads: large enough to be still queued when write_eof() is
# called, so the EOF must wait for them.
PING = b"ping" * (256 * 1024)
HELLO = b"hello" * (200 * 1024)
TALK = b"still talking" * (80 * 1024)


async def _start(loop, kind, factory, streams=False):
    """A server of `kind` ("tcp" or "unix") for `factory` (a protocol factory,
    or a streams client_connected_cb when `streams`); returns the server and a
    coroutine function connecting a client to it (protocol factory argument
    unless `streams`)."""
    if kind == "tcp":
        start = asyncio.start_server if streams else loop.create_server
        srv = await start(factory, "127.0.0.1", 0)
        addr = srv.sockets[0].getsockname()
        if streams:
            return srv, lambda: asyncio.open_connection(*addr)
        return srv, lambda f: loop.create_connection(f, *addr)
    path = os.path.join(tempfile.mkdtemp(), "sock")
    start = asyncio.start_unix_server if streams else loop.create_unix_server
    srv = await start(factory, path)
    if streams:
        return srv, lambda: asyncio.open_unix_connection(path)
    return srv, lambda f: loop.create_unix_connection(f, path)


# SO_LINGER on, 0 s: close() sends a reset.
LINGER_0 = b"\x01\x00\x00\x00\x00\x00\x00\x00"


@pytest.mark.parametrize("kind", FAMILIES)
def test_peer_reset_mid_write(loop, kind):
    """The peer goes away (TCP: a reset, SO_LINGER 0) while the server has data
    queued: connection_lost gets the error, the transport ends up closed."""
    async def main():
        first = loop.create_future()

        def factory():
            flood = _Flood(loop)
            if not first.done():
                first.set_result(flood)
            return flood

        srv, _ = await _start(loop, kind, factory)
        async with srv:
            lsock = srv.sockets[0]
            client = socket.socket(lsock.family)
            try:
                client.connect(lsock.getsockname())
                flood = await first
                # The peer's buffers are full and the rest is queued in the
                # transport: the writer is mid-write when the reset arrives.
                assert await flood.paused > 0
                if kind == "tcp":
                    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_0)
            finally:
                client.close()
            exc = await flood.lost
            return exc, flood.t

    exc, t = _run(loop, main())
    assert isinstance(exc, (ConnectionResetError, BrokenPipeError)), repr(exc)
    assert t.is_closing()
    assert t.get_extra_info("socket").fileno() == -1
    assert t.get_write_buffer_size() == 0
    t.write(b"after the reset")  # dropped, never raises


def test_peer_reset_right_after_data(loop):
    """Data and a reset arrive together: the data is delivered, then
    connection_lost gets the ConnectionResetError; it is no EOF."""
    async def main():
        ours, peer = PAIRS["tcp"]()
        proto = _Recorder(loop, on_eof=lambda p: p.t.close())
        await loop.create_connection(lambda: proto, sock=ours)
        with peer:
            peer.sendall(b"last words")
            peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_0)
        return proto, await proto.lost

    proto, exc = _run(loop, main())
    assert isinstance(exc, ConnectionResetError), repr(exc)
    assert proto.data == b"last words"
    assert proto.events == ["made", "data", "lost"]


def test_write_after_peer_closed(loop):
    """The peer closed (a FIN, no reset): eof_received first; then writes
    draw a reset from it and the next one fails: connection_lost gets the
    error, after the EOF (the reset must not hide the EOF)."""
    async def main():
        ours, peer = PAIRS["tcp"]()
        proto = _Recorder(loop)
        t, _ = await loop.create_connection(lambda: proto, sock=ours)
        peer.close()
        await proto.got_eof
        for _ in range(1000):  # until a write meets the peer's reset
            t.write(b"x" * 1000)
            await asyncio.sleep(0.005)
            if proto.lost.done():
                break
        return proto, await proto.lost

    proto, exc = _run(loop, main())
    assert isinstance(exc, (BrokenPipeError, ConnectionResetError)), repr(exc)
    assert proto.events == ["made", "eof", "lost"]


@pytest.mark.parametrize("kind", FAMILIES)
def test_half_close_client_write_eof_protocols(loop, kind):
    async def main():
        servers = []

        def server_factory():
            # Answers only once the client's EOF is in: writing after it.
            servers.append(_Recorder(loop, on_eof=lambda p: (p.t.write(p.data.upper()),
                                                              p.t.close())))
            return servers[-1]

        srv, connect = await _start(loop, kind, server_factory)
        async with srv:
            t, client = await connect(
                lambda: _Recorder(loop, on_eof=lambda p: p.t.close()))
            t.write(PING)
            t.write_eof()
            exc = await client.lost
            await servers[0].lost
            return servers[0], client, exc

    server, client, exc = _run(loop, main())
    assert exc is None
    assert server.data == PING
    assert server.events == ["made", "data", "eof", "lost"]
    assert client.data == PING.upper()
    assert client.events == ["made", "data", "eof", "lost"]


@pytest.mark.parametrize("kind", FAMILIES)
def test_half_close_server_write_eof_protocols(loop, kind):
    async def main():
        servers = []

        def server_factory():
            def greet(p):
                p.t.write(HELLO)
                p.t.write_eof()
            servers.append(_Recorder(loop, on_made=greet, on_eof=lambda p: p.t.close()))
            return servers[-1]

        srv, connect = await _start(loop, kind, server_factory)
        async with srv:
            t, client = await connect(lambda: _Recorder(loop))
            assert await client.got_eof == HELLO
            assert not t.is_closing()
            # The server's side is shut; ours still carries data to it.
            t.write(TALK)
            t.write_eof()
            exc = await servers[0].lost
            t.close()
            await client.lost
            return servers[0], client, exc

    server, client, exc = _run(loop, main())
    assert exc is None
    assert server.data == TALK
    assert server.events == ["made", "data", "eof", "lost"]
    assert client.events == ["made", "data", "eof", "lost"]


@pytest.mark.parametrize("kind", FAMILIES)
def test_half_close_client_write_eof_streams(loop, kind):
    async def main():
        async def handler(r, w):
            data = await r.read()  # to EOF
            assert r.at_eof()
            w.write(data.upper())
            await w.drain()
            w.close()

        srv, connect = await _start(loop, kind, handler, streams=True)
        async with srv:
            r, w = await connect()
            return await _say_and_hear(r, w, PING)

    assert _run(loop, main()) == PING.upper()


@pytest.mark.parametrize("kind", FAMILIES)
def test_half_close_server_write_eof_streams(loop, kind):
    async def main():
        heard = loop.create_future()

        async def handler(r, w):
            w.write(HELLO)
            w.write_eof()
            heard.set_result(await r.read())
            w.close()

        srv, connect = await _start(loop, kind, handler, streams=True)
        async with srv:
            r, w = await connect()
            got = await r.read()
            assert r.at_eof()
            w.write(TALK)
            await w.drain()
            w.write_eof()
            said = await heard
            assert await r.read() == b""
            w.close()
            await w.wait_closed()
            return got, said

    assert _run(loop, main()) == (HELLO, TALK)


def test_unix_connection_to_missing_path(loop):
    path = os.path.join(tempfile.mkdtemp(), "nobody-here")
    with pytest.raises(FileNotFoundError):
        _run(loop, loop.create_unix_connection(asyncio.Protocol, path))


def test_unix_connection_refused(loop):
    path = os.path.join(tempfile.mkdtemp(), "sock")
    s = socket.socket(socket.AF_UNIX)
    s.bind(path)  # the file exists, nobody listens
    try:
        with pytest.raises(ConnectionRefusedError):
            _run(loop, loop.create_unix_connection(asyncio.Protocol, path))
    finally:
        s.close()



@pytest.mark.parametrize("kind", FAMILIES)
@pytest.mark.parametrize("when", ["before_start", "awaiting_waiter"])
def test_cancel_create_connection_with_sock(loop, when, kind):
    """Cancelled before it ran, create_connection(sock=...) leaves the socket
    alone. Cancelled while it awaits the waiter, the stdlib closes the
    transport it made, which owns the socket by then: the socket is closed
    once, the peer sees EOF, and the fd number, reused afterwards, is not
    closed again by anyone."""
    async def main():
        events = []

        class P(asyncio.Protocol):
            def connection_made(self, t):
                events.append("made")

            def connection_lost(self, exc):
                events.append(("lost", exc))

        s, peer = PAIRS[kind]()  # two connected stream sockets
        fd = s.fileno()
        task = asyncio.ensure_future(loop.create_connection(P, sock=s))
        if when == "awaiting_waiter":
            await asyncio.sleep(0)  # the task now awaits the transport's waiter
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        for _ in range(5):
            await asyncio.sleep(0)
        with peer:
            peer.settimeout(10)
            if when == "before_start":
                os.fstat(fd)  # still open, still the user's
                assert s.fileno() == fd
                s.sendall(b"mine")
                assert peer.recv(10) == b"mine"
                s.close()
                return events
            assert s.fileno() == -1
            with pytest.raises(OSError):
                os.fstat(fd)
            assert peer.recv(10) == b""
            reused = os.open(os.devnull, os.O_RDONLY)
            try:
                for _ in range(5):
                    await asyncio.sleep(0)
                gc.collect()
                os.fstat(reused)
            finally:
                os.close(reused)
        return events

    events = _run(loop, main())
    if when == "before_start":
        assert events == []
    else:
        assert events == ["made", ("lost", None)]


# Runs in a child process: lowering RLIMIT_NOFILE must not touch pytest's own.
# argv: loop kind, the checkout to import pyloop from.
EMFILE_CHILD = """
    import asyncio, errno, json, os, resource, socket, sys
    sys.path.insert(0, sys.argv[2])
    import pyloop

    loop = pyloop.new_event_loop() if sys.argv[1] == "pyloop" else asyncio.new_event_loop()
    errors = []
    accept_failed = loop.create_future()

    def handler(lp, ctx):
        errors.append((ctx.get("message"), getattr(ctx.get("exception"), "errno", None)))
        if not accept_failed.done():
            accept_failed.set_result(None)

    loop.set_exception_handler(handler)

    async def echo(r, w):
        w.write(await r.read(100))
        await w.drain()
        w.close()

    async def talk(sock, msg):
        await loop.sock_sendall(sock, msg)
        got = await loop.sock_recv(sock, 100)
        sock.close()
        return got

    async def main():
        srv = await asyncio.start_server(echo, "127.0.0.1", 0)
        addr = srv.sockets[0].getsockname()
        # The client sockets take their fds now, before the limit goes down:
        # connect() needs no new fd, only the server's accept() does.
        clients = [socket.socket() for _ in range(3)]
        for c in clients:
            c.setblocking(False)
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE,
                           (max(map(int, os.listdir("/proc/self/fd"))) + 4, hard))
        pads = []
        while True:  # every fd below the limit is taken
            try:
                pads.append(os.open(os.devnull, os.O_RDONLY))
            except OSError as exc:
                assert exc.errno == errno.EMFILE, exc
                break
        for c in clients:
            await loop.sock_connect(c, addr)  # completes from the backlog
        await asyncio.wait_for(accept_failed, 20)
        assert srv.is_serving()
        for fd in pads:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        late = socket.socket()
        late.setblocking(False)
        await loop.sock_connect(late, addr)
        got = await asyncio.wait_for(
            asyncio.gather(*(talk(c, b"hi %d" % i) for i, c in enumerate(clients + [late]))), 20)
        srv.close()
        await srv.wait_closed()
        return got

    got = loop.run_until_complete(main())
    loop.close()
    print(json.dumps({"echoed": [g.decode() for g in got], "errors": sorted(set(errors))}))
"""


def test_accept_under_emfile_recovers(loop_name):
    """accept() failing with EMFILE is logged, the server keeps serving, and
    the connections left in the backlog meanwhile, like new ones, are
    accepted and echoed once fds are free again."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    code = textwrap.dedent(EMFILE_CHILD)
    out = subprocess.run([sys.executable, "-c", code, loop_name, root],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["errors"] == [["socket.accept() out of system resource", errno.EMFILE]]
    assert result["echoed"] == ["hi 0", "hi 1", "hi 2", "hi 3"]


@pytest.mark.parametrize("kind", FAMILIES)
def test_create_connection_with_sock_of_another_transport(loop, loop_name, kind):
    if loop_name == "asyncio" and sys.version_info < (3, 12):
        pytest.skip("3.11's stdlib loop puts a second transport on the same fd")

    async def main():
        ours, peer = PAIRS[kind]()
        with peer:
            first = _Recorder(loop)
            t, _ = await loop.create_connection(lambda: first, sock=ours)
            with pytest.raises(RuntimeError, match="is used by transport"):
                await loop.create_connection(asyncio.Protocol, sock=ours)
            if ours.fileno() == -1:
                # Newer stdlibs (3.14.10's) close a socket they could not make
                # a transport for, pyloop's create_connection being theirs: the
                # first transport's fd is gone behind its back. Its close()
                # then loses the connection: cleanly on the stdlib loop, with
                # the EBADF on pyloop (docs/compatibility.md).
                t.close()
                exc = await first.lost
                if loop_name == "pyloop":
                    assert isinstance(exc, OSError) and exc.errno == errno.EBADF
                    return None
                return exc
            # The first transport still owns the socket and works.
            peer.sendall(b"still mine")
            peer.shutdown(socket.SHUT_WR)
            assert await first.got_eof == b"still mine"
            t.close()
            return await first.lost

    assert _run(loop, main()) is None


@pytest.mark.parametrize("replacement", [None, object()])
def test_set_protocol_to_a_non_protocol(loop, replacement):
    # The stdlib accepts any object; what it lacks fails only when the
    # transport needs it, through the exception handler, as the stdlib does.
    seen = []
    loop.set_exception_handler(lambda lp, ctx: seen.append(ctx))

    async def main():
        a, b = socket.socketpair()
        with b:
            tr, _ = await loop.create_connection(asyncio.Protocol, sock=a)
            tr.set_protocol(replacement)
            assert tr.get_protocol() is replacement
            b.send(b"x")
            for _ in range(100):
                if tr.is_closing() and len(seen) >= 2:
                    break
                await asyncio.sleep(0.01)
            return tr

    tr = loop.run_until_complete(main())
    assert tr.is_closing()
    assert [c["message"][:28] for c in seen[:1]] == ["Fatal error: protocol.data_r"]
    assert all(isinstance(c["exception"], AttributeError) for c in seen)
    assert "connection_lost" in str(seen[-1]["exception"])
