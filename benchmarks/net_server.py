"""An echo server (or an HTTP hello-world server) on one loop, for the network
benchmarks:
    python benchmarks/net_server.py LOOP KIND PORT|unix:PATH [CERTFILE KEYFILE]
KIND: protocol | buffered | streams | sock (echo) | http (HTTP/1.1 hello world
parsed with httptools) | tls, https (protocol, http with ssl= from CERTFILE and
KEYFILE). Prints "ready" once listening, serves until terminated."""
import asyncio
import os
import signal
import socket
import ssl
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from loops import new_loop  # noqa: E402

try:
    import httptools
except ImportError:  # only the http kind needs it
    httptools = None


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


HELLO = b"Hello, World!"
HTTP_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n" % len(HELLO)
HTTP_KEEP = HTTP_HEAD + b"Connection: keep-alive\r\n\r\n" + HELLO
HTTP_CLOSE = HTTP_HEAD + b"Connection: close\r\n\r\n" + HELLO


class HttpHello(asyncio.Protocol):
    """Answers every request with the same small 200 response. Keep-alive as
    the request asks (HTTP/1.1 default on, `Connection: close` or HTTP/1.0
    without keep-alive ends the connection after the answer); a request that
    does not parse (or asks for an upgrade) closes the connection."""

    def connection_made(self, transport):
        self.transport = transport
        self.parser = httptools.HttpRequestParser(self)
        self.done = False

    def data_received(self, data):
        if self.done:
            return
        try:
            self.parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade):
            self.finish()

    def on_message_complete(self):
        if self.done:
            return
        if self.parser.should_keep_alive():
            self.transport.write(HTTP_KEEP)
        else:
            self.transport.write(HTTP_CLOSE)
            self.finish()

    def finish(self):
        # Pipelined requests after the last answer are ignored.
        self.done = True
        self.transport.close()


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


async def serve(loop, kind, where, cert=None):
    unix = where.startswith("unix:")
    path = where[5:] if unix else None
    port = None if unix else int(where)
    if kind in ("http", "https") and httptools is None:
        raise SystemExit("httptools is not installed (pip install -e '.[bench]')")
    ctx = None
    if kind in ("tls", "https"):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(*cert)
    factories = {"protocol": EchoProtocol, "buffered": EchoBuffered, "http": HttpHello,
                 "tls": EchoProtocol, "https": HttpHello}
    if kind in factories:
        factory = factories[kind]
        if unix:
            srv = await loop.create_unix_server(factory, path, ssl=ctx)
        else:
            srv = await loop.create_server(factory, "127.0.0.1", port, ssl=ctx)
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
    # The server serves from create_server on (start_serving=True); waiting on
    # a future that never completes is what serve_forever() does on every loop
    # but rloop 0.5, whose serve_forever() leaves the listening socket
    # unbound: every connection is refused.
    async with srv:
        await loop.create_future()


def main():
    loop_name, kind, where = sys.argv[1:4]
    cert = sys.argv[4:6] or None
    loop = new_loop(loop_name)
    asyncio.set_event_loop(loop)
    signal.signal(signal.SIGTERM, lambda *a: os._exit(0))
    loop.run_until_complete(serve(loop, kind, where, cert))


if __name__ == "__main__":
    main()
