"""One module of CPython's test_asyncio with one loop: the child process of
run_suite.py. Not meant to be run by hand, though it can be:

    python tests/cpython/_child.py --loop pyloop --module test_locks --out /tmp/o.jsonl

It writes one JSON object per line to --out, flushed as it goes, so that a
crash or a hang still leaves every finished test's outcome and the name of the
test that was running:

    {"event": "start", "id": ...}                   a test starts
    {"event": "result", "id", "outcome", "detail", "loops", "time"}
    {"event": "ready", ...}                         the loop patch was checked
    {"event": "done", "loops": N}                   the whole module ran

outcome is one of pass, fail, error, skip, xfail, xpass; loops is how many
loops the test made through the default event loop policy (with --loop pyloop,
how many pyloop loops it made: 0 means the test never touched pyloop).

Exit status 3: the loop patch did not take; nothing was run.
"""
import argparse
import asyncio
import faulthandler
import fnmatch
import json
import os
import sys
import threading
import time
import unittest
import warnings
from asyncio import events

PATCH_FAILED = 3
PREFIX = "test.test_asyncio."  # --package changes it


class Journal:
    """Line-buffered JSON-lines writer; every line is flushed at once."""

    def __init__(self, path):
        self.f = open(path, "w", buffering=1)

    def write(self, **record):
        self.f.write(json.dumps(record) + "\n")
        self.f.flush()


# ---- making the default policy's loops the loops under test ----------------

class LoopCounter:
    """Counts loops made through the default policy's factory, per test."""

    def __init__(self):
        self.lock = threading.Lock()
        self.total = 0
        self.in_test = 0

    def bump(self):
        with self.lock:
            self.total += 1
            self.in_test += 1

    def take(self):
        with self.lock:
            n, self.in_test = self.in_test, 0
            return n


COUNTER = LoopCounter()


def _set_policy(policy):
    # set_event_loop_policy() is deprecated from 3.14 on; the private setter
    # there does the same without the warning.
    setter = getattr(events, "_set_event_loop_policy", None) or asyncio.set_event_loop_policy
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        setter(policy)


def _get_policy():
    getter = getattr(events, "_get_event_loop_policy", None) or asyncio.get_event_loop_policy
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return getter()


def default_policy_class():
    """The class asyncio instantiates after set_event_loop_policy(None).

    3.11-3.13: asyncio.DefaultEventLoopPolicy is unix_events._UnixDefaultEventLoopPolicy,
    a subclass of events.BaseDefaultEventLoopPolicy; 3.14 renames these to
    _DefaultEventLoopPolicy and events._BaseDefaultEventLoopPolicy. Asking
    asyncio for a fresh default policy avoids depending on the names.
    """
    _set_policy(None)
    return type(_get_policy())


def install_factory(make_loop, expected_type):
    """Point the default policy's _loop_factory at a counting wrapper of
    make_loop, on every class of the default policy's MRO that defines
    _loop_factory (the Unix policy sets it, the base class sets it to None).

    asyncio.new_event_loop(), asyncio.run() and asyncio.Runner() without a
    loop_factory, IsolatedAsyncioTestCase and a policy reset with
    set_event_loop_policy(None) all end in that attribute. Loops constructed
    directly (asyncio.SelectorEventLoop(), test_utils.TestLoop,
    asyncio.BaseEventLoop()) do not, and stay stdlib loops.
    Returns the classes patched.
    """
    def factory():
        loop = make_loop()
        if not isinstance(loop, expected_type):
            raise AssertionError(
                f"run_suite: the default loop factory made {type(loop)!r}, "
                f"not {expected_type!r}")
        COUNTER.bump()
        return loop

    policy_cls = default_policy_class()
    patched = []
    for cls in policy_cls.__mro__:
        if "_loop_factory" in vars(cls):
            cls._loop_factory = staticmethod(factory)
            patched.append(f"{cls.__module__}.{cls.__qualname__}")
    if not patched:
        raise AssertionError(f"run_suite: no _loop_factory on {policy_cls!r}'s MRO")
    return patched


def running_loop_type_everywhere():
    """The loop type each default-policy entry point gives, as {how: type}."""
    seen = {}

    async def which():
        return type(asyncio.get_running_loop())

    _set_policy(None)
    loop = asyncio.new_event_loop()
    seen["asyncio.new_event_loop()"] = type(loop)
    loop.close()

    seen["asyncio.run()"] = asyncio.run(which())

    with asyncio.Runner() as runner:
        seen["asyncio.Runner()"] = runner.run(which())

    # What the tests' tearDownModule does, then a new loop from the policy.
    _set_policy(None)
    loop = _get_policy().new_event_loop()
    seen["set_event_loop_policy(None) then policy.new_event_loop()"] = type(loop)
    loop.close()

    class Probe(unittest.IsolatedAsyncioTestCase):
        async def test_probe(self):
            seen["unittest.IsolatedAsyncioTestCase"] = await which()

    result = unittest.TestResult()
    Probe("test_probe").run(result)
    if not result.wasSuccessful():
        raise AssertionError(f"run_suite: IsolatedAsyncioTestCase probe failed: "
                             f"{result.errors + result.failures}")
    _set_policy(None)
    return seen


def setup_loop(kind, root):
    """Install the counting factory for `kind` and prove every entry point
    uses it. Returns a description for the journal."""
    if kind == "pyloop":
        sys.path.insert(0, root)
        import pyloop
        expected = pyloop.Loop
        make_loop = pyloop.Loop
        where = {"pyloop": os.path.dirname(os.path.abspath(pyloop.__file__)),
                 "version": getattr(pyloop, "__version__", "?")}
    else:
        original = default_policy_class()._loop_factory
        expected = original
        make_loop = original
        where = {"loop": f"{original.__module__}.{original.__qualname__}"}

    patched = install_factory(make_loop, expected)
    seen = running_loop_type_everywhere()
    wrong = {how: t for how, t in seen.items() if not issubclass(t, expected)}
    if wrong:
        for how, t in wrong.items():
            print(f"run_suite: {how} gave {t.__module__}.{t.__qualname__}, "
                  f"not {expected.__module__}.{expected.__qualname__}: "
                  f"the loop patch did not take", file=sys.stderr)
        sys.exit(PATCH_FAILED)
    COUNTER.take()
    COUNTER.total = 0
    where["patched"] = patched
    where["checked"] = sorted(seen)
    return where


# ---- running and recording ---------------------------------------------------

RANK = {"pass": 0, "skip": 0, "xfail": 0, "xpass": 1, "fail": 2, "error": 3}


def short_id(test):
    """test.test_asyncio.test_tasks.Cls.test_x -> test_tasks.Cls.test_x; an
    error outside any test, "setUpClass (test.test_asyncio.test_tasks.Cls)",
    -> test_tasks.Cls.setUpClass."""
    tid = test.id()
    if " (" in tid and tid.endswith(")"):
        what, where = tid[:-1].split(" (", 1)
        tid = f"{where}.{what}"
    return tid[len(PREFIX):] if tid.startswith(PREFIX) else tid


class Recorder(unittest.TextTestResult):
    """A TextTestResult that also journals every test's outcome.

    A test gets one record: the worst of what happened to it (an error in
    tearDown after a failure is an error), failing subtests included (unittest
    reports those through addSubTest only, never addFailure)."""

    journal = None
    test_timeout = 0

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._current = None

    def startTest(self, test):
        super().startTest(test)
        self._current = test
        self._outcome_kind = None
        self._details = []
        self._t0 = time.monotonic()
        COUNTER.take()
        self.journal.write(event="start", id=short_id(test))
        if self.test_timeout:
            # A hanging test: every thread's stack on stderr, then exit(1);
            # run_suite.py resumes the module after it.
            faulthandler.dump_traceback_later(self.test_timeout, exit=True)

    def _note(self, test, kind, detail=""):
        if test is not self._current:
            # Outside any test: setUpModule/setUpClass/tearDownModule errors,
            # or a whole class skipped from setUpClass.
            self.journal.write(event="result", id=short_id(test), outcome=kind,
                               detail=detail, loops=0, time=0.0)
            return
        if self._outcome_kind is None or RANK[kind] > RANK[self._outcome_kind]:
            self._outcome_kind = kind
        if detail:
            self._details.append(detail)

    def stopTest(self, test):
        if self.test_timeout:
            faulthandler.cancel_dump_traceback_later()
        super().stopTest(test)
        if test is self._current:
            self.journal.write(
                event="result", id=short_id(test),
                outcome=self._outcome_kind or "pass",
                detail="\n".join(self._details),
                loops=COUNTER.take(),
                time=round(time.monotonic() - self._t0, 3))
            self._current = None

    def _tb(self, test, err):
        return self._exc_info_to_string(err, test)

    def addSuccess(self, test):
        super().addSuccess(test)
        self._note(test, "pass")

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self._note(test, "fail", self._tb(test, err))

    def addError(self, test, err):
        super().addError(test, err)
        self._note(test, "error", self._tb(test, err))

    def addSkip(self, test, reason):
        super().addSkip(test, reason)
        self._note(test, "skip", reason)

    def addExpectedFailure(self, test, err):
        super().addExpectedFailure(test, err)
        self._note(test, "xfail")

    def addUnexpectedSuccess(self, test):
        super().addUnexpectedSuccess(test)
        self._note(test, "xpass", "unexpected success (the test is marked expectedFailure)")

    def addSubTest(self, test, subtest, err):
        super().addSubTest(test, subtest, err)
        if err is not None:
            kind = "fail" if issubclass(err[0], test.failureException) else "error"
            self._note(test, kind, f"[subtest {subtest._subDescription()}]\n"
                                   + self._tb(test, err))


def rebind(module, spec):
    """CLASS.METHOD: a test class whose METHOD builds its loop itself (the
    test_events style create_event_loop() returning asyncio.SelectorEventLoop())
    gets the loop under test instead: asyncio.new_event_loop(), through the
    patched default policy. A name that is not there is an error: a module
    list that no longer matches the tests must not pass quietly."""
    cls_name, _, method = spec.partition(".")
    cls = getattr(module, cls_name)
    if not callable(getattr(cls, method)):
        raise AttributeError(f"{spec} is not a method")

    def loop_under_test(self):
        return asyncio.new_event_loop()
    setattr(cls, method, loop_under_test)


def without(suite, exclude, drop_patterns):
    """The suite flattened, less the tests whose ids are in exclude (a module
    resumed after a crash) or match one of drop_patterns. TestSuite.run still
    runs the class and module fixtures, at each change of class and module."""
    kept = unittest.TestSuite()

    def walk(s):
        for t in s:
            if isinstance(t, unittest.TestSuite):
                walk(t)
                continue
            tid = short_id(t)
            if tid not in exclude and not any(fnmatch.fnmatchcase(tid, p)
                                              for p in drop_patterns):
                kept.addTest(t)
    walk(suite)
    return kept


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--loop", choices=["pyloop", "asyncio"], required=True)
    ap.add_argument("--module", required=True)
    ap.add_argument("--package", default="test.test_asyncio")
    ap.add_argument("--out", required=True)
    ap.add_argument("--root", default=os.path.dirname(os.path.dirname(
        os.path.dirname(os.path.abspath(__file__)))))
    ap.add_argument("--test-timeout", type=float, default=0,
                    help="dump every thread's stack and exit when a test runs this long")
    ap.add_argument("--exclude", help="a JSON list of test ids not to run (already run)")
    ap.add_argument("--rebind", action="append", default=[], metavar="CLASS.METHOD",
                    help="make this loop-making method of a test class return "
                         "asyncio.new_event_loop(), the loop under test")
    ap.add_argument("--drop", action="append", default=[], metavar="PATTERN",
                    help="leave out tests whose id (less the module) matches")
    ap.add_argument("-k", dest="patterns", action="append", default=[])
    ap.add_argument("--log", help="unittest's own output goes here (default stderr)")
    args = ap.parse_args()
    global PREFIX
    PREFIX = args.package + "."

    faulthandler.enable(file=sys.stderr, all_threads=True)
    Recorder.test_timeout = args.test_timeout

    journal = Journal(args.out)
    journal.write(event="ready", python=sys.version.split()[0],
                  **setup_loop(args.loop, args.root))

    loader = unittest.TestLoader()
    if args.patterns:
        loader.testNamePatterns = [p if "*" in p else f"*{p}*" for p in args.patterns]
    suite = loader.loadTestsFromName(PREFIX + args.module)
    for spec in args.rebind:
        rebind(sys.modules[PREFIX + args.module], spec)
    exclude = set()
    if args.exclude:
        with open(args.exclude) as f:
            exclude = set(json.load(f))
    if exclude or args.drop:
        suite = without(suite, exclude, [f"{args.module}.{p}" for p in args.drop])

    Recorder.journal = journal
    stream = open(args.log, "w") if args.log else sys.stderr
    runner = unittest.TextTestRunner(stream=stream, verbosity=2, resultclass=Recorder)
    runner.run(suite)
    journal.write(event="done", loops=COUNTER.total)
    stream.flush()
    # A normal interpreter exit on purpose: a crash while finalizing loops and
    # threads left by the tests is something to report, not to hide.


if __name__ == "__main__":
    main()
