"""The loops a benchmark can run on, by name. A loop whose package is not
installed raises LoopMissing."""
import asyncio
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOOPS = ("asyncio", "uvloop", "pyloop")


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
    if name == "pyloop":
        if ROOT not in sys.path:
            sys.path.insert(0, ROOT)
        try:
            import pyloop
        except ImportError as exc:
            raise LoopMissing(str(exc))
        return pyloop.new_event_loop()
    raise ValueError(f"unknown loop {name!r}")
