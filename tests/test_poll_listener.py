"""Listening sockets a server serves: pyloop watches each one on a libuv
watcher of its own, through a duplicate of its fd (csrc/poll.c), instead of
in the add_reader epoll set. What a caller sees must stay the stdlib's: the
port is free once the server closed, other registrations on the same fd
work, and a socket closed and its fd number reused is the new socket's."""
import asyncio
import socket


class Hello(asyncio.Protocol):
    def connection_made(self, transport):
        transport.write(b"hello")
        transport.close()


async def fetch(loop, port):
    """What a connection to `port` reads until end of file."""
    s = socket.socket()
    s.setblocking(False)
    try:
        await loop.sock_connect(s, ("127.0.0.1", port))
        data = b""
        while chunk := await loop.sock_recv(s, 100):
            data += chunk
        return data
    finally:
        s.close()


def test_closed_server_frees_its_port(loop):
    # The duplicate closes with the server: another socket can listen on
    # the port at once (a second listening socket on it would refuse that
    # even with SO_REUSEADDR).
    async def main():
        server = await loop.create_server(Hello, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        assert await fetch(loop, port) == b"hello"
        server.close()
        await server.wait_closed()
        s = socket.socket()
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", port))
            s.listen()
        finally:
            s.close()

    loop.run_until_complete(main())


def test_writer_on_a_listening_socket_keeps_it_served(loop):
    # A writer added on the listener's fd (pyloop moves the listener into
    # the epoll set with it) and removed again: accepting goes on throughout.
    async def main():
        server = await loop.create_server(Hello, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        fd = server.sockets[0].fileno()
        try:
            loop.add_writer(fd, lambda: None)  # a listening socket never turns writable
            assert await fetch(loop, port) == b"hello"
            assert loop.remove_writer(fd) is True
            assert await fetch(loop, port) == b"hello"
            assert loop.remove_writer(fd) is False
        finally:
            server.close()
            await server.wait_closed()
        refused = socket.socket()
        try:
            refused.setblocking(False)
            try:
                await loop.sock_connect(refused, ("127.0.0.1", port))
            except ConnectionRefusedError:
                return "refused"
            return "connected"
        finally:
            refused.close()

    assert loop.run_until_complete(main()) == "refused"


def test_socket_closed_without_remove_reader_then_fd_reused(pyloop_loop):
    # A served listening socket closed behind its server's back (no
    # remove_reader), and a new server whose socket may take the same fd
    # number: the new one serves, and once the number is the new socket's,
    # the old port refuses connections. (pyloop only: the stdlib's selector
    # keeps the closed socket's key, so add_reader on the reused number only
    # replaces the key's data and never registers the new socket with
    # epoll, and the new server waits forever.)
    loop = pyloop_loop

    async def main():
        old = await loop.create_server(Hello, "127.0.0.1", 0)
        old_port = old.sockets[0].getsockname()[1]
        old_fd = old.sockets[0].fileno()
        assert await fetch(loop, old_port) == b"hello"
        old._sockets[0].close()
        new = await loop.create_server(Hello, "127.0.0.1", 0)
        try:
            new_port = new.sockets[0].getsockname()[1]
            assert await fetch(loop, new_port) == b"hello"
            assert await fetch(loop, new_port) == b"hello"
            # the new socket took the lowest free number, the old one's
            assert new.sockets[0].fileno() == old_fd
            try:
                await fetch(loop, old_port)
            except ConnectionRefusedError:
                return "refused"
            return "served"
        finally:
            new.close()
            await new.wait_closed()

    assert loop.run_until_complete(main()) == "refused"
