"""TLS on pyloop's stream transports (the stdlib's SSLProtocol over them).

Every test runs on pyloop and on the stdlib loop, with certificates the
session made (conftest.tls_certs). The `tls_loop` fixture checks after each
test that the process has the same open fds as before the loop was made and
that pyloop's libuv handle and request counters balance.
"""
import asyncio
import gc
import os
import select
import socket
import ssl
import subprocess
import sys
import threading
import weakref

import pytest

import pyloop

TIMEOUT = 30  # a bound for a whole scenario, so that a bug fails instead of hanging
LINGER_0 = b"\x01\x00\x00\x00\x00\x00\x00\x00"  # struct linger {1, 0}: close() resets


def open_fds():
    """The process's open fds and what each is (listdir's own fd, closed
    by the time it is read, is left out)."""
    found = {}
    for fd in os.listdir("/proc/self/fd"):
        target = _fd_target(fd)
        if target is not None:
            found[fd] = target
    return found


def open_sockets():
    return {fd: t for fd, t in open_fds().items() if t.startswith("socket:")}


def counters_balance(before, after):
    """pyloop made and freed as many libuv handles and requests, and TLS
    protocols (every other transport kind too)."""
    delta = {k: after[k] - before[k] for k in after}
    return all(delta[k] == delta[k.replace("created", "freed")] for k in delta if "created" in k)


@pytest.fixture
def tls_loop(loop_factory):
    """A fresh loop; after the test it is closed, and the process must have
    exactly the fds it had before the loop existed, and each of pyloop's
    counters (handles, requests, TLS protocols...) must balance."""
    # libuv opens a process-wide pipe with the first loop and keeps it: a
    # loop made and closed first keeps it out of the comparison.
    pyloop.new_event_loop().close()
    gc.collect()
    fds = open_fds()
    counters = pyloop._core._counters()
    lp = loop_factory()
    try:
        yield lp
    finally:
        if lp.is_running():  # pragma: no cover - a test left it running
            lp.stop()
        lp.close()
        asyncio.set_event_loop(None)
        # a test's handler keeps the contexts it was given, whose exceptions'
        # tracebacks keep TLS protocols: they go with the handler
        lp.set_exception_handler(None)
    gc.collect()
    leaked = set(open_fds().items()) - set(fds.items())
    assert not leaked, f"fds left open: {sorted(leaked)}"
    after = pyloop._core._counters()
    assert counters_balance(counters, after), (counters, after)


def _fd_target(fd):
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return None


def run(loop, coro):
    return loop.run_until_complete(asyncio.wait_for(coro, TIMEOUT))


async def wait_until(predicate, what):
    """Poll `predicate` on the loop until it holds (bounded by TIMEOUT)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + TIMEOUT
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"never happened: {what}")
        await asyncio.sleep(0.01)


def describe(exc):
    """What identifies a TLS error: its class and OpenSSL's reason and
    verification result."""
    return (type(exc), getattr(exc, "reason", None), getattr(exc, "verify_code", None),
            getattr(exc, "verify_message", None))


def blocking_handshake_error(ctx, addr, server_hostname):
    """The exception the stdlib's blocking ssl module raises for a handshake
    with `addr` (the reference for the loops' errors); None if it succeeds."""
    with socket.create_connection(addr, timeout=TIMEOUT) as s:
        try:
            with ctx.wrap_socket(s, server_hostname=server_hostname):
                return None
        except Exception as exc:  # noqa: BLE001 - the exception is the result
            return exc


def client_hello(ctx, server_hostname="localhost"):
    """The bytes of a real ClientHello from `ctx`."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname=server_hostname)
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    return outgoing.read()


def recv_until_eof(conn):
    """Everything the peer sends until it closes (or resets) the connection."""
    chunks = []
    while True:
        try:
            data = conn.recv(65536)
        except ConnectionResetError:
            return b"".join(chunks)
        if not data:
            return b"".join(chunks)
        chunks.append(data)


class RawPeer:
    """A blocking peer on its own thread: accepts `count` connections on a
    listening socket of its own and runs handler(conn) for each."""

    def __init__(self, handler, count=1):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.addr = self.sock.getsockname()
        self.errors = []
        self.thread = threading.Thread(target=self._serve, args=(handler, count), daemon=True)

    def _serve(self, handler, count):
        try:
            self.sock.settimeout(TIMEOUT)
            for _ in range(count):
                conn, _ = self.sock.accept()
                with conn:
                    conn.settimeout(TIMEOUT)
                    handler(conn)
        except Exception as exc:  # noqa: BLE001 - reported by __exit__
            self.errors.append(exc)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc_info):
        self.thread.join(TIMEOUT)
        self.sock.close()
        assert not self.thread.is_alive(), "the peer thread did not finish"
        if exc_info[0] is None and self.errors:
            raise self.errors[0]


class Recorder(asyncio.Protocol):
    """A client protocol that keeps what it received and how it ended."""

    def __init__(self):
        self.loop = asyncio.get_running_loop()
        self.data = bytearray()
        self.eof = False
        self.lost = self.loop.create_future()
        self.got = None  # (future, size): resolved once `size` bytes arrived

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.data += data
        if self.got is not None and len(self.data) >= self.got[1] and not self.got[0].done():
            self.got[0].set_result(bytes(self.data))

    def eof_received(self):
        self.eof = True

    def connection_lost(self, exc):
        self.lost.set_result(exc)

    def wait_for_bytes(self, size):
        self.got = (self.loop.create_future(), size)
        self.data_received(b"")
        return self.got[0]


class TLSServer:
    """`async with TLSServer(loop, certs) as srv`: a TLS server on the loop
    for 127.0.0.1; each connection gets a `protocol()` kept in
    `srv.protocols`. Closed (and waited for) on the way out."""

    def __init__(self, loop, certs, protocol=None, **server_kw):
        self.loop = loop
        self.certs = certs
        self.protocol = protocol or Recorder
        self.server_kw = server_kw
        self.server_kw.setdefault("ssl", certs.server_context())
        self.protocols = []

    def _factory(self):
        self.protocols.append(self.protocol())
        return self.protocols[-1]

    async def __aenter__(self):
        self.server = await self.loop.create_server(self._factory, "127.0.0.1", 0,
                                                    **self.server_kw)
        self.addr = self.server.sockets[0].getsockname()
        return self

    async def __aexit__(self, *exc_info):
        self.server.close()
        await self.server.wait_closed()

    def connect(self, protocol=Recorder, **kw):
        """create_connection() with the test CA's client context."""
        kw.setdefault("ssl", self.certs.client_context())
        kw.setdefault("server_hostname", "localhost")
        return self.loop.create_connection(protocol, *self.addr, **kw)


def collect_exception_handler_calls(loop):
    """The contexts the loop reports from now on. Debug mode off: in debug
    mode the stdlib also reports each incoming connection whose handshake
    failed ("Error on transport creation"), on either loop."""
    loop.set_debug(False)
    calls = []
    loop.set_exception_handler(lambda lp, ctx: calls.append(ctx))
    return calls


# ---- connections that work ------------------------------------------------------

def check_tls_extra(transport, ctx, peer_cn):
    sslobj = transport.get_extra_info("ssl_object")
    assert isinstance(sslobj, ssl.SSLObject)
    assert transport.get_extra_info("sslcontext") is ctx
    peercert = transport.get_extra_info("peercert")
    assert peercert == sslobj.getpeercert()
    if peer_cn is None:
        assert peercert is None
    else:
        assert (("commonName", peer_cn),) in peercert["subject"]
    cipher = transport.get_extra_info("cipher")
    assert cipher == sslobj.cipher() and len(cipher) == 3
    assert transport.get_extra_info("compression") == sslobj.compression()
    assert transport.get_extra_info("no such thing", "dflt") == "dflt"


def test_streams_echo_over_tls_with_client_certificates(tls_loop, tls_certs):
    server_ctx = tls_certs.server_context(require_client_cert=True)
    client_ctx = tls_certs.client_context(with_cert=True)
    payload = os.urandom(3 * 1024 * 1024 + 7)  # past every flow-control mark

    async def main():
        server_side = {}

        async def handle(reader, writer):
            # (A failure here is only logged by start_server: it is noted.)
            check_tls_extra(writer.transport, server_ctx, "pyloop test client")
            server_side["extra checked"] = True
            data = await reader.readexactly(len(payload))
            writer.write(data)
            await writer.drain()
            server_side["eof"] = await reader.read()  # the client's close_notify
            writer.close()
            await writer.wait_closed()

        server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_ctx)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=client_ctx, server_hostname="localhost")
        transport = writer.transport
        check_tls_extra(transport, client_ctx, "localhost")
        assert transport.get_extra_info("ssl_object").server_hostname == "localhost"
        assert transport.get_extra_info("peername") == ("127.0.0.1", port)
        assert transport.get_extra_info("socket").fileno() >= 0
        assert not transport.can_write_eof()
        writer.write(payload)
        await writer.drain()
        assert await reader.readexactly(len(payload)) == payload
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()
        return server_side

    server_side = run(tls_loop, main())
    assert server_side == {"extra checked": True, "eof": b""}


def test_ssl_true_uses_a_default_context(tls_loop, tls_certs, monkeypatch):
    # ssl=True on the client: ssl.create_default_context(), which trusts what
    # SSL_CERT_FILE names (read by OpenSSL when the context is made).
    monkeypatch.setenv("SSL_CERT_FILE", tls_certs.ca)

    async def main():
        async with TLSServer(tls_loop, tls_certs) as srv:
            transport, proto = await srv.connect(ssl=True)
            ctx = transport.get_extra_info("sslcontext")
            assert isinstance(ctx, ssl.SSLContext)
            assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
            peercert = transport.get_extra_info("peercert")
            assert (("commonName", "localhost"),) in peercert["subject"]
            transport.close()
            assert await proto.lost is None

    run(tls_loop, main())


def test_unix_sockets_over_tls(tls_loop, tls_certs, tmp_path):
    path = str(tmp_path / "tls.sock")
    server_ctx = tls_certs.server_context()
    client_ctx = tls_certs.client_context()

    class Echo(asyncio.Protocol):
        def connection_made(self, transport):
            self.transport = transport

        def data_received(self, data):
            self.transport.write(data.upper())

    async def main():
        server = await tls_loop.create_unix_server(Echo, path, ssl=server_ctx,
                                                   ssl_handshake_timeout=10)
        transport, proto = await tls_loop.create_unix_connection(
            Recorder, path, ssl=client_ctx, server_hostname="localhost",
            ssl_handshake_timeout=10, ssl_shutdown_timeout=10)
        check_tls_extra(transport, client_ctx, "localhost")
        transport.write(b"over a unix socket")
        assert await proto.wait_for_bytes(18) == b"OVER A UNIX SOCKET"
        transport.close()
        assert await proto.lost is None
        server.close()
        await server.wait_closed()

    run(tls_loop, main())


def test_unix_connection_with_ssl_needs_server_hostname(tls_loop, tls_certs, tmp_path):
    async def main():
        with pytest.raises(ValueError, match="server_hostname"):
            await tls_loop.create_unix_connection(asyncio.Protocol, str(tmp_path / "x"),
                                                  ssl=tls_certs.client_context())

    run(tls_loop, main())


def test_connect_accepted_socket_server_side(tls_loop, tls_certs):
    server_ctx = tls_certs.server_context()

    class Echo(asyncio.Protocol):
        def connection_made(self, transport):
            self.transport = transport

        def data_received(self, data):
            self.transport.write(data[::-1])

    async def main():
        listener = socket.create_server(("127.0.0.1", 0))
        listener.setblocking(False)
        with listener:
            client = asyncio.ensure_future(tls_loop.create_connection(
                Recorder, *listener.getsockname(), ssl=tls_certs.client_context(),
                server_hostname="localhost"))
            conn, _ = await tls_loop.sock_accept(listener)
            server_transport, _ = await tls_loop.connect_accepted_socket(
                Echo, conn, ssl=server_ctx, ssl_handshake_timeout=10, ssl_shutdown_timeout=10)
            check_tls_extra(server_transport, server_ctx, None)
            transport, proto = await client
        transport.write(b"abc")
        assert await proto.wait_for_bytes(3) == b"cba"
        transport.close()
        assert await proto.lost is None

    run(tls_loop, main())


class LineThenRaw(asyncio.Protocol):
    """Plain-text side of a STARTTLS exchange: resolves `line` with the
    first line; after that, start_tls takes the transport over."""

    def __init__(self, loop):
        self.line = loop.create_future()
        self.buf = b""

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.buf += data
        if b"\n" in self.buf and not self.line.done():
            self.line.set_result(self.buf)


def socket_readable(transport):
    fd = transport.get_extra_info("socket").fileno()
    return bool(select.select([fd], [], [], 0)[0])


@pytest.mark.parametrize("client_paused", [False, True])
def test_start_tls_on_both_sides_while_reading_is_paused(tls_loop, tls_certs, client_paused):
    # The server answers "GO", stops reading and upgrades only once the
    # client's ClientHello already waits in its socket.
    server_ctx = tls_certs.server_context()
    client_ctx = tls_certs.client_context()

    async def main():
        accepted = tls_loop.create_future()

        def server_factory():
            proto = LineThenRaw(tls_loop)
            accepted.set_result(proto)
            return proto

        server = await tls_loop.create_server(server_factory, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        ctransport, cproto = await tls_loop.create_connection(
            lambda: LineThenRaw(tls_loop), "127.0.0.1", port)
        sproto = await accepted
        ctransport.write(b"STARTTLS\n")
        assert await sproto.line == b"STARTTLS\n"
        sproto.transport.write(b"GO\n")
        sproto.transport.pause_reading()
        assert await cproto.line == b"GO\n"
        if client_paused:
            ctransport.pause_reading()

        client_app = Recorder()
        client_tls = asyncio.ensure_future(tls_loop.start_tls(
            ctransport, client_app, client_ctx, server_hostname="localhost",
            ssl_handshake_timeout=10))
        await wait_until(lambda: socket_readable(sproto.transport),
                         "the ClientHello reaches the paused server")
        server_app = Recorder()
        stls = await tls_loop.start_tls(sproto.transport, server_app, server_ctx,
                                        server_side=True, ssl_handshake_timeout=10)
        ctls = await client_tls
        check_tls_extra(ctls, client_ctx, "localhost")
        check_tls_extra(stls, server_ctx, None)
        assert ctls.is_reading() and stls.is_reading()
        ctls.write(b"ping")
        assert await server_app.wait_for_bytes(4) == b"ping"
        stls.write(b"pong")
        assert await client_app.wait_for_bytes(4) == b"pong"
        ctls.close()
        assert await client_app.lost is None
        assert await server_app.lost is None
        assert server_app.eof
        server.close()
        await server.wait_closed()

    run(tls_loop, main())


def test_stream_writer_start_tls(tls_loop, tls_certs):
    server_ctx = tls_certs.server_context()

    async def main():
        async def handle(reader, writer):
            assert await reader.readline() == b"STARTTLS\n"
            writer.write(b"GO\n")
            await writer.start_tls(server_ctx)
            line = await reader.readline()
            writer.write(b"secure " + line)
            await writer.drain()
            await reader.read()
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"STARTTLS\n")
        assert await reader.readline() == b"GO\n"
        await writer.start_tls(tls_certs.client_context(), server_hostname="localhost")
        assert writer.get_extra_info("ssl_object") is not None
        writer.write(b"hello\n")
        assert await reader.readline() == b"secure hello\n"
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()

    run(tls_loop, main())


def test_app_transport_pause_and_resume_reading(tls_loop, tls_certs):
    size = 2 * 1024 * 1024

    class Sender(asyncio.Protocol):
        def connection_made(self, transport):
            transport.write(b"x" * size)

    async def main():
        async with TLSServer(tls_loop, tls_certs, Sender) as srv:
            transport, proto = await srv.connect()
            transport.pause_reading()
            assert not transport.is_reading()
            transport.resume_reading()
            assert transport.is_reading()
            assert await proto.wait_for_bytes(size) == b"x" * size
            transport.close()
            await proto.lost

    run(tls_loop, main())


# ---- shutdown -------------------------------------------------------------------

def test_close_waits_for_the_peers_close_notify_not_the_timeout(tls_loop, tls_certs):
    # A shutdown timeout longer than the scenario's bound: the connection
    # must end by the TLS close exchange itself.
    async def main():
        async with TLSServer(tls_loop, tls_certs) as srv:
            transport, proto = await srv.connect(ssl_shutdown_timeout=TIMEOUT * 4)
            fd = transport.get_extra_info("socket").fileno()
            target = _fd_target(fd)
            transport.close()
            assert await proto.lost is None
            assert await srv.protocols[0].lost is None
            assert srv.protocols[0].eof  # the client's close_notify, as an EOF
            assert _fd_target(fd) != target

    run(tls_loop, main())


def test_close_while_the_peer_keeps_streaming(tls_loop, tls_certs):
    # uvloop's aiohttp bug (MagicStack/uvloop#471): a client that closed in
    # the middle of a long download kept the connection, and the server kept
    # sending, until the shutdown timeout. Here the connection must end
    # without it: the shutdown timeout is longer than the scenario's bound.
    class Endless(Recorder):
        def connection_made(self, transport):
            super().connection_made(transport)
            self.chunks = 0
            self.resume_writing()

        def pause_writing(self):
            self.paused = True

        def resume_writing(self):
            self.paused = False
            while not self.paused and not self.transport.is_closing():
                self.transport.write(b"z" * 65536)
                self.chunks += 1

        def eof_received(self):
            super().eof_received()
            self.transport.close()

    async def main():
        async with TLSServer(tls_loop, tls_certs, Endless) as srv:
            transport, proto = await srv.connect(ssl_shutdown_timeout=TIMEOUT * 4)
            await proto.wait_for_bytes(256 * 1024)
            transport.close()
            # OpenSSL 3 refuses the records that were still on their way
            # after our close_notify: that ends the connection too.
            exc = await proto.lost
            assert exc is None or (isinstance(exc, ssl.SSLError)
                                   and exc.reason == "APPLICATION_DATA_AFTER_CLOSE_NOTIFY")
            # The server learns it at once too (a reset: our socket closed
            # with its records unread).
            server_exc = await srv.protocols[0].lost
            assert server_exc is None or isinstance(server_exc, ConnectionResetError)
            assert srv.protocols[0].chunks > 4

    run(tls_loop, main())


def test_close_right_after_a_large_write_delivers_everything(tls_loop, tls_certs):
    payload = os.urandom(4 * 1024 * 1024 + 11)

    async def main():
        async with TLSServer(tls_loop, tls_certs) as srv:
            transport, proto = await srv.connect()
            transport.write(payload)
            transport.close()
            assert await proto.lost is None
            assert await srv.protocols[0].lost is None
            assert srv.protocols[0].eof
            return bytes(srv.protocols[0].data)

    assert run(tls_loop, main()) == payload


def test_close_notify_while_the_reader_is_paused(tls_loop, tls_certs):
    # The server sends data and closes at once; the client's application has
    # paused reading: the connection stays until it resumes, then the data,
    # the EOF and the end arrive.
    payload = os.urandom(1024 * 1024)

    closed = []

    class SendAndClose(asyncio.Protocol):
        def connection_made(self, transport):
            transport.write(payload)
            transport.close()
            closed.append(transport)

    async def main():
        async with TLSServer(tls_loop, tls_certs, SendAndClose) as srv:
            # (Not paused in connection_made: the stdlib's TLS layer would
            # then hold back the client's last handshake message, on either
            # loop.)
            transport, proto = await srv.connect()
            transport.pause_reading()
            await wait_until(lambda: closed, "the server closes its end")
            assert not proto.lost.done()
            transport.resume_reading()
            assert await proto.lost is None
            assert proto.eof
            return bytes(proto.data)

    assert run(tls_loop, main()) == payload


def test_shutdown_timeout_closes_when_the_peer_never_answers(tls_loop, tls_certs):
    server_ctx = tls_certs.server_context()
    release = threading.Event()

    def peer(conn):
        with server_ctx.wrap_socket(conn, server_side=True) as ssock:
            ssock.sendall(b"ready")
            release.wait(TIMEOUT)  # holds the connection, never reads the close_notify

    async def main(addr):
        transport, proto = await tls_loop.create_connection(
            Recorder, *addr, ssl=tls_certs.client_context(), server_hostname="localhost",
            ssl_shutdown_timeout=0.2)
        await proto.wait_for_bytes(5)
        fd = transport.get_extra_info("socket").fileno()
        target = _fd_target(fd)
        transport.close()
        exc = await proto.lost
        assert _fd_target(fd) != target  # closed while the peer still holds its end
        return exc

    with RawPeer(peer) as p:
        try:
            exc = run(tls_loop, main(p.addr))
        finally:
            release.set()
    assert isinstance(exc, TimeoutError) and str(exc) == "SSL shutdown timed out"


def test_peer_closes_without_close_notify_after_data(tls_loop, tls_certs):
    server_ctx = tls_certs.server_context()

    def peer(conn):
        ssock = server_ctx.wrap_socket(conn, server_side=True)
        ssock.sendall(b"hello")
        ssock.shutdown(socket.SHUT_RDWR)  # a TCP FIN, no TLS close_notify
        recv_until_eof(ssock)
        ssock.close()

    async def main(addr):
        reader, writer = await asyncio.open_connection(
            *addr, ssl=tls_certs.client_context(), server_hostname="localhost")
        data = await reader.read()
        assert reader.at_eof()
        writer.close()
        await writer.wait_closed()
        return data

    with RawPeer(peer) as p:
        assert run(tls_loop, main(p.addr)) == b"hello"


def test_abort_after_the_handshake(tls_loop, tls_certs):
    async def main():
        async with TLSServer(tls_loop, tls_certs) as srv:
            transport, proto = await srv.connect()
            transport.write(b"dropped or not")
            transport.abort()
            assert transport.is_closing()
            assert await proto.lost is None
            # The server sees the TCP connection end without a close_notify.
            await srv.protocols[0].lost

    run(tls_loop, main())


def test_peer_resets_after_the_handshake(tls_loop, tls_certs):
    server_ctx = tls_certs.server_context()

    def peer(conn):
        ssock = server_ctx.wrap_socket(conn, server_side=True)
        ssock.sendall(b"bye")
        ssock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_0)
        ssock.close()

    async def main(addr):
        transport, proto = await tls_loop.create_connection(
            Recorder, *addr, ssl=tls_certs.client_context(), server_hostname="localhost")
        return await proto.lost, proto

    with RawPeer(peer) as p:
        exc, proto = run(tls_loop, main(p.addr))
    # The data that came before the reset may or may not have been read
    # first; the end is the reset, on both loops.
    assert isinstance(exc, ConnectionResetError)
    assert bytes(proto.data) in (b"", b"bye")


def test_sendfile_over_tls(tls_loop, tls_certs, tmp_path):
    path = tmp_path / "payload"
    payload = os.urandom(512 * 1024 + 3)
    path.write_bytes(payload)

    async def main():
        async with TLSServer(tls_loop, tls_certs) as srv:
            transport, proto = await srv.connect()
            with open(path, "rb") as f:
                sent = await tls_loop.sendfile(transport, f, offset=3)
            assert sent == len(payload) - 3
            assert await srv.protocols[0].wait_for_bytes(sent) == payload[3:]
            transport.close()
            await proto.lost

    run(tls_loop, main())


@pytest.mark.parametrize("how", ["closed", "cancelled"])
def test_nothing_keeps_the_context_alive(tls_loop, tls_certs, how):
    # Once run_until_complete returns, a connection that is over holds its
    # SSLContext no more, without a garbage collection (the stdlib's
    # test_ssl checks this too). Not after a handshake error: its exception
    # and the frames of its traceback make a cycle, on either loop.
    listener = socket.create_server(("127.0.0.1", 0))  # never answers

    async def main(ctx):
        if how == "closed":
            async with TLSServer(tls_loop, tls_certs) as srv:
                transport, proto = await srv.connect(ssl=ctx)
                transport.close()
                await proto.lost
        else:
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(tls_loop.create_connection(
                    asyncio.Protocol, *listener.getsockname(), ssl=ctx,
                    server_hostname="localhost"), 0.1)

    ctx = tls_certs.client_context()
    ref = weakref.ref(ctx)
    with listener:
        tls_loop.run_until_complete(main(ctx))
        del ctx
        assert ref() is None


@pytest.mark.skipif(sys.version_info < (3, 13), reason="Server.close_clients/abort_clients are 3.13+")
@pytest.mark.parametrize("method", ["close_clients", "abort_clients"])
def test_server_drops_its_tls_clients(tls_loop, tls_certs, method):
    async def main():
        async with TLSServer(tls_loop, tls_certs) as srv:
            clients = [await srv.connect() for _ in range(3)]
            srv.server.close()
            getattr(srv.server, method)()
            for transport, proto in clients:
                await proto.lost

    run(tls_loop, main())


# ---- handshake faults -------------------------------------------------------------

def test_client_handshake_timeout(tls_loop, tls_certs):
    listener = socket.create_server(("127.0.0.1", 0))  # accepts, never answers

    async def main():
        with pytest.raises(ConnectionAbortedError, match="SSL handshake is taking longer"):
            await tls_loop.create_connection(
                asyncio.Protocol, *listener.getsockname(), ssl=tls_certs.client_context(),
                server_hostname="localhost", ssl_handshake_timeout=0.2)

    with listener:
        run(tls_loop, main())
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(TIMEOUT)
            hello = recv_until_eof(conn)  # the client closed its end
    assert hello.startswith(b"\x16\x03")  # a TLS handshake record


def test_server_handshake_timeout(tls_loop, tls_certs):
    async def main():
        calls = collect_exception_handler_calls(tls_loop)
        async with TLSServer(tls_loop, tls_certs, ssl_handshake_timeout=0.2) as srv:
            with socket.create_connection(srv.addr, timeout=TIMEOUT) as raw:  # says nothing
                got = await tls_loop.run_in_executor(None, recv_until_eof, raw)
        return got, calls

    got, calls = run(tls_loop, main())
    assert got == b"" and calls == []


@pytest.mark.parametrize("garbage", [b"HTTP/1.1 400 Bad Request\r\n\r\n", b"\x16\x03\x01\x00\x05junk!"])
def test_server_sends_garbage(tls_loop, tls_certs, garbage):
    client_ctx = tls_certs.client_context()

    def peer(conn):
        recv_until_hello = conn.recv(65536)
        assert recv_until_hello
        conn.sendall(garbage * 4)
        recv_until_eof(conn)

    async def main(addr):
        with pytest.raises(ssl.SSLError) as info:
            await tls_loop.create_connection(asyncio.Protocol, *addr, ssl=client_ctx,
                                             server_hostname="localhost")
        return info.value

    with RawPeer(peer, count=2) as p:
        reference = blocking_handshake_error(client_ctx, p.addr, "localhost")
        exc = run(tls_loop, main(p.addr))
    assert isinstance(reference, ssl.SSLError)
    assert describe(exc) == describe(reference)


def test_client_sends_garbage(tls_loop, tls_certs):
    async def main():
        calls = collect_exception_handler_calls(tls_loop)
        async with TLSServer(tls_loop, tls_certs) as srv:
            def talk():
                with socket.create_connection(srv.addr, timeout=TIMEOUT) as raw:
                    raw.sendall(b"GET / HTTP/1.0\r\n\r\n")
                    return recv_until_eof(raw)

            answer = await tls_loop.run_in_executor(None, talk)
        return answer, calls

    answer, calls = run(tls_loop, main())
    # At most a TLS alert record, then the server hangs up.
    assert answer == b"" or answer.startswith(b"\x15\x03")
    assert calls == []


def test_writes_after_the_peer_reset_end_in_connection_reset(tls_loop, tls_certs):
    # Once the peer has reset the connection, a write is not queued for
    # ever: the stream's drain() raises instead of waiting.
    server_ctx = tls_certs.server_context()
    gone = threading.Event()

    def peer(conn):
        ssock = server_ctx.wrap_socket(conn, server_side=True)
        ssock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_0)
        ssock.close()
        gone.set()

    async def main(addr):
        reader, writer = await asyncio.open_connection(
            *addr, ssl=tls_certs.client_context(), server_hostname="localhost")
        await tls_loop.run_in_executor(None, gone.wait, TIMEOUT)
        try:
            assert await reader.read() == b""
        except ConnectionResetError:
            pass
        writer.write(b"x" * 65536)
        with pytest.raises(ConnectionResetError):
            await writer.drain()
        writer.close()

    with RawPeer(peer) as p:
        run(tls_loop, main(p.addr))


def test_server_closes_during_handshake(tls_loop, tls_certs):
    def peer(conn):
        assert conn.recv(65536)  # the ClientHello, read so that the close is a FIN

    async def main(addr):
        with pytest.raises(ConnectionResetError):
            await tls_loop.create_connection(asyncio.Protocol, *addr,
                                             ssl=tls_certs.client_context(),
                                             server_hostname="localhost")

    with RawPeer(peer) as p:
        run(tls_loop, main(p.addr))


@pytest.mark.parametrize("case", ["untrusted", "hostname"])
def test_certificate_verification_failure(tls_loop, tls_certs, case):
    server_ctx = tls_certs.server_context(rogue=(case == "untrusted"))
    client_ctx = tls_certs.client_context()
    hostname = "localhost" if case == "untrusted" else "wrong.example"

    async def main():
        calls = collect_exception_handler_calls(tls_loop)
        async with TLSServer(tls_loop, tls_certs, ssl=server_ctx) as srv:
            reference = await tls_loop.run_in_executor(
                None, blocking_handshake_error, client_ctx, srv.addr, hostname)
            with pytest.raises(ssl.SSLCertVerificationError) as info:
                await srv.connect(ssl=client_ctx, server_hostname=hostname)
        return reference, info.value, calls

    reference, exc, calls = run(tls_loop, main())
    assert isinstance(reference, ssl.SSLCertVerificationError)
    assert describe(exc) == describe(reference)
    assert exc.verify_code == (62 if case == "hostname" else 18)
    assert calls == []


def test_ssl_true_rejects_an_untrusted_server(tls_loop, tls_certs, monkeypatch):
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)

    async def main():
        async with TLSServer(tls_loop, tls_certs) as srv:
            with pytest.raises(ssl.SSLCertVerificationError) as info:
                await srv.connect(ssl=True)
        return info.value

    exc = run(tls_loop, main())
    assert exc.verify_code == 20  # unable to get local issuer certificate


def test_client_cancelled_during_handshake(tls_loop, tls_certs):
    hello_seen = threading.Event()

    def peer(conn):
        assert conn.recv(65536)
        hello_seen.set()
        recv_until_eof(conn)  # returns once the client has closed

    async def main(addr):
        task = asyncio.ensure_future(tls_loop.create_connection(
            asyncio.Protocol, *addr, ssl=tls_certs.client_context(),
            server_hostname="localhost"))
        assert await tls_loop.run_in_executor(None, hello_seen.wait, TIMEOUT)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    with RawPeer(peer) as p:
        run(tls_loop, main(p.addr))


@pytest.mark.parametrize("how", ["cancelled", "handshake-timeout"])
def test_start_tls_that_does_not_complete(tls_loop, tls_certs, how):
    # A plain connection upgraded with start_tls to a peer that never
    # answers the ClientHello: the raw transport is closed either way.
    hello_seen = threading.Event()

    def peer(conn):
        assert conn.recv(65536).startswith(b"\x16\x03")
        hello_seen.set()
        recv_until_eof(conn)  # returns once the client has closed

    async def main(addr):
        transport, proto = await tls_loop.create_connection(Recorder, *addr)
        upgrade = asyncio.ensure_future(tls_loop.start_tls(
            transport, proto, tls_certs.client_context(), server_hostname="localhost",
            ssl_handshake_timeout=0.2 if how == "handshake-timeout" else None))
        assert await tls_loop.run_in_executor(None, hello_seen.wait, TIMEOUT)
        if how == "cancelled":
            upgrade.cancel()
            with pytest.raises(asyncio.CancelledError):
                await upgrade
        else:
            with pytest.raises(ConnectionAbortedError, match="SSL handshake is taking longer"):
                await upgrade
        await wait_until(transport.is_closing, "the raw transport closes")

    with RawPeer(peer) as p:
        run(tls_loop, main(p.addr))


def test_peer_resets_during_server_handshake(tls_loop, tls_certs):
    hello = client_hello(tls_certs.client_context())

    async def main():
        calls = collect_exception_handler_calls(tls_loop)
        async with TLSServer(tls_loop, tls_certs) as srv:
            before = open_sockets()
            raw = socket.create_connection(srv.addr, timeout=TIMEOUT)
            raw.sendall(hello[: len(hello) // 2])
            await wait_until(lambda: len(open_sockets()) == len(before) + 2,
                             "the server accepts the connection")
            # SO_LINGER 0: the close sends a reset, mid-handshake.
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_0)
            raw.close()
            await wait_until(lambda: open_sockets() == before, "the server drops the connection")
        return calls, srv.protocols

    calls, protocols = run(tls_loop, main())
    assert calls == []
    # The application protocol exists from the accept on, but never heard of
    # a connection that did not get through its handshake.
    assert len(protocols) == 1 and not hasattr(protocols[0], "transport")
    assert not protocols[0].lost.done()


# ---- argument checks the loops share -------------------------------------------

def test_tls_arguments_are_checked(tls_loop, tls_certs):
    listener = socket.create_server(("127.0.0.1", 0))

    async def main():
        errors = []
        for call in (
            lambda: tls_loop.create_server(asyncio.Protocol, "127.0.0.1", 0, ssl=True),
            lambda: tls_loop.create_server(asyncio.Protocol, "127.0.0.1", 0,
                                           ssl_handshake_timeout=1),
            lambda: tls_loop.create_connection(asyncio.Protocol, *listener.getsockname(),
                                               server_hostname="localhost"),
        ):
            try:
                await call()
            except (TypeError, ValueError) as exc:
                errors.append((type(exc), str(exc)))
        return errors

    with listener:
        errors = run(tls_loop, main())
    assert [t for t, _ in errors] == [TypeError, ValueError, ValueError]
    assert "ssl_handshake_timeout is only meaningful with ssl" in errors[1][1]
    assert "server_hostname is only meaningful with ssl" in errors[2][1]


def test_start_tls_refuses_what_it_cannot_upgrade(tls_loop, tls_certs):
    async def main():
        async with TLSServer(tls_loop, tls_certs) as srv:
            transport, proto = await srv.connect()
            with pytest.raises(TypeError, match="sslcontext is expected"):
                await tls_loop.start_tls(transport, proto, object())
            assert transport.is_reading()  # left as it was
            transport.close()
            await proto.lost

    run(tls_loop, main())


# ---- aiohttp --------------------------------------------------------------------

def test_aiohttp_https_client_and_server_leave_nothing_open(tls_loop, tls_certs):
    aiohttp = pytest.importorskip("aiohttp", reason="aiohttp is in the test extra")
    from aiohttp import web

    async def hello(request):
        return web.Response(text=f"hello {request.match_info['n']}")

    streams_ended = []

    async def endless(request):
        resp = web.StreamResponse()
        await resp.prepare(request)
        try:
            while True:
                await resp.write(b"z" * 65536)
        except ConnectionError:
            streams_ended.append("ConnectionError")
        except asyncio.CancelledError:
            # aiohttp may cancel the handler of a connection that is lost
            # instead: the server stops sending all the same
            streams_ended.append("cancelled")
            raise
        return resp

    async def main():
        before = open_sockets()
        app = web.Application()
        app.router.add_get("/endless", endless)
        app.router.add_get("/{n}", hello)
        # The server drops idle keep-alive connections soon.
        runner = web.AppRunner(app, keepalive_timeout=0.2)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls_certs.server_context())
        await site.start()
        port = runner.addresses[0][1]
        listening = open_sockets()
        bodies = []
        async with aiohttp.ClientSession() as session:
            for n in range(5):
                async with session.get(f"https://127.0.0.1:{port}/{n}",
                                       ssl=tls_certs.client_context()) as resp:
                    assert resp.status == 200
                    bodies.append(await resp.text())
            # The pooled connection the server closed is gone on both ends
            # while the session is still open.
            await wait_until(lambda: open_sockets() == listening,
                             "the idle connection the server closed is closed")
            # A download left in the middle (uvloop#471): the connection ends
            # on both sides, the server stops sending.
            async with session.get(f"https://127.0.0.1:{port}/endless",
                                   ssl=tls_certs.client_context()) as resp:
                assert len(await resp.content.readexactly(300000)) == 300000
            await wait_until(lambda: streams_ended, "the server stops sending")
            await wait_until(lambda: open_sockets() == listening,
                             "the interrupted download's connection is closed")
        # A fresh connection per request, closed by the client at once.
        connector = aiohttp.TCPConnector(force_close=True)
        async with aiohttp.ClientSession(connector=connector) as session:
            for n in range(5, 8):
                async with session.get(f"https://127.0.0.1:{port}/{n}",
                                       ssl=tls_certs.client_context()) as resp:
                    bodies.append(await resp.text())
        await runner.cleanup()
        await wait_until(lambda: open_sockets() == before,
                         "every client and server connection is closed")
        return bodies

    assert run(tls_loop, main()) == [f"hello {n}" for n in range(8)]


# ---- the per-record path (csrc/tls.c, _core.TLSProtocol) --------------------------


@pytest.fixture
def read_ctx(tls_certs):
    return tls_certs.server_context(), tls_certs.client_context()


class _Collect(asyncio.Protocol):
    def __init__(self):
        self.data = bytearray()
        self.calls = 0
        self.events = []
        self.lost = asyncio.get_event_loop().create_future()

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        assert type(data) is bytes
        self.calls += 1
        self.data += data

    def eof_received(self):
        self.events.append("eof")

    def connection_lost(self, exc):
        self.events.append("lost")
        if not self.lost.done():
            self.lost.set_result(exc)


def test_tls_many_records_and_close_notify(loop, read_ctx):
    # Many small records sent back to back (several reach one read), then a
    # clean TLS shutdown: every byte in order, then eof_received, then
    # connection_lost(None).
    import socket
    import ssl
    import threading
    server_ctx, client_ctx = read_ctx
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(1)
    payload = [b"%04d" % i * 25 for i in range(200)]

    def peer():
        conn, _ = lsock.accept()
        with server_ctx.wrap_socket(conn, server_side=True) as s:
            for p in payload:
                s.sendall(p)
            s.unwrap()  # close_notify

    t = threading.Thread(target=peer)
    t.start()

    async def main():
        tr, proto = await loop.create_connection(
            _Collect, "127.0.0.1", lsock.getsockname()[1], ssl=client_ctx,
            server_hostname="localhost")
        exc = await asyncio.wait_for(proto.lost, 30)
        return exc, proto

    try:
        exc, proto = loop.run_until_complete(main())
    finally:
        t.join(30)
        lsock.close()
    assert exc is None
    assert bytes(proto.data) == b"".join(payload)
    assert proto.events == ["eof", "lost"]


def test_tls_large_transfer_intact(loop, read_ctx):
    server_ctx, client_ctx = read_ctx
    blob = os.urandom(3 * 1024 * 1024 + 17)

    class Sink(_Collect):
        def data_received(self, data):
            super().data_received(data)
            if len(self.data) == len(blob):
                self.transport.close()

    async def main():
        async def handle(reader, writer):
            writer.write(blob)
            await writer.drain()
            try:
                await reader.read()
            finally:
                writer.close()

        srv = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_ctx)
        port = srv.sockets[0].getsockname()[1]
        tr, proto = await loop.create_connection(Sink, "127.0.0.1", port, ssl=client_ctx,
                                                 server_hostname="localhost")
        await asyncio.wait_for(proto.lost, 60)
        srv.close()
        await srv.wait_closed()
        return proto

    proto = loop.run_until_complete(main())
    assert bytes(proto.data) == blob


async def _tls_pair(loop, server_ctx, client_ctx, client_factory, server_factory=None):
    """A TLS server on the loop with one connected client; returns
    (server, client transport, client protocol, server protocols)."""
    server_protos = []

    def make_server_proto():
        proto = (server_factory or _Collect)()
        server_protos.append(proto)
        return proto

    srv = await loop.create_server(make_server_proto, "127.0.0.1", 0, ssl=server_ctx)
    port = srv.sockets[0].getsockname()[1]
    tr, proto = await loop.create_connection(client_factory, "127.0.0.1", port, ssl=client_ctx,
                                             server_hostname="localhost")
    await wait_until(lambda: server_protos and hasattr(server_protos[0], "transport"),
                     "the server side is connected")
    return srv, tr, proto, server_protos


async def _close_pair(srv, tr, proto):
    tr.close()
    await asyncio.wait_for(proto.lost, TIMEOUT)
    srv.close()
    await srv.wait_closed()


def test_tls_error_in_data_received_is_fatal(tls_loop, read_ctx):
    # An exception from the app's data_received goes to the exception handler
    # as the stdlib's "Fatal error on SSL protocol", and connection_lost gets it.
    contexts = []
    tls_loop.set_exception_handler(lambda lp, ctx: contexts.append(ctx))

    class Broken(_Collect):
        def data_received(self, data):
            raise ZeroDivisionError("app bug")

    async def main():
        srv, tr, proto, servers = await _tls_pair(tls_loop, *read_ctx, Broken)
        servers[0].transport.write(b"boom")
        exc = await asyncio.wait_for(proto.lost, TIMEOUT)
        srv.close()
        await srv.wait_closed()
        return exc

    exc = run(tls_loop, main())
    assert isinstance(exc, ZeroDivisionError)
    fatal = [c for c in contexts if c["message"] == "Fatal error on SSL protocol"]
    assert len(fatal) == 1 and fatal[0]["exception"] is exc


@pytest.mark.parametrize("fail", [False, True])
def test_tls_app_write_flow_control(tls_loop, read_ctx, fail):
    # A write far above the TLS write high-water mark pauses the app protocol
    # and resumes it once the peer has read; an exception from pause_writing
    # or resume_writing goes to the exception handler and changes nothing else.
    contexts = []
    tls_loop.set_exception_handler(lambda lp, ctx: contexts.append(ctx))
    blob = os.urandom(4 * 1024 * 1024)

    class Writer(_Collect):
        def __init__(self):
            super().__init__()
            self.flow = []

        def pause_writing(self):
            self.flow.append(("pause", self.transport.get_write_buffer_size() > 0))
            if fail:
                raise RuntimeError("pause failed")

        def resume_writing(self):
            self.flow.append(("resume", None))
            if fail:
                raise RuntimeError("resume failed")

    async def main():
        srv, tr, proto, servers = await _tls_pair(tls_loop, *read_ctx, Writer)
        tr.set_write_buffer_limits(high=65536)
        servers[0].transport.pause_reading()
        # In pieces: once the socket is full the TLS records pile up in the
        # outgoing BIO, and past its high-water mark the app is paused.
        for i in range(0, len(blob), 65536):
            tr.write(blob[i:i + 65536])
        paused_size = tr.get_write_buffer_size()
        servers[0].transport.resume_reading()
        await wait_until(lambda: len(servers[0].data) == len(blob), "the peer read everything")
        await wait_until(lambda: len(proto.flow) >= 2, "resume_writing was called")
        drained = tr.get_write_buffer_size()
        await _close_pair(srv, tr, proto)
        return proto.flow, bytes(servers[0].data), paused_size, drained

    flow, received, paused_size, drained = run(tls_loop, main())
    assert received == blob
    assert flow[:2] == [("pause", True), ("resume", None)]
    assert paused_size > 0 and drained == 0
    messages = [c["message"] for c in contexts]
    if fail:
        assert messages == ["protocol.pause_writing() failed", "protocol.resume_writing() failed"]
        assert all(isinstance(c["exception"], RuntimeError) for c in contexts)
    else:
        assert messages == []


def test_tls_writes_after_close_are_dropped_and_warned(tls_loop, read_ctx, caplog):
    # As the stdlib: writes after close() are dropped, and from the sixth on
    # each logs "SSL connection is closed".
    async def main():
        srv, tr, proto, servers = await _tls_pair(tls_loop, *read_ctx, _Collect)
        tr.write(b"before")
        tr.close()
        with caplog.at_level("WARNING", logger="asyncio"):
            for _ in range(7):
                tr.write(b"after")
        await asyncio.wait_for(proto.lost, TIMEOUT)
        await wait_until(lambda: servers[0].lost.done(), "the server side is closed")
        srv.close()
        await srv.wait_closed()
        return bytes(servers[0].data)

    assert run(tls_loop, main()) == b"before"
    warned = [r for r in caplog.records if r.getMessage() == "SSL connection is closed"]
    assert len(warned) == 2


def test_tls_writelines_and_memoryview(tls_loop, read_ctx):
    # writelines queues several buffers at once (the backlog path), a
    # memoryview slice is written as its bytes, an empty write is nothing.
    async def main():
        srv, tr, proto, servers = await _tls_pair(tls_loop, *read_ctx, _Collect)
        tr.writelines([b"one,", bytearray(b"two,"), memoryview(b"xthree,")[1:]])
        tr.write(b"")
        tr.write(memoryview(b"four"))
        await wait_until(lambda: len(servers[0].data) >= 18, "everything arrived")
        await _close_pair(srv, tr, proto)
        return bytes(servers[0].data)

    assert run(tls_loop, main()) == b"one,two,three,four"


@pytest.mark.skipif(sys.version_info < (3, 12),
                    reason="Python classes implement the buffer protocol (__buffer__) from 3.12")
def test_tls_write_whose_buffer_replaces_the_sslobj(tls_loop, read_ctx):
    # Taking the data's buffer runs Python code that drops the SSLObject:
    # the write still goes through the one it began with, as in the stdlib.
    async def main():
        srv, tr, proto, servers = await _tls_pair(tls_loop, *read_ctx, _Collect)
        ssl_protocol = tr._ssl_protocol
        saved = ssl_protocol._sslobj

        class Sneaky:
            def __len__(self):
                return 6

            def __buffer__(self, flags):
                ssl_protocol._sslobj = None
                return memoryview(b"sneaky")

        ssl_protocol._write_appdata([Sneaky()])
        assert ssl_protocol._sslobj is None
        ssl_protocol._sslobj = saved
        await wait_until(lambda: servers[0].data == b"sneaky", "the write arrived")
        await _close_pair(srv, tr, proto)
        return bytes(servers[0].data)

    assert run(tls_loop, main()) == b"sneaky"


def test_tls_write_rejects_what_is_not_bytes(tls_loop, read_ctx):
    import array

    async def main():
        srv, tr, proto, servers = await _tls_pair(tls_loop, *read_ctx, _Collect)
        errors = []
        for bad in ("text", 42, array.array("b", b"xy")):
            try:
                tr.write(bad)
            except TypeError as exc:
                errors.append(str(exc))
        with pytest.raises(TypeError):
            tr.write()
        tr.write(b"still works")
        await wait_until(lambda: servers[0].data == b"still works", "the good write arrived")
        await _close_pair(srv, tr, proto)
        return errors

    assert run(tls_loop, main()) == [
        "data: expecting a bytes-like instance, got str",
        "data: expecting a bytes-like instance, got int",
        "data: expecting a bytes-like instance, got array",
    ]


def test_tls_connections_and_start_tls_use_the_c_path(pyloop_loop, read_ctx):
    # Both ways into TLS get pyloop's protocol (its per-record methods in C)
    # and its app transport, still the stdlib's classes to isinstance().
    import asyncio.sslproto as sslproto
    server_ctx, client_ctx = read_ctx
    seen = []

    async def main():
        async def handle(reader, writer):
            await writer.start_tls(server_ctx)
            seen.append((writer.transport, writer.transport._ssl_protocol))
            writer.write(await reader.readexactly(5))
            await writer.drain()
            writer.close()

        srv = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = srv.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        await writer.start_tls(client_ctx, server_hostname="localhost")
        seen.append((writer.transport, writer.transport._ssl_protocol))
        writer.write(b"hello")
        echoed = await reader.readexactly(5)
        writer.close()
        await writer.wait_closed()
        srv.close()
        await srv.wait_closed()
        srv, tr, proto, servers = await _tls_pair(pyloop_loop, server_ctx, client_ctx, _Collect)
        seen.extend((t, t._ssl_protocol) for t in (tr, servers[0].transport))
        await _close_pair(srv, tr, proto)
        return echoed

    assert pyloop_loop.run_until_complete(asyncio.wait_for(main(), TIMEOUT)) == b"hello"
    assert len(seen) == 4
    for transport, protocol in seen:
        assert isinstance(transport, sslproto._SSLProtocolTransport)
        assert isinstance(protocol, pyloop._core.TLSProtocol)
        assert isinstance(protocol, sslproto.SSLProtocol)


@pytest.mark.parametrize("kind", ["memoryview", "bytearray"])
def test_tls_buffered_app_protocol(tls_loop, read_ctx, loop_name, kind):
    # A BufferedProtocol app gets the decrypted bytes in its own (small)
    # buffer, all of them, in order.
    if kind == "bytearray" and loop_name == "asyncio":
        pytest.skip("the stdlib's _do_read__buffered reads into buf[offset:], a copy for a "
                    "bytearray, and loses those bytes (python/cpython#156275); pyloop's does not")
    blob = os.urandom(300000)

    class Buffered(asyncio.BufferedProtocol):
        def __init__(self):
            self.buf = bytearray(1000)
            self.data = bytearray()
            self.lost = asyncio.get_event_loop().create_future()

        def connection_made(self, transport):
            self.transport = transport

        def get_buffer(self, hint):
            return memoryview(self.buf) if kind == "memoryview" else self.buf

        def buffer_updated(self, n):
            self.data += self.buf[:n]

        def connection_lost(self, exc):
            self.lost.set_result(exc)

    async def main():
        srv, tr, proto, servers = await _tls_pair(tls_loop, *read_ctx, Buffered)
        servers[0].transport.write(blob)
        await wait_until(lambda: len(proto.data) == len(blob), "every byte arrived")
        await _close_pair(srv, tr, proto)
        return bytes(proto.data)

    assert run(tls_loop, main()) == blob


@pytest.mark.parametrize("fault", [None, "buffer_updated"])
def test_tls_buffered_app_protocol_eof_and_faults(tls_loop, read_ctx, fault):
    # close_notify reaches a BufferedProtocol app as eof_received and then
    # connection_lost(None); an exception from its buffer_updated is the
    # stdlib's fatal error (reported again when the close_notify behind the
    # data is read) and connection_lost(exc).
    contexts = []
    tls_loop.set_exception_handler(lambda lp, ctx: contexts.append(ctx))

    class Buffered(asyncio.BufferedProtocol):
        def __init__(self):
            self.buf = memoryview(bytearray(64))
            self.data = bytearray()
            self.events = []
            self.lost = asyncio.get_event_loop().create_future()

        def connection_made(self, transport):
            self.transport = transport

        def get_buffer(self, hint):
            if fault == "get_buffer":
                raise ZeroDivisionError("get_buffer")
            return self.buf

        def buffer_updated(self, n):
            if fault == "buffer_updated":
                raise ZeroDivisionError("buffer_updated")
            self.data += self.buf[:n]

        def eof_received(self):
            self.events.append("eof")

        def connection_lost(self, exc):
            self.events.append("lost")
            self.lost.set_result(exc)

    async def main():
        srv, tr, proto, servers = await _tls_pair(tls_loop, *read_ctx, Buffered)
        servers[0].transport.write(b"x" * 1000)
        servers[0].transport.close()  # close_notify after the data
        exc = await asyncio.wait_for(proto.lost, TIMEOUT)
        srv.close()
        await srv.wait_closed()
        return exc, proto

    exc, proto = run(tls_loop, main())
    if fault is None:
        assert exc is None
        assert bytes(proto.data) == b"x" * 1000
        assert proto.events == ["eof", "lost"]
    else:
        assert isinstance(exc, ZeroDivisionError) and str(exc) == fault
        assert contexts and all(c["message"] == "Fatal error on SSL protocol"
                                and isinstance(c["exception"], ZeroDivisionError)
                                for c in contexts)



# ---- BufferedProtocol apps after start_tls, and switching protocols ------------------


def recv_exactly(conn, size):
    data = bytearray()
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            raise ConnectionError(f"peer closed after {len(data)} of {size} bytes")
        data += chunk
    return bytes(data)


class _Sink:
    """What a chain of app protocols received over one TLS connection: the
    bytes, which kind of protocol each piece came through, and how it ended."""

    def __init__(self):
        self.loop = asyncio.get_running_loop()
        self.data = bytearray()
        self.pieces = []  # (protocol name, size)
        self.events = []
        self.lost = self.loop.create_future()
        self.want = None

    def add(self, who, data):
        self.data += data
        self.pieces.append((who, len(data)))
        if self.want is not None and len(self.data) >= self.want[1] and not self.want[0].done():
            self.want[0].set_result(None)

    def wait_for_total(self, size):
        self.want = (self.loop.create_future(), size)
        self.add("-", b"")
        self.pieces.pop()
        return self.want[0]


class _SinkProtocol:
    """An app protocol feeding a _Sink under `name`."""

    def __init__(self, sink, name):
        self.sink, self.name = sink, name

    def connection_made(self, transport):
        self.sink.events.append(f"made {self.name}")

    def eof_received(self):
        self.sink.events.append(f"eof {self.name}")

    def connection_lost(self, exc):
        self.sink.events.append(f"lost {self.name}")
        self.sink.lost.set_result(exc)


class _SinkBuffered(_SinkProtocol, asyncio.BufferedProtocol):
    """Reads through a 7-byte buffer of its own (a memoryview: the stdlib's
    _do_read__buffered loses data read into a bytearray's slices)."""

    def __init__(self, sink, name="buffered"):
        super().__init__(sink, name)
        self.mem = memoryview(bytearray(7))

    def get_buffer(self, sizehint):
        return self.mem

    def buffer_updated(self, nbytes):
        self.sink.add(self.name, bytes(self.mem[:nbytes]))


class _SinkCopied(_SinkProtocol, asyncio.Protocol):
    def data_received(self, data):
        self.sink.add(self.name, data)


def test_start_tls_delivers_to_a_buffered_protocol_and_set_protocol_switches(
        tls_loop, read_ctx):
    # A BufferedProtocol app upgraded with start_tls gets the decrypted bytes
    # through get_buffer/buffer_updated; set_protocol() on the TLS transport
    # switches it to a Protocol (data_received) and back, the next record
    # going to the new one; close_notify reaches the last one as eof_received
    # and connection_lost(None). start_tls calls no connection_made.
    server_ctx, client_ctx = read_ctx
    blobs = [os.urandom(n) for n in (70001, 5003, 90007)]

    def peer(conn):
        assert recv_exactly(conn, 8) == b"upgrade\n"
        tls = server_ctx.wrap_socket(conn, server_side=True)
        for blob in blobs:
            assert recv_exactly(tls, 4) == b"next"
            tls.sendall(blob)
        tls.unwrap()  # close_notify

    async def main(addr):
        sink = _Sink()
        tr, proto = await tls_loop.create_connection(lambda: _SinkBuffered(sink), *addr)
        tr.write(b"upgrade\n")
        tls = await tls_loop.start_tls(tr, proto, client_ctx, server_hostname="localhost")
        assert tls.get_protocol() is proto
        total = 0
        for blob, nxt in zip(blobs, (_SinkCopied(sink, "copied"), _SinkBuffered(sink, "again"),
                                     None)):
            total += len(blob)
            tls.write(b"next")
            await sink.wait_for_total(total)
            if nxt is not None:
                tls.set_protocol(nxt)
                assert tls.get_protocol() is nxt
        exc = await asyncio.wait_for(sink.lost, TIMEOUT)
        tls.close()
        return exc, sink

    with RawPeer(peer) as srv:
        exc, sink = run(tls_loop, main(srv.addr))
    assert exc is None
    assert bytes(sink.data) == b"".join(blobs)
    # each blob through the protocol set before it was asked for
    sizes = {}
    for who, n in sink.pieces:
        sizes[who] = sizes.get(who, 0) + n
    assert sizes == {"buffered": len(blobs[0]), "copied": len(blobs[1]), "again": len(blobs[2])}
    assert max(n for who, n in sink.pieces if who != "copied") <= 7
    assert sink.events == ["made buffered", "eof again", "lost again"]


@pytest.mark.parametrize("how", ["ssl", "start_tls"])
def test_tls_server_with_a_buffered_protocol(tls_loop, read_ctx, how):
    # The server side: a BufferedProtocol app behind create_server(ssl=) or
    # upgraded by start_tls(server_side=True) reads what the client sent.
    server_ctx, client_ctx = read_ctx
    blob = os.urandom(200003)

    async def main():
        sink = _Sink()
        upgraded = []

        def factory():
            proto = _SinkBuffered(sink)
            if how == "start_tls":
                # upgraded when the client asks, the plain line not delivered
                proto.get_buffer = lambda hint, mem=memoryview(bytearray(8)): mem

                def upgrade(n, proto=proto):
                    assert bytes(proto.get_buffer(0)[:n]) == b"upgrade\n"
                    del proto.get_buffer, proto.buffer_updated
                    # no more plain reads: the next bytes are the ClientHello
                    proto.transport.pause_reading()
                    upgraded.append(tls_loop.create_task(tls_loop.start_tls(
                        proto.transport, proto, server_ctx, server_side=True)))

                proto.buffer_updated = upgrade
                proto.connection_made = lambda t, proto=proto: setattr(proto, "transport", t)
            return proto

        srv = await tls_loop.create_server(factory, "127.0.0.1", 0,
                                           ssl=server_ctx if how == "ssl" else None)
        port = srv.sockets[0].getsockname()[1]
        if how == "ssl":
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, ssl=client_ctx, server_hostname="localhost")
        else:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"upgrade\n")
            await writer.start_tls(client_ctx, server_hostname="localhost")
        writer.write(blob)
        await sink.wait_for_total(len(blob))
        writer.close()
        exc = await asyncio.wait_for(sink.lost, TIMEOUT)
        await writer.wait_closed()
        for task in upgraded:
            await task
        srv.close()
        await srv.wait_closed()
        return exc, sink

    exc, sink = run(tls_loop, main())
    assert exc is None
    assert bytes(sink.data) == blob
    assert {who for who, n in sink.pieces} == {"buffered"}
    assert sink.events[-2:] == ["eof buffered", "lost buffered"]


@pytest.mark.parametrize("returned", ["bytes", "None", "list"])
def test_tls_buffered_app_protocol_gives_no_writable_buffer(tls_loop, read_ctx, returned):
    # get_buffer() returning what cannot be read into: the stdlib's TypeError
    # (len() of it, or SSLObject.read()'s check of it) is the fatal error of
    # the TLS protocol and reaches connection_lost; nothing is delivered.
    contexts = collect_exception_handler_calls(tls_loop)
    value = {"bytes": bytes(16), "None": None, "list": [0] * 16}[returned]

    class Bad(_SinkBuffered):
        def get_buffer(self, sizehint):
            return value

    async def main():
        sink = _Sink()
        srv = await tls_loop.create_server(_Collect, "127.0.0.1", 0, ssl=read_ctx[0])
        # the stdlib asks for a buffer right after the handshake, data or not
        await tls_loop.create_connection(lambda: Bad(sink), *srv.sockets[0].getsockname(),
                                         ssl=read_ctx[1], server_hostname="localhost")
        exc = await asyncio.wait_for(sink.lost, TIMEOUT)
        srv.close()
        await srv.wait_closed()
        return exc, sink

    exc, sink = run(tls_loop, main())
    assert isinstance(exc, TypeError)
    if returned == "None":
        assert str(exc) == "object of type 'NoneType' has no len()"
    else:
        assert "read-write" in str(exc)  # SSLObject.read()'s own wording
    assert sink.data == bytearray() and sink.events == ["made buffered", "lost buffered"]
    fatal = [c for c in contexts if c["message"] == "Fatal error on SSL protocol"]
    assert len(fatal) == 1 and fatal[0]["exception"] is exc


def test_start_tls_app_protocol_with_get_buffer_but_not_buffered(tls_loop, read_ctx):
    # uvloop's test_start_tls_client_buf_proto_1 upgrades an
    # asyncio.BaseProtocol that has get_buffer/buffer_updated. The stdlib
    # (every version) treats only a BufferedProtocol as one, so the first
    # record goes to data_received, which it lacks: the AttributeError is the
    # fatal error of the TLS protocol, the connection closes and the app's
    # connection_lost gets it, on both loops (nothing waits for ever).
    server_ctx, client_ctx = read_ctx
    contexts = collect_exception_handler_calls(tls_loop)
    calls = []

    class NotBuffered(asyncio.BaseProtocol):
        def __init__(self):
            self.lost = asyncio.get_running_loop().create_future()

        def get_buffer(self, sizehint):
            calls.append("get_buffer")
            return bytearray(100)

        def buffer_updated(self, nbytes):
            calls.append("buffer_updated")

        def connection_lost(self, exc):
            self.lost.set_result(exc)

    def peer(conn):
        assert recv_exactly(conn, 8) == b"upgrade\n"
        tls = server_ctx.wrap_socket(conn, server_side=True)
        tls.sendall(b"O")
        recv_until_eof(tls)

    async def main(addr):
        tr, proto = await tls_loop.create_connection(NotBuffered, *addr)
        tr.write(b"upgrade\n")
        tls = await tls_loop.start_tls(tr, proto, client_ctx, server_hostname="localhost")
        exc = await asyncio.wait_for(proto.lost, TIMEOUT)
        return exc, tls.is_closing(), tr.is_closing()

    with RawPeer(peer) as srv:
        exc, tls_closing, raw_closing = run(tls_loop, main(srv.addr))
    assert isinstance(exc, AttributeError) and "data_received" in str(exc)
    assert tls_closing and raw_closing
    assert calls == []
    fatal = [c for c in contexts if c["message"] == "Fatal error on SSL protocol"]
    assert len(fatal) == 1 and fatal[0]["exception"] is exc


def test_tls_sslobject_subclass_keeps_its_methods(tls_loop, tls_certs):
    # SSLContext.sslobject_class: reads and writes go through the subclass.
    calls = {"read": 0, "write": 0}

    class Counting(ssl.SSLObject):
        def read(self, len=1024, buffer=None):
            calls["read"] += 1
            return super().read(len, buffer)

        def write(self, data):
            calls["write"] += 1
            return super().write(data)

    client_ctx = tls_certs.client_context()
    client_ctx.sslobject_class = Counting

    async def main():
        srv, tr, proto, servers = await _tls_pair(
            tls_loop, tls_certs.server_context(), client_ctx, _Collect)
        tr.write(b"ping")
        await wait_until(lambda: servers[0].data == b"ping", "the server read")
        servers[0].transport.write(b"pong")
        await wait_until(lambda: proto.data == b"pong", "the client read")
        await _close_pair(srv, tr, proto)

    run(tls_loop, main())
    assert calls["write"] >= 1 and calls["read"] >= 1


def test_tls_protocol_base_cannot_crash(pyloop_loop):
    # The C base alone, or with attributes of the wrong type, raises; it
    # never dereferences what is not there.
    base = pyloop._core.TLSProtocol()
    for name in ("_do_read", "_do_write", "_process_outgoing", "_control_app_writing",
                 "_control_ssl_reading", "_get_write_buffer_size", "_get_read_buffer_size",
                 "_do_read__copied"):
        method = getattr(base, name)
        try:
            method()
        except (AttributeError, TypeError):
            pass
    with pytest.raises((AttributeError, TypeError)):
        base.buffer_updated(10)
    with pytest.raises(AttributeError):
        base._write_appdata([b"x"])
    with pytest.raises(TypeError):
        base.get_buffer("x")
    with pytest.raises(AttributeError):
        base._sslobj
    with pytest.raises(TypeError):
        base._ssl_writing_paused = 1
    with pytest.raises(TypeError):
        base._outgoing_high_water = "high"
    base._outgoing_high_water = 10.5
    assert base._outgoing_high_water == 10.5

    from pyloop.loop import _SSLProtocol
    ctx = ssl.create_default_context()
    proto = _SSLProtocol(pyloop_loop, asyncio.Protocol(), ctx, None, server_hostname="x")
    proto._incoming = 42
    with pytest.raises(AttributeError):
        proto._get_read_buffer_size()
    proto._write_backlog = None
    proto._do_write()  # None is an empty backlog to the stdlib too
    proto._write_backlog = 5
    with pytest.raises(TypeError):
        proto._do_write()
    proto._state = "not a state"  # neither closed nor wrapped: queued
    with pytest.raises(AttributeError):
        proto._write_appdata([b"x"])
    proto._ssl_buffer_view = b"read-only"
    with pytest.raises(AttributeError):
        proto.buffer_updated(3)
    proto._ssl_buffer = None
    with pytest.raises(TypeError):
        proto.get_buffer(10)
    del proto._sslobj
    with pytest.raises(AttributeError):
        proto._sslobj


def test_tls_protocol_bio_and_sslobj_reassigned(pyloop_loop):
    # The direct OpenSSL calls follow the objects assigned: a new MemoryBIO
    # is the one measured, an SSLObject over other BIOs is called through its
    # methods, and what is not a MemoryBIO fails as the stdlib does.
    from pyloop.loop import _SSLProtocol
    ctx = ssl.create_default_context()
    proto = _SSLProtocol(pyloop_loop, asyncio.Protocol(), ctx, None, server_hostname="x")
    assert proto._get_read_buffer_size() == 0
    incoming = ssl.MemoryBIO()
    incoming.write(b"abc")
    proto._incoming = incoming
    assert proto._get_read_buffer_size() == 3
    proto._outgoing = outgoing = ssl.MemoryBIO()
    outgoing.write(b"12345")
    proto._write_buffer_size = 2
    assert proto._get_write_buffer_size() == 7
    other_in, other_out = ssl.MemoryBIO(), ssl.MemoryBIO()
    proto._sslobj = ctx.wrap_bio(other_in, other_out, server_hostname="x")
    proto._state = asyncio.sslproto.SSLProtocolState.WRAPPED
    proto._app_protocol_is_buffer = False
    # _do_read reads the SSLObject (no handshake yet: SSLWantReadError,
    # swallowed), then sends what is in _outgoing to the transport, which is
    # not there: the stdlib's AttributeError goes to _fatal_error.
    errors = []
    proto._fatal_error = lambda exc, message="": errors.append(type(exc))
    proto._do_read()
    assert errors == [AttributeError]
    assert outgoing.pending == 0  # read out before the transport was needed
    proto._incoming = "not a BIO"
    with pytest.raises(AttributeError):
        proto._get_read_buffer_size()
    proto._outgoing = None
    with pytest.raises(AttributeError):
        proto._get_write_buffer_size()
    del proto._incoming
    with pytest.raises(AttributeError):
        proto._get_read_buffer_size()


def test_tls_direct_openssl_calls(tls_certs):
    # Where _ssl is a shared library on OpenSSL 1.1.1 or later (every
    # interpreter the tests run on), the per-record path calls OpenSSL
    # directly; PYLOOP_TLS_DIRECT=0 turns that off, and this file's TLS
    # tests then pass through the Python methods as well.
    import _ssl
    if os.environ.get("PYLOOP_TLS_DIRECT") == "0":
        assert pyloop._core._tls_direct is False
        return  # this is the run below
    if getattr(_ssl, "__file__", None) and ssl.OPENSSL_VERSION_INFO >= (1, 1, 1):
        assert pyloop._core._tls_direct is True
    env = dict(os.environ, PYLOOP_TLS_DIRECT="0")
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          "-k", "tls_ or garbage or close", __file__],
                         env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert " passed" in run.stdout and " failed" not in run.stdout


async def _collecting_server(loop, server_ctx):
    """A TLS server on `loop` and the list of its connections' _Collect
    protocols."""
    protos = []

    def factory():
        protos.append(_Collect())
        return protos[-1]

    srv = await loop.create_server(factory, "127.0.0.1", 0, ssl=server_ctx)
    return srv, protos


def _data_path_fault(loop, server_ctx, client_ctx, fault):
    """A TLS server on `loop` whose client, after the handshake and one
    record, sends a forged record or a TCP FIN without close_notify: what the
    server's protocol and the exception handler were given."""
    calls = collect_exception_handler_calls(loop)

    def client(addr, done):
        with socket.create_connection(addr, timeout=TIMEOUT) as raw:
            tls = client_ctx.wrap_socket(raw, server_hostname="localhost")
            tls.sendall(b"one record")
            if fault == "forged_record":
                # application data that was never encrypted: the MAC fails
                os.write(tls.fileno(), b"\x17\x03\x03\x00\x20" + bytes(32))
            else:
                tls.shutdown(socket.SHUT_WR)  # a FIN: SSLSocket.shutdown sends no close_notify
            done.wait(TIMEOUT)
            tls.close()

    async def main():
        srv, protos = await _collecting_server(loop, server_ctx)
        done = threading.Event()
        t = threading.Thread(target=client, args=(srv.sockets[0].getsockname(), done))
        t.start()
        try:
            await wait_until(lambda: protos, "the connection")
            proto = protos[0]
            exc = await proto.lost
        finally:
            done.set()
            await loop.run_in_executor(None, t.join)
            srv.close()
            await srv.wait_closed()
        return bytes(proto.data), exc

    data, exc = run(loop, main())
    seen = [(type(c.get("exception")), str(c.get("exception")), c.get("message")) for c in calls]
    return data, (type(exc), str(exc), getattr(exc, "reason", None),
                  getattr(exc, "library", None)), seen


@pytest.mark.parametrize("fault", ["forged_record", "fin_without_close_notify"])
def test_tls_data_path_errors_are_the_stdlibs(tls_certs, fault):
    # The record that fails to decrypt and the EOF in violation of the
    # protocol are found by the read on the data path, which pyloop makes
    # directly into OpenSSL: the exception, message included, is the one
    # _ssl raises on the stdlib loop.
    server_ctx, client_ctx = tls_certs.server_context(), tls_certs.client_context()
    results = {}
    for name, factory in (("asyncio", asyncio.new_event_loop), ("pyloop", pyloop.new_event_loop)):
        lp = factory()
        try:
            results[name] = _data_path_fault(lp, server_ctx, client_ctx, fault)
        finally:
            lp.close()
    # the exception and what the handler saw; the data depends on timing
    assert results["pyloop"][1:] == results["asyncio"][1:]
    data, exc, _ = results["pyloop"]
    # Records that arrive together are decrypted together: on both loops the
    # good one is dropped with the forged one that follows it, or delivered
    # when the peer's FIN came in a later read.
    assert data in (b"", b"one record")
    if fault == "forged_record":
        # OpenSSL 3.0 (Debian 12) names the failed decryption; newer OpenSSL
        # releases (Debian unstable's, under Python 3.14/3.15) report the record
        # layer failing.
        assert exc[0] is ssl.SSLError
        assert exc[2] in ("DECRYPTION_FAILED_OR_BAD_RECORD_MAC", "RECORD_LAYER_FAILURE")


def test_tls_msg_callback_errors_reach_the_protocol(tls_certs):
    # SSLContext._msg_callback runs inside _ssl's read(): what it raises is
    # what read() raises. pyloop keeps such connections on the Python
    # methods, so the error ends the connection as on the stdlib loop.
    class Boom(Exception):
        pass

    def run_on(factory):
        server_ctx, client_ctx = tls_certs.server_context(), tls_certs.client_context()
        armed = []

        def callback(conn, direction, version, content_type, msg_type, data):
            if armed and direction == "read" and content_type == ssl._TLSContentType.HEADER:
                raise Boom("from the message callback")

        server_ctx._msg_callback = callback
        lp = factory()
        collect_exception_handler_calls(lp)

        async def main():
            srv, protos = await _collecting_server(lp, server_ctx)
            port = srv.sockets[0].getsockname()[1]
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, ssl=client_ctx, server_hostname="localhost")
            writer.write(b"first")
            await wait_until(lambda: protos and protos[0].data == b"first", "first")
            proto = protos[0]
            armed.append(True)
            writer.write(b"second")
            exc = await asyncio.wait_for(proto.lost, TIMEOUT)
            writer.close()
            try:
                await writer.wait_closed()
            except (ConnectionError, ssl.SSLError):
                pass
            srv.close()
            await srv.wait_closed()
            return type(exc), str(exc), bytes(proto.data)

        try:
            return run(lp, main())
        finally:
            lp.close()

    reference = run_on(asyncio.new_event_loop)
    assert reference == (Boom, "from the message callback", b"first")
    assert run_on(pyloop.new_event_loop) == reference


def test_tls_protocol_makes_its_read_buffer_when_asked(pyloop_loop, read_ctx):
    # The stdlib's SSLProtocol makes and zero-fills a 256 KiB buffer per
    # connection for get_buffer(); pyloop's stream transport never asks for
    # it, so a connection holds none until something calls get_buffer(), which
    # then returns the same full-size buffer as the stdlib's.
    async def main():
        srv, tr, proto, servers = await _tls_pair(pyloop_loop, *read_ctx, _Collect)
        tr.write(b"ping")
        await wait_until(lambda: servers[0].data == b"ping", "the data")
        protocols = [tr._ssl_protocol, servers[0].transport._ssl_protocol]
        sizes = [len(p._ssl_buffer) for p in protocols]
        views = [len(p.get_buffer(100)) for p in protocols]
        again = protocols[0].get_buffer(-1) is protocols[0].get_buffer(100)
        await _close_pair(srv, tr, proto)
        return sizes, views, again

    sizes, views, again = run(pyloop_loop, main())
    max_size = asyncio.sslproto.SSLProtocol.max_size
    assert sizes == [0, 0]
    assert views == [max_size, max_size]
    assert again
