"""OS-surface workloads: UDP, subprocess spawning, pipes to a child.

Same contract as workloads_core: `fn(loop, n) -> ops` on a fresh loop.
"""
import asyncio
import socket

from workloads_core import workload

UDP_SIZE = 1024
UDP_IN_FLIGHT = 10


@workload("udp_echo", 100_000, "UDP round trips of 1 KiB datagrams to an echo endpoint on the same loop "
          f"({UDP_IN_FLIGHT} in flight)", group="os")
def udp_echo(loop, n):
    class Echo(asyncio.DatagramProtocol):
        def connection_made(self, transport):
            self.transport = transport

        def datagram_received(self, data, addr):
            self.transport.sendto(data, addr)

    class Client(asyncio.DatagramProtocol):
        def __init__(self):
            self.left = n
            self.done = loop.create_future()

        def connection_made(self, transport):
            self.transport = transport

        def datagram_received(self, data, addr):
            self.left -= 1
            if self.left >= UDP_IN_FLIGHT:
                self.transport.sendto(data)
            elif self.left == 0 and not self.done.done():
                self.done.set_result(None)

        def error_received(self, exc):
            if not self.done.done():
                self.done.set_exception(exc)

    async def main():
        server, _ = await loop.create_datagram_endpoint(Echo, local_addr=("127.0.0.1", 0),
                                                        family=socket.AF_INET)
        addr = server.get_extra_info("sockname")
        client, proto = await loop.create_datagram_endpoint(Client, remote_addr=addr)
        payload = b"x" * UDP_SIZE
        for _ in range(min(UDP_IN_FLIGHT, n)):
            client.sendto(payload)
        # Loopback UDP does not drop at this rate, but a lost datagram must
        # not hang the benchmark: give up after a generous while.
        await asyncio.wait_for(proto.done, 120)
        client.close()
        server.close()

    loop.run_until_complete(main())
    return n


@workload("subprocess_spawn", 400, "children spawned and waited for: `true` via create_subprocess_exec, "
          "4 at a time", group="os")
def subprocess_spawn(loop, n):
    async def worker(count):
        for _ in range(count):
            proc = await asyncio.create_subprocess_exec("true")
            await proc.wait()

    async def main():
        per = [n // 4 + (1 if i < n % 4 else 0) for i in range(4)]
        await asyncio.gather(*[worker(c) for c in per])

    loop.run_until_complete(main())
    return n


PIPE_CHUNK = 64 * 1024


@workload("pipe_cat", 256, "MiB through a `cat` child: written to its stdin pipe and read back from its "
          "stdout (one op = 1 MiB)", group="os")
def pipe_cat(loop, n):
    async def main():
        proc = await asyncio.create_subprocess_exec(
            "cat", stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
        chunk = b"y" * PIPE_CHUNK
        total = n * 1024 * 1024

        async def feed():
            for _ in range(total // PIPE_CHUNK):
                proc.stdin.write(chunk)
                await proc.stdin.drain()
            proc.stdin.close()

        async def drain_out():
            got = 0
            while data := await proc.stdout.read(256 * 1024):
                got += len(data)
            return got

        _, got = await asyncio.gather(feed(), drain_out())
        await proc.wait()
        if got != total:
            raise RuntimeError(f"cat returned {got} bytes of {total}")

    loop.run_until_complete(main())
    return n
