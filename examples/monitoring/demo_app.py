"""A small service with the troubles pyloop.monitor shows: a blocking call in a
coroutine, a task that hogs the loop, and many short ones. It serves its
figures for the live view:

    python examples/monitoring/demo_app.py /tmp/demo.monitor &
    python -m pyloop monitor /tmp/demo.monitor
"""
import asyncio
import hashlib
import os
import sys
import time

sys.path.insert(1, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import pyloop  # noqa: E402
import pyloop.monitor  # noqa: E402


async def fetch_report():
    while True:
        time.sleep(0.12)  # a blocking call (say requests.get) in a coroutine
        await asyncio.sleep(0.5)


async def checksum_files():
    while True:
        data = b"x" * 200_000
        for _ in range(40):  # CPU work in long steps: hogs the loop
            data = hashlib.sha256(data).digest() * 6250
        await asyncio.sleep(0.05)


async def handle_request(i):
    await asyncio.sleep(0.001 * (i % 5))
    return i


async def serve_requests():
    i = 0
    while True:
        await asyncio.gather(*(handle_request(i + k) for k in range(20)))
        i += 20
        await asyncio.sleep(0.01)


async def main(path):
    loop = asyncio.get_running_loop()
    # watchdog=True: the live view shows the line a slow callback was running
    pyloop.monitor.enable(loop, tasks=True, name="demo", watchdog=True)
    with pyloop.monitor.serve(path):
        await asyncio.gather(
            asyncio.create_task(fetch_report(), name="fetch_report"),
            asyncio.create_task(checksum_files(), name="checksum_files"),
            asyncio.create_task(serve_requests(), name="requests"),
        )


if __name__ == "__main__":
    try:
        pyloop.run(main(sys.argv[1]))
    except KeyboardInterrupt:
        pass
