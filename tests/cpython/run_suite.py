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
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
CHILD = os.path.join(HERE, "_child.py")
KNOWN_FAILURES = os.path.join(HERE, "known_failures.txt")
PYVER = sys.version_info[:2]
VERSION_TAG = f"py{PYVER[0]}.{PYVER[1]}"
DEFAULT_TIMEOUT = 600       # seconds for a module with one loop, resumes included
DEFAULT_TEST_TIMEOUT = 120  # seconds for one test
MAX_RESUMES = 10            # restarts of a module after crashes or hangs in tests
PATCH_FAILED = 3  # the child's exit status when the loop patch did not take

# Started as a background job of a non-interactive shell, this process has
# SIGINT ignored, and every test module it runs would inherit that: CPython's
# test_runners tests that interrupt themselves would see nothing, on either
# loop. Python's own handler here makes exec give the children the default.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@dataclass(frozen=True)
class Module:
    """A test.test_asyncio module to run.

    since/until: the Python versions that have it (until is exclusive).
    patterns: unittest -k patterns selecting part of the module (all if empty).
    rebind: "Class.method" of test classes that build their loop themselves
        (test_events' SelectEventLoopTests.create_event_loop returns
        asyncio.SelectorEventLoop()): the method returns asyncio.new_event_loop()
        instead, so the class runs on the loop under test, in both runs.
    drop: fnmatch patterns, "Class.*" or "Class.test_x", of tests to leave out
        (such as the same mixin again on the epoll and poll selectors).
    """
    name: str
    since: tuple = (3, 11)
    until: tuple = None
    patterns: tuple = ()
    rebind: tuple = ()
    drop: tuple = ()

    def available(self, ver=PYVER):
        return ver >= self.since and (self.until is None or ver < self.until)


# The modules run by default.
_SELECTOR_TWINS = ("EPollEventLoopTests.*", "PollEventLoopTests.*", "KqueueEventLoopTests.*")
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
    # Networking: the loop-agnostic mixins of test_events, test_sock_lowlevel
    # and test_sendfile with the loop under test as their create_event_loop.
    Module("test_streams"),
    Module("test_server", rebind=("SelectorStartServerTests.new_loop",)),
    Module("test_events", rebind=("SelectEventLoopTests.create_event_loop",),
           drop=_SELECTOR_TWINS),
    Module("test_sock_lowlevel", rebind=("SelectEventLoopTests.create_event_loop",),
           drop=_SELECTOR_TWINS),
    Module("test_sendfile", rebind=("SelectEventLoopTests.create_event_loop",),
           drop=_SELECTOR_TWINS),
    Module("test_buffered_proto", rebind=("BufferedProtocolSelectorTests.new_loop",)),
    Module("test_unix_events"),
    Module("test_subprocess"),
    # TLS: the stdlib's SSLProtocol over pyloop's transports; test_sslproto's
    # BaseStartTLS mixin with the loop under test.
    Module("test_ssl"),
    Module("test_sslproto", rebind=("SelectorStartTLSTests.new_loop",)),
]

# Prepared for later, run only when named with --only: modules whose tests
# need loop features pyloop is still growing (none at the moment).
# Move an entry to MODULES when it passes (or its failures are known).
LATER = []

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
class Incident:
    """A child process that did not finish normally."""
    kind: str          # crash, timeout, patch
    text: str          # one line: what happened
    test: str = None   # the test that was running, when known
    stack: str = ""    # the end of the child's stderr (faulthandler's dump)
    whole_module: bool = False  # the module's own time ran out: no resuming

    def line(self):
        return self.text + (f", during {self.test}" if self.test else "")


@dataclass
class Run:
    """One module with one loop, over one or more child processes (after a
    crash or a hang pinned on a test, the module is resumed without it)."""
    module: str
    loop: str
    tests: dict = field(default_factory=dict)   # id -> {"outcome", "detail", "loops", "time"}
    incidents: list = field(default_factory=list)
    elapsed: float = 0.0
    ready: dict = field(default_factory=dict)   # the child's account of the loop patch
    stopped: str = ""  # why the rest of the module did not run, if it did not

    @property
    def status(self):
        return self.incidents[0].kind if self.incidents else "ok"

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


def _tail(path, lines=30):
    """The end of a child's stderr, without the C stack that faulthandler adds
    after the Python one from 3.14 on (its frames would push the Python frames
    out of the tail)."""
    try:
        with open(path, errors="replace") as f:
            text = f.readlines()
    except OSError:
        return ""
    kept, in_c_stack = [], False
    for line in text:
        if "C stack trace" in line:
            in_c_stack = True
            continue
        if in_c_stack:
            if line.startswith("  "):
                continue
            in_c_stack = False
        kept.append(line)
    return "".join(kept[-lines:]).rstrip()


def _killpg(pid, sig):
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def read_journal(path):
    """The child's JSON lines -> (tests, ready, done, running test or None)."""
    tests, ready, done, running = {}, {}, None, None
    if not os.path.exists(path):
        return tests, ready, done, running
    with open(path) as f:
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
    return tests, ready, done, running


def run_child(module, loop, args, base, exclude, budget):
    """One child process; returns (tests, ready, Incident or None)."""
    out, log, err, excl = (base + ext for ext in (".jsonl", ".log", ".stderr", ".exclude"))
    cmd = [sys.executable, CHILD, "--loop", loop, "--module", module.name,
           "--package", args.package, "--out", out, "--root", ROOT, "--log", log,
           "--test-timeout", str(args.test_timeout)]
    if exclude:
        with open(excl, "w") as f:
            json.dump(sorted(exclude), f)
        cmd += ["--exclude", excl]
    for p in tuple(module.patterns) + tuple(args.k or ()):
        cmd += ["-k", p]
    for spec in tuple(module.rebind) + tuple(args.rebind or ()):
        cmd += ["--rebind", spec]
    for p in tuple(module.drop) + tuple(args.drop or ()):
        cmd += ["--drop", p]
    module_timeout = False
    with open(err, "w") as errf:
        # Its own session, so that whatever it started goes with it.
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=errf,
                                stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True)
        try:
            rc = proc.wait(timeout=max(budget, 1))
        except subprocess.TimeoutExpired:
            module_timeout = True
            proc.send_signal(signal.SIGABRT)  # faulthandler dumps every thread
            try:
                rc = proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                _killpg(proc.pid, signal.SIGKILL)
                rc = proc.wait()
        except BaseException:
            _killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
        finally:
            _killpg(proc.pid, signal.SIGKILL)

    tests, ready, done, running = read_journal(out)
    tail = _tail(err)
    how = f"killed by {_signal_name(-rc)}" if rc < 0 else f"exit status {rc}"
    if rc == PATCH_FAILED and not ready:
        inc = Incident("patch", "the loop patch did not take; nothing ran", None, tail)
    elif module_timeout:
        inc = Incident("timeout", f"the module ran over its {args.timeout:g}s", running, tail,
                       whole_module=True)
    elif done is None and running is not None and "Timeout (" in tail:
        inc = Incident("timeout", f"the test ran over {args.test_timeout:g}s", running, tail)
    elif done is not None and rc != 0:
        inc = Incident("crash", f"{how} at interpreter exit, after all its tests ran", None, tail)
    elif done is None and not ready:
        inc = Incident("crash", f"{how} before running any test", None, tail)
    elif done is None:
        inc = Incident("crash", how, running, tail)
    else:
        inc = None
    if inc is not None and inc.test is not None:
        tests[inc.test] = {"outcome": "crash", "loops": 0, "time": 0.0,
                           "detail": f"{inc.line()}\n{tail}"}
    return tests, ready, inc


def run_module(module, loop, args, workdir):
    run = Run(module.name, loop)
    t0 = time.monotonic()
    deadline = t0 + args.timeout
    for attempt in range(MAX_RESUMES + 1):
        base = os.path.join(workdir, f"{module.name}.{loop}" + (f".{attempt}" if attempt else ""))
        tests, ready, inc = run_child(module, loop, args, base, set(run.tests),
                                      deadline - time.monotonic())
        run.tests.update(tests)
        run.ready = run.ready or ready
        if inc is None:
            break
        run.incidents.append(inc)
        if inc.test is None:
            break  # not pinned on a test: resuming would do the same again
        if inc.whole_module or deadline - time.monotonic() < 30:
            run.stopped = "the module's time ran out"
            break
        if attempt == MAX_RESUMES:
            run.stopped = f"stopped after {MAX_RESUMES} resumes"
            break
    run.elapsed = time.monotonic() - t0
    return run


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
    """The line that says what went wrong: the first line of the exception
    after a traceback's last frame (an assertEqual diff follows it), else the
    last line."""
    lines = [l for l in detail.strip().splitlines() if l.strip()]
    frames = [i for i, l in enumerate(lines) if l.startswith('  File "')]
    start = frames[-1] + 1 if frames else 0
    for line in lines[start:]:
        if not line.startswith((" ", "\t")):
            return line.strip()[:200]
    return lines[-1].strip()[:200] if lines else ""


def traceback_head(detail, max_lines=14):
    """A traceback cut to its start (the test's own line) and its end (the
    exception)."""
    lines = detail.rstrip().splitlines()
    if len(lines) <= max_lines:
        return lines
    keep_head = 5
    return lines[:keep_head] + ["..."] + lines[-(max_lines - keep_head - 1):]


def fmt_counts(c):
    return (f"{c['pass']:>5} {c['fail'] + c['xpass']:>4} {c['error'] + c['crash']:>4} "
            f"{c['skip']:>4}")


def select_modules(args):
    """-> (modules to run, modules this Python does not have); exits on an
    unknown name."""
    if not args.only:
        chosen = list(MODULES)
    else:
        by_name = {m.name: m for m in LATER + MODULES}
        pkg_dir = package_dir(args.package)
        available = {f[:-3] for f in os.listdir(pkg_dir) if f.endswith(".py")}
        chosen = []
        for name in (n.strip() for n in args.only.split(",")):
            if name in by_name:
                chosen.append(by_name[name])
            elif name in available:
                print(f"note: {name} is not in MODULES or LATER; running it as it is")
                chosen.append(Module(name, since=PYVER))
            elif name:
                sys.exit(f"error: no module {name} in MODULES, LATER or {pkg_dir}")
    return ([m for m in chosen if m.available()],
            [m for m in chosen if not m.available()])


class Table:
    def __init__(self, modules, loops):
        self.loops = loops
        self.width = max(len(m.name) for m in modules) + 2

    def header(self):
        print(f"{'':{self.width}}" + "".join(f"  {LOOP_TITLE[l]:^28}" for l in self.loops))
        print(f"{'module':{self.width}}"
              + "".join(f"  {'pass':>5} {'fail':>4} {'err':>4} {'skip':>4}{'time':>8}"
                        for _ in self.loops)
              + ("  on pyloop" if "pyloop" in self.loops else ""), flush=True)

    def row(self, name, runs):
        """runs: one Run per loop, in self.loops' order."""
        line = f"{name:{self.width}}"
        counts = [r.counts() for r in runs]
        for r, c in zip(runs, counts):
            mark = "" if r.status == "ok" else "!"
            line += f"  {fmt_counts(c)}{mark:1}{r.elapsed:>6.1f}s"
        if "pyloop" in self.loops:
            py = runs[self.loops.index("pyloop")]
            line += f"  {py.on_loop():>5}/{len(py.tests)}"
        print(line, flush=True)


def total_run(runs, loop):
    """All modules' runs for one loop, as one Run."""
    total = Run("total", loop)
    for r in runs:
        if r.loop == loop:
            total.tests.update({f"{r.module}:{k}": v for k, v in r.tests.items()})
            total.elapsed += r.elapsed
    return total


def classify(selected, runs, loops, known, args):
    """Sort pyloop's failures. Returns a dict of lists."""
    out = {"unexpected": [], "known": [], "both": [], "stale": [], "missing_known": []}
    if "pyloop" not in loops:
        return out
    for m in selected:
        ours = runs[m.name, "pyloop"]
        ref = runs.get((m.name, "asyncio"))
        module_known = known.for_module(m.name)
        for tid, rec in sorted(ours.tests.items()):
            if rec["outcome"] not in BAD:
                continue
            ref_rec = ref.tests.get(tid) if ref else None
            if tid in module_known:
                out["known"].append((tid, rec, module_known[tid]))
            elif ref_rec is not None and ref_rec["outcome"] in BAD:
                out["both"].append((tid, rec, ref_rec))
            else:
                out["unexpected"].append((tid, rec, ref_rec))
        for tid in sorted(module_known):
            rec = ours.tests.get(tid)
            if rec is None:
                if ours.status == "ok" and not args.k and not m.patterns:
                    out["missing_known"].append(tid)
            elif rec["outcome"] not in BAD:
                out["stale"].append((tid, rec["outcome"]))
    return out


def cause_of(rec):
    """What a failure's cause looks like, for grouping: its key line with
    addresses and ids blurred, or for a crash how the process ended."""
    detail = rec.get("detail", "")
    if rec["outcome"] == "crash":
        return detail.splitlines()[0].split(", during ")[0] if detail else "crash"
    line = re.sub(r"0x[0-9a-fA-F]+", "0x…", key_line(detail))
    line = re.sub(r"\. Did you mean: .*\?$", "", line)  # 3.12+ adds it, not always
    return re.sub(r"\bid=\d+", "id=…", line) or rec["outcome"]


def show_failures(title, items, note, verbose):
    """items: (test id, record, other) triples; note(other) -> text after the
    id. Grouped by cause, the most common first."""
    if not items:
        return
    groups = {}
    for item in items:
        groups.setdefault(cause_of(item[1]), []).append(item)
    print(f"\n{title}: {len(items)}, by cause:")
    for cause, group in sorted(groups.items(), key=lambda g: (-len(g[1]), g[0])):
        print(f"  [{len(group)}] {cause}")
        for tid, rec, other in group:
            print(f"      {rec['outcome'].upper():5} {tid}{note(other)}")
            detail = rec.get("detail", "")
            if verbose and detail and rec["outcome"] != "crash":  # a crash's stack is under PROBLEM
                for tl in traceback_head(detail):
                    print(f"            | {tl}")


def report_problems(runs, selected):
    for r in runs.values():
        for inc in r.incidents:
            print(f"PROBLEM {r.module} [{LOOP_TITLE[r.loop]}]: {inc.line()}")
            for line in inc.stack.splitlines():
                print(f"      {line}")
        if r.incidents and r.incidents[-1].test and not r.stopped:
            print("      (the module was resumed after the test: its other tests ran)")
        if r.stopped:
            print(f"      (the rest of the module did not run: {r.stopped})")
    for m in selected:
        r = runs.get((m.name, "pyloop"))
        if r is not None and r.status == "ok" and r.tests and r.on_loop() == 0:
            print(f"note: {m.name} made no pyloop loop: its tests build their own "
                  f"loops, its pyloop figures say nothing about pyloop")


def write_json(path, selected, not_here, runs, loops, sorted_failures):
    doc = {
        "python": sys.version.split()[0],
        "loops": loops,
        "modules": {
            m.name: {loop: {"status": r.status,
                            "incidents": [vars(i) for i in r.incidents],
                            "stopped": r.stopped,
                            "elapsed": round(r.elapsed, 2),
                            "counts": r.counts(), "on_loop": r.on_loop(),
                            "patch": r.ready, "tests": r.tests}
                     for (name, loop), r in runs.items() if name == m.name}
            for m in selected},
        "not_run": [m.name for m in not_here],
        "unexpected": [tid for tid, _, _ in sorted_failures["unexpected"]],
        "known": [tid for tid, _, _ in sorted_failures["known"]],
        "both_fail": [tid for tid, _, _ in sorted_failures["both"]],
        "stale_known": [tid for tid, _ in sorted_failures["stale"]],
    }
    with open(path, "w") as f:
        json.dump(doc, f, indent=1, sort_keys=True)


def main():
    ap = argparse.ArgumentParser(
        description="Run CPython's test_asyncio modules against pyloop and the stdlib loop.")
    ap.add_argument("--only", metavar="MOD,...",
                    help="comma-separated modules (also any test_asyncio module not in the list)")
    ap.add_argument("--loop", choices=["both", "pyloop", "asyncio"], default="both")
    ap.add_argument("-k", action="append", metavar="PATTERN",
                    help="only tests matching (unittest -k; repeatable)")
    ap.add_argument("--rebind", action="append", metavar="CLASS.METHOD",
                    help="with --only: this loop-making method of a test class returns the "
                         "loop under test (repeatable; see Module.rebind)")
    ap.add_argument("--drop", action="append", metavar="PATTERN",
                    help="with --only: leave out tests matching Class.* or Class.test_x "
                         "(repeatable)")
    ap.add_argument("--json", metavar="PATH", help="write every outcome here")
    ap.add_argument("--log-dir", metavar="DIR",
                    help="keep each child's output, unittest log and journal here")
    ap.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                    help=f"seconds per module and loop (default {DEFAULT_TIMEOUT})")
    ap.add_argument("--test-timeout", type=float, default=DEFAULT_TEST_TIMEOUT,
                    help=f"seconds per test (default {DEFAULT_TEST_TIMEOUT})")
    ap.add_argument("-v", "--verbose", action="store_true",
                    help="show the head and end of each failing test's traceback")
    # For the runner's own tests: another package of modules, another list.
    ap.add_argument("--known", default=KNOWN_FAILURES, help=argparse.SUPPRESS)
    ap.add_argument("--package", default=PACKAGE, help=argparse.SUPPRESS)
    args = ap.parse_args()

    known = KnownFailures(args.known)
    if known.errors:
        for e in known.errors:
            print(f"error: {e}", file=sys.stderr)
        return 2
    selected, not_here = select_modules(args)
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
        span = ".".join(map(str, m.since)) + (
            "" if m.until is None else " to before " + ".".join(map(str, m.until)))
        print(f"{m.name}: not run, not in Python {PYVER[0]}.{PYVER[1]} (needs {span})")
    if not selected:
        print("nothing to run")
        return 2

    table = Table(selected, loops)
    table.header()
    workdir = args.log_dir or tempfile.mkdtemp(prefix="pyloop-cpython-")
    os.makedirs(workdir, exist_ok=True)
    runs = {}  # (module, loop) -> Run
    try:
        for m in selected:
            for loop in loops:
                runs[m.name, loop] = run_module(m, loop, args, workdir)
            table.row(m.name, [runs[m.name, l] for l in loops])
    except KeyboardInterrupt:
        print("interrupted")
        return 130
    finally:
        if not args.log_dir:
            shutil.rmtree(workdir, ignore_errors=True)
    totals = {l: total_run(runs.values(), l) for l in loops}
    table.row("total", [totals[l] for l in loops])
    if "pyloop" in loops:
        print("(on pyloop: tests that made at least one pyloop loop; the others ran only on "
              "loops they build themselves, such as test_utils.TestLoop)")

    report_problems(runs, selected)
    found = classify(selected, runs, loops, known, args)
    if "asyncio" in loops:
        title = "Fail on pyloop, pass on the stdlib loop"
    else:
        title = "Fail on pyloop (the stdlib loop was not run to compare)"
    show_failures(title, found["unexpected"],
                  lambda ref: "  (not in the stdlib loop's run)"
                  if ref is None and "asyncio" in loops else "", args.verbose)
    show_failures("Known failures (known_failures.txt), still failing", found["known"],
                  lambda reason: f"  -- {reason}", args.verbose)
    show_failures("Fail on both loops (not counted against pyloop)", found["both"],
                  lambda ref: f"  (stdlib loop: {ref['outcome']})", args.verbose)
    if loops == ["asyncio"]:
        show_failures("Fail on the stdlib loop", [
            (tid, rec, None) for m in selected
            for tid, rec in sorted(runs[m.name, "asyncio"].tests.items())
            if rec["outcome"] in BAD], lambda _: "", args.verbose)
    for tid, outcome in found["stale"]:
        print(f"warning: stale known-failure entry, {tid} now gives {outcome} on pyloop: "
              f"remove it from known_failures.txt")
    for tid in found["missing_known"]:
        print(f"warning: known-failure entry {tid} matches no test that ran (renamed?)")
    if args.json:
        write_json(args.json, selected, not_here, runs, loops, found)

    # The closing line, for CI: the pyloop run's figures, where "failed" is
    # what decides the exit status: failures that pass on the stdlib loop and
    # are not known, and incidents not pinned on a test (a test's crash is
    # counted as that test's failure). Known failures and failures on both
    # loops are listed above and left out.
    main_loop = "pyloop" if "pyloop" in loops else "asyncio"
    c = totals[main_loop].counts()
    incidents = sum(1 for r in runs.values() for i in r.incidents
                    if i.test is None or r.loop != main_loop)
    if main_loop == "pyloop":
        failed = len(found["unexpected"]) + incidents
        if found["known"] or found["both"]:
            print(f"\n(not counted as failed: {len(found['known'])} known failures, "
                  f"{len(found['both'])} failing on the stdlib loop too)")
    else:
        failed = sum(c[k] for k in BAD) + incidents
    print(f"{c['pass']} passed, {failed} failed, {c['skip']} skipped")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
