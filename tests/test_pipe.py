"""connect_read_pipe / connect_write_pipe on each loop: pipes, FIFOs, sockets,
PTYs; regular files refused; the write side notices its reader going away."""
import asyncio
import errno
import os
import pty
import socket
import stat
import tempfile

import pytest


class ReadProto(asyncio.Protocol):
    def __init__(self, loop):
        self.data = bytearray()
        self.events = []
        self.lost = loop.create_future()

    def connection_made(self, transport):
        self.events.append("made")

    def data_received(self, data):
        self.data += data

    def eof_received(self):
        self.events.append("eof")

    def connection_lost(self, exc):
        self.events.append("lost")
        self.lost.set_result(exc)


class WriteProto(asyncio.Protocol):
    def __init__(self, loop):
        self.lost = loop.create_future()
        self.paused = 0

    def pause_writing(self):
        self.paused += 1

    def resume_writing(self):
        pass

    def connection_lost(self, exc):
        self.lost.set_result(exc)


def test_read_pipe_to_eof(loop):
    r, w = os.pipe()

    async def main():
        tr, proto = await loop.connect_read_pipe(lambda: ReadProto(loop), os.fdopen(r, "rb", 0))
        assert isinstance(tr, asyncio.ReadTransport)
        assert tr.get_extra_info("pipe").fileno() == r
        assert tr.is_reading()
        os.write(w, b"hello ")
        os.write(w, b"pipe")
        os.close(w)
        exc = await asyncio.wait_for(proto.lost, 30)
        return exc, proto

    exc, proto = loop.run_until_complete(main())
    assert exc is None
    assert bytes(proto.data) == b"hello pipe"
    assert proto.events == ["made", "eof", "lost"]


def test_pause_and_resume_reading(loop):
    r, w = os.pipe()

    async def main():
        tr, proto = await loop.connect_read_pipe(lambda: ReadProto(loop), os.fdopen(r, "rb", 0))
        tr.pause_reading()
        assert not tr.is_reading()
        os.write(w, b"held")
        for _ in range(5):
            await asyncio.sleep(0)
        held = bytes(proto.data)
        tr.resume_reading()
        os.close(w)
        await asyncio.wait_for(proto.lost, 30)
        return held, bytes(proto.data)

    held, data = loop.run_until_complete(main())
    assert held == b""
    assert data == b"held"


def test_write_pipe(loop):
    r, w = os.pipe()

    async def main():
        tr, proto = await loop.connect_write_pipe(lambda: WriteProto(loop), os.fdopen(w, "wb", 0))
        assert isinstance(tr, asyncio.WriteTransport)
        assert tr.can_write_eof()
        payload = os.urandom(1024 * 1024)  # more than a pipe holds: queued, flow control
        tr.write(payload)
        assert tr.get_write_buffer_size() > 0
        assert proto.paused == 1
        got = bytearray()
        reader = os.fdopen(r, "rb", 0)
        os.set_blocking(r, False)
        while len(got) < len(payload):
            try:
                chunk = reader.read(65536)
            except BlockingIOError:
                chunk = None
            if chunk:
                got += chunk
            else:
                await asyncio.sleep(0.001)
        tr.close()
        exc = await asyncio.wait_for(proto.lost, 30)
        reader.close()
        return exc, bytes(got) == payload

    exc, intact = loop.run_until_complete(main())
    assert exc is None
    assert intact


def test_write_pipe_notices_reader_going_away(loop):
    r, w = os.pipe()

    async def main():
        tr, proto = await loop.connect_write_pipe(lambda: WriteProto(loop), os.fdopen(w, "wb", 0))
        os.close(r)
        exc = await asyncio.wait_for(proto.lost, 30)
        return tr, exc

    tr, exc = loop.run_until_complete(main())
    assert exc is None  # nothing was queued: a plain close
    assert tr.is_closing()


def test_fifo_and_socket_and_pty_accepted(loop):
    d = tempfile.mkdtemp()
    fifo = os.path.join(d, "fifo")
    os.mkfifo(fifo)
    rfd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    wfd = os.open(fifo, os.O_WRONLY)
    a, b = socket.socketpair()
    master, slave = pty.openpty()

    async def main():
        results = []
        for pipe in (os.fdopen(rfd, "rb", 0), a, os.fdopen(slave, "rb", 0)):
            tr, proto = await loop.connect_read_pipe(lambda: ReadProto(loop), pipe)
            results.append(stat.S_IFMT(os.fstat(pipe.fileno()).st_mode))
            tr.close()
            await asyncio.wait_for(proto.lost, 30)
        return results

    try:
        kinds = loop.run_until_complete(main())
    finally:
        os.close(wfd)
        b.close()
        os.close(master)
    assert kinds == [stat.S_IFIFO, stat.S_IFSOCK, stat.S_IFCHR]


@pytest.mark.parametrize("method", ["connect_read_pipe", "connect_write_pipe"])
def test_regular_file_refused(loop, method):
    with tempfile.TemporaryFile() as f:
        with pytest.raises(ValueError, match="[Pp]ipe transport"):
            loop.run_until_complete(getattr(loop, method)(asyncio.Protocol, f))
        # The file is the caller's and stays usable.
        f.write(b"still open")


def test_read_pipe_large_stream_in_order(loop):
    # Far more than one read's worth (a pipe holds 64 KiB): every byte, in order.
    r, w = os.pipe()
    payload = bytes(range(256)) * 4096  # 1 MiB

    async def main():
        tr, proto = await loop.connect_read_pipe(lambda: ReadProto(loop), os.fdopen(r, "rb", 0))
        wtr, wproto = await loop.connect_write_pipe(lambda: WriteProto(loop), os.fdopen(w, "wb", 0))
        wtr.write(payload)
        wtr.close()
        assert await asyncio.wait_for(wproto.lost, 30) is None
        return await asyncio.wait_for(proto.lost, 30), proto

    exc, proto = loop.run_until_complete(main())
    assert exc is None
    assert bytes(proto.data) == payload
    assert proto.events == ["made", "eof", "lost"]


def test_pty_hangup_is_a_quiet_eio(loop):
    # The other side of a pty going away reads as EIO: the stdlib ends the
    # transport with that error and does not call the exception handler.
    master, slave = pty.openpty()
    seen = []
    loop.set_exception_handler(lambda lp, ctx: seen.append(ctx))

    async def main():
        tr, proto = await loop.connect_read_pipe(lambda: ReadProto(loop), os.fdopen(master, "rb", 0))
        os.write(slave, b"line\n")
        os.close(slave)
        return await asyncio.wait_for(proto.lost, 30), proto

    exc, proto = loop.run_until_complete(main())
    assert isinstance(exc, OSError) and exc.errno == errno.EIO
    assert bytes(proto.data).replace(b"\r", b"") == b"line\n"
    assert proto.events == ["made", "lost"]
    assert seen == []


def test_read_pipe_protocol_error_reaches_handler_and_keeps_reading(loop):
    r, w = os.pipe()
    seen = []
    loop.set_exception_handler(lambda lp, ctx: seen.append(ctx))

    class Bad(ReadProto):
        def data_received(self, data):
            super().data_received(data)
            if len(self.data) == 1:
                raise ZeroDivisionError

    async def main():
        tr, proto = await loop.connect_read_pipe(lambda: Bad(loop), os.fdopen(r, "rb", 0))
        os.write(w, b"a")
        while not seen:
            await asyncio.sleep(0.01)
        os.write(w, b"b")
        os.close(w)
        return await asyncio.wait_for(proto.lost, 30), proto

    exc, proto = loop.run_until_complete(main())
    assert exc is None
    assert bytes(proto.data) == b"ab"
    assert len(seen) == 1 and isinstance(seen[0]["exception"], ZeroDivisionError)
