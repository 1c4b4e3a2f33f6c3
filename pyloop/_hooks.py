"""Python helpers the C core calls on its cold paths (errors, repr, debug).

Kept in Python because they format text exactly as the stdlib does, and they
never run on the per-callback fast path.
"""

import sys
from asyncio import format_helpers, tasks
from asyncio.log import logger

_FORMAT_TAKES_DEBUG = sys.version_info >= (3, 13)


def _callback_source(handle):
    loop = handle._loop
    if _FORMAT_TAKES_DEBUG:
        return format_helpers._format_callback_source(
            handle._callback, handle._args,
            debug=loop is not None and loop.get_debug())
    return format_helpers._format_callback_source(handle._callback, handle._args)


def handle_error(handle, exc):
    """A callback raised: hand it to the loop's exception handler."""
    context = {
        "message": f"Exception in callback {_callback_source(handle)}",
        "exception": exc,
        "handle": handle,
    }
    if handle._source_traceback:
        context["source_traceback"] = handle._source_traceback
    handle._loop.call_exception_handler(context)


def handle_repr(handle):
    info = [type(handle).__name__]
    if handle._cancelled:
        info.append("cancelled")
    if hasattr(handle, "_when"):
        info.append(f"when={handle._when}")
    if handle._callback is not None:
        info.append(_callback_source(handle))
    tb = handle._source_traceback
    if tb:
        frame = tb[-1]
        info.append(f"created at {frame[0]}:{frame[1]}")
    return "<{}>".format(" ".join(info))


def extract_stack():
    # Frame 1 is the Python code that called loop.call_soon() (the C method
    # itself has no frame).
    return format_helpers.extract_stack(sys._getframe(1))


def slow_callback(loop, handle, seconds):
    cb = handle._callback
    owner = getattr(cb, "__self__", None)
    what = repr(owner) if isinstance(owner, tasks.Task) else str(handle)
    logger.warning("Executing %s took %.3f seconds", what, seconds)


HOOKS = {
    "handle_error": handle_error,
    "handle_repr": handle_repr,
    "extract_stack": extract_stack,
    "slow_callback": slow_callback,
}
