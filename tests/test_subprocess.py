"""Subprocesses on both loops: loop.subprocess_exec/subprocess_shell and
asyncio.create_subprocess_exec/shell, every Popen keyword, the transport's
methods, failed spawns (same exception as the stdlib, no fd leaked) and, on
pyloop, which spawn path a call takes and balanced handle counters."""
import asyncio
import errno
import fcntl
import gc
import os
import signal
import subprocess
import sys
import time
import warnings

import pytest

import pyloop
from pyloop import _subprocess

PY = sys.executable
PIPE = asyncio.subprocess.PIPE


def run(loop, coro):
    return loop.run_until_complete(asyncio.wait_for(coro, 60))


async def output(*args, **kwargs):
    """stdout of a child run with create_subprocess_exec, and its returncode."""
    kwargs.setdefault("stdout", PIPE)
    proc = await asyncio.create_subprocess_exec(*args, **kwargs)
    out, _ = await proc.communicate()
    return out, proc.returncode


def py(code, **kwargs):
    return output(PY, "-c", code, **kwargs)


def open_fds():
    return sorted(os.listdir("/proc/self/fd"))


@pytest.fixture
def spawns(monkeypatch):
    """The programs started through _core._spawn (posix_spawn, path 1)."""
    seen = []
    real = pyloop._core._spawn

    def spy(*args):
        seen.append(os.fsdecode(args[1]))
        return real(*args)

    monkeypatch.setattr(pyloop._core, "_spawn", spy)
    return seen


# ---- basics ----------------------------------------------------------------------


def test_exec_communicate_with_input(loop):
    async def main():
        proc = await asyncio.create_subprocess_exec(
            PY, "-c", "import sys; d = sys.stdin.read(); print(d.upper());"
                      "print('e', file=sys.stderr); sys.exit(3)",
            stdin=PIPE, stdout=PIPE, stderr=PIPE)
        return await proc.communicate(b"hello"), proc.returncode
    assert run(loop, main()) == ((b"HELLO\n", b"e\n"), 3)


def test_shell_with_env(loop):
    async def main():
        proc = await asyncio.create_subprocess_shell(
            "echo $FOO; exit 5", stdout=PIPE, env={"FOO": "bar", "PATH": os.defpath})
        return await proc.communicate(), proc.returncode
    assert run(loop, main()) == ((b"bar\n", None), 5)


def test_stream_reading_line_by_line(loop):
    async def main():
        proc = await asyncio.create_subprocess_exec(
            PY, "-c", "for i in range(3): print(i, flush=True)", stdout=PIPE)
        lines = [line async for line in proc.stdout]
        return lines, await proc.wait()
    assert run(loop, main()) == ([b"0\n", b"1\n", b"2\n"], 0)


def test_stderr_to_stdout(loop):
    code = "import sys; print('o', flush=True); print('e', file=sys.stderr, flush=True)"
    assert run(loop, py(code, stderr=subprocess.STDOUT)) == (b"o\ne\n", 0)


def test_devnull(loop):
    async def main():
        proc = await asyncio.create_subprocess_exec(
            PY, "-c", "import sys; print(repr(sys.stdin.read())); print('x' * 10)",
            stdin=subprocess.DEVNULL, stdout=PIPE, stderr=subprocess.DEVNULL)
        out, err = await proc.communicate()
        return out, err, proc.stdin, proc.stderr
    assert run(loop, main()) == (b"''\n" + b"x" * 10 + b"\n", None, None, None)


def test_fd_and_file_object_stdio(loop, tmp_path):
    src = tmp_path / "in"
    src.write_bytes(b"from a file")
    with open(src, "rb") as fin, open(tmp_path / "out", "wb") as fout:
        err_fd = os.open(tmp_path / "err", os.O_WRONLY | os.O_CREAT)
        try:
            code = "import sys; print(sys.stdin.read()); print('oops', file=sys.stderr)"
            assert run(loop, py(code, stdin=fin, stdout=fout, stderr=err_fd)) == (None, 0)
        finally:
            os.close(err_fd)
    assert (tmp_path / "out").read_bytes() == b"from a file\n"
    assert (tmp_path / "err").read_bytes() == b"oops\n"


def test_cwd(loop, tmp_path):
    out, rc = run(loop, py("import os; print(os.getcwd())", cwd=tmp_path))
    assert out.decode().strip() == str(tmp_path.resolve())


def test_env_replaces_environment(loop):
    out, _ = run(loop, py("import os; print(sorted(k for k in os.environ if k.startswith('PL_')))",
                          env={"PL_A": "1", "PL_B": "2"}))
    assert out == b"['PL_A', 'PL_B']\n"


def test_executable(loop):
    assert run(loop, output("argv0-name", "-c", "echo $0", executable="/bin/sh")) == (
        b"argv0-name\n", 0)


def test_shell_executable(loop):
    async def main():
        proc = await asyncio.create_subprocess_shell("echo $0", stdout=PIPE, executable="/bin/sh")
        return (await proc.communicate())[0]
    assert run(loop, main()) == b"/bin/sh\n"


def test_pass_fds_and_close_fds(loop):
    r, w = os.pipe()
    stray_r, stray_w = os.pipe()
    os.set_inheritable(stray_w, True)  # closed in the child by close_fds=True
    code = ("import os, sys\n"
            "if sys.argv[1] != '-': os.write(int(sys.argv[1]), b'passed')\n"
            "try:\n    os.fstat(int(sys.argv[2])); print('stray open')\n"
            "except OSError:\n    print('stray closed')\n")
    try:
        out, rc = run(loop, output(PY, "-c", code, str(w), str(stray_w), stdout=PIPE,
                                   pass_fds=(w,)))
        assert (out, rc) == (b"stray closed\n", 0)
        assert os.read(r, 100) == b"passed"
        assert os.get_inheritable(stray_w)  # the parent's flag is as it was
        out, _ = run(loop, output(PY, "-c", code, "-", str(stray_w), stdout=PIPE,
                                  close_fds=False))
        assert out == b"stray open\n"
    finally:
        for fd in (r, w, stray_r, stray_w):
            os.close(fd)


def test_start_new_session(loop):
    out, _ = run(loop, py("import os; print(os.getsid(0) == os.getpid())",
                          start_new_session=True))
    assert out == b"True\n"
    out, _ = run(loop, py("import os; print(os.getsid(0))"))
    assert int(out) == os.getsid(0)


def test_process_group(loop):
    out, _ = run(loop, py("import os; print(os.getpgid(0) == os.getpid(), os.getsid(0))",
                          process_group=0))
    assert out.split() == [b"True", str(os.getsid(0)).encode()]


def test_user_group(loop):
    code = "import os; print(os.getuid(), os.getgid())"
    out, _ = run(loop, py(code, user=os.getuid(), group=os.getgid()))
    assert out.split() == [str(os.getuid()).encode(), str(os.getgid()).encode()]


@pytest.mark.skipif(os.geteuid() != 0, reason="setgroups needs root")
def test_extra_groups(loop):
    out, _ = run(loop, py("import os; print(os.getgroups())", extra_groups=[os.getgid()],
                          user=os.getuid()))
    assert out == f"[{os.getgid()}]\n".encode()


def test_umask(loop):
    out, _ = run(loop, py("import os; print(oct(os.umask(0)))", umask=0o037))
    assert out == b"0o37\n"


def test_preexec_fn(loop):
    out, _ = run(loop, py("import os; print(os.environ.get('PL_PRE'))",
                          preexec_fn=lambda: os.putenv("PL_PRE", "ran")))
    assert out == b"ran\n"


def sig_in(status_text, field, sig):
    for line in status_text.splitlines():
        if line.startswith(field + b":"):
            return bool(int(line.split()[1], 16) & (1 << (sig - 1)))
    raise AssertionError(status_text)


def sig_ignored(status_text, sig):
    return sig_in(status_text, b"SigIgn", sig)


def test_restore_signals(loop):
    # Python ignores SIGPIPE; the child gets it back unless restore_signals=False.
    out, _ = run(loop, output("cat", "/proc/self/status"))
    assert not sig_ignored(out, signal.SIGPIPE)
    out, _ = run(loop, output("cat", "/proc/self/status", restore_signals=False))
    assert sig_ignored(out, signal.SIGPIPE)


def test_ignored_signal_is_inherited(loop):
    old = signal.signal(signal.SIGUSR2, signal.SIG_IGN)
    try:
        out, _ = run(loop, output("cat", "/proc/self/status"))
    finally:
        signal.signal(signal.SIGUSR2, old)
    assert sig_ignored(out, signal.SIGUSR2)


def test_blocked_signal_is_inherited(loop):
    # As Popen: the child starts with the caller's signal mask.
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR2})
    try:
        out, _ = run(loop, output("cat", "/proc/self/status"))
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
    assert sig_in(out, b"SigBlk", signal.SIGUSR2)
    assert not sig_in(out, b"SigBlk", signal.SIGUSR1)


def test_bare_name_is_not_run_from_cwd(loop, tmp_path):
    # A name without a slash is looked up on PATH only, never in cwd.
    script = tmp_path / "pyloop-not-on-path"
    script.write_text("#!/bin/sh\necho ran\n")
    script.chmod(0o755)
    with pytest.raises(FileNotFoundError):
        subprocess.Popen([script.name], cwd=tmp_path)
    with pytest.raises(FileNotFoundError):
        run(loop, output(script.name, cwd=tmp_path))


def test_script_without_shebang_fails_as_popen(loop, tmp_path):
    script = tmp_path / "script"
    script.write_text("echo hi\n")
    script.chmod(0o755)
    with pytest.raises(OSError) as popen_exc:
        subprocess.Popen([str(script)])
    with pytest.raises(OSError) as exc:
        run(loop, output(str(script)))
    assert (type(exc.value), exc.value.errno, exc.value.filename) == (
        type(popen_exc.value), popen_exc.value.errno, popen_exc.value.filename)


# ---- the transport ------------------------------------------------------------------


class Proto(asyncio.SubprocessProtocol):
    def __init__(self, loop):
        self.data = {1: b"", 2: b""}
        self.exited = loop.create_future()
        self.lost = loop.create_future()

    def pipe_data_received(self, fd, data):
        self.data[fd] += data

    def process_exited(self):
        self.exited.set_result(None)

    def connection_lost(self, exc):
        self.lost.set_result(exc)


def test_transport_methods(loop):
    async def main():
        transport, proto = await loop.subprocess_exec(
            lambda: Proto(loop), PY, "-c", "import sys; print(sys.stdin.readline().strip())")
        assert isinstance(transport, asyncio.SubprocessTransport)
        assert transport.get_pid() == transport.get_extra_info("subprocess").pid > 0
        assert transport.get_returncode() is None
        pipes = [transport.get_pipe_transport(fd) for fd in (0, 1, 2)]
        assert all(p is not None for p in pipes)
        assert transport.get_pipe_transport(3) is None
        assert pipes[0].get_extra_info("pipe").fileno() >= 0
        pipes[0].write(b"echo\n")
        await proto.exited
        assert await proto.lost is None
        assert transport.get_returncode() == 0
        assert proto.data == {1: b"echo\n", 2: b""}
        transport.close()
        assert transport.is_closing()
    run(loop, main())


def test_pipes_are_real_pipes(loop):
    async def main():
        transport, proto = await loop.subprocess_exec(
            lambda: Proto(loop), PY, "-c", "import os, stat, sys;"
            "print([stat.S_ISFIFO(os.fstat(i).st_mode) for i in range(3)])")
        await proto.lost
        transport.close()
        return proto.data[1]
    assert run(loop, main()) == b"[True, True, True]\n"


@pytest.mark.parametrize("how, expected", [
    ("terminate", -signal.SIGTERM), ("kill", -signal.SIGKILL),
    ("send_signal", -signal.SIGUSR1)])
def test_signals(loop, how, expected):
    async def main():
        proc = await asyncio.create_subprocess_exec("sleep", "30")
        if how == "send_signal":
            proc.send_signal(signal.SIGUSR1)
        else:
            getattr(proc, how)()
        rc = await proc.wait()
        with pytest.raises(ProcessLookupError):  # the transport is done
            proc.send_signal(signal.SIGTERM)
        return rc
    assert run(loop, main()) == expected


def test_close_kills_running_child(loop):
    async def main():
        transport, proto = await loop.subprocess_exec(lambda: Proto(loop), "sleep", "30")
        transport.close()
        await proto.lost
        return transport.get_returncode()
    assert run(loop, main()) == -signal.SIGKILL


def test_many_concurrent_children(loop):
    async def main():
        return await asyncio.gather(*(py(f"print({i})") for i in range(40)))
    results = run(loop, main())
    assert results == [(f"{i}\n".encode(), 0) for i in range(40)]


def test_wait_without_pipes_wakes_sleeping_loop(loop):
    async def main():
        proc = await asyncio.create_subprocess_exec(PY, "-c", "import time; time.sleep(0.2)")
        return await proc.wait()
    assert run(loop, main()) == 0


def test_sigchld_handler_kept(loop):
    # A Python SIGCHLD handler still runs for children started by the loop.
    seen = []
    old = signal.signal(signal.SIGCHLD, lambda *a: seen.append(1))
    try:
        assert run(loop, py("pass")) == (b"", 0)
        run(loop, asyncio.sleep(0.05))
    finally:
        signal.signal(signal.SIGCHLD, old)
    assert seen


def test_add_signal_handler_sigchld_coexists(loop):
    seen = loop.create_future()
    loop.add_signal_handler(signal.SIGCHLD, lambda: seen.done() or seen.set_result(1))
    try:
        assert run(loop, py("print(1)")) == (b"1\n", 0)
        assert run(loop, seen) == 1
    finally:
        loop.remove_signal_handler(signal.SIGCHLD)


# ---- failed spawns --------------------------------------------------------------------


def popen_error(args, **kwargs):
    try:
        subprocess.Popen(args, **kwargs)
    except OSError as exc:
        return exc
    raise AssertionError("Popen succeeded")


@pytest.mark.parametrize("case", ["missing", "not_executable", "bad_cwd", "cwd_is_file",
                                  "missing_shell", "directory"])
def test_failed_spawn_same_exception_no_fd_leak(loop, tmp_path, case):
    plain = tmp_path / "plain"
    plain.write_text("data")
    args, kwargs = {
        "missing": (["/nonexistent/prog"], {}),
        "not_executable": ([str(plain)], {}),
        "bad_cwd": ([PY, "-c", "pass"], {"cwd": str(tmp_path / "nope")}),
        "cwd_is_file": ([PY, "-c", "pass"], {"cwd": str(plain)}),
        "missing_shell": (["x"], {"executable": "/nonexistent/sh"}),
        "directory": ([str(tmp_path)], {}),
    }[case]
    expected = popen_error(args, **kwargs)
    run(loop, asyncio.sleep(0))
    before = open_fds()
    with pytest.raises(OSError) as exc:
        run(loop, asyncio.create_subprocess_exec(*args, stdin=PIPE, stdout=PIPE, stderr=PIPE,
                                                 **kwargs))
    assert open_fds() == before
    got = exc.value
    assert (type(got), got.errno, got.strerror, got.filename) == (
        type(expected), expected.errno, expected.strerror, expected.filename)


def test_bad_arguments_same_exception(loop):
    for kwargs, exc_type in [({"env": {"A=B": "1"}}, ValueError),
                             ({"bogus": 1}, TypeError),
                             ({"cwd": 42}, TypeError),
                             ({"pass_fds": ["x"]}, ValueError)]:
        before = open_fds()
        with pytest.raises(exc_type):
            run(loop, asyncio.create_subprocess_exec(PY, "-c", "pass", stdout=PIPE, **kwargs))
        assert open_fds() == before, kwargs
    with pytest.raises(ValueError):
        run(loop, asyncio.create_subprocess_exec(PY, "-c", "pass\0"))


# ---- pyloop only: spawn paths, counters, loop close --------------------------------------


def test_spawn_paths(pyloop_loop, spawns):
    run(pyloop_loop, py("pass"))
    run(pyloop_loop, py("pass", cwd="/", env={}, start_new_session=True, close_fds=False))
    run(pyloop_loop, output("true", pass_fds=()))
    old = signal.signal(signal.SIGUSR2, signal.SIG_IGN)
    try:
        run(pyloop_loop, output("true"))  # posix_spawn keeps it ignored, as Popen
    finally:
        signal.signal(signal.SIGUSR2, old)
    assert len(spawns) == 4
    for kwargs in ({"preexec_fn": lambda: None}, {"umask": 0o22}, {"process_group": 0},
                   {"user": os.getuid()}, {"restore_signals": False}):
        run(pyloop_loop, py("pass", **kwargs))
    assert len(spawns) == 4


def test_debug_mode(loop):
    loop.set_debug(True)
    assert run(loop, py("print('dbg')", stdin=PIPE)) == (b"dbg\n", 0)


def test_reaped_by_thread_without_pidfd(pyloop_loop, monkeypatch):
    def no_pidfd(pid):
        raise OSError(38, "Function not implemented")
    monkeypatch.setattr(os, "pidfd_open", no_pidfd)

    async def main():
        return await asyncio.gather(py("print(1)"), py("import sys; sys.exit(4)"))
    assert run(pyloop_loop, main()) == [(b"1\n", 0), (b"", 4)]


def _no_pidfd(monkeypatch):
    def no_pidfd(pid):
        raise OSError(38, "Function not implemented")
    monkeypatch.setattr(os, "pidfd_open", no_pidfd)


# The stdlib loop gives these guarantees from 3.14 on (gh-127049 and the
# pidfd leak fix); pyloop on every version.
STDLIB_REAPS_SAFELY = sys.version_info >= (3, 14)


@pytest.mark.parametrize("pidfd", [True, False], ids=["pidfd", "thread"])
def test_send_signal_never_reaches_a_reaped_pid(loop, loop_name, pidfd, monkeypatch):
    # Between reaping a child and publishing its exit there is no turn of the
    # loop in which kill() would signal its pid (free for reuse by then).
    if loop_name == "asyncio" and not STDLIB_REAPS_SAFELY:
        pytest.skip("the stdlib loop before 3.14 publishes the exit a callback after reaping")
    if loop_name == "asyncio" and not pidfd:
        pytest.skip("the stdlib picks its watcher itself (pidfd here); the thread path is pyloop's")
    if not pidfd:
        _no_pidfd(monkeypatch)
    reaped, stale = set(), []
    real_waitpid, real_kill = os.waitpid, os.kill

    def waitpid(pid, options):
        res = real_waitpid(pid, options)
        if res[0] != 0:
            reaped.add(res[0])
        return res

    def kill(pid, sig):
        if pid in reaped:
            stale.append(pid)
        else:
            real_kill(pid, sig)

    async def main():
        monkeypatch.setattr(os, "waitpid", waitpid)
        monkeypatch.setattr(os, "kill", kill)
        proc = await asyncio.create_subprocess_exec(PY, "-c", "import time; time.sleep(60)")
        proc.kill()
        while proc.returncode is None:
            proc.kill()
            await asyncio.sleep(0)
        return await proc.wait()

    assert run(loop, main()) == -signal.SIGKILL
    assert reaped and stale == []


def test_pidfd_released_when_waitpid_fails(loop, loop_name, monkeypatch):
    # An unexpected waitpid() error goes to the exception handler and the
    # child's pidfd is closed all the same.
    if loop_name == "asyncio" and not STDLIB_REAPS_SAFELY:
        pytest.skip("the stdlib loop before 3.14 keeps the pidfd open then")
    seen = []
    loop.set_exception_handler(lambda lp, ctx: seen.append(ctx.get("exception")))

    async def main():
        before = open_fds()
        proc = await asyncio.create_subprocess_exec(PY, "-c", "import sys; sys.stdin.read()",
                                                    stdin=PIPE)
        real_waitpid = os.waitpid
        calls = []

        def failing(pid, options):
            calls.append(pid)
            raise OSError("unexpected")
        monkeypatch.setattr(os, "waitpid", failing)
        proc.stdin.close()
        while not calls:
            await asyncio.sleep(0.01)
        monkeypatch.setattr(os, "waitpid", real_waitpid)
        os.waitpid(proc.pid, 0)
        proc._transport._process_exited(0)
        assert await proc.wait() == 0
        await asyncio.sleep(0)
        return before, open_fds()

    before, after = run(loop, main())
    assert after == before
    assert [type(e) for e in seen] == [OSError]


@pytest.mark.parametrize("stdin", [None, PIPE])
def test_spawn_raising_closes_everything(pyloop_loop, monkeypatch, stdin):
    # What CPython's test_popen_error checks by patching subprocess.Popen.
    def boom(*args):
        raise ZeroDivisionError
    monkeypatch.setattr(pyloop._core, "_spawn", boom)
    before = open_fds()
    with warnings.catch_warnings(record=True) as warns:
        warnings.simplefilter("always")
        with pytest.raises(ZeroDivisionError):
            run(pyloop_loop, asyncio.create_subprocess_exec(PY, "-c", "pass", stdin=stdin))
        gc.collect()
    assert warns == []
    assert open_fds() == before


def test_counters_and_fds_balanced_after_close():
    gc.collect()
    fds = open_fds()
    before = pyloop._core._counters()
    loop = pyloop.new_event_loop()
    async def main():
        await asyncio.gather(py("pass"), py("pass", stdin=PIPE), py("pass", umask=0o22))
    run(loop, main())
    with pytest.raises(FileNotFoundError):
        run(loop, output("/nonexistent"))
    loop.close()
    del loop
    gc.collect()
    after = pyloop._core._counters()
    d = {k: after[k] - before[k] for k in after}
    assert d["handles_created"] == d["handles_freed"] > 0  # the loop's own handles
    # four transports, the failed spawn's included; each child's pipes
    assert d["subprocess_transports_created"] == d["subprocess_transports_freed"] == 4
    assert d["pipe_transports_created"] == d["pipe_transports_freed"] > 0
    assert open_fds() == fds


def test_loop_closed_with_child_running():
    before = open_fds()
    loop = pyloop.new_event_loop()

    async def start():
        return await asyncio.create_subprocess_exec("sleep", "30")

    proc = run(loop, start())
    pid = proc.pid
    proc.kill()
    loop.close()
    del proc
    gc.collect()
    assert open_fds() == before
    # A thread reaps the child once the loop is gone.
    for _ in range(1000):
        if not os.path.exists(f"/proc/{pid}"):
            break
        time.sleep(0.01)
    else:
        raise AssertionError("child not reaped")


# ---- pipe sizes ------------------------------------------------------------------


def pipe_sizes(proc):
    """F_GETPIPE_SZ of the parent's ends of a child's stdin, stdout, stderr
    (None where that is no pipe of ours)."""
    sizes = []
    for fd in (0, 1, 2):
        tr = proc._transport.get_pipe_transport(fd)
        sizes.append(None if tr is None else
                     fcntl.fcntl(tr.get_extra_info("pipe").fileno(), fcntl.F_GETPIPE_SZ))
    return sizes


def default_pipe_size():
    r, w = os.pipe()
    try:
        return fcntl.fcntl(w, fcntl.F_GETPIPE_SZ)
    finally:
        os.close(r)
        os.close(w)


@pytest.mark.parametrize("size", [0, 1, 65535, 65536, 65537, 262144, 3 * 1024 * 1024 + 7])
def test_data_through_cat_intact(loop, size):
    payload = os.urandom(size)

    async def main():
        proc = await asyncio.create_subprocess_exec("cat", stdin=PIPE, stdout=PIPE)
        return await proc.communicate(payload)

    out, _ = run(loop, main())
    assert out == payload


def test_data_through_cat_written_and_read_in_chunks(loop):
    # pipe_cat's pattern: 64 KiB writes with drain(), read(256 KiB) back.
    payload = os.urandom(8 * 1024 * 1024)

    async def main():
        proc = await asyncio.create_subprocess_exec("cat", stdin=PIPE, stdout=PIPE)

        async def feed():
            for i in range(0, len(payload), 65536):
                proc.stdin.write(payload[i:i + 65536])
                await proc.stdin.drain()
            proc.stdin.close()

        async def drain():
            got = bytearray()
            while data := await proc.stdout.read(256 * 1024):
                got += data
            return got

        _, got = await asyncio.gather(feed(), drain())
        await proc.wait()
        return got

    assert run(loop, main()) == payload


@pytest.mark.parametrize("pipesize", [4096, 131072, 1048576])
def test_pipesize_honoured(loop, pipesize):
    async def main():
        proc = await asyncio.create_subprocess_exec(
            "cat", stdin=PIPE, stdout=PIPE, stderr=PIPE, pipesize=pipesize)
        sizes = pipe_sizes(proc)
        out, _ = await proc.communicate(b"x" * 300000)
        return sizes, out

    sizes, out = run(loop, main())
    assert sizes == [pipesize] * 3
    assert out == b"x" * 300000


@pytest.fixture
def budget(monkeypatch):
    """Room in pyloop's pipe budget for `n` enlarged pipes beyond those alive."""
    def set_room(n):
        monkeypatch.setattr(_subprocess, "_budget",
                            _subprocess._enlarged_in_use() + n * _subprocess._PIPE_SIZE)
    set_room(2)
    return set_room


def test_child_pipes_enlarged_on_pyloop(pyloop_loop, budget):
    # stdin and stdout, not stderr; the stdlib loop keeps every pipe at the default.
    async def main():
        proc = await asyncio.create_subprocess_exec(
            "cat", stdin=PIPE, stdout=PIPE, stderr=PIPE)
        sizes = pipe_sizes(proc)
        out, _ = await proc.communicate(b"abc")
        return sizes, out

    sizes, out = run(pyloop_loop, main())
    assert sizes == [_subprocess._PIPE_SIZE, _subprocess._PIPE_SIZE, default_pipe_size()]
    assert out == b"abc"


def test_pipe_budget_bounds_enlarged_pipes_and_comes_back(pyloop_loop, budget):
    budget(3)  # one child's two pipes and one more

    async def start():
        return await asyncio.create_subprocess_exec("cat", stdin=PIPE, stdout=PIPE)

    async def main():
        procs = [await start() for _ in range(3)]
        sizes = [pipe_sizes(p)[:2] for p in procs]
        in_use = _subprocess._enlarged_in_use()
        for p in procs:
            p.stdin.close()
            await p.wait()
        await asyncio.sleep(0)
        freed = _subprocess._enlarged_in_use()
        later = await start()
        later_sizes = pipe_sizes(later)[:2]
        later.stdin.close()
        await later.wait()
        return sizes, in_use, freed, later_sizes

    big, small = _subprocess._PIPE_SIZE, default_pipe_size()
    sizes, in_use, freed, later_sizes = run(pyloop_loop, main())
    assert sizes == [[big, big], [big, small], [small, small]]
    assert in_use == _subprocess._budget
    assert freed == _subprocess._budget - 3 * big
    assert later_sizes == [big, big]


def test_pipe_budget_kept_while_the_child_lives(pyloop_loop, budget):
    # The parent's ends closed, the child still running: its pipes still count.
    async def main():
        proc = await asyncio.create_subprocess_exec("sleep", "30", stdin=PIPE, stdout=PIPE)
        proc.stdin.close()
        proc._transport.get_pipe_transport(1).close()
        await asyncio.sleep(0.01)
        kept = _subprocess._enlarged_in_use()
        proc.kill()
        await proc.wait()
        return kept, _subprocess._enlarged_in_use()

    kept, after = run(pyloop_loop, main())
    assert kept == _subprocess._budget
    assert after == _subprocess._budget - 2 * _subprocess._PIPE_SIZE


@pytest.mark.parametrize("failure", [FileNotFoundError, ZeroDivisionError])
def test_pipe_budget_given_back_when_spawn_fails(pyloop_loop, budget, monkeypatch, failure):
    if failure is ZeroDivisionError:
        def boom(*args):
            raise ZeroDivisionError
        monkeypatch.setattr(pyloop._core, "_spawn", boom)
    in_use = _subprocess._enlarged_in_use()
    with pytest.raises(failure):
        run(pyloop_loop, asyncio.create_subprocess_exec("/nonexistent", stdin=PIPE, stdout=PIPE))
    assert _subprocess._enlarged_in_use() == in_use


@pytest.mark.parametrize("how", ["EPERM", "EBUSY", "at the limit"])
def test_enlarging_skipped_when_the_kernel_refuses(pyloop_loop, budget, monkeypatch, how):
    # F_SETPIPE_SZ failing, or a fresh pipe already cut to a page (the user
    # is at pipe-user-pages-soft): the default pipe, nothing taken.
    real = fcntl.fcntl
    spawning = True

    def fake(fd, cmd, *args):
        if spawning and cmd == fcntl.F_SETPIPE_SZ and how != "at the limit":
            raise OSError(getattr(errno, how), os.strerror(getattr(errno, how)))
        if spawning and cmd == fcntl.F_GETPIPE_SZ and how == "at the limit":
            return 4096
        return real(fd, cmd, *args)

    async def main():
        nonlocal spawning
        proc = await asyncio.create_subprocess_exec("cat", stdin=PIPE, stdout=PIPE)
        spawning = False
        sizes = pipe_sizes(proc)[:2]
        out, _ = await proc.communicate(b"z" * 200000)
        return sizes, out

    in_use = _subprocess._enlarged_in_use()
    monkeypatch.setattr(_subprocess.fcntl, "fcntl", fake)
    sizes, out = run(pyloop_loop, main())
    assert sizes == [default_pipe_size()] * 2
    assert out == b"z" * 200000
    assert _subprocess._enlarged_in_use() == in_use


def test_pipe_budget_bounded_by_the_users_pipe_limit():
    # 1/64 of pipe-user-pages-soft, at most 1 MiB.
    with open("/proc/sys/fs/pipe-user-pages-soft") as f:
        pages = int(f.read())
    full = 1024 * 1024
    expected = full if pages == 0 else min(full, pages * os.sysconf("SC_PAGE_SIZE") // 64)
    assert _subprocess._pipe_budget() == expected
