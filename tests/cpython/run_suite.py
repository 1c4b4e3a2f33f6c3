#!/usr/bin/env python3
"""Run CPython's own test_asyncio modules against pyloop and the stdlib loop.

Each selected module of this interpreter's test.test_asyncio runs in its own
process (a module's teardown resets the event loop policy), once with the
stdlib loop and once with pyloop as the loop that asyncio.new_event_loop(),
asyncio.run(), asyncio.Runner() and IsolatedAsyncioTestCase create; the child
(_child.py) proves that before running anything. The counts are printed side
by side, then every test that fails on pyloop but passes on the stdlib loop.

Exit status: 0 when every such test is listed, with a reason, in
known_failures.txt and no module crashed or timed out; 1 otherwise; 2 for a
usage or set-up error (bad known-failures file, pyloop not importable).

    python tests/cpython/run_suite.py [--only test_tasks,...] [--loop both|pyloop|asyncio]
                                      [-k PATTERN] [--json PATH] [--log-dir DIR] [-v]
"""
import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
CHILD = os.path.join(HERE, "_child.py")
KNOWN_FAILURES = os.path.join(HERE, "known_failures.txt")
PYVER = sys.version_info[:2]
VERSION_TAG = f"py{PYVER[0]}.{PYVER[1]}"
DEFAULT_TIMEOUT = 600
PATCH_FAILED = 3  # the child's exit status when the loop patch did not take


@dataclass(frozen=True)
class Module:
    """A test.test_asyncio module to run.

    since/until: the Python versions that have it (until is exclusive).
    patterns: unittest -k patterns selecting part of the module (all if empty).
    """
    name: str
    since: tuple = (3, 11)
    until: tuple = None
    patterns: tuple = ()

    def available(self, ver=PYVER):
        return ver >= self.since and (self.until is None or ver < self.until)


# The modules run by default. Networking (test_streams, test_server, ...) and
# the loop mixins of test_events come later.
MODULES = [
    Module("test_locks"),
    Module("test_queues"),
    Module("test_tasks"),
    Module("test_taskgroups"),
    Module("test_timeouts"),
    Module("test_waitfor"),
    Module("test_eager_task_factory", since=(3, 12)),
    Module("test_futures2"),
    Module("test_context"),
    Module("test_runners"),
    Module("test_threads"),
    Module("test_pep492"),
]

LOOPS = ("asyncio", "pyloop")
LOOP_TITLE = {"asyncio": "stdlib loop", "pyloop": "pyloop"}
BAD = ("fail", "error", "xpass", "crash")


PACKAGE = "test.test_asyncio"  # the interpreter's own Lib/test/test_asyncio


def package_dir(package):
    import importlib
    return os.path.dirname(importlib.import_module(package).__file__)


# ---- known failures ----------------------------------------------------------

class KnownFailures:
    """known_failures.txt: `<tags> <module.Class.test> <reason>` per line, where
    tags is `all` or comma-separated `py3.X`; `#` starts a comment."""

    def __init__(self, path):
        self.path = path
        self.reasons = {}   # test id -> reason, for this Python version
        self.errors = []
        if not os.path.exists(path):
            return
        seen = set()
        with open(path) as f:
            for lineno, raw in enumerate(f, 1):
                line = raw.split("#", 1)[0].strip()
                if not line:
                    continue
                parts = line.split(None, 2)
                where = f"{os.path.basename(path)}:{lineno}"
                if len(parts) < 3:
                    self.errors.append(f"{where}: needs `<py3.X|all> <test id> <reason>`, "
                                       f"every entry with its reason")
                    continue
                tags, test_id, reason = parts
                tags = tags.split(",")
                bad = [t for t in tags if t != "all" and not _is_version_tag(t)]
                if bad:
                    self.errors.append(f"{where}: unknown version tag {bad[0]!r} "
                                       f"(use py3.X or all)")
                    continue
                if test_id.count(".") < 2:
                    self.errors.append(f"{where}: {test_id!r} is not module.Class.test")
                    continue
                for tag in tags:
                    if (tag, test_id) in seen:
                        self.errors.append(f"{where}: {test_id} listed twice for {tag}")
                    seen.add((tag, test_id))
                if "all" in tags or VERSION_TAG in tags:
                    self.reasons[test_id] = reason.strip()

    def for_module(self, module):
        return {t: r for t, r in self.reasons.items() if t.split(".", 1)[0] == module}


def _is_version_tag(tag):
    major, _, minor = tag[2:].partition(".")
    return tag.startswith("py") and major.isdigit() and minor.isdigit()


# ---- running one module in a child ---------------------------------------------

@dataclass
class Run:
    """One module with one loop."""
    module: str
    loop: str
    tests: dict        # id -> {"outcome", "detail", "loops", "time"}
    status: str        # ok, crash, timeout, patch
    problem: str       # what went wrong, for a status other than ok
    elapsed: float
    loops: int         # loops made through the default policy
    ready: dict        # what the child reported about the loop patch

    def counts(self):
        c = dict.fromkeys(("pass", "fail", "error", "skip", "xfail", "xpass", "crash"), 0)
        for rec in self.tests.values():
            c[rec["outcome"]] += 1
        return c

    def on_loop(self):
        """Tests that made at least one loop through the default policy."""
        return sum(1 for rec in self.tests.values() if rec.get("loops"))


def _signal_name(num):
    try:
        return signal.Signals(num).name
    except ValueError:
        return f"signal {num}"


def _tail(path, lines=40):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:]).rstrip()
    except OSError:
        return ""


def run_module(module, loop, args, workdir):
    base = os.path.join(workdir, f"{module.name}.{loop}")
    out, log, err = base + ".jsonl", base + ".log", base + ".stderr"
    cmd = [sys.executable, CHILD, "--loop", loop, "--module", module.name,
           "--package", args.package, "--out", out, "--root", ROOT, "--log", log, "--timeout", str(args.timeout)]
    for p in tuple(module.patterns) + tuple(args.k or ()):
        cmd += ["-k", p]
    t0 = time.monotonic()
    timed_out = False
    with open(err, "w") as errf:
        # Its own session, so that a hang is ended with everything it started.
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=errf,
                                stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True)
        try:
            # The child dumps its stacks and exits by itself at --timeout; this
            # is the backstop in case that did not work.
            rc = proc.wait(timeout=args.timeout + 30)
        except subprocess.TimeoutExpired:
            timed_out = True
            os.killpg(proc.pid, signal.SIGKILL)
            rc = proc.wait()
        except BaseException:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
    elapsed = time.monotonic() - t0

    tests, ready, done, running = {}, {}, None, None
    if os.path.exists(out):
        with open(out) as f:
            for line in f:
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue  # a line cut short by a crash
                ev = rec.pop("event")
                if ev == "start":
                    running = rec["id"]
                elif ev == "result":
                    tid = rec.pop("id")
                    tests[tid] = rec
                    if tid == running:
                        running = None
                elif ev == "ready":
                    ready = rec
                elif ev == "done":
                    done = rec

    stderr_tail = _tail(err)
    status, problem = "ok", ""
    if rc == PATCH_FAILED and not ready:
        status, problem = "patch", "the loop patch did not take: " + stderr_tail[-800:]
    elif timed_out or (done is None and "Timeout (" in stderr_tail
                       and elapsed >= args.timeout):
        status, problem = "timeout", f"timed out after {args.timeout:g}s"
    elif rc != 0 or done is None:
        how = (f"killed by {_signal_name(-rc)}" if rc < 0
               else f"exit status {rc}")
        status = "crash"
        if done is not None:
            problem = f"{how} at interpreter exit, after all its tests ran"
        elif not ready:
            problem = f"{how} before running any test"
        else:
            problem = f"{how}"
    if status in ("timeout", "crash") and running is not None:
        problem += f", during {running}"
        tests[running] = {"outcome": "crash", "loops": 0, "time": 0.0,
                          "detail": f"{problem}\n{stderr_tail}"}
    if status != "ok" and stderr_tail and status != "patch":
        problem += "\n" + _indent(stderr_tail, "      ")
    return Run(module.name, loop, tests, status, problem, elapsed,
               (done or {}).get("loops", 0), ready)


def _indent(text, prefix):
    return "\n".join(prefix + line for line in text.splitlines())


def preflight_pyloop():
    """Fail early, once, when pyloop cannot be imported from this tree."""
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import pyloop, os; "
            "print(os.path.dirname(pyloop.__file__), getattr(pyloop, '__version__', '?'))")
    proc = subprocess.run([sys.executable, "-c", code, ROOT], capture_output=True,
                          text=True, stdin=subprocess.DEVNULL, cwd=ROOT)
    if proc.returncode != 0:
        return None, proc.stderr.strip().splitlines()[-1:] or [f"exit {proc.returncode}"]
    return proc.stdout.split(), None


# ---- report ------------------------------------------------------------------

def key_line(detail):
    """The line that says what went wrong: the exception at the end of a
    traceback, else the first line."""
    lines = [l for l in detail.strip().splitlines() if l.strip()]
    if not lines:
        return ""
    for line in reversed(lines):
        if not line.startswith((" ", "\t")) and not line.startswith("Traceback"):
            return line.strip()[:200]
    return lines[-1].strip()[:200]


def traceback_head(detail, max_lines=14):
    """A traceback shortened to its start (which test line) and its end (the
    exception)."""
    lines = detail.rstrip().splitlines()
    if len(lines) <= max_lines:
        return lines
    keep_head = 5
    return lines[:keep_head] + ["..."] + lines[-(max_lines - keep_head - 1):]


def fmt_counts(c):
    return f"{c['pass']:>5} {c['fail'] + c['xpass']:>4} {c['error'] + c['crash']:>4} {c['skip']:>4}"


def main():
    ap = argparse.ArgumentParser(
        description="Run CPython's test_asyncio modules against pyloop and the stdlib loop.")
    ap.add_argument("--only", metavar="MOD,...",
                    help="comma-separated modules (also any test_asyncio module not in the list)")
    ap.add_argument("--loop", choices=["both", "pyloop", "asyncio"], default="both")
    ap.add_argument("-k", action="append", metavar="PATTERN",
                    help="only tests matching (unittest -k; repeatable)")
    ap.add_argument("--json", metavar="PATH", help="write every outcome here")
    ap.add_argument("--log-dir", metavar="DIR",
                    help="keep each child's output, unittest log and journal here")
    ap.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                    help=f"seconds per module and loop (default {DEFAULT_TIMEOUT})")
    # For the runner's own tests: another package of modules, another list.
    ap.add_argument("--known", default=KNOWN_FAILURES, help=argparse.SUPPRESS)
    ap.add_argument("--package", default=PACKAGE, help=argparse.SUPPRESS)
    ap.add_argument("-v", "--verbose", action="store_true",
                    help="show the head of each failing test's traceback")
    args = ap.parse_args()

    known = KnownFailures(args.known)
    if known.errors:
        for e in known.errors:
            print(f"error: {e}", file=sys.stderr)
        return 2

    # Which modules.
    by_name = {m.name: m for m in MODULES}
    if args.only:
        names = [n.strip() for n in args.only.split(",") if n.strip()]
        pkg_dir = package_dir(args.package)
        available = {f[:-3] for f in os.listdir(pkg_dir) if f.endswith(".py")}
        chosen = []
        for n in names:
            if n in by_name:
                chosen.append(by_name[n])
            elif n in available:
                print(f"note: {n} is not in MODULES; running it anyway")
                chosen.append(Module(n, since=PYVER))
            else:
                print(f"error: no module {n} in MODULES or in {pkg_dir}",
                      file=sys.stderr)
                return 2
    else:
        chosen = list(MODULES)
    not_here = [m for m in chosen if not m.available()]
    selected = [m for m in chosen if m.available()]
    loops = list(LOOPS) if args.loop == "both" else [args.loop]

    print(f"{args.package} ({package_dir(args.package)}) on Python {sys.version.split()[0]}")
    if "pyloop" in loops:
        where, err = preflight_pyloop()
        if err:
            print(f"error: cannot import pyloop from {ROOT}: {err[0]}")
            print("0 passed, 1 failed")
            return 2
        print(f"pyloop {where[1]} from {where[0]}")
    for m in not_here:
        lo = ".".join(map(str, m.since))
        print(f"{m.name}: not run, not in Python {PYVER[0]}.{PYVER[1]} "
              f"(needs {lo}{'' if m.until is None else ' to before ' + '.'.join(map(str, m.until))})")
    if not selected:
        print("nothing to run")
        return 2

    width = max(len(m.name) for m in selected) + 2
    cols = "".join(f"  {LOOP_TITLE[l]:^28}" for l in loops)
    print(f"{'':{width}}{cols}")
    sub = "".join(f"  {'pass':>5} {'fail':>4} {'err':>4} {'skip':>4}{'time':>8}" for l in loops)
    extra = "  on pyloop" if "pyloop" in loops else ""
    print(f"{'module':{width}}{sub}{extra}")

    workdir = args.log_dir or tempfile.mkdtemp(prefix="pyloop-cpython-")
    os.makedirs(workdir, exist_ok=True)
    runs = {}  # (module, loop) -> Run
    totals = {l: None for l in loops}
    try:
        for m in selected:
            row = f"{m.name:{width}}"
            for loop in loops:
                r = runs[m.name, loop] = run_module(m, loop, args, workdir)
                c = r.counts()
                totals[loop] = c if totals[loop] is None else {
                    k: totals[loop][k] + c[k] for k in c}
                mark = "" if r.status == "ok" else "!"
                row += f"  {fmt_counts(c)}{mark:1}{r.elapsed:>6.1f}s"
            if "pyloop" in loops:
                r = runs[m.name, "pyloop"]
                row += f"  {r.on_loop():>5}/{len(r.tests)}"
            print(row, flush=True)
    except KeyboardInterrupt:
        print("interrupted")
        return 130
    finally:
        if not args.log_dir:
            _remove_tree(workdir)

    row = f"{'total':{width}}"
    for loop in loops:
        t = sum(r.elapsed for (_, l), r in runs.items() if l == loop)
        row += f"  {fmt_counts(totals[loop])} {t:>6.1f}s"
    if "pyloop" in loops:
        on = sum(r.on_loop() for (_, l), r in runs.items() if l == "pyloop")
        n = sum(len(r.tests) for (_, l), r in runs.items() if l == "pyloop")
        row += f"  {on:>5}/{n}"
    print(row)
    if "pyloop" in loops:
        print("(on pyloop: tests that made at least one pyloop loop; the others ran only on "
              "loops the tests build themselves, such as test_utils.TestLoop)")

    # Module-level problems.
    problems = [r for r in runs.values() if r.status != "ok"]
    for r in problems:
        print(f"PROBLEM {r.module} [{LOOP_TITLE[r.loop]}]: {r.problem}")
    for m in selected:
        r = runs.get((m.name, "pyloop"))
        if r is not None and r.status == "ok" and r.tests and r.loops == 0:
            print(f"note: {m.name} made no pyloop loop at all: it tests only loops it "
                  f"builds itself, its pyloop figures say nothing about pyloop")

    # Classify each pyloop failure.
    unexpected, known_hit, both_fail = [], [], []
    stale, missing_known = [], []
    if "pyloop" in loops:
        compare = "asyncio" in loops
        for m in selected:
            ours = runs[m.name, "pyloop"]
            ref = runs.get((m.name, "asyncio"))
            module_known = known.for_module(m.name)
            for tid, rec in sorted(ours.tests.items()):
                if rec["outcome"] not in BAD:
                    continue
                ref_rec = ref.tests.get(tid) if ref else None
                if tid in module_known:
                    known_hit.append((tid, rec, module_known[tid]))
                elif compare and ref_rec is not None and ref_rec["outcome"] in BAD:
                    both_fail.append((tid, rec, ref_rec))
                else:
                    unexpected.append((tid, rec, ref_rec))
            for tid, reason in sorted(module_known.items()):
                rec = ours.tests.get(tid)
                if rec is None:
                    if ours.status == "ok" and not args.k and not m.patterns:
                        missing_known.append(tid)
                elif rec["outcome"] not in BAD:
                    stale.append((tid, rec["outcome"]))

    def show(title, items, detail_of):
        if not items:
            return
        print(f"\n{title} ({len(items)}):")
        for tid, rec, other in items:
            extra = detail_of(other)
            print(f"  {rec['outcome'].upper():5} {tid}{extra}")
            if rec["outcome"] == "crash":
                # The stack is in the PROBLEM lines above.
                print(f"        {rec['detail'].splitlines()[0]}")
                continue
            line = key_line(rec.get("detail", ""))
            if line:
                print(f"        {line}")
            if args.verbose and rec.get("detail"):
                for tl in traceback_head(rec["detail"]):
                    print(f"          | {tl}")

    if "asyncio" in loops:
        title = "Fail on pyloop, pass on the stdlib loop"
    else:
        title = "Fail on pyloop (stdlib loop not run for comparison)"
    show(title, unexpected,
         lambda ref: "" if ref is not None or "asyncio" not in loops
         else "  (not in the stdlib loop's run)")
    show("Known failures (known_failures.txt), still failing", known_hit,
         lambda reason: f"  -- {reason}")
    show("Fail on both loops (not counted against pyloop)", both_fail,
         lambda ref: f"  (stdlib loop: {ref['outcome']})")
    for tid, outcome in stale:
        print(f"warning: stale known-failure entry, {tid} now gives {outcome} on pyloop: "
              f"remove it from known_failures.txt")
    for tid in missing_known:
        print(f"warning: known-failure entry {tid} matches no test that ran (renamed?)")

    if args.loop == "asyncio":
        fails = sum(1 for r in runs.values() for rec in r.tests.values() if rec["outcome"] in BAD)
        if fails:
            print(f"\nFail on the stdlib loop ({fails}):")
        for m in selected:
            r = runs[m.name, "asyncio"]
            for tid, rec in sorted(r.tests.items()):
                if rec["outcome"] in BAD:
                    print(f"  {rec['outcome'].upper():5} {tid}\n        {key_line(rec['detail'])}")
                    if args.verbose:
                        for tl in traceback_head(rec["detail"]):
                            print(f"          | {tl}")

    if args.json:
        doc = {
            "python": sys.version.split()[0],
            "loops": loops,
            "modules": {
                m.name: {loop: {"status": r.status, "problem": r.problem,
                                "elapsed": round(r.elapsed, 2), "loops": r.loops,
                                "counts": r.counts(), "patch": r.ready, "tests": r.tests}
                         for (name, loop), r in runs.items() if name == m.name}
                for m in selected},
            "not_run": [m.name for m in not_here],
            "unexpected": [tid for tid, _, _ in unexpected],
            "known": [tid for tid, _, _ in known_hit],
            "both_fail": [tid for tid, _, _ in both_fail],
            "stale_known": [tid for tid, _ in stale],
        }
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=1, sort_keys=True)

    # The closing line, for CI: the pyloop run's figures. Failures that count
    # are those that decide the exit status; known failures and tests failing
    # on the stdlib loop too are listed above and left out of it.
    main_loop = "pyloop" if "pyloop" in loops else "asyncio"
    c = totals[main_loop]
    # A module-level problem counts once, unless it was pinned on the test
    # that was running (then that test's record counts already).
    module_level = sum(1 for r in problems
                       if r.loop != main_loop
                       or not any(rec["outcome"] == "crash" for rec in r.tests.values()))
    if main_loop == "pyloop":
        failed = len(unexpected) + module_level
        if known_hit or both_fail:
            print(f"\n(not counted as failed: {len(known_hit)} known failures, "
                  f"{len(both_fail)} failing on the stdlib loop too)")
    else:
        failed = c["fail"] + c["error"] + c["xpass"] + c["crash"] + module_level
    bad = failed > 0 or bool(problems)
    print(f"{c['pass']} passed, {failed} failed, {c['skip']} skipped")
    return 1 if bad else 0


def _remove_tree(path):
    import shutil
    shutil.rmtree(path, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
