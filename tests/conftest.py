"""Shared fixtures: most tests run against both pyloop and the stdlib loop."""
import asyncio
import gc

import pytest

import pyloop

LOOP_FACTORIES = {
    "pyloop": pyloop.new_event_loop,
    "asyncio": asyncio.new_event_loop,
}


@pytest.fixture(params=sorted(LOOP_FACTORIES))
def loop_factory(request):
    """A zero-argument callable making a new loop of the kind under test."""
    return LOOP_FACTORIES[request.param]


@pytest.fixture
def loop_name(loop_factory):
    return "pyloop" if loop_factory is pyloop.new_event_loop else "asyncio"


@pytest.fixture
def loop(loop_factory):
    """A fresh loop, closed (and its leftovers collected) after the test."""
    lp = loop_factory()
    try:
        yield lp
    finally:
        if not lp.is_closed():
            if lp.is_running():  # pragma: no cover - a test left it running
                lp.stop()
            lp.close()
        asyncio.set_event_loop(None)
        gc.collect()


@pytest.fixture
def pyloop_loop():
    """A pyloop loop only, for behaviour that has no stdlib counterpart."""
    lp = pyloop.new_event_loop()
    try:
        yield lp
    finally:
        if not lp.is_closed():
            lp.close()
        gc.collect()
