"""loop.getaddrinfo / loop.getnameinfo: one request on libuv's thread pool
each (csrc/dns.c), no executor. The answers and errors are the socket
module's; in debug mode the lookups are logged as the stdlib loop logs them.
"""
import socket
from asyncio import exceptions
from asyncio.log import logger

from . import _core

_start_getaddrinfo = _core.dns_getaddrinfo
_start_getnameinfo = _core.dns_getnameinfo


async def _resolve(loop, host, port, family, type, proto, flags):
    req = _start_getaddrinfo(loop, host, port, family, type, proto, flags)
    if req is None:
        # argument types whose conversion differs between Python versions
        # (csrc/dns.c): the running Python's socket module decides
        return await loop.run_in_executor(None, socket.getaddrinfo, host, port, family, type,
                                          proto, flags)
    return await _wait(req)


async def _wait(req):
    try:
        return await req.future
    except exceptions.CancelledError:
        # still queued: out of the pool; running: its answer is dropped
        req.cancel()
        raise


def _describe(host, port, family, type, proto, flags):
    parts = [f"{host}:{port!r}"]
    for name, value in (("family", family), ("type", type), ("proto", proto), ("flags", flags)):
        if value:
            parts.append(f"{name}={value!r}")
    return ", ".join(parts)


async def _getaddrinfo_logged(loop, host, port, family, type, proto, flags):
    what = _describe(host, port, family, type, proto, flags)
    logger.debug("Get address info %s", what)
    started = loop.time()
    answer = await _resolve(loop, host, port, family, type, proto, flags)
    took = loop.time() - started
    log = logger.info if took >= loop.slow_callback_duration else logger.debug
    log(f"Getting address info {what} took {took * 1e3:.3f}ms: {answer!r}")
    return answer


async def getaddrinfo(self, host, port, *, family=0, type=0, proto=0, flags=0):
    if self.get_debug():
        return await _getaddrinfo_logged(self, host, port, family, type, proto, flags)
    # _resolve() inlined: one coroutine frame less on the common path
    req = _start_getaddrinfo(self, host, port, family, type, proto, flags)
    if req is None:
        return await _resolve(self, host, port, family, type, proto, flags)
    try:
        return await req.future
    except exceptions.CancelledError:
        req.cancel()
        raise


async def getnameinfo(self, sockaddr, flags=0):
    return await _wait(_start_getnameinfo(self, sockaddr, flags))
