"""python wheel_smoke.py CERTFILE KEYFILE

What tools/wheel_test.sh runs on an installed wheel, on a system without libuv: ordinary asyncio code, a TCP
echo, a UDP echo, a TLS echo and a subprocess on a pyloop loop. Prints one line per check; any failure raises.
"""
import asyncio
import ssl
import sys

import pyloop

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB: more than one read on every stream


async def _echo(reader, writer):
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.close()
    await writer.wait_closed()


async def _stream_roundtrip(**kw):
    server = await asyncio.start_server(_echo, "127.0.0.1", 0, ssl=kw.pop("server_ssl", None))
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port, **kw)
    writer.write(PAYLOAD)
    await writer.drain()
    got = await reader.readexactly(len(PAYLOAD))
    writer.close()
    await writer.wait_closed()
    server.close()
    await server.wait_closed()
    assert got == PAYLOAD
    return len(got)


async def check_asyncio():
    queue = asyncio.Queue()

    async def produce():
        for i in range(5):
            await queue.put(i)
            await asyncio.sleep(0.001)
        await queue.put(None)

    async def consume():
        seen = []
        while (item := await queue.get()) is not None:
            seen.append(item)
        return seen

    _, seen = await asyncio.gather(produce(), consume())
    assert seen == [0, 1, 2, 3, 4], seen
    try:
        await asyncio.wait_for(asyncio.sleep(10), 0.01)
    except asyncio.TimeoutError:
        pass
    else:
        raise AssertionError("wait_for did not time out")
    return f"gather/Queue/wait_for on {type(asyncio.get_running_loop()).__module__}"


async def check_tcp():
    return f"{await _stream_roundtrip()} bytes echoed"


async def check_udp():
    loop = asyncio.get_running_loop()

    class Peer(asyncio.DatagramProtocol):
        """The server answers each datagram upper-cased; the client keeps the first answer."""

        def __init__(self, server):
            self.server, self.answer = server, loop.create_future()

        def connection_made(self, transport):
            self.transport = transport

        def datagram_received(self, data, addr):
            if self.server:
                self.transport.sendto(data.upper(), addr)
            elif not self.answer.done():
                self.answer.set_result(data)

    server, _ = await loop.create_datagram_endpoint(lambda: Peer(True), local_addr=("127.0.0.1", 0))
    port = server.get_extra_info("sockname")[1]
    client, peer = await loop.create_datagram_endpoint(lambda: Peer(False), remote_addr=("127.0.0.1", port))
    client.sendto(b"udp ping")
    got = await asyncio.wait_for(peer.answer, 5)
    client.close()
    server.close()
    assert got == b"UDP PING", got
    return f"{got!r} came back"


async def check_tls(certfile, keyfile):
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(certfile, keyfile)
    client_ctx = ssl.create_default_context(cafile=certfile)  # verifies the chain and the host name
    n = await _stream_roundtrip(server_ssl=server_ctx, ssl=client_ctx, server_hostname="localhost")
    return f"{n} bytes echoed, {ssl.OPENSSL_VERSION}"


async def check_subprocess():
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "import sys; sys.stdout.write(sys.stdin.read().upper())",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate(b"subprocess")
    assert (out, proc.returncode) == (b"SUBPROCESS", 0), (out, proc.returncode)
    return f"{out!r}, exit status {proc.returncode}"


async def main(certfile, keyfile):
    assert isinstance(asyncio.get_running_loop(), pyloop.Loop)
    for name, check, args in [("asyncio", check_asyncio, ()), ("tcp", check_tcp, ()), ("udp", check_udp, ()),
                              ("tls", check_tls, (certfile, keyfile)), ("subprocess", check_subprocess, ())]:
        print(f"ok {name}: {await asyncio.wait_for(check(*args), 60)}", flush=True)


if __name__ == "__main__":
    pyloop.run(main(*sys.argv[1:3]))
    print(f"pyloop {pyloop.__version__} from {pyloop.__file__}")
    print(f"libuv {pyloop.libuv_version()} ({pyloop._core.libuv_linkage})")
