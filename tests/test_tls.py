"""TLS on pyloop and the stdlib loop."""
import asyncio
import os

import pytest


# ---- the C read step (csrc/tls.c, loop._ssl_read) ---------------------------------


def _tls_pair_contexts(tmp_path_factory):
    import ssl
    import subprocess
    d = tmp_path_factory.mktemp("tls-read")
    cert, key = str(d / "cert.pem"), str(d / "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
                    "-keyout", key, "-out", cert], check=True, capture_output=True)
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert, key)
    client = ssl.create_default_context(cafile=cert)
    return server, client


@pytest.fixture(scope="module")
def read_ctx(tmp_path_factory):
    return _tls_pair_contexts(tmp_path_factory)


class _Collect(asyncio.Protocol):
    def __init__(self):
        self.data = bytearray()
        self.calls = 0
        self.events = []
        self.lost = asyncio.get_event_loop().create_future()

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        assert type(data) is bytes
        self.calls += 1
        self.data += data

    def eof_received(self):
        self.events.append("eof")

    def connection_lost(self, exc):
        self.events.append("lost")
        if not self.lost.done():
            self.lost.set_result(exc)


def test_tls_many_records_and_close_notify(loop, read_ctx):
    # Many small records sent back to back (several reach one read), then a
    # clean TLS shutdown: every byte in order, then eof_received, then
    # connection_lost(None).
    import socket
    import ssl
    import threading
    server_ctx, client_ctx = read_ctx
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(1)
    payload = [b"%04d" % i * 25 for i in range(200)]

    def peer():
        conn, _ = lsock.accept()
        with server_ctx.wrap_socket(conn, server_side=True) as s:
            for p in payload:
                s.sendall(p)
            s.unwrap()  # close_notify

    t = threading.Thread(target=peer)
    t.start()

    async def main():
        tr, proto = await loop.create_connection(
            _Collect, "127.0.0.1", lsock.getsockname()[1], ssl=client_ctx,
            server_hostname="localhost")
        exc = await asyncio.wait_for(proto.lost, 30)
        return exc, proto

    try:
        exc, proto = loop.run_until_complete(main())
    finally:
        t.join(30)
        lsock.close()
    assert exc is None
    assert bytes(proto.data) == b"".join(payload)
    assert proto.events == ["eof", "lost"]


def test_tls_large_transfer_intact(loop, read_ctx):
    server_ctx, client_ctx = read_ctx
    blob = os.urandom(3 * 1024 * 1024 + 17)

    class Sink(_Collect):
        def data_received(self, data):
            super().data_received(data)
            if len(self.data) == len(blob):
                self.transport.close()

    async def main():
        async def handle(reader, writer):
            writer.write(blob)
            await writer.drain()
            try:
                await reader.read()
            finally:
                writer.close()

        srv = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_ctx)
        port = srv.sockets[0].getsockname()[1]
        tr, proto = await loop.create_connection(Sink, "127.0.0.1", port, ssl=client_ctx,
                                                 server_hostname="localhost")
        await asyncio.wait_for(proto.lost, 60)
        srv.close()
        await srv.wait_closed()
        return proto

    proto = loop.run_until_complete(main())
    assert bytes(proto.data) == blob


def test_ssl_read_rejects_bad_arguments(pyloop_loop):
    with pytest.raises(TypeError):
        pyloop_loop._ssl_read()
    with pytest.raises(AttributeError):
        pyloop_loop._ssl_read(object(), object())
