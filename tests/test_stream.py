"""The C stream transport (pyloop._core.TCPTransport) over connected sockets.

Work in progress toward the networking methods: until create_connection and
create_server are complete, these tests drive the transport through the
loop's private _make_socket_transport over real socket pairs.
"""
import asyncio
import gc
import socket

import pytest

import pyloop


def tcp_pair():
    with socket.socket() as lst:
        lst.bind(("127.0.0.1", 0))
        lst.listen(1)
        c = socket.create_connection(lst.getsockname())
        s, _ = lst.accept()
    return s, c


PAIRS = {"unix": socket.socketpair, "tcp": tcp_pair}


@pytest.fixture(params=sorted(PAIRS))
def pair(request):
    return PAIRS[request.param]()


class Echo(asyncio.Protocol):
    def connection_made(self, t):
        self.t = t

    def data_received(self, data):
        self.t.write(data)

    def eof_received(self):
        self.t.close()


class Collect(asyncio.Protocol):
    def __init__(self, loop, want):
        self.buf = bytearray()
        self.want = want
        self.events = []
        self.lost = loop.create_future()

    def connection_made(self, t):
        self.t = t
        self.events.append("made")

    def data_received(self, data):
        self.buf += data
        if len(self.buf) >= self.want:
            self.t.close()

    def eof_received(self):
        self.events.append("eof")

    def connection_lost(self, exc):
        self.events.append("lost")
        self.lost.set_result(exc)


class BufferedCollect(asyncio.BufferedProtocol):
    def __init__(self, loop, want):
        self.mem = bytearray(1000)
        self.got = bytearray()
        self.want = want
        self.lost = loop.create_future()

    def connection_made(self, t):
        self.t = t

    def get_buffer(self, hint):
        return self.mem

    def buffer_updated(self, n):
        self.got += self.mem[:n]
        if len(self.got) >= self.want:
            self.t.close()

    def connection_lost(self, exc):
        self.lost.set_result(exc)


def test_is_asyncio_transport(pyloop_loop, pair):
    a, b = pair
    t = pyloop_loop._make_socket_transport(a, asyncio.Protocol())
    try:
        assert isinstance(t, asyncio.Transport)
        assert isinstance(t.get_extra_info("socket"), asyncio.trsock.TransportSocket)
        assert t.get_extra_info("sockname") == a.getsockname()
        assert t.get_extra_info("nope", 5) == 5
        assert t.get_write_buffer_limits() == (16 * 1024, 64 * 1024)
    finally:
        t.close()
        pyloop_loop.run_until_complete(asyncio.sleep(0))
        b.close()


@pytest.mark.parametrize("size", [1, 1024, 5 * 1024 * 1024])
def test_echo_intact(pyloop_loop, pair, size):
    loop = pyloop_loop
    a, b = pair
    loop._make_socket_transport(a, Echo())
    client = Collect(loop, size)
    tc = loop._make_socket_transport(b, client)
    payload = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    loop.call_soon(tc.write, payload)
    assert loop.run_until_complete(asyncio.wait_for(client.lost, 60)) is None
    assert bytes(client.buf) == payload
    assert client.events == ["made", "lost"]


def test_buffered_protocol_reads_into_its_buffer(pyloop_loop, pair):
    loop = pyloop_loop
    a, b = pair
    loop._make_socket_transport(a, Echo())
    payload = b"abc" * 33_334
    client = BufferedCollect(loop, len(payload))
    tc = loop._make_socket_transport(b, client)
    loop.call_soon(tc.write, payload)
    loop.run_until_complete(asyncio.wait_for(client.lost, 30))
    assert bytes(client.got) == payload


def test_eof_received_then_close(pyloop_loop, pair):
    loop = pyloop_loop
    a, b = pair
    proto = Collect(loop, 10 ** 9)
    loop._make_socket_transport(a, proto)
    b.sendall(b"hello")
    b.shutdown(socket.SHUT_WR)
    exc = loop.run_until_complete(asyncio.wait_for(proto.lost, 30))
    assert exc is None
    assert bytes(proto.buf) == b"hello"
    assert proto.events == ["made", "eof", "lost"]
    b.close()


def test_write_eof_half_close(pyloop_loop, pair):
    loop = pyloop_loop
    a, b = pair
    t = loop._make_socket_transport(a, asyncio.Protocol())
    assert t.can_write_eof()
    t.write(b"data")
    t.write_eof()
    with pytest.raises(RuntimeError, match="write_eof"):
        t.write(b"more")
    loop.run_until_complete(asyncio.sleep(0.01))
    b.settimeout(10)
    got = b""
    while True:
        chunk = b.recv(100)
        if not chunk:
            break
        got += chunk
    assert got == b"data"
    t.close()
    loop.run_until_complete(asyncio.sleep(0))
    b.close()


def test_write_wrong_type(pyloop_loop, pair, write_type_error):
    a, b = pair
    t = pyloop_loop._make_socket_transport(a, asyncio.Protocol())
    for bad in ("str", 1, None, [b"x"]):
        with pytest.raises(TypeError, match=write_type_error):
            t.write(bad)
    t.close()
    pyloop_loop.run_until_complete(asyncio.sleep(0))
    b.close()


def test_write_after_close_is_dropped_and_logged(pyloop_loop, pair, caplog):
    loop = pyloop_loop
    a, b = pair
    t = loop._make_socket_transport(a, asyncio.Protocol())
    t.close()
    loop.run_until_complete(asyncio.sleep(0))
    assert t.is_closing()
    for _ in range(7):
        t.write(b"dropped")  # never raises
    assert "socket.send() raised exception." in caplog.text
    b.close()


def test_peer_reset_reports_connection_lost(pyloop_loop, pair):
    loop = pyloop_loop
    a, b = pair
    proto = Collect(loop, 10 ** 9)
    t = loop._make_socket_transport(a, proto)
    loop.run_until_complete(asyncio.sleep(0))
    b.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    b.close()
    for _ in range(50):
        t.write(b"x" * 65536)
        loop.run_until_complete(asyncio.sleep(0.001))
        if proto.lost.done():
            break
    exc = loop.run_until_complete(asyncio.wait_for(proto.lost, 30))
    assert exc is None or isinstance(exc, OSError)


def test_flow_control_pause_and_resume_writing(pyloop_loop, pair):
    loop = pyloop_loop
    a, b = pair
    calls = []

    class P(asyncio.Protocol):
        def pause_writing(self):
            calls.append("pause")

        def resume_writing(self):
            calls.append("resume")

    t = loop._make_socket_transport(a, P())
    t.set_write_buffer_limits(high=1024, low=0)
    assert t.get_write_buffer_limits() == (0, 1024)
    t.write(b"x" * (8 * 1024 * 1024))  # more than the socket buffers take
    assert calls == ["pause"]
    assert t.get_write_buffer_size() > 0
    b.setblocking(False)

    async def drain():
        while t.get_write_buffer_size():
            try:
                b.recv(1 << 20)
            except BlockingIOError:
                pass
            await asyncio.sleep(0)

    loop.run_until_complete(asyncio.wait_for(drain(), 60))
    assert calls == ["pause", "resume"]
    with pytest.raises(ValueError):
        t.set_write_buffer_limits(high=1, low=2)
    t.close()
    loop.run_until_complete(asyncio.sleep(0))
    b.close()


def test_pause_resume_reading(pyloop_loop, pair):
    loop = pyloop_loop
    a, b = pair
    proto = Collect(loop, 10 ** 9)
    t = loop._make_socket_transport(a, proto)
    loop.run_until_complete(asyncio.sleep(0))
    assert t.is_reading()
    t.pause_reading()
    assert not t.is_reading()
    b.sendall(b"while paused")
    loop.run_until_complete(asyncio.sleep(0.02))
    assert proto.buf == b""
    t.resume_reading()
    loop.run_until_complete(asyncio.sleep(0.02))
    assert proto.buf == b"while paused"
    t.close()
    loop.run_until_complete(asyncio.sleep(0))
    b.close()


def test_abort_drops_queued_data(pyloop_loop, pair):
    loop = pyloop_loop
    a, b = pair
    proto = Collect(loop, 10 ** 9)
    t = loop._make_socket_transport(a, proto)
    t.write(b"x" * (8 * 1024 * 1024))
    t.abort()
    assert loop.run_until_complete(asyncio.wait_for(proto.lost, 30)) is None
    b.close()


def test_loop_close_releases_open_transports():
    before = pyloop._core._counters()
    loop = pyloop.new_event_loop()
    a, b = socket.socketpair()
    t = loop._make_socket_transport(a, asyncio.Protocol())
    loop.run_until_complete(asyncio.sleep(0))
    t.write(b"x" * (4 * 1024 * 1024))
    loop.close()
    assert t.is_closing()
    t.write(b"after close")  # dropped, no crash
    del t
    gc.collect()
    after = pyloop._core._counters()
    assert (after["handles_created"] - before["handles_created"]
            == after["handles_freed"] - before["handles_freed"]) > 0
    assert (after["requests_created"] - before["requests_created"]
            == after["requests_freed"] - before["requests_freed"])
    b.close()


def test_protocol_error_goes_to_handler_and_closes(pyloop_loop, pair):
    loop = pyloop_loop
    a, b = pair
    seen = []
    loop.set_exception_handler(lambda lp, ctx: seen.append(ctx))

    class Bad(Collect):
        def data_received(self, data):
            raise ValueError("bad protocol")

    proto = Bad(loop, 1)
    loop._make_socket_transport(a, proto)
    b.sendall(b"boom")
    exc = loop.run_until_complete(asyncio.wait_for(proto.lost, 30))
    assert isinstance(exc, ValueError)
    assert seen and "data_received" in seen[0]["message"]
    b.close()


def test_keyboard_interrupt_in_protocol_propagates(pyloop_loop, pair):
    loop = pyloop_loop
    a, b = pair

    class KI(asyncio.Protocol):
        def data_received(self, data):
            raise KeyboardInterrupt

    t = loop._make_socket_transport(a, KI())
    b.sendall(b"x")
    with pytest.raises(KeyboardInterrupt):
        loop.run_until_complete(asyncio.sleep(5))
    t.close()
    loop.run_until_complete(asyncio.sleep(0))
    b.close()


def test_transport_type_not_constructible():
    with pytest.raises(TypeError):
        pyloop._core.TCPTransport()


def test_read_started_from_a_callback_wakes_a_sleeping_loop(pyloop_loop, pair):
    # The libuv trap: a watcher started outside uv_run (here uv_read_start,
    # scheduled as a ready-queue callback) reaches epoll only inside uv_run.
    # The loop must flush it before sleeping, or this read never arrives.
    import threading
    loop = pyloop_loop
    a, b = pair
    proto = Collect(loop, 5)
    loop._make_socket_transport(a, proto)
    timer = threading.Timer(0.05, b.sendall, (b"later",))
    timer.start()
    try:
        exc = loop.run_until_complete(asyncio.wait_for(proto.lost, 30))
    finally:
        timer.join()
        b.close()
    assert exc is None and bytes(proto.buf) == b"later"


@pytest.mark.parametrize("sizes", [(1, 100, 70000), (3_000_000, 5, 1), (0, 0)])
def test_writelines_intact_in_order(loop, pair, sizes):
    a, b = pair
    a.setblocking(False)  # the stdlib's transport expects it of its caller
    b.setblocking(False)
    loop._make_socket_transport(a, Echo())
    chunks = [bytes([i % 251]) * n for i, n in enumerate(sizes)]
    want = sum(sizes) + 2
    client = Collect(loop, want)
    tc = loop._make_socket_transport(b, client)

    def send():
        # bytes, bytearray and memoryview chunks in one call, then a generator
        kinds = (bytes, bytearray, memoryview)
        tc.writelines(kinds[i % 3](c) for i, c in enumerate(chunks))
        tc.writelines([b"x", b"y"])

    loop.call_soon(send)
    assert loop.run_until_complete(asyncio.wait_for(client.lost, 60)) is None
    assert bytes(client.buf) == b"".join(chunks) + b"xy"


def test_writelines_wrong_item_type(loop, pair):
    a, b = pair
    a.setblocking(False)
    t = loop._make_socket_transport(a, asyncio.Protocol())
    try:
        with pytest.raises(TypeError):
            t.writelines([b"ok", "not bytes"])
        with pytest.raises(TypeError):
            t.writelines(5)
    finally:
        t.close()
        loop.run_until_complete(asyncio.sleep(0))
        b.close()


def test_eof_after_data_comes_one_iteration_later(loop, pair):
    # The peer sent its last data and closed before the loop looked: what
    # data_received scheduled runs before eof_received, as with the stdlib's
    # transports (whose next recv() returns b"" one iteration later).
    a, b = pair
    a.setblocking(False)
    order = []
    done = loop.create_future()

    class P(asyncio.Protocol):
        def data_received(self, data):
            order.append("data")
            loop.call_soon(order.append, "scheduled by data_received")

        def eof_received(self):
            order.append("eof")

        def connection_lost(self, exc):
            order.append("lost")
            done.set_result(None)

    b.sendall(b"last words")
    b.close()
    loop._make_socket_transport(a, P())
    loop.run_until_complete(asyncio.wait_for(done, 30))
    assert order == ["data", "scheduled by data_received", "eof", "lost"]


def test_eof_held_while_paused(pyloop_loop, pair):
    loop = pyloop_loop
    a, b = pair
    order = []
    done = loop.create_future()

    class P(asyncio.Protocol):
        def connection_made(self, t):
            self.t = t

        def data_received(self, data):
            order.append("data")
            self.t.pause_reading()
            loop.call_later(0.01, self.resume)

        def resume(self):
            order.append("resume")
            self.t.resume_reading()

        def eof_received(self):
            order.append("eof")

        def connection_lost(self, exc):
            done.set_result(exc)

    b.sendall(b"x")
    b.close()
    loop._make_socket_transport(a, P())
    assert loop.run_until_complete(asyncio.wait_for(done, 30)) is None
    assert order == ["data", "resume", "eof"]


def test_sleep_inside_libuv_releases_gil_and_keeps_deadlines(pyloop_loop, pair):
    # The loop sleeps in libuv's own epoll_wait (uv_run once) with the GIL
    # released around the wait only: with a transport reading, another
    # Python thread must run while the loop sleeps, and a timer must still
    # never fire before its deadline.
    import threading
    import time
    loop = pyloop_loop
    a, b = pair
    proto = Collect(loop, 1)
    loop._make_socket_transport(a, proto)
    spins = []
    stop = threading.Event()

    def spin():
        while not stop.is_set():
            spins.append(None)
            time.sleep(0.001)

    late = []

    def check(box):
        late.append(loop.time() >= box[0].when())

    th = threading.Thread(target=spin)
    th.start()
    try:
        for delay in (0.0003, 0.002, 0.015, 0.04):
            box = []
            box.append(loop.call_later(delay, check, box))
        before = len(spins)
        loop.run_until_complete(asyncio.sleep(0.1))
        during = len(spins) - before
    finally:
        stop.set()
        th.join()
    assert late == [True] * 4
    assert during >= 10
    b.sendall(b"x")
    assert loop.run_until_complete(asyncio.wait_for(proto.lost, 30)) is None
    b.close()


def test_data_received_bytes_dropped_by_the_protocol(pyloop_loop, pair):
    # A bytes object the protocol did not keep is refilled for the next read
    # of the same size: its cached hash must be forgotten, and bytes the
    # protocol did keep must never change.
    loop = pyloop_loop
    a, b = pair
    seen, kept = [], []

    class P(asyncio.Protocol):
        def connection_made(self, t):
            self.t = t

        def data_received(self, data):
            seen.append((bytes(bytearray(data)), hash(data)))
            if data.startswith(b"k"):
                kept.append(data)
            self.t.write(b"!")

    loop._make_socket_transport(a, P())
    chunks = [b"aaaa", b"bbbb", b"kkkk", b"cccc", b"kk11", b"dddd"]

    async def main():
        for c in chunks:
            b.sendall(c)
            while len(seen) < chunks.index(c) + 1:
                await asyncio.sleep(0.001)
            assert b.recv(1) == b"!"

    b.setblocking(True)
    loop.run_until_complete(asyncio.wait_for(main(), 30))
    assert [s for s, _ in seen] == chunks
    assert all(hash(s) == h for s, h in seen)
    assert kept == [b"kkkk", b"kk11"]
    b.close()


def test_transport_refuses_another_thread_while_the_loop_sleeps(pyloop_loop, pair):
    # While the loop thread waits inside libuv without the GIL, a thread
    # holding the GIL would race with libuv's own bookkeeping: the
    # transport refuses instead of corrupting the loop.
    import threading
    loop = pyloop_loop
    a, b = pair
    proto = Collect(loop, 1)
    t = loop._make_socket_transport(a, proto)
    errors = []

    def other_thread():
        for call in (lambda: t.write(b"x"), t.pause_reading, t.close):
            try:
                call()
            except RuntimeError as exc:
                errors.append(str(exc))

    timer = threading.Timer(0.05, other_thread)
    timer.start()
    try:
        loop.run_until_complete(asyncio.sleep(0.3))
    finally:
        timer.join()
    assert len(errors) == 3 and all("Non-thread-safe" in e for e in errors)
    # The transport is untouched and still works from the loop's thread.
    b.sendall(b"y")
    assert loop.run_until_complete(asyncio.wait_for(proto.lost, 30)) is None
    assert bytes(proto.buf) == b"y"
    b.close()


class _Counter(asyncio.Protocol):
    """Counts what arrives until the end of the stream and keeps the last bytes."""

    def __init__(self, done):
        self.done, self.got, self.tail = done, 0, b""

    def data_received(self, data):
        self.got += len(data)
        self.tail = (self.tail + data[-8:])[-8:]

    def eof_received(self):
        self.done.set_result(None)


def test_write_of_4_gib_or_more_arrives_whole(loop):
    # libuv's buffer length is 32-bit: what stays queued after the first
    # attempt (here more than 4 GiB) must go as several buffers, not be cut to
    # its length modulo 4 GiB. bytes(n) is calloc'ed: its pages stay the
    # kernel's shared zero page while only read.
    data = bytes((4 << 30) + (64 << 20))
    size = len(data) + 5
    a, b = socket.socketpair()

    async def main():
        done = loop.create_future()
        tw, _ = await loop.create_connection(asyncio.Protocol, sock=a)
        _, counter = await loop.create_connection(lambda: _Counter(done), sock=b)
        tw.write(data)
        tw.write(b"last!")
        assert tw.get_write_buffer_size() > 0  # queued beyond the first write
        tw.write_eof()  # after what is queued
        await asyncio.wait_for(done, 300)
        tw.close()
        return counter

    counter = loop.run_until_complete(main())
    assert counter.got == size
    assert counter.tail.endswith(b"last!")
