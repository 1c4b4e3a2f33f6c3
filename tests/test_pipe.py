"""connect_read_pipe / connect_write_pipe on each loop: pipes, FIFOs, sockets,
PTYs; regular files refused; the write side notices its reader going away."""
import asyncio
import contextvars
import errno
import os
import pty
import socket
import stat
import tempfile
import tty

import pytest

import pyloop


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


class FlowProto(asyncio.Protocol):
    """Records the write side's callbacks in order, with the context var's
    value each ran in."""

    def __init__(self, loop):
        self.events = []
        self.lost = loop.create_future()

    def connection_made(self, transport):
        self.events.append(("made", CTX.get()))

    def pause_writing(self):
        self.events.append(("pause", None))

    def resume_writing(self):
        self.events.append(("resume", None))

    def connection_lost(self, exc):
        self.events.append(("lost", CTX.get()))
        self.lost.set_result(exc)


CTX = contextvars.ContextVar("CTX", default="unset")


async def _read_some(fd, n):
    """Up to n bytes from the non-blocking fd, waiting as long as it takes."""
    while True:
        try:
            return os.read(fd, n)
        except BlockingIOError:
            await asyncio.sleep(0.001)


async def _read_all(fd, n):
    got = bytearray()
    while len(got) < n:
        got += await _read_some(fd, n - len(got))
    return bytes(got)


def test_write_pipe_reader_gone_with_data_queued_is_broken_pipe(loop):
    r, w = os.pipe()
    pipe = os.fdopen(w, "wb", 0)

    async def main():
        tr, proto = await loop.connect_write_pipe(lambda: FlowProto(loop), pipe)
        tr.write(b"x" * (1024 * 1024))  # the pipe takes 64 KiB: the rest is queued
        assert tr.get_write_buffer_size() > 0
        os.close(r)
        exc = await asyncio.wait_for(proto.lost, 30)
        return tr, exc

    tr, exc = loop.run_until_complete(main())
    assert isinstance(exc, BrokenPipeError)
    assert tr.is_closing()
    assert tr.get_write_buffer_size() == 0
    assert pipe.closed and tr._pipe is None
    tr.write(b"dropped")  # after the loss: dropped, no error


def test_write_pipe_close_drains_then_connection_lost(loop):
    r, w = os.pipe()
    os.set_blocking(r, False)
    payload = os.urandom(300 * 1024)
    pipe = os.fdopen(w, "wb", 0)

    async def main():
        tr, proto = await loop.connect_write_pipe(lambda: FlowProto(loop), pipe)
        assert tr.get_extra_info("pipe") is pipe and tr._fileno == w
        tr.write(bytearray(payload))
        tr.close()
        assert tr.is_closing()
        tr.write(b"after close")  # dropped, as the stdlib drops it
        tr.close()  # a second close() changes nothing
        got = await _read_all(r, len(payload))
        exc = await asyncio.wait_for(proto.lost, 30)
        eof = await _read_some(r, 10)
        return proto, exc, got, eof

    proto, exc, got, eof = loop.run_until_complete(main())
    os.close(r)
    assert exc is None
    assert got == payload
    assert eof == b""  # the pipe was closed after connection_lost
    assert [e for e, _ in proto.events] == ["made", "pause", "resume", "lost"]
    assert pipe.closed


def test_write_pipe_abort_drops_what_is_queued(loop):
    r, w = os.pipe()
    os.set_blocking(r, False)

    async def main():
        tr, proto = await loop.connect_write_pipe(lambda: FlowProto(loop), os.fdopen(w, "wb", 0))
        tr.write(b"a" * (512 * 1024))
        queued = tr.get_write_buffer_size()
        tr.abort()
        assert tr.get_write_buffer_size() == 0
        exc = await asyncio.wait_for(proto.lost, 30)
        got = bytearray()
        while chunk := await _read_some(r, 1 << 20):
            got += chunk
        return queued, exc, len(got)

    queued, exc, got = loop.run_until_complete(main())
    os.close(r)
    assert queued > 0
    assert exc is None
    assert got == 512 * 1024 - queued  # what had reached the pipe, nothing more


def test_write_pipe_limits_and_resume_once_drained(loop):
    r, w = os.pipe()
    os.set_blocking(r, False)

    async def main():
        tr, proto = await loop.connect_write_pipe(lambda: FlowProto(loop), os.fdopen(w, "wb", 0))
        tr.set_write_buffer_limits(high=1000)
        assert tr.get_write_buffer_limits() == (250, 1000)
        tr.write(b"b" * (64 * 1024 + 5000))  # 5000 bytes over what the pipe holds
        assert tr.get_write_buffer_size() == 5000
        sizes = []
        # Read a little at a time: the stdlib resumes only once nothing is queued.
        while tr.get_write_buffer_size():
            await _read_some(r, 4096)
            await asyncio.sleep(0.01)
            sizes.append((tr.get_write_buffer_size(), [e for e, _ in proto.events]))
        tr.close()
        await asyncio.wait_for(proto.lost, 30)
        return sizes, proto

    sizes, proto = loop.run_until_complete(main())
    os.close(r)
    assert all("resume" not in events for size, events in sizes if size > 0)
    assert [e for e, _ in proto.events] == ["made", "pause", "resume", "lost"]


def test_write_pipe_callbacks_context(loop):
    # connection_made in the context connect_write_pipe ran in, connection_lost
    # in the one close() was called in (the stdlib schedules both there).
    r, w = os.pipe()

    async def connect():
        CTX.set("connect")
        return await loop.connect_write_pipe(lambda: FlowProto(loop), os.fdopen(w, "wb", 0))

    async def main():
        tr, proto = await asyncio.create_task(connect())
        CTX.set("closer")
        tr.close()
        await asyncio.wait_for(proto.lost, 30)
        return proto.events

    events = loop.run_until_complete(main())
    os.close(r)
    assert events == [("made", "connect"), ("lost", "closer")]


def test_write_pipe_protocol_error_in_connection_lost_reaches_handler(loop):
    r, w = os.pipe()
    seen = []
    loop.set_exception_handler(lambda lp, ctx: seen.append(ctx))
    pipe = os.fdopen(w, "wb", 0)

    class Bad(FlowProto):
        def connection_lost(self, exc):
            super().connection_lost(exc)
            raise ZeroDivisionError

    async def main():
        tr, proto = await loop.connect_write_pipe(lambda: Bad(loop), pipe)
        tr.close()
        await asyncio.wait_for(proto.lost, 30)
        while not seen:
            await asyncio.sleep(0.01)

    loop.run_until_complete(main())
    os.close(r)
    assert isinstance(seen[0]["exception"], ZeroDivisionError)
    assert pipe.closed  # closed all the same


def test_write_pipe_to_pty_and_dev_null(loop):
    # Character devices: written to, not watched for a reader.
    master, slave = pty.openpty()
    tty.setraw(master)
    devnull = open(os.devnull, "wb", 0)

    async def main():
        out = []
        for pipe in (os.fdopen(slave, "wb", 0), devnull):
            tr, proto = await loop.connect_write_pipe(lambda: FlowProto(loop), pipe)
            tr.write(b"to a char device")
            tr.close()
            out.append(await asyncio.wait_for(proto.lost, 30))
        return out

    try:
        assert loop.run_until_complete(main()) == [None, None]
        assert os.read(master, 100) == b"to a char device"
    finally:
        os.close(master)


def test_write_pipe_misuse_raises_and_does_not_crash(pyloop_loop):
    loop = pyloop_loop
    r, w = os.pipe()
    pipe = os.fdopen(w, "wb", 0)
    with pytest.raises(TypeError):
        pyloop._core.WritePipeTransport()

    async def main():
        tr, proto = await loop.connect_write_pipe(lambda: FlowProto(loop), pipe)
        with pytest.raises(TypeError):
            tr.write("text")
        with pytest.raises(TypeError):
            tr._fatal_error("not an exception")
        tr.close()
        await asyncio.wait_for(proto.lost, 30)
        tr._call_connection_lost(None)  # again: nothing left to do
        tr.abort()
        tr.write(b"dropped")
        return proto

    proto = loop.run_until_complete(main())
    os.close(r)
    assert [e for e, _ in proto.events] == ["made", "lost"]
    with pytest.raises(ValueError):  # the pipe is closed now
        loop.run_until_complete(loop.connect_write_pipe(asyncio.Protocol, pipe))
