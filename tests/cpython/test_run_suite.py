"""The CPython-suite runner's own tests: it runs the modules of
suite_fixtures/ (each outcome on purpose: failures only on pyloop, subtests,
a crash, a hang, a crash at exit) and must classify every one right."""
import json
import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
RUNNER = os.path.join(HERE, "run_suite.py")
FIXTURE_KNOWN = os.path.join(HERE, "suite_fixtures", "known.txt")


def run_suite(*args, known=FIXTURE_KNOWN, package="suite_fixtures"):
    cmd = [sys.executable, RUNNER, "--package", package, "--known", known, *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                          stdin=subprocess.DEVNULL)
    return proc


@pytest.fixture(scope="module")
def fixture_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("suite") / "out.json"
    proc = run_suite("--only", "sample,crash,hang,exit_crash", "--test-timeout", "3",
                     "--json", str(out), "-v")
    with open(out) as f:
        return proc, json.load(f)


def outcome(doc, module, loop, test):
    return doc["modules"][module][loop]["tests"][f"{module}.{test}"]["outcome"]


def test_child_proves_the_patch(fixture_run):
    _, doc = fixture_run
    for loop in ("asyncio", "pyloop"):
        patch = doc["modules"]["sample"][loop]["patch"]
        assert "asyncio.new_event_loop()" in patch["checked"]
        assert "unittest.IsolatedAsyncioTestCase" in patch["checked"]
        assert patch["patched"]
    assert "pyloop" in doc["modules"]["sample"]["pyloop"]["patch"]


def test_outcomes(fixture_run):
    _, doc = fixture_run
    assert outcome(doc, "sample", "asyncio", "Sample.test_fails_on_pyloop") == "pass"
    assert outcome(doc, "sample", "pyloop", "Sample.test_fails_on_pyloop") == "fail"
    # Failing subtests make the test fail (unittest only calls addSubTest).
    assert outcome(doc, "sample", "pyloop", "Sample.test_subtest_fails_on_pyloop") == "fail"
    assert outcome(doc, "sample", "asyncio", "Sample.test_subtest_fails_on_pyloop") == "pass"
    assert outcome(doc, "sample", "pyloop", "Sample.test_error_in_cleanup_on_pyloop") == "error"
    assert outcome(doc, "sample", "pyloop", "Sample.test_skip") == "skip"
    assert outcome(doc, "sample", "pyloop", "Isolated.test_loop_type") == "pass"
    assert outcome(doc, "sample", "pyloop", "BrokenClass.setUpClass") == "error"
    # Loops are counted per test: only tests that made a loop count.
    tests = doc["modules"]["sample"]["pyloop"]["tests"]
    assert tests["sample.Sample.test_pass"]["loops"] == 1
    assert tests["sample.Sample.test_no_loop"]["loops"] == 0
    assert tests["sample.Isolated.test_loop_type"]["loops"] >= 1


def test_crash_hang_and_exit_crash(fixture_run):
    proc, doc = fixture_run
    crash = doc["modules"]["crash"]["pyloop"]
    assert crash["status"] == "crash"
    assert [(i["kind"], i["test"]) for i in crash["incidents"]] == [
        ("crash", "crash.Crash.test_b_crash"), ("crash", "crash.Crash.test_d_abort")]
    # AddressSanitizer (make asan) turns the segfault into its own report and
    # an abort.
    segv = "SIGABRT" if os.environ.get("PYLOOP_UNDER_ASAN") else "SIGSEGV"
    assert segv in crash["incidents"][0]["text"]
    assert "SIGABRT" in crash["incidents"][1]["text"]
    # Resumed after each crash: every other test ran.
    for test, expected in [("a_before", "pass"), ("b_crash", "crash"), ("c_between", "pass"),
                           ("d_abort", "crash"), ("e_after", "pass")]:
        assert outcome(doc, "crash", "pyloop", f"Crash.test_{test}") == expected
    assert doc["modules"]["crash"]["asyncio"]["status"] == "ok"

    hang = doc["modules"]["hang"]["pyloop"]
    assert hang["status"] == "timeout"
    assert outcome(doc, "hang", "pyloop", "Hang.test_b_hang") == "crash"
    assert outcome(doc, "hang", "pyloop", "Hang.test_c_after") == "pass"
    assert "hang.py" in hang["incidents"][0]["stack"]  # faulthandler's dump

    exit_crash = doc["modules"]["exit_crash"]["pyloop"]
    assert exit_crash["status"] == "crash"
    assert "SIGABRT at interpreter exit" in exit_crash["incidents"][0]["text"]
    assert exit_crash["incidents"][0]["test"] is None


def test_module_timeout(tmp_path):
    out = tmp_path / "out.json"
    proc = run_suite("--only", "hang", "--loop", "pyloop", "--timeout", "4",
                     "--json", str(out))
    assert proc.returncode == 1
    with open(out) as f:
        run = json.load(f)["modules"]["hang"]["pyloop"]
    assert run["status"] == "timeout"
    assert run["incidents"][0]["test"] == "hang.Hang.test_b_hang"
    assert "the module's time ran out" in run["stopped"]
    assert "hang.py" in run["incidents"][0]["stack"]
    assert proc.stdout.splitlines()[-1] == "1 passed, 1 failed, 0 skipped"


def test_classification_and_exit_status(fixture_run):
    proc, doc = fixture_run
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert sorted(doc["unexpected"]) == [
        "crash.Crash.test_b_crash",
        "crash.Crash.test_d_abort",
        "hang.Hang.test_b_hang",
        "sample.BrokenClass.setUpClass",
        "sample.Sample.test_error_in_cleanup_on_pyloop",
        "sample.Sample.test_fails_on_pyloop",
        "sample.Sample.test_subtest_fails_on_pyloop",
    ]
    assert doc["known"] == ["sample.Sample.test_known"]
    assert doc["both_fail"] == ["sample.Sample.test_fails_everywhere"]
    assert doc["stale_known"] == ["sample.Sample.test_stale"]
    lines = proc.stdout.splitlines()
    # 7 unexpected failures and the crash at exit; the known failure and the
    # test failing on both loops are listed but not counted.
    passed = sum(doc["modules"][m]["pyloop"]["counts"]["pass"] for m in doc["modules"])
    assert passed == 10
    assert lines[-1] == "10 passed, 8 failed, 1 skipped"
    assert any("stale known-failure entry, sample.Sample.test_stale" in l for l in lines)
    assert any("sample.Sample.test_gone matches no test" in l for l in lines)
    assert any("marker: subtest" in l for l in lines)


def test_clean_run_exits_zero(tmp_path):
    known = tmp_path / "known.txt"
    known.write_text("all sample.Sample.test_fails_on_pyloop  deliberate, for this test\n")
    proc = run_suite("--only", "sample", "-k", "Sample.test_pass", "-k", "Sample.test_fails_on_pyloop",
                     known=str(known))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.splitlines()[-1] == "1 passed, 0 failed, 0 skipped"


@pytest.mark.parametrize("line", [
    "py3.11 sample.Sample.test_x",            # no reason
    "3.11 sample.Sample.test_x  a reason",    # bad version tag
    "all test_x  a reason",                   # not module.Class.test
])
def test_bad_known_failures_file(tmp_path, line):
    known = tmp_path / "known.txt"
    known.write_text(line + "\n")
    proc = run_suite("--only", "sample", known=str(known))
    assert proc.returncode == 2
    assert "known.txt:1" in proc.stderr


def test_patch_that_does_not_take_is_fatal():
    # If some Python's new_event_loop() stopped going through the policy's
    # _loop_factory, the child must refuse to run rather than test the stdlib
    # loop twice.
    code = ("import asyncio, asyncio.events as ev, _child\n"
            "ev.new_event_loop = asyncio.new_event_loop = lambda: asyncio.SelectorEventLoop()\n"
            "_child.setup_loop('pyloop', sys.argv[1])\n")
    proc = subprocess.run([sys.executable, "-c", "import sys\n" + code,
                           os.path.dirname(os.path.dirname(HERE))],
                          cwd=HERE, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 3
    assert "the loop patch did not take" in proc.stderr


def test_real_module_runs_on_pyloop(tmp_path):
    # One real test_asyncio module: its tests must run on pyloop loops.
    out = tmp_path / "out.json"
    proc = subprocess.run([sys.executable, RUNNER, "--only", "test_futures2",
                           "--loop", "pyloop", "--json", str(out)],
                          capture_output=True, text=True, timeout=300)
    with open(out) as f:
        doc = json.load(f)
    run = doc["modules"]["test_futures2"]["pyloop"]
    assert run["status"] == "ok", proc.stdout
    assert run["on_loop"] == len(run["tests"]) > 0
    assert "pyloop" in run["patch"]


def test_rebind_and_drop(tmp_path):
    # OwnLoop builds asyncio.SelectorEventLoop() itself; rebound, it runs on
    # the loop under test, so its check of the loop's kind fails on pyloop
    # only. Its twin class is dropped.
    out = tmp_path / "out.json"
    proc = run_suite("--only", "rebind", "--rebind", "OwnLoop.create_event_loop",
                     "--drop", "OwnLoopTwin.*", "--json", str(out))
    with open(out) as f:
        doc = json.load(f)
    assert doc["unexpected"] == ["rebind.OwnLoop.test_loop_kind"]
    for loop in ("asyncio", "pyloop"):
        assert list(doc["modules"]["rebind"][loop]["tests"]) == ["rebind.OwnLoop.test_loop_kind"]
    assert "'pyloop' != 'asyncio'" in proc.stdout
    assert proc.stdout.splitlines()[-1] == "0 passed, 1 failed, 0 skipped"


def test_rebind_of_a_missing_class_is_an_error():
    proc = run_suite("--only", "rebind", "--rebind", "Gone.create_event_loop",
                     "--loop", "pyloop")
    assert proc.returncode == 1
    assert "has no attribute 'Gone'" in proc.stdout
    assert proc.stdout.splitlines()[-1] == "0 passed, 1 failed, 0 skipped"
