"""python -m pyloop run: an unchanged asyncio program runs on pyloop (real subprocesses)."""
import json
import subprocess
import sys
import textwrap

import pytest

# An ordinary asyncio program: it reports, as JSON, which loops asyncio gave it
# through each entry point, and what it saw of its own invocation.
PROGRAM = """
    import asyncio, json, sys, warnings

    async def which():
        return type(asyncio.get_running_loop()).__module__

    def main():
        seen = {"argv": sys.argv, "name": __name__,
                "main_module": sys.modules["__main__"].__dict__.get("MARK")}
        # First, before anything sets a current loop: the implicit loop of
        # get_event_loop() (deprecated in 3.12-3.13, gone in 3.14).
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            try:
                loop = asyncio.get_event_loop()
            except RuntimeError:
                seen["get_event_loop"] = None
            else:
                seen["get_event_loop"] = type(loop).__module__
                loop.close()
                asyncio.set_event_loop(None)
        seen["run"] = asyncio.run(which())
        with asyncio.Runner() as runner:
            seen["runner"] = runner.run(which())
        loop = asyncio.new_event_loop()
        seen["new_event_loop"] = type(loop).__module__
        loop.close()
        print(json.dumps(seen))
        sys.exit(int(sys.argv[-1]))

    MARK = "script"
    if __name__ == "__main__":
        main()
"""


def _run(args, cwd):
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True,
                          text=True, timeout=60)


@pytest.fixture
def program(tmp_path):
    (tmp_path / "prog.py").write_text(textwrap.dedent(PROGRAM))
    return tmp_path


def _expected_loops(module):
    implicit = None if sys.version_info >= (3, 14) else module
    return {"run": module, "runner": module, "new_event_loop": module,
            "get_event_loop": implicit}


def test_run_script_on_pyloop_and_plain_python_on_asyncio(program):
    on_pyloop = _run(["-m", "pyloop", "run", "prog.py", "--flag", "x", "0"], program)
    plain = _run(["prog.py", "--flag", "x", "0"], program)
    for proc in (on_pyloop, plain):
        assert proc.returncode == 0, proc.stderr
        assert proc.stderr == ""
    seen, seen_plain = json.loads(on_pyloop.stdout), json.loads(plain.stdout)
    assert seen == {"argv": ["prog.py", "--flag", "x", "0"], "name": "__main__",
                    "main_module": "script", **_expected_loops("pyloop.loop")}
    # The same program without pyloop: only the loops differ.
    assert seen_plain == {**seen, **_expected_loops("asyncio.unix_events")}


def test_run_exit_code_propagates(program):
    proc = _run(["-m", "pyloop", "run", "prog.py", "7"], program)
    assert proc.returncode == 7
    assert json.loads(proc.stdout)["argv"] == ["prog.py", "7"]


def test_run_script_in_another_directory_imports_its_neighbours(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "helper.py").write_text("VALUE = 'neighbour'\n")
    (tmp_path / "pkg" / "main.py").write_text(textwrap.dedent("""
        import asyncio, helper
        async def main():
            print(helper.VALUE, type(asyncio.get_running_loop()).__module__)
        asyncio.run(main())
    """))
    proc = _run(["-m", "pyloop", "run", "pkg/main.py"], tmp_path)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "neighbour pyloop.loop\n", "")


def test_run_module(program):
    proc = _run(["-m", "pyloop", "run", "-m", "prog", "a", "3"], program)
    assert proc.returncode == 3, proc.stderr
    seen = json.loads(proc.stdout)
    assert seen["argv"][1:] == ["a", "3"] and seen["argv"][0].endswith("prog.py")
    assert seen["name"] == "__main__"
    assert {k: seen[k] for k in _expected_loops("")} == _expected_loops("pyloop.loop")


def test_run_uncaught_exception_prints_traceback_and_exits_1(tmp_path):
    (tmp_path / "boom.py").write_text(textwrap.dedent("""
        import asyncio
        async def main():
            raise ValueError("boom from the program")
        asyncio.run(main())
    """))
    proc = _run(["-m", "pyloop", "run", "boom.py"], tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.startswith("Traceback")
    assert proc.stderr.rstrip().endswith("ValueError: boom from the program")


def test_run_missing_script(tmp_path):
    proc = _run(["-m", "pyloop", "run", "nope.py"], tmp_path)
    assert proc.returncode == 1
    assert "can't open file 'nope.py'" in proc.stderr


def test_run_needs_a_target(tmp_path):
    proc = _run(["-m", "pyloop", "run"], tmp_path)
    assert proc.returncode == 2
    assert "the following arguments are required: SCRIPT|MODULE" in proc.stderr
