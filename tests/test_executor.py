"""run_in_executor and the default executor."""
import asyncio
import concurrent.futures
import sys
import threading

import pytest


def test_run_in_default_executor(loop):
    main_thread = threading.get_ident()

    async def main():
        return await loop.run_in_executor(None, threading.get_ident)

    assert loop.run_until_complete(main()) != main_thread


def test_run_in_given_executor_with_args(loop):
    with concurrent.futures.ThreadPoolExecutor(1) as ex:
        async def main():
            return await loop.run_in_executor(ex, pow, 2, 10)

        assert loop.run_until_complete(main()) == 1024


def test_exception_in_executor(loop):
    def bad():
        raise KeyError("x")

    with pytest.raises(KeyError):
        loop.run_until_complete(loop.run_in_executor(None, bad))


def test_set_default_executor(loop):
    ex = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="mine")
    loop.set_default_executor(ex)

    async def main():
        return await loop.run_in_executor(None, lambda: threading.current_thread().name)

    assert loop.run_until_complete(main()).startswith("mine")
    loop.run_until_complete(loop.shutdown_default_executor())


def test_set_default_executor_type_check(loop):
    with pytest.raises(TypeError, match="ThreadPoolExecutor"):
        loop.set_default_executor(object())


def test_shutdown_default_executor_then_run_raises(loop):
    loop.run_until_complete(loop.run_in_executor(None, int))
    loop.run_until_complete(loop.shutdown_default_executor())
    with pytest.raises(RuntimeError, match="Executor shutdown has been called"):
        loop.run_in_executor(None, int)


def test_shutdown_default_executor_without_executor(loop):
    loop.run_until_complete(loop.shutdown_default_executor())


@pytest.mark.skipif(sys.version_info < (3, 12), reason="timeout= is new in 3.12")
def test_shutdown_default_executor_timeout(loop):
    if sys.version_info < (3, 13):
        pytest.skip("3.12's shutdown_default_executor (the stdlib's, on both loops) applies "
                    "the timeout only to the final thread join, after the executor finished")
    release = threading.Event()
    loop.run_in_executor(None, release.wait, 5)
    with pytest.warns(RuntimeWarning, match="did not finishing joining"):
        loop.run_until_complete(loop.shutdown_default_executor(timeout=0.05))
    release.set()


def test_run_in_executor_coroutine_function_rejected_in_debug(loop):
    loop.set_debug(True)

    async def coro_fn():
        pass

    with pytest.raises(TypeError, match="coroutines cannot be used"):
        loop.run_in_executor(None, coro_fn)
