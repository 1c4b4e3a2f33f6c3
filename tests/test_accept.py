"""Accepting connections (csrc/accept.c and Loop._accept_connection), on
both loops: batches, a failing protocol factory, the context each
connection's protocol is made in, and running out of file descriptors."""
import asyncio
import contextlib
import contextvars
import os
import socket
import subprocess
import sys
import textwrap

import pytest

VAR = contextvars.ContextVar("pyloop_test_accept", default="unset")


class Hello(asyncio.Protocol):
    made = []

    def __init__(self):
        self.seen_at_init = VAR.get()
        VAR.set("set by a factory")  # must not leak to the next connection

    def connection_made(self, transport):
        Hello.made.append((transport.get_extra_info("peername"), self.seen_at_init))
        transport.write(b"hello")
        transport.close()


def test_many_connections_in_one_batch(loop):
    Hello.made = []

    async def main():
        server = await loop.create_server(Hello, "127.0.0.1", 0, backlog=200)
        port = server.sockets[0].getsockname()[1]
        socks = []
        for _ in range(50):  # all queued before the loop gets to accept them
            s = socket.socket()
            s.setblocking(False)
            try:
                s.connect(("127.0.0.1", port))
            except BlockingIOError:
                pass
            socks.append(s)
        got = []
        for s in socks:
            data = b""
            while True:
                chunk = await loop.sock_recv(s, 100)
                if not chunk:
                    break
                data += chunk
            got.append(data)
            s.close()
        server.close()
        await server.wait_closed()
        return socks, got

    socks, got = loop.run_until_complete(main())
    assert got == [b"hello"] * 50
    assert len(Hello.made) == 50
    assert all(seen == "unset" for _, seen in Hello.made)
    assert all(peer[0] == "127.0.0.1" for peer, _ in Hello.made)


def test_unix_server_accept(loop, tmp_path):
    Hello.made = []
    path = str(tmp_path / "s")

    async def main():
        server = await loop.create_unix_server(Hello, path)
        r, w = await asyncio.open_unix_connection(path)
        data = await r.read()
        w.close()
        server.close()
        await server.wait_closed()
        return data

    assert loop.run_until_complete(main()) == b"hello"
    assert Hello.made[0][0] == ""  # an unnamed client, as the socket module reports it


def test_failing_factory_drops_the_connection(loop):
    calls = []

    def factory():
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("no protocol for you")
        return Hello()

    async def main():
        server = await loop.create_server(factory, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        results = []
        for _ in range(2):
            r, w = await asyncio.open_connection("127.0.0.1", port)
            try:
                results.append(await r.read())
            except ConnectionResetError:
                results.append(b"reset")
            w.close()
        server.close()
        await server.wait_closed()
        return results

    first, second = loop.run_until_complete(main())
    assert first in (b"", b"reset")
    assert second == b"hello"


EMFILE_SCRIPT = textwrap.dedent("""
    import asyncio, resource, socket, sys
    sys.path.insert(0, sys.argv[2])
    import pyloop
    loop = pyloop.new_event_loop() if sys.argv[1] == "pyloop" else asyncio.new_event_loop()
    errors = []
    loop.set_exception_handler(lambda l, ctx: errors.append(ctx))

    class Hello(asyncio.Protocol):
        def connection_made(self, t):
            t.write(b"hi")
            t.close()

    async def main():
        server = await loop.create_server(Hello, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        hog = []
        try:
            while True:
                hog.append(socket.socket())
        except OSError:
            pass
        hog.pop().close()  # room for the client's socket, none for accept()
        client = socket.socket()
        client.setblocking(False)
        try:
            client.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        while not errors:
            await asyncio.sleep(0.05)
        for s in hog:
            s.close()
        data = b""
        while len(data) < 2:
            data += await loop.sock_recv(client, 10)
        client.close()
        server.close()
        await server.wait_closed()
        print(errors[0]["message"], type(errors[0]["exception"]).__name__, data.decode())

    loop.run_until_complete(main())
    loop.close()
""")


def test_out_of_fds_pauses_and_resumes(loop_name, tmp_path):
    """EMFILE from accept(): reported to the exception handler, accepting
    stops for a while (the socket stays readable), then resumes."""
    script = tmp_path / "emfile.py"
    script.write_text(EMFILE_SCRIPT)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run(
        [sys.executable, "-c",
         "import resource; resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256)); "
         f"import runpy, sys; sys.argv = [{str(script)!r}, {loop_name!r}, {root!r}]; "
         f"runpy.run_path({str(script)!r}, run_name='__main__')"],
        capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["socket.accept()", "out", "of", "system", "resource",
                                  "OSError", "hi"]


class Keep(asyncio.Protocol):
    """Keeps the accepted transport and learns when the connection is lost."""
    made = []

    def connection_made(self, transport):
        self.transport = transport
        self.lost = asyncio.get_running_loop().create_future()
        Keep.made.append(self)

    def connection_lost(self, exc):
        self.lost.set_result(exc)


@contextlib.asynccontextmanager
async def accepted_one(loop):
    """A server of Keep protocols and one client connected to it: (server,
    client, the accepted connection's Keep), all closed on the way out."""
    Keep.made = []
    server = await loop.create_server(Keep, "127.0.0.1", 0)
    client = socket.create_connection(server.sockets[0].getsockname())
    try:
        while not Keep.made:
            await asyncio.sleep(0.01)
        yield server, client, Keep.made[0]
    finally:
        client.close()
        server.close()
        await server.wait_closed()


def test_accepted_transport_socket_and_fd(loop):
    # The accepted transport's socket, sockname and fd, as the stdlib gives
    # them (pyloop makes the socket object only when asked for), and its fd
    # refused to add_reader while the transport is open.
    Keep.made = []

    async def main():
        server = await loop.create_server(Keep, "127.0.0.1", 0)
        addr = server.sockets[0].getsockname()
        client = socket.create_connection(addr)
        try:
            while not Keep.made:
                await asyncio.sleep(0.01)
            t = Keep.made[0].transport
            assert t.get_extra_info("sockname") == addr
            assert t.get_extra_info("peername") == client.getsockname()
            # asyncio.BaseTransport's _extra slot, which libraries read
            sock = t._extra["socket"]
            assert isinstance(sock, asyncio.trsock.TransportSocket)
            assert sock is t.get_extra_info("socket")
            assert (sock.family, sock.type) == (socket.AF_INET, socket.SOCK_STREAM)
            # the listener's protocol number, as socket.accept() gives it
            assert sock.proto == server.sockets[0].proto
            assert sock.gettimeout() == 0.0
            assert sock.getpeername() == client.getsockname()
            fd = sock.fileno()
            assert fd >= 0
            with pytest.raises(RuntimeError, match="is used by transport"):
                loop.add_reader(fd, lambda: None)
            # the registry the stdlib's code reads, as its own loop keeps it
            assert fd in loop._transports
            assert loop._transports[fd] is t and loop._transports.get(fd) is t
            assert t in list(loop._transports.values())
            t.write(b"ok")
            assert client.recv(2) == b"ok"
            t.close()
            await Keep.made[0].lost
        finally:
            client.close()
            server.close()
            await server.wait_closed()

    loop.run_until_complete(main())


def test_socket_first_asked_after_close(loop):
    # Asked for only once the connection is gone: a closed socket object of
    # the connection's family (never an fd number another file may own now).
    async def main():
        async with accepted_one(loop) as (server, client, kept):
            t = kept.transport
            t.close()
            await kept.lost
            sock = t.get_extra_info("socket")
            assert isinstance(sock, asyncio.trsock.TransportSocket)
            assert sock.fileno() == -1
            assert sock.family == socket.AF_INET
            assert t.get_extra_info("sockname") == server.sockets[0].getsockname()

    loop.run_until_complete(main())


def test_accepted_fd_flags_before_the_socket_is_asked_for(loop):
    # The accepted fd is non-blocking and close-on-exec from the moment the
    # transport exists (pyloop sets both in accept4 and no longer asks libuv
    # to set O_NONBLOCK again), before any socket object was made.
    import fcntl

    async def main():
        async with accepted_one(loop) as (server, client, kept):
            t = kept.transport
            fd = t._sock_fd
            flags = fcntl.fcntl(fd, fcntl.F_GETFL), fcntl.fcntl(fd, fcntl.F_GETFD)
            t.write(b"bye")
            t.close()
            await kept.lost
            client.setblocking(False)
            data = b""
            while chunk := await loop.sock_recv(client, 100):
                data += chunk
            return flags, data

    (fl, fd_flags), data = loop.run_until_complete(main())
    assert fl & os.O_NONBLOCK
    assert fd_flags & 1  # FD_CLOEXEC
    assert data == b"bye"  # written, then end of file


def test_close_after_fd_closed_behind_an_accepted_transport(loop_name):
    # os.close() on an accepted connection's private fd number, then
    # transport.close(): connection_lost still runs, nothing aborts, and the
    # server goes on serving (the stdlib's loop also reports the EBADF of
    # its own close; pyloop does not look at an fd no socket object owns).
    from test_robustness import run_child  # a child process: an abort() must not end the run

    out = run_child(loop_name, """
        loop = new_loop()
        loop.set_exception_handler(lambda l, c: None)
        made = []

        class P(asyncio.Protocol):
            def connection_made(self, t):
                self.t = t
                self.lost = loop.create_future()
                made.append(self)
            def connection_lost(self, exc):
                self.lost.set_result(exc)

        async def main():
            server = await loop.create_server(P, "127.0.0.1", 0)
            addr = server.sockets[0].getsockname()
            c1 = socket.create_connection(addr)
            while not made:
                await asyncio.sleep(0.01)
            os.close(made[0].t._sock_fd)
            made[0].t.close()
            await made[0].lost
            c2 = socket.create_connection(addr)
            while len(made) < 2:
                await asyncio.sleep(0.01)
            made[1].t.write(b"ok")
            made[1].t.close()
            await made[1].lost
            got = await loop.sock_recv(c2, 10)
            c1.close()
            c2.close()
            # no wait_closed(): the stdlib's transport closes the fd itself,
            # its EBADF skips Server._detach, and 3.12+'s wait_closed() would
            # wait for that connection forever
            server.close()
            print("served", got.decode())

        loop.run_until_complete(main())
        loop.close()
    """)
    assert out.split()[-2:] == ["served", "ok"], out


# ---- an answer written in data_received, then close() (stream.c keeps the
# last write of data_received so the FIN can leave with it)


class Answer(asyncio.Protocol):
    """Answers its first data with `answers` (one write each), then does
    `then` to the transport; records what the transport says meanwhile."""

    def __init__(self, answers, then, done, peer=None):
        self.answers, self.then, self.done, self.peer = answers, then, done, peer
        self.seen = {}

    def connection_made(self, transport):
        self.transport = transport
        if self.then == "close-with-socket":
            self.seen["sock"] = transport.get_extra_info("socket") is not None

    def data_received(self, data):
        if "buffer" in self.seen:  # after write_eof: more from the peer
            self.seen["more"] = data
            self.transport.close()
            return
        for a in self.answers:
            self.transport.write(a)
        self.seen["buffer"] = self.transport.get_write_buffer_size()
        if self.then in ("close", "close-with-socket"):
            self.transport.close()
            self.seen["closing"] = self.transport.is_closing()
        elif self.then == "abort":
            self.transport.abort()
        elif self.then == "socket":
            self.seen["socket"] = self.transport.get_extra_info("socket").fileno() >= 0
            self.transport.close()
        elif self.then == "write_eof":
            self.transport.write_eof()
        elif self.then == "raise":
            raise ZeroDivisionError("after the answer")

    def connection_lost(self, exc):
        if self.peer is not None:
            # Whether the peer has the answer's FIN by now: before the fd is
            # closed (after this returns) only if it left with the answer.
            self.peer.setblocking(False)
            got = b""
            try:
                while True:
                    chunk = self.peer.recv(100)
                    if not chunk:
                        got += b"<EOF>"
                        break
                    got += chunk
            except BlockingIOError:
                pass
            self.seen["peer_at_lost"] = got
        self.seen["lost"] = type(exc).__name__ if exc else None
        self.done.set_result(None)


def _serve_one(loop, answers, then, request=b"GET / HTTP/1.0\r\n\r\n", more=None,
               check_peer_at_lost=False):
    """One client connection to an Answer server; returns (what the client
    read up to EOF, the protocol's record, exception handler calls)."""
    errors = []
    loop.set_exception_handler(lambda lp, ctx: errors.append(ctx.get("exception")))

    async def main():
        done = loop.create_future()
        protos = []
        client = socket.socket()
        client.setblocking(False)

        def factory():
            protos.append(Answer(answers, then, done, client if check_peer_at_lost else None))
            return protos[-1]

        server = await loop.create_server(factory, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        await loop.sock_connect(client, ("127.0.0.1", port))
        await loop.sock_sendall(client, request)
        got = b""
        if check_peer_at_lost:
            await done
            got = protos[0].seen["peer_at_lost"]
        else:
            while True:
                chunk = await loop.sock_recv(client, 4096)
                if not chunk:
                    break
                got += chunk
                if more is not None and got == b"".join(answers):
                    await loop.sock_sendall(client, more)
            await done
        client.close()
        server.close()
        await server.wait_closed()
        return got, protos[0].seen

    got, seen = loop.run_until_complete(main())
    return got, seen, errors


def test_answer_then_close_in_data_received(loop):
    got, seen, errors = _serve_one(loop, [b"HTTP/1.0 200 OK\r\n\r\n", b"hello"], "close")
    assert got == b"HTTP/1.0 200 OK\r\n\r\nhello"
    assert seen == {"buffer": 0, "closing": True, "lost": None}
    assert errors == []


def test_answer_then_abort_in_data_received(loop):
    # What write() took had left before abort(): the peer still gets it.
    got, seen, errors = _serve_one(loop, [b"answer"], "abort")
    assert got == b"answer"
    assert seen["lost"] is None and errors == []


def test_answer_then_socket_in_data_received(loop):
    got, seen, errors = _serve_one(loop, [b"answer"], "socket")
    assert got == b"answer"
    assert seen["socket"] is True and seen["lost"] is None and errors == []


def test_answer_then_write_eof_in_data_received(loop):
    # Half-closed: the peer gets the answer and EOF, and can still send.
    got, seen, errors = _serve_one(loop, [b"answer"], "write_eof", more=b"more")
    assert got == b"answer"
    assert seen["more"] == b"more" and seen["lost"] is None and errors == []


def test_answer_then_raise_in_data_received(loop):
    got, seen, errors = _serve_one(loop, [b"answer"], "raise")
    assert got == b"answer"
    assert seen["lost"] == "ZeroDivisionError"
    assert [type(e) for e in errors] == [ZeroDivisionError]


def test_large_answer_then_close_in_data_received(loop):
    big = bytes(range(256)) * 4096  # 1 MiB: more than the socket takes at once
    got, seen, errors = _serve_one(loop, [b"head", big], "close")
    assert got == b"head" + big
    assert seen["lost"] is None and errors == []


def test_no_early_fin_when_the_socket_object_exists(loop):
    # As on the stdlib: the FIN leaves when the socket is closed, after
    # connection_lost, when a socket object (which can be dup'ed) was made.
    got, seen, errors = _serve_one(loop, [b"answer"], "close-with-socket",
                                   check_peer_at_lost=True)
    assert seen["sock"] is True
    assert got == b"answer"  # no <EOF> yet
    assert errors == []


def test_fin_leaves_with_the_answer(pyloop_loop):
    # pyloop only: the answer and the FIN in one segment, sent by close()
    # in data_received, so the peer has both before connection_lost runs.
    got, seen, errors = _serve_one(pyloop_loop, [b"answer"], "close", check_peer_at_lost=True)
    assert got == b"answer<EOF>"
    assert errors == []
