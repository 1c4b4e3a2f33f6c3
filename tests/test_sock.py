"""sock_* methods: low-level socket operations awaited on the loop."""
import asyncio
import socket

import pytest


def _listener(family=socket.AF_INET):
    lst = socket.socket(family, socket.SOCK_STREAM)
    lst.bind(("127.0.0.1", 0))
    lst.listen(5)
    lst.setblocking(False)
    return lst


def test_connect_accept_sendall_recv(loop):
    async def main():
        lst = _listener()
        c = socket.socket()
        c.setblocking(False)
        try:
            accept = asyncio.ensure_future(loop.sock_accept(lst))
            await loop.sock_connect(c, lst.getsockname())
            s, addr = await accept
            s.setblocking(False)
            payload = b"0123456789" * 200_000
            send = asyncio.ensure_future(loop.sock_sendall(c, payload))
            got = bytearray()
            while len(got) < len(payload):
                got += await loop.sock_recv(s, 65536)
            await send
            buf = bytearray(10)
            await loop.sock_sendall(s, b"into")
            n = await loop.sock_recv_into(c, buf)
            s.close()
            return bytes(got) == payload, bytes(buf[:n])
        finally:
            c.close()
            lst.close()

    assert loop.run_until_complete(main()) == (True, b"into")


def test_connect_refused(loop):
    async def main():
        lst = _listener()
        addr = lst.getsockname()
        lst.close()
        c = socket.socket()
        c.setblocking(False)
        try:
            with pytest.raises(ConnectionRefusedError):
                await loop.sock_connect(c, addr)
        finally:
            c.close()

    loop.run_until_complete(main())


def test_udp_sendto_recvfrom(loop):
    async def main():
        a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for s in (a, b):
            s.bind(("127.0.0.1", 0))
            s.setblocking(False)
        try:
            await loop.sock_sendto(a, b"dgram", b.getsockname())
            data, addr = await loop.sock_recvfrom(b, 100)
            buf = bytearray(100)
            await loop.sock_sendto(b, b"back", a.getsockname())
            n, addr2 = await loop.sock_recvfrom_into(a, buf)
            return data, addr, bytes(buf[:n]), addr2
        finally:
            a.close()
            b.close()

    data, addr, back, addr2 = loop.run_until_complete(main())
    assert data == b"dgram" and back == b"back"
    assert addr[0] == "127.0.0.1" and addr2[0] == "127.0.0.1"


def test_blocking_socket_refused_in_debug(loop):
    loop.set_debug(True)
    s = socket.socket()
    try:
        with pytest.raises(ValueError, match="non-blocking"):
            loop.run_until_complete(loop.sock_recv(s, 10))
    finally:
        s.close()


def test_cancelled_recv_unregisters(loop):
    async def main():
        a, b = socket.socketpair()
        a.setblocking(False)
        try:
            t = asyncio.ensure_future(loop.sock_recv(a, 10))
            await asyncio.sleep(0.01)
            t.cancel()
            with pytest.raises(asyncio.CancelledError):
                await t
            # The fd is free again for a new waiter.
            t2 = asyncio.ensure_future(loop.sock_recv(a, 10))
            b.send(b"ok")
            return await asyncio.wait_for(t2, 10)
        finally:
            a.close()
            b.close()

    assert loop.run_until_complete(main()) == b"ok"
