#!/usr/bin/env python3
"""Run CPython's own test_asyncio modules (from this interpreter's Lib/test)
against pyloop and against the stdlib loop, one process per module, and print
the counts side by side.

Exit status is non-zero when a test that passes on the stdlib loop fails (or
errors) on pyloop and is not listed, with its reason, in known_failures.txt.

    python tests/cpython/run_suite.py [--only test_tasks,...] [--loop both|pyloop|asyncio]
                                      [--json PATH] [-v]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
VERSION = f"py{sys.version_info[0]}.{sys.version_info[1]}"

# (module, first Python version that has it). Later work adds networking,
# subprocess and TLS modules here.
MODULES = [
    ("test_locks", (3, 11)),
    ("test_queues", (3, 11)),
    ("test_tasks", (3, 11)),
    ("test_taskgroups", (3, 11)),
    ("test_timeouts", (3, 11)),
    ("test_waitfor", (3, 11)),
    ("test_eager_task_factory", (3, 12)),
    ("test_futures2", (3, 11)),
    ("test_context", (3, 11)),
    ("test_runners", (3, 11)),
    ("test_threads", (3, 11)),
    ("test_pep492", (3, 11)),
]

MODULE_TIMEOUT = 600

# Runs in the child: make every default-policy loop a pyloop loop, prove it,
# run one module, report each test's outcome as JSON.
CHILD = r"""
import asyncio, json, sys, unittest
loop_kind, module, out_path, root = sys.argv[1:5]
if loop_kind == "pyloop":
    sys.path.insert(0, root)
    import pyloop
    # Tests call asyncio.new_event_loop(), asyncio.run(), asyncio.Runner()
    # and reset the policy with set_event_loop_policy(None): all of them end
    # in the default policy's _loop_factory.
    import asyncio.events as _events
    base = getattr(_events, "BaseDefaultEventLoopPolicy", None) or _events._BaseDefaultEventLoopPolicy
    base._loop_factory = pyloop.Loop
    default_policy = getattr(asyncio, "DefaultEventLoopPolicy", None) or getattr(
        asyncio, "_DefaultEventLoopPolicy")
    default_policy._loop_factory = pyloop.Loop
    probe = asyncio.new_event_loop()
    if not isinstance(probe, pyloop.Loop):
        print("runner: patching the default policy did not take", file=sys.stderr)
        sys.exit(3)
    probe.close()

class Recorder(unittest.TextTestResult):
    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.outcomes = {}
    def addSuccess(self, test):
        super().addSuccess(test); self.outcomes[test.id()] = ["pass", ""]
    def addFailure(self, test, err):
        super().addFailure(test, err)
        self.outcomes[test.id()] = ["fail", self._exc_info_to_string(err, test)]
    def addError(self, test, err):
        super().addError(test, err)
        self.outcomes[getattr(test, "id", lambda: str(test))()] = [
            "error", self._exc_info_to_string(err, test)]
    def addSkip(self, test, reason):
        super().addSkip(test, reason); self.outcomes[test.id()] = ["skip", reason]
    def addExpectedFailure(self, test, err):
        super().addExpectedFailure(test, err); self.outcomes[test.id()] = ["xfail", ""]
    def addUnexpectedSuccess(self, test):
        super().addUnexpectedSuccess(test); self.outcomes[test.id()] = ["fail", "unexpected success"]

suite = unittest.defaultTestLoader.loadTestsFromName("test.test_asyncio." + module)
with open(out_path + ".log", "w") as log:
    runner = unittest.TextTestRunner(stream=log, verbosity=1, resultclass=Recorder)
    result = runner.run(suite)
with open(out_path, "w") as f:
    json.dump(result.outcomes, f)
"""


def run_module(loop_kind, module):
    """Run one module in a child; returns (outcomes dict, problem or None)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "result.json")
        try:
            proc = subprocess.run(
                [sys.executable, "-c", CHILD, loop_kind, module, out, ROOT],
                capture_output=True, text=True, timeout=MODULE_TIMEOUT,
                stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            return {}, f"timed out after {MODULE_TIMEOUT}s"
        if not os.path.exists(out):
            how = (f"killed by signal {-proc.returncode}" if proc.returncode < 0
                   else f"exit status {proc.returncode}")
            return {}, f"child died ({how}): {proc.stderr.strip()[-500:]}"
        with open(out) as f:
            return json.load(f), None


def load_known():
    known = {}
    path = os.path.join(HERE, "known_failures.txt")
    if os.path.exists(path):
        with open(path) as f:
            for lineno, line in enumerate(f, 1):
                line = line.split("#", 1)[0].strip()
                if not line:
                    continue
                parts = line.split(None, 2)
                if len(parts) < 3:
                    sys.exit(f"{path}:{lineno}: every entry needs a version, a test and a reason")
                ver, test, reason = parts
                if ver == VERSION or ver == "all":
                    known[test] = reason
    return known


def counts(outcomes):
    c = {"pass": 0, "fail": 0, "error": 0, "skip": 0, "xfail": 0}
    for kind, _ in outcomes.values():
        c[kind] += 1
    return c


def short_id(test_id):
    return test_id.replace("test.test_asyncio.", "")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", help="comma-separated module names")
    ap.add_argument("--loop", choices=["both", "pyloop", "asyncio"], default="both")
    ap.add_argument("--json", help="write all outcomes here")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()

    selected = [m for m, since in MODULES if sys.version_info[:2] >= since]
    skipped_version = [m for m, since in MODULES if sys.version_info[:2] < since]
    if args.only:
        wanted = set(args.only.split(","))
        unknown = wanted - {m for m, _ in MODULES}
        if unknown:
            sys.exit(f"unknown modules: {', '.join(sorted(unknown))}")
        selected = [m for m in selected if m in wanted]
    kinds = ["asyncio", "pyloop"] if args.loop == "both" else [args.loop]
    known = load_known()

    print(f"CPython test_asyncio against pyloop, Python {sys.version.split()[0]}")
    for m in skipped_version:
        print(f"  {m}: not in this Python version, not run")
    header = f"{'module':26}" + "".join(f"{k + ' pass/fail/err/skip':>30}" for k in kinds)
    print(header)
    all_results = {}
    unexpected, known_hit, problems = [], set(), []
    totals = {k: counts({}) for k in kinds}
    for module in selected:
        results = {}
        for kind in kinds:
            outcomes, problem = run_module(kind, module)
            results[kind] = outcomes
            if problem:
                problems.append(f"{module} [{kind}]: {problem}")
            for key, val in counts(outcomes).items():
                totals[kind][key] += val
        all_results[module] = results
        row = f"{module:26}"
        for kind in kinds:
            c = counts(results[kind])
            cell = f"{c['pass']}/{c['fail']}/{c['error']}/{c['skip']}"
            row += f"{cell:>30}"
        print(row, flush=True)
        if "pyloop" in results:
            ours = results["pyloop"]
            ref = results.get("asyncio")
            for test_id, (kind, detail) in sorted(ours.items()):
                if kind not in ("fail", "error"):
                    continue
                if ref is not None and ref.get(test_id, ["pass"])[0] != "pass":
                    continue  # fails on the stdlib loop too
                sid = short_id(test_id)
                if sid in known:
                    known_hit.add(sid)
                    continue
                unexpected.append((sid, kind, detail))

    row = f"{'total':26}"
    for kind in kinds:
        c = totals[kind]
        row += f"{c['pass']}/{c['fail']}/{c['error']}/{c['skip']}".rjust(30)
    print(row)

    for sid in sorted(set(known) - known_hit):
        if any(sid.split(".")[0] == m for m in selected):
            print(f"warning: known failure now passes (stale entry): {sid}")
    for p in problems:
        print(f"PROBLEM: {p}")
    for sid, kind, detail in unexpected:
        print(f"UNEXPECTED {kind.upper()}: {sid}")
        if args.verbose:
            print("    " + "\n    ".join(detail.strip().splitlines()[-12:]))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(all_results, f, indent=1)

    if "pyloop" in kinds:
        c = totals["pyloop"]
        failed = c["fail"] + c["error"] + len([p for p in problems if "[pyloop]" in p])
        print(f"{c['pass']} passed, {failed} failed, {c['skip']} skipped")
    bad = bool(unexpected) or bool(problems)
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
