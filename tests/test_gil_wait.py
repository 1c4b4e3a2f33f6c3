"""Threads and signals around the loop's wait. pyloop releases the GIL only
around its wait in libuv's epoll_wait (the prepare callback in csrc/loop.c)
and takes it back from the first callback after it; these tests start the
threads that could be kept waiting for the GIL, or whose wake-up could be
lost, at points inside and around that wait (a Python thread and a C thread
started from callbacks, executor threads), and deliver signals during short
waits. A lost wake-up or a deadlock would hang them: every wait here has a
timeout. (docs/internals.md, "Waits and the GIL", says why the wait always
releases the GIL.)"""
import asyncio
import ctypes
import signal
import threading
import time

import pytest

TIMEOUT = 30
DELAYS = (0, 0.0003, 0.0008, 0.002)  # from the next pass to a few waits later


def _wake_from_thread_started_by_callback(loop, delay):
    fut = loop.create_future()
    threads = []

    def start():
        th = threading.Thread(target=loop.call_soon_threadsafe, args=(fut.set_result, delay))
        threads.append(th)
        th.start()

    loop.call_later(delay, start)
    assert loop.run_until_complete(asyncio.wait_for(fut, TIMEOUT)) == delay
    threads[0].join(TIMEOUT)
    assert not threads[0].is_alive()


def test_thread_started_from_a_callback_wakes_the_loop(loop):
    # The loop is alone until the callback starts the thread, which at once
    # queues a callback from its own side: it must run, whether the thread
    # got to it before the loop's next wait or during it.
    for _ in range(5):
        for delay in DELAYS:
            _wake_from_thread_started_by_callback(loop, delay)


_START_ROUTINE = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p)


def _libc_threads():
    try:
        libc = ctypes.CDLL(None)
        return libc.pthread_create, libc.pthread_join
    except (OSError, AttributeError):  # pragma: no cover - not glibc/musl
        pytest.skip("no pthread_create in the C library")


def test_c_thread_taking_the_gil_wakes_the_loop(loop):
    # A thread created in C that calls into Python (a ctypes callback takes
    # the GIL with PyGILState_Ensure, making its thread state then): a thread
    # that can start wanting the GIL while the loop's only thread is already
    # waiting, unknown to Python until then. It must get the GIL and its
    # call_soon_threadsafe must wake the loop. pthread_create through CDLL
    # runs without the GIL, so the new thread races the loop thread back to
    # its next wait.
    pthread_create, pthread_join = _libc_threads()
    for i in range(40):
        fut = loop.create_future()
        tid = ctypes.c_ulong()
        entered = []

        def routine(_arg, fut=fut, i=i):
            entered.append(threading.get_ident())
            loop.call_soon_threadsafe(fut.set_result, i)
            return None

        fn = _START_ROUTINE(routine)  # kept alive until the join below

        def start(fn=fn, tid=tid):
            assert pthread_create(ctypes.byref(tid), None, fn, None) == 0

        loop.call_later(DELAYS[i % len(DELAYS)], start)
        try:
            assert loop.run_until_complete(asyncio.wait_for(fut, TIMEOUT)) == i
        finally:
            if tid.value:
                assert pthread_join(tid, None) == 0
        assert entered and entered[0] != threading.get_ident()


def test_executor_started_during_waits(loop):
    # run_in_executor's worker threads appear while the loop runs; the loop
    # must see their results whichever way it waits.
    async def main():
        got = []
        for i in range(10):
            got.append(await loop.run_in_executor(None, time.sleep, 0.001 * (i % 3)))
        return got

    assert loop.run_until_complete(asyncio.wait_for(main(), TIMEOUT)) == [None] * 10


@pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="no setitimer")
def test_signal_handler_runs_for_signals_during_short_waits(loop):
    # SIGALRM every half millisecond, with no other thread: the signals land
    # in short waits and each must end the wait and run the handler.
    done = loop.create_future()
    count = [0]

    def on_alarm():
        count[0] += 1
        if count[0] == 30 and not done.done():
            done.set_result(None)

    loop.add_signal_handler(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, 0.0005, 0.0005)
    try:
        loop.run_until_complete(asyncio.wait_for(done, TIMEOUT))
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        loop.remove_signal_handler(signal.SIGALRM)
    assert count[0] >= 30


@pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="no setitimer")
def test_keyboard_interrupt_from_a_signal_during_a_short_wait(loop):
    # Ctrl-C as Python delivers it (the default SIGINT handler raises
    # KeyboardInterrupt), timed to land in the first wait of a sleeping loop
    # or just after it, with no other thread alive to wake it.
    old = signal.signal(signal.SIGALRM, signal.default_int_handler)
    try:
        for delay in (0.0002, 0.0006, 0.0015, 0.004):
            task = loop.create_task(asyncio.sleep(TIMEOUT))
            signal.setitimer(signal.ITIMER_REAL, delay)
            with pytest.raises(KeyboardInterrupt):
                loop.run_until_complete(task)
            assert not loop.is_running()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                loop.run_until_complete(task)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    assert loop.run_until_complete(asyncio.sleep(0, "still works")) == "still works"
