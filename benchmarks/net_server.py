"""An echo server on one loop, for the network benchmarks:
    python benchmarks/net_server.py LOOP KIND PORT|unix:PATH
KIND: protocol | buffered | streams | sock. Prints "ready" once listening,
serves until terminated."""
import asyncio
import os
import signal
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from loops import new_loop  # noqa: E402


class EchoProtocol(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)


class EchoBuffered(asyncio.BufferedProtocol):
    def __init__(self):
        self.buf = bytearray(256 * 1024)
        self.view = memoryview(self.buf)

    def connection_made(self, transport):
        self.transport = transport

    def get_buffer(self, hint):
        return self.buf

    def buffer_updated(self, n):
        self.transport.write(self.view[:n])


async def echo_streams(reader, writer):
    while data := await reader.read(256 * 1024):
        writer.write(data)
        await writer.drain()
    writer.close()


async def echo_sock(loop, conn):
    conn.setblocking(False)
    with conn:
        while data := await loop.sock_recv(conn, 256 * 1024):
            await loop.sock_sendall(conn, data)


async def serve(loop, kind, where):
    unix = where.startswith("unix:")
    path = where[5:] if unix else None
    port = None if unix else int(where)
    if kind == "protocol" or kind == "buffered":
        factory = EchoProtocol if kind == "protocol" else EchoBuffered
        if unix:
            srv = await loop.create_unix_server(factory, path)
        else:
            srv = await loop.create_server(factory, "127.0.0.1", port)
    elif kind == "streams":
        if unix:
            srv = await asyncio.start_unix_server(echo_streams, path)
        else:
            srv = await asyncio.start_server(echo_streams, "127.0.0.1", port)
    elif kind == "sock":
        lst = socket.socket(socket.AF_UNIX if unix else socket.AF_INET)
        lst.bind(path if unix else ("127.0.0.1", port))
        lst.listen(1024)
        lst.setblocking(False)
        print("ready", flush=True)
        while True:
            conn, _ = await loop.sock_accept(lst)
            loop.create_task(echo_sock(loop, conn))
    else:
        raise SystemExit(f"unknown kind {kind}")
    print("ready", flush=True)
    async with srv:
        await srv.serve_forever()


def main():
    loop_name, kind, where = sys.argv[1:4]
    loop = new_loop(loop_name)
    asyncio.set_event_loop(loop)
    signal.signal(signal.SIGTERM, lambda *a: os._exit(0))
    loop.run_until_complete(serve(loop, kind, where))


if __name__ == "__main__":
    main()
