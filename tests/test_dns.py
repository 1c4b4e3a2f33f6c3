"""getaddrinfo / getnameinfo give exactly what the socket module gives."""
import asyncio
import itertools
import socket

import pytest

HOSTS = [None, "localhost", "127.0.0.1", "::1", "0.0.0.0", "fe80::1%lo", "::ffff:127.0.0.1"]
PORTS = [None, 0, "80", "http"]
FAMILIES = [0, socket.AF_INET, socket.AF_INET6]
TYPES = [0, socket.SOCK_STREAM, socket.SOCK_DGRAM]
FLAGS = [0, socket.AI_PASSIVE | socket.AI_CANONNAME, socket.AI_NUMERICHOST]


def _expected(*args, **kw):
    try:
        return ("ok", socket.getaddrinfo(*args, **kw))
    except OSError as exc:
        return ("err", type(exc), getattr(exc, "errno", None))


async def _actual(loop, *args, **kw):
    try:
        return ("ok", await loop.getaddrinfo(*args, **kw))
    except OSError as exc:
        return ("err", type(exc), getattr(exc, "errno", None))


def test_getaddrinfo_matrix(loop):
    cases = list(itertools.product(HOSTS, PORTS, FAMILIES, TYPES, FLAGS))

    async def main():
        mismatches = []
        for host, port, fam, typ, flags in cases:
            want = _expected(host, port, family=fam, type=typ, flags=flags)
            got = await _actual(loop, host, port, family=fam, type=typ, flags=flags)
            if want != got:
                mismatches.append(((host, port, fam, typ, flags), want, got))
        return mismatches

    assert loop.run_until_complete(main()) == []


@pytest.mark.parametrize("addr,flags", [
    (("127.0.0.1", 80), 0),
    (("127.0.0.1", 80), socket.NI_NUMERICHOST | socket.NI_NUMERICSERV),
    (("::1", 443, 0, 0), 0),
    (("127.0.0.1", 53), socket.NI_DGRAM),
])
def test_getnameinfo(loop, addr, flags):
    assert loop.run_until_complete(loop.getnameinfo(addr, flags)) == socket.getnameinfo(addr, flags)
