"""Subprocess transports for pyloop.

The orchestration (subprocess_exec/subprocess_shell, the transport's pipe
plumbing, close, wait) is the stdlib's own: loop.py borrows
BaseEventLoop.subprocess_exec/subprocess_shell and the transport here is an
asyncio.base_subprocess.BaseSubprocessTransport. What differs is how the child
is started and reaped:

* Spawn path 1, `_core._spawn` (posix_spawn; csrc/process.c says why not
  libuv's uv_spawn) with real pipes (os.pipe) for PIPE, /dev/null for
  DEVNULL, the child's stdout for STDOUT, and ints or file objects as given.
  Taken when posix_spawn does exactly what subprocess.Popen would do with the
  call's arguments: cwd, env, executable, pass_fds, close_fds,
  start_new_session, pipesize, and every other keyword at its default.
* Spawn path 2, subprocess.Popen (the stdlib's _posixsubprocess, so only a
  user preexec_fn runs Python code in the child, as with the stdlib loop) for
  what path 1 does not express: preexec_fn, process_group, umask, user,
  group, extra_groups, restore_signals=False, pass_fds with close_fds=False
  (Popen's warning), pass_fds entries below 3, startupinfo/creationflags and
  unknown keywords (Popen raises what it raises), and a stdio fd of the
  parent that is closed (Popen leaves it closed in the child).
* Reaping, both paths: a pidfd (os.pidfd_open) watched with the loop's
  _add_reader, then os.waitpid; a waiting thread where pidfds are missing. No
  stdlib child watcher and no SIGCHLD handler is involved.
"""

import errno
import fcntl
import io
import os
import signal
import subprocess
import sys
import threading
import time
import weakref
from asyncio import base_subprocess
from asyncio.log import logger

from . import _core

# Keywords path 1 can honour, with the predicate each value must meet for it
# to behave as Popen would.
_SPAWN_KWARGS = {
    "cwd": lambda v: True,
    "env": lambda v: True,
    "executable": lambda v: True,
    "pass_fds": lambda v: True,
    "start_new_session": lambda v: True,
    "pipesize": lambda v: v is None or (type(v) is int),
    "close_fds": lambda v: type(v) is bool,
    "restore_signals": lambda v: v is True,
    "preexec_fn": lambda v: v is None,
    "process_group": lambda v: v is None,
    "umask": lambda v: type(v) is int and v < 0,
    "user": lambda v: v is None,
    "group": lambda v: v is None,
    "extra_groups": lambda v: v is None,
    "startupinfo": lambda v: v is None,
    "creationflags": lambda v: type(v) is int and v == 0,
}


class _Child:
    """The Popen-like object BaseSubprocessTransport drives (pid, returncode,
    stdin/stdout/stderr, poll, wait, send_signal, terminate, kill) for a
    child started by _core._spawn, what get_extra_info('subprocess') returns.
    As with Popen, poll() and wait() reap the child themselves (the reaper
    then takes returncode from here), and a child known to be gone is never
    signalled, so a reused pid is never hit."""

    def __init__(self, args, pid, stdin, stdout, stderr):
        self.args = args
        self.pid = pid
        self.returncode = None
        self.stdin = stdin
        self.stdout = stdout
        self.stderr = stderr

    def __repr__(self):
        return f"<{self.__class__.__name__}: returncode: {self.returncode} args: {self.args!r}>"

    def _try_wait(self, flags):
        try:
            pid, status = os.waitpid(self.pid, flags)
        except ChildProcessError:
            return  # the reaper got it: it sets returncode
        if pid == self.pid and self.returncode is None:
            self.returncode = os.waitstatus_to_exitcode(status)

    def poll(self):
        if self.returncode is None:
            self._try_wait(os.WNOHANG)
        return self.returncode

    def wait(self, timeout=None):
        if timeout is None:
            if self.returncode is None:
                self._try_wait(0)
            return self.returncode
        # As Popen: poll with growing sleeps until the deadline.
        deadline = time.monotonic() + timeout
        delay = 0.0005
        while self.poll() is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise subprocess.TimeoutExpired(self.args, timeout)
            delay = min(delay * 2, remaining, 0.05)
            time.sleep(delay)
        return self.returncode

    def send_signal(self, sig):
        # As Popen: a child known to be gone is not signalled.
        if self.returncode is not None:
            return
        try:
            os.kill(self.pid, sig)
        except ProcessLookupError:
            pass

    def terminate(self):
        self.send_signal(signal.SIGTERM)

    def kill(self):
        self.send_signal(signal.SIGKILL)


# loop -> the reapers still waiting for a child of that loop
_reapers = weakref.WeakKeyDictionary()


def _wait_quietly(pid):
    try:
        os.waitpid(pid, 0)
    except OSError:
        pass


class _Reaper:
    """Waits for one child and reports its exit status to the transport."""

    def __init__(self, loop, proc, transport):
        self._loop = loop
        self._proc = proc
        self._transport = transport
        try:
            self._pidfd = os.pidfd_open(proc.pid)
        except (AttributeError, OSError):
            self._pidfd = None
            threading.Thread(target=self._wait_in_thread, daemon=True).start()
            return
        loop._add_reader(self._pidfd, self._pidfd_ready)
        _reapers.setdefault(loop, set()).add(self)

    def _wait_in_thread(self):
        pid = self._proc.pid
        if hasattr(os, "waitid"):
            # Wait without reaping: the pid stays the child's (a zombie) until
            # the loop's thread reaps it and publishes the exit in one step,
            # so send_signal() in between never reaches a recycled pid.
            try:
                os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
            except ChildProcessError:
                pass
            step, args = self._reap_and_report, ()
        else:
            try:
                _, status = os.waitpid(pid, 0)
                rc = os.waitstatus_to_exitcode(status)
            except ChildProcessError:
                rc = None
            step, args = self._report, (rc,)
        try:
            self._loop.call_soon_threadsafe(step, *args)
        except RuntimeError:
            _wait_quietly(pid)  # the loop is closed: no zombie left behind

    def _reap_and_report(self):
        try:
            _, status = os.waitpid(self._proc.pid, 0)
            rc = os.waitstatus_to_exitcode(status)
        except ChildProcessError:
            rc = None
        self._report(rc)

    def _pidfd_ready(self):
        try:
            pid, status = os.waitpid(self._proc.pid, os.WNOHANG)
        except ChildProcessError:
            pid, rc = self._proc.pid, None
        except BaseException:
            # An unexpected failure still releases the pidfd; the error goes
            # to the loop's exception handler, as with the stdlib's watcher.
            self._stop_watching()
            raise
        else:
            if pid == 0:
                return
            rc = os.waitstatus_to_exitcode(status)
        self._stop_watching()
        self._report(rc)

    def _report(self, rc):
        """Publish the exit on the transport now, in the same callback that
        reaped the child (not a later one), so that no send_signal() can run
        between the two."""
        if rc is None:
            # Someone else reaped it: Popen.poll() (then its returncode is
            # set) or a foreign waitpid(-1), after which the status is lost
            # and 255 is reported, as the stdlib's child watchers do.
            rc = self._proc.returncode
            if rc is None:
                logger.warning("child process pid %d was reaped by someone else; "
                               "returncode 255 reported", self._proc.pid)
                rc = 255
        transport, self._transport = self._transport, None
        if transport is not None:
            transport._process_exited(rc)

    def _stop_watching(self):
        waiting = _reapers.get(self._loop)
        if waiting is not None:
            waiting.discard(self)
        self._loop._remove_reader(self._pidfd)
        os.close(self._pidfd)
        self._pidfd = None

    def _detach(self):
        # The loop closes before the child exited: keep it from becoming a
        # zombie, as the stdlib's threaded child watcher would.
        self._stop_watching()
        threading.Thread(target=_wait_quietly, args=(self._proc.pid,), daemon=True).start()


def loop_closing(loop):
    """Called by Loop.close() before its C half closes the poller."""
    for reaper in list(_reapers.pop(loop, ())):
        reaper._detach()


# ---- spawn path 1 ------------------------------------------------------


def _popen_args(args, shell, executable):
    # Exactly Popen._execute_child's normalisation (POSIX).
    if isinstance(args, (str, bytes)):
        args = [args]
    elif isinstance(args, os.PathLike):
        if shell:
            raise TypeError("path-like args is not allowed when shell is true")
        args = [args]
    else:
        args = list(args)
    if shell:
        args = ["/bin/sh", "-c"] + args
        if executable:
            args[0] = executable
    if executable is None:
        executable = args[0]
    return args, executable


def _program(executable, env, cwd):
    """The file exec will run, found on the child's PATH as Popen finds it;
    the name as given where nothing is found (the spawn then fails as
    Popen's does)."""
    executable = os.fsencode(executable)
    if os.path.dirname(executable):
        return executable
    for d in os.get_exec_path(env):
        cand = os.path.join(os.fsencode(d), executable)
        path = cand if cwd is None else os.path.join(os.fsencode(cwd), cand)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return cand
    return executable


def _fd_closed(fd):
    try:
        fcntl.fcntl(fd, fcntl.F_GETFD)
    except OSError:
        return True
    return False


def _given_fd(spec, stream):
    """The parent fd a stdin/stdout/stderr argument names for the child:
    ('new', None) for a pipe or /dev/null made here, ('fd', n) for an
    existing fd, or None when only Popen handles the value."""
    if spec is None:
        return ("fd", stream)
    if spec == subprocess.PIPE or spec == subprocess.DEVNULL:
        return ("new", None)
    if isinstance(spec, int):
        return ("fd", spec) if spec >= 0 else None
    return ("fd", spec.fileno())


def _plan(args, shell, stdin, stdout, stderr, kwargs):
    """Everything _core._spawn needs, or None to use subprocess.Popen."""
    for name, value in kwargs.items():
        check = _SPAWN_KWARGS.get(name)
        if check is None or not check(value):
            return None
    pass_fds = sorted(set(map(int, kwargs.get("pass_fds", ()))))
    if pass_fds and (pass_fds[0] < 3 or pass_fds[-1] > 65535
                     or not kwargs.get("close_fds", True)):
        return None  # Popen warns "pass_fds overriding close_fds."
    specs = [_given_fd(stdin, 0), _given_fd(stdout, 1)]
    if stderr == subprocess.STDOUT:
        # As Popen: the child's stdout, or the parent's when that is inherited.
        specs.append(("stdout", None) if stdout is not None
                     else ("fd", sys.__stdout__.fileno()))
    else:
        specs.append(_given_fd(stderr, 2))
    if None in specs:
        return None
    if any(kind == "fd" and _fd_closed(fd) for kind, fd in specs):
        return None
    cwd = kwargs.get("cwd")
    env = kwargs.get("env")
    args, executable = _popen_args(args, shell, kwargs.get("executable"))
    program = _program(executable, env, cwd)
    return args, executable, program, cwd, env, pass_fds, specs


def _env_list(env):
    if env is None:
        return None
    env_list = []
    for k, v in env.items():
        k = os.fsencode(k)
        if b"=" in k:
            raise ValueError("illegal environment variable name")
        env_list.append(k + b"=" + os.fsencode(v))
    return env_list


def _spawn_error(err, orig_executable, cwd):
    # What Popen raises for a failure in the child: errors before exec name
    # the cwd (chdir, or a bad fd: Popen's "noexec" case), exec errors the
    # program; fork failures name nothing.
    if err in (errno.EAGAIN, errno.ENOMEM):
        return OSError(err, os.strerror(err))
    before_exec = err == errno.EBADF or (
        cwd is not None and not (os.path.isdir(cwd) and os.access(cwd, os.X_OK)))
    return OSError(err, os.strerror(err), cwd if before_exec else orig_executable)


# ---- bigger pipes for a child's stdin and stdout -------------------------
#
# A default pipe holds 64 KiB: a child that writes or reads in bigger blocks
# (cat's are 128 KiB) fills or empties it in one go and sleeps, and so does
# the loop, one wake-up of each side per 64 KiB. On a machine where a wake-up
# across CPUs is dear, that is what bounded pipe_cat (docs/performance.md,
# "Bigger pipes, read 64 KiB at a time"). So the pipes made here for a
# child's stdin and stdout are enlarged to _PIPE_SIZE when the caller gave no
# pipesize= (which always wins); the read side still reads 64 KiB at a time,
# one read per loop pass (csrc/pipe.c), so the protocol's buffers stay small.
#
# Pipe memory counts against the user's pipe-user-pages-soft (pipe(7)): past
# it, every new pipe of that user gets one page, in every program. So this
# process keeps at most _pipe_budget() bytes of enlarged pipes alive, 1/64 of
# that limit (1 MiB at the default 64 MiB): the rest stay at the default, and
# a pipe's share comes back once the parent's end is closed and the child
# reaped. A fresh pipe already under 64 KiB means the user is at the limit:
# left alone. F_SETPIPE_SZ failing (EPERM, EBUSY) leaves the default.
_PIPE_SIZE = 256 * 1024
# [parent's end, child, bytes] of the enlarged pipes alive (weak references;
# None while the spawn that made the pipe is still under way)
_enlarged = []
_enlarged_lock = threading.Lock()  # loops in several threads spawn at once
_budget = None


def _pipe_budget():
    global _budget
    if _budget is None:
        try:
            with open("/proc/sys/fs/pipe-user-pages-soft") as f:
                pages = int(f.read())
        except (OSError, ValueError):
            pages = 0
        full = 1024 * 1024
        _budget = full if pages <= 0 else min(full, pages * os.sysconf("SC_PAGE_SIZE") // 64)
    return _budget


def _enlarged_in_use():
    """Bytes of enlarged pipes still alive, forgetting those that are not: a
    pipe lives while the parent's end is open or the child not reaped."""
    live = []
    for entry in _enlarged:
        end, child, _ = entry
        f = end() if end is not None else None
        c = child() if child is not None else None
        if end is None or (f is not None and not f.closed) or (
                c is not None and c.returncode is None):
            live.append(entry)
    _enlarged[:] = live
    return sum(entry[2] for entry in live)


def _enlarge_pipe(fd):
    """Enlarge the fresh pipe `fd` to _PIPE_SIZE if the budget has room: its
    entry in _enlarged, or None when it is left as it was."""
    with _enlarged_lock:
        try:
            size = fcntl.fcntl(fd, fcntl.F_GETPIPE_SZ)
            if size < 65536 or size >= _PIPE_SIZE:
                return None
            if _enlarged_in_use() + _PIPE_SIZE > _pipe_budget():
                return None
            fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, _PIPE_SIZE)
        except OSError:
            return None
        entry = [None, None, _PIPE_SIZE]
        _enlarged.append(entry)
        return entry


def _enlarged_done(entries, files, child):
    """The spawn that made `entries` ({stdio index: entry}) is over: tie them
    to the parent's ends and the child, or give them back (child None)."""
    with _enlarged_lock:
        for i, entry in entries.items():
            if child is None:
                _enlarged.remove(entry)
            else:
                entry[0], entry[1] = weakref.ref(files[i]), weakref.ref(child)


def _spawn(loop, plan, stdin, stdout, stderr, kwargs):
    args, executable, program, cwd, env, pass_fds, specs = plan
    sys.audit("subprocess.Popen", executable, args, cwd, env)
    env_list = _env_list(env)
    pipesize = kwargs.get("pipesize")
    enlarge = pipesize is None and hasattr(fcntl, "F_SETPIPE_SZ")
    to_close = []  # child ends and /dev/null: closed once the child has them
    parent_ends = []
    enlarged = {}  # stdio index -> its entry in _enlarged
    child_fds = []
    devnull = None
    failure = None
    try:
        for i, ((kind, fd), spec) in enumerate(zip(specs, (stdin, stdout, stderr))):
            if kind == "stdout":
                fd = child_fds[1]
            elif kind == "new" and spec == subprocess.DEVNULL:
                if devnull is None:
                    devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
                    to_close.append(devnull)
                fd = devnull
            elif kind == "new":
                r, w = os.pipe()
                to_close.append(r if i == 0 else w)
                parent_ends.append(w if i == 0 else r)
                if pipesize is not None and pipesize > 0:
                    fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, pipesize)
                elif enlarge and i < 2:  # stdin, stdout
                    entry = _enlarge_pipe(w)
                    if entry is not None:
                        enlarged[i] = entry
                fd = r if i == 0 else w
            child_fds.append(fd)
        stdio = list(child_fds)
        if pass_fds:
            stdio += [-1] * (pass_fds[-1] + 1 - len(stdio))
            for fd in pass_fds:
                stdio[fd] = fd
        try:
            pid = _core._spawn(loop, program, args, env_list, cwd, stdio,
                               bool(kwargs.get("start_new_session")),
                               kwargs.get("close_fds", True))
        except OSError as exc:
            failure = _spawn_error(exc.errno, executable, cwd)
    except BaseException:
        for fd in parent_ends:
            os.close(fd)
        _enlarged_done(enlarged, None, None)
        raise
    finally:
        for fd in to_close:
            os.close(fd)
    if failure is not None:
        for fd in parent_ends:
            os.close(fd)
        _enlarged_done(enlarged, None, None)
        raise failure
    ends = iter(parent_ends)
    files = [io.open(next(ends), "wb" if i == 0 else "rb", 0) if spec == subprocess.PIPE
             else None for i, spec in enumerate((stdin, stdout, stderr))]
    child = _Child(args, pid, *files)
    if enlarged:
        _enlarged_done(enlarged, files, child)
    return child


class _SubprocessTransport(base_subprocess.BaseSubprocessTransport):

    def __init__(self, *args, **kwargs):
        _core._count_transport("subprocess", self)  # _core._counters(), for the tests
        super().__init__(*args, **kwargs)

    def _start(self, args, shell, stdin, stdout, stderr, bufsize, **kwargs):
        plan = _plan(args, shell, stdin, stdout, stderr, kwargs)
        if plan is None:
            self._proc = subprocess.Popen(
                args, shell=shell, stdin=stdin, stdout=stdout, stderr=stderr,
                universal_newlines=False, bufsize=bufsize, **kwargs)
        else:
            self._proc = _spawn(self._loop, plan, stdin, stdout, stderr, kwargs)
        _Reaper(self._loop, self._proc, self)


async def make_subprocess_transport(loop, protocol, args, shell, stdin, stdout, stderr,
                                    bufsize, extra=None, **kwargs):
    """Loop._make_subprocess_transport: the stdlib's, minus the child watcher."""
    waiter = loop.create_future()
    transp = _SubprocessTransport(loop, protocol, args, shell, stdin, stdout, stderr,
                                  bufsize, waiter=waiter, extra=extra, **kwargs)
    try:
        await waiter
    except (SystemExit, KeyboardInterrupt):
        raise
    except BaseException:
        transp.close()
        await transp._wait()
        raise
    return transp
