"""_core._counters(): every libuv handle and request the core makes (the
loop's own included) and the transports of each kind, created and freed.
After loop.close() and a collection each pair is equal."""
import asyncio
import gc
import os
import socket
import sys

import pytest

import pyloop

KINDS = ("tcp", "unix", "udp", "tls", "pipe", "subprocess")
LOOP_OWN_HANDLES = 5  # gil_prepare, deadline_timer, wake/sig/epfd polls
TIMEOUT = 30


def delta(before, after):
    return {k: after[k] - before[k] for k in after}


def test_counters_name_every_kind():
    names = set(pyloop._core._counters())
    assert names == ({"handles_created", "handles_freed", "requests_created", "requests_freed"}
                     | {f"{k}_transports_{e}" for k in KINDS for e in ("created", "freed")})


def test_the_loops_own_handles_are_counted():
    before = pyloop._core._counters()
    loop = pyloop.new_event_loop()
    opened = delta(before, pyloop._core._counters())
    loop.run_until_complete(asyncio.sleep(0.001))
    loop.call_later(10, print)
    loop.close()
    closed = delta(before, pyloop._core._counters())
    assert opened["handles_created"] == LOOP_OWN_HANDLES and opened["handles_freed"] == 0
    assert closed["handles_created"] == closed["handles_freed"] == LOOP_OWN_HANDLES


class Proto(asyncio.Protocol):
    """Records the end of a connection, a pipe or a datagram endpoint."""

    def __init__(self):
        self.lost = asyncio.get_running_loop().create_future()
        self.data = bytearray()

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.data += data

    def datagram_received(self, data, addr):
        self.data += data

    def connection_lost(self, exc):
        if not self.lost.done():
            self.lost.set_result(exc)


class Children(asyncio.SubprocessProtocol):
    def __init__(self):
        self.exited = asyncio.get_running_loop().create_future()

    def process_exited(self):
        self.exited.set_result(None)


async def _pair(loop, connect, serve, **kw):
    """A connection from `connect` to a server made by `serve`: both ends
    exchange a message, then the client closes and both ends see it."""
    servers = []

    def factory():
        servers.append(Proto())
        return servers[-1]

    srv = await serve(factory, **kw.get("server", {}))
    tr, client = await connect(Proto, srv.sockets[0].getsockname(), **kw.get("client", {}))
    tr.write(b"x" * 300000)  # more than the socket takes at once: a libuv write request
    while not servers or len(servers[0].data) < 300000:
        await asyncio.sleep(0.01)
    tr.close()
    await client.lost
    await servers[0].lost
    srv.close()
    await srv.wait_closed()


async def _every_kind(loop, tls_certs, tmp_path):
    async def tcp_server(factory, **kw):
        return await loop.create_server(factory, "127.0.0.1", 0, **kw)

    async def tcp_connect(factory, addr, **kw):
        return await loop.create_connection(factory, *addr, **kw)

    await _pair(loop, tcp_connect, tcp_server)
    await _pair(loop, tcp_connect, tcp_server,
                server={"ssl": tls_certs.server_context()},
                client={"ssl": tls_certs.client_context(), "server_hostname": "localhost"})
    path = str(tmp_path / "sock")
    await _pair(loop, lambda f, addr: loop.create_unix_connection(f, addr),
                lambda f: loop.create_unix_server(f, path))

    server_t, server = await loop.create_datagram_endpoint(Proto, local_addr=("127.0.0.1", 0))
    client_t, client = await loop.create_datagram_endpoint(
        Proto, remote_addr=server_t.get_extra_info("sockname"))
    client_t.sendto(b"ping")
    while not server.data:
        await asyncio.sleep(0.01)
    client_t.close()
    server_t.close()
    await client.lost
    await server.lost

    rfd, wfd = os.pipe()
    reader_t, reader = await loop.connect_read_pipe(Proto, os.fdopen(rfd, "rb", 0))
    writer_t, writer = await loop.connect_write_pipe(Proto, os.fdopen(wfd, "wb", 0))
    writer_t.write(b"through the pipe")
    writer_t.close()
    await writer.lost
    await reader.lost
    assert bytes(reader.data) == b"through the pipe"

    proc_t, proc = await loop.subprocess_exec(
        Children, sys.executable, "-c", "import sys; sys.stdout.write(sys.stdin.read())")
    proc_t.get_pipe_transport(0).write(b"echo")
    proc_t.get_pipe_transport(0).close()
    await proc.exited
    proc_t.close()


def test_every_transport_kind_and_handle_is_freed(tls_certs, tmp_path):
    # One TCP, one TLS and one Unix connection (both ends on this loop), two
    # UDP endpoints, a read and a write pipe and a child with its three
    # stdio pipes: each kind is made as often as that, and freed as often.
    gc.collect()
    before = pyloop._core._counters()
    loop = pyloop.new_event_loop()
    try:
        loop.run_until_complete(asyncio.wait_for(_every_kind(loop, tls_certs, tmp_path),
                                                 TIMEOUT))
    finally:
        loop.close()
    del loop
    gc.collect()
    d = delta(before, pyloop._core._counters())
    made = {k: d[f"{k}_transports_created"] for k in KINDS}
    freed = {k: d[f"{k}_transports_freed"] for k in KINDS}
    # TCP: both ends of the plain and of the TLS connection; pipes: the two
    # and the child's stdin, stdout and stderr
    assert made == {"tcp": 4, "unix": 2, "udp": 2, "tls": 2, "pipe": 5, "subprocess": 1}
    assert freed == made
    # the loop's own, one per TCP, Unix, UDP and pipe transport (the two
    # pipes and the child's stdin, stdout and stderr) and one per listening
    # socket (the TCP, TLS and Unix servers' watchers, poll.c)
    assert d["handles_created"] == LOOP_OWN_HANDLES + 13 + 3
    assert d["handles_freed"] == d["handles_created"]
    assert d["requests_created"] > 0
    assert d["requests_freed"] == d["requests_created"]


def test_transports_left_open_are_freed_by_close():
    # A transport the program never closed: loop.close() closes it, and it
    # counts as freed once its handle's close callback ran.
    before = pyloop._core._counters()
    loop = pyloop.new_event_loop()
    a, b = socket.socketpair()

    async def main():
        tr, _ = await loop.connect_accepted_socket(asyncio.Protocol, a)
        return tr

    tr = loop.run_until_complete(main())
    opened = delta(before, pyloop._core._counters())
    assert opened["unix_transports_created"] == 1 and opened["unix_transports_freed"] == 0
    loop.close()
    del tr
    gc.collect()
    d = delta(before, pyloop._core._counters())
    assert d["unix_transports_freed"] == d["unix_transports_created"] == 1
    assert d["handles_freed"] == d["handles_created"] == LOOP_OWN_HANDLES + 1
    b.close()


def test_write_pipe_left_open_is_freed_by_close():
    # loop.close() closes the write pipe transport's libuv handle (on its
    # own duplicate of the fd); the caller's pipe stays the caller's.
    before = pyloop._core._counters()
    loop = pyloop.new_event_loop()
    rfd, wfd = os.pipe()
    pipe = os.fdopen(wfd, "wb", 0)

    async def main():
        tr, _ = await loop.connect_write_pipe(asyncio.Protocol, pipe)
        tr.write(b"queued")
        return tr

    tr = loop.run_until_complete(main())
    loop.close()
    del tr
    gc.collect()
    d = delta(before, pyloop._core._counters())
    assert d["pipe_transports_freed"] == d["pipe_transports_created"] == 1
    assert d["handles_freed"] == d["handles_created"] == LOOP_OWN_HANDLES + 1
    assert not pipe.closed
    pipe.write(b" and more")
    pipe.close()
    assert os.read(rfd, 100) == b"queued and more"
    os.close(rfd)


def test_count_transport_checks_its_arguments():
    with pytest.raises(ValueError):
        pyloop._core._count_transport("carrier pigeon", object())
    with pytest.raises(TypeError):
        pyloop._core._count_transport("pipe")
    with pytest.raises(TypeError):  # not weakly referable
        pyloop._core._count_transport("pipe", 1)
