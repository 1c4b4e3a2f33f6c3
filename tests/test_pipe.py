"""connect_read_pipe / connect_write_pipe on each loop: pipes, FIFOs, sockets,
PTYs; regular files refused; the write side notices its reader going away."""
import asyncio
import contextvars
import errno
import fcntl
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


# ---- the read side: the stdlib's semantics, on both loops --------------------

def _through_two_pipe_transports(loop, factory, r, w, payload):
    """payload written by a write pipe transport on w, read by one of factory's
    protocols on r: connection_lost's argument and the protocol."""
    async def main():
        tr, proto = await loop.connect_read_pipe(factory, os.fdopen(r, "rb", 0))
        wtr, wproto = await loop.connect_write_pipe(lambda: WriteProto(loop),
                                                    os.fdopen(w, "wb", 0))
        wtr.write(payload)
        wtr.close()
        return await asyncio.wait_for(proto.lost, 30), proto

    return loop.run_until_complete(main())


def _open_read_pipe(loop, factory):
    r, w = os.pipe()
    pipe = os.fdopen(r, "rb", 0)
    tr, proto = loop.run_until_complete(loop.connect_read_pipe(factory, pipe))
    return tr, proto, pipe, w


def test_read_pipe_close_is_connection_lost_then_pipe_closed(loop):
    seen_open = []

    class P(ReadProto):
        def connection_lost(self, exc):
            seen_open.append(not pipe.closed)  # the pipe closes after connection_lost
            super().connection_lost(exc)

    tr, proto, pipe, w = _open_read_pipe(loop, lambda: P(loop))
    try:
        assert tr.get_extra_info("pipe") is pipe
        assert tr._pipe is pipe and tr._fileno == pipe.fileno()
        assert f"fd={pipe.fileno()}" in repr(tr)
        tr.close()
        assert tr.is_closing() and not tr.is_reading()
        tr.close()  # again: nothing more
        tr.pause_reading()  # closing: no-ops
        tr.resume_reading()
        exc = loop.run_until_complete(asyncio.wait_for(proto.lost, 30))
        for _ in range(3):
            loop.run_until_complete(asyncio.sleep(0))
    finally:
        os.close(w)
    assert exc is None
    assert proto.events == ["made", "lost"]  # no eof_received on close()
    assert seen_open == [True]
    assert pipe.closed and tr._pipe is None
    assert "closed" in repr(tr)


def test_read_pipe_eof_after_what_data_received_scheduled(loop):
    # The data's own callbacks run before eof_received and connection_lost,
    # and reading stops at end of file.
    class P(ReadProto):
        def data_received(self, data):
            super().data_received(data)
            loop.call_soon(self.events.append, "cb")

    r, w = os.pipe()
    os.write(w, b"last words")
    os.close(w)  # the writer is gone before the loop reads anything

    async def main():
        tr, proto = await loop.connect_read_pipe(lambda: P(loop), os.fdopen(r, "rb", 0))
        exc = await asyncio.wait_for(proto.lost, 30)
        return tr, proto, exc

    tr, proto, exc = loop.run_until_complete(main())
    assert exc is None
    assert bytes(proto.data) == b"last words"
    assert proto.events == ["made", "cb", "eof", "lost"]
    assert tr.is_closing() and not tr.is_reading()


def test_read_pipe_paused_before_reading_starts_and_in_data_received(loop):
    r, w = os.pipe()

    class P(ReadProto):
        def connection_made(self, transport):
            super().connection_made(transport)
            self.transport = transport
            transport.pause_reading()  # before the transport's first read

        def data_received(self, data):
            super().data_received(data)
            self.transport.pause_reading()  # one read at a time

    async def main():
        tr, proto = await loop.connect_read_pipe(lambda: P(loop), os.fdopen(r, "rb", 0))
        os.write(w, b"one")
        for _ in range(5):
            await asyncio.sleep(0)
        held = bytes(proto.data)
        states = [tr.is_reading()]
        tr.resume_reading()
        states.append(tr.is_reading())
        while not proto.data:
            await asyncio.sleep(0.001)
        states.append(tr.is_reading())  # paused again by data_received
        os.write(w, b" two")
        os.close(w)
        for _ in range(5):
            await asyncio.sleep(0)
        before_resume = bytes(proto.data)
        while not proto.lost.done():
            tr.resume_reading()
            await asyncio.sleep(0.001)
        return held, states, before_resume, proto

    held, states, before_resume, proto = loop.run_until_complete(main())
    assert held == b""
    assert states == [False, True, False]
    assert before_resume == b"one"
    assert bytes(proto.data) == b"one two"
    assert proto.events == ["made", "eof", "lost"]


def test_read_pipe_callbacks_run_in_the_context_it_was_made_in(loop):
    r, w = os.pipe()

    class P(ReadProto):
        def connection_made(self, transport):
            self.events.append(("made", CTX.get()))

        def data_received(self, data):
            self.events.append(("data", CTX.get()))

        def eof_received(self):
            self.events.append(("eof", CTX.get()))

        def connection_lost(self, exc):
            self.events.append(("lost", CTX.get()))
            self.lost.set_result(exc)

    async def main():
        CTX.set("made here")
        tr, proto = await loop.connect_read_pipe(lambda: P(loop), os.fdopen(r, "rb", 0))
        CTX.set("changed later")
        os.write(w, b"x")
        os.close(w)
        await asyncio.wait_for(proto.lost, 30)
        return proto

    proto = loop.run_until_complete(main())
    assert proto.events == [("made", "made here"), ("data", "made here"),
                            ("eof", "made here"), ("lost", "made here")]


def test_read_pipe_set_protocol_takes_what_follows(loop):
    tr, first, pipe, w = _open_read_pipe(loop, lambda: ReadProto(loop))
    second = ReadProto(loop)

    async def main():
        os.write(w, b"a")
        while not first.data:
            await asyncio.sleep(0.001)
        tr.set_protocol(second)
        assert tr.get_protocol() is second
        os.write(w, b"b")
        os.close(w)
        return await asyncio.wait_for(second.lost, 30)

    assert loop.run_until_complete(main()) is None
    assert bytes(first.data) == b"a" and bytes(second.data) == b"b"
    assert second.events == ["eof", "lost"]


def test_read_pipe_fatal_error_reports_and_loses_the_connection(loop):
    # An OSError other than EIO is reported (unlike a socket transport's),
    # then connection_lost(exc); EIO only ends it (test_pty_hangup_is_a_quiet_eio).
    seen = []
    loop.set_exception_handler(lambda lp, ctx: seen.append(ctx))
    tr, proto, pipe, w = _open_read_pipe(loop, lambda: ReadProto(loop))
    err = OSError(errno.EBADF, "bad")
    try:
        tr._fatal_error(err, "Fatal read error on pipe transport")
        exc = loop.run_until_complete(asyncio.wait_for(proto.lost, 30))
    finally:
        os.close(w)
    assert exc is err
    assert [c["message"] for c in seen] == ["Fatal read error on pipe transport"]
    assert seen[0]["exception"] is err and seen[0]["transport"] is tr
    assert pipe.closed


# ---- the read side on pyloop: C on FIFOs and sockets --------------------------

def test_read_pipe_kinds_on_pyloop(pyloop_loop):
    loop = pyloop_loop
    with pytest.raises(TypeError):
        pyloop._core.ReadPipeTransport()
    a, b = socket.socketpair()
    master, slave = pty.openpty()
    r, w = os.pipe()

    async def main():
        kinds = []
        for pipe in (os.fdopen(r, "rb", 0), a, os.fdopen(slave, "rb", 0)):
            tr, proto = await loop.connect_read_pipe(lambda: ReadProto(loop), pipe)
            kinds.append(type(tr).__name__)
            tr.close()
            await asyncio.wait_for(proto.lost, 30)
        return kinds

    try:
        kinds = loop.run_until_complete(main())
    finally:
        os.close(w)
        b.close()
        os.close(master)
    # a character device (here a pty) is read by the stdlib's transport
    assert kinds == ["ReadPipeTransport", "ReadPipeTransport", "_ReadPipeTransport"]


def test_read_pipe_buffered_protocol_on_pyloop(pyloop_loop):
    # pyloop's read pipe, like its streams, fills a BufferedProtocol's buffer
    # (the stdlib's read pipe calls data_received only).
    loop = pyloop_loop
    payload = bytes(range(256)) * 1024

    class Buffered(asyncio.BufferedProtocol):
        def __init__(self):
            self.buf = bytearray(7)  # smaller than a read: several rounds each
            self.data = bytearray()
            self.events = []
            self.lost = loop.create_future()

        def get_buffer(self, sizehint):
            assert sizehint > 0
            return self.buf

        def buffer_updated(self, nbytes):
            self.data += self.buf[:nbytes]

        def eof_received(self):
            self.events.append("eof")

        def connection_lost(self, exc):
            self.events.append("lost")
            self.lost.set_result(exc)

    r, w = os.pipe()
    exc, proto = _through_two_pipe_transports(loop, Buffered, r, w, payload)
    assert exc is None
    assert bytes(proto.data) == payload
    assert proto.events == ["eof", "lost"]


def test_read_pipe_misuse_and_loop_close_on_pyloop():
    # Methods after the end do nothing; a transport left open is closed with
    # the loop (its handle freed, the caller's pipe left to the caller).
    before = pyloop._core._counters()
    loop = pyloop.new_event_loop()
    r, w = os.pipe()
    pipe = os.fdopen(r, "rb", 0)
    r2, w2 = os.pipe()
    left_open = os.fdopen(r2, "rb", 0)
    try:
        tr, proto = loop.run_until_complete(
            loop.connect_read_pipe(lambda: ReadProto(loop), pipe))
        loop.run_until_complete(loop.connect_read_pipe(lambda: ReadProto(loop), left_open))
        with pytest.raises(TypeError):
            tr._fatal_error("not an exception")
        tr.close()
        loop.run_until_complete(asyncio.wait_for(proto.lost, 30))
        tr._call_connection_lost(None)  # again: nothing left to do
        tr.pause_reading()
        tr.resume_reading()
        tr._start_reading()
        tr.close()
        assert proto.events == ["made", "lost"]
    finally:
        loop.close()
        os.close(w)
        os.close(w2)
    assert not left_open.closed
    left_open.close()
    after = pyloop._core._counters()
    assert after["pipe_transports_created"] - before["pipe_transports_created"] == 2
    assert after["pipe_transports_freed"] - before["pipe_transports_freed"] == 2
    assert after["handles_freed"] - before["handles_freed"] == \
        after["handles_created"] - before["handles_created"]


def test_subprocess_stdout_is_read_by_the_c_transport(pyloop_loop):
    loop = pyloop_loop

    async def main():
        proc = await asyncio.create_subprocess_exec(
            "sh", "-c", "printf out; printf err >&2", stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
        kinds = [type(proc._transport.get_pipe_transport(fd)).__name__ for fd in (1, 2)]
        out, err = await proc.communicate()
        return kinds, out, err

    kinds, out, err = loop.run_until_complete(main())
    assert kinds == ["ReadPipeTransport", "ReadPipeTransport"]
    assert (out, err) == (b"out", b"err")


def test_read_pipe_chunks_kept_by_the_protocol_stay_intact(loop):
    # A pipe that arrives full is read in bulk; the bytes objects the protocol
    # keeps must never change afterwards, whatever it does with the others.
    r, w = os.pipe()
    payload = os.urandom(4 * 1024 * 1024)

    class Keeper(ReadProto):
        def __init__(self, loop):
            super().__init__(loop)
            self.kept = []  # (chunk, its value and hash when it arrived)

        def data_received(self, data):
            super().data_received(data)
            # what was hashed before (a chunk let go of) hashes as new bytes do
            self.hashes_ok = getattr(self, "hashes_ok", True) and \
                hash(data) == hash(bytes(bytearray(data)))
            if len(self.kept) % 3 == 0 or len(data) % 3 == 0:
                self.kept.append((data, bytes(bytearray(data)), hash(data)))
            else:
                self.kept.append((None, None, None))

    exc, proto = _through_two_pipe_transports(loop, lambda: Keeper(loop), r, w, payload)
    assert exc is None
    assert bytes(proto.data) == payload
    assert proto.hashes_ok
    kept = [k for k in proto.kept if k[0] is not None]
    assert len(kept) > 1
    for chunk, value, h in kept:
        assert chunk == value and hash(chunk) == h


# ---- pipes bigger than a read --------------------------------------------------


class ChunkProto(ReadProto):
    """Records the size of every data_received; pauses reading every
    `pause_every` calls and resumes on the next pass."""

    def __init__(self, loop, pause_every=0):
        super().__init__(loop)
        self.loop = loop
        self.sizes = []
        self.pause_every = pause_every

    def connection_made(self, transport):
        super().connection_made(transport)
        self.transport = transport

    def data_received(self, data):
        super().data_received(data)
        self.sizes.append(len(data))
        if self.pause_every and len(self.sizes) % self.pause_every == 0:
            self.transport.pause_reading()
            self.loop.call_soon(self.transport.resume_reading)


@pytest.mark.parametrize("pipe_size", [131072, 262144, 1048576])
@pytest.mark.parametrize("pause_every", [0, 1, 3])
def test_read_pipe_bigger_than_a_read_intact(loop, loop_name, pipe_size, pause_every):
    # A pipe bigger than 64 KiB, full before the reader starts and then fed
    # by a write transport: every byte in order, then eof and lost. pyloop
    # reads such a pipe 64 KiB at a time.
    r, w = os.pipe()
    fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, pipe_size)
    first = os.urandom(pipe_size)
    rest = os.urandom(3 * 1024 * 1024 + 5)
    os.write(w, first)  # fills it

    exc, proto = _through_two_pipe_transports(loop, lambda: ChunkProto(loop, pause_every),
                                              r, w, rest)
    assert exc is None
    assert bytes(proto.data) == first + rest
    assert proto.events == ["made", "eof", "lost"]
    if loop_name == "pyloop":
        assert max(proto.sizes) == 65536


@pytest.mark.parametrize("pipe_size", [65536, 262144, 1048576])
def test_read_pipe_full_and_writer_gone_reads_everything_before_eof(loop, pipe_size):
    # The writer's end closed while the pipe is full (POLLHUP with data
    # left): reads that stop after 64 KiB must not be taken for the end.
    r, w = os.pipe()
    fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, pipe_size)
    payload = os.urandom(pipe_size)
    os.write(w, payload)
    os.close(w)

    async def main():
        tr, proto = await loop.connect_read_pipe(lambda: ChunkProto(loop), os.fdopen(r, "rb", 0))
        return await asyncio.wait_for(proto.lost, 30), proto

    exc, proto = loop.run_until_complete(main())
    assert exc is None
    assert bytes(proto.data) == payload
    assert proto.events == ["made", "eof", "lost"]


def test_read_pipe_bigger_than_a_read_buffered_protocol_on_pyloop(pyloop_loop):
    loop = pyloop_loop

    class Buffered(asyncio.BufferedProtocol):
        def __init__(self):
            self.buf = bytearray(100000)
            self.data = bytearray()
            self.sizes = []
            self.lost = loop.create_future()

        def get_buffer(self, sizehint):
            return self.buf

        def buffer_updated(self, nbytes):
            self.sizes.append(nbytes)
            self.data += self.buf[:nbytes]

        def connection_lost(self, exc):
            self.lost.set_result(exc)

    r, w = os.pipe()
    fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, 1048576)
    first = os.urandom(1048576)
    os.write(w, first)
    rest = os.urandom(2 * 1024 * 1024)
    exc, proto = _through_two_pipe_transports(loop, Buffered, r, w, rest)
    assert exc is None
    assert bytes(proto.data) == first + rest
    assert max(proto.sizes) == 65536
