"""pyloop.pytest_plugin: pytester runs a small async test file in a pytest
subprocess, with and without the plugin turned on, and reads back which loop
each test and fixture ran on."""
import textwrap

import pytest

pytest.importorskip("pytest_asyncio", reason="pytest-asyncio is in the test extra")

pytest_plugins = ["pytester"]

TESTS = """
    import asyncio
    import pytest
    import pytest_asyncio

    def loop_module():
        return type(asyncio.get_running_loop()).__module__

    @pytest_asyncio.fixture
    async def fixture_loop():
        return loop_module()

    @pytest.mark.asyncio
    async def test_marked(fixture_loop):
        print(f"\\nLOOP test={loop_module()} fixture={fixture_loop}")

    @pytest.mark.asyncio
    async def test_tasks_and_sleep():
        results = await asyncio.gather(*(asyncio.sleep(0, i) for i in range(3)))
        assert results == [0, 1, 2]
"""

INI = """
    [pytest]
    asyncio_default_fixture_loop_scope = function
"""


def _run(pytester, *args, ini_extra=""):
    pytester.makeini(textwrap.dedent(INI) + ini_extra)
    pytester.makepyfile(test_async=TESTS)
    return pytester.runpytest_subprocess("-s", "-p", "no:cacheprovider", *args)


def _loops(result):
    return [line.split(None, 1)[1] for line in result.outlines if line.startswith("LOOP ")]


def test_flag_runs_tests_and_fixtures_on_pyloop(pytester):
    result = _run(pytester, "-p", "pyloop.pytest_plugin", "--pyloop")
    result.assert_outcomes(passed=2)
    assert _loops(result) == ["test=pyloop.loop fixture=pyloop.loop"]
    result.stdout.fnmatch_lines(["pyloop: pytest-asyncio tests run on pyloop.new_event_loop()"])


def test_ini_option_runs_tests_on_pyloop(pytester):
    result = _run(pytester, ini_extra="addopts = -p pyloop.pytest_plugin\npyloop = true\n")
    result.assert_outcomes(passed=2)
    assert _loops(result) == ["test=pyloop.loop fixture=pyloop.loop"]


def test_loaded_but_not_asked_changes_nothing(pytester):
    result = _run(pytester, "-p", "pyloop.pytest_plugin")
    result.assert_outcomes(passed=2)
    assert _loops(result) == ["test=asyncio.unix_events fixture=asyncio.unix_events"]
    assert "pyloop:" not in result.stdout.str()


def test_without_the_plugin(pytester):
    result = _run(pytester)
    result.assert_outcomes(passed=2)
    assert _loops(result) == ["test=asyncio.unix_events fixture=asyncio.unix_events"]


def test_conftest_hook_wins_over_the_flag(pytester):
    pytester.makeconftest("""
        import asyncio

        def pytest_asyncio_loop_factories(config, item):
            return {"stdlib": asyncio.new_event_loop}
    """)
    result = _run(pytester, "-p", "pyloop.pytest_plugin", "--pyloop")
    result.assert_outcomes(passed=2)
    assert _loops(result) == ["test=asyncio.unix_events fixture=asyncio.unix_events"]


def test_flag_without_pytest_asyncio_is_a_usage_error(pytester):
    result = _run(pytester, "-p", "no:asyncio", "-p", "pyloop.pytest_plugin", "--pyloop")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--pyloop runs async tests through pytest-asyncio*"])
