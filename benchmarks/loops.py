"""The loops a benchmark can run on, by name. A loop whose package is not
installed raises LoopMissing."""
import asyncio
import importlib
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOOPS = ("asyncio", "uvloop", "pyloop", "rloop", "zuvloop")
# The peers' loops by package: each has new_event_loop(). rloop (Rust) has
# wheels for 3.11-3.14, zuvloop (Zig, libuv) for 3.14 only (pyproject.toml's
# bench extra installs them where they have wheels); elsewhere LoopMissing.
PEER_PACKAGES = {"uvloop": "uvloop", "rloop": "rloop", "zuvloop": "zuvloop"}
# pyloop with pyloop.monitor on (run.py --monitor adds it as a fourth loop):
# everything but the per-task figures, and everything with them.
MONITOR_LOOPS = ("pyloop+monitor", "pyloop+monitor-tasks")
# Their slow-callback threshold in seconds, when set (default: the monitor's
# 100 ms). The threshold is wall-clock time: under callgrind, which runs the
# program a few hundred times slower, a 3 ms callback takes a second and is
# recorded (and logged) as slow, a cost the same run never pays natively, so
# the instruction-counting harnesses (monitor_overhead.py, run.py
# --callgrind) scale it by the slow-down.
MONITOR_SLOW_ENV = "PYLOOP_BENCH_MONITOR_SLOW"
# Measured on this project's machines: task_gather's 8,000 tasks took 0.03-0.05 s
# natively and 8-20 s of wall-clock time under callgrind (250-500 times
# slower), so 100 ms natively is 25-50 s there.
CALLGRIND_MONITOR_SLOW = "60"
# Another checkout of pyloop (built in place), named by the environment
# variable below, runs as the loop "pyloop-before": run.py, run_net.py and
# steps.py take it as --before DIR, so a change is measured against the
# code before it in the same interleaved run. Every loop runs in a process of
# its own, so the two builds never meet in one interpreter.
BEFORE_LOOP = "pyloop-before"
BEFORE_ENV = "PYLOOP_BENCH_BEFORE"


def use_before(checkout):
    """Make "pyloop-before" the pyloop of `checkout` for this process and the
    workers and servers it starts."""
    checkout = os.path.abspath(checkout)
    if not os.path.isfile(os.path.join(checkout, "pyloop", "__init__.py")):
        raise SystemExit(f"--before {checkout}: not a pyloop checkout")
    os.environ[BEFORE_ENV] = checkout


class LoopMissing(Exception):
    pass


def new_loop(name):
    if name == "asyncio":
        return asyncio.new_event_loop()
    if name in PEER_PACKAGES:
        try:
            module = importlib.import_module(PEER_PACKAGES[name])
        except ImportError as exc:
            raise LoopMissing(f"{name} is not installed for this Python ({exc})")
        return module.new_event_loop()
    if name == BEFORE_LOOP:
        root = os.environ.get(BEFORE_ENV)
        if not root:
            raise LoopMissing(f"{name} needs --before DIR (a checkout built in place)")
        sys.path.insert(0, root)
        try:
            import pyloop
        except ImportError as exc:
            raise LoopMissing(f"{name} ({root}): {exc}")
        if not os.path.abspath(pyloop.__file__).startswith(root + os.sep):
            raise LoopMissing(f"{name}: imported {pyloop.__file__}, not the one in {root}")
        return pyloop.new_event_loop()
    if name == "pyloop" or name in MONITOR_LOOPS:
        if ROOT not in sys.path:
            sys.path.insert(0, ROOT)
        try:
            import pyloop
            import pyloop.monitor
        except ImportError as exc:
            raise LoopMissing(str(exc))
        loop = pyloop.new_event_loop()
        if name in MONITOR_LOOPS:
            slow = os.environ.get(MONITOR_SLOW_ENV)
            pyloop.monitor.enable(loop, tasks=name.endswith("-tasks"),
                                  slow_callback_duration=float(slow) if slow else None)
        return loop
    raise ValueError(f"unknown loop {name!r}")
