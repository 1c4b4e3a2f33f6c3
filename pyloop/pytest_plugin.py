"""pytest plugin: run pytest-asyncio's async tests and fixtures on pyloop loops.

    pytest -p pyloop.pytest_plugin --pyloop

or in the ini file (pytest.ini, or [tool.pytest.ini_options] in pyproject.toml):

    addopts = -p pyloop.pytest_plugin
    pyloop = true

Loading the plugin changes nothing by itself: only --pyloop or `pyloop = true`
turns it on. It then gives pytest-asyncio (1.4 or later) pyloop.new_event_loop
through its pytest_asyncio_loop_factories hook, with the lowest priority, so a
conftest.py that implements that hook itself still decides.
"""
import pytest

import pyloop

_NAME = "pyloop-loop-factory"


def pytest_addoption(parser):
    group = parser.getgroup("pyloop", "pyloop event loop")
    group.addoption("--pyloop", action="store_true", default=False,
                    help="run pytest-asyncio tests on pyloop loops (pyloop.new_event_loop)")
    parser.addini("pyloop", type="bool", default=False,
                  help="run pytest-asyncio tests on pyloop loops, as --pyloop")


class _PyloopLoopFactory:
    @pytest.hookimpl(trylast=True)
    def pytest_asyncio_loop_factories(self, config, item):
        return {"pyloop": pyloop.new_event_loop}

    def pytest_report_header(self, config):
        return "pyloop: pytest-asyncio tests run on pyloop.new_event_loop()"


def pytest_configure(config):
    if not (config.getoption("pyloop") or config.getini("pyloop")):
        return
    if not config.pluginmanager.hasplugin("asyncio"):
        raise pytest.UsageError("--pyloop runs async tests through pytest-asyncio, "
                                "which is not installed (or disabled with -p no:asyncio)")
    if not hasattr(config.hook, "pytest_asyncio_loop_factories"):
        import pytest_asyncio
        raise pytest.UsageError(
            "--pyloop needs pytest-asyncio 1.4 or later (its pytest_asyncio_loop_factories "
            f"hook); this is pytest-asyncio {getattr(pytest_asyncio, '__version__', '?')}")
    config.pluginmanager.register(_PyloopLoopFactory(), _NAME)
