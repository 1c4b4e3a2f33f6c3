"""Debug mode: flags, environment, slow-callback warnings, thread checks."""
import asyncio
import logging
import os
import subprocess
import sys
import threading
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PROBE = """
import asyncio, sys
sys.path.insert(0, {root!r})
import pyloop
kind = sys.argv[1]
loop = pyloop.new_event_loop() if kind == "pyloop" else asyncio.new_event_loop()
print(loop.get_debug())
loop.close()
"""


def test_get_set_debug(loop):
    loop.set_debug(True)
    assert loop.get_debug() is True
    loop.set_debug(False)
    assert loop.get_debug() is False


@pytest.mark.parametrize("env,flags,expected", [
    ({"PYTHONASYNCIODEBUG": "1"}, [], "True"),
    ({}, ["-X", "dev"], "True"),
    ({}, [], "False"),
])
def test_debug_from_environment(loop_name, env, flags, expected):
    full_env = {k: v for k, v in os.environ.items()
                if k not in ("PYTHONASYNCIODEBUG", "PYTHONDEVMODE")}
    full_env.update(env)
    out = subprocess.run([sys.executable, *flags, "-c", PROBE.format(root=ROOT), loop_name],
                         env=full_env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == expected


def test_slow_callback_warning_names_handle(loop, caplog):
    loop.set_debug(True)
    loop.slow_callback_duration = 0.01

    def slow_callback_fn():
        time.sleep(0.02)

    with caplog.at_level(logging.WARNING, logger="asyncio"):
        loop.call_soon(slow_callback_fn)
        loop.call_soon(loop.stop)
        loop.run_forever()
    assert "Executing <Handle" in caplog.text
    assert "slow_callback_fn" in caplog.text


def test_slow_callback_warning_names_task(loop, caplog):
    loop.set_debug(True)
    loop.slow_callback_duration = 0.01

    async def slow_task_coro():
        time.sleep(0.02)

    with caplog.at_level(logging.WARNING, logger="asyncio"):
        loop.run_until_complete(slow_task_coro())
    assert "Executing <Task" in caplog.text
    assert "slow_task_coro" in caplog.text


def test_non_threadsafe_call_from_other_thread_raises_in_debug(loop):
    loop.set_debug(True)
    errors = []
    started = threading.Event()

    def other():
        started.wait(5)
        for call in (lambda: loop.call_soon(print), lambda: loop.call_later(1, print)):
            try:
                call()
            except RuntimeError as exc:
                errors.append(str(exc))
        loop.call_soon_threadsafe(loop.stop)

    t = threading.Thread(target=other)
    t.start()
    loop.call_soon(started.set)
    loop.run_forever()
    t.join()
    assert len(errors) == 2
    assert all("Non-thread-safe operation" in e for e in errors)


def test_debug_handle_records_source_traceback(loop):
    loop.set_debug(True)
    h = loop.call_soon(print)
    assert h._source_traceback
    assert "test_debug.py" in h._source_traceback[-1][0]
    assert "created at" in repr(h)
    h.cancel()


def test_coroutine_origin_tracking_while_running(loop):
    loop.set_debug(True)

    async def main():
        return sys.get_coroutine_origin_tracking_depth()

    depth_before = sys.get_coroutine_origin_tracking_depth()
    assert loop.run_until_complete(main()) > 0
    assert sys.get_coroutine_origin_tracking_depth() == depth_before


def test_debug_exception_handler_shows_handle_traceback(loop, caplog):
    loop.set_debug(True)

    def bad():
        raise ValueError("dbg")

    with caplog.at_level(logging.ERROR, logger="asyncio"):
        loop.call_soon(bad)
        loop.call_soon(loop.stop)
        loop.run_forever()
    assert "Object created at" in caplog.text


def test_asyncio_run_debug(loop_factory):
    async def main():
        return asyncio.get_running_loop().get_debug()

    with asyncio.Runner(debug=True, loop_factory=loop_factory) as r:
        assert r.run(main()) is True
