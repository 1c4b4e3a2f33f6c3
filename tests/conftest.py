"""Shared fixtures: most tests run against both pyloop and the stdlib loop."""
import asyncio
import gc
import os
import signal
import ssl
import subprocess
import sys

import pytest

import pyloop

# A run started as a background job of a non-interactive shell (nohup, `cmd &`
# in a script) begins with SIGINT ignored: Python then installs no
# KeyboardInterrupt handler, and children exec'd from here inherit the
# ignore, so the Ctrl-C tests would see no interrupt on either loop. Give the
# run Python's usual handler (exec resets a handled signal to its default).
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

LOOP_FACTORIES = {
    "pyloop": pyloop.new_event_loop,
    "asyncio": asyncio.new_event_loop,
}


@pytest.fixture(params=sorted(LOOP_FACTORIES))
def loop_factory(request):
    """A zero-argument callable making a new loop of the kind under test."""
    return LOOP_FACTORIES[request.param]


@pytest.fixture
def loop_name(loop_factory):
    return "pyloop" if loop_factory is pyloop.new_event_loop else "asyncio"


@pytest.fixture
def loop(loop_factory):
    """A fresh loop, closed (and its leftovers collected) after the test."""
    lp = loop_factory()
    try:
        yield lp
    finally:
        if not lp.is_closed():
            if lp.is_running():  # pragma: no cover - a test left it running
                lp.stop()
            lp.close()
        asyncio.set_event_loop(None)
        gc.collect()


@pytest.fixture
def pyloop_loop():
    """A pyloop loop only, for behaviour that has no stdlib counterpart."""
    lp = pyloop.new_event_loop()
    try:
        yield lp
    finally:
        if not lp.is_closed():
            lp.close()
        gc.collect()


# ---- TLS certificates -------------------------------------------------------

class TLSCerts:
    """Certificates made for this test session with the openssl command: a
    CA, a server certificate it signed for localhost and 127.0.0.1, a client
    certificate it signed, and a self-signed server certificate for
    localhost that nothing trusts."""

    def __init__(self, directory):
        self.dir = directory
        self.ca = os.path.join(directory, "ca.pem")
        self.server_cert = os.path.join(directory, "server.pem")
        self.server_key = os.path.join(directory, "server.key")
        self.client_cert = os.path.join(directory, "client.pem")
        self.client_key = os.path.join(directory, "client.key")
        self.rogue_cert = os.path.join(directory, "rogue.pem")
        self.rogue_key = os.path.join(directory, "rogue.key")

    def server_context(self, *, rogue=False, require_client_cert=False):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        if rogue:
            ctx.load_cert_chain(self.rogue_cert, self.rogue_key)
        else:
            ctx.load_cert_chain(self.server_cert, self.server_key)
        if require_client_cert:
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(self.ca)
        return ctx

    def client_context(self, *, with_cert=False):
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.ca)
        if with_cert:
            ctx.load_cert_chain(self.client_cert, self.client_key)
        return ctx


@pytest.fixture
def write_type_error():
    """A pattern of the TypeError a stream transport's write() raises for a
    str, as the running Python's selector transport words it (3.14 names the
    three accepted types where earlier versions said "bytes-like")."""
    return "bytes, bytearray, or memoryview" if sys.version_info >= (3, 14) else "bytes-like"


def _openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _make_key_and_csr(name, cn, cwd):
    _openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={cn}",
             cwd=cwd)


def _sign(name, extensions, cwd):
    with open(os.path.join(cwd, f"{name}.ext"), "w") as f:
        f.write("\n".join(extensions) + "\n")
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-CAcreateserial", "-days", "2", "-sha256", "-extfile", f"{name}.ext",
             "-out", f"{name}.pem", cwd=cwd)


@pytest.fixture(scope="session")
def tls_certs(tmp_path_factory):
    """TLSCerts in a session-wide temporary directory."""
    d = str(tmp_path_factory.mktemp("tls"))
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    _openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
             "-subj", "/CN=pyloop test CA",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)
    _make_key_and_csr("server", "localhost", d)
    _sign("server", ["subjectAltName=DNS:localhost,IP:127.0.0.1", "basicConstraints=CA:FALSE",
                     "extendedKeyUsage=serverAuth"], d)
    _make_key_and_csr("client", "pyloop test client", d)
    _sign("client", ["basicConstraints=CA:FALSE", "extendedKeyUsage=clientAuth"], d)
    _openssl("req", "-x509", *ec, "-keyout", "rogue.key", "-out", "rogue.pem", "-days", "2",
             "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
             cwd=d)
    return TLSCerts(d)
