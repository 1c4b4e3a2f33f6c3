"""Futures and tasks on the loop, and the asyncio primitives built on them."""
import asyncio
import contextvars
import sys

import pytest


def test_create_future(loop):
    fut = loop.create_future()
    assert isinstance(fut, asyncio.Future)
    assert fut.get_loop() is loop
    loop.call_soon(fut.set_result, 5)
    assert loop.run_until_complete(fut) == 5


def test_create_task_name_and_context(loop):
    v = contextvars.ContextVar("v", default=None)
    ctx = contextvars.copy_context()
    ctx.run(v.set, "from-ctx")

    async def body():
        return asyncio.current_task().get_name(), v.get()

    async def main():
        t = loop.create_task(body(), name="named", context=ctx)
        assert isinstance(t, asyncio.Task)
        return await t

    assert loop.run_until_complete(main()) == ("named", "from-ctx")


def test_create_task_rejects_non_coroutine(loop):
    with pytest.raises(TypeError):
        loop.create_task(42)


def test_create_task_unknown_keyword(loop):
    async def body():
        pass

    # Refused by create_task itself, or (3.13.3+, which passes keywords
    # through) by the Task constructor: a TypeError either way.
    c = body()
    try:
        with pytest.raises(TypeError):
            loop.create_task(c, bogus=1)
    finally:
        c.close()


def test_task_factory(loop):
    made = []

    def factory(lp, coro, **kwargs):
        t = asyncio.Task(coro, loop=lp, **kwargs)
        made.append(t)
        return t

    assert loop.get_task_factory() is None
    loop.set_task_factory(factory)
    assert loop.get_task_factory() is factory

    async def body():
        return 1

    async def main():
        return await loop.create_task(body(), name="via-factory")

    assert loop.run_until_complete(main()) == 1
    assert made and made[-1].get_name() == "via-factory"
    loop.set_task_factory(None)
    assert loop.get_task_factory() is None


def test_task_factory_must_be_callable(loop):
    with pytest.raises(TypeError, match="task factory must be a callable or None"):
        loop.set_task_factory(1)


@pytest.mark.skipif(sys.version_info < (3, 12), reason="eager_task_factory is new in 3.12")
def test_eager_task_factory(loop):
    loop.set_task_factory(asyncio.eager_task_factory)
    order = []

    async def body():
        order.append("body")
        return 3

    async def main():
        t = loop.create_task(body())
        order.append("after-create")
        return await t

    assert loop.run_until_complete(main()) == 3
    assert order == ["body", "after-create"]  # ran eagerly


def test_gather_wait_taskgroup_queue_lock(loop):
    async def worker(q, out):
        while True:
            item = await q.get()
            if item is None:
                q.task_done()
                return
            out.append(item * 2)
            q.task_done()

    async def main():
        out = []
        q = asyncio.Queue()
        async with asyncio.TaskGroup() as tg:
            for _ in range(3):
                tg.create_task(worker(q, out))
            for i in range(30):
                await q.put(i)
            for _ in range(3):
                await q.put(None)
        res = await asyncio.gather(asyncio.sleep(0, 1), asyncio.sleep(0.001, 2))
        done, pending = await asyncio.wait([asyncio.ensure_future(asyncio.sleep(0, 3))])
        lock = asyncio.Lock()
        async with lock:
            locked = lock.locked()
        ev = asyncio.Event()
        loop.call_later(0.001, ev.set)
        await ev.wait()
        try:
            async with asyncio.timeout(0.001):
                await asyncio.sleep(10)
        except TimeoutError:
            timed_out = True
        return sorted(out), res, [d.result() for d in done], locked, timed_out

    out, res, done, locked, timed_out = loop.run_until_complete(main())
    assert out == [i * 2 for i in range(30)]
    assert res == [1, 2] and done == [3] and locked and timed_out


def test_cancellation(loop):
    async def sleeper():
        await asyncio.sleep(10)

    async def main():
        t = asyncio.ensure_future(sleeper())
        await asyncio.sleep(0)
        t.cancel()
        with pytest.raises(asyncio.CancelledError):
            await t
        return t.cancelled()

    assert loop.run_until_complete(main())


def test_many_tasks(loop):
    async def one(i):
        await asyncio.sleep(0)
        return i

    async def main():
        return await asyncio.gather(*(one(i) for i in range(5000)))

    assert loop.run_until_complete(main()) == list(range(5000))


@pytest.mark.parametrize("other", ["none", "another loop"])
def test_create_task_binds_to_its_own_loop_whatever_asyncio_runs(loop, loop_factory, other):
    """create_task(coro) makes a task of this loop, also while asyncio's running
    loop of this thread is something else (pyloop leaves out loop= only when
    that loop is this one)."""
    async def child():
        return "done"

    async def main():
        inner = loop_factory() if other == "another loop" else None
        asyncio.events._set_running_loop(None)
        asyncio.events._set_running_loop(inner)
        try:
            task = loop.create_task(child())
        finally:
            asyncio.events._set_running_loop(None)
            asyncio.events._set_running_loop(loop)
            if inner is not None:
                inner.close()
        own = loop.create_task(child())
        assert task.get_loop() is loop
        assert own.get_loop() is loop
        return await task, await own

    assert loop.run_until_complete(main()) == ("done", "done")


def test_create_task_before_the_loop_runs(loop):
    async def child():
        return asyncio.get_running_loop()

    task = loop.create_task(child())
    assert task.get_loop() is loop
    assert loop.run_until_complete(task) is loop


def test_many_tasks_beyond_the_handle_free_list(loop):
    """More handles alive at once than pyloop keeps freed ones for, three rounds:
    each handle, reused or new, runs its own callback with its own arguments."""
    seen = []

    async def main():
        for _ in range(3):
            for i in range(3000):
                loop.call_soon(seen.append, i)
            await asyncio.sleep(0)
            assert seen == list(range(3000))
            seen.clear()

    loop.run_until_complete(main())
