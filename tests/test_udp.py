"""create_datagram_endpoint and the datagram transport, on pyloop and the
stdlib loop (the `loop` fixture): the same observable behaviour on both."""
import asyncio
import gc
import logging
import os
import socket
import sys
import tempfile

import pytest

import pyloop

PY313 = sys.version_info >= (3, 13)


def _ipv6_available():
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


class Proto(asyncio.DatagramProtocol):
    def __init__(self):
        self.transport = None
        self.data = []
        self.errors = []
        self.events = []
        self.lost = asyncio.get_event_loop().create_future()
        self.arrived = asyncio.Event()

    def connection_made(self, transport):
        self.transport = transport
        self.events.append("made")

    def datagram_received(self, data, addr):
        self.data.append((data, addr))
        self.arrived.set()

    def error_received(self, exc):
        self.errors.append(exc)
        self.arrived.set()

    def connection_lost(self, exc):
        self.events.append("lost")
        if not self.lost.done():
            self.lost.set_result(exc)

    def pause_writing(self):
        self.events.append("pause")

    def resume_writing(self):
        self.events.append("resume")

    async def wait(self, n=1):
        while len(self.data) + len(self.errors) < n:
            self.arrived.clear()
            await asyncio.wait_for(self.arrived.wait(), 10)


def run(loop, coro):
    return loop.run_until_complete(asyncio.wait_for(coro, 30))


async def _echo(loop, host, family):
    server_t, server = await loop.create_datagram_endpoint(
        Proto, local_addr=(host, 0), family=family)
    addr = server_t.get_extra_info("sockname")
    client_t, client = await loop.create_datagram_endpoint(Proto, remote_addr=addr[:2])
    assert client.events == ["made"]
    client_t.sendto(b"ping")
    await server.wait()
    data, peer = server.data[0]
    assert data == b"ping"
    assert peer[:2] == client_t.get_extra_info("sockname")[:2]
    server_t.sendto(b"pong:" + data, peer)
    await client.wait()
    assert client.data[0] == (b"pong:ping", addr)
    client_t.close()
    server_t.close()
    assert await client.lost is None and await server.lost is None
    assert client.events == ["made", "lost"]


def test_echo_ipv4(loop):
    run(loop, _echo(loop, "127.0.0.1", socket.AF_INET))


@pytest.mark.skipif(not _ipv6_available(), reason="IPv6 loopback not available")
def test_echo_ipv6(loop):
    run(loop, _echo(loop, "::1", socket.AF_INET6))


def test_transport_types_and_extra_info(loop):
    async def main():
        t, p = await loop.create_datagram_endpoint(Proto, local_addr=("127.0.0.1", 0))
        assert isinstance(t, asyncio.BaseTransport)
        if loop_is_pyloop(loop) or sys.version_info >= (3, 12):
            assert isinstance(t, asyncio.DatagramTransport)
        sock = t.get_extra_info("socket")
        assert isinstance(sock, asyncio.trsock.TransportSocket)
        assert sock.type == socket.SOCK_DGRAM
        assert t.get_extra_info("sockname") == sock.getsockname()
        assert t.get_extra_info("peername") is None
        assert t.get_extra_info("nothing", 42) == 42
        assert t.get_protocol() is p
        assert not t.is_closing()
        assert t.get_write_buffer_size() == 0
        assert t.get_write_buffer_limits() == (16 * 1024, 64 * 1024)
        t.set_write_buffer_limits(high=100)
        assert t.get_write_buffer_limits() == (25, 100)
        with pytest.raises(ValueError):
            t.set_write_buffer_limits(high=1, low=2)
        t.close()
        await p.lost

    run(loop, main())


def loop_is_pyloop(loop):
    return isinstance(loop, pyloop.Loop)


def test_unconnected_sendto(loop):
    async def main():
        a_t, a = await loop.create_datagram_endpoint(Proto, local_addr=("127.0.0.1", 0))
        b_t, b = await loop.create_datagram_endpoint(Proto, local_addr=("127.0.0.1", 0))
        b_addr = b_t.get_extra_info("sockname")
        a_t.sendto(b"one", b_addr)
        a_t.sendto(bytearray(b"two"), b_addr)
        a_t.sendto(memoryview(b"three"), addr=b_addr)
        a_t.sendto(b"four", ("localhost", b_addr[1]))  # resolved like sock.sendto
        await b.wait(4)
        assert [d for d, _ in b.data] == [b"one", b"two", b"three", b"four"]
        assert {addr for _, addr in b.data} == {a_t.get_extra_info("sockname")}
        a_t.close()
        b_t.close()
        await a.lost
        await b.lost

    run(loop, main())


def test_connected_sendto_address_check(loop):
    async def main():
        s_t, s = await loop.create_datagram_endpoint(Proto, local_addr=("127.0.0.1", 0))
        addr = s_t.get_extra_info("sockname")
        c_t, c = await loop.create_datagram_endpoint(
            Proto, local_addr=("127.0.0.1", 0), remote_addr=addr)
        assert c_t.get_extra_info("peername") == addr
        with pytest.raises(ValueError, match="Invalid address"):
            c_t.sendto(b"x", ("127.0.0.1", 1))
        c_t.sendto(b"a", addr)  # the connected address itself is allowed
        c_t.sendto(b"b", None)
        await s.wait(2)
        assert [d for d, _ in s.data] == [b"a", b"b"]
        c_t.close()
        s_t.close()
        await c.lost
        await s.lost

    run(loop, main())


def test_wrong_types(loop):
    async def main():
        t, p = await loop.create_datagram_endpoint(Proto, local_addr=("127.0.0.1", 0))
        for bad in ("text", 1, None, [b"x"]):
            with pytest.raises(TypeError, match="bytes-like object"):
                t.sendto(bad, ("127.0.0.1", 9))
        t.sendto(b"")  # ignored (3.11, 3.12) or an empty datagram (3.13)
        t.close()
        await p.lost

    run(loop, main())
    with pytest.raises(ValueError):
        run(loop, loop.create_datagram_endpoint(Proto, local_addr=("127.0.0.1", 0),
                                                sock=socket.socket(socket.AF_INET,
                                                                   socket.SOCK_DGRAM)))
    with socket.socket() as tcp:
        with pytest.raises(ValueError):
            run(loop, loop.create_datagram_endpoint(Proto, sock=tcp))
    with pytest.raises(ValueError):
        run(loop, loop.create_datagram_endpoint(Proto))  # no address, no family


def test_unconnected_bad_address_is_fatal(loop):
    """sock.sendto() raising TypeError goes to _fatal_error on the stdlib:
    the exception handler sees it and the transport is closed."""
    seen = []
    loop.set_exception_handler(lambda lp, ctx: seen.append(ctx))

    async def main():
        t, p = await loop.create_datagram_endpoint(Proto, local_addr=("127.0.0.1", 0))
        t.sendto(b"x", "not an address")
        assert await p.lost is not None
        assert isinstance(seen[0]["exception"], TypeError)
        assert seen[0]["transport"] is t

    run(loop, main())


def test_sock_argument(loop):
    async def main():
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        t, p = await loop.create_datagram_endpoint(Proto, sock=sock)
        assert t.get_extra_info("sockname") == sock.getsockname()
        peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        peer.bind(("127.0.0.1", 0))
        peer.sendto(b"hi", sock.getsockname())
        await p.wait()
        assert p.data[0] == (b"hi", peer.getsockname())
        peer.close()
        t.close()
        await p.lost
        assert sock.fileno() == -1  # the transport owned it

    run(loop, main())


def test_reuse_port(loop):
    if not hasattr(socket, "SO_REUSEPORT"):
        pytest.skip("no SO_REUSEPORT")

    async def main():
        t1, p1 = await loop.create_datagram_endpoint(
            Proto, local_addr=("127.0.0.1", 0), reuse_port=True)
        sock = t1.get_extra_info("socket")
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT)
        # The user's SO_REUSEADDR stays as it was.
        assert not sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR)
        t2, p2 = await loop.create_datagram_endpoint(
            Proto, local_addr=t1.get_extra_info("sockname"), reuse_port=True)
        assert t2.get_extra_info("sockname") == t1.get_extra_info("sockname")
        t1.close()
        t2.close()
        await p1.lost
        await p2.lost

    run(loop, main())


def test_allow_broadcast(loop):
    async def main():
        t, p = await loop.create_datagram_endpoint(
            Proto, local_addr=("127.0.0.1", 0), allow_broadcast=True)
        sock = t.get_extra_info("socket")
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST)
        t.close()
        await p.lost

    run(loop, main())


def test_family_proto_flags(loop):
    async def main():
        t, p = await loop.create_datagram_endpoint(
            Proto, local_addr=("127.0.0.1", 0), family=socket.AF_INET,
            proto=socket.IPPROTO_UDP, flags=socket.AI_PASSIVE)
        sock = t.get_extra_info("socket")
        assert (sock.family, sock.proto) == (socket.AF_INET, socket.IPPROTO_UDP)
        t.close()
        await p.lost

    run(loop, main())


def test_unix_datagram(loop):
    async def main():
        with tempfile.TemporaryDirectory() as d:
            spath, cpath = os.path.join(d, "s.sock"), os.path.join(d, "c.sock")
            s_t, s = await loop.create_datagram_endpoint(
                Proto, local_addr=spath, family=socket.AF_UNIX)
            c_t, c = await loop.create_datagram_endpoint(
                Proto, local_addr=cpath, remote_addr=spath, family=socket.AF_UNIX)
            assert isinstance(c_t, asyncio.BaseTransport)
            assert c_t.get_extra_info("peername") == spath
            assert s_t.get_extra_info("sockname") == spath
            c_t.sendto(b"over unix")
            await s.wait()
            assert s.data == [(b"over unix", cpath)]
            s_t.sendto(b"reply", cpath)
            await c.wait()
            assert c.data == [(b"reply", spath)]
            with pytest.raises(ValueError):
                c_t.sendto(b"x", "/elsewhere")
            c_t.close()
            s_t.close()
            await c.lost
            await s.lost

    run(loop, main())


def test_error_received_connection_refused(loop):
    """A connected socket sending to a closed port: the ICMP error comes
    back as ConnectionRefusedError through error_received."""
    async def main():
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tmp:
            tmp.bind(("127.0.0.1", 0))
            closed_addr = tmp.getsockname()
        t, p = await loop.create_datagram_endpoint(Proto, remote_addr=closed_addr)
        t.sendto(b"anyone?")
        while not p.errors:
            await p.wait()
            t.sendto(b"anyone?")
        assert isinstance(p.errors[0], ConnectionRefusedError)
        assert not t.is_closing()  # not fatal
        t.close()
        assert await p.lost is None

    run(loop, main())


def test_unconnected_send_to_closed_port_keeps_receiving(loop):
    async def main():
        a_t, a = await loop.create_datagram_endpoint(Proto, local_addr=("127.0.0.1", 0))
        b_t, b = await loop.create_datagram_endpoint(Proto, local_addr=("127.0.0.1", 0))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tmp:
            tmp.bind(("127.0.0.1", 0))
            closed_addr = tmp.getsockname()
        a_t.sendto(b"void", closed_addr)
        await asyncio.sleep(0)
        b_t.sendto(b"still here", a_t.get_extra_info("sockname"))
        await a.wait()
        assert a.data[0][0] == b"still here"
        a_t.close()
        b_t.close()
        await a.lost
        await b.lost

    run(loop, main())


def test_flow_control_when_kernel_buffer_fills(loop):
    """An AF_UNIX datagram peer that does not read makes the sender's kernel
    queue fill (EAGAIN), deterministically: sendto() queues, pause_writing()
    at the high water mark, resume_writing() once drained below the low one.
    (UDP over loopback drops datagrams instead of blocking the sender.)"""
    async def main():
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "r.sock")
            receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            receiver.bind(path)
            receiver.setblocking(False)
            t, p = await loop.create_datagram_endpoint(
                Proto, remote_addr=path, family=socket.AF_UNIX)
            t.set_write_buffer_limits(high=4096, low=1024)
            chunk = b"x" * 1024
            sent = 0
            while "pause" not in p.events and sent < 100000:
                t.sendto(chunk)
                sent += 1
            assert "pause" in p.events
            assert t.get_write_buffer_size() > 4096
            got = 0
            while "resume" not in p.events:
                try:
                    while True:
                        receiver.recv(2048)
                        got += 1
                except BlockingIOError:
                    pass
                await asyncio.sleep(0)
            assert p.events == ["made", "pause", "resume"]
            assert t.get_write_buffer_size() <= 1024
            t.abort()
            await p.lost
            if loop_is_pyloop(loop):
                # The stdlib's count can stay stale here (3.13.0 adds 8 bytes
                # per queued datagram and takes off only the data's length).
                assert t.get_write_buffer_size() == 0
            receiver.close()

    run(loop, main())


def test_calls_after_close(loop, caplog):
    async def main():
        s_t, s = await loop.create_datagram_endpoint(Proto, local_addr=("127.0.0.1", 0))
        t, p = await loop.create_datagram_endpoint(
            Proto, remote_addr=s_t.get_extra_info("sockname"))
        t.close()
        t.close()  # twice: nothing more
        assert t.is_closing()
        await p.lost
        assert p.events == ["made", "lost"]
        with caplog.at_level(logging.WARNING, logger="asyncio"):
            for _ in range(6):
                t.sendto(b"dropped")
        assert "socket.send() raised exception." in caplog.text
        t.abort()
        t.close()
        assert p.events == ["made", "lost"]
        s_t.close()
        await s.lost
        assert s.data == []

    run(loop, main())


def test_abort(loop):
    async def main():
        t, p = await loop.create_datagram_endpoint(Proto, local_addr=("127.0.0.1", 0))
        t.abort()
        assert t.is_closing()
        t.abort()
        assert await p.lost is None
        assert p.events == ["made", "lost"]

    run(loop, main())


def test_close_in_datagram_received(loop):
    class Closer(Proto):
        def datagram_received(self, data, addr):
            super().datagram_received(data, addr)
            self.transport.close()

    async def main():
        t, p = await loop.create_datagram_endpoint(Closer, local_addr=("127.0.0.1", 0))
        t.pause_reading()  # queued while paused: they then arrive as one burst
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
            for i in range(5):
                peer.sendto(b"%d" % i, t.get_extra_info("sockname"))
            t.resume_reading()
            assert await p.lost is None
        assert [d for d, _ in p.data] == [b"0"]

    run(loop, main())


def test_protocol_exception_reaches_handler(loop):
    seen = []
    loop.set_exception_handler(lambda lp, ctx: seen.append(ctx))

    class Bad(Proto):
        def datagram_received(self, data, addr):
            super().datagram_received(data, addr)
            raise ZeroDivisionError

    async def main():
        t, p = await loop.create_datagram_endpoint(Bad, local_addr=("127.0.0.1", 0))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
            peer.sendto(b"a", t.get_extra_info("sockname"))
            peer.sendto(b"b", t.get_extra_info("sockname"))
            await p.wait(2)
        assert not t.is_closing()
        t.close()
        await p.lost

    run(loop, main())
    assert len(seen) == 2
    assert all(isinstance(c["exception"], ZeroDivisionError) for c in seen)


def test_pause_resume_reading(loop):
    async def main():
        t, p = await loop.create_datagram_endpoint(Proto, local_addr=("127.0.0.1", 0))
        t.pause_reading()
        assert not t.is_reading()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
            peer.sendto(b"later", t.get_extra_info("sockname"))
            for _ in range(5):
                await asyncio.sleep(0.01)
            assert p.data == []
            t.resume_reading()
            await p.wait()
        assert p.data[0][0] == b"later"
        t.close()
        await p.lost

    run(loop, main())


def test_pause_inside_a_burst_loses_nothing(loop):
    # Datagrams already queued on the socket arrive together (pyloop reads
    # them with one recvmmsg); pausing on one of them holds back the rest,
    # which all arrive, in order, after resume_reading().
    class Pausing(Proto):
        violations = 0

        def datagram_received(self, data, addr):
            if not self.transport.is_reading():
                self.violations += 1
            super().datagram_received(data, addr)
            if len(self.data) % 3 == 0:
                self.transport.pause_reading()
                asyncio.get_running_loop().call_later(0.01, self.transport.resume_reading)

    async def main():
        t, p = await loop.create_datagram_endpoint(Pausing, local_addr=("127.0.0.1", 0))
        t.pause_reading()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
            for i in range(10):
                peer.sendto(b"%d" % i, t.get_extra_info("sockname"))
            t.resume_reading()
            await p.wait(10)
        assert [d for d, _ in p.data] == [b"%d" % i for i in range(10)]
        assert p.violations == 0
        t.close()
        await p.lost

    run(loop, main())


def test_sendfile_not_supported(loop):
    async def main():
        t, p = await loop.create_datagram_endpoint(Proto, local_addr=("127.0.0.1", 0))
        with tempfile.TemporaryFile() as f:
            with pytest.raises(RuntimeError, match="not supported"):
                await loop.sendfile(t, f)
        t.close()
        await p.lost

    run(loop, main())


def test_cannot_construct_directly():
    with pytest.raises(TypeError):
        pyloop._core.UDPTransport()


def test_counters_balance_after_close():
    before = pyloop._core._counters()
    loop = pyloop.new_event_loop()

    async def main():
        s_t, s = await loop.create_datagram_endpoint(Proto, local_addr=("127.0.0.1", 0))
        c_t, c = await loop.create_datagram_endpoint(
            Proto, remote_addr=s_t.get_extra_info("sockname"))
        for _ in range(100):
            c_t.sendto(b"y" * 1000)
        c_t.close()
        await c.lost
        # An endpoint left open is closed by loop.close().
        return s_t

    left_open = loop.run_until_complete(main())
    loop.close()
    assert left_open.is_closing()
    del left_open
    gc.collect()
    after = pyloop._core._counters()
    assert after["handles_created"] - before["handles_created"] >= 2
    assert (after["handles_created"] - before["handles_created"]
            == after["handles_freed"] - before["handles_freed"])
    assert (after["requests_created"] - before["requests_created"]
            == after["requests_freed"] - before["requests_freed"])


def test_alternating_peers_keep_their_addresses(loop):
    # Peers taking turns: each datagram reports its own sender, and replies
    # sent to each address (the same tuple objects or equal new ones) reach
    # the right peer.
    async def main():
        server, sproto = await loop.create_datagram_endpoint(
            Proto, local_addr=("127.0.0.1", 0))
        addr = server.get_extra_info("sockname")
        peers = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2)]
        for p in peers:
            p.bind(("127.0.0.1", 0))
            p.settimeout(10)
        seen = []
        try:
            for i in range(6):
                p = peers[i % 2]
                p.sendto(b"%d" % i, addr)
                while len(sproto.data) <= i:
                    sproto.arrived.clear()
                    await asyncio.wait_for(sproto.arrived.wait(), 10)
                data, src = sproto.data[i]
                seen.append((data, src))
                reply_to = src if i < 4 else tuple(src)  # the same object, then an equal copy
                server.sendto(b"re:" + data, reply_to)
                got, _ = await loop.run_in_executor(None, p.recvfrom, 100)
                assert got == b"re:" + data
        finally:
            for p in peers:
                p.close()
            server.close()
        return seen

    seen = loop.run_until_complete(main())
    assert [d for d, _ in seen] == [b"%d" % i for i in range(6)]
    assert seen[0][1] != seen[1][1]
    assert all(seen[i][1] == seen[i % 2][1] for i in range(6))
