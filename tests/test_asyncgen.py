"""Async generator hooks and shutdown_asyncgens."""
import asyncio
import sys


def test_shutdown_asyncgens_finalizes(loop):
    closed = []

    async def agen():
        try:
            yield 1
            yield 2
        finally:
            closed.append(True)

    async def main():
        g = agen()
        assert await g.__anext__() == 1
        return g

    g = loop.run_until_complete(main())
    assert closed == []
    loop.run_until_complete(loop.shutdown_asyncgens())
    assert closed == [True]
    del g


def test_hooks_installed_while_running_and_restored(loop):
    before = sys.get_asyncgen_hooks()
    seen = []

    async def main():
        seen.append(sys.get_asyncgen_hooks())

    loop.run_until_complete(main())
    hooks = seen[0]
    assert hooks.firstiter is not None and hooks.finalizer is not None
    assert hooks.firstiter == loop._asyncgen_firstiter_hook
    assert sys.get_asyncgen_hooks() == before


def test_asyncgen_after_shutdown_warns(loop):
    import pytest

    async def agen():
        yield 1

    loop.run_until_complete(loop.shutdown_asyncgens())

    async def main():
        g = agen()
        await g.__anext__()
        await g.aclose()

    with pytest.warns(ResourceWarning, match="scheduled after"):
        loop.run_until_complete(main())


def test_garbage_collected_asyncgen_is_closed_on_loop(loop):
    closed = []

    async def agen():
        try:
            yield 1
            yield 2
        finally:
            closed.append(True)

    async def main():
        g = agen()
        await g.__anext__()
        del g  # the finalizer hook schedules aclose() on the loop
        for _ in range(5):
            await asyncio.sleep(0)

    loop.run_until_complete(main())
    assert closed == [True]
