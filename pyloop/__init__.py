"""pyloop: an asyncio event loop written in C on libuv.

    import pyloop
    pyloop.run(main())                                    # like asyncio.run
    asyncio.run(main(), loop_factory=pyloop.new_event_loop)   # 3.12+
    with asyncio.Runner(loop_factory=pyloop.new_event_loop) as r: ...
"""

import asyncio as _asyncio
import sys as _sys
import warnings as _warnings

from . import _core, _hooks
from ._core import libuv_version
from .loop import Loop

_core._set_hooks(_hooks.HOOKS)

__version__ = "0.1.0"
__all__ = ("Loop", "new_event_loop", "run", "EventLoopPolicy", "install", "libuv_version")

_PY314 = _sys.version_info >= (3, 14)


def new_event_loop():
    """Return a new pyloop event loop."""
    return Loop()


def run(main, *, debug=None):
    """Run the coroutine `main` on a new pyloop loop and return its result,
    as asyncio.run() does (the loop is closed afterwards)."""
    with _asyncio.Runner(debug=debug, loop_factory=new_event_loop) as runner:
        return runner.run(main)


if _PY314:
    _PolicyBase = _asyncio.events._BaseDefaultEventLoopPolicy
else:
    _PolicyBase = _asyncio.events.BaseDefaultEventLoopPolicy


class EventLoopPolicy(_PolicyBase):
    """An event loop policy whose new loops are pyloop loops.

    Policies are deprecated from Python 3.14 on; prefer
    asyncio.run(main(), loop_factory=pyloop.new_event_loop) or pyloop.run().
    """

    def _loop_factory(self):
        return new_event_loop()

    def __repr__(self):
        return f"<{type(self).__name__}>"


def install():
    """Make pyloop the loop that asyncio.new_event_loop() and asyncio.run()
    create, by installing EventLoopPolicy. Deprecated on 3.14+, like the
    stdlib's policy system."""
    if _PY314:
        _warnings.warn(
            "pyloop.install() uses the event loop policy system, deprecated "
            "since Python 3.14; use pyloop.run() or "
            "asyncio.run(..., loop_factory=pyloop.new_event_loop)",
            DeprecationWarning, stacklevel=2)
        with _warnings.catch_warnings():
            _warnings.simplefilter("ignore", DeprecationWarning)
            _asyncio.set_event_loop_policy(EventLoopPolicy())
    else:
        _asyncio.set_event_loop_policy(EventLoopPolicy())
