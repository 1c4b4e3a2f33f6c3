"""set/get_exception_handler, default_exception_handler, call_exception_handler."""
import logging

import pytest


def test_set_get(loop):
    assert loop.get_exception_handler() is None

    def handler(lp, ctx):
        pass

    loop.set_exception_handler(handler)
    assert loop.get_exception_handler() is handler
    loop.set_exception_handler(None)
    assert loop.get_exception_handler() is None


def test_non_callable_handler(loop):
    with pytest.raises(TypeError, match="A callable object or None is expected"):
        loop.set_exception_handler(1)


def test_default_handler_logs(loop, caplog):
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        try:
            raise ValueError("the-exc")
        except ValueError as exc:
            loop.call_exception_handler({"message": "custom message", "exception": exc,
                                         "extra": "some-extra"})
    assert "custom message" in caplog.text
    assert "the-exc" in caplog.text
    assert "extra: 'some-extra'" in caplog.text


def test_default_handler_without_message(loop, caplog):
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        loop.default_exception_handler({})
    assert "Unhandled exception in event loop" in caplog.text


def test_handler_that_raises_falls_back_to_default(loop, caplog):
    def bad_handler(lp, ctx):
        raise RuntimeError("handler failed")

    loop.set_exception_handler(bad_handler)
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        loop.call_exception_handler({"message": "original"})
    assert "Unhandled error in exception handler" in caplog.text
    assert "handler failed" in caplog.text


def test_handler_keyboard_interrupt_propagates(loop):
    def handler(lp, ctx):
        raise KeyboardInterrupt

    loop.set_exception_handler(handler)
    with pytest.raises(KeyboardInterrupt):
        loop.call_exception_handler({"message": "x"})


def test_custom_handler_receives_loop_and_context(loop):
    got = []
    loop.set_exception_handler(lambda lp, ctx: got.append((lp, ctx)))
    loop.call_exception_handler({"message": "m"})
    assert got == [(loop, {"message": "m"})]
