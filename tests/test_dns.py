"""getaddrinfo / getnameinfo give exactly what the socket module gives."""
import asyncio
import enum
import itertools
import os
import socket

import pytest

import pyloop
from pyloop import _core

HOSTS = [None, "localhost", "127.0.0.1", "::1", "0.0.0.0", "fe80::1%lo", "::ffff:127.0.0.1"]
PORTS = [None, 0, "80", "http"]
FAMILIES = [0, socket.AF_INET, socket.AF_INET6]
TYPES = [0, socket.SOCK_STREAM, socket.SOCK_DGRAM]
FLAGS = [0, socket.AI_PASSIVE | socket.AI_CANONNAME, socket.AI_NUMERICHOST]


def _expected(*args, **kw):
    try:
        return ("ok", socket.getaddrinfo(*args, **kw))
    except OSError as exc:
        return ("err", type(exc), getattr(exc, "errno", None))


async def _actual(loop, *args, **kw):
    try:
        return ("ok", await loop.getaddrinfo(*args, **kw))
    except OSError as exc:
        return ("err", type(exc), getattr(exc, "errno", None))


def test_getaddrinfo_matrix(loop):
    cases = list(itertools.product(HOSTS, PORTS, FAMILIES, TYPES, FLAGS))

    async def main():
        mismatches = []
        for host, port, fam, typ, flags in cases:
            want = _expected(host, port, family=fam, type=typ, flags=flags)
            got = await _actual(loop, host, port, family=fam, type=typ, flags=flags)
            if want != got:
                mismatches.append(((host, port, fam, typ, flags), want, got))
        return mismatches

    assert loop.run_until_complete(main()) == []


@pytest.mark.parametrize("addr,flags", [
    (("127.0.0.1", 80), 0),
    (("127.0.0.1", 80), socket.NI_NUMERICHOST | socket.NI_NUMERICSERV),
    (("::1", 443, 0, 0), 0),
    (("127.0.0.1", 53), socket.NI_DGRAM),
])
def test_getnameinfo(loop, addr, flags):
    assert loop.run_until_complete(loop.getnameinfo(addr, flags)) == socket.getnameinfo(addr, flags)


# ---- the socket module's conversions, compared in full ---------------------
# repr() of the answer shows the IntEnum members (an int would compare equal to
# them); an error compares by type, args and str.

def _outcome_sync(fn, *args, **kw):
    try:
        return ("ok", repr(fn(*args, **kw)))
    except Exception as exc:
        return ("err", type(exc), exc.args, str(exc))


async def _outcome(coro_fn, *args, **kw):
    try:
        return ("ok", repr(await coro_fn(*args, **kw)))
    except Exception as exc:
        return ("err", type(exc), exc.args, str(exc))


AI_IDN = getattr(socket, "AI_IDN", 0x40)


class _IntWithStr(int):
    def __str__(self):
        return "999"


class _Index:
    def __index__(self):
        return 80


class _Port(enum.IntEnum):
    HTTP = 80


# hosts and ports that make no query to a name server (numeric, /etc/hosts,
# or refused before one), with every kind of argument socket.getaddrinfo takes
ODD_CASES = [
    (b"localhost", 80, {}),
    (b"127.0.0.1", b"80", {}),
    (bytearray(b"127.0.0.1"), 80, {}),
    ("127.0.0.1", 80, {"family": socket.AF_INET}),
    ("127.0.0.1", 80, {"family": socket.AF_INET6}),
    ("::1", 80, {"family": socket.AF_INET, "flags": socket.AI_NUMERICHOST}),
    ("127.0.0.1", 80, {"family": socket.AF_UNIX}),
    ("127.0.0.1", 80, {"type": socket.SOCK_RAW}),
    ("127.0.0.1", 80, {"type": socket.SOCK_STREAM, "proto": socket.IPPROTO_UDP}),
    ("127.0.0.1", 80, {"proto": socket.IPPROTO_TCP}),
    ("127.0.0.1", 80, {"type": 12345}),
    ("127.0.0.1", 80, {"flags": 0x7fff0000}),
    ("localhost", 80, {"flags": socket.AI_CANONNAME}),
    ("localhost", "http", {"flags": socket.AI_CANONNAME | socket.AI_ADDRCONFIG}),
    ("127.0.0.1", 80, {"flags": AI_IDN}),
    ("fe80::1%1", 80, {"flags": socket.AI_NUMERICHOST}),
    ("fe80::1%lo", 443, {"type": socket.SOCK_STREAM}),
    (None, None, {}),
    (None, 80, {"flags": socket.AI_PASSIVE}),
    ("127.0.0.1", "no-such-service-name", {}),
    ("127.0.0.1", "80\x00x", {}),
    ("127.0.0.1", -1, {}),
    ("127.0.0.1", 65536, {}),
    ("127.0.0.1", 2 ** 70, {}),
    ("127.0.0.1", True, {}),
    ("127.0.0.1", 2 ** 63, {}),
    ("127.0.0.1", 10 ** 30, {}),
    ("127.0.0.1", _IntWithStr(80), {}),
    ("127.0.0.1", _Index(), {}),
    ("127.0.0.1", _Port.HTTP, {}),
    ("127.0.0.1", 1.5, {}),
    ("127.0.0.1", "\udcff", {}),
    ("127.0.0.1\x00junk", 80, {}),
    ("a..b", 80, {}),
    ("x" * 64 + ".test", 80, {}),
    ("bücher.test", 80, {"flags": socket.AI_NUMERICHOST}),
    (b"b\xc3\xbccher.test", 80, {"flags": socket.AI_NUMERICHOST}),
    (b"1" * 300, 80, {"flags": socket.AI_NUMERICHOST}),
    (42, 80, {}),
    # the "idna" codec's ASCII rules (labels 1-63 long, the last may be empty)
    *((host, 80, {"flags": socket.AI_NUMERICHOST}) for host in (
        "", ".", "a.", ".a", "a..", "127.0.0.1.", "x" * 63 + ".y", "x" * 63, "x" * 64,
        "y." + "x" * 64, "x" * 64 + ".y", "a\x00.b", "127.0.0.1\x00")),
    ("127.0.0.1", 80, {"family": 1.0}),
    ("127.0.0.1", 80, {"family": 2 ** 40}),
    ("127.0.0.1", 80, {"family": socket.AF_INET, "type": socket.SOCK_DGRAM,
                       "proto": socket.IPPROTO_UDP, "flags": socket.AI_NUMERICHOST}),
]


@pytest.mark.parametrize("host,port,kw", ODD_CASES, ids=[repr(c[:2]) + repr(c[2]) for c in ODD_CASES])
def test_getaddrinfo_same_as_socket(loop, host, port, kw):
    want = _outcome_sync(socket.getaddrinfo, host, port, **kw)
    got = loop.run_until_complete(_outcome(loop.getaddrinfo, host, port, **kw))
    assert got == want


NAMEINFO_CASES = [
    (("127.0.0.1", 80), 0),
    (("127.0.0.1", 80), socket.NI_NAMEREQD),
    (("127.0.0.1", 80), socket.NI_NUMERICHOST | socket.NI_NUMERICSERV | socket.NI_DGRAM),
    (("::1", 80, 0, 0), socket.NI_NUMERICHOST),
    (("::1", 80, 5, 0), socket.NI_NUMERICHOST),
    (("fe80::1", 80, 0, 1), socket.NI_NUMERICHOST),
    (("::1", 80, 0x100000, 0), 0),
    (("127.0.0.1", 80, 0, 0), 0),
    (("127.0.0.1",), 0),
    (("localhost", 80), 0),
    (("not an address", 80), 0),
    (("127.0.0.1", "80"), 0),
    (["127.0.0.1", 80], 0),
    ("127.0.0.1", 0),
    (("127.0.0.1", 80), -1),
    (("127.0.0.1", 80), 1.5),
    (("127.0.0.1\x00", 80), 0),
]


@pytest.mark.parametrize("addr,flags", NAMEINFO_CASES, ids=[repr(c) for c in NAMEINFO_CASES])
def test_getnameinfo_same_as_socket(loop, addr, flags):
    want = _outcome_sync(socket.getnameinfo, addr, flags)
    got = loop.run_until_complete(_outcome(loop.getnameinfo, addr, flags))
    assert got == want


def test_getaddrinfo_many_at_once(loop):
    """More lookups than the pool has threads, all answered, in any order."""
    want = socket.getaddrinfo("localhost", 80, type=socket.SOCK_STREAM)

    async def main():
        return await asyncio.gather(*(loop.getaddrinfo("localhost", 80, type=socket.SOCK_STREAM)
                                      for _ in range(64)))

    assert loop.run_until_complete(main()) == [want] * 64


def test_getaddrinfo_debug_logging(loop, caplog):
    """Debug mode logs the lookup as the stdlib loop does: what is asked, then
    how long it took and what came back."""
    loop.set_debug(True)
    loop.slow_callback_duration = 1e6
    want = socket.getaddrinfo("127.0.0.1", 80, type=socket.SOCK_STREAM)
    with caplog.at_level("DEBUG", logger="asyncio"):
        got = loop.run_until_complete(loop.getaddrinfo("127.0.0.1", 80, type=socket.SOCK_STREAM))
    assert got == want
    messages = [r.getMessage() for r in caplog.records if "address info" in r.getMessage()]
    assert messages[0] == "Get address info 127.0.0.1:80, type=<SocketKind.SOCK_STREAM: 1>"
    prefix = "Getting address info 127.0.0.1:80, type=<SocketKind.SOCK_STREAM: 1> took "
    assert messages[1].startswith(prefix)
    assert messages[1].endswith("ms: " + repr(want))
    assert [r.levelname for r in caplog.records if "address info" in r.getMessage()] == ["DEBUG"] * 2


# ---- pyloop's requests: cancellation and teardown ---------------------------

def _pool_size():
    return int(os.environ.get("UV_THREADPOOL_SIZE") or 4)


class _BlockedPool:
    """Keeps every thread of libuv's pool busy: each opens a FIFO for reading,
    which blocks until release() opens its write end."""

    def __init__(self, loop, tmp_path):
        self.path = str(tmp_path / "fifo")
        os.mkfifo(self.path)
        self.reqs = [_core.fs_open(loop, os.fsencode(self.path), self.path, os.O_RDONLY, 0)
                     for _ in range(_pool_size())]

    def release(self):
        fd = os.open(self.path, os.O_WRONLY)
        return fd


def test_cancel_queued_lookup_leaves_the_pool(pyloop_loop, tmp_path):
    loop = pyloop_loop
    before = _core._counters()
    pool = _BlockedPool(loop, tmp_path)
    req = _core.dns_getaddrinfo(loop, "127.0.0.1", 80, 0, 0, 0, 0)
    fut = req.future
    assert req.pending
    assert req.cancel() is True           # still queued: out of the pool
    wfd = pool.release()
    try:
        fds = loop.run_until_complete(asyncio.gather(*(r.future for r in pool.reqs)))
    finally:
        os.close(wfd)
    for fd in fds:
        os.close(fd)

    async def settle():
        while req.pending:
            await asyncio.sleep(0)

    loop.run_until_complete(settle())
    assert not fut.done()                 # nothing delivered for a cancelled lookup
    after = _core._counters()
    assert after["requests_created"] - before["requests_created"] == len(pool.reqs) + 1
    assert after["requests_freed"] - before["requests_freed"] == len(pool.reqs) + 1


def test_cancelled_task_cancels_its_lookup(pyloop_loop, tmp_path):
    loop = pyloop_loop
    pool = _BlockedPool(loop, tmp_path)

    async def main():
        task = asyncio.ensure_future(loop.getaddrinfo("127.0.0.1", 80))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        wfd = pool.release()
        try:
            fds = await asyncio.gather(*(r.future for r in pool.reqs))
        finally:
            os.close(wfd)
        for fd in fds:
            os.close(fd)
        # the pool works again, and the next lookup is answered
        return await loop.getaddrinfo("127.0.0.1", 80)

    assert loop.run_until_complete(main()) == socket.getaddrinfo("127.0.0.1", 80)


def test_lookup_cut_short_by_a_timeout_leaves_the_loop_usable(loop):
    """wait_for(timeout=0) cancels the lookup whether queued or running; the
    next lookup gets its own answer, not the dropped one."""
    async def main():
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(loop.getaddrinfo("localhost", 80), 0)
        return await loop.getaddrinfo("127.0.0.1", 443, type=socket.SOCK_STREAM)

    want = socket.getaddrinfo("127.0.0.1", 443, type=socket.SOCK_STREAM)
    assert loop.run_until_complete(main()) == want


def test_close_with_lookups_pending_frees_them():
    before = _core._counters()
    loop = pyloop.new_event_loop()
    reqs = [_core.dns_getaddrinfo(loop, "localhost", 80, 0, 0, 0, 0) for _ in range(40)]
    reqs += [_core.dns_getnameinfo(loop, ("127.0.0.1", 80), 0) for _ in range(10)]
    futs = [r.future for r in reqs]
    loop.close()
    after = _core._counters()
    assert not any(r.pending for r in reqs)
    assert not any(f.done() for f in futs)
    assert after["requests_created"] - before["requests_created"] == 50
    assert after["requests_freed"] - before["requests_freed"] == 50


def test_lookup_on_a_closed_loop_raises():
    loop = pyloop.new_event_loop()
    loop.close()
    with pytest.raises(RuntimeError):
        _core.dns_getaddrinfo(loop, "localhost", 80, 0, 0, 0, 0)
    with pytest.raises(RuntimeError):
        _core.dns_getnameinfo(loop, ("127.0.0.1", 80), 0)


def test_request_type_cannot_be_made_from_python():
    req_type = type(_core.dns_getaddrinfo)  # the function's type is not the request's
    loop = pyloop.new_event_loop()
    try:
        req = _core.dns_getaddrinfo(loop, "127.0.0.1", 80, 0, 0, 0, 0)
        fut = req.future
        with pytest.raises(TypeError):
            type(req)()
        with pytest.raises(TypeError):
            _core.dns_getaddrinfo(object(), "127.0.0.1", 80, 0, 0, 0, 0)
        assert loop.run_until_complete(fut) == socket.getaddrinfo("127.0.0.1", 80)
    finally:
        loop.close()
    assert req_type is not type(req)


@pytest.mark.parametrize("running", ["this loop", "none"])
def test_lookup_future_belongs_to_its_loop(pyloop_loop, running):
    """A lookup's Future is the loop's, whether or not asyncio's running loop
    of this thread is the loop (it is made without loop= only when it is)."""
    loop = pyloop_loop

    async def main():
        if running == "none":
            asyncio.events._set_running_loop(None)
        try:
            req = _core.dns_getaddrinfo(loop, "127.0.0.1", 80, 0, socket.SOCK_STREAM, 0, 0)
        finally:
            asyncio.events._set_running_loop(None)
            asyncio.events._set_running_loop(loop)
        assert req.future.get_loop() is loop
        return await req.future

    got = loop.run_until_complete(main())
    assert got == socket.getaddrinfo("127.0.0.1", 80, 0, socket.SOCK_STREAM)
