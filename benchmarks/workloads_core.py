"""Loop-core workloads: scheduling, timers, tasks, futures, queues, threads.

Each workload is `fn(loop, n) -> ops`: it runs on the given (fresh) loop and
returns the number of operations it performed; the worker times it.
"""
import asyncio
import socket
import threading

REGISTRY = {}


def workload(name, n, doc, group="core"):
    """Register a workload with its default operation count. `group` names the
    table (and the targets) it is reported under."""
    def deco(fn):
        REGISTRY[name] = {"fn": fn, "n": n, "doc": doc, "group": group}
        return fn
    return deco


@workload("call_soon", 400_000, "callbacks run through call_soon (10 chains re-scheduling themselves)")
def call_soon(loop, n):
    remaining = [n]

    def cb():
        remaining[0] -= 1
        if remaining[0] > 0:
            loop.call_soon(cb)
        elif remaining[0] == 0:
            loop.stop()

    for _ in range(min(10, n)):
        loop.call_soon(cb)
    loop.run_forever()
    return n


@workload("call_later_cancel", 200_000, "timers scheduled with call_later, half cancelled, the rest fired")
def call_later_cancel(loop, n):
    fired = [0]

    def cb():
        fired[0] += 1

    handles = [loop.call_later((i % 100) * 1e-5, cb) for i in range(n)]
    for h in handles[::2]:
        h.cancel()
    loop.run_until_complete(asyncio.sleep(0.002))
    while fired[0] < n // 2:
        loop.run_until_complete(asyncio.sleep(0.001))
    return n


@workload("task_gather", 100_000, "tasks spawned and gathered in batches of 1000")
def task_gather(loop, n):
    async def child(i):
        return i

    async def main():
        for start in range(0, n, 1000):
            await asyncio.gather(*[child(i) for i in range(start, min(n, start + 1000))])

    loop.run_until_complete(main())
    return n


@workload("sleep0", 300_000, "task steps: 100 tasks each awaiting asyncio.sleep(0)")
def sleep0(loop, n):
    per_task = n // 100

    async def stepper():
        for _ in range(per_task):
            await asyncio.sleep(0)

    async def main():
        await asyncio.gather(*[stepper() for _ in range(100)])

    loop.run_until_complete(main())
    return per_task * 100


@workload("future_pingpong", 200_000, "two coroutines handing a future back and forth")
def future_pingpong(loop, n):
    rounds = n // 2

    async def main():
        # Each round: one side resolves the other's future, then awaits its own.
        a_fut = [loop.create_future()]
        b_fut = [loop.create_future()]

        async def side_a():
            for _ in range(rounds):
                b_fut[0].set_result(None)
                await a_fut[0]
                a_fut[0] = loop.create_future()

        async def side_b():
            for _ in range(rounds):
                await b_fut[0]
                b_fut[0] = loop.create_future()
                a_fut[0].set_result(None)

        await asyncio.gather(side_b(), side_a())

    loop.run_until_complete(main())
    return rounds * 2


@workload("queue", 200_000, "asyncio.Queue(maxsize=1) producer/consumer: every item a hand-off")
def queue(loop, n):
    async def main():
        q = asyncio.Queue(maxsize=1)

        async def producer():
            for i in range(n):
                await q.put(i)

        async def consumer():
            for _ in range(n):
                await q.get()

        await asyncio.gather(producer(), consumer())

    loop.run_until_complete(main())
    return n


@workload("call_soon_threadsafe", 200_000, "callbacks sent by another thread with call_soon_threadsafe")
def call_soon_threadsafe(loop, n):
    done = loop.create_future()
    count = [0]

    def cb():
        count[0] += 1
        if count[0] == n:
            done.set_result(None)

    def sender():
        for _ in range(n):
            loop.call_soon_threadsafe(cb)

    t = threading.Thread(target=sender)
    t.start()
    loop.run_until_complete(done)
    t.join()
    return n


GETADDRINFO_QUERY = ("localhost", 80)
GETADDRINFO_KW = {"type": socket.SOCK_STREAM}


@workload("getaddrinfo", 20_000,
          "loop.getaddrinfo('localhost', 80, type=SOCK_STREAM), 100 at a time; every answer must "
          "equal socket.getaddrinfo's")
def getaddrinfo(loop, n):
    want = socket.getaddrinfo(*GETADDRINFO_QUERY, **GETADDRINFO_KW)

    async def main():
        for start in range(0, n, 100):
            batch = min(100, n - start)
            got = await asyncio.gather(*(loop.getaddrinfo(*GETADDRINFO_QUERY, **GETADDRINFO_KW)
                                         for _ in range(batch)))
            for answer in got:
                if answer != want:
                    raise AssertionError(f"getaddrinfo answered {answer!r}, socket {want!r}")

    loop.run_until_complete(main())
    return n
