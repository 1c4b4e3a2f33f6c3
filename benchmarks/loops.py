"""The loops a benchmark can run on, by name. A loop whose package is not
installed raises LoopMissing."""
import asyncio
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOOPS = ("asyncio", "uvloop", "pyloop")
# pyloop with pyloop.monitor on (run.py --monitor adds it as a fourth loop):
# everything but the per-task figures, and everything with them.
MONITOR_LOOPS = ("pyloop+monitor", "pyloop+monitor-tasks")
# Peers that benchmarks/steps.py (and worker.py by name) can run when installed.
PEER_LOOPS = ("rloop", "zuvloop")


class LoopMissing(Exception):
    pass


def new_loop(name):
    if name == "asyncio":
        return asyncio.new_event_loop()
    if name == "uvloop":
        try:
            import uvloop
        except ImportError as exc:
            raise LoopMissing(str(exc))
        return uvloop.new_event_loop()
    if name in PEER_LOOPS:
        # Other libuv/native loops, run by name when installed (worker.py
        # rloop sleep0); not in LOOPS, so run.py's table is unchanged.
        try:
            mod = __import__(name)
        except ImportError as exc:
            raise LoopMissing(str(exc))
        return mod.new_event_loop()
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
            pyloop.monitor.enable(loop, tasks=name.endswith("-tasks"))
        return loop
    raise ValueError(f"unknown loop {name!r}")
