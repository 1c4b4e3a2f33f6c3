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
