"""Every AbstractEventLoop method pyloop provides has the stdlib signature of
the running Python version; the rest are absent, never NotImplementedError."""
import asyncio
import inspect

import pytest

import pyloop

ABSTRACT = sorted(n for n, v in vars(asyncio.AbstractEventLoop).items()
                  if not n.startswith("_") and callable(v))

# The methods the loop core provides (later work adds networking, pipes,
# subprocesses and TLS; each appears here when it works).
CORE = [
    "run_forever", "run_until_complete", "stop", "is_running", "is_closed", "close",
    "shutdown_asyncgens", "shutdown_default_executor", "call_soon", "call_later", "call_at",
    "time", "create_future", "create_task", "call_soon_threadsafe", "run_in_executor",
    "set_default_executor", "add_signal_handler", "remove_signal_handler",
    "set_task_factory", "get_task_factory", "get_exception_handler",
    "set_exception_handler", "default_exception_handler", "call_exception_handler",
    "get_debug", "set_debug",
]


def _provided():
    return [n for n in ABSTRACT if hasattr(pyloop.Loop, n)]


def _sig_tuple(fn):
    sig = inspect.signature(fn)
    return [(p.name, p.kind, p.default) for p in sig.parameters.values()]


@pytest.mark.parametrize("name", CORE)
def test_core_method_provided(name):
    assert hasattr(pyloop.Loop, name)
    assert getattr(pyloop.Loop, name) is not getattr(asyncio.AbstractEventLoop, name)


@pytest.mark.parametrize("name", ABSTRACT)
def test_signature_matches_stdlib(name):
    if name not in _provided():
        # Absent, not a NotImplementedError stub.
        lp = pyloop.new_event_loop()
        try:
            assert not hasattr(lp, name)
            with pytest.raises(AttributeError):
                getattr(lp, name)
        finally:
            lp.close()
        return
    ours = pyloop.new_event_loop()
    theirs = asyncio.new_event_loop()
    try:
        assert _sig_tuple(getattr(ours, name)) == _sig_tuple(getattr(theirs, name)), name
        assert (inspect.iscoroutinefunction(getattr(ours, name))
                == inspect.iscoroutinefunction(getattr(theirs, name))), name
    finally:
        ours.close()
        theirs.close()


def test_no_provided_method_is_the_abstract_one():
    for name in _provided():
        assert getattr(pyloop.Loop, name) is not getattr(asyncio.AbstractEventLoop, name), name


def test_handle_api(pyloop_loop):
    h = pyloop_loop.call_soon(print)
    t = pyloop_loop.call_later(1, print)
    for name in ("cancel", "cancelled", "get_context"):
        assert callable(getattr(h, name))
    assert callable(t.when)
    h.cancel()
    t.cancel()
