"""pyloop.fs: asynchronous file I/O.

On a pyloop loop every operation is a libuv fs request run on libuv's thread
pool (its size is libuv's: the UV_THREADPOOL_SIZE environment variable, read
once when the pool starts, default 4); the worker does the system call
without the GIL and only the completion comes back to the loop. On any other
loop (the stdlib's, uvloop) the same API runs the os/io calls in the loop's
default executor, so a library can use pyloop.fs whatever loop it runs on.

    import pyloop.fs
    async with pyloop.fs.open("notes.txt", "w") as f:
        await f.write("hello\\n")
    st = await pyloop.fs.stat("notes.txt")

Files opened on a pyloop loop read and write at explicit offsets (pread/
pwrite): the file object keeps the position, so a cancelled call leaves it
where it was. On Linux a read of at most 1 MiB first asks the page cache from
the loop thread (preadv2 with RWF_NOWAIT): cached data is returned without a
thread-pool hop (the await does not suspend), the rest goes to the pool.
PYLOOP_FS_NOWAIT=0 in the environment (read when a file is opened) sends
every read to the pool. `pyloop.fs.os` and `pyloop.fs.os.path` mirror aiofiles.os and
aiofiles.os.path.
"""
import asyncio as _asyncio
import codecs as _codecs
import collections as _collections
import io as _io
import os as _os
import shutil as _shutil
import stat as _stat
import sys as _sys
import time as _time
import types as _types

from . import _core

__all__ = (
    "open", "stat", "lstat", "fstat", "exists", "isfile", "isdir", "islink", "getsize",
    "rename", "replace", "remove", "unlink", "mkdir", "makedirs", "rmdir", "listdir",
    "scandir", "readlink", "realpath", "symlink", "link", "chmod", "utime", "access",
    "copyfile", "sendfile", "fsync", "fdatasync", "read_bytes", "write_bytes", "read_text",
    "write_text", "AsyncBinaryFile", "AsyncTextFile",
)

_CoreLoop = _core.Loop
_READ_ALL_CHUNK = 64 * 1024
_MAX_REQUEST = 1 << 30  # one request moves at most 1 GiB (libuv's buffer length is 32-bit)


def _nowait_wanted():
    """Whether files opened now try the page cache inline (PYLOOP_FS_NOWAIT)."""
    return _os.environ.get("PYLOOP_FS_NOWAIT", "1").strip().lower() not in (
        "0", "false", "no", "off")


_loop = _asyncio.get_running_loop
_running = _asyncio._get_running_loop  # None instead of raising


async def _submit(fn, loop, *args):
    """Run one libuv fs request and return its result. An interrupted await
    (cancellation) takes the request out of the pool if it is still queued."""
    req = fn(loop, *args)
    try:
        return await req.future
    except BaseException:
        req.cancel()
        raise


def _paths(path):
    """(the path for libuv, the object an OSError names): os names the
    fspath of what the caller passed; the C side encodes a str as
    os.fsencode does."""
    p = path if type(path) is str else _os.fspath(path)
    return p, p


def _fd_of(f):
    if isinstance(f, int):
        return f
    if hasattr(f, "fileno"):
        return f.fileno()
    raise TypeError(f"argument must be an int, or have a fileno() method, not {type(f).__name__}")


# ---- module functions ---------------------------------------------------------
#
# Coroutine functions, as aiofiles' are (create_task and TaskGroup take what
# they return, nothing starts before the await, errors arise at the await).
# On a pyloop loop each awaits the Future that one C call (fs_<verb>_f) makes
# with its request: no request object for Python to keep, and the Future's
# done callback takes a cancelled request back from the pool. On other loops
# they await run_in_executor's Future.

def _executor(loop, fn, *args):
    return loop.run_in_executor(None, fn, *args)


def _done(loop, value):
    """An already resolved Future (an answer known without any I/O)."""
    fut = loop.create_future()
    fut.set_result(value)
    return fut


async def stat(path, *, dir_fd=None, follow_symlinks=True):
    """os.stat(), as a libuv request."""
    loop = _running()
    if isinstance(loop, _CoreLoop) and dir_fd is None:
        if isinstance(path, int):
            return await _core.fs_fstat_f(loop, path)
        p = path if type(path) is str else _os.fspath(path)
        return await (_core.fs_stat_f if follow_symlinks else _core.fs_lstat_f)(loop, p, p)
    return await _executor(loop, lambda: _os.stat(path, dir_fd=dir_fd,
                                            follow_symlinks=follow_symlinks))


async def lstat(path, *, dir_fd=None):
    return await stat(path, dir_fd=dir_fd, follow_symlinks=False)


async def fstat(fd):
    loop = _running()
    if isinstance(loop, _CoreLoop):
        return await _core.fs_fstat_f(loop, _fd_of(fd))
    return await _executor(loop, _os.fstat, fd)


# fs_stattest's questions (csrc/fs.c's pl_fs_test) and their os.path twins.
_TEST_EXISTS, _TEST_ISFILE, _TEST_ISDIR, _TEST_ISLINK = 1, 2, 3, 4
_TEST_FALLBACK = {_TEST_EXISTS: _os.path.exists, _TEST_ISFILE: _os.path.isfile,
                  _TEST_ISDIR: _os.path.isdir, _TEST_ISLINK: _os.path.islink}


def _stat_test(path, test):
    """One stat (lstat for islink) answered in C with a bool: False for any
    OSError, as os.path's predicates."""
    loop = _running()
    if isinstance(loop, _CoreLoop) and not isinstance(path, int):
        try:
            p = path if type(path) is str else _os.fspath(path)
            return _core.fs_stattest_f(loop, p, p, test)
        except ValueError:  # embedded null byte, unencodable: os.path says False
            return _done(loop, False)
    return _executor(loop, _TEST_FALLBACK[test], path)


async def exists(path):
    return await _stat_test(path, _TEST_EXISTS)


async def isfile(path):
    return await _stat_test(path, _TEST_ISFILE)


async def isdir(path):
    return await _stat_test(path, _TEST_ISDIR)


async def islink(path):
    return await _stat_test(path, _TEST_ISLINK)


async def getsize(path):
    return (await stat(path)).st_size


async def getmtime(path):
    return (await stat(path)).st_mtime


async def getatime(path):
    return (await stat(path)).st_atime


async def getctime(path):
    return (await stat(path)).st_ctime


def _path_op(native, fallback, path, *extra):
    loop = _running()
    if isinstance(loop, _CoreLoop):
        p = path if type(path) is str else _os.fspath(path)
        return native(loop, p, p, *extra)
    return _executor(loop, fallback, path, *extra)


def _two_path_op(native, fallback, src, dst, *extra):
    loop = _running()
    if isinstance(loop, _CoreLoop):
        ps = src if type(src) is str else _os.fspath(src)
        pd = dst if type(dst) is str else _os.fspath(dst)
        return native(loop, ps, pd, ps, pd, *extra)
    return _executor(loop, fallback, src, dst)


async def rename(src, dst):
    """os.rename()."""
    return await _two_path_op(_core.fs_rename_f, _os.rename, src, dst)


async def replace(src, dst):
    """os.replace(): rename(2) replaces on POSIX, as os.replace does."""
    return await _two_path_op(_core.fs_rename_f, _os.replace, src, dst)


async def remove(path):
    return await _path_op(_core.fs_unlink_f, _os.remove, path)


unlink = remove


async def rmdir(path):
    return await _path_op(_core.fs_rmdir_f, _os.rmdir, path)


async def mkdir(path, mode=0o777):
    return await _path_op(_core.fs_mkdir_f, _os.mkdir, path, mode)


async def makedirs(name, mode=0o777, exist_ok=False):
    """os.makedirs(): the missing parents first (with the default mode, as
    os.makedirs), then the leaf."""
    name = _os.fspath(name)
    head, tail = _os.path.split(name)
    if not tail:
        head, tail = _os.path.split(head)
    if head and tail and not await exists(head):
        try:
            await makedirs(head, exist_ok=exist_ok)
        except FileExistsError:
            pass  # made meanwhile by someone else
        cdir = _os.curdir if isinstance(tail, str) else _os.curdir.encode()
        if tail == cdir:
            return
    try:
        await mkdir(name, mode)
    except OSError:
        if not exist_ok or not await isdir(name):
            raise


async def _scan(path):
    loop = _loop()
    b, p = _paths(path)
    return p, await _submit(_core.fs_scandir, loop, b, p)


async def listdir(path="."):
    """os.listdir(): names as str, or bytes when path is bytes."""
    loop = _loop()
    if not isinstance(loop, _CoreLoop) or isinstance(path, int):
        return await loop.run_in_executor(None, _os.listdir, path)
    p, entries = await _scan(path)
    if isinstance(p, bytes):
        return [name for name, _ in entries]
    return [_os.fsdecode(name) for name, _ in entries]


_DIRENT_FILE, _DIRENT_DIR, _DIRENT_LINK = 1, 2, 3


class DirEntry:
    """What scandir() yields: os.DirEntry's interface. The type comes from
    the directory listing; stat() and a type the listing did not know ask the
    file system (synchronously, as os.DirEntry does)."""

    __slots__ = ("name", "path", "_type", "_stat", "_lstat")

    def __init__(self, directory, name, kind):
        self.name = name
        self.path = _os.path.join(directory, name)
        self._type = kind
        self._stat = self._lstat = None

    def __fspath__(self):
        return self.path

    def __repr__(self):
        return f"<DirEntry {self.name!r}>"

    def stat(self, *, follow_symlinks=True):
        if follow_symlinks:
            if self._stat is None:
                self._stat = _os.stat(self.path)
            return self._stat
        if self._lstat is None:
            self._lstat = _os.lstat(self.path)
        return self._lstat

    def inode(self):
        return self.stat(follow_symlinks=False).st_ino

    def is_symlink(self):
        if self._type in (_DIRENT_FILE, _DIRENT_DIR):
            return False
        if self._type == _DIRENT_LINK:
            return True
        try:
            return _stat.S_ISLNK(self.stat(follow_symlinks=False).st_mode)
        except FileNotFoundError:
            return False

    def _is(self, kind, test, follow_symlinks):
        if self._type == kind:
            return True
        if self._type not in (0, _DIRENT_LINK) or (self._type == _DIRENT_LINK and
                                                    not follow_symlinks):
            return False
        try:
            return test(self.stat(follow_symlinks=follow_symlinks).st_mode)
        except FileNotFoundError:
            return False

    def is_dir(self, *, follow_symlinks=True):
        return self._is(_DIRENT_DIR, _stat.S_ISDIR, follow_symlinks)

    def is_file(self, *, follow_symlinks=True):
        return self._is(_DIRENT_FILE, _stat.S_ISREG, follow_symlinks)


async def scandir(path="."):
    """os.scandir() as a list of DirEntry (one libuv scandir request); on
    another loop, the list of os.DirEntry."""
    loop = _loop()
    if not isinstance(loop, _CoreLoop) or isinstance(path, int):
        return await loop.run_in_executor(None, lambda: list(_os.scandir(path)))
    p, entries = await _scan(path)
    if isinstance(p, bytes):
        return [DirEntry(p, name, kind) for name, kind in entries]
    return [DirEntry(p, _os.fsdecode(name), kind) for name, kind in entries]


async def readlink(path):
    r = await _path_op(_core.fs_readlink_f, _os.readlink, path)
    if isinstance(r, bytes) and not isinstance(_os.fspath(path), bytes):
        return _os.fsdecode(r)
    return r


async def realpath(path):
    """The canonical path (realpath(3)): unlike os.path.realpath, a missing
    path raises."""
    r = await _path_op(_core.fs_realpath_f, _os.path.realpath, path)
    if isinstance(r, bytes) and not isinstance(_os.fspath(path), bytes):
        return _os.fsdecode(r)
    return r


async def symlink(src, dst, target_is_directory=False):
    return await _two_path_op(_core.fs_symlink_f, _os.symlink, src, dst, 0)


async def link(src, dst):
    return await _two_path_op(_core.fs_link_f, _os.link, src, dst)


async def chmod(path, mode):
    loop = _running()
    if isinstance(path, int):
        if isinstance(loop, _CoreLoop):
            return await _core.fs_fchmod_f(loop, path, mode)
        return await _executor(loop, _os.chmod, path, mode)
    return await _path_op(_core.fs_chmod_f, _os.chmod, path, mode)


async def utime(path, times=None, *, ns=None, follow_symlinks=True):
    """os.utime(). libuv takes the times as float seconds: sub-microsecond
    parts of ns= may round."""
    loop = _running()
    if not isinstance(loop, _CoreLoop):
        kw = {} if ns is None else {"ns": ns}
        return await _executor(loop, lambda: _os.utime(path, times, follow_symlinks=follow_symlinks,
                                                 **kw))
    if times is not None and ns is not None:
        raise ValueError("utime: you may specify either 'times' or 'ns' but not both")
    if ns is not None:
        atime, mtime = ns[0] / 1e9, ns[1] / 1e9
    elif times is not None:
        atime, mtime = times
    else:
        atime = mtime = _time.time()
    if isinstance(path, int):
        return await _core.fs_futime_f(loop, path, float(atime), float(mtime))
    fn = _core.fs_utime_f if follow_symlinks else _core.fs_lutime_f
    return await _path_op(fn, None, path, float(atime), float(mtime))


async def access(path, mode):
    """os.access(): True or False."""
    return await _path_op(_core.fs_access_f, _os.access, path, mode)


async def copyfile(src, dst):
    """shutil.copyfile() (contents only; dst is replaced); returns dst.
    libuv copies with copy_file_range/sendfile in the worker."""
    loop = _loop()
    if not isinstance(loop, _CoreLoop):
        return await loop.run_in_executor(None, _shutil.copyfile, src, dst)
    await _two_path_op(_core.fs_copyfile_f, None, src, dst, 0)
    return dst


async def sendfile(out_fd, in_fd, offset, count):
    """os.sendfile(out_fd, in_fd, offset, count): bytes sent."""
    loop = _running()
    if not isinstance(loop, _CoreLoop):
        return await _executor(loop, _os.sendfile, out_fd, in_fd, offset, count)
    return await _core.fs_sendfile_f(loop, out_fd, in_fd, offset, count)


async def fsync(fd):
    loop = _running()
    if not isinstance(loop, _CoreLoop):
        return await _executor(loop, _os.fsync, fd)
    return await _core.fs_fsync_f(loop, _fd_of(fd))


async def fdatasync(fd):
    loop = _running()
    if not isinstance(loop, _CoreLoop):
        return await _executor(loop, _os.fdatasync, fd)
    return await _core.fs_fdatasync_f(loop, _fd_of(fd))


def _read_file(path):
    with _io.open(path, "rb") as f:
        return f.read()


def _write_file(path, view):
    with _io.open(path, "wb") as f:
        return f.write(view)


async def read_bytes(path):
    """pathlib.Path(path).read_bytes(). On pyloop one thread-pool job opens,
    sizes, reads and closes the file."""
    loop = _running()
    if isinstance(loop, _CoreLoop):
        p = path if type(path) is str else _os.fspath(path)
        return await _core.fs_readfile_f(loop, p, p)
    return await _executor(loop, _read_file, path)  # one executor job, as on pyloop


async def write_bytes(path, data):
    """pathlib.Path(path).write_bytes(data): the number of bytes written. On
    pyloop one thread-pool job opens, writes and closes the file (it holds
    data's buffer until then)."""
    loop = _running()
    if isinstance(loop, _CoreLoop):
        p = path if type(path) is str else _os.fspath(path)
        if type(data) is not bytes:
            data = memoryview(data).cast("B")
        return await _core.fs_writefile_f(loop, p, p, data)
    return await _executor(loop, _write_file, path, memoryview(data))


def _text_codec(encoding, errors, newline, data=None):
    """io.TextIOWrapper over a BytesIO: open()'s rules for the encoding's
    default, BOMs, errors and newline translation, applied in memory."""
    return _io.TextIOWrapper(_io.BytesIO(data if data is not None else b""),
                             encoding=encoding, errors=errors, newline=newline)


async def read_text(path, encoding=None, errors=None, newline=None):
    loop = _loop()
    if type(loop) is _CoreLoop or isinstance(loop, _CoreLoop):
        _text_codec(encoding, errors, newline)  # bad arguments fail before any I/O
        return _text_codec(encoding, errors, newline, await read_bytes(path)).read()
    async with open(path, "r", encoding=encoding, errors=errors, newline=newline) as f:
        return await f.read()


async def write_text(path, data, encoding=None, errors=None, newline=None):
    if not isinstance(data, str):
        raise TypeError(f"data must be str, not {type(data).__name__}")
    loop = _loop()
    if type(loop) is _CoreLoop or isinstance(loop, _CoreLoop):
        w = _text_codec(encoding, errors, newline)
        w.write(data)
        w.flush()
        await write_bytes(path, w.buffer.getvalue())
        return len(data)
    async with open(path, "w", encoding=encoding, errors=errors, newline=newline) as f:
        return await f.write(data)


# ---- open() ---------------------------------------------------------------------

def _parse_mode(mode, buffering, encoding, errors, newline):
    """open()'s argument checks; returns (flags, text, readable, writable, append)."""
    if not isinstance(mode, str):
        raise TypeError(f"open() argument 'mode' must be str, not {type(mode).__name__}")
    modes = set(mode)
    if modes - set("axrwb+t") or len(mode) > len(modes):
        raise ValueError(f"invalid mode: {mode!r}")
    creating, reading, writing, appending = ("x" in modes, "r" in modes, "w" in modes,
                                             "a" in modes)
    updating, text, binary = "+" in modes, "t" in modes, "b" in modes
    if text and binary:
        raise ValueError("can't have text and binary mode at once")
    if creating + reading + writing + appending != 1:
        raise ValueError("must have exactly one of create/read/write/append mode")
    if binary and encoding is not None:
        raise ValueError("binary mode doesn't take an encoding argument")
    if binary and errors is not None:
        raise ValueError("binary mode doesn't take an errors argument")
    if binary and newline is not None:
        raise ValueError("binary mode doesn't take a newline argument")
    if binary and buffering == 1:
        import warnings
        warnings.warn("line buffering (buffering=1) isn't supported in binary mode, the "
                      "default buffer size will be used", RuntimeWarning, 3)
    if not binary and buffering == 0:
        raise ValueError("can't have unbuffered text I/O")
    if newline not in (None, "", "\n", "\r", "\r\n"):
        if not isinstance(newline, str):
            raise TypeError(f"open() argument 'newline' must be str or None, not "
                            f"{type(newline).__name__}")
        raise ValueError(f"illegal newline value: {newline}")
    if updating:
        flags = _os.O_RDWR
    elif reading:
        flags = _os.O_RDONLY
    else:
        flags = _os.O_WRONLY
    if writing:
        flags |= _os.O_CREAT | _os.O_TRUNC
    elif creating:
        flags |= _os.O_CREAT | _os.O_EXCL
    elif appending:
        flags |= _os.O_CREAT | _os.O_APPEND
    flags |= getattr(_os, "O_CLOEXEC", 0)
    return (flags, not binary, reading or updating, writing or creating or appending or updating,
            appending)


_FILEIO_KEEPS_W = _sys.version_info >= (3, 15)


def _binary_mode_name(mode):
    """The mode a binary io file reports: io.FileIO's normal form, so
    open(p, "w+b").mode is what the built-in open() reports."""
    plus = "+" if "+" in mode else ""
    for kind in "xa":
        if kind in mode:
            return kind + "b" + plus
    if plus:
        # 3.15's FileIO keeps "w" for a truncating update mode ("wb+");
        # earlier ones report every update mode as "rb+".
        return "wb+" if "w" in mode and _FILEIO_KEEPS_W else "rb+"
    return "rb" if "r" in mode else "wb"


class _Opening:
    """What open() returns: awaitable (the file) and an async context manager
    (the file, closed at the end), as aiofiles' open()."""

    __slots__ = ("_coro", "_file")

    def __init__(self, coro):
        self._coro = coro
        self._file = None

    def __await__(self):
        return self._coro.__await__()

    async def __aenter__(self):
        self._file = await self._coro
        return self._file

    async def __aexit__(self, *exc):
        await self._file.close()
        self._file = None


def open(file, mode="r", buffering=-1, encoding=None, errors=None, newline=None,
         closefd=True, opener=None):
    """open() with the built-in's arguments and semantics, giving an async
    file object (AsyncBinaryFile or AsyncTextFile on pyloop; on other loops an
    executor-backed wrapper of the io object)."""
    return _Opening(_open(file, mode, buffering, encoding, errors, newline, closefd, opener))


async def _open(file, mode, buffering, encoding, errors, newline, closefd, opener):
    loop = _loop()
    if not isinstance(loop, _CoreLoop):
        f = await loop.run_in_executor(
            None, lambda: _io.open(file, mode, buffering, encoding, errors, newline, closefd,
                                   opener))
        return _ExecutorFile(f, loop)
    flags, text, readable, writable, append = _parse_mode(mode, buffering, encoding, errors,
                                                          newline)
    if not isinstance(file, int):
        file = _os.fspath(file)
        if not isinstance(file, (str, bytes)):
            raise TypeError(f"expected str, bytes or os.PathLike object, not "
                            f"{type(file).__name__}")
    if isinstance(file, (str, bytes)) and not closefd:
        raise ValueError("Cannot use closefd=False with file name")
    if isinstance(file, bool):
        import warnings
        warnings.warn("bool is used as a file descriptor", RuntimeWarning, 2)
    if isinstance(file, int):
        if file < 0:
            raise ValueError("negative file descriptor")
        fd = file
    elif opener is not None:
        fd = await loop.run_in_executor(None, opener, file, flags)
        if not isinstance(fd, int):
            raise TypeError("expected integer from opener")
        if fd < 0:
            raise ValueError(f"opener returned {fd}")
    else:
        # open(2) and fstat(2) in one thread-pool job.
        fd, st_mode, st_blksize, st_size = await _open_fd(loop, file, flags)
    owned = closefd
    try:
        if isinstance(file, int) or opener is not None:
            st = await _submit(_core.fs_fstat, loop, fd)
            st_mode, st_blksize = st.st_mode, st.st_blksize
        if _stat.S_ISDIR(st_mode):
            raise IsADirectoryError(21, _os.strerror(21), file)
        if buffering < 0 or buffering == 1:
            bufsize = st_blksize if st_blksize > 1 else _io.DEFAULT_BUFFER_SIZE
        else:
            bufsize = buffering
        raw = AsyncBinaryFile(loop, fd, file, mode, readable, writable, append, closefd,
                              buffering == 0, bufsize, _stat.S_ISREG(st_mode))
        if opener is None and not isinstance(file, int):
            raw._size_hint = st_size
        owned = False
    finally:
        if owned:
            _os.close(fd)
    if not text:
        raw.mode = _binary_mode_name(mode)
        return raw
    try:
        return AsyncTextFile(raw, encoding, errors, newline, buffering == 1, mode)
    except BaseException:
        await raw.close()
        raise


async def _open_fd(loop, file, flags):
    req = _core.fs_openstat(loop, file, file, flags, 0o666)
    fut = req.future
    try:
        return await fut
    except BaseException:
        req.cancel()
        # Cancelled after the open succeeded but before this coroutine ran
        # again (the task throws CancelledError in, the result unread):
        # nobody else will close the descriptor.
        if fut.done() and not fut.cancelled() and fut.exception() is None:
            _os.close(fut.result()[0])
        raise


class _FileLock:
    """asyncio.Lock's first-come-first-served exclusion for one file's
    operations, where taking a free lock is a flag test: the common case (a
    file nobody else is using) then costs no coroutine and no Future. A
    release hands the lock straight to the next waiter (busy stays set)."""

    __slots__ = ("busy", "_waiters")

    def __init__(self):
        self.busy = False
        self._waiters = _collections.deque()

    def locked(self):
        return self.busy

    def take(self):
        """Take the lock if it is free (True): the caller awaits acquire()
        only when this says False."""
        if self.busy:
            return False
        self.busy = True
        return True

    async def acquire(self):
        if not self.busy:
            self.busy = True
            return True
        fut = _loop().create_future()
        self._waiters.append(fut)
        try:
            await fut
        except BaseException:
            if fut.done() and not fut.cancelled():
                self.release()  # handed over, then cancelled: pass it on
            else:
                try:
                    self._waiters.remove(fut)
                except ValueError:
                    pass
            raise
        return True

    def release(self):
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                return
        self.busy = False

    __aenter__ = acquire

    async def __aexit__(self, *exc):
        self.release()


class AsyncBinaryFile:
    """A binary file on a pyloop loop. Reads and writes are libuv requests
    at the position this object keeps (pread/pwrite; the descriptor's own
    offset is used only where pread does not apply: pipes, O_APPEND writes).
    Operations on one file are serialised, as io's lock serialises them."""

    def __init__(self, loop, fd, name, mode, readable, writable, append, closefd, raw,
                 bufsize, regular):
        self._loop = loop
        self._fd = fd
        self.name = name
        self.mode = mode
        self._readable = readable
        self._writable = writable
        self._append = append
        self._closefd = closefd
        self._raw = raw
        self._bufsize = bufsize
        self._regular = regular
        self._rbuf = b""     # bytes read ahead (readline, peek); _pos is past them
        self._closed = False
        self._lock = _FileLock()
        self._reqs = set()   # requests libuv may still hold (cancelled ones)
        # The size open() saw: a first read() to the end asks for that much
        # (+1) without an fstat request. Only a hint: a read to the end goes
        # on until a short read, whatever the file became meanwhile.
        self._size_hint = None
        try:
            self._pos = _os.lseek(fd, 0, _os.SEEK_END if append else _os.SEEK_CUR)
            self._seekable = True
        except OSError:
            self._pos = 0
            self._seekable = False
        # Reads at an offset ask the page cache first (csrc/fs.c,
        # pl_fs_read_inline) until the file system says it cannot answer so.
        self._nowait = self._seekable and _nowait_wanted()

    # -- plumbing
    def _check(self, *, reading=False, writing=False):
        if self._closed:
            raise ValueError("I/O operation on closed file.")
        if reading and not self._readable:
            raise _io.UnsupportedOperation("read")
        if writing and not self._writable:
            raise _io.UnsupportedOperation("write")

    async def _req(self, fn, *args):
        req = fn(self._loop, *args)
        try:
            return await req.future
        except BaseException:
            self._abandon(req)
            raise

    def _abandon(self, req):
        """An await of req was interrupted: take it back from the pool if
        still queued; a worker still running it is waited for by close()."""
        req.cancel()
        if req.pending:
            self._reqs.add(req)

    def _offset(self):
        return self._pos if self._seekable else -1

    async def _pread(self, n):
        data = _core.fs_read(self._loop, self._fd, min(n, _MAX_REQUEST), self._offset(),
                             self._nowait)
        if type(data) is not bytes:  # not all in the page cache: a pool request
            data = await self._pooled(data)
        self._pos += len(data)
        return data

    async def _pooled(self, req):
        """The result of a read the page cache could not answer."""
        if req.refused:
            self._nowait = False
        try:
            return await req.future
        except BaseException:
            self._abandon(req)
            raise

    def _drop_readahead(self):
        self._pos -= len(self._rbuf)
        self._rbuf = b""

    # -- attributes
    @property
    def closed(self):
        return self._closed

    def fileno(self):
        self._check()
        return self._fd

    def readable(self):
        self._check()
        return self._readable

    def writable(self):
        self._check()
        return self._writable

    def seekable(self):
        self._check()
        return self._seekable

    def isatty(self):
        self._check()
        return _os.isatty(self._fd)

    @property
    def raw(self):
        return self

    def __repr__(self):
        return f"<pyloop.fs.AsyncBinaryFile name={self.name!r} mode={self.mode!r}>"

    # -- reading
    async def read(self, size=-1):
        # The hot path of small reads: the lock's flag and the read inline
        # here (a cached answer comes back from the C call; see
        # docs/performance.md).
        self._check(reading=True)
        if size is None:
            size = -1
        lock = self._lock
        if lock.busy:  # take() inline: ~500 instructions of a 4 KiB read
            await lock.acquire()
        else:
            lock.busy = True
        try:
            if size < 0:
                return await self._read_all()
            if self._rbuf:
                if len(self._rbuf) >= size:
                    data, self._rbuf = self._rbuf[:size], self._rbuf[size:]
                    return data
                parts = [self._rbuf]
                size -= len(self._rbuf)
                self._rbuf = b""
            else:
                parts = []
            while size > 0:
                chunk = _core.fs_read(self._loop, self._fd, min(size, _MAX_REQUEST),
                                      self._pos if self._seekable else -1, self._nowait)
                if type(chunk) is not bytes:  # not all in the page cache: the pool
                    req = chunk
                    if req.refused:
                        self._nowait = False
                    try:
                        chunk = await req.future
                    except BaseException:
                        self._abandon(req)
                        raise
                if not chunk:
                    break
                self._pos += len(chunk)
                parts.append(chunk)
                size -= len(chunk)
                if self._raw:
                    break
            if len(parts) == 1:
                return parts[0]
            return b"".join(parts)
        finally:
            lock.release()

    async def _read_all(self):
        parts = [self._rbuf]
        self._rbuf = b""
        want = _READ_ALL_CHUNK
        if self._regular and self._seekable:
            size, self._size_hint = self._size_hint, None
            if size is None:
                size = (await self._req(_core.fs_fstat, self._fd)).st_size
            # one more byte than the size sees EOF in the same request
            want = max(size - self._pos, 0) + 1
        while True:
            chunk = await self._pread(want)
            if not chunk:
                break
            parts.append(chunk)
            if self._regular and len(chunk) < min(want, _MAX_REQUEST):
                break  # a regular file's short read is its end: no empty read to confirm
            want = max(want, _READ_ALL_CHUNK)
        return b"".join(parts)

    async def readall(self):
        return await self.read(-1)

    async def read1(self, size=-1):
        self._check(reading=True)
        async with self._lock:
            if size is None or size < 0:
                # buffering=0 has no buffer size: one read of io's default size, as a buffered
                # reader's read1() makes at most.
                size = self._bufsize or _io.DEFAULT_BUFFER_SIZE
            if self._rbuf:
                data, self._rbuf = self._rbuf[:size], self._rbuf[size:]
                return data
            if size == 0:
                return b""
            return await self._pread(size)

    async def peek(self, size=0):
        self._check(reading=True)
        async with self._lock:
            if not self._rbuf:
                self._rbuf = await self._pread(self._bufsize or _io.DEFAULT_BUFFER_SIZE)
            return self._rbuf

    async def readinto(self, b):
        self._check(reading=True)
        view = memoryview(b).cast("B")
        async with self._lock:
            n = 0
            if self._rbuf:
                n = min(len(self._rbuf), len(view))
                view[:n] = self._rbuf[:n]
                self._rbuf = self._rbuf[n:]
            while n < len(view):
                got = _core.fs_readinto(self._loop, self._fd, view[n:n + _MAX_REQUEST],
                                        self._offset(), self._nowait)
                if type(got) is not int:
                    got = await self._pooled(got)
                self._pos += got
                n += got
                if got == 0 or self._raw:
                    break
            return n

    async def readinto1(self, b):
        return await self.readinto(b)

    async def readline(self, size=-1):
        self._check(reading=True)
        if size is None:
            size = -1
        async with self._lock:
            return await self._readline(size)

    async def _readline(self, size):
        buf = self._rbuf
        start = 0
        while True:
            i = buf.find(b"\n", start)
            if i >= 0 and (size < 0 or i < size):
                line, self._rbuf = buf[:i + 1], buf[i + 1:]
                return line
            if 0 <= size <= len(buf):
                line, self._rbuf = buf[:size], buf[size:]
                return line
            start = len(buf)
            # buffering=0 keeps no buffer size: a line still reads in chunks
            chunk = await self._pread(self._bufsize or _io.DEFAULT_BUFFER_SIZE)
            if not chunk:
                self._rbuf = b""
                return buf
            buf += chunk
            self._rbuf = buf

    async def readlines(self, hint=-1):
        self._check(reading=True)
        lines, total = [], 0
        async with self._lock:
            while True:
                line = await self._readline(-1)
                if not line:
                    break
                lines.append(line)
                total += len(line)
                if hint is not None and 0 < hint <= total:
                    break
        return lines

    def __aiter__(self):
        return self

    async def __anext__(self):
        line = await self.readline()
        if not line:
            raise StopAsyncIteration
        return line

    # -- writing
    async def write(self, b):
        self._check(writing=True)
        if isinstance(b, str):
            raise TypeError(f"a bytes-like object is required, not '{type(b).__name__}'")
        view = memoryview(b).cast("B")
        lock = self._lock
        if not lock.take():
            await lock.acquire()
        try:
            if self._rbuf:
                self._drop_readahead()
            total = 0
            while True:
                off = -1 if (self._append or not self._seekable) else self._pos
                req = _core.fs_write(self._loop, self._fd,
                                     view if total == 0 and len(view) <= _MAX_REQUEST
                                     else view[total:total + _MAX_REQUEST], off)
                try:
                    n = await req.future
                except BaseException:
                    self._abandon(req)
                    raise
                total += n
                if self._append and self._seekable:
                    self._pos = _os.lseek(self._fd, 0, _os.SEEK_CUR)
                else:
                    self._pos += n
                if self._raw or total >= len(view):
                    return total
        finally:
            lock.release()

    async def writelines(self, lines):
        for line in lines:
            await self.write(line)

    async def flush(self):
        # Writes are not buffered here: each write() reached the kernel.
        self._check()

    # -- positioning
    async def tell(self):
        self._check()
        if not self._seekable:
            raise OSError(29, "Illegal seek")
        return self._pos - len(self._rbuf)

    async def seek(self, offset, whence=0):
        self._check()
        if whence not in (0, 1, 2, 3, 4):
            raise ValueError(f"whence value {whence} unsupported")
        async with self._lock:
            if whence == 1:
                offset += self._pos - len(self._rbuf)
                whence = 0
            self._rbuf = b""
            # The kernel checks the target; its offset follows ours from here.
            self._pos = _os.lseek(self._fd, offset, whence)
            return self._pos

    async def truncate(self, size=None):
        self._check(writing=True)
        async with self._lock:
            if size is None:
                size = self._pos - len(self._rbuf)
            await self._req(_core.fs_ftruncate, self._fd, size)
            return size

    # -- closing
    async def close(self):
        if self._closed:
            return
        self._closed = True
        # A request a cancelled call left running must finish before the
        # descriptor number can be reused by another open.
        for req in list(self._reqs):
            req.cancel()
            fut = req.finished()
            if fut is not None:
                await fut
        self._reqs.clear()
        lock = self._lock
        if not lock.take():
            await lock.acquire()
        try:
            if not self._closefd:
                if self._seekable:  # the descriptor's offset where ours is
                    _os.lseek(self._fd, self._pos - len(self._rbuf), 0)
                return
            # Never taken back with uv_cancel: a close the caller stopped
            # waiting for still has to happen, or the descriptor leaks.
            await _core.fs_close(self._loop, self._fd).future
        finally:
            lock.release()

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.close()

    def __del__(self):
        if not getattr(self, "_closed", True) and self._closefd:
            import warnings
            warnings.warn(f"unclosed file {self!r}", ResourceWarning, source=self)
            try:
                _os.close(self._fd)
            except OSError:
                pass


class AsyncTextFile:
    """io.TextIOWrapper's semantics over an AsyncBinaryFile: an incremental
    decoder (with io's newline decoder for universal newlines) on the read
    side, an incremental encoder and newline translation on the write side."""

    _CHUNK = 8192

    def __init__(self, buffer, encoding, errors, newline, line_buffering, mode):
        # io's own rules pick the default encoding (locale, UTF-8 mode).
        probe = _io.TextIOWrapper(_io.BytesIO(), encoding=encoding, errors=errors,
                                  newline=newline)
        self.encoding = probe.encoding
        self.errors = probe.errors
        probe.detach()
        self.buffer = buffer
        self.mode = mode
        self.line_buffering = line_buffering
        self._newline = newline
        self._decoder = None
        self._encoder = None
        self._dbuf = ""           # decoded, not yet returned
        self._snap = None         # (byte position, decoder state) where _dbuf's bytes began
        self._snap_bytes = b""    # the bytes decoded since _snap
        self._consumed = 0        # chars of what those bytes decoded already returned
        self._eof = False
        self._info = _codecs.lookup(self.encoding)

    # -- attributes
    name = property(lambda self: self.buffer.name)
    closed = property(lambda self: self.buffer.closed)

    @property
    def newlines(self):
        return getattr(self._decoder, "newlines", None) if self._decoder else None

    def fileno(self):
        return self.buffer.fileno()

    def readable(self):
        return self.buffer.readable()

    def writable(self):
        return self.buffer.writable()

    def seekable(self):
        return self.buffer.seekable()

    def isatty(self):
        return self.buffer.isatty()

    def __repr__(self):
        return (f"<pyloop.fs.AsyncTextFile name={self.name!r} mode={self.mode!r} "
                f"encoding={self.encoding!r}>")

    # -- decoding
    def _make_decoder(self):
        dec = self._info.incrementaldecoder(self.errors)
        if self._newline is None or self._newline == "":
            dec = _io.IncrementalNewlineDecoder(dec, translate=self._newline is None)
        self._decoder = dec
        return dec

    def _reset_read(self):
        self._dbuf = ""
        self._snap = None
        self._snap_bytes = b""
        self._consumed = 0
        self._eof = False
        if self._decoder is not None:
            self._decoder.reset()

    async def _fill(self):
        """Decode one more chunk into _dbuf; False at EOF."""
        dec = self._decoder or self._make_decoder()
        if self._snap is None or not self._dbuf:
            # _dbuf is empty: the snapshot restarts at the current byte.
            self._snap = (await self.buffer.tell() if self.buffer._seekable else 0,
                          dec.getstate())
            self._snap_bytes = b""
            self._consumed = 0
        chunk = await self.buffer.read1(self._CHUNK)
        self._snap_bytes += chunk
        text = dec.decode(chunk, final=not chunk)
        self._dbuf += text
        if not chunk:
            self._eof = True
        return bool(chunk)

    def _take(self, n):
        out, self._dbuf = self._dbuf[:n], self._dbuf[n:]
        self._consumed += len(out)
        return out

    async def read(self, size=-1):
        self.buffer._check(reading=True)
        if size is None:
            size = -1
        if size < 0:
            dec = self._decoder or self._make_decoder()
            data = await self.buffer.read()
            text = self._dbuf + dec.decode(data, final=True)
            self._reset_read()
            return text
        while len(self._dbuf) < size and not self._eof:
            await self._fill()
        out = self._take(size)
        if self._eof and not self._dbuf:
            self._eof = False  # a later read asks the file again
        return out

    def _line_end(self, start):
        """Index just past the first line end in _dbuf at or after start, or -1."""
        buf, nl = self._dbuf, self._newline
        if nl is None or nl == "\n":
            i = buf.find("\n", start)
            return i + 1 if i >= 0 else -1
        if nl == "":
            i = buf.find("\n", start)
            j = buf.find("\r", start, i if i >= 0 else len(buf))
            if j >= 0:
                if j + 1 < len(buf):
                    return j + 2 if buf[j + 1] == "\n" else j + 1
                # a trailing \r: the newline decoder let it out, so the data
                # after it is known (EOF, or it was not followed by \n)
                return j + 1
            return i + 1 if i >= 0 else -1
        i = buf.find(nl, start)
        return i + len(nl) if i >= 0 else -1

    async def readline(self, size=-1):
        self.buffer._check(reading=True)
        if size is None:
            size = -1
        start = 0
        while True:
            end = self._line_end(start)
            if end >= 0 and (size < 0 or end <= size):
                return self._take(end)
            if 0 <= size <= len(self._dbuf):
                return self._take(size)
            if self._eof:
                self._eof = False
                return self._take(len(self._dbuf))
            # "\r\n" may be split across chunks: look again from one back
            start = max(len(self._dbuf) - 1, 0)
            await self._fill()

    async def readlines(self, hint=-1):
        lines, total = [], 0
        while True:
            line = await self.readline()
            if not line:
                return lines
            lines.append(line)
            total += len(line)
            if hint is not None and 0 < hint <= total:
                return lines

    def __aiter__(self):
        return self

    async def __anext__(self):
        line = await self.readline()
        if not line:
            raise StopAsyncIteration
        return line

    # -- positioning
    async def tell(self):
        self.buffer._check()
        if not self.buffer._seekable:
            raise _io.UnsupportedOperation("underlying stream is not seekable")
        if self._snap is None or (not self._dbuf and self._decoder is not None and
                                  self._clean(self._decoder.getstate())):
            return await self.buffer.tell()
        pos, state = self._snap
        if self._consumed == 0:
            return self._cookie(pos, state)
        # Replay the bytes since the snapshot until they decode to what was
        # returned: that byte count is the position.
        dec = self._info.incrementaldecoder(self.errors)
        if self._newline is None or self._newline == "":
            dec = _io.IncrementalNewlineDecoder(dec, translate=self._newline is None)
        dec.setstate(state)
        produced = 0
        for i in range(len(self._snap_bytes)):
            produced += len(dec.decode(self._snap_bytes[i:i + 1]))
            st = dec.getstate()
            pending_cr = (st[1] & 1) if isinstance(dec, _io.IncrementalNewlineDecoder) else 0
            if produced + pending_cr >= self._consumed:
                return self._cookie(pos + i + 1, st)
        raise OSError("can't reconstruct logical file position")

    def _clean(self, state):
        return not state[0] and not state[1]

    def _cookie(self, pos, state):
        flags = state[1]
        if isinstance(self._decoder, _io.IncrementalNewlineDecoder):
            flags >>= 1  # the pending-\r bit is part of the position, not state
        return pos | (flags << 64)

    async def seek(self, cookie, whence=0):
        self.buffer._check()
        if not self.buffer._seekable:
            raise _io.UnsupportedOperation("underlying stream is not seekable")
        if whence == 1:
            if cookie != 0:
                raise _io.UnsupportedOperation("can't do nonzero cur-relative seeks")
            cookie = await self.tell()
            whence = 0
        elif whence == 2:
            if cookie != 0:
                raise _io.UnsupportedOperation("can't do nonzero end-relative seeks")
            self._reset_read()
            pos = await self.buffer.seek(0, 2)
            self._encoder_at(pos)
            return pos
        elif whence != 0:
            raise ValueError(f"invalid whence ({whence}, should be 0, 1 or 2)")
        if cookie < 0:
            raise ValueError(f"negative seek position {cookie}")
        pos, flags = cookie & ((1 << 64) - 1), cookie >> 64
        self._reset_read()
        await self.buffer.seek(pos)
        if flags:
            dec = self._decoder or self._make_decoder()
            if isinstance(dec, _io.IncrementalNewlineDecoder):
                flags <<= 1
            dec.setstate((b"", flags))
        self._encoder_at(pos)
        return cookie

    def _encoder_at(self, pos):
        # A BOM belongs only at the start of the file.
        enc = self._encoder
        if enc is None:
            enc = self._encoder = self._info.incrementalencoder(self.errors)
        if pos != 0:
            enc.setstate(0)
        else:
            enc.reset()

    # -- writing
    async def write(self, s):
        self.buffer._check(writing=True)
        if not isinstance(s, str):
            raise TypeError(f"write() argument must be str, not {type(s).__name__}")
        n = len(s)
        if self._newline not in (None, "", "\n") and "\n" in s:
            s = s.replace("\n", self._newline)
        elif self._newline is None and _os.linesep != "\n" and "\n" in s:
            s = s.replace("\n", _os.linesep)
        if self._snap is not None:
            # As io: text read ahead is dropped and the write lands at the
            # binary position, after the chunk the reader decoded.
            self._reset_read()
        if self._encoder is None:
            pos = 0
            if self.buffer._seekable:
                pos = await self.buffer.tell()
            self._encoder_at(pos)
        await self.buffer.write(self._encoder.encode(s))
        return n

    async def writelines(self, lines):
        for line in lines:
            await self.write(line)

    async def flush(self):
        await self.buffer.flush()

    async def truncate(self, size=None):
        if size is None:
            size = await self.tell()
        self._reset_read()
        return await self.buffer.truncate(size)

    async def close(self):
        await self.buffer.close()

    def detach(self):
        b, self.buffer = self.buffer, None
        return b

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.close()


class _ExecutorFile:
    """An io file object whose blocking methods run in the loop's default
    executor: pyloop.fs on a loop that is not pyloop."""

    def __init__(self, f, loop):
        self._f = f
        self._loop = loop

    def __getattr__(self, name):
        return getattr(self._f, name)

    def _run(self, fn, *args):
        return self._loop.run_in_executor(None, fn, *args)

    async def read(self, size=-1):
        return await self._run(self._f.read, size)

    async def read1(self, size=-1):
        return await self._run(self._f.read1, size)

    async def readall(self):
        return await self._run(self._f.readall if hasattr(self._f, "readall")
                               else self._f.read)

    async def readinto(self, b):
        return await self._run(self._f.readinto, b)

    async def readline(self, size=-1):
        return await self._run(self._f.readline, size)

    async def readlines(self, hint=-1):
        return await self._run(self._f.readlines, hint)

    async def peek(self, size=0):
        return await self._run(self._f.peek, size)

    async def write(self, b):
        return await self._run(self._f.write, b)

    async def writelines(self, lines):
        return await self._run(self._f.writelines, lines)

    async def seek(self, offset, whence=0):
        return await self._run(self._f.seek, offset, whence)

    async def tell(self):
        return await self._run(self._f.tell)

    async def truncate(self, size=None):
        return await self._run(self._f.truncate, size)

    async def flush(self):
        return await self._run(self._f.flush)

    async def close(self):
        return await self._run(self._f.close)

    def __aiter__(self):
        return self

    async def __anext__(self):
        line = await self.readline()
        if not line:
            raise StopAsyncIteration
        return line

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.close()


# aiofiles.os / aiofiles.os.path lookalikes: `pyloop.fs.os.stat(...)`.
os = _types.SimpleNamespace(
    stat=stat, lstat=lstat, fstat=fstat, rename=rename, replace=replace, remove=remove,
    unlink=unlink, mkdir=mkdir, makedirs=makedirs, rmdir=rmdir, listdir=listdir,
    scandir=scandir, readlink=readlink, symlink=symlink, link=link, access=access,
    sendfile=sendfile, chmod=chmod, utime=utime, fsync=fsync, fdatasync=fdatasync,
    path=_types.SimpleNamespace(exists=exists, isfile=isfile, isdir=isdir, islink=islink,
                                getsize=getsize, getmtime=getmtime, getatime=getatime,
                                getctime=getctime),
)
