"""Shared by the examples: choose the event loop from the command line.

    python examples/NAME.py                 # on pyloop
    python examples/NAME.py --loop asyncio  # on the stdlib loop, to compare

Each example's output is the same on both loops, apart from the first line,
which says which loop ran it.
"""
import argparse
import asyncio
import os
import sys

# The examples run from a source checkout without installing pyloop too.
sys.path.insert(1, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import pyloop  # noqa: E402

FACTORIES = {"pyloop": pyloop.new_event_loop, "asyncio": asyncio.new_event_loop}


def parser(description):
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--loop", choices=sorted(FACTORIES), default="pyloop",
                    help="event loop to run on (default: pyloop)")
    return ap


def factory(args):
    """The zero-argument loop factory the command line chose."""
    return FACTORIES[args.loop]


def running_loop_name():
    loop = asyncio.get_running_loop()
    return "pyloop" if isinstance(loop, pyloop.Loop) else type(loop).__module__.split(".")[0]


def run(main, args):
    """Run the coroutine function `main` on the chosen loop, as asyncio.run does."""
    async def announced():
        print(f"loop: {running_loop_name()}")
        return await main()
    with asyncio.Runner(loop_factory=factory(args)) as runner:
        return runner.run(announced())
