"""loop.sendfile() and loop.sock_sendfile() on each loop: native os.sendfile for
regular files, the read-and-write fallback for anything else, offsets, counts,
the file position afterwards, and the errors the stdlib raises."""
import asyncio
import io
import os
import socket
import tempfile

import pytest

DATA = os.urandom(3 * 1024 * 1024 + 123)  # larger than any socket buffer


class Collect(asyncio.Protocol):
    def __init__(self, loop):
        self.data = bytearray()
        self.done = loop.create_future()

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.data += data

    def eof_received(self):
        return False

    def connection_lost(self, exc):
        if not self.done.done():
            self.done.set_result(bytes(self.data))


class Sender(asyncio.Protocol):
    def __init__(self):
        self.lost = None
        self.paused = 0

    def connection_made(self, transport):
        self.transport = transport

    def connection_lost(self, exc):
        self.lost = exc

    def pause_writing(self):
        self.paused += 1


@pytest.fixture
def datafile():
    with tempfile.TemporaryFile() as f:
        f.write(DATA)
        f.flush()
        f.seek(0)
        yield f


async def _pair(loop, family):
    """A server that collects what it receives, and a connected client."""
    collector = Collect(loop)
    if family == "unix":
        path = os.path.join(tempfile.mkdtemp(), "s")
        srv = await loop.create_unix_server(lambda: collector, path)
        tr, proto = await loop.create_unix_connection(Sender, path)
    else:
        srv = await loop.create_server(lambda: collector, "127.0.0.1", 0)
        port = srv.sockets[0].getsockname()[1]
        tr, proto = await loop.create_connection(Sender, "127.0.0.1", port)
    return srv, collector, tr, proto


@pytest.mark.parametrize("family", ["tcp", "unix"])
@pytest.mark.parametrize("offset,count", [(0, None), (1000, None), (17, 100_000)])
def test_sendfile_regular_file(loop, datafile, family, offset, count):
    async def main():
        srv, collector, tr, proto = await _pair(loop, family)
        tr.write(b"head:")
        sent = await loop.sendfile(tr, datafile, offset, count)
        tr.write(b":tail")
        position = datafile.tell()
        tr.close()
        got = await asyncio.wait_for(collector.done, 60)
        srv.close()
        await srv.wait_closed()
        return sent, position, got

    sent, position, got = loop.run_until_complete(main())
    expected = DATA[offset:offset + count] if count else DATA[offset:]
    assert sent == len(expected)
    assert position == offset + sent
    assert got == b"head:" + expected + b":tail"


def test_sendfile_fallback_for_a_file_without_fd(loop):
    async def main():
        srv, collector, tr, proto = await _pair(loop, "tcp")
        f = io.BytesIO(DATA)
        sent = await loop.sendfile(tr, f, 5)
        # The transport's own protocol is back in place after the fallback.
        assert tr.get_protocol() is proto
        tr.close()
        got = await asyncio.wait_for(collector.done, 60)
        srv.close()
        await srv.wait_closed()
        return sent, f.tell(), got

    sent, position, got = loop.run_until_complete(main())
    assert got == DATA[5:]
    assert sent == len(DATA) - 5
    assert position == len(DATA)


def test_sendfile_no_fallback_raises(loop):
    async def main():
        srv, collector, tr, proto = await _pair(loop, "tcp")
        try:
            with pytest.raises((RuntimeError, asyncio.SendfileNotAvailableError)):
                await loop.sendfile(tr, io.BytesIO(b"x"), fallback=False)
        finally:
            tr.close()
            srv.close()
            await srv.wait_closed()

    loop.run_until_complete(main())


def test_write_during_sendfile_is_refused(loop, datafile):
    async def main():
        srv, collector, tr, proto = await _pair(loop, "tcp")
        task = asyncio.ensure_future(loop.sendfile(tr, datafile))
        await asyncio.sleep(0)
        with pytest.raises(RuntimeError, match="sendfile is in progress"):
            tr.write(b"interleaved")
        await task
        tr.write(b"after")  # allowed again once sendfile returned
        tr.close()
        got = await asyncio.wait_for(collector.done, 60)
        srv.close()
        await srv.wait_closed()
        return got

    assert loop.run_until_complete(main()) == DATA + b"after"


def test_sendfile_on_closing_transport(loop, datafile):
    async def main():
        srv, collector, tr, proto = await _pair(loop, "tcp")
        tr.close()
        with pytest.raises(RuntimeError, match="closing"):
            await loop.sendfile(tr, datafile)
        srv.close()
        await srv.wait_closed()

    loop.run_until_complete(main())


def test_sendfile_peer_closes_midway(loop, datafile):
    class Closer(asyncio.Protocol):
        def connection_made(self, transport):
            self.transport = transport

        def data_received(self, data):
            self.transport.abort()

    async def main():
        srv = await loop.create_server(Closer, "127.0.0.1", 0)
        port = srv.sockets[0].getsockname()[1]
        tr, proto = await loop.create_connection(Sender, "127.0.0.1", port)
        big = tempfile.TemporaryFile()
        big.write(DATA * 8)
        big.flush()
        big.seek(0)
        with pytest.raises(ConnectionError):
            await asyncio.wait_for(loop.sendfile(tr, big), 60)
        # What was sent is reflected in the file position, as the stdlib does.
        assert 0 <= big.tell() < len(DATA) * 8
        big.close()
        tr.close()
        srv.close()
        await srv.wait_closed()

    loop.run_until_complete(main())


def test_sock_sendfile(loop, datafile):
    async def main():
        a, b = socket.socketpair()
        a.setblocking(False)
        b.setblocking(False)
        with a, b:
            async def reader():
                buf = bytearray()
                while len(buf) < len(DATA) - 10:
                    chunk = await loop.sock_recv(b, 65536)
                    if not chunk:
                        break
                    buf += chunk
                return bytes(buf)

            rtask = asyncio.ensure_future(reader())
            sent = await loop.sock_sendfile(a, datafile, 10)
            got = await asyncio.wait_for(rtask, 60)
        return sent, got

    sent, got = loop.run_until_complete(main())
    assert sent == len(DATA) - 10
    assert got == DATA[10:]


def test_sock_sendfile_datagram_socket_rejected(loop, datafile):
    async def main():
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.setblocking(False)
            with pytest.raises(ValueError, match="SOCK_STREAM"):
                await loop.sock_sendfile(s, datafile)

    loop.run_until_complete(main())


def test_sendfile_text_file_rejected(loop):
    async def main():
        srv, collector, tr, proto = await _pair(loop, "tcp")
        try:
            with tempfile.TemporaryFile("w+") as f:
                with pytest.raises(ValueError, match="binary mode"):
                    await loop.sendfile(tr, f)
        finally:
            tr.close()
            srv.close()
            await srv.wait_closed()

    loop.run_until_complete(main())
