"""Tasks and futures: create_task, gather, wait, as_completed, TaskGroup,
timeouts, cancellation, and futures completed by callbacks or threads.

    python examples/tasks_and_futures.py [--loop asyncio]

Every ordering printed here follows from the program (timers fire in deadline
order, and the deadlines are far apart), not from how fast the machine is.
"""
import asyncio
import threading

import _loop


async def job(name, delay, fail=False):
    await asyncio.sleep(delay)
    if fail:
        raise RuntimeError(f"{name} failed")
    return name


async def tasks():
    print("create_task:")
    task = asyncio.create_task(job("background", 0.01), name="bg")
    print(f"  {task.get_name()} started, done={task.done()}")
    print(f"  awaited: {await task!r}, done={task.done()}")

    print("gather:")
    # Results come back in argument order, whatever order they finish in.
    print(f"  {await asyncio.gather(job('slow', 0.03), job('fast', 0.01))}")
    results = await asyncio.gather(job("ok", 0.01), job("bad", 0.02, fail=True),
                                   return_exceptions=True)
    print(f"  return_exceptions=True: {results!r}")
    try:
        await asyncio.gather(job("ok", 0.01), job("bad", 0.02, fail=True))
    except RuntimeError as exc:
        print(f"  without it, the first error is raised: {exc}")


async def waiting():
    print("wait:")
    fast = asyncio.create_task(job("fast", 0.01))
    slow = asyncio.create_task(job("slow", 10))
    done, pending = await asyncio.wait({fast, slow}, return_when=asyncio.FIRST_COMPLETED)
    print(f"  FIRST_COMPLETED: done={[t.result() for t in done]}, pending={len(pending)}")
    done, pending = await asyncio.wait(pending, timeout=0.02)
    print(f"  timeout=0.02: done={len(done)}, still pending={len(pending)}")
    slow.cancel()
    group = [asyncio.create_task(job(f"j{i}", delay, fail=(i == 2)), name=f"j{i}")
             for i, delay in ((1, 0.01), (2, 0.05), (3, 0.25))]
    done, pending = await asyncio.wait(group, return_when=asyncio.FIRST_EXCEPTION)
    outcome = {t.get_name(): repr(t.exception() or t.result()) for t in done}
    print(f"  FIRST_EXCEPTION: done={dict(sorted(outcome.items()))}, "
          f"pending={[t.get_name() for t in pending]}")
    await asyncio.wait(pending)

    print("as_completed:")
    order = []
    for next_done in asyncio.as_completed([job("c", 0.2), job("a", 0.01), job("b", 0.08)]):
        order.append(await next_done)
    print(f"  in finishing order: {order}")


async def task_groups():
    print("TaskGroup:")
    async with asyncio.TaskGroup() as tg:
        a = tg.create_task(job("a", 0.01))
        b = tg.create_task(job("b", 0.02))
    print(f"  all finished on leaving the block: {a.result()}, {b.result()}")

    slow = None
    try:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(job("x", 0.01, fail=True))
            slow = tg.create_task(job("slow", 10))
    except* RuntimeError as group:
        print(f"  a failure cancels the rest: {[str(e) for e in group.exceptions]}, "
              f"slow cancelled={slow.cancelled()}")


async def timeouts():
    print("timeouts:")
    try:
        async with asyncio.timeout(0.02):
            await job("too slow", 10)
    except TimeoutError:
        print("  asyncio.timeout: TimeoutError")
    async with asyncio.timeout(10) as cm:
        await job("quick", 0.01)
    print(f"  in time: expired={cm.expired()}")
    try:
        await asyncio.wait_for(job("too slow", 10), timeout=0.02)
    except TimeoutError:
        print("  wait_for: TimeoutError")
    print(f"  wait_for in time: {await asyncio.wait_for(job('quick', 0.01), timeout=10)!r}")


async def cancellation():
    print("cancellation:")
    cleaned = asyncio.Event()

    async def worker():
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cleaned.set()  # release resources here, then let the cancellation go on
            raise

    task = asyncio.create_task(worker())
    await asyncio.sleep(0)  # let it start
    task.cancel("shutting down")
    try:
        await task
    except asyncio.CancelledError:
        print(f"  cancelled={task.cancelled()}, cleanup ran={cleaned.is_set()}")

    inner = asyncio.create_task(job("shielded", 0.1))
    outer = asyncio.ensure_future(asyncio.shield(inner))
    await asyncio.sleep(0)
    outer.cancel()
    try:
        await outer
    except asyncio.CancelledError:
        print(f"  shield: outer cancelled, inner goes on -> {await inner!r}")


async def futures():
    print("futures:")
    loop = asyncio.get_running_loop()
    fut = loop.create_future()
    loop.call_later(0.01, fut.set_result, "set by a timer callback")
    print(f"  {await fut}")

    fut = loop.create_future()
    threading.Thread(target=loop.call_soon_threadsafe,
                     args=(fut.set_result, "set from another thread")).start()
    print(f"  {await fut}")

    print(f"  run_in_executor: {await loop.run_in_executor(None, sum, range(10))}")
    print(f"  to_thread: {await asyncio.to_thread(str.upper, 'in a thread')}")

    fut = loop.create_future()
    fut.set_exception(KeyError("missing"))
    try:
        await fut
    except KeyError as exc:
        print(f"  a future's exception is raised by await: {exc!r}")


async def main():
    await tasks()
    await waiting()
    await task_groups()
    await timeouts()
    await cancellation()
    await futures()


if __name__ == "__main__":
    _loop.run(main, _loop.parser(__doc__.splitlines()[0]).parse_args())
