"""Loop lifecycle: run/stop/close, running-loop registration, runners, policies."""
import asyncio
import gc
import socket
import sys
import threading
import time
import warnings

import pytest

import pyloop


def test_run_until_complete_result(loop):
    async def main():
        await asyncio.sleep(0)
        return 42

    assert loop.run_until_complete(main()) == 42


def test_run_until_complete_exception(loop):
    async def main():
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        loop.run_until_complete(main())


def test_run_until_complete_adds_stdlib_done_callback(loop):
    fut = loop.create_future()
    seen = []

    def probe():
        # Libraries look for this exact callback on the future.
        seen.append(fut.remove_done_callback(asyncio.base_events._run_until_complete_cb))
        fut.add_done_callback(asyncio.base_events._run_until_complete_cb)
        fut.set_result(None)

    loop.call_soon(probe)
    loop.run_until_complete(fut)
    assert seen == [1]


def test_run_until_complete_future_not_done_when_stopped(loop):
    fut = loop.create_future()
    loop.call_soon(loop.stop)
    with pytest.raises(RuntimeError, match="Event loop stopped before Future completed"):
        loop.run_until_complete(fut)


def test_stop_before_run_runs_one_iteration(loop):
    order = []
    loop.call_soon(order.append, 1)
    loop.call_soon(lambda: loop.call_soon(order.append, 3))
    loop.stop()
    loop.run_forever()
    assert order == [1]
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert order == [1, 3]


def test_stop_inside_callback_finishes_iteration(loop):
    order = []
    loop.call_soon(order.append, 1)
    loop.call_soon(loop.stop)
    loop.call_soon(order.append, 2)
    loop.run_forever()
    assert order == [1, 2]
    assert not loop.is_running()


def test_is_running_and_closed(loop):
    seen = []
    loop.call_soon(lambda: seen.append(loop.is_running()))
    loop.call_soon(loop.stop)
    assert not loop.is_running()
    loop.run_forever()
    assert seen == [True]
    assert not loop.is_closed()
    loop.close()
    assert loop.is_closed()
    loop.close()  # twice is fine


@pytest.mark.parametrize("nested_call", ["run_forever", "run_until_complete"])
def test_run_while_running_raises(loop, nested_call):
    # One nested attempt per run: after a refused nested run_forever(), the
    # 3.13.0 stdlib loop forgets that it is running.
    errors = []

    def nested():
        try:
            if nested_call == "run_forever":
                loop.run_forever()
            else:
                loop.run_until_complete(loop.create_future())
        except RuntimeError as exc:
            errors.append(str(exc))
        loop.stop()

    loop.call_soon(nested)
    loop.run_forever()
    assert errors == ["This event loop is already running"]


def test_run_until_complete_from_other_thread_raises(loop):
    started = threading.Event()
    release = threading.Event()

    async def hold():
        started.set()
        while not release.is_set():
            await asyncio.sleep(0.01)

    result = []

    def other():
        started.wait(5)
        try:
            loop.run_until_complete(asyncio.Future(loop=loop))
        except RuntimeError as exc:
            result.append(type(exc))
        finally:
            release.set()

    t = threading.Thread(target=other)
    t.start()
    loop.run_until_complete(hold())
    t.join()
    assert result == [RuntimeError]


def test_run_while_other_loop_running_raises(loop_factory):
    outer = loop_factory()
    inner = loop_factory()
    errors = []

    def cb():
        try:
            inner.run_until_complete(inner.create_future())
        except RuntimeError as exc:
            errors.append(str(exc))
        outer.stop()

    outer.call_soon(cb)
    try:
        outer.run_forever()
    finally:
        outer.close()
        inner.close()
    assert errors == ["Cannot run the event loop while another loop is running"]


def _closed_calls(loop):
    def coro():
        return asyncio.sleep(0)

    return [
        ("call_soon", lambda: loop.call_soon(print)),
        ("call_later", lambda: loop.call_later(1, print)),
        ("call_at", lambda: loop.call_at(loop.time() + 1, print)),
        ("call_soon_threadsafe", lambda: loop.call_soon_threadsafe(print)),
        ("create_task", coro),
        ("run_forever", lambda: loop.run_forever()),
        ("run_until_complete", coro),
        ("run_in_executor", lambda: loop.run_in_executor(None, print)),
    ]


@pytest.mark.parametrize("method", ["call_soon", "call_later", "call_at", "call_soon_threadsafe",
                                    "create_task", "run_forever", "run_until_complete",
                                    "run_in_executor"])
def test_closed_loop_raises(loop, method):
    loop.close()
    if method in ("create_task", "run_until_complete"):
        c = asyncio.sleep(0)
        try:
            with pytest.raises(RuntimeError, match="Event loop is closed"):
                getattr(loop, method)(c)
        finally:
            c.close()
        return
    call = dict(_closed_calls(loop))[method]
    with pytest.raises(RuntimeError, match="Event loop is closed"):
        call()


def test_close_running_loop_raises(loop):
    errors = []

    def cb():
        try:
            loop.close()
        except RuntimeError as exc:
            errors.append(str(exc))
        loop.stop()

    loop.call_soon(cb)
    loop.run_forever()
    assert errors == ["Cannot close a running event loop"]
    assert not loop.is_closed()


def test_running_loop_registered_before_first_callback(loop):
    seen = []
    loop.call_soon(lambda: seen.append(asyncio.get_running_loop()))
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert seen == [loop]
    with pytest.raises(RuntimeError):
        asyncio.get_running_loop()


def test_runner_with_loop_factory(loop_factory):
    async def main():
        return asyncio.get_running_loop()

    with asyncio.Runner(loop_factory=loop_factory) as runner:
        lp = runner.run(main())
        assert lp is runner.get_loop()
    assert lp.is_closed()


@pytest.mark.skipif(sys.version_info < (3, 12), reason="asyncio.run(loop_factory=) is new in 3.12")
def test_asyncio_run_loop_factory(loop_factory):
    async def main():
        return type(asyncio.get_running_loop())

    assert asyncio.run(main(), loop_factory=loop_factory) is type(loop_factory())


def test_pyloop_run():
    async def main():
        return asyncio.get_running_loop()

    lp = pyloop.run(main())
    assert isinstance(lp, pyloop.Loop)
    assert lp.is_closed()


def test_pyloop_run_debug():
    async def main():
        return asyncio.get_running_loop().get_debug()

    assert pyloop.run(main(), debug=True) is True
    assert pyloop.run(main(), debug=False) is False


def test_policy_and_install():
    old = asyncio.get_event_loop_policy()
    try:
        pyloop.install()
        assert isinstance(asyncio.get_event_loop_policy(), pyloop.EventLoopPolicy)
        lp = asyncio.new_event_loop()
        try:
            assert isinstance(lp, pyloop.Loop)
        finally:
            lp.close()

        async def main():
            return type(asyncio.get_running_loop())

        assert asyncio.run(main()) is pyloop.Loop
    finally:
        asyncio.set_event_loop_policy(old)


def test_isinstance_abstract_event_loop(pyloop_loop):
    assert isinstance(pyloop_loop, asyncio.AbstractEventLoop)
    assert "Loop running=False closed=False" in repr(pyloop_loop)


def test_unclosed_loop_warns_and_does_not_crash(loop_factory):
    lp = loop_factory()
    lp.call_soon(print)
    lp.call_later(100, print)
    with pytest.warns(ResourceWarning, match="unclosed event loop"):
        del lp
        gc.collect()


def test_time_is_monotonic_clock(loop):
    before = time.monotonic()
    t = loop.time()
    after = time.monotonic()
    assert before <= t <= after


def test_loop_can_run_again_after_stop(loop):
    for i in range(3):
        assert loop.run_until_complete(asyncio.sleep(0, i)) == i


def test_iteration_order_ready_then_io_then_timers(loop):
    # One iteration runs, in this order, the callbacks ready when it began,
    # the I/O callbacks, then the timers due; what they schedule runs next.
    a, b = socket.socketpair()
    order = []

    def first():
        order.append("ready")
        loop.call_soon(order.append, "next")

    def on_read():
        order.append("io")
        loop.remove_reader(a.fileno())

    try:
        b.send(b"x")
        loop.add_reader(a.fileno(), on_read)
        loop.call_at(loop.time() - 1, order.append, "timer")
        loop.call_soon(first)
        loop.call_soon(lambda: loop.call_soon(loop.stop))
        loop.run_forever()
    finally:
        loop.remove_reader(a.fileno())
        a.close()
        b.close()
    assert order == ["ready", "io", "timer", "next"]


def test_timer_scheduled_in_an_iteration_fires_in_the_next(loop):
    # Even when already due, a timer scheduled by a callback runs after the
    # callbacks that callback scheduled with call_soon: the stdlib collects
    # due timers before it runs an iteration's callbacks.
    order = []

    def first():
        order.append("first")
        loop.call_at(loop.time() - 1, order.append, "timer")
        loop.call_soon(order.append, "soon")
        loop.call_later(0, lambda: loop.call_soon(loop.stop))

    loop.call_soon(first)
    loop.run_forever()
    assert order == ["first", "soon", "timer"]



def test_sub_millisecond_sleeps_never_stall_the_loop(pyloop_loop):
    # The timer-heap deadline is a uv_timer that only bounds libuv's wait.
    # uv_run runs due timers before it polls: when libuv's millisecond clock
    # ticks between arming that timer and that run, it fires there and no
    # longer bounds the poll, which must then not wait with no deadline.
    # A sleep shorter than a millisecond, repeated, hits that window.
    import threading
    loop = pyloop_loop
    watchdog = threading.Timer(60, loop.call_soon_threadsafe, (loop.stop,))
    watchdog.start()
    try:
        for _ in range(3000):
            loop.run_until_complete(asyncio.sleep(0.0002))
    finally:
        watchdog.cancel()


@pytest.mark.parametrize("impl", ["py", "c"])
def test_running_loop_with_either_implementation_installed(loop, monkeypatch, impl):
    # asyncio keeps the running loop in C (_asyncio) and in Python; code may
    # install either as events._get/_set_running_loop (3.14's own tests do),
    # and tasks made by create_task must still find their loop running.
    from asyncio import events
    getter = getattr(events, f"_{impl}__get_running_loop", None)
    setter = getattr(events, f"_{impl}__set_running_loop", None)
    if getter is None:
        pytest.skip(f"this Python has no {impl} implementation of the running loop")
    for mod in (events, asyncio):
        monkeypatch.setattr(mod, "_get_running_loop", getter)
        monkeypatch.setattr(mod, "_set_running_loop", setter)
    if impl == "py":
        # as 3.14's TestPyGetEventLoop: the Task of the same implementation
        # for the loops that look tasks.Task up (pyloop makes C Tasks)
        monkeypatch.setattr(asyncio.tasks, "Task", asyncio.tasks._PyTask)

    async def child():
        await asyncio.sleep(0)
        return getter()

    async def main():
        task = loop.create_task(child())
        return getter(), await task

    assert loop.run_until_complete(main()) == (loop, loop)
    assert getter() is None


def test_io_that_arrives_while_callbacks_run_waits_behind_what_they_schedule(loop):
    # The stdlib polls before it runs the callbacks that are ready: data that
    # arrives while they run is delivered in the next iteration, after the
    # callbacks they scheduled meanwhile (aiohttp's tests rely on it).
    async def main():
        order, got = [], loop.create_future()

        class P(asyncio.Protocol):
            def data_received(self, data):
                order.append("data_received")
                if not got.done():
                    got.set_result(None)
        srv = await loop.create_server(P, "127.0.0.1", 0)
        peer = socket.create_connection(srv.sockets[0].getsockname())
        try:
            await asyncio.sleep(0.05)  # the connection is made
            peer.sendall(b"x")
            time.sleep(0.05)  # the data is in the socket, this step still runs
            loop.call_soon(order.append, "call_soon#1")
            loop.call_soon(order.append, "call_soon#2")
            await got
        finally:
            peer.close()
            srv.close()
            await srv.wait_closed()
        return order

    assert loop.run_until_complete(main()) == ["call_soon#1", "call_soon#2", "data_received"]
