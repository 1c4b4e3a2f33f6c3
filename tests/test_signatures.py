"""Every public method of the running Python's AbstractEventLoop and
AbstractServer is provided, with the signature of the stdlib loop's."""
import asyncio
import inspect

import pytest

import pyloop

ABSTRACT = sorted(n for n, v in vars(asyncio.AbstractEventLoop).items()
                  if not n.startswith("_") and callable(v))
SERVER = sorted(n for n, v in vars(asyncio.AbstractServer).items()
                if not n.startswith("_") and callable(v))


def _sig_tuple(fn):
    sig = inspect.signature(fn)
    return [(p.name, p.kind, p.default) for p in sig.parameters.values()]


def _same_api(ours, theirs, name):
    mine, stdlib = getattr(ours, name), getattr(theirs, name)
    assert _sig_tuple(mine) == _sig_tuple(stdlib), name
    assert inspect.iscoroutinefunction(mine) == inspect.iscoroutinefunction(stdlib), name


@pytest.mark.parametrize("name", ABSTRACT)
def test_every_loop_method_with_the_stdlib_signature(name):
    # Every public method of this Python's AbstractEventLoop is provided
    # (none is the abstract one that raises NotImplementedError), with the
    # signature of the stdlib loop of the same version.
    assert getattr(pyloop.Loop, name) is not getattr(asyncio.AbstractEventLoop, name), name
    ours, theirs = pyloop.new_event_loop(), asyncio.new_event_loop()
    try:
        _same_api(ours, theirs, name)
    finally:
        ours.close()
        theirs.close()


@pytest.mark.parametrize("name", SERVER)
def test_every_server_method_with_the_stdlib_signature(name, tmp_path):
    # The servers create_server/create_unix_server return have every public
    # method of this Python's AbstractServer, as the stdlib loop's have.
    async def serve():
        loop = asyncio.get_running_loop()
        tcp = await loop.create_server(asyncio.Protocol, "127.0.0.1", 0)
        unix = await loop.create_unix_server(asyncio.Protocol, str(tmp_path / f"{id(loop)}.sock"))
        for srv in (tcp, unix):
            srv.close()
            await srv.wait_closed()
        return tcp, unix

    ours = pyloop.new_event_loop()
    theirs = asyncio.new_event_loop()
    try:
        servers = ours.run_until_complete(serve()) + theirs.run_until_complete(serve())
    finally:
        ours.close()
        theirs.close()
    for srv in servers:
        assert getattr(type(srv), name) is not getattr(asyncio.AbstractServer, name), name
    for mine in servers[:2]:
        _same_api(mine, servers[2], name)


def test_handle_api(pyloop_loop):
    h = pyloop_loop.call_soon(print)
    t = pyloop_loop.call_later(1, print)
    for name in ("cancel", "cancelled", "get_context"):
        assert callable(getattr(h, name))
    assert callable(t.when)
    h.cancel()
    t.cancel()
