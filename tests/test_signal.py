"""Signals: add/remove_signal_handler, Python handlers and Ctrl-C while the
loop sleeps, and the wakeup fd."""
import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import threading

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _kill_later(sig, delay=0.05):
    t = threading.Timer(delay, os.kill, (os.getpid(), sig))
    t.start()
    return t


def test_add_signal_handler_runs_callback(loop):
    got = []

    def handler(*args):
        got.append(args)
        loop.stop()

    loop.add_signal_handler(signal.SIGUSR1, handler, "a", 1)
    try:
        t = _kill_later(signal.SIGUSR1)
        loop.call_later(30, loop.stop)  # safety net only
        loop.run_forever()
        t.join()
    finally:
        assert loop.remove_signal_handler(signal.SIGUSR1) is True
    assert got == [("a", 1)]
    assert loop.remove_signal_handler(signal.SIGUSR1) is False
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL


def test_handler_removing_itself(loop):
    got = []

    def handler():
        got.append(1)
        loop.remove_signal_handler(signal.SIGUSR2)
        loop.stop()

    loop.add_signal_handler(signal.SIGUSR2, handler)
    t = _kill_later(signal.SIGUSR2)
    loop.call_later(30, loop.stop)
    loop.run_forever()
    t.join()
    assert got == [1]
    assert signal.getsignal(signal.SIGUSR2) == signal.SIG_DFL


def test_python_signal_handler_runs_while_loop_sleeps(loop):
    got = []
    fut = loop.create_future()

    def py_handler(signum, frame):
        got.append(signum)
        fut.set_result(None)

    old = signal.signal(signal.SIGUSR1, py_handler)
    try:
        t = _kill_later(signal.SIGUSR1)
        loop.run_until_complete(asyncio.wait_for(fut, 30))
        t.join()
    finally:
        signal.signal(signal.SIGUSR1, old)
    assert got == [signal.SIGUSR1]


def test_wakeup_fd_restored_after_run(loop):
    import socket
    a, b = socket.socketpair()
    a.setblocking(False)
    old = signal.set_wakeup_fd(a.fileno())
    try:
        loop.run_until_complete(asyncio.sleep(0))
        # Whatever the loop did while running, the user's fd is back.
        assert signal.set_wakeup_fd(-1) == a.fileno()
    finally:
        signal.set_wakeup_fd(old)
        a.close()
        b.close()


@pytest.mark.parametrize("sig,exc", [("x", TypeError), (-1, ValueError), (10000, ValueError)])
def test_invalid_signal(loop, sig, exc):
    with pytest.raises(exc):
        loop.add_signal_handler(sig, print)
    with pytest.raises(exc):
        loop.remove_signal_handler(sig)


def test_sigkill_cannot_be_caught(loop):
    with pytest.raises(RuntimeError, match="cannot be caught"):
        loop.add_signal_handler(signal.SIGKILL, print)


def test_coroutine_handler_rejected(loop):
    async def coro_fn():
        pass

    with pytest.raises(TypeError, match="coroutines cannot be used"):
        loop.add_signal_handler(signal.SIGUSR1, coro_fn)


def test_add_signal_handler_from_other_thread(loop):
    errors = []

    def other():
        try:
            loop.add_signal_handler(signal.SIGUSR1, print)
        except RuntimeError as exc:
            errors.append(exc)

    t = threading.Thread(target=other)
    t.start()
    t.join()
    assert len(errors) == 1


def test_closed_loop_add_signal_handler(loop):
    loop.close()
    with pytest.raises(RuntimeError):
        loop.add_signal_handler(signal.SIGUSR1, print)


def test_close_removes_signal_handlers(loop_factory):
    lp = loop_factory()
    lp.add_signal_handler(signal.SIGUSR1, print)
    lp.close()
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL


CTRL_C = textwrap.dedent("""
    import asyncio, sys
    sys.path.insert(0, {root!r})
    import pyloop
    kind = sys.argv[1]
    factory = pyloop.new_event_loop if kind == "pyloop" else asyncio.new_event_loop
    async def main():
        print("ready", flush=True)
        await asyncio.sleep(60)
    with asyncio.Runner(loop_factory=factory) as r:
        r.run(main())
""")


def test_ctrl_c_interrupts_sleeping_loop(loop_name):
    proc = subprocess.Popen([sys.executable, "-c", CTRL_C.format(root=ROOT), loop_name],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "KeyboardInterrupt" in err
    assert proc.returncode != 0


def test_keyboard_interrupt_from_signal_in_run_forever(loop):
    t = _kill_later(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        loop.run_until_complete(asyncio.sleep(30))
    t.join()
    assert not loop.is_running()
