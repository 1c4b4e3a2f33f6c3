"""pyloop.monitor: utilization, the delay histogram, slow callbacks, per-task
figures, counts, the Prometheus output and the live view.

No test asserts how fast something ran: every bound follows from what the
test injected (a callback that blocks for a known time makes whatever waits
behind it at least that late, and the loop at least that busy)."""
import asyncio
import gc
import logging
import os
import fcntl
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import textwrap
import threading
import time

import pytest

import pyloop
from pyloop import monitor

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def mloop():
    """A pyloop loop with monitoring on."""
    lp = pyloop.new_event_loop()
    monitor.enable(lp)
    try:
        yield lp
    finally:
        lp.close()
        gc.collect()


def test_off_unless_enabled(pyloop_loop):
    assert not monitor.is_enabled(pyloop_loop)
    with pytest.raises(RuntimeError, match="monitoring is off"):
        pyloop_loop.utilization()
    with pytest.raises(RuntimeError, match="monitoring is off"):
        monitor.delay_histogram(pyloop_loop)
    with pytest.raises(TypeError, match="pyloop loop"):
        monitor.enable(asyncio.new_event_loop())
    monitor.enable(pyloop_loop)
    assert monitor.is_enabled(pyloop_loop)
    monitor.disable(pyloop_loop)
    assert not monitor.is_enabled(pyloop_loop)
    pyloop_loop.run_until_complete(asyncio.sleep(0))


def test_utilization_of_a_loop_busy_for_a_known_share(mloop):
    async def main():
        time.sleep(0.1)            # running: the loop is busy
        await asyncio.sleep(0.2)   # waiting: the loop is blocked in the poll

    u0 = mloop.utilization()
    mloop.run_until_complete(main())
    u1 = mloop.utilization()
    assert u1.active >= 0.1
    assert u1.idle >= 0.1
    assert 0 < u1.utilization < 1
    assert u1.utilization == pytest.approx(u1.active / (u1.idle + u1.active))

    # The interval's figure: only a blocking second half now.
    async def busy():
        await asyncio.sleep(0)
        time.sleep(0.1)

    mloop.run_until_complete(busy())
    u2 = mloop.utilization(u1)
    assert u2.active >= 0.1
    assert u2.idle < u1.idle  # the interval waited for nothing long
    assert u2.active < mloop.utilization().active
    assert u0.idle <= u1.idle and u0.active <= u1.active


def test_utilization_outside_run_counts_neither(mloop):
    mloop.run_until_complete(asyncio.sleep(0))
    before = mloop.utilization()
    time.sleep(0.05)  # not running: neither busy nor idle
    after = mloop.utilization()
    assert after.active - before.active < 0.05
    assert after.idle == before.idle


def test_delay_of_callbacks_behind_a_blocking_one(mloop):
    h = monitor.delay_histogram(mloop)
    for _ in range(50):  # quick callbacks, one per iteration
        mloop.run_until_complete(asyncio.sleep(0))
    quick_count = h.count
    assert quick_count >= 50
    done = mloop.create_future()
    mloop.call_soon(time.sleep, 0.05)
    mloop.call_soon(done.set_result, None)  # queued before the sleep ran: >= 50 ms late
    mloop.run_until_complete(done)
    assert h.count > quick_count
    assert h.max >= 0.05
    assert h.percentile(100) == h.max
    assert h.min <= h.percentile(50) <= h.percentile(99) <= h.max
    assert h.min <= h.mean <= h.max
    assert h.stddev > 0
    assert h.percentile(0) == h.min
    with pytest.raises(ValueError):
        h.percentile(101)
    h.reset()
    assert (h.count, h.max, h.percentile(50)) == (0, 0.0, 0.0)


def test_timer_delay_counts_from_the_deadline(mloop):
    h = monitor.delay_histogram(mloop)
    fired = mloop.create_future()

    def block():
        mloop.call_later(0.01, fired.set_result, None)
        time.sleep(0.1)  # the timer is due 90 ms before this returns

    mloop.call_soon(block)
    mloop.run_until_complete(fired)
    assert h.max >= 0.09


def test_a_callback_queued_by_a_slow_one_counts_from_its_end(mloop):
    # Queued at the end of a 50 ms callback, run right after it: the delay
    # is not the 50 ms the queueing callback took.
    h = monitor.delay_histogram(mloop)
    done = mloop.create_future()

    def slow_then_queue():
        time.sleep(0.05)
        mloop.call_soon(done.set_result, None)

    mloop.call_soon(slow_then_queue)
    mloop.run_until_complete(done)
    assert h.count >= 2
    # The one of the two that could be late is done.set_result; it waited
    # for nothing but the loop's own bookkeeping.
    assert h.max < 0.05


def test_threadsafe_callback_queued_while_the_loop_sleeps(mloop):
    h = monitor.delay_histogram(mloop)
    done = mloop.create_future()

    def other_thread():
        time.sleep(0.1)  # the loop is asleep in the poll meanwhile
        mloop.call_soon_threadsafe(done.set_result, None)

    t = threading.Thread(target=other_thread)
    t.start()
    mloop.run_until_complete(done)
    t.join()
    # Stamped when queued, not with the loop's reading from before its wait.
    assert h.max < 0.1


@pytest.mark.parametrize("watchdog", [False, True], ids=["default", "watchdog"])
def test_slow_callback_named_with_its_task_and_stack(mloop, caplog, watchdog):
    # Without the watchdog thread (the default) the record has the task and
    # where it stands after the step; with it, the same, plus a sample taken
    # while the callback ran when the watchdog looked in time.
    monitor.enable(mloop, slow_callback_duration=0.05, watchdog=watchdog)

    async def hogger_inner():
        time.sleep(0.06)  # blocks the loop
        await asyncio.sleep(0)

    async def hogger():
        await hogger_inner()

    async def main():
        await asyncio.create_task(hogger(), name="the-hog")

    def plain_slow():
        time.sleep(0.06)

    with caplog.at_level(logging.WARNING, logger="pyloop.monitor"):
        mloop.run_until_complete(main())
        mloop.call_soon(plain_slow)
        mloop.run_until_complete(asyncio.sleep(0))
    recs = monitor.slow_callbacks(mloop)
    assert len(recs) == 2
    task_rec, plain_rec = recs
    assert task_rec.task == "the-hog"
    assert task_rec.duration >= 0.06
    assert "the-hog" in task_rec.callback and "hogger" in task_rec.callback
    # After the step the task waits in hogger_inner, called from hogger.
    assert [f.rsplit(".", 1)[-1] for f in task_rec.stack[:2]] == ["hogger", "hogger_inner"]
    assert plain_rec.task is None and "plain_slow" in plain_rec.callback
    assert plain_rec.stack == ()
    assert all(isinstance(r.during, tuple) for r in recs)
    if not watchdog:
        assert [r.during for r in recs] == [(), ()]
    assert abs(plain_rec.when - time.time()) < 60
    messages = [r.getMessage() for r in caplog.records if r.name == "pyloop.monitor"]
    assert len(messages) == 2
    assert "the-hog" in messages[0] and "hogger_inner" in messages[0]
    assert "plain_slow" in messages[1]
    assert monitor.counts(mloop)["slow_callbacks"] == 2


THREADS = textwrap.dedent("""
    import asyncio, os, sys, threading, time
    import pyloop, pyloop.monitor as monitor

    def threads():
        # Python's threads, and the process's (a C thread is not in the first)
        return threading.active_count(), len(os.listdir("/proc/self/task"))

    async def hog():
        time.sleep(0.06)
        await asyncio.sleep(0)

    async def main():
        await asyncio.gather(*(asyncio.sleep(0.001 * i) for i in range(20)))
        await asyncio.create_task(hog(), name="hog")

    lp = pyloop.new_event_loop()
    before = threads()
    monitor.enable(lp, slow_callback_duration=0.05)
    lp.run_until_complete(main())
    during = threads()
    (rec,) = monitor.slow_callbacks(lp)
    print("default", before, during, monitor.counts(lp)["callbacks"] > 20, rec.task,
          monitor._innermost_own(rec.stack).rsplit(" in ", 1)[-1], rec.during)
    monitor.enable(lp, watchdog=True)
    names = sorted(t.name for t in threading.enumerate())
    lp.run_until_complete(asyncio.sleep(0))
    print("watchdog", threads(), "pyloop-monitor-watchdog" in names)
    monitor.enable(lp, watchdog=False)
    # the thread leaves at its next look (bounded: 10 s)
    deadline = time.monotonic() + 10
    while monitor._watchdog is not None and time.monotonic() < deadline:
        time.sleep(0.01)
    lp.run_until_complete(asyncio.sleep(0))
    print("off", threads())
    lp.close()
""")


def _run_script(tmp_path, text):
    """The stdout of `text` run as a fresh process (this checkout's pyloop,
    no PYLOOP_MONITOR* setting inherited)."""
    app = tmp_path / "app.py"
    app.write_text(text)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYLOOP_MONITOR")}
    return subprocess.run([sys.executable, str(app)], capture_output=True, text=True, check=True,
                          cwd=ROOT, env={**env, "PYTHONPATH": ROOT}).stdout


def test_monitoring_starts_no_thread(tmp_path):
    # Monitoring on, callbacks run and a slow one recorded: the process has
    # the threads it had (Python's and the OS's), unless the build's tick is
    # the ticker thread (monitor.h). The watchdog adds one Python thread, and
    # it goes when no loop asks for it any more.
    out = _run_script(tmp_path, THREADS)
    lines = {ln.split(" ", 1)[0]: ln for ln in out.splitlines()}
    ticker = 1 if monitor._core._monitor_tick_source == "thread" else 0
    py, os_threads = 1, int(re.search(r"default \(1, (\d+)\)", lines["default"]).group(1))
    assert lines["default"] == (f"default ({py}, {os_threads}) ({py}, {os_threads + ticker}) "
                                "True hog hog ()")
    assert lines["watchdog"] == f"watchdog ({py + 1}, {os_threads + ticker + 1}) True"
    assert lines["off"] == f"off ({py}, {os_threads + ticker})"


FORKED = textwrap.dedent("""
    import asyncio, os, threading, time
    import pyloop, pyloop.monitor as monitor

    def slow():
        time.sleep(0.06)

    def run(lp):
        lp.call_soon(slow)
        lp.run_until_complete(asyncio.sleep(0))
        (rec,) = monitor.slow_callbacks(lp)
        return "slow" in rec.callback and rec.duration >= 0.06

    parent = pyloop.new_event_loop()
    monitor.enable(parent, slow_callback_duration=0.05)
    pid = os.fork()
    if pid == 0:
        child = pyloop.new_event_loop()
        monitor.enable(child, slow_callback_duration=0.05)
        ok = run(child) and threading.active_count() == 1
        ok = ok and (monitor._core._monitor_tick_source == "thread" or
                     len(os.listdir("/proc/self/task")) == 1)
        child.close()
        os._exit(0 if ok else 3)
    _, status = os.waitpid(pid, 0)
    print(os.waitstatus_to_exitcode(status), run(parent))
    parent.close()
""")


def test_monitoring_in_a_fork_child(tmp_path):
    # The child of fork() monitors a loop of its own as the parent does (no
    # thread to restart for the tick, unless the build has the ticker), and
    # the parent's monitor goes on working.
    assert _run_script(tmp_path, FORKED).split() == ["0", "True"]


def test_watchdog_from_the_environment():
    code = ("import pyloop, pyloop.monitor as m, threading; lp = pyloop.new_event_loop(); "
            "m.enable(lp); print(lp in m._watched, "
            "any(t.name == 'pyloop-monitor-watchdog' for t in threading.enumerate())); "
            "lp.close()")
    for value, want in (("1", "True True"), ("0", "False False"), ("", "False False")):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             env={**os.environ, "PYLOOP_MONITOR_WATCHDOG": value}, cwd=ROOT,
                             check=True).stdout
        assert out.split() == want.split(), value


def _busy(seconds):
    """Run Python code for `seconds` without sleeping (the GIL held but for
    the interpreter's switches)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


TICK_READER = textwrap.dedent("""
    import time
    import pyloop, pyloop.monitor as monitor

    def slow():
        time.sleep(0.06)

    lp = pyloop.new_event_loop()
    monitor.enable(lp, slow_callback_duration=0.05)
    for _ in range(20):
        lp.call_soon(lambda: None)
    lp.call_soon(slow)
    for _ in range(20):
        lp.call_soon(lambda: None)
    lp.run_until_complete(__import__("asyncio").sleep(0))
    (rec,) = monitor.slow_callbacks(lp)
    print(monitor._core._monitor_tick_reader(), "slow" in rec.callback and rec.duration >= 0.06)
    lp.close()
""")


@pytest.mark.parametrize("setting", ["", "0"])
def test_tick_read_in_place_or_through_the_vdso(tmp_path, setting):
    # Batch mode's tick: the coarse clock read in place from the vDSO's data
    # page where it was found there (x86-64 Linux), else through the vDSO's
    # clock_gettime; PYLOOP_MONITOR_VVAR=0 keeps the call. Either way a slow
    # callback among quick ones in its batch is found and timed.
    app = tmp_path / "app.py"
    app.write_text(TICK_READER)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYLOOP_MONITOR")}
    env.update(PYTHONPATH=ROOT, PYLOOP_MONITOR_VVAR=setting)
    out = subprocess.run([sys.executable, str(app)], capture_output=True, text=True, check=True,
                         cwd=ROOT, env=env).stdout.split()
    assert out[1] == "True"
    if monitor._core._monitor_tick_source != "coarse_clock":
        assert out[0] == monitor._core._monitor_tick_source
    elif setting == "0" or not (sys.platform == "linux" and os.uname().machine == "x86_64"):
        assert out[0] in ("vdso", "libc")
    else:
        assert out[0] == "vvar"


@pytest.mark.parametrize("inside", ["disable_enable", "per_task_on", "short_to_long"])
def test_monitor_replaced_or_switched_inside_a_callback(pyloop_loop, inside):
    # The callback's end is only timed by the monitor (and the mode) that
    # saw its start: a callback that disables and enables monitoring again,
    # or switches between timing by batch and timing each callback, leaves
    # no duration made from another monitor's or mode's start.
    lp = pyloop_loop
    monitor.enable(lp, slow_callback_duration=0.01 if inside == "short_to_long" else 0.05)

    def switch():
        if inside == "disable_enable":
            monitor.disable(lp)
            monitor.enable(lp, tasks=True)
        elif inside == "per_task_on":
            monitor.enable(lp, tasks=True)
        else:
            monitor.enable(lp, slow_callback_duration=0.05)

    async def main():
        await asyncio.sleep(0.01)
        lp.call_soon(switch)
        for _ in range(3):
            await asyncio.sleep(0)
        await asyncio.sleep(0.01)

    t0 = time.monotonic()
    lp.run_until_complete(main())
    elapsed = time.monotonic() - t0
    counts = monitor.counts(lp)
    assert 0 <= counts["longest_callback"] <= elapsed
    assert monitor.slow_callbacks(lp) == []
    assert monitor.delay_histogram(lp).count >= 1


@pytest.mark.parametrize("switch", ["batch_to_each", "each_to_batch", "reset"])
def test_each_callback_counted_and_delayed_once_across_a_switch(pyloop_loop, switch):
    # Timing by batch counts a callback when it ends; timing each callback
    # records its delay when it starts. A callback that switches between the
    # two, or resets the histogram, while it runs is still counted once, and
    # has one delay (none after a reset: it began before it).
    lp = pyloop_loop
    monitor.enable(lp, slow_callback_duration=0.01 if switch == "each_to_batch" else 0.05)
    m = monitor._monitor(lp)
    hist = monitor.delay_histogram(lp)
    lp.run_until_complete(asyncio.sleep(0))
    before_calls, before_delays = monitor.counts(lp)["callbacks"], hist.count

    def third():
        if switch == "batch_to_each":
            monitor.enable(lp, tasks=True)
        elif switch == "each_to_batch":
            monitor.enable(lp, slow_callback_duration=0.05)
        else:
            hist.reset()

    for i in range(5):
        lp.call_soon(third if i == 2 else (lambda: None))
    lp.call_soon(lp.stop)
    lp.run_forever()
    assert m.times_each_callback == (switch == "batch_to_each")
    assert monitor.counts(lp)["callbacks"] - before_calls == 6
    if switch == "reset":
        assert hist.count == 3  # the two after the reset and stop's
    else:
        assert hist.count - before_delays == 6


def test_timing_by_batch_unless_per_task_or_a_short_threshold(mloop):
    m = monitor._core._monitor_get(mloop)
    assert not m.times_each_callback  # the default: by batch
    monitor.enable(mloop, slow_callback_duration=0.01)
    assert m.times_each_callback
    monitor.enable(mloop, slow_callback_duration=0.05)
    assert not m.times_each_callback
    monitor.enable(mloop, tasks=True)
    assert m.times_each_callback


def test_slow_callback_behind_quick_ones_in_its_batch(mloop):
    # Timed by batch: the slow callback runs after quick ones queued with
    # it, and one queued with them waits behind it.
    monitor.enable(mloop, slow_callback_duration=0.05)
    h = monitor.delay_histogram(mloop)
    done = mloop.create_future()

    def blocker():
        _busy(0.06)

    for _ in range(20):
        mloop.call_soon(lambda: None)
    mloop.call_soon(blocker)
    mloop.call_soon(done.set_result, None)  # >= 60 ms late
    mloop.run_until_complete(done)
    (rec,) = monitor.slow_callbacks(mloop)
    assert "blocker" in rec.callback and rec.task is None
    assert rec.duration >= 0.06
    assert h.max >= 0.06
    assert monitor.counts(mloop)["longest_callback"] >= 0.06


def test_slow_callback_stack_sampled_while_it_runs(mloop, caplog):
    monitor.enable(mloop, slow_callback_duration=0.05, watchdog=True)

    def wait_for_the_sample():
        # Blocks the loop until the watchdog thread has sampled this very
        # callback's stack (bounded: 10 s) and past the threshold, so that
        # the callback is a slow one.
        start = time.monotonic()
        while (mloop not in monitor._samples or time.monotonic() - start < 0.06) and \
                time.monotonic() - start < 10:
            time.sleep(0.01)

    async def blocking_io():
        wait_for_the_sample()  # the line the sample names
        await asyncio.sleep(0)

    with caplog.at_level(logging.WARNING, logger="pyloop.monitor"):
        mloop.run_until_complete(blocking_io())
    (rec,) = monitor.slow_callbacks(mloop)
    assert rec.during[-1].endswith(" in test_slow_callback_stack_sampled_while_it_runs."
                                   "<locals>.wait_for_the_sample")
    assert rec.during[-2].endswith(".blocking_io")
    assert f"test_monitor.py:{blocking_io.__code__.co_firstlineno + 1} " in rec.during[-2]
    assert "it was running" in caplog.records[-1].getMessage()


def test_slow_callback_ring_keeps_the_latest(mloop):
    monitor.enable(mloop, slow_callback_duration=0)
    for i in range(100):
        mloop.call_soon(lambda: None)
    mloop.run_until_complete(asyncio.sleep(0))
    recs = monitor.slow_callbacks(mloop)
    assert len(recs) == 64
    assert [r.when for r in recs] == sorted(r.when for r in recs)
    assert monitor.counts(mloop)["slow_callbacks"] >= 100


def test_per_task_figures(mloop):
    monitor.enable(mloop, tasks=True)
    seen = {}

    async def worker(n):
        for _ in range(n):
            await asyncio.sleep(0)

    async def sleeper():
        await asyncio.sleep(10)

    async def main():
        s = asyncio.create_task(sleeper(), name="sleeper")
        await asyncio.gather(*(worker(5) for _ in range(3)))
        await asyncio.sleep(0)
        seen["live"] = monitor.tasks(mloop).live
        s.cancel()
        await asyncio.sleep(0)

    mloop.run_until_complete(main())
    live = {f.name: f for f in seen["live"]}
    assert live["sleeper"].steps == 1 and live["sleeper"].coro.endswith(".sleeper")
    report = monitor.tasks(mloop)
    fin = {f.coro.rsplit(".", 1)[-1]: f for f in report.finished}
    # Each worker: a first step, five wake-ups after sleep(0).
    assert fin["worker"].tasks == 3
    assert fin["worker"].steps == 3 * 6
    assert fin["worker"].longest <= fin["worker"].total
    assert fin["worker"].waited > 0
    assert fin["sleeper"].steps == 2  # the cancellation is a step too
    assert all(f.name != "sleeper" for f in report.live)


def test_per_task_off_by_default(mloop):
    with pytest.raises(RuntimeError, match="per-task"):
        monitor.tasks(mloop)


def test_enable_and_disable_from_a_callback(pyloop_loop):
    async def main():
        monitor.enable()
        await asyncio.sleep(0.01)
        assert pyloop_loop.utilization().idle > 0
        monitor.disable()
        await asyncio.sleep(0)
        monitor.enable()
        await asyncio.sleep(0)

    pyloop_loop.run_until_complete(main())
    assert monitor.delay_histogram(pyloop_loop).count >= 1


def test_counts(mloop):
    async def main():
        # the server's end is closed by the handler: 3.12.1's wait_closed()
        # waits for every connection of the server
        srv = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
        port = srv.sockets[0].getsockname()[1]
        r, w = await asyncio.open_connection("127.0.0.1", port)
        timer = mloop.call_later(10, print)
        c = monitor.counts(mloop)
        timer.cancel()
        w.close()
        srv.close()
        await srv.wait_closed()
        return c

    c = mloop.run_until_complete(main())
    assert c["transports"].get("tcp", 0) >= 1
    assert c["timers"] >= 1
    assert c["uv_handles"] >= 1
    assert c["callbacks"] >= 1
    assert set(c) >= {"ready", "timers", "uv_handles", "transports", "callbacks",
                      "slow_callbacks", "bytes_read", "bytes_written"}


@pytest.mark.parametrize("threshold", [0.1, 0.001], ids=["by-batch", "each-callback"])
def test_every_callback_counted_once(mloop, threshold):
    """Batch timing counts callbacks by runs of equal stamps, flushed at each
    new clock reading; whatever the batches, each callback run counts once,
    and a histogram reset drops delays, not the count."""
    monitor.enable(mloop, slow_callback_duration=threshold)
    m = monitor._monitor(mloop)
    assert m.times_each_callback == (threshold < 0.02)
    before = monitor.counts(mloop)["callbacks"]
    hist = monitor.delay_histogram(mloop)

    def chain(i):
        if i == 150:
            hist.reset()
        if i < 300:
            # three handles per step: the next step and a no-op in the next
            # iteration's batch, a timer in its timer batch
            mloop.call_soon(chain, i + 3)
            mloop.call_soon(lambda: None)
            mloop.call_later(0, lambda: None)
        else:
            mloop.stop()

    mloop.call_soon(chain, 0)
    mloop.run_forever()
    # chain(0), chain(3) ... chain(300), and two more for each step but the last
    assert monitor.counts(mloop)["callbacks"] - before == 101 + 100 * 2
    # The reset drops the delays of the callbacks begun by then: iterations
    # 0-49 (50 steps, 49 no-ops, 49 timers) and chain(150) itself.
    assert hist.count == 301 - (50 + 49 + 49 + 1)


def test_bytes_through_stream_transports(mloop):
    async def main():
        async def echo(r, w):
            w.write(await r.readexactly(100_000))
            await w.drain()
            w.close()

        srv = await asyncio.start_server(echo, "127.0.0.1", 0)
        r, w = await asyncio.open_connection(*srv.sockets[0].getsockname()[:2])
        w.write(b"x" * 100_000)
        assert len(await r.readexactly(100_000)) == 100_000
        w.close()
        srv.close()
        await srv.wait_closed()

    mloop.run_until_complete(main())
    c = monitor.counts(mloop)
    # Both ends are on this loop: each direction is written once and read once.
    assert c["bytes_written"] == 200_000
    assert c["bytes_read"] == 200_000


def test_figures_read_from_another_thread_do_not_tear(mloop):
    stop = threading.Event()
    problems = []

    def reader():
        last = (0, 0.0, 0.0)
        while not stop.is_set():
            h = monitor.delay_histogram(mloop)
            n = h.count
            u = mloop.utilization()
            if n < last[0] or u.idle < last[1] or u.active < last[2]:
                problems.append((last, n, u))
            if n and not (h.min <= h.max):
                problems.append(("minmax", h.min, h.max))
            last = (n, u.idle, u.active)

    async def main():
        for i in range(2000):
            await asyncio.sleep(0 if i % 50 else 0.001)

    t = threading.Thread(target=reader)
    t.start()
    try:
        mloop.run_until_complete(main())
    finally:
        stop.set()
        t.join()
    assert problems == []


def test_every_reader_from_another_thread_while_the_loop_changes_them(mloop):
    # Per-task figures and slow-callback records are Python objects the loop
    # thread adds and drops while this thread reads them.
    pytest.importorskip("prometheus_client", reason="the parser checks the format")
    monitor.enable(mloop, tasks=True, slow_callback_duration=0.0005)
    stop = threading.Event()
    errors = []
    seen = {"reads": 0, "callbacks": 0}

    def reader():
        while not stop.is_set():
            try:
                c = monitor.counts(mloop)
                assert c["callbacks"] >= seen["callbacks"]
                seen["callbacks"] = c["callbacks"]
                report = monitor.tasks(mloop)
                assert all(f.steps >= 1 for f in report.live + report.finished)
                assert all(r.duration >= 0.0005 for r in monitor.slow_callbacks(mloop))
                _parse(monitor.prometheus(mloop))
                assert monitor.render(monitor.snapshot(mloop))[0].startswith("pyloop monitor")
                seen["reads"] += 1
            except Exception as exc:  # reported below with the test's failure
                errors.append(repr(exc))
                return

    async def worker(i):
        for j in range(20):
            if j % 5 == 0:
                time.sleep(0.001)  # a slow step now and then
            await asyncio.sleep(0)

    async def main():
        # at least 10 rounds, and on until the reader has read a few times
        # while the loop was running (bounded: 10 s)
        rounds = 0
        deadline = time.monotonic() + 10
        while rounds < 10 or (seen["reads"] < 3 and not errors and time.monotonic() < deadline):
            await asyncio.gather(*(worker(i) for i in range(20)))
            rounds += 1
        return rounds

    t = threading.Thread(target=reader)
    t.start()
    try:
        rounds = mloop.run_until_complete(main())
    finally:
        stop.set()
        t.join()
    assert errors == []
    assert seen["reads"] >= 3
    fin = {f.coro.rsplit(".", 1)[-1]: f for f in monitor.tasks(mloop).finished}
    assert fin["worker"].tasks == 20 * rounds and fin["worker"].steps == 20 * rounds * 21


def _parse(text):
    from prometheus_client.parser import text_string_to_metric_families
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def test_prometheus_text_parses_back(mloop):
    pytest.importorskip("prometheus_client", reason="the parser checks the format")
    monitor.enable(mloop, tasks=True, name="web")

    async def main():
        time.sleep(0.01)
        await asyncio.sleep(0.01)

    mloop.run_until_complete(main())
    s = _parse(monitor.prometheus(mloop))
    lab = (("loop", "web"),)
    assert s[("pyloop_active_seconds_total", lab)] >= 0.01
    assert s[("pyloop_idle_seconds_total", lab)] > 0
    assert 0 < s[("pyloop_utilization", lab)] < 1
    assert s[("pyloop_delay_seconds_count", lab)] == monitor.delay_histogram(mloop).count
    assert s[("pyloop_delay_seconds", (("loop", "web"), ("quantile", "0.99")))] <= \
        s[("pyloop_delay_max_seconds", lab)]
    main_name = main.__qualname__
    assert s[("pyloop_finished_tasks_total", (("coro", main_name), ("loop", "web")))] == 1
    assert ("pyloop_transports", (("kind", "tcp"), ("loop", "web"))) in s
    # Every monitored loop when none is named.
    assert 'loop="web"' in monitor.prometheus()


def test_prometheus_client_collector(mloop):
    prometheus_client = pytest.importorskip("prometheus_client",
                                            reason="the collector is for prometheus_client")
    mloop.run_until_complete(asyncio.sleep(0.01))
    reg = prometheus_client.CollectorRegistry()
    reg.register(monitor.PrometheusCollector(mloop))
    s = _parse(prometheus_client.generate_latest(reg).decode())
    lab = (("loop", monitor._loops[mloop]),)
    assert s[("pyloop_idle_seconds_total", lab)] > 0
    assert s[("pyloop_callbacks_total", lab)] >= 1
    assert s[("pyloop_delay_seconds_count", lab)] >= 1
    assert ("pyloop_delay_seconds", lab + (("quantile", "0.5"),)) in s


def test_env_var_enables_monitoring():
    code = ("import pyloop, pyloop.monitor as m; lp = pyloop.new_event_loop(); "
            "print(m.is_enabled(lp), lp.utilization().idle >= 0, "
            "m._core._monitor_get(lp).per_task); lp.close()")
    for value, want in (("1", "True True False"), ("tasks", "True True True")):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             env={**os.environ, "PYLOOP_MONITOR": value}, cwd=ROOT,
                             check=True).stdout
        assert out.split() == want.split()


APP = textwrap.dedent("""
    import asyncio, sys, time
    import pyloop, pyloop.monitor as monitor

    async def blocker():
        while True:
            time.sleep(0.12)        # a blocking call in a coroutine
            await asyncio.sleep(0.05)

    async def ticker():
        while True:
            await asyncio.sleep(0.001)

    async def main():
        loop = asyncio.get_running_loop()
        monitor.enable(loop, tasks=True)
        srv = monitor.serve(sys.argv[1])
        asyncio.create_task(blocker(), name="blocker")
        asyncio.create_task(ticker(), name="ticker")
        print("ready", flush=True)
        await asyncio.sleep(60)

    pyloop.run(main())
""")


def test_live_view_in_a_pseudo_terminal(tmp_path):
    sock = str(tmp_path / "app.sock")
    app = tmp_path / "app.py"
    app.write_text(APP)
    proc = subprocess.Popen([sys.executable, str(app), sock], stdout=subprocess.PIPE,
                            cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT})
    try:
        assert proc.stdout.readline().strip() == b"ready"
        time.sleep(0.3)  # let the blocker be slow at least once
        pid, fd = pty.fork()
        if pid != 0:  # a terminal 160 columns wide, 40 rows
            fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))
        else:  # pragma: no cover - the child
            time.sleep(0.2)  # the parent sets the window size first
            os.execv(sys.executable, [sys.executable, "-m", "pyloop", "monitor", sock,
                                      "--count", "2", "--interval", "0.2"])
        chunks = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            r, _, _ = select.select([fd], [], [], 1)
            if not r:
                continue
            try:
                data = os.read(fd, 65536)
            except OSError:  # the child closed the pty
                break
            if not data:
                break
            chunks.append(data)
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    finally:
        proc.kill()
        proc.wait()
    assert os.waitstatus_to_exitcode(status) == 0
    raw = b"".join(chunks).decode()
    assert raw.count("\x1b[H\x1b[2J") == 2  # two refreshes
    screen = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", raw.split("\x1b[H\x1b[2J")[-1])
    assert "utilization" in screen and "%" in screen
    assert re.search(r"delay\s+p50 .* p99 .* max", screen)
    assert "blocker (blocker)" in screen  # among the busiest tasks
    assert "step of blocker" in screen    # the latest slow callback, with its task
    assert "now at app.py:8 in blocker" in screen  # and where it stands


def test_live_view_reports_an_unreachable_address(tmp_path):
    r = subprocess.run([sys.executable, "-m", "pyloop", "monitor", str(tmp_path / "none")],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode != 0 and "cannot reach" in r.stderr


@pytest.mark.parametrize("name", ["aiohttp_metrics", "fastapi_metrics"])
def test_metrics_examples(name):
    pytest.importorskip("aiohttp" if name.startswith("aiohttp") else "fastapi",
                        reason="the example's framework (test extra)")
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "examples", "monitoring",
                                                        name + ".py")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    label = name.split("_")[0]
    assert proc.stdout == (
        "GET /slow -> 200\n"
        "GET /metrics -> 200 text/plain\n"
        f'  pyloop_utilization{{loop="{label}"}} > 0\n'
        f'  pyloop_slow_callbacks_total{{loop="{label}"}} > 0\n'
        "slow callbacks recorded: True\n")
    assert "slow callback: step of" in proc.stderr  # logged by pyloop.monitor


class _BlockingProtocol(asyncio.Protocol):
    """Blocks the loop in data_received, a callback libuv's pass runs (not a
    handle of the ready queue)."""

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        _busy(0.06)
        self.transport.write(data)


class _BlockingDatagram(asyncio.DatagramProtocol):
    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        _busy(0.06)
        self.transport.sendto(data, addr)


@pytest.mark.parametrize("threshold", [0.05, 0.01], ids=["by-batch", "each-callback"])
def test_slow_data_received_is_a_slow_callback(mloop, caplog, threshold):
    monitor.enable(mloop, slow_callback_duration=threshold)

    async def main():
        srv = await mloop.create_server(_BlockingProtocol, "127.0.0.1", 0)
        r, w = await asyncio.open_connection(*srv.sockets[0].getsockname()[:2])
        w.write(b"ping")
        assert await r.readexactly(4) == b"ping"
        w.close()
        srv.close()
        await srv.wait_closed()

    with caplog.at_level(logging.WARNING, logger="pyloop.monitor"):
        mloop.run_until_complete(main())
    recs = [r for r in monitor.slow_callbacks(mloop) if "_BlockingProtocol" in r.callback]
    assert len(recs) == 1, monitor.slow_callbacks(mloop)
    (rec,) = recs
    assert rec.callback.startswith("I/O callback of _BlockingProtocol on ")
    assert rec.task is None and rec.duration >= 0.06
    assert any("_BlockingProtocol" in r.getMessage() for r in caplog.records)
    assert monitor.counts(mloop)["longest_callback"] >= 0.06
    # the loop was busy for it: utilization counts it as active time
    assert mloop.utilization().active >= 0.06


def test_slow_datagram_received_is_a_slow_callback(mloop):
    monitor.enable(mloop, slow_callback_duration=0.05)

    async def main():
        server, _ = await mloop.create_datagram_endpoint(_BlockingDatagram,
                                                         local_addr=("127.0.0.1", 0))
        got = mloop.create_future()

        class Client(asyncio.DatagramProtocol):
            def datagram_received(self, data, addr):
                if not got.done():
                    got.set_result(data)

        client, _ = await mloop.create_datagram_endpoint(
            Client, remote_addr=server.get_extra_info("sockname"))
        client.sendto(b"ping")
        assert await got == b"ping"
        client.close()
        server.close()

    mloop.run_until_complete(main())
    (rec,) = [r for r in monitor.slow_callbacks(mloop) if "_BlockingDatagram" in r.callback]
    assert rec.callback.startswith("I/O callback of _BlockingDatagram on ")
    assert rec.duration >= 0.06


def test_delay_counts_the_time_between_runs(mloop):
    # A callback queued by the last batch of a run waits until the next run:
    # that wait is its delay, however the batch's end was read.
    h = monitor.delay_histogram(mloop)
    done = mloop.create_future()

    def first():
        mloop.call_soon(done.set_result, None)
        mloop.stop()

    mloop.call_soon(first)
    mloop.run_forever()
    assert not done.done()
    time.sleep(0.05)
    mloop.run_until_complete(done)
    assert h.max >= 0.05


def test_delay_of_a_callback_queued_before_a_slow_io_callback(mloop):
    # A callback queued by a batch waits behind the libuv pass that follows
    # it; a data_received that blocks in that pass is its delay.
    h = monitor.delay_histogram(mloop)
    done = mloop.create_future()

    class Slow(asyncio.Protocol):
        def data_received(self, data):
            _busy(0.06)

    async def main():
        srv = await mloop.create_server(Slow, "127.0.0.1", 0)
        t, _ = await mloop.create_connection(asyncio.Protocol,
                                             *srv.sockets[0].getsockname()[:2])
        await asyncio.sleep(0.01)  # the server's connection_made has run
        h.reset()

        def queue_marker():
            # runs in the iteration whose pass reads the bytes written below
            mloop.call_soon(done.set_result, None)

        t.write(b"x")
        mloop.call_soon(queue_marker)
        await done
        t.close()
        srv.close()
        await srv.wait_closed()

    mloop.run_until_complete(main())
    assert h.max >= 0.06
