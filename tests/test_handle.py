"""call_soon and Handle objects: ordering, arguments, contexts, cancellation,
errors in callbacks."""
import asyncio
import contextvars
import logging
import weakref

import pytest

import pyloop

var = contextvars.ContextVar("var", default="unset")


def run_once(loop):
    loop.call_soon(loop.stop)
    loop.run_forever()


def test_fifo_order_and_args(loop):
    out = []
    for i in range(50):
        loop.call_soon(out.append, i)
    loop.call_soon(lambda a, b, c: out.append((a, b, c)), 1, 2, 3)
    run_once(loop)
    assert out == list(range(50)) + [(1, 2, 3)]


def test_scheduled_during_iteration_runs_next_iteration(loop):
    out = []

    def first():
        out.append("first")
        loop.call_soon(out.append, "scheduled-by-first")

    loop.call_soon(first)
    loop.call_soon(out.append, "second")
    loop.stop()
    loop.run_forever()  # exactly one iteration
    assert out == ["first", "second"]
    run_once(loop)
    assert out == ["first", "second", "scheduled-by-first"]


def test_context_argument(loop):
    ctx = contextvars.copy_context()
    ctx.run(var.set, "in-ctx")
    out = []
    h = loop.call_soon(lambda: out.append(var.get()), context=ctx)
    if hasattr(h, "get_context"):  # Handle.get_context is new in 3.12
        assert h.get_context() is ctx
    run_once(loop)
    assert out == ["in-ctx"]


def test_default_context_is_copy_of_caller(loop):
    out = []

    def setter():
        var.set("changed-in-callback")

    token = var.set("caller")
    try:
        loop.call_soon(setter)
        loop.call_soon(lambda: out.append(var.get()))
        run_once(loop)
    finally:
        var.reset(token)
    # Each callback ran in its own copy: the setter's change did not leak.
    assert out == ["caller"]
    assert var.get() == "unset"


def test_cancel(loop):
    out = []
    h = loop.call_soon(out.append, 1)
    assert not h.cancelled()
    h.cancel()
    h.cancel()  # twice is fine
    assert h.cancelled()
    assert "cancelled" in repr(h)
    run_once(loop)
    assert out == []


def test_repr_names_callback(loop):
    def my_callback():
        pass

    h = loop.call_soon(my_callback)
    assert "my_callback" in repr(h)
    assert repr(h).startswith("<Handle")
    h.cancel()


def test_callback_cancels_itself(loop):
    out = []
    handles = []

    def cb():
        handles[0].cancel()
        out.append("ran")

    handles.append(loop.call_soon(cb))
    run_once(loop)
    assert out == ["ran"] and handles[0].cancelled()


def test_callback_exception_goes_to_handler(loop):
    contexts = []
    loop.set_exception_handler(lambda lp, ctx: contexts.append(ctx))
    out = []

    def bad():
        raise ValueError("boom")

    h = loop.call_soon(bad)
    loop.call_soon(out.append, "still running")
    run_once(loop)
    assert out == ["still running"]
    assert len(contexts) == 1
    ctx = contexts[0]
    assert isinstance(ctx["exception"], ValueError)
    assert ctx["handle"] is h
    assert ctx["message"].startswith("Exception in callback")


def test_callback_exception_logged_by_default(loop, caplog):
    def bad():
        raise ValueError("logged boom")

    with caplog.at_level(logging.ERROR, logger="asyncio"):
        loop.call_soon(bad)
        run_once(loop)
    assert "Exception in callback" in caplog.text
    assert "logged boom" in caplog.text


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit])
def test_base_exceptions_propagate(loop, exc_type):
    out = []

    def bad():
        raise exc_type()

    loop.call_soon(bad)
    loop.call_soon(out.append, "later")
    with pytest.raises(exc_type):
        loop.run_forever()
    assert not loop.is_running()
    # Nothing was lost: the remaining callback runs on the next run.
    run_once(loop)
    assert out == ["later"]
    assert loop.run_until_complete(asyncio.sleep(0, "again")) == "again"


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit])
def test_base_exceptions_propagate_from_run_until_complete(loop, exc_type):
    async def main():
        raise exc_type()

    with pytest.raises(exc_type):
        loop.run_until_complete(main())


def test_non_callable_raises_in_debug_mode(loop):
    loop.set_debug(True)
    with pytest.raises(TypeError, match="a callable object was expected"):
        loop.call_soon(1)
    with pytest.raises(TypeError):
        loop.call_later(1, "not callable")


def test_non_callable_raises_at_once_on_pyloop(pyloop_loop):
    # The stdlib defers this error to the exception handler outside debug
    # mode; pyloop refuses the call at once.
    with pytest.raises(TypeError, match="a callable object was expected"):
        pyloop_loop.call_soon(None)
    with pytest.raises(TypeError, match="a callable object was expected"):
        pyloop_loop.call_soon_threadsafe(42)


def test_coroutine_rejected_in_debug_mode(loop):
    loop.set_debug(True)

    async def coro_fn():
        pass

    c = coro_fn()
    try:
        with pytest.raises(TypeError, match="coroutines cannot be used"):
            loop.call_soon(c)
    finally:
        c.close()


def test_handle_types_cannot_be_constructed():
    for t in (pyloop._core.Handle, pyloop._core.TimerHandle):
        with pytest.raises(TypeError):
            t()


def test_unexpected_keyword(loop):
    with pytest.raises(TypeError):
        loop.call_soon(print, bogus=1)


def test_missing_callback(loop):
    with pytest.raises(TypeError):
        loop.call_soon()


def test_context_keyword_by_any_string_object(loop):
    # The C Task passes context= with a kwnames tuple of its own, whose
    # "context" need not be the interned string; a built one must match too,
    # as must the keyword in another tuple afterwards.
    out = []
    key = "".join(["con", "text"])
    for value in ("a", "b"):
        ctx = contextvars.copy_context()
        ctx.run(var.set, value)
        loop.call_soon(lambda: out.append(var.get()), **{key: ctx})
    ctx = contextvars.copy_context()
    ctx.run(var.set, "c")
    loop.call_soon(callback=lambda: out.append(var.get()), context=ctx)
    loop.call_soon(lambda x: out.append((x, var.get())), 1)
    run_once(loop)
    assert out == ["a", "b", "c", (1, "unset")]


def test_handles_made_after_others_were_freed_are_fresh(loop):
    # Handles that ran and were dropped may be reused by the loop: a weak
    # reference to an old one stays dead, and a new one has its own state.
    out = []
    old = loop.call_soon(out.append, 1)
    ref = weakref.ref(old)
    old.cancel()
    del old
    run_once(loop)
    assert ref() is None
    handles = [loop.call_soon(out.append, i) for i in range(2, 6)]
    assert ref() is None
    assert not any(h.cancelled() for h in handles)
    assert [h._args for h in handles] == [(i,) for i in range(2, 6)]
    handles[0].cancel()
    run_once(loop)
    assert out == [3, 4, 5]
