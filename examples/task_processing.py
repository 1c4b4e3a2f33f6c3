"""An async task-processing system: a pool of workers over an asyncio.Queue,
each submitted job answered through a future, a graceful (drain) or immediate
(cancel) stop, and a monitor of each job function's calls, successes, errors
and average execution time.

    python examples/task_processing.py [--loop asyncio] [--workers 4] [--times]

--times adds the measured average times to the monitor's report (left out by
default so that the output is the same on every run).
"""
import asyncio
import dataclasses
import functools
import inspect
import time

import _loop


@dataclasses.dataclass
class FunctionStats:
    calls: int = 0
    succeeded: int = 0
    failed: int = 0
    cancelled: int = 0
    total_time: float = 0.0

    @property
    def average_time(self):
        return self.total_time / self.calls if self.calls else 0.0


class ExecutionMonitor:
    """Counts every call of the functions it wraps, and how long each took."""

    def __init__(self):
        self.stats = {}

    def wrap(self, func):
        stats = self.stats.setdefault(func.__name__, FunctionStats())

        @functools.wraps(func)
        async def monitored(*args, **kwargs):
            start = time.perf_counter()
            stats.calls += 1
            try:
                if inspect.iscoroutinefunction(func):
                    result = await func(*args, **kwargs)
                else:  # a blocking function: run it in a thread, off the loop
                    result = await asyncio.to_thread(func, *args, **kwargs)
            except Exception:
                stats.failed += 1
                raise
            except asyncio.CancelledError:
                stats.cancelled += 1
                raise
            else:
                stats.succeeded += 1
                return result
            finally:
                stats.total_time += time.perf_counter() - start
        return monitored

    def report(self, with_times=False):
        lines = [f"  {'function':<14} {'calls':>5} {'ok':>4} {'errors':>6} {'cancelled':>9}"
                 + ("  avg ms" if with_times else "")]
        for name, s in sorted(self.stats.items()):
            line = f"  {name:<14} {s.calls:>5} {s.succeeded:>4} {s.failed:>6} {s.cancelled:>9}"
            if with_times:
                line += f"  {s.average_time * 1000:6.2f}"
            lines.append(line)
        return "\n".join(lines)


_STOP = object()  # tells one worker to finish


class TaskProcessor:
    """Workers take (function, args, future) jobs from a bounded queue; submit()
    waits while the queue is full (back-pressure) and returns the job's future."""

    def __init__(self, workers, monitor, queue_size=100):
        self.monitor = monitor
        self.queue = asyncio.Queue(queue_size)
        self.n_workers = workers
        self.workers = []
        self.processed = 0
        self.accepting = False

    async def __aenter__(self):
        self.workers = [asyncio.create_task(self._work(), name=f"worker-{i}")
                        for i in range(self.n_workers)]
        self.accepting = True
        return self

    async def __aexit__(self, *exc):
        await self.stop(graceful=exc[0] is None)

    async def submit(self, func, *args):
        if not self.accepting:
            raise RuntimeError("the processor is stopped")
        future = asyncio.get_running_loop().create_future()
        await self.queue.put((self.monitor.wrap(func), args, future))
        return future

    async def _work(self):
        while True:
            job = await self.queue.get()
            try:
                if job is _STOP:
                    return
                func, args, future = job
                if future.cancelled():  # the submitter gave up on it: skip
                    continue
                try:
                    result = await func(*args)
                except asyncio.CancelledError:
                    future.cancel()
                    raise
                except Exception as exc:
                    if not future.cancelled():
                        future.set_exception(exc)
                else:
                    if not future.cancelled():
                        future.set_result(result)
                self.processed += 1
            finally:
                self.queue.task_done()

    async def stop(self, graceful=True):
        """graceful: finish every queued job, then stop the workers.
        Otherwise: cancel the running jobs and the queued ones' futures."""
        self.accepting = False
        if graceful:
            await self.queue.join()
            for _ in self.workers:
                await self.queue.put(_STOP)
        else:
            while not self.queue.empty():
                _, _, future = self.queue.get_nowait()
                future.cancel()
                self.queue.task_done()
            for worker in self.workers:
                worker.cancel()
        await asyncio.gather(*self.workers, return_exceptions=True)


# -- the jobs -------------------------------------------------------------

async def resize_image(n):
    await asyncio.sleep(0.001 * (n % 4))
    return f"img{n}-thumb.png"


async def send_email(address):
    await asyncio.sleep(0.001)
    if "@" not in address:
        raise ValueError(f"bad address {address!r}")
    return f"sent to {address}"


def checksum(data):  # blocking, CPU-bound: runs in a thread
    return sum(data) % 251


async def slow_report(n):
    await asyncio.sleep(10)
    return n


async def main(args):
    monitor = ExecutionMonitor()
    async with TaskProcessor(args.workers, monitor, queue_size=8) as processor:
        images = [await processor.submit(resize_image, n) for n in range(12)]
        emails = [await processor.submit(send_email, a)
                  for a in ("ann@example.org", "bob", "cy@example.org", "")]
        sums = [await processor.submit(checksum, bytes(range(n))) for n in (10, 100, 250)]
        skipped = await processor.submit(resize_image, 99)
        skipped.cancel()  # no worker has taken it yet: it will not run

        print(f"images: {await asyncio.gather(*images)}")
        for address_future in emails:
            try:
                print(f"  email: {await address_future}")
            except ValueError as exc:
                print(f"  email failed: {exc}")
        print(f"checksums: {await asyncio.gather(*sums)}")
        print(f"cancelled before it ran: {skipped.cancelled()}")

        # Jobs still queued when the block ends are finished first (graceful stop).
        last = [await processor.submit(resize_image, n) for n in range(100, 106)]
    print(f"graceful stop: queued jobs finished first: {all(f.done() for f in last)}, "
          f"workers done: {all(w.done() for w in processor.workers)}")
    print(f"jobs processed: {processor.processed}")
    try:
        await processor.submit(resize_image, 1)
    except RuntimeError as exc:
        print(f"submit after stop: {exc}")

    # An immediate stop cancels what is running and what is queued.
    processor = TaskProcessor(2, monitor)
    await processor.__aenter__()
    pending = [await processor.submit(slow_report, n) for n in range(6)]
    while processor.queue.qsize() > 4:  # let the two workers take a job each
        await asyncio.sleep(0)
    await processor.stop(graceful=False)
    print(f"immediate stop: {sum(f.cancelled() for f in pending)} of {len(pending)} "
          f"jobs cancelled")

    print("monitor:")
    print(monitor.report(with_times=args.times))


if __name__ == "__main__":
    ap = _loop.parser(__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--times", action="store_true", help="show average execution times")
    args = ap.parse_args()
    _loop.run(lambda: main(args), args)
