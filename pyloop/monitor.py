"""pyloop.monitor: see what a running pyloop loop does, cheaply enough for production.

    import pyloop.monitor as monitor
    monitor.enable(loop)                 # or PYLOOP_MONITOR=1 (PYLOOP_MONITOR=tasks: per-task too)
    loop.utilization()                   # Utilization(idle, active, utilization)
    monitor.delay_histogram(loop).percentile(99)
    monitor.slow_callbacks(loop)         # the latest callbacks over 100 ms, with their task
    monitor.enable(loop, watchdog=True)  # or PYLOOP_MONITOR_WATCHDOG=1: their stack while they ran
    monitor.tasks(loop)                  # per-task figures (enable(loop, tasks=True))
    monitor.prometheus()                 # Prometheus text format
    monitor.serve("/tmp/app.monitor")    # then: python -m pyloop monitor /tmp/app.monitor

The figures are kept in C by the loop (csrc/monitor.c) at the points where it
already is: the GIL release around the poll and the run of each callback.
Callbacks are timed by batch: the loop reads the clock once per batch of
callbacks (the ready ones of an iteration, the timers due), and again after
a callback only when a tick went by while it ran. The tick is the kernel's
coarse clock, read by the loop thread (CLOCK_MONOTONIC_COARSE: 1-10 ms, 4 ms
on most kernels; _core._monitor_tick_source says which source a build has),
else the CPU's cycle counter or a 5 ms ticker thread (C build options). A
callback's start and duration are therefore exact when it ran alone in its
batch and known to within one tick otherwise (a duration may include quick
callbacks run just before it). Per-task figures, or a slow-callback
threshold under 20 ms, time every callback instead (one clock reading each;
Monitor.times_each_callback).

Monitoring starts no thread (but the ticker in a build without the coarse
clock or a cycle counter): a slow task step is recorded with the task's name and where its
coroutines stand after the step. The stack of the code that blocked, taken
while it still runs, needs a thread that looks at the loop thread from
outside: enable(loop, watchdog=True) or PYLOOP_MONITOR_WATCHDOG=1 starts one
(it takes the GIL 4 times per threshold). serve() starts a thread too.

Every function here may be called from any thread: the C side writes and
reads them only with the GIL held, so a figure never tears.
"""
import asyncio
import collections
import json
import logging
import os
import select
import socket
import sys
import threading
import time
import weakref

from . import _core

__all__ = ("enable", "disable", "is_enabled", "utilization", "delay_histogram",
           "slow_callbacks", "tasks", "counts", "snapshot", "prometheus", "serve",
           "PrometheusCollector", "Utilization", "SlowCallback", "TaskFigures", "DelayHistogram")

logger = logging.getLogger("pyloop.monitor")

Utilization = collections.namedtuple("Utilization", "idle active utilization")
Utilization.__doc__ = ("Seconds blocked in the poll, seconds running, and the running share "
                       "(0..1), as Node's eventLoopUtilization().")
SlowCallback = collections.namedtuple("SlowCallback", "when duration callback task stack during")
SlowCallback.__doc__ = ("A callback that ran longer than the threshold: when it started "
                        "(time.time()), how long it ran (s; timed by batch, within a "
                        "tick, see the module's docstring), what it was, the task it "
                        "stepped (its name, or None), where that task's coroutines stood "
                        "after the step, and, with the watchdog on (enable(watchdog=True)), "
                        "the loop thread's stack sampled while the callback ran past half "
                        "the threshold (both outermost first; () when there is none).")
TaskFigures = collections.namedtuple("TaskFigures",
                                     "name coro steps total longest waited tasks")
TaskFigures.__doc__ = ("Steps, seconds running (total and longest step) and seconds "
                       "waiting in the ready queue of one live task (tasks=1), or summed "
                       "over the finished tasks of one coroutine (tasks=their number).")
TaskReport = collections.namedtuple("TaskReport", "live finished")

# Monitored loops and the label each has in prometheus().
_loops = weakref.WeakKeyDictionary()
_names_used = [0]


def _pyloop_loop(loop):
    if loop is None:
        loop = asyncio.get_running_loop()
    if not isinstance(loop, _core.Loop):
        raise TypeError(f"pyloop.monitor needs a pyloop loop, got {loop!r}")
    return loop


def _monitor(loop):
    loop = _pyloop_loop(loop)
    m = _core._monitor_get(loop)
    if m is None:
        raise RuntimeError("monitoring is off for this loop: call pyloop.monitor.enable(loop) "
                           "or set PYLOOP_MONITOR=1")
    return m


def _env_watchdog():
    value = os.environ.get("PYLOOP_MONITOR_WATCHDOG", "").strip().lower()
    return bool(value) and value not in ("0", "no", "off", "false")


def enable(loop=None, *, tasks=False, slow_callback_duration=None, name=None, watchdog=None):
    """Turn monitoring on for `loop` (default: the running loop). tasks=True
    also keeps per-task figures; `name` labels the loop in prometheus().
    watchdog=True samples the stack of a slow callback while it runs, from a
    thread (started when the first loop asks for it, gone when none does);
    watchdog=False stops that for the loop; None keeps the loop's setting
    (off when monitoring starts, unless PYLOOP_MONITOR_WATCHDOG=1)."""
    loop = _pyloop_loop(loop)
    was_on = _core._monitor_get(loop) is not None
    m = _core._monitor_enable(loop)
    if watchdog is None and not was_on:
        watchdog = _env_watchdog()
    if tasks:
        m.per_task = True
    if slow_callback_duration is not None:
        m.slow_callback_duration = slow_callback_duration
    if name is not None or loop not in _loops:
        if name is None:
            name = "main" if _names_used[0] == 0 else f"loop{_names_used[0]}"
            _names_used[0] += 1
        with _watchdog_lock:
            _loops[loop] = name
    if watchdog:
        with _watchdog_lock:
            _watched[loop] = True
        _start_watchdog()
    elif watchdog is not None:
        with _watchdog_lock:
            _watched.pop(loop, None)
    return loop


def disable(loop=None):
    """Turn monitoring off for `loop`; its figures are dropped."""
    loop = _pyloop_loop(loop)
    _core._monitor_disable(loop)
    with _watchdog_lock:
        _loops.pop(loop, None)
        _watched.pop(loop, None)


def is_enabled(loop=None):
    return _core._monitor_get(_pyloop_loop(loop)) is not None


# ---- the stack of a slow callback, sampled while it runs (opt-in) -------------
#
# The C side knows a callback was slow only once it returns, when the code that
# blocked is gone. A watchdog thread looks at each watched loop's running
# callback four times per threshold and, once one has run for half of it,
# keeps the loop thread's stack (sys._current_frames()): the blocking call's
# line, kept if the callback goes on to be slow. Sampling only past the whole
# threshold missed most callbacks a little over it (a 120 ms one gave a 20 ms
# window to a look every 50 ms). It costs the loop nothing per callback, but
# the thread takes the GIL 40 times a second at the default threshold, and
# its mere existence makes the process multi-threaded, which glibc and the
# GIL charge on every system call and every wait of the loop (about +9% of
# a TCP echo round trip's instructions, docs/performance.md): so it runs
# only for the loops that ask for it (enable(watchdog=True)).

_samples = weakref.WeakKeyDictionary()  # loop -> (callback start, stack)
_watched = weakref.WeakKeyDictionary()  # loops whose slow callbacks are sampled
_watchdog = None
_watchdog_lock = threading.Lock()


def _frame_stack(frame):
    out = []
    while frame is not None and len(out) < 64:
        code = frame.f_code
        out.append(f"{code.co_filename}:{frame.f_lineno} in {code.co_qualname}")
        frame = frame.f_back
    out.reverse()
    return tuple(out)


def _watch_once():
    """Sample the stack of every monitored loop's callback that has run for
    half its threshold; the seconds to wait before the next look."""
    interval = 0.025
    try:
        loops = list(_watched.keys())
    except RuntimeError:  # the loop thread changed it meanwhile
        return 0.005
    for loop in loops:
        m = _core._monitor_get(loop)
        if m is None:
            continue
        threshold = m.slow_callback_duration
        interval = min(interval, max(0.005, threshold / 4))
        running, started = m.current()
        if not running or time.monotonic() - started < threshold / 2:
            continue
        seen = _samples.get(loop)
        if seen is not None and seen[0] == started:
            continue
        frame = sys._current_frames().get(loop._thread_id)
        if frame is not None:
            _samples[loop] = (started, _frame_stack(frame))
        del frame
    return interval


def _watch():
    global _watchdog
    while True:
        with _watchdog_lock:
            if not _watched:
                _watchdog = None
                return
        time.sleep(_watch_once())


def _start_watchdog():
    global _watchdog
    with _watchdog_lock:
        if _watchdog is None:
            _watchdog = threading.Thread(target=_watch, name="pyloop-monitor-watchdog",
                                         daemon=True)
            _watchdog.start()


def _enable_from_env(loop):
    value = os.environ.get("PYLOOP_MONITOR", "").strip().lower()
    if value and value not in ("0", "no", "off", "false"):
        enable(loop, tasks=value in ("tasks", "2", "all"))


def utilization(loop=None, previous=None):
    """Utilization(idle, active, utilization) since monitoring began or, given
    an earlier sample, over the interval since it."""
    idle, active = _monitor(loop).utilization()
    if previous is not None:
        idle -= previous.idle
        active -= previous.active
    total = idle + active
    return Utilization(idle, active, active / total if total > 0 else 0.0)


class DelayHistogram:
    """How late callbacks ran: timers after their deadline, other callbacks
    after they were queued (counted from the end of the batch of callbacks
    that queued them; of the callback itself when every callback is timed).
    A callback's start is the loop's latest clock reading, exact for the
    first of a batch and within 5 ms for the others (module docstring).
    Seconds; log-linear buckets from 1 us to 60 s with two significant
    digits. Each attribute reads the loop's live figures."""

    def __init__(self, loop):
        self._loop = loop

    def _stats(self):
        return _monitor(self._loop).histogram()

    @property
    def count(self):
        return self._stats()[0]

    @property
    def min(self):
        return self._stats()[1]

    @property
    def max(self):
        return self._stats()[2]

    @property
    def mean(self):
        return self._stats()[3]

    @property
    def stddev(self):
        return self._stats()[4]

    def percentile(self, p):
        """The delay at or below which p percent (0..100) of the delays lie."""
        return _monitor(self._loop).percentile(p)

    def percentiles(self, ps=(50, 90, 99, 99.9)):
        m = _monitor(self._loop)
        return {p: m.percentile(p) for p in ps}

    def reset(self):
        _monitor(self._loop).reset_histogram()

    def __repr__(self):
        n, lo, hi, mean, sd = self._stats()
        return (f"<DelayHistogram count={n} min={lo:.6f} max={hi:.6f} mean={mean:.6f} "
                f"stddev={sd:.6f}>")


def delay_histogram(loop=None):
    loop = _pyloop_loop(loop)
    _monitor(loop)
    return DelayHistogram(loop)


def slow_callbacks(loop=None):
    """The latest callbacks that ran longer than the threshold (default
    0.1 s; enable(slow_callback_duration=...)), oldest first."""
    return _monitor(loop).slow_callbacks()


def _figures(st):
    task = st.task
    name = st.name
    if task is not None:
        try:
            name = task.get_name()
        except Exception:  # pragma: no cover - a Task subclass that fails
            pass
    return TaskFigures(name, st.coro, st.steps, st.total, st.longest, st.waited,
                       st.tasks or 1)


def tasks(loop=None):
    """TaskReport(live, finished): figures of each live task seen since
    per-task monitoring began, and of the finished ones summed by coroutine;
    both sorted by running time, longest first."""
    m = _monitor(loop)
    if not m.per_task:
        raise RuntimeError("per-task figures are off: pyloop.monitor.enable(loop, tasks=True) "
                           "or PYLOOP_MONITOR=tasks")
    live, finished = m.tasks()
    key = (lambda f: f.total)
    return TaskReport(sorted(map(_figures, live), key=key, reverse=True),
                      sorted(map(_figures, finished), key=key, reverse=True))


def _transport_kinds(loop):
    kinds = collections.Counter()
    for _ in range(5):
        try:
            transports = list(loop._transports.values())
            break
        except RuntimeError:  # changed size while another thread copied it
            continue
    else:  # pragma: no cover
        transports = []
    for t in transports:
        if t.is_closing():
            continue
        sock = t.get_extra_info("socket")
        if sock is None:
            kinds["other"] += 1
        elif sock.type == socket.SOCK_DGRAM:
            kinds["udp"] += 1
        elif sock.family == socket.AF_UNIX:
            kinds["unix"] += 1
        else:
            kinds["tcp"] += 1
    return dict(kinds)


def counts(loop=None):
    """Queue depths and totals: ready callbacks, pending timers, active libuv
    handles, open transports by kind, callbacks run (timed by batch: begun,
    the one running included), slow callbacks, bytes read and written by
    stream transports."""
    loop = _pyloop_loop(loop)
    m = _monitor(loop)
    ready, timers, uv_handles = _core._monitor_loop_counts(loop)
    out = {"ready": ready, "timers": timers, "uv_handles": uv_handles,
           "transports": _transport_kinds(loop)}
    out.update(m.counters())
    return out


def _coro_stack(coro):
    """Where a suspended coroutine chain stands, outermost first."""
    out = []
    for _ in range(64):
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        if frame is None:
            break
        code = frame.f_code
        out.append(f"{code.co_filename}:{frame.f_lineno} in {code.co_qualname}")
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
    return tuple(out)


_ASYNCIO_DIR = os.path.dirname(asyncio.__file__) + os.sep


def _innermost_own(stack):
    """The innermost frame of a task's stack outside asyncio itself: the
    application's line, not asyncio.sleep's."""
    for entry in reversed(stack):
        if not entry.startswith(_ASYNCIO_DIR):
            return entry
    return stack[-1]


def _callback_text(handle):
    from . import _hooks
    if isinstance(handle, asyncio.BaseTransport):
        # A transport: its protocol's code ran from a libuv callback
        # (data_received, eof_received, connection_lost, ...), not a handle.
        proto = handle.get_protocol()
        owner = type(proto).__qualname__ if proto is not None else "no protocol"
        return f"I/O callback of {owner} on {handle!r}"
    if handle._callback is None:
        return repr(handle)
    return _hooks._callback_source(handle)


def _slow_record(loop, handle, task, duration, started):
    """Called by the C core for each slow callback: build its record and log it."""
    when = time.time() - (time.monotonic() - started)
    if task is not None:
        coro = task.get_coro()
        name = task.get_name()
        callback = f"step of {name} ({getattr(coro, '__qualname__', type(coro).__name__)})"
        stack = _coro_stack(coro)
    else:
        name = None
        callback = _callback_text(handle)
        stack = ()
    sample = _samples.pop(loop, None)
    during = sample[1] if sample is not None and sample[0] == started else ()
    rec = SlowCallback(when, duration, callback, name, stack, during)
    where = []
    if during:
        where.append(f"it was running {_innermost_own(during)}")
    if stack:
        where.append(f"the task is now at {_innermost_own(stack)}")
    logger.warning("slow callback: %s took %.3f s%s", callback, duration,
                   "; " + "; ".join(where) if where else "")
    return rec


_core._monitor_set_hook(_slow_record)


def snapshot(loop=None, *, top=10, slow=10):
    """Every figure as plain data (what serve() sends)."""
    loop = _pyloop_loop(loop)
    m = _monitor(loop)
    idle, active = m.utilization()
    n, lo, hi, mean, sd = m.histogram()
    snap = {
        "time": time.time(), "pid": os.getpid(), "name": _loops.get(loop, "main"),
        "idle": idle, "active": active,
        "delay": {"count": n, "min": lo, "max": hi, "mean": mean, "stddev": sd,
                  "percentiles": {str(p): m.percentile(p) for p in (50, 90, 99, 99.9)}},
        "counts": counts(loop),
        "slow": [rec._asdict() for rec in m.slow_callbacks()[-slow:]],
        "tasks": None,
    }
    if m.per_task:
        report = tasks(loop)
        snap["tasks"] = {"live": [f._asdict() for f in report.live[:top]],
                         "finished": [f._asdict() for f in report.finished[:top]]}
    return snap


# ---- Prometheus --------------------------------------------------------------

def _esc(v):
    return str(v).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _metrics(loops):
    """(name, type, help, [(labels dict, value)]) for every monitored loop."""
    fams = collections.OrderedDict()

    def add(name, kind, doc, labels, value):
        fams.setdefault(name, (kind, doc, []))[2].append((labels, value))

    for loop, lname in loops:
        m = _core._monitor_get(loop)
        if m is None:
            continue
        base = {"loop": lname}
        idle, active = m.utilization()
        add("pyloop_idle_seconds_total", "counter",
            "Seconds the loop spent blocked in the poll.", base, idle)
        add("pyloop_active_seconds_total", "counter",
            "Seconds the loop spent running (not blocked in the poll).", base, active)
        add("pyloop_utilization", "gauge",
            "Share of the monitored time the loop was running (0..1).", base,
            active / (idle + active) if idle + active > 0 else 0.0)
        n, lo, hi, mean, sd = m.histogram()
        for q in (0.5, 0.9, 0.99, 0.999):
            add("pyloop_delay_seconds", "summary",
                "How late callbacks ran after they were due or queued.",
                dict(base, quantile=str(q)), m.percentile(q * 100))
        add("pyloop_delay_seconds_sum", None, None, base, mean * n)
        add("pyloop_delay_seconds_count", None, None, base, n)
        add("pyloop_delay_max_seconds", "gauge", "The longest delay recorded.", base, hi)
        c = counts(loop)
        add("pyloop_callbacks_total", "counter", "Callbacks run.", base, c["callbacks"])
        add("pyloop_slow_callbacks_total", "counter",
            "Callbacks that ran longer than the slow-callback threshold.", base,
            c["slow_callbacks"])
        add("pyloop_ready_callbacks", "gauge", "Callbacks in the ready queue.", base, c["ready"])
        add("pyloop_timers", "gauge", "Pending timers.", base, c["timers"])
        add("pyloop_uv_handles", "gauge", "Active libuv handles.", base, c["uv_handles"])
        for kind in ("tcp", "unix", "udp", "other"):
            add("pyloop_transports", "gauge", "Open transports by kind.",
                dict(base, kind=kind), c["transports"].get(kind, 0))
        add("pyloop_read_bytes_total", "counter", "Bytes read by stream transports.", base,
            c["bytes_read"])
        add("pyloop_written_bytes_total", "counter", "Bytes written by stream transports.",
            base, c["bytes_written"])
        if m.per_task:
            report = tasks(loop)
            for f in report.finished:
                lab = dict(base, coro=f.coro)
                add("pyloop_finished_tasks_total", "counter",
                    "Finished tasks, by coroutine.", lab, f.tasks)
                add("pyloop_finished_task_steps_total", "counter",
                    "Steps of finished tasks, by coroutine.", lab, f.steps)
                add("pyloop_finished_task_seconds_total", "counter",
                    "Seconds finished tasks ran, by coroutine.", lab, f.total)
            add("pyloop_live_tasks", "gauge", "Live tasks seen running.", base,
                len(report.live))
    return fams


def _selected(loop):
    if loop is not None:
        loop = _pyloop_loop(loop)
        return [(loop, _loops.get(loop, "main"))]
    return list(_loops.items())


def prometheus(loop=None):
    """The Prometheus text exposition format (0.0.4) of `loop`, or of every
    monitored loop (label `loop`)."""
    lines = []
    for name, (kind, doc, samples) in _metrics(_selected(loop)).items():
        if kind is not None:
            lines.append(f"# HELP {name} {doc}")
            lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            lab = ",".join(f'{k}="{_esc(v)}"' for k, v in labels.items())
            text = str(value) if isinstance(value, int) else repr(float(value))
            lines.append(f"{name}{{{lab}}} {text}")
    return "\n".join(lines) + "\n"


class PrometheusCollector:
    """A prometheus_client collector of the monitored loops:
    prometheus_client.REGISTRY.register(pyloop.monitor.PrometheusCollector())."""

    def __init__(self, loop=None):
        self._loop = loop

    def collect(self):
        from prometheus_client.core import (CounterMetricFamily, GaugeMetricFamily,
                                            SummaryMetricFamily)
        fams = _metrics(_selected(self._loop))
        for name, (kind, doc, samples) in fams.items():
            if kind is None:
                continue
            if kind == "summary":
                fam = SummaryMetricFamily(name, doc, labels=None)
                for labels, value in samples:
                    base = {k: v for k, v in labels.items() if k != "quantile"}
                    fam.add_sample(name, dict(labels), value)
                    if labels["quantile"] == "0.5":
                        for suffix in ("_sum", "_count"):
                            for lab, v in fams[name + suffix][2]:
                                if lab == base:
                                    fam.add_sample(name + suffix, dict(base), v)
                yield fam
                continue
            family = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
            # prometheus_client adds the _total suffix of counters itself.
            fname = name[:-len("_total")] if kind == "counter" else name
            keys = sorted({k for labels, _ in samples for k in labels})
            fam = family(fname, doc, labels=keys)
            for labels, value in samples:
                fam.add_metric([str(labels.get(k, "")) for k in keys], value)
            yield fam


# ---- the live view's server ---------------------------------------------------

class MonitorServer:
    """A Unix socket in a thread of its own, so the figures are served even
    while the loop is blocked: each line "snapshot" a client sends is answered
    with one JSON line."""

    def __init__(self, path, loop):
        self.path = path
        self._loop = loop
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._sock.bind(path)
            os.chmod(path, 0o600)  # the figures name the app's code: owner only
            self._sock.listen(8)
        except BaseException:
            self._sock.close()
            raise
        self._stop_r, self._stop_w = os.pipe()
        self._thread = threading.Thread(target=self._serve, name="pyloop-monitor", daemon=True)
        self._thread.start()

    def _serve(self):
        while True:
            r, _, _ = select.select([self._sock, self._stop_r], [], [])
            if self._stop_r in r:
                return
            try:
                conn, _ = self._sock.accept()
            except OSError:
                continue
            threading.Thread(target=self._client, args=(conn,), daemon=True).start()

    def _client(self, conn):
        with conn, conn.makefile("rwb") as f:
            for line in f:
                if line.strip() != b"snapshot":
                    f.write(b'{"error": "unknown request"}\n')
                else:
                    try:
                        data = snapshot(self._loop)
                    except Exception as exc:
                        data = {"error": f"{type(exc).__name__}: {exc}"}
                    f.write(json.dumps(data).encode() + b"\n")
                try:
                    f.flush()
                except OSError:
                    return

    def close(self):
        if self._stop_w < 0:
            return
        os.write(self._stop_w, b"x")
        self._thread.join()
        os.close(self._stop_r)
        os.close(self._stop_w)
        self._stop_w = -1
        self._sock.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def serve(path, loop=None):
    """Serve `loop`'s figures on the Unix socket `path` (made with mode 0600)
    for python -m pyloop monitor PATH. Monitoring is turned on if it is off.
    Returns a MonitorServer; close() removes the socket."""
    loop = _pyloop_loop(loop)
    if not is_enabled(loop):
        enable(loop)
    return MonitorServer(path, loop)


# ---- the live view ---------------------------------------------------------------

def _ms(s):
    if s is None:
        return "-"
    return f"{s * 1e3:.2f} ms" if s < 1 else f"{s:.2f} s"


def render(snap, previous=None, width=100):
    """The live view of a snapshot as lines of text; with the previous
    snapshot the utilization is the interval's."""
    if "error" in snap:
        return [f"pyloop monitor: {snap['error']}"]
    idle, active = snap["idle"], snap["active"]
    if previous is not None and "idle" in previous:
        idle -= previous["idle"]
        active -= previous["active"]
    total = idle + active
    util = active / total if total > 0 else 0.0
    bar_w = 40
    bar = "#" * round(util * bar_w) + "." * (bar_w - round(util * bar_w))
    d = snap["delay"]
    pct = d["percentiles"]
    c = snap["counts"]
    tr = ", ".join(f"{k} {v}" for k, v in sorted(c["transports"].items())) or "none"
    stamp = time.strftime("%H:%M:%S", time.localtime(snap["time"]))
    lines = [
        f"pyloop monitor   pid {snap['pid']}   loop {snap['name']}   {stamp}",
        "",
        f"utilization  [{bar}] {util * 100:5.1f}%   (busy {active:.2f} s, idle {idle:.2f} s)",
        f"delay        p50 {_ms(pct['50'])}   p90 {_ms(pct['90'])}   p99 {_ms(pct['99'])}"
        f"   p99.9 {_ms(pct['99.9'])}   max {_ms(d['max'])}",
        f"queues       ready {c['ready']}   timers {c['timers']}   libuv handles "
        f"{c['uv_handles']}   transports: {tr}",
        f"totals       callbacks {c['callbacks']}   slow {c['slow_callbacks']}   "
        f"read {c['bytes_read']} B   written {c['bytes_written']} B",
        "",
    ]
    t = snap.get("tasks")
    if t is None:
        lines.append("busiest tasks: per-task figures are off (enable(loop, tasks=True))")
    else:
        lines.append(f"{'busiest tasks':34} {'steps':>8} {'running':>11} {'longest':>11} "
                     f"{'waiting':>11}")
        for f in t["live"][:8]:
            label = f"{f['name']} ({f['coro']})"[:34]
            lines.append(f"{label:34} {f['steps']:>8} {_ms(f['total']):>11} "
                         f"{_ms(f['longest']):>11} {_ms(f['waited']):>11}")
        if not t["live"]:
            lines.append("  (none yet)")
    lines.append("")
    lines.append("latest slow callbacks")
    for s in reversed(snap["slow"][-6:]):
        when = time.strftime("%H:%M:%S", time.localtime(s["when"]))
        lines.append(f"  {when}  {_ms(s['duration']):>10}  {s['callback']}"[:width])
        for label, frames in (("running", s.get("during")), ("now at", s["stack"])):
            if frames:
                path, _, rest = _innermost_own(frames).rpartition(":")
                lines.append(f"      {label} {os.path.basename(path)}:{rest}"[:width])
    if not snap["slow"]:
        lines.append("  (none)")
    return [ln[:width] for ln in lines]


def _request(sock_file):
    sock_file.write(b"snapshot\n")
    sock_file.flush()
    line = sock_file.readline()
    if not line:
        raise ConnectionError("the monitored process closed the connection")
    return json.loads(line)


def watch(path, *, interval=1.0, count=None, out=None):
    """python -m pyloop monitor PATH: redraw the live view every `interval`
    seconds (`count` times, or until Ctrl-C)."""
    out = out or sys.stdout
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(path)
    previous = None
    n = 0
    with sock, sock.makefile("rwb") as f:
        try:
            while count is None or n < count:
                snap = _request(f)
                width = max(60, _terminal_width(out))
                # Home, clear the screen, draw: a plain ANSI refresh.
                out.write("\x1b[H\x1b[2J" + "\n".join(render(snap, previous, width)) + "\n")
                out.flush()
                previous = snap
                n += 1
                if count is None or n < count:
                    time.sleep(interval)
        except KeyboardInterrupt:
            pass


def _terminal_width(out):
    try:
        return os.get_terminal_size(out.fileno()).columns or 100  # 0: not set
    except (OSError, AttributeError, ValueError):
        return 100
