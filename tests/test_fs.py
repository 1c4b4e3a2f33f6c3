"""pyloop.fs against os/io on the same files, on pyloop (libuv fs requests)
and on the stdlib loop (the executor fallback)."""
import asyncio
import errno
import gc
import io
import os
import pathlib
import stat
import subprocess
import sys

import pytest

import pyloop
import pyloop.fs as fs
from pyloop import _core


@pytest.fixture
def run(loop):
    return loop.run_until_complete


def _stat_fields(st):
    return (tuple(st), st.st_atime_ns, st.st_mtime_ns, st.st_ctime_ns, st.st_atime,
            st.st_mtime, st.st_ctime, st.st_blksize, st.st_blocks, st.st_rdev)


# ---- stat and friends ------------------------------------------------------------

def test_stat_matches_os(run, tmp_path):
    p = tmp_path / "f"
    p.write_bytes(b"x" * 1234)
    os.symlink(p, tmp_path / "l")
    assert _stat_fields(run(fs.stat(p))) == _stat_fields(os.stat(p))
    assert _stat_fields(run(fs.stat(str(p)))) == _stat_fields(os.stat(p))
    assert _stat_fields(run(fs.stat(os.fsencode(p)))) == _stat_fields(os.stat(p))
    assert _stat_fields(run(fs.lstat(tmp_path / "l"))) == _stat_fields(os.lstat(tmp_path / "l"))
    assert _stat_fields(run(fs.stat(tmp_path / "l"))) == _stat_fields(os.stat(p))
    assert type(run(fs.stat(p))) is os.stat_result
    fd = os.open(p, os.O_RDONLY)
    try:
        assert _stat_fields(run(fs.fstat(fd))) == _stat_fields(os.fstat(fd))
        assert _stat_fields(run(fs.stat(fd))) == _stat_fields(os.fstat(fd))
    finally:
        os.close(fd)


@pytest.mark.parametrize("make_path", [str, pathlib.Path, os.fsencode])
def test_errors_match_os(run, tmp_path, make_path):
    missing = make_path(str(tmp_path / "missing"))
    for coro_fn, os_fn in [(fs.stat, os.stat), (fs.lstat, os.lstat), (fs.remove, os.remove),
                           (fs.rmdir, os.rmdir), (fs.listdir, os.listdir),
                           (fs.readlink, os.readlink)]:
        with pytest.raises(OSError) as expected:
            os_fn(missing)
        with pytest.raises(OSError) as got:
            run(coro_fn(missing))
        assert type(got.value) is type(expected.value) is FileNotFoundError
        assert (got.value.errno, got.value.strerror, got.value.filename, got.value.filename2) == \
            (expected.value.errno, expected.value.strerror, expected.value.filename,
             expected.value.filename2)
        assert str(got.value) == str(expected.value)


def test_str_paths_are_encoded_as_os_fsencode(run, tmp_path):
    # an undecodable byte survives as a surrogate escape, both ways
    raw = os.fsencode(tmp_path) + b"/caf\xff"
    with open(raw, "wb") as f:
        f.write(b"data")
    name = os.fsdecode(raw)
    assert run(fs.read_bytes(name)) == b"data"
    assert _stat_fields(run(fs.stat(name))) == _stat_fields(os.stat(raw))
    run(fs.write_bytes(name + "2", b"two"))
    assert pathlib.Path(os.fsdecode(raw + b"2")).read_bytes() == b"two"
    with pytest.raises(UnicodeEncodeError):
        run(fs.stat(str(tmp_path / "\ud800x")))


def test_rename_error_names_both_paths(run, tmp_path):
    a, b = str(tmp_path / "a"), str(tmp_path / "nodir" / "b")
    with pytest.raises(OSError) as expected:
        os.rename(a, b)
    with pytest.raises(OSError) as got:
        run(fs.rename(a, b))
    assert type(got.value) is type(expected.value)
    assert (got.value.errno, got.value.filename, got.value.filename2) == \
        (expected.value.errno, expected.value.filename, expected.value.filename2)


def test_exists_isfile_isdir_islink(run, tmp_path):
    (tmp_path / "f").write_text("x")
    (tmp_path / "d").mkdir()
    os.symlink(tmp_path / "f", tmp_path / "l")
    for name in ["f", "d", "l", "missing"]:
        p = tmp_path / name
        assert run(fs.exists(p)) == os.path.exists(p)
        assert run(fs.isfile(p)) == os.path.isfile(p)
        assert run(fs.isdir(p)) == os.path.isdir(p)
        assert run(fs.islink(p)) == os.path.islink(p)
        assert run(fs.os.path.exists(p)) == os.path.exists(p)
    assert run(fs.getsize(tmp_path / "f")) == 1


def test_directory_operations(run, tmp_path):
    run(fs.mkdir(tmp_path / "d"))
    assert os.path.isdir(tmp_path / "d")
    with pytest.raises(FileExistsError) as got:
        run(fs.mkdir(tmp_path / "d"))
    assert got.value.filename == str(tmp_path / "d")
    run(fs.makedirs(tmp_path / "a" / "b" / "c"))
    assert os.path.isdir(tmp_path / "a" / "b" / "c")
    run(fs.makedirs(tmp_path / "a" / "b" / "c", exist_ok=True))
    with pytest.raises(FileExistsError):
        run(fs.makedirs(tmp_path / "a" / "b" / "c"))
    for name in ["x", "y.txt", "zé"]:
        (tmp_path / "d" / name).write_text(name)
    (tmp_path / "d" / "sub").mkdir()
    os.symlink("x", tmp_path / "d" / "lnk")
    assert sorted(run(fs.listdir(tmp_path / "d"))) == sorted(os.listdir(tmp_path / "d"))
    assert sorted(run(fs.listdir(str(tmp_path / "d")))) == sorted(os.listdir(str(tmp_path / "d")))
    bpath = os.fsencode(tmp_path / "d")
    assert sorted(run(fs.listdir(bpath))) == sorted(os.listdir(bpath))
    got = {e.name: (e.path, e.is_dir(), e.is_file(), e.is_symlink(),
                    e.is_file(follow_symlinks=False), e.inode(), e.stat().st_size)
           for e in run(fs.scandir(tmp_path / "d"))}
    want = {e.name: (e.path, e.is_dir(), e.is_file(), e.is_symlink(),
                     e.is_file(follow_symlinks=False), e.inode(), e.stat().st_size)
            for e in os.scandir(tmp_path / "d")}
    assert got == want
    run(fs.rmdir(tmp_path / "d" / "sub"))
    assert not os.path.exists(tmp_path / "d" / "sub")
    with pytest.raises(OSError) as e:
        run(fs.rmdir(tmp_path / "d"))
    assert e.value.errno == errno.ENOTEMPTY


def test_file_operations(run, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(b"data")
    run(fs.rename(a, b))
    assert not a.exists() and b.read_bytes() == b"data"
    a.write_bytes(b"new")
    run(fs.replace(a, b))
    assert b.read_bytes() == b"new"
    run(fs.symlink("b", tmp_path / "s"))
    assert run(fs.readlink(tmp_path / "s")) == os.readlink(tmp_path / "s") == "b"
    assert run(fs.readlink(os.fsencode(tmp_path / "s"))) == b"b"
    run(fs.link(b, tmp_path / "h"))
    assert os.stat(tmp_path / "h").st_ino == os.stat(b).st_ino
    run(fs.chmod(b, 0o640))
    assert os.stat(b).st_mode & 0o777 == 0o640
    run(fs.utime(b, (1_000_000.5, 2_000_000.25)))
    st = os.stat(b)
    assert (st.st_atime, st.st_mtime) == (1_000_000.5, 2_000_000.25)
    run(fs.utime(b, ns=(3_000_000_000_000_000, 4_000_000_000_000_000)))
    st = os.stat(b)
    assert (st.st_atime_ns, st.st_mtime_ns) == (3_000_000_000_000_000, 4_000_000_000_000_000)
    assert run(fs.access(b, os.R_OK)) == os.access(b, os.R_OK) is True
    assert run(fs.access(tmp_path / "missing", os.F_OK)) is False
    assert run(fs.copyfile(b, tmp_path / "c")) == tmp_path / "c"
    assert (tmp_path / "c").read_bytes() == b"new"
    run(fs.unlink(tmp_path / "c"))
    run(fs.remove(tmp_path / "h"))
    assert not (tmp_path / "c").exists() and not (tmp_path / "h").exists()


def test_sendfile_fsync(run, tmp_path):
    (tmp_path / "src").write_bytes(b"0123456789")
    with open(tmp_path / "src", "rb") as src, open(tmp_path / "dst", "wb") as dst:
        assert run(fs.sendfile(dst.fileno(), src.fileno(), 2, 5)) == 5
        run(fs.fsync(dst.fileno()))
        run(fs.fdatasync(dst))
    assert (tmp_path / "dst").read_bytes() == b"23456"


def test_read_write_helpers(run, tmp_path):
    p = tmp_path / "f"
    assert run(fs.write_bytes(p, b"abc\r\n")) == 5
    assert run(fs.read_bytes(p)) == b"abc\r\n" == p.read_bytes()
    assert run(fs.read_text(p)) == p.read_text()
    assert run(fs.write_text(p, "é\n", encoding="latin-1")) == 2
    assert p.read_bytes() == b"\xe9\n"
    assert run(fs.read_text(p, encoding="latin-1")) == "é\n"
    big = os.urandom(3 * 1024 * 1024 + 7)
    run(fs.write_bytes(p, big))
    assert run(fs.read_bytes(p)) == big


def test_whole_file_helpers_errors_match_pathlib(run, tmp_path):
    (tmp_path / "d").mkdir()
    cases = [(fs.read_bytes, pathlib.Path.read_bytes, ()),
             (fs.write_bytes, pathlib.Path.write_bytes, (b"x",)),
             (fs.read_text, pathlib.Path.read_text, ()),
             (fs.write_text, pathlib.Path.write_text, ("x",))]
    for name in ("missing/f", "d"):
        p = tmp_path / name
        for ours, theirs, args in cases:
            with pytest.raises(OSError) as want:
                theirs(p, *args)
            with pytest.raises(OSError) as got:
                run(ours(str(p), *args))
            assert (type(got.value), got.value.errno, got.value.filename) == \
                (type(want.value), want.value.errno, str(p))
    with pytest.raises(ValueError):
        run(fs.read_bytes(str(tmp_path / "a\0b")))
    (tmp_path / "f").write_text("f")
    with pytest.raises(LookupError):
        run(fs.read_text(tmp_path / "f", encoding="no-such-codec"))


def test_read_bytes_of_files_without_a_size(run, tmp_path):
    # /proc files report size 0 and a FIFO none: the whole-file read grows
    # its buffer until EOF.
    assert run(fs.read_bytes("/proc/self/cmdline")) == \
        pathlib.Path("/proc/self/cmdline").read_bytes()
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    data = os.urandom(300 * 1024)

    def feed():
        with open(fifo, "wb") as w:
            w.write(data)

    async def main():
        loop = asyncio.get_running_loop()
        writer = loop.run_in_executor(None, feed)
        got = await fs.read_bytes(fifo)
        await writer
        return got

    assert run(main()) == data


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16", "utf-8-sig", "cp1252"])
@pytest.mark.parametrize("newline", [None, "", "\n", "\r", "\r\n"])
def test_read_text_write_text_match_io(run, tmp_path, encoding, newline):
    text = "a\nb\r\nc\rd \u00e9\n" * 50
    ours, theirs = tmp_path / "ours", tmp_path / "io"
    n = run(fs.write_text(ours, text, encoding=encoding, newline=newline))
    with open(theirs, "w", encoding=encoding, newline=newline) as f:
        assert f.write(text) == n
    assert ours.read_bytes() == theirs.read_bytes()
    with open(theirs, encoding=encoding, newline=newline) as f:
        assert run(fs.read_text(ours, encoding=encoding, newline=newline)) == f.read()


# ---- files: binary -------------------------------------------------------------

def test_binary_read_seek_tell(run, tmp_path):
    data = bytes(range(256)) * 100 + b"\nline2\nlast"
    p = tmp_path / "f"
    p.write_bytes(data)

    async def ops(f, aw):
        out = []

        async def call(name, *args):
            r = getattr(f, name)(*args)
            if aw:
                r = await r
            out.append((name, args, r))

        await call("read", 10)
        await call("tell")
        await call("read1", 5)
        await call("readline")
        await call("tell")
        await call("seek", -5, 2)
        await call("read")
        await call("read")
        await call("seek", 3)
        await call("peek", 1)
        await call("readline", 2)
        await call("seek", 4, 1)
        await call("tell")
        buf = bytearray(7)
        await call("readinto", buf)
        out.append(bytes(buf))
        await call("seek", 0)
        await call("readlines")
        await call("seek", 0)
        await call("read", 0)
        await call("read", -1)
        return out

    async def main():
        async with fs.open(p, "rb") as f:
            got = await ops(f, True)
        return got

    with open(p, "rb") as f:
        want = ops_sync(f)
    # peek() returns what is buffered, an amount that is the buffer's business
    assert _norm(run(main())) == _norm(want)


def _triple(x):
    return x if isinstance(x, tuple) else (None, None, x)


def _norm(rows):
    out = []
    for name, args, r in map(_triple, rows):
        if name == "peek":
            r = r[:1]
        out.append((name, args, r))
    return out


def ops_sync(f):
    out = []

    def call(name, *args):
        out.append((name, args, getattr(f, name)(*args)))

    call("read", 10)
    call("tell")
    call("read1", 5)
    call("readline")
    call("tell")
    call("seek", -5, 2)
    call("read")
    call("read")
    call("seek", 3)
    call("peek", 1)
    call("readline", 2)
    call("seek", 4, 1)
    call("tell")
    buf = bytearray(7)
    call("readinto", buf)
    out.append(bytes(buf))
    call("seek", 0)
    call("readlines")
    call("seek", 0)
    call("read", 0)
    call("read", -1)
    return out


@pytest.mark.parametrize("mode", ["wb", "r+b", "ab", "a+b", "xb", "w+b"])
def test_binary_write_modes(run, tmp_path, mode, loop_name):
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    if "x" not in mode:
        ours.write_bytes(b"0123456789")
        theirs.write_bytes(b"0123456789")

    def sync():
        # Append mode: io's buffered tell() after a seek and a buffered
        # write reports the seek target (data not yet appended); ours writes
        # through, so the reference is the unbuffered FileIO.
        unbuffered = "a" in mode and loop_name == "pyloop"
        with open(theirs, mode, buffering=0 if unbuffered else -1) as f:
            r = [f.write(b"abc"), f.tell(), f.seek(1), f.write(b"Z"), f.tell()]
            if "+" in mode:
                f.seek(0)
                r.append(f.read())
            r.append(f.truncate(5) if "a" not in mode else None)
            r.append(f.tell())
            return r

    async def ours_():
        async with fs.open(ours, mode) as f:
            r = [await f.write(b"abc"), await f.tell(), await f.seek(1), await f.write(b"Z"),
                 await f.tell()]
            if "+" in mode:
                await f.seek(0)
                r.append(await f.read())
            r.append(await f.truncate(5) if "a" not in mode else None)
            r.append(await f.tell())
            return r

    assert run(ours_()) == sync()
    assert ours.read_bytes() == theirs.read_bytes()


@pytest.mark.parametrize("mode", ["rb", "r", "r+b", "r+", "wb", "w+b", "w+", "ab", "a+b", "a",
                                  "xb", "x+b", "x"])
def test_mode_name_and_flush_match_io(run, tmp_path, mode):
    p = tmp_path / "f"

    async def ours():
        async with fs.open(p, mode) as f:
            if f.writable():
                await f.write(b"data" if "b" in mode else "data")
                await f.flush()
                seen = p.read_bytes()  # flushed: another reader sees it
            else:
                seen = None
            return f.mode, f.name, seen

    def theirs():
        with open(p, mode) as f:
            if f.writable():
                f.write(b"data" if "b" in mode else "data")
                f.flush()
                return f.mode, f.name, p.read_bytes()
            return f.mode, f.name, None

    def fresh():
        if p.exists():
            p.unlink()
        if "x" not in mode:
            p.write_bytes(b"old\n")

    fresh()
    got = run(ours())
    fresh()
    assert got == theirs()


def test_unbuffered_and_fd(run, tmp_path, loop_name):
    p = tmp_path / "f"
    p.write_bytes(b"abcdef")

    async def main():
        async with fs.open(p, "rb", buffering=0) as f:
            assert await f.read(2) == b"ab"
            assert await f.read() == b"cdef"
        fd = os.open(p, os.O_RDONLY)
        f = await fs.open(fd, "rb", closefd=False)
        assert await f.read(3) == b"abc"
        await f.close()
        assert f.closed
        if loop_name == "pyloop":  # (io's buffered reader has read ahead)
            assert os.lseek(fd, 0, os.SEEK_CUR) == 3
        os.close(fd)

    run(main())


def test_unbuffered_read1_and_peek_read_something(pyloop_loop, tmp_path):
    # pyloop's own file object only: io's FileIO (buffering=0, what the stdlib loop's wrapper
    # holds) has neither method. pyloop's offers both, and with no buffer size they read what a
    # buffered reader would: up to io.DEFAULT_BUFFER_SIZE bytes.
    data = os.urandom(3 * io.DEFAULT_BUFFER_SIZE)
    p = tmp_path / "f"
    p.write_bytes(data)

    async def main():
        async with fs.open(p, "rb", buffering=0) as f:
            head = await f.peek()
            first = await f.read1()
            sized = await f.read1(10)
            rest = await f.read()
        return head, first, sized, rest

    head, first, sized, rest = pyloop_loop.run_until_complete(main())
    assert head == data[:io.DEFAULT_BUFFER_SIZE]
    assert first == data[:io.DEFAULT_BUFFER_SIZE]
    assert sized == data[len(first):len(first) + 10]
    assert first + sized + rest == data


def test_open_errors_match_io(run, tmp_path):
    (tmp_path / "d").mkdir()
    cases = [(tmp_path / "missing", "r"), (tmp_path / "d", "r"), (tmp_path / "d", "w"),
             (tmp_path / "d" / "x" / "y", "w")]
    for path, mode in cases:
        with pytest.raises(OSError) as expected:
            open(path, mode)
        with pytest.raises(OSError) as got:
            run(fs.open(path, mode))
        assert type(got.value) is type(expected.value)
        assert (got.value.errno, got.value.filename) == (expected.value.errno,
                                                        expected.value.filename)
    for mode, kw in [("rw", {}), ("rbt", {}), ("q", {}), ("rb", {"encoding": "utf-8"}),
                     ("r", {"newline": "x"}), ("r", {"buffering": 0})]:
        (tmp_path / "z").write_text("z")
        with pytest.raises(ValueError) as expected:
            open(tmp_path / "z", mode, **kw)
        with pytest.raises(ValueError) as got:
            run(fs.open(tmp_path / "z", mode, **kw))
        assert str(got.value) == str(expected.value)

    async def closed():
        f = await fs.open(tmp_path / "f", "wb")
        await f.close()
        await f.close()
        with pytest.raises(ValueError):
            await f.write(b"x")
        f = await fs.open(tmp_path / "f", "rb")
        with pytest.raises(io.UnsupportedOperation):
            await f.write(b"x")
        await f.close()

    run(closed())


# ---- files: text -----------------------------------------------------------------

TEXT = "first line\nsecond é line\r\nthird\rfourth\n\n€ last " + "x" * 9000 + "\r\nend"


@pytest.mark.parametrize("encoding", ["utf-8", "latin-1", "utf-16", "utf-8-sig", "cp1252"])
@pytest.mark.parametrize("newline", [None, "", "\n", "\r", "\r\n"])
def test_text_read_matches_io(run, tmp_path, encoding, newline):
    text = TEXT if encoding != "latin-1" else TEXT.replace("€", "e")
    p = tmp_path / "f"
    p.write_bytes(text.encode(encoding))

    with open(p, encoding=encoding, newline=newline) as f:
        want = (f.read(), )
    with open(p, encoding=encoding, newline=newline) as f:
        want += (f.readlines(), )
    with open(p, encoding=encoding, newline=newline) as f:
        want += ([f.read(7), f.readline(), f.readline(3), f.read(5000), f.read()],)

    async def main():
        async with fs.open(p, encoding=encoding, newline=newline) as f:
            r = (await f.read(),)
        async with fs.open(p, encoding=encoding, newline=newline) as f:
            r += ([line async for line in f],)
        async with fs.open(p, encoding=encoding, newline=newline) as f:
            r += ([await f.read(7), await f.readline(), await f.readline(3), await f.read(5000),
                   await f.read()],)
        return r

    assert run(main()) == want


@pytest.mark.parametrize("encoding", ["utf-8", "latin-1", "utf-16", "utf-8-sig"])
@pytest.mark.parametrize("newline", [None, "", "\n", "\r", "\r\n"])
def test_text_write_matches_io(run, tmp_path, encoding, newline):
    text = TEXT.replace("€", "e")
    with open(tmp_path / "io", "w", encoding=encoding, newline=newline) as f:
        f.write(text[:100])
        f.write(text[100:])
    with open(tmp_path / "io", "a", encoding=encoding, newline=newline) as f:
        f.writelines(["more\n", "lines\n"])

    async def main():
        async with fs.open(tmp_path / "ours", "w", encoding=encoding, newline=newline) as f:
            assert await f.write(text[:100]) == 100
            await f.write(text[100:])
        async with fs.open(tmp_path / "ours", "a", encoding=encoding, newline=newline) as f:
            await f.writelines(["more\n", "lines\n"])

    run(main())
    assert (tmp_path / "ours").read_bytes() == (tmp_path / "io").read_bytes()


def test_text_errors_and_tell_seek(run, tmp_path):
    p = tmp_path / "f"
    p.write_bytes(b"ab\xffcd\nline two \xc3\xa9\nthree\n")
    with pytest.raises(UnicodeDecodeError):
        run(fs.read_text(p))
    assert run(fs.read_text(p, errors="replace")) == p.read_text(errors="replace")
    assert run(fs.read_text(p, encoding="ascii", errors="ignore")) == \
        p.read_text(encoding="ascii", errors="ignore")

    async def main():
        async with fs.open(p, errors="surrogateescape") as f:
            first = await f.readline()
            pos = await f.tell()
            second = await f.readline()
            await f.seek(pos)
            again = await f.readline()
            rest = await f.read()
            return first, second, again, rest

    with open(p, errors="surrogateescape") as f:
        first = f.readline()
        pos = f.tell()
        second = f.readline()
        f.seek(pos)
        want = (first, second, f.readline(), f.read())
    assert run(main()) == want


def test_text_readwrite_mixed(run, tmp_path):
    p = tmp_path / "f"
    p.write_text("one\ntwo\nthree\n")

    async def main():
        async with fs.open(p, "r+") as f:
            assert await f.readline() == "one\n"
            await f.write("TWO\n")
            await f.seek(0)
            return await f.read()

    with open(tmp_path / "g", "w") as g:
        g.write("one\ntwo\nthree\n")
    with open(tmp_path / "g", "r+") as g:
        g.readline()
        g.write("TWO\n")
        g.seek(0)
        want = g.read()
    assert run(main()) == want


# ---- large offsets, concurrency, cancellation, loop close, fork -------------------

def test_large_offsets_sparse(run, tmp_path):
    p = tmp_path / "sparse"
    off = 5 * 1024 ** 3 + 123
    with open(p, "wb") as f:
        f.seek(off)
        f.write(b"tail")

    async def main():
        async with fs.open(p, "r+b") as f:
            await f.seek(off - 2)
            assert await f.read() == b"\0\0tail"
            await f.seek(off + 4)
            await f.write(b"!")
            assert await f.tell() == off + 5
        return (await fs.stat(p)).st_size

    assert run(main()) == off + 5
    with open(p, "rb") as f:
        f.seek(off)
        assert f.read() == b"tail!"


def test_concurrent_tasks(run, tmp_path):
    async def one(i):
        p = tmp_path / f"f{i}"
        data = os.urandom(1000 + i)
        await fs.write_bytes(p, data)
        async with fs.open(p, "rb") as f:
            assert await f.read() == data
        assert (await fs.stat(p)).st_size == len(data)
        return i

    async def main():
        return await asyncio.gather(*(one(i) for i in range(100)))

    assert run(main()) == list(range(100))


def test_cancelled_lock_waiter_passes_the_file_on(run, tmp_path, loop_name):
    # Reads queued behind one another on one file; some of the waiting ones
    # are cancelled (before and after the lock was handed to them): the
    # others still get consecutive, non-overlapping parts of the file.
    p = tmp_path / "f"
    p.write_bytes(b"".join(b"%04d" % i for i in range(200)))

    async def main():
        async with fs.open(p, "rb") as f:
            tasks = [asyncio.ensure_future(f.read(4)) for _ in range(40)]
            await asyncio.sleep(0)
            for t in tasks[1::3]:
                t.cancel()
            results = await asyncio.gather(*tasks, return_exceptions=True)
            got = [r for r in results if isinstance(r, bytes)]
            rest = await f.read()
            end = await f.tell()
        return got, rest, end

    got, rest, end = run(main())
    records = [b"%04d" % i for i in range(200)]
    assert len(got) >= 26 and len(set(got)) == len(got) and set(got) <= set(records)
    assert end == 800
    if loop_name == "pyloop":
        # a cancelled pyloop read moves nothing: the survivors read the
        # first records and the rest follows them (the executor's thread
        # reads for a cancelled caller too)
        assert sorted(got) == records[:len(got)]
        assert b"".join(sorted(got)) + rest == p.read_bytes()


def test_concurrent_reads_one_file_are_serialised(run, tmp_path):
    p = tmp_path / "f"
    p.write_bytes(b"".join(b"%04d" % i for i in range(100)))

    async def main():
        async with fs.open(p, "rb") as f:
            parts = await asyncio.gather(*(f.read(4) for _ in range(100)))
        return sorted(parts)

    assert run(main()) == sorted(b"%04d" % i for i in range(100))


async def _cancelled_after(coro, steps):
    """Run coro as a task, cancel it after `steps` loop iterations; True
    when the cancellation came in time (the task did not finish first)."""
    t = asyncio.ensure_future(coro)
    for _ in range(steps):
        await asyncio.sleep(0)
    t.cancel()
    try:
        await t
    except asyncio.CancelledError:
        return True
    return False


@pytest.mark.parametrize("nowait", ["1", "0"])
def test_cancellation_keeps_position(run, tmp_path, loop_name, nowait, monkeypatch):
    # PYLOOP_FS_NOWAIT=0: every read a pool request, cancellable while queued
    # (with the fast path a cached read is done before the cancellation)
    monkeypatch.setenv("PYLOOP_FS_NOWAIT", nowait)
    p = tmp_path / "f"
    p.write_bytes(b"0123456789" * 1000)

    async def main():
        async with fs.open(p, "rb") as f:
            await f.read(3)
            for _ in range(50):
                if not await _cancelled_after(f.read(100), 1):
                    await f.seek(3)
            if loop_name == "pyloop":
                # the executor fallback's thread reads whether or not its
                # caller is still there; a cancelled libuv read moves nothing
                assert await f.tell() == 3
                assert await f.read(4) == b"3456"
        # cancelled before the task ever started, and at every step of open()
        # and of the whole-file helpers
        def read_via_open():
            async def go():
                async with fs.open(p, "rb") as f:
                    return await f.read()
            return go()

        for make in (lambda: fs.read_bytes(p), read_via_open,
                     lambda: fs.write_bytes(tmp_path / "w", b"w" * 1000),
                     lambda: fs.read_text(p)):
            for delay in range(6):
                await _cancelled_after(make(), delay)

    fds_before = len(os.listdir("/proc/self/fd"))
    run(main())
    gc.collect()
    run(asyncio.sleep(0.05))
    assert len(os.listdir("/proc/self/fd")) == fds_before


def test_pyloop_cancel_in_libuv_and_counters(pyloop_loop, tmp_path):
    # With the pool's threads busy, new requests wait in libuv's queue:
    # cancelling their tasks takes them out with uv_cancel.
    p = tmp_path / "f"
    p.write_bytes(b"x" * 100)
    before = _core._counters()

    async def main():
        tasks = [asyncio.ensure_future(fs.stat(p)) for _ in range(200)]
        await asyncio.sleep(0)
        for t in tasks:
            t.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert all(isinstance(r, (asyncio.CancelledError, os.stat_result)) for r in results)
        assert await fs.exists(p)

    pyloop_loop.run_until_complete(main())
    pyloop_loop.close()
    after = _core._counters()
    created = after["requests_created"] - before["requests_created"]
    freed = after["requests_freed"] - before["requests_freed"]
    assert created == freed and created >= 201


# The tasks left pending are collected with their loop closed: their
# coroutines' `async with` exits then fail with "Event loop is closed", as any
# coroutine abandoned on a closed loop does.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_loop_close_with_pending_requests(tmp_path):
    p = tmp_path / "f"
    p.write_bytes(b"x" * 100000)
    before = _core._counters()
    loop = pyloop.new_event_loop()

    async def opened():
        f = await fs.open(p, "rb")
        await f.close()

    async def start():
        return [asyncio.ensure_future(fs.read_bytes(p)) for _ in range(50)] + \
               [asyncio.ensure_future(fs.stat(p)) for _ in range(50)] + \
               [asyncio.ensure_future(fs.write_bytes(tmp_path / f"w{i}", b"w"))
                for i in range(20)] + \
               [asyncio.ensure_future(opened()) for _ in range(20)]

    tasks = loop.run_until_complete(start())
    loop.run_until_complete(asyncio.sleep(0))  # the requests are in libuv now
    for t in tasks:
        t.cancel()
    loop.close()
    after = _core._counters()
    assert after["requests_created"] - before["requests_created"] == \
        after["requests_freed"] - before["requests_freed"] > 0
    # A task whose open() completed just before the loop closed never runs
    # again: its coroutine holds the descriptor until it is finalized. Close
    # the coroutines as their collection would (when is up to the GC: the
    # closed loop's ready queue still holds the woken tasks).
    for t in tasks:
        t.get_coro().close()
    del tasks, loop
    gc.collect()
    # every descriptor is closed: by the completion (a job finished after its
    # task was cancelled), by the teardown (a queued close still runs), or by
    # the abandoned coroutine's cleanup
    left = [os.path.realpath(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd")]
    assert [name for name in left if name.startswith(str(tmp_path))] == []


def test_fork_child_does_not_hang(tmp_path):
    code = f"""
import asyncio, os, sys
sys.path.insert(0, {os.path.dirname(os.path.dirname(os.path.abspath(__file__)))!r})
import pyloop, pyloop.fs as fs
p = {str(tmp_path / "f")!r}
pyloop.run(fs.write_bytes(p, b"parent"))
pid = os.fork()
if pid == 0:
    try:
        pyloop.run(fs.write_bytes(p + ".child", b"child"))
        os._exit(0 if pyloop.run(fs.read_bytes(p)) == b"parent" else 1)
    except BaseException:
        os._exit(2)
_, status = os.waitpid(pid, 0)
print(os.waitstatus_to_exitcode(status), pyloop.run(fs.read_bytes(p + ".child")).decode())
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert out.stdout.split() == ["0", "child"], out.stderr


def test_executor_fallback_is_used_off_pyloop(tmp_path):
    p = tmp_path / "f"
    p.write_text("abc")

    async def main():
        f = await fs.open(p)
        kind = type(f).__name__
        text = await f.read()
        await f.close()
        return kind, text

    assert asyncio.run(main()) == ("_ExecutorFile", "abc")
    assert pyloop.run(main()) == ("AsyncTextFile", "abc")


# ---- module functions: coroutines around one C request ----------------------------

def test_module_functions_are_coroutines_like_aiofiles(run, tmp_path):
    p, s = tmp_path / "f", tmp_path / "s"  # s is not read: its atime stays
    p.write_bytes(b"abc")
    s.write_bytes(b"s")

    async def main():
        calls = [fs.stat(s), fs.exists(p), fs.isfile(p), fs.read_bytes(p),
                 fs.write_bytes(tmp_path / "g", bytearray(b"xy")), fs.access(p, os.R_OK),
                 fs.isdir(tmp_path / "missing")]
        # coroutines, as aiofiles' are: tasks and task groups take them
        assert all(asyncio.iscoroutine(c) for c in calls)
        got = await asyncio.gather(*(asyncio.create_task(c) for c in calls))
        assert got[1:] == [True, True, b"abc", 2, True, False]
        assert _stat_fields(got[0]) == _stat_fields(os.stat(s))
        # bad arguments raise at the await, on every loop
        bad = fs.stat(1.5)
        with pytest.raises(TypeError):
            await bad
        with pytest.raises(TypeError):
            await fs.stat(1.5)
        with pytest.raises(ValueError):
            await fs.stat(str(p) + "\0")
        assert await fs.exists(str(p) + "\0") is False
        assert await fs.isfile(str(p) + "\0") is False

    run(main())
    assert (tmp_path / "g").read_bytes() == b"xy"
    # nothing starts before the await: a coroutine dropped unawaited does nothing
    coro = fs.remove(p)
    coro.close()
    assert p.exists()
    assert _stat_fields(run(fs.stat(s))) == _stat_fields(os.stat(s))


@pytest.mark.parametrize("make_path", [str, pathlib.Path, os.fsencode])
def test_direct_future_errors_carry_errno_and_filename(run, tmp_path, make_path):
    (tmp_path / "d").mkdir()
    missing = make_path(str(tmp_path / "missing"))
    d = make_path(str(tmp_path / "d"))
    cases = [(fs.read_bytes, lambda q: open(q, "rb").read(), missing),
             (fs.read_bytes, lambda q: open(q, "rb").read(), d),
             (lambda q: fs.write_bytes(q, b"x"), lambda q: open(q, "wb"), d),
             (fs.mkdir, os.mkdir, d), (fs.unlink, os.unlink, d),
             (lambda q: fs.chmod(q, 0o600), lambda q: os.chmod(q, 0o600), missing),
             (lambda q: fs.access(q, os.R_OK), lambda q: os.access(q, os.R_OK), missing)]

    async def outcome(fn, q):
        try:
            return await fn(q)
        except OSError as exc:
            return exc

    for fs_fn, os_fn, q in cases:
        try:
            expected = os_fn(q)
        except OSError as exc:
            expected = exc
        got = run(outcome(fs_fn, q))
        if isinstance(expected, OSError):
            assert type(got) is type(expected)
            assert (got.errno, got.filename, got.filename2) == \
                (expected.errno, expected.filename, expected.filename2)
        else:
            assert got == expected


def _pool_size():
    return int(os.environ.get("UV_THREADPOOL_SIZE", "4"))


def _release_fifos(folder):
    """Let every pool thread blocked opening one of folder's FIFOs for reading
    go (a non-blocking open for writing succeeds only while a reader waits).
    A test that fails half way would otherwise leave libuv's pool blocked,
    and every later test that needs the pool would hang."""
    for name in os.listdir(folder):
        path = os.path.join(folder, name)
        if not stat.S_ISFIFO(os.lstat(path).st_mode):
            continue
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
        except OSError as exc:
            if exc.errno != errno.ENXIO:  # no reader left: nothing to release
                raise


@pytest.fixture(autouse=True)
def _no_blocked_pool(tmp_path):
    yield
    _release_fifos(tmp_path)


def test_cancelled_request_is_taken_back_from_the_pool(pyloop_loop, tmp_path):
    # Every pool thread blocks opening a FIFO nobody writes to yet, so the
    # write_bytes job after them waits in libuv's queue: cancelling its task
    # cancels the request's Future, which takes it out (uv_cancel), and the
    # file is never made.
    fifos = [str(tmp_path / f"fifo{i}") for i in range(_pool_size())]
    for f in fifos:
        os.mkfifo(f)
    target = tmp_path / "never"
    before = _core._counters()

    async def main():
        loop = asyncio.get_running_loop()
        blockers = [asyncio.ensure_future(fs.read_bytes(f)) for f in fifos]
        queued = asyncio.ensure_future(fs.write_bytes(target, b"x"))
        queued_stat = asyncio.ensure_future(fs.stat(tmp_path))
        try:
            await asyncio.sleep(0)  # every task made its request
            queued.cancel()
            queued_stat.cancel()
            await asyncio.sleep(0)  # the done callbacks run: uv_cancel
            # now let the blocked workers go: a writer opens and closes each FIFO
            await asyncio.gather(*(loop.run_in_executor(None, lambda f=f: os.close(
                os.open(f, os.O_WRONLY))) for f in fifos))
        finally:
            _release_fifos(tmp_path)  # (this far, only when something failed)
        assert await asyncio.gather(*blockers) == [b""] * len(fifos)
        assert queued.cancelled() and queued_stat.cancelled()
        # a request made after still runs
        assert await fs.write_bytes(tmp_path / "after", b"y") == 1

    pyloop_loop.run_until_complete(main())
    pyloop_loop.close()
    assert not target.exists()
    assert (tmp_path / "after").read_bytes() == b"y"
    after = _core._counters()
    assert after["requests_created"] - before["requests_created"] == \
        after["requests_freed"] - before["requests_freed"] == len(fifos) + 3


def test_loop_close_with_queued_requests_pending(tmp_path):
    # The pool's threads block opening one FIFO nobody writes to yet, so the
    # later requests are still queued when the loop closes: the teardown takes
    # them back, nothing runs them, and every request object is freed once the
    # FIFO is released. (Pool threads busy elsewhere, say a slow DNS lookup,
    # leave some blockers queued too: they are taken back the same way.)
    fifo = str(tmp_path / "fifo")
    os.mkfifo(fifo)
    loop = pyloop.new_event_loop()
    before = _core._counters()

    async def start():
        tasks = ([asyncio.ensure_future(fs.read_bytes(fifo)) for _ in range(_pool_size())],
                 [asyncio.ensure_future(c) for c in
                  [fs.write_bytes(tmp_path / f"w{i}", b"w") for i in range(10)] +
                  [fs.exists(tmp_path), fs.stat(tmp_path), fs.mkdir(tmp_path / "dir")]])
        await asyncio.sleep(0)  # every task made its request
        return tasks

    blockers, queued = loop.run_until_complete(start())
    # loop.close() waits for the running workers with the GIL held, so
    # another process releases them (one open of the FIFO for writing lets
    # every reader blocked in open() through, to EOF), after a pause that
    # lets close() take the queued requests back first.
    releaser = subprocess.Popen(["sh", "-c", 'sleep 1; : > "$1"', "sh", fifo])
    loop.close()
    assert releaser.wait(timeout=60) == 0
    after = _core._counters()
    assert after["requests_created"] - before["requests_created"] == \
        after["requests_freed"] - before["requests_freed"] == _pool_size() + 13
    assert not any(f.done() for f in queued)
    assert os.listdir(tmp_path) == ["fifo"]
    for t in blockers + queued:  # as their collection would
        t.get_coro().close()


# ---- reads answered from the page cache (preadv2 RWF_NOWAIT) -----------------------
#
# On pyloop a read at an offset first asks the page cache from the loop
# thread; _core.fs_read_stats() counts which path answered, so these tests
# check the path by the counters, and the results against io on both loops.

MIB = 1024 * 1024


def _nowait_errno(path):
    """What preadv2(RWF_NOWAIT) of path's first byte says: 0 (answered),
    or the errno (EAGAIN: not cached; EOPNOTSUPP: refused)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.preadv(fd, [bytearray(1)], 0, os.RWF_NOWAIT)
        return 0
    except OSError as exc:
        return exc.errno
    finally:
        os.close(fd)


def _need_nowait(path):
    if not _core.fs_read_stats()["supported"] or not hasattr(os, "RWF_NOWAIT"):
        pytest.skip("this platform has no preadv2(RWF_NOWAIT): every read uses the pool")
    if _nowait_errno(path) not in (0, errno.EAGAIN):
        pytest.skip(f"the file system of {path} refuses RWF_NOWAIT")


def _drop_cache(path):
    """Take path's pages out of the page cache (written back first). The
    check asks the cache, which starts reading the first pages in (a
    RWF_NOWAIT miss starts read-ahead): wait for that and drop them again."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        if _nowait_errno(path) != errno.EAGAIN:
            pytest.skip("the kernel kept the file in the page cache after "
                        "POSIX_FADV_DONTNEED")
        os.pread(fd, 1, 0)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def _file_with_cached_pages(path, *offsets):
    """An 8 MiB file (its bytes returned) out of the page cache but for the
    4 KiB at each offset, read in on a descriptor without read-ahead."""
    data = os.urandom(8 * MIB)
    path.write_bytes(data)
    _need_nowait(path)
    _drop_cache(path)
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
        for off in offsets:
            os.pread(fd, 4096, off)
    finally:
        os.close(fd)
    return data


def _stats_since(before):
    now = _core.fs_read_stats()
    return {k: now[k] - before[k] for k in before if k != "supported"}


# (method, argument) steps from the file's start; io's results on the same
# file are the reference.
_READ_STEPS = [("read", 1), ("read", 4095), ("read", 4096), ("read1", 100000),
               ("readinto", 70000), ("readline", -1), ("read", MIB), ("seek", MIB + 17),
               ("read", MIB + 1), ("readinto", MIB), ("seek", 0), ("read", -1),
               ("read", 10), ("readinto", 10)]


def _raw_name(name, buffering):
    return "read" if name == "read1" and buffering == 0 else name  # FileIO has no read1


def _io_steps(path, buffering):
    out = []
    with open(path, "rb", buffering=buffering) as f:
        for name, arg in _READ_STEPS:
            if name == "readinto":
                b = bytearray(arg)
                n = f.readinto(b)
                out.append((n, bytes(b[:n])))
            elif name == "seek":
                out.append(f.seek(arg))
            else:
                out.append(getattr(f, _raw_name(name, buffering))(arg))
            out.append(f.tell())
    return out


async def _fs_steps(path, buffering):
    out = []
    async with fs.open(path, "rb", buffering=buffering) as f:
        for name, arg in _READ_STEPS:
            if name == "readinto":
                b = bytearray(arg)
                n = await f.readinto(b)
                out.append((n, bytes(b[:n])))
            elif name == "seek":
                out.append(await f.seek(arg))
            else:
                out.append(await getattr(f, _raw_name(name, buffering))(arg))
            out.append(await f.tell())
    return out


@pytest.mark.parametrize("buffering", [-1, 0])
@pytest.mark.parametrize("cached", [True, False])
def test_reads_match_io_cached_and_not(run, tmp_path, loop_name, cached, buffering):
    p = tmp_path / "f"
    data = os.urandom(3 * MIB + 4321)
    p.write_bytes(data)
    _need_nowait(p)
    want = _io_steps(p, buffering)
    if not cached:
        _drop_cache(p)
    before = _core.fs_read_stats()
    assert run(_fs_steps(p, buffering)) == want
    got = _stats_since(before)
    if loop_name == "pyloop":
        if cached:
            # every read of at most 1 MiB came from the cache; only the
            # larger ones (1 MiB + 1, the rest of the file) used the pool
            assert got["inline"] > 0 and got["eagain"] == got["partial"] == 0
            assert 0 < got["pool"] <= 3
        else:
            # the first read missed (a miss starts read-ahead: later reads
            # may find their pages)
            assert got["eagain"] + got["partial"] >= 1 and got["pool"] > 3, got
        assert got["refused"] == 0
    else:
        assert got == dict.fromkeys(got, 0)


def test_cached_head_and_the_rest_from_the_pool(run, tmp_path, loop_name):
    # Only the first pages cached (no read-ahead on the descriptor that
    # brings them in): a 1 MiB read gets its head from the cache and the
    # rest from the pool, and the whole answer equals io's.
    p = tmp_path / "f"
    data = _file_with_cached_pages(p, 0, 4 * MIB)
    before = _core.fs_read_stats()

    async def main():
        async with fs.open(p, "rb") as f:
            # no read-ahead on this descriptor either: the pool's read of the
            # first MiB must not bring in the pages at 4 MiB
            os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_RANDOM)
            a = await f.read(MIB)
            await f.seek(4 * MIB)
            b = bytearray(MIB)
            n = await f.readinto(b)
            return a, n, bytes(b), await f.tell()

    assert run(main()) == (data[:MIB], MIB, data[4 * MIB:5 * MIB], 5 * MIB)
    got = _stats_since(before)
    if loop_name == "pyloop":
        # Both reads begin in the cache. The page cache is the kernel's: under
        # memory pressure or other I/O it may have the rest of a range too, so
        # one read may be answered whole; at least one took the mixed path.
        assert got["partial"] >= 1 and got["partial"] + got["inline"] == 2
        assert got["pool"] == got["partial"]


def test_short_cached_reads_at_and_past_eof(run, tmp_path, loop_name):
    p = tmp_path / "f"
    data = os.urandom(10000)
    p.write_bytes(data)
    _need_nowait(p)
    before = _core.fs_read_stats()

    async def main():
        out = []
        for buffering in (-1, 0):
            async with fs.open(p, "rb", buffering=buffering) as f:
                await f.seek(8192)
                out.append(await f.read(8192))    # short: the end of the file
                out.append(await f.read(8192))    # at the end
                await f.seek(20000)               # past it
                out.append(await f.read(10))
                out.append(await f.readinto(bytearray(10)))
                out.append(await f.tell())
                await f.seek(0)
                out.append(await f.read(100000))  # more than the file
        return out

    want = [data[8192:], b"", b"", 0, 20000, data] * 2
    assert run(main()) == want
    got = _stats_since(before)
    if loop_name == "pyloop":
        # every answer, the ends of the file included, from the cache (a
        # buffered read that came back short asks once more, at the end: 12
        # reads for 10 calls)
        assert got == {"inline": 12, "partial": 0, "eagain": 0, "refused": 0, "pool": 0}


def test_cached_reads_past_4_gib_on_a_sparse_file(run, tmp_path, loop_name):
    p = tmp_path / "sparse"
    off = 5 * 1024 ** 3 + 123
    with open(p, "wb") as f:
        f.seek(off)
        f.write(b"tail")
    _need_nowait(p)

    async def main():
        async with fs.open(p, "rb") as f:
            await f.seek(off - 3)
            first = await f.read(5)      # whichever path: the hole may be uncached
            before = _core.fs_read_stats()
            await f.seek(off - 3)
            again = await f.read(5)      # now cached
            b = bytearray(10)
            n = await f.readinto(b)
            return first, again, n, bytes(b[:n]), await f.tell(), _stats_since(before)

    first, again, n, tail, pos, got = run(main())
    assert (first, again, n, tail, pos) == (b"\0\0\0ta", b"\0\0\0ta", 2, b"il", off + 4)
    if loop_name == "pyloop":
        # the read, and readinto's two (the short one, then the end)
        assert got["inline"] == 3 and got["pool"] == 0


def test_opt_out_variable_sends_reads_to_the_pool(pyloop_loop, tmp_path, monkeypatch):
    p = tmp_path / "f"
    data = os.urandom(100000)
    p.write_bytes(data)
    _need_nowait(p)

    async def main():
        async with fs.open(p, "rb") as f:
            return [await f.read(4096), await f.read1(4096), await f.readline(),
                    await f.read()]

    for value, inline in (("0", False), ("off", False), ("1", True)):
        monkeypatch.setenv("PYLOOP_FS_NOWAIT", value)
        before = _core.fs_read_stats()
        got = pyloop_loop.run_until_complete(main())
        assert b"".join(got) == data
        stats = _stats_since(before)
        if inline:
            assert stats["inline"] == 4 and stats["pool"] == 0
        else:
            assert stats["inline"] == stats["eagain"] == 0 and stats["pool"] == 4


def test_opt_out_variable_in_a_new_process(tmp_path):
    p = tmp_path / "f"
    p.write_bytes(b"x" * 5000)
    _need_nowait(p)
    code = ("import pyloop, pyloop.fs as fs, pyloop._core as c, sys\n"
            "async def main():\n"
            "    async with fs.open(sys.argv[1], 'rb') as f:\n"
            "        assert await f.read(4096) == b'x' * 4096\n"
            "pyloop.run(main())\n"
            "s = c.fs_read_stats()\n"
            "print(s['inline'], s['pool'])\n")
    outs = []
    for value in ("0", "1"):
        env = dict(os.environ, PYLOOP_FS_NOWAIT=value)
        outs.append(subprocess.run([sys.executable, "-c", code, str(p)], env=env, check=True,
                                   capture_output=True, text=True).stdout.split())
    assert outs == [["0", "1"], ["1", "0"]]


def test_file_system_refusing_nowait_is_remembered(run, loop_name):
    # tmpfs (/dev/shm) answers RWF_NOWAIT with EOPNOTSUPP on the kernels
    # this was written on: the first read asks, the pool answers, the file
    # object does not ask again.
    if not os.path.isdir("/dev/shm") or not hasattr(os, "RWF_NOWAIT"):
        pytest.skip("no /dev/shm, or no RWF_NOWAIT, here")
    import tempfile
    fd, name = tempfile.mkstemp(dir="/dev/shm", prefix="pyloop-test-")
    try:
        data = os.urandom(20000)
        os.write(fd, data)
        if _nowait_errno(name) != errno.EOPNOTSUPP:
            pytest.skip("/dev/shm accepts RWF_NOWAIT here")
        before = _core.fs_read_stats()

        async def main():
            async with fs.open(name, "rb") as f:
                out = [await f.read(100), await f.read(100), await f.readinto(bytearray(50))]
                await f.seek(19990)
                out.append(await f.read())
                return out

        assert run(main()) == [data[:100], data[100:200], 50, data[19990:]]
        got = _stats_since(before)
        if loop_name == "pyloop":
            assert got["refused"] == 1 and got["inline"] == 0 and got["pool"] == 4
    finally:
        os.close(fd)
        os.unlink(name)


def test_cached_read_completes_without_suspending(run, tmp_path, loop_name):
    # As StreamReader.read with buffered data: on pyloop a cached read is
    # done in the task's first step, so a cancellation after it is too late.
    # (The stdlib loop's executor read may or may not be done by then: its
    # result and the position must agree either way.)
    p = tmp_path / "f"
    p.write_bytes(b"0123456789" * 1000)
    _need_nowait(p)

    async def main():
        async with fs.open(p, "rb") as f:
            t = asyncio.ensure_future(f.read(100))
            await asyncio.sleep(0)
            done_in_one_step = t.done()
            t.cancel()
            try:
                await t
            except asyncio.CancelledError:
                pass
            if not t.cancelled():
                assert t.result() == b"0123456789" * 10
                assert await f.tell() == 100
            else:
                assert await f.tell() in (0, 100)
            return done_in_one_step

    done_in_one_step = run(main())
    if loop_name == "pyloop":
        assert done_in_one_step


def test_cancelled_uncached_read_keeps_position(pyloop_loop, tmp_path):
    # Every pool thread blocks opening a FIFO, so reads the page cache cannot
    # answer (nothing cached; only a head cached) wait in libuv's queue:
    # cancelling them takes them back and the position stays where it was,
    # the cached head included.
    fifos = [str(tmp_path / f"fifo{i}") for i in range(_pool_size())]
    for f in fifos:
        os.mkfifo(f)
    p = tmp_path / "f"
    data = _file_with_cached_pages(p, 2 * MIB)
    before_req = _core._counters()

    async def main():
        loop = asyncio.get_running_loop()
        async with fs.open(p, "rb") as f:  # opened before the pool is blocked
            blockers = [asyncio.ensure_future(fs.read_bytes(q)) for q in fifos]
            try:
                await asyncio.sleep(0)  # the blockers hold every pool thread
                stats = _core.fs_read_stats()
                miss = asyncio.ensure_future(f.read(4096))
                await asyncio.sleep(0)
                assert miss.cancel()
                await asyncio.gather(miss, return_exceptions=True)
                await f.seek(2 * MIB)
                head = asyncio.ensure_future(f.read(MIB))
                await asyncio.sleep(0)
                assert head.cancel()
                await asyncio.gather(head, return_exceptions=True)
                seen = _stats_since(stats)
                assert seen["eagain"] == 1 and seen["partial"] == 1 and seen["pool"] == 2
                await asyncio.gather(*(loop.run_in_executor(None, lambda q=q: os.close(
                    os.open(q, os.O_WRONLY))) for q in fifos))
            finally:
                # a failed assertion above must not leave the pool blocked: the file's
                # close on the way out needs it
                _release_fifos(tmp_path)
            assert await asyncio.gather(*blockers) == [b""] * len(fifos)
            pos = await f.tell()
            rest = await f.read(10)
        return miss.cancelled(), head.cancelled(), pos, rest

    assert pyloop_loop.run_until_complete(main()) == (True, True, 2 * MIB,
                                                       data[2 * MIB:2 * MIB + 10])
    pyloop_loop.close()
    after = _core._counters()
    assert after["requests_created"] - before_req["requests_created"] == \
        after["requests_freed"] - before_req["requests_freed"]


def test_loop_close_with_queued_uncached_reads(tmp_path):
    # The loop closes while reads that missed the cache (one with a cached
    # head) wait in libuv's queue behind blocked pool threads: the teardown
    # takes them back and every request is freed.
    fifo = str(tmp_path / "fifo")
    os.mkfifo(fifo)
    p = tmp_path / "f"
    _file_with_cached_pages(p, 0)
    loop = pyloop.new_event_loop()
    before = _core._counters()
    f = loop.run_until_complete(fs.open(p, "rb"))

    async def start():
        blockers = [asyncio.ensure_future(fs.read_bytes(fifo)) for _ in range(_pool_size())]
        await asyncio.sleep(0)
        stats = _core.fs_read_stats()
        reads = [asyncio.ensure_future(f.read(MIB)),
                 asyncio.ensure_future(fs.read_bytes(p))]
        await asyncio.sleep(0)
        return blockers, reads, _stats_since(stats)

    blockers, reads, seen = loop.run_until_complete(start())
    assert seen["partial"] == 1 and seen["pool"] == 1
    releaser = subprocess.Popen(["sh", "-c", 'sleep 1; : > "$1"', "sh", fifo])
    loop.close()
    assert releaser.wait(timeout=60) == 0
    after = _core._counters()
    assert after["requests_created"] - before["requests_created"] == \
        after["requests_freed"] - before["requests_freed"] == _pool_size() + 3
    assert not any(t.done() for t in reads)
    for t in blockers + reads:  # as their collection would
        t.get_coro().close()
    os.close(f._fd)  # its close() would need the loop
    f._closed = True


def test_cached_read_on_a_closed_loop_raises_as_before(tmp_path):
    p = tmp_path / "f"
    p.write_bytes(b"x" * 100)
    loop = pyloop.new_event_loop()
    f = loop.run_until_complete(fs.open(p, "rb"))
    loop.close()
    other = pyloop.new_event_loop()
    try:
        with pytest.raises(RuntimeError, match="closed"):
            other.run_until_complete(f.read(10))
    finally:
        other.close()
        os.close(f._fd)
        f._closed = True
