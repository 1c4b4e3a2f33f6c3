"""call_soon_threadsafe: waking a sleeping loop from other threads."""
import asyncio
import contextvars
import threading

import pytest


def test_wakes_sleeping_loop(loop):
    fut = loop.create_future()

    def other():
        loop.call_soon_threadsafe(fut.set_result, "woken")

    # The loop has nothing else to do: without a wake-up it would sleep for
    # the full timeout of the outer wait_for.
    timer = threading.Timer(0.05, other)
    timer.start()
    try:
        assert loop.run_until_complete(asyncio.wait_for(fut, 30)) == "woken"
    finally:
        timer.join()


def test_many_threads_many_calls(loop):
    n_threads, n_calls = 4, 2000
    total = n_threads * n_calls
    done = loop.create_future()
    count = [0]

    def cb():
        count[0] += 1
        if count[0] == total:
            done.set_result(None)

    def worker():
        for _ in range(n_calls):
            loop.call_soon_threadsafe(cb)

    threads = [threading.Thread(target=worker) for _ in range(n_threads)]
    for t in threads:
        t.start()
    loop.run_until_complete(asyncio.wait_for(done, 60))
    for t in threads:
        t.join()
    assert count[0] == total


def test_threadsafe_with_context(loop):
    v = contextvars.ContextVar("v")
    ctx = contextvars.copy_context()
    ctx.run(v.set, "ctx-value")
    fut = loop.create_future()

    def other():
        loop.call_soon_threadsafe(lambda: fut.set_result(v.get()), context=ctx)

    t = threading.Thread(target=other)
    t.start()
    assert loop.run_until_complete(asyncio.wait_for(fut, 30)) == "ctx-value"
    t.join()


def test_threadsafe_before_run(loop):
    out = []
    t = threading.Thread(target=lambda: loop.call_soon_threadsafe(out.append, 1))
    t.start()
    t.join()
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert out == [1]


def test_wakes_loop_waiting_on_far_timer(loop):
    # A sleep bounded by a far-away timer must still be cut short.
    loop.call_later(3600, print)
    fut = loop.create_future()
    t = threading.Timer(0.02, lambda: loop.call_soon_threadsafe(fut.set_result, 1))
    t.start()
    assert loop.run_until_complete(fut) == 1
    t.join()


@pytest.mark.skipif(not hasattr(asyncio.events, "_ThreadSafeHandle"),
                    reason="events._ThreadSafeHandle is new in Python 3.14")
def test_threadsafe_handle_cancel_waits_for_the_running_callback(loop):
    # 3.14: call_soon_threadsafe returns a _ThreadSafeHandle; cancel() from
    # another thread while the callback runs returns only once it finished.
    started, finished, order, kinds = threading.Event(), threading.Event(), [], []

    def callback():
        started.set()
        order.append("callback runs")
        finished.wait(5)
        order.append("callback returns")

    def other_thread():
        handle = loop.call_soon_threadsafe(callback)
        kinds.append(type(handle))
        started.wait(5)
        threading.Timer(0.05, finished.set).start()
        handle.cancel()
        order.append("cancel returned")
        loop.call_soon_threadsafe(loop.stop)

    t = threading.Thread(target=other_thread)
    t.start()
    loop.run_forever()
    t.join()
    assert kinds == [asyncio.events._ThreadSafeHandle]
    assert order == ["callback runs", "callback returns", "cancel returned"]


@pytest.mark.skipif(not hasattr(asyncio.events, "_ThreadSafeHandle"),
                    reason="events._ThreadSafeHandle is new in Python 3.14")
def test_threadsafe_handle_cancelled_before_it_runs(loop):
    ran = []
    handle = loop.call_soon_threadsafe(ran.append, 1)
    handle.cancel()
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert ran == [] and handle.cancelled()


@pytest.mark.skipif(not hasattr(asyncio.events, "_ThreadSafeHandle"),
                    reason="events._ThreadSafeHandle is new in Python 3.14")
def test_threadsafe_handle_errors_and_context(loop):
    # the returned handle is the one the exception handler is given, and the
    # callback runs in the context it was scheduled with
    var = contextvars.ContextVar("var")
    seen, errors = [], []
    loop.set_exception_handler(lambda lp, ctx: errors.append(ctx))

    def fails():
        seen.append(var.get())
        raise ZeroDivisionError

    ctx = contextvars.copy_context()
    ctx.run(var.set, "scheduled")
    handle = loop.call_soon_threadsafe(fails, context=ctx)
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert seen == ["scheduled"]
    assert [type(e["exception"]) for e in errors] == [ZeroDivisionError]
    assert errors[0]["handle"] is handle and not handle.cancelled()
