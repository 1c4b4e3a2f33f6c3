"""add_reader / add_writer / remove_reader / remove_writer."""
import asyncio
import os
import socket

import pytest


def test_reader_called_when_readable(loop):
    r, w = socket.socketpair()
    try:
        got = loop.create_future()

        def on_read():
            got.set_result(r.recv(100))
            loop.remove_reader(r)

        loop.add_reader(r, on_read)
        w.send(b"ping")
        assert loop.run_until_complete(asyncio.wait_for(got, 10)) == b"ping"
        assert loop.remove_reader(r) is False
    finally:
        r.close()
        w.close()


def test_writer_called_when_writable(loop):
    r, w = socket.socketpair()
    try:
        fut = loop.create_future()
        loop.add_writer(w.fileno(), lambda x: fut.done() or fut.set_result(x), "arg")
        assert loop.run_until_complete(asyncio.wait_for(fut, 10)) == "arg"
        assert loop.remove_writer(w.fileno()) is True
        assert loop.remove_writer(w.fileno()) is False
    finally:
        r.close()
        w.close()


def test_reader_and_writer_on_same_fd(loop):
    r, w = socket.socketpair()
    try:
        events = []
        done = loop.create_future()

        def on_read():
            events.append(("read", r.recv(10)))
            loop.remove_reader(r)
            if not done.done():
                done.set_result(None)

        def on_write():
            events.append(("write",))
            loop.remove_writer(r)
            w.send(b"x")

        loop.add_reader(r, on_read)
        loop.add_writer(r, on_write)
        loop.run_until_complete(asyncio.wait_for(done, 10))
        assert ("write",) in events and ("read", b"x") in events
    finally:
        r.close()
        w.close()


def test_replacing_a_reader(loop):
    r, w = socket.socketpair()
    try:
        calls = []
        done = loop.create_future()
        loop.add_reader(r, calls.append, "first")

        def second():
            calls.append("second")
            r.recv(10)
            loop.remove_reader(r)
            done.set_result(None)

        loop.add_reader(r, second)
        w.send(b"x")
        loop.run_until_complete(asyncio.wait_for(done, 10))
        assert calls == ["second"]
    finally:
        r.close()
        w.close()


def test_invalid_fds(loop):
    with pytest.raises(ValueError):
        loop.add_reader(-1, print)
    with pytest.raises(ValueError):
        loop.add_reader(object(), print)
    with pytest.raises(ValueError):
        loop.remove_reader(-5)


def test_regular_file_refused(loop, tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"x")
    with open(path, "rb") as f:
        with pytest.raises(PermissionError):
            loop.add_reader(f.fileno(), print)


def test_closed_loop(loop):
    r, w = socket.socketpair()
    loop.close()
    try:
        with pytest.raises(RuntimeError):
            loop.add_reader(r, print)
        assert loop.remove_reader(r) is False
    finally:
        r.close()
        w.close()


def test_fd_closed_and_number_reused(pyloop_loop):
    # A reader left on an fd that is closed and whose number comes back must
    # not break the loop (libuv would abort here; pyloop's own epoll set
    # re-registers). The stdlib selector loop keeps the stale registration
    # and never reports the new fd, so this is pyloop-only.
    loop = pyloop_loop
    r, w = socket.socketpair()
    fd = r.fileno()
    loop.add_reader(fd, print)
    r.close()
    loop.run_until_complete(asyncio.sleep(0))
    r2, w2 = socket.socketpair()
    try:
        got = loop.create_future()
        target = r2

        def on_read():
            got.set_result(target.recv(10))
            loop.remove_reader(target)

        loop.add_reader(target, on_read)
        w2.send(b"again")
        assert loop.run_until_complete(asyncio.wait_for(got, 10)) == b"again"
    finally:
        loop.remove_reader(fd)
        r2.close()
        w2.close()
        w.close()


def test_fd_of_a_transport_is_refused(pyloop_loop):
    a, b = socket.socketpair()
    t = pyloop_loop._make_socket_transport(a, asyncio.Protocol())
    try:
        with pytest.raises(RuntimeError, match="is used by transport"):
            pyloop_loop.add_reader(a.fileno(), print)
    finally:
        t.close()
        pyloop_loop.run_until_complete(asyncio.sleep(0))
        b.close()


def test_pipe_reader(loop):
    rfd, wfd = os.pipe()
    try:
        os.set_blocking(rfd, False)
        got = loop.create_future()

        def on_read():
            got.set_result(os.read(rfd, 10))
            loop.remove_reader(rfd)

        loop.add_reader(rfd, on_read)
        os.write(wfd, b"pipe")
        assert loop.run_until_complete(asyncio.wait_for(got, 10)) == b"pipe"
    finally:
        os.close(rfd)
        os.close(wfd)


@pytest.mark.parametrize("blocking", [True, False])
def test_fd_flags_left_as_the_user_set_them(loop, blocking):
    r, w = os.pipe()
    try:
        os.set_blocking(r, blocking)
        os.set_blocking(w, blocking)
        got = []
        loop.add_reader(r, lambda: got.append(os.read(r, 10)) or loop.stop())
        loop.add_writer(w, lambda: (os.write(w, b"ping"), loop.remove_writer(w)))
        loop.run_forever()
        assert got == [b"ping"]
        assert os.get_blocking(r) is blocking
        assert os.get_blocking(w) is blocking
        assert loop.remove_reader(r)
        assert os.get_blocking(r) is blocking
    finally:
        loop.remove_reader(r)
        loop.remove_writer(w)
        os.close(r)
        os.close(w)
