"""anyio's asyncio backend on pyloop and on the stdlib loop, chosen with
`backend_options={"loop_factory": ...}` (anyio 4.0 and later)."""
import asyncio
import sys

import anyio
import pytest

import pyloop


def run(loop_factory, fn, *args):
    return anyio.run(fn, *args, backend="asyncio", backend_options={"loop_factory": loop_factory})


def test_runs_on_the_given_loop(loop_factory):
    async def main():
        return type(asyncio.get_running_loop())

    assert run(loop_factory, main) is type(loop_factory())


def test_task_group_and_cancel_scopes(loop_factory):
    async def main():
        order = []

        async def worker(i, delay):
            await anyio.sleep(delay)
            order.append(i)

        async with anyio.create_task_group() as tg:
            for i, delay in enumerate((0.06, 0.02, 0.04)):
                tg.start_soon(worker, i, delay)

        with anyio.move_on_after(0.05) as scope:
            await anyio.sleep(10)
        timed_out = scope.cancelled_caught

        with pytest.raises(TimeoutError):
            with anyio.fail_after(0.05):
                await anyio.sleep(10)

        async def failing():
            await anyio.sleep(0.01)
            raise ValueError("boom")

        cancelled = []

        async def victim():
            try:
                await anyio.sleep(10)
            except anyio.get_cancelled_exc_class():
                cancelled.append(True)
                raise

        with pytest.raises(BaseExceptionGroup) as excinfo:
            async with anyio.create_task_group() as tg:
                tg.start_soon(victim)
                tg.start_soon(failing)
        return order, timed_out, cancelled, [type(e) for e in excinfo.value.exceptions]

    order, timed_out, cancelled, errors = run(loop_factory, main)
    assert order == [1, 2, 0]
    assert timed_out
    assert cancelled == [True]
    assert errors == [ValueError]


def test_tcp_streams(loop_factory):
    """An anyio TCP listener and client exchanging data line by line."""
    async def main():
        from anyio.streams.buffered import BufferedByteReceiveStream

        async def handle(stream):
            async with stream:
                buffered = BufferedByteReceiveStream(stream)
                while True:
                    try:
                        line = await buffered.receive_until(b"\n", 200000)
                    except anyio.IncompleteRead:
                        return
                    await stream.send(line[::-1] + b"\n")

        listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        async with listener, anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, handle)
            replies = []
            async with await anyio.connect_tcp("127.0.0.1", port) as client:
                buffered = BufferedByteReceiveStream(client)
                for word in (b"abc", b"pyloop", b"x" * 100000):
                    await client.send(word + b"\n")
                    replies.append(await buffered.receive_until(b"\n", 200000))
            tg.cancel_scope.cancel()
        return replies

    assert run(loop_factory, main) == [b"cba", b"poolyp", b"x" * 100000]


def test_threads_processes_and_memory_streams(loop_factory):
    async def main():
        in_thread = await anyio.to_thread.run_sync(sum, range(100))
        proc = await anyio.run_process([sys.executable, "-c", "import sys; print(sys.argv[1])", "hi"])
        send, receive = anyio.create_memory_object_stream(max_buffer_size=2)
        got = []

        async def consumer():
            async with receive:
                async for item in receive:
                    got.append(item)

        async with anyio.create_task_group() as tg:
            tg.start_soon(consumer)
            async with send:
                for i in range(10):
                    await send.send(i)
        return in_thread, proc.returncode, proc.stdout, got

    in_thread, rc, out, got = run(loop_factory, main)
    assert in_thread == 4950
    assert (rc, out) == (0, b"hi\n")
    assert got == list(range(10))


# anyio's own pytest plugin, with the loop chosen the same way.
@pytest.fixture(params=[pytest.param(("asyncio", {"loop_factory": pyloop.new_event_loop}), id="pyloop"),
                        pytest.param(("asyncio", {}), id="asyncio")])
def anyio_backend(request):
    return request.param


@pytest.mark.anyio
async def test_pytest_plugin(anyio_backend):
    loop = asyncio.get_running_loop()
    want = pyloop.Loop if anyio_backend[1] else asyncio.SelectorEventLoop
    assert isinstance(loop, want)
    event = anyio.Event()

    async def setter():
        await anyio.sleep(0.01)
        event.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(setter)
        await event.wait()
    assert event.is_set()
