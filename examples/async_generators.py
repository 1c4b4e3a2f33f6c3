"""Async generators, async iterators, async context managers and async decorators.

    python examples/async_generators.py [--loop asyncio]
"""
import asyncio
import contextlib
import functools
import time

import _loop


# -- async generators ------------------------------------------------------

async def countdown(n, log):
    try:
        while n > 0:
            await asyncio.sleep(0)
            yield n
            n -= 1
    finally:
        # Runs when the generator is exhausted, closed early or collected.
        log.append("countdown closed")


async def generators():
    print("async generators:")
    log = []
    print(f"  async comprehension: {[n async for n in countdown(3, log)]}  {log}")

    log.clear()
    gen = countdown(10, log)
    async for n in gen:
        if n == 8:
            break
    await gen.aclose()  # finish it now rather than when it is collected
    print(f"  stopped at 8 and aclose(): {log}")

    async def doubled(source):
        async for item in source:
            yield item * 2
    print(f"  chained: {[x async for x in doubled(countdown(3, []))]}")

    gen = countdown(2, [])
    print(f"  by hand: {await anext(gen)}, {await anext(gen)}, "
          f"then {await anext(gen, 'exhausted')!r}")


# -- async iterators ---------------------------------------------------------

class Paginator:
    """An async iterator over pages of a (simulated) remote listing."""

    def __init__(self, items, page_size):
        self.items, self.page_size, self.offset = items, page_size, 0
        self.requests = 0

    def __aiter__(self):
        return self

    async def __anext__(self):
        if self.offset >= len(self.items):
            raise StopAsyncIteration
        await asyncio.sleep(0.001)  # the "request"
        self.requests += 1
        page = self.items[self.offset:self.offset + self.page_size]
        self.offset += self.page_size
        return page


async def iterators():
    print("async iterators:")
    pages = Paginator(list(range(7)), page_size=3)
    print(f"  pages: {[page async for page in pages]} in {pages.requests} requests")


# -- async context managers --------------------------------------------------

class Connection:
    """Class-based: __aenter__ opens, __aexit__ closes, even on error."""

    def __init__(self, name, log):
        self.name, self.log = name, log

    async def __aenter__(self):
        await asyncio.sleep(0)
        self.log.append(f"open {self.name}")
        return self

    async def __aexit__(self, exc_type, exc, tb):
        await asyncio.sleep(0)
        self.log.append(f"close {self.name}" + (f" after {exc_type.__name__}" if exc_type else ""))
        return False  # do not swallow the exception


@contextlib.asynccontextmanager
async def transaction(log):
    log.append("begin")
    try:
        yield log
    except Exception as exc:
        log.append(f"rollback ({exc})")
        raise
    else:
        log.append("commit")


async def context_managers():
    print("async context managers:")
    log = []
    async with Connection("db", log) as conn:
        log.append(f"use {conn.name}")
    print(f"  class-based: {log}")

    log = []
    try:
        async with Connection("db", log):
            raise LookupError("no such row")
    except LookupError:
        pass
    print(f"  on error: {log}")

    log = []
    async with transaction(log):
        log.append("insert")
    try:
        async with transaction(log):
            raise ValueError("constraint")
    except ValueError:
        pass
    print(f"  @asynccontextmanager: {log}")

    log = []
    async with contextlib.AsyncExitStack() as stack:
        for name in ("a", "b"):
            await stack.enter_async_context(Connection(name, log))
    print(f"  AsyncExitStack closes in reverse: {log}")


# -- async decorators --------------------------------------------------------

def retry(attempts, base_delay, exceptions=(Exception,)):
    """Retry an async function, waiting base_delay, 2*base_delay, 4*base_delay..."""
    def decorate(func):
        @functools.wraps(func)
        async def wrapper(*args, **kwargs):
            for attempt in range(1, attempts + 1):
                try:
                    return await func(*args, **kwargs)
                except exceptions as exc:
                    if attempt == attempts:
                        raise
                    wrapper.log.append(f"attempt {attempt} failed ({exc}), retrying")
                    await asyncio.sleep(base_delay * 2 ** (attempt - 1))
        wrapper.log = []
        return wrapper
    return decorate


def timed(stats):
    """Record how long each call of an async function takes into stats[name]."""
    def decorate(func):
        @functools.wraps(func)
        async def wrapper(*args, **kwargs):
            start = time.perf_counter()
            try:
                return await func(*args, **kwargs)
            finally:
                stats.setdefault(func.__name__, []).append(time.perf_counter() - start)
        return wrapper
    return decorate


async def decorators():
    print("async decorators:")
    calls = {"n": 0}

    @retry(attempts=4, base_delay=0.001, exceptions=(ConnectionError,))
    async def flaky():
        calls["n"] += 1
        if calls["n"] < 3:
            raise ConnectionError(f"refused #{calls['n']}")
        return "connected"

    print(f"  retry: {await flaky()!r} after {calls['n']} calls")
    for line in flaky.log:
        print(f"    {line}")

    @retry(attempts=2, base_delay=0.001)
    async def broken():
        raise OSError("down")
    try:
        await broken()
    except OSError as exc:
        print(f"  retry gives up after 2 attempts: {exc}, log={broken.log}")

    stats = {}

    @timed(stats)
    async def fetch(i):
        await asyncio.sleep(0.001 * i)
        return i

    print(f"  timed: {await asyncio.gather(*(fetch(i) for i in range(5)))}, "
          f"{len(stats['fetch'])} timings recorded for {fetch.__name__!r}, "
          f"all positive: {all(t > 0 for t in stats['fetch'])}")


async def main():
    await generators()
    await iterators()
    await context_managers()
    await decorators()


if __name__ == "__main__":
    _loop.run(main, _loop.parser(__doc__.splitlines()[0]).parse_args())
