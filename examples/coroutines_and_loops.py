"""Coroutines, exceptions in coroutines, and the ways to create, run and close a loop.

    python examples/coroutines_and_loops.py [--loop asyncio]
"""
import asyncio
import sys

import _loop
import pyloop


async def greet(name, delay=0.01):
    """A coroutine: calling it makes a coroutine object; awaiting it runs it."""
    await asyncio.sleep(delay)
    return f"hello, {name}"


async def parse_port(text):
    await asyncio.sleep(0)
    port = int(text)  # ValueError for text that is not a number
    if not 0 < port < 65536:
        raise ValueError(f"port out of range: {port}")
    return port


async def exceptions():
    # An exception raised inside an awaited coroutine propagates to the awaiter,
    # as in ordinary functions.
    for text in ("8080", "http", "70000"):
        try:
            print(f"  parse_port({text!r}) = {await parse_port(text)}")
        except ValueError as exc:
            print(f"  parse_port({text!r}) failed: {exc}")

    # In a task, the exception is kept until the task is awaited (or .exception()).
    task = asyncio.create_task(parse_port("-1"))
    await asyncio.wait([task])
    print(f"  task done={task.done()}, exception={task.exception()!r}")

    # finally blocks and async with/for clean-up run when a coroutine fails.
    async def with_cleanup():
        try:
            await parse_port("oops")
        finally:
            print("  cleanup ran")
    try:
        await with_cleanup()
    except ValueError as exc:
        print(f"  then the error reached the caller: {type(exc).__name__}")


async def main():
    coro = greet("world")
    print(f"  a coroutine object: {type(coro).__name__}, awaited: {await coro!r}")
    print(f"  sequential: {[await greet(n) for n in ('a', 'b')]}")
    print(f"  concurrent: {await asyncio.gather(greet('c'), greet('d'))}")
    await exceptions()
    return "main done"


def which_loop(loop):
    return "pyloop" if isinstance(loop, pyloop.Loop) else "asyncio"


async def current_loop():
    return asyncio.get_running_loop()


async def loop_kind():
    return which_loop(asyncio.get_running_loop())


def ways_to_run(args):
    factory = _loop.factory(args)
    print("ways to run a coroutine:")

    # 1. pyloop.run(): like asyncio.run() -- a new loop, run, then closed.
    #    (With --loop asyncio, asyncio.run() itself.)
    runner_fn = pyloop.run if args.loop == "pyloop" else asyncio.run
    print(f"  {args.loop}.run: {runner_fn(loop_kind())}")

    # 2. asyncio.run(main, loop_factory=...) (Python 3.12+); 3.11's asyncio.run
    #    has no loop_factory, and asyncio.Runner below is its equivalent there.
    if sys.version_info >= (3, 12):
        result = asyncio.run(loop_kind(), loop_factory=factory)
    else:
        with asyncio.Runner(loop_factory=factory) as runner:
            result = runner.run(loop_kind())
    print(f"  asyncio.run with loop_factory: {result}")

    # 3. asyncio.Runner: several top-level coroutines on one loop, then closed.
    with asyncio.Runner(loop_factory=factory) as runner:
        first = runner.run(current_loop())
        greeting = runner.run(greet("runner"))
        again = runner.run(current_loop())
        print(f"  Runner: {which_loop(first)}, {greeting!r}, same loop each time: {first is again}")
        loop = runner.get_loop()
    print(f"  Runner closed its loop: {loop.is_closed()}")

    # 4. By hand: make a loop, run_until_complete, shut down, close.
    loop = factory()
    try:
        print(f"  run_until_complete on {which_loop(loop)}: {loop.run_until_complete(main())!r}")
        loop.run_until_complete(loop.shutdown_asyncgens())
    finally:
        loop.close()
    print(f"  closed by hand: {loop.is_closed()}")

    # A closed loop refuses work.
    coro = greet("late")
    try:
        loop.run_until_complete(coro)
    except RuntimeError as exc:
        print(f"  a closed loop raises RuntimeError: {exc}")
    finally:
        coro.close()


def main_cli():
    args = _loop.parser(__doc__.splitlines()[0]).parse_args()
    print(f"loop: {args.loop}")
    ways_to_run(args)


if __name__ == "__main__":
    main_cli()
