"""Waits that keep the GIL. When the loop's thread is the only Python thread,
pyloop waits in epoll without releasing the GIL, for a millisecond at most
(csrc/loop.c, pl_loop_gil_may_hold); after such a wait ends with nothing to
do, the next one releases it as before. These tests look for what that could
break: a thread that starts during a wait and wants the GIL (a lost wake-up
or a deadlock would hang them: every wait here has a timeout), signals
arriving during one, and the choice itself, read from pyloop's wait counters
in a fresh process (where no other test's thread can be alive)."""
import asyncio
import ctypes
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import pyloop

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMEOUT = 30
DELAYS = (0, 0.0003, 0.0008, 0.002)  # within a capped wait, and after it


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
    # appeared just before a wait or during one.
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
    # the GIL with PyGILState_Ensure, making its thread state then): the one
    # kind of thread that can start wanting the GIL while the loop waits
    # holding it. It must get the GIL and its call_soon_threadsafe must wake
    # the loop. pthread_create through CDLL runs without the GIL, so the new
    # thread races the loop thread back to its next wait.
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
    # in short waits (the ones that keep the GIL on pyloop) and each must end
    # the wait and run the handler.
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


COUNTS = textwrap.dedent("""
    import asyncio, json, sys, threading
    sys.path.insert(0, {root!r})
    import pyloop
    from pyloop import monitor

    def waits():
        c = pyloop._core._counters()
        return c["waits_gil_held"], c["waits_gil_released"]

    loop = pyloop.new_event_loop()

    def measure(coro):
        h0, r0 = waits()
        loop.run_until_complete(coro)
        h1, r1 = waits()
        return [h1 - h0, r1 - r0]

    async def sleeps(n, d):
        for _ in range(n):
            await asyncio.sleep(d)

    out = {{}}
    out["alone"] = measure(sleeps(5, 0.02))
    ev = threading.Event()
    th = threading.Thread(target=ev.wait)  # alive, blocked: the loop cannot know it
    th.start()
    out["other_thread"] = measure(sleeps(5, 0.02))
    ev.set()
    th.join()
    out["after_join"] = measure(sleeps(5, 0.02))
    old = sys.getswitchinterval()
    sys.setswitchinterval(0.0005)
    out["short_switch_interval"] = measure(sleeps(5, 0.02))
    sys.setswitchinterval(old)
    monitor.enable(loop)
    u0 = loop.utilization()
    out["monitored_short_sleeps"] = measure(sleeps(100, 0.0005))
    u1 = loop.utilization(u0)
    out["utilization"] = [u1.idle, u1.active]
    loop.close()
    print(json.dumps(out))
""")


@pytest.mark.skipif(getattr(sys, "_is_gil_enabled", lambda: True)() is False,
                    reason="the free-threaded build always releases")
def test_waits_keep_the_gil_only_when_the_loop_thread_is_alone():
    proc = subprocess.run([sys.executable, "-c", COUNTS.format(root=ROOT)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    held, released = out["alone"]
    # each sleep: one capped wait with the GIL, then one without it (the
    # loop is idle: no wake-up per cap); a wake-up a little early adds a pass
    assert held >= 5 and released >= 5
    assert held + released <= 15
    # another Python thread alive: every wait releases the GIL
    held, released = out["other_thread"]
    assert held == 0 and released >= 5
    held, released = out["after_join"]
    assert held >= 5 and released >= 5
    # a switch interval below the cap: the loop never keeps the GIL waiting
    held, released = out["short_switch_interval"]
    assert held == 0 and released >= 5
    # sleeps shorter than the cap wait with the GIL, and that waiting is
    # idle time to pyloop.monitor
    held, released = out["monitored_short_sleeps"]
    assert held >= 50
    idle, active = out["utilization"]
    assert idle > active

