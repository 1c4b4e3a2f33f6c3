"""FastAPI served by uvicorn as a real process:

    python -m uvicorn fastapi_app:app --app-dir tests/integration \\
        --loop pyloop:new_event_loop --port PORT

(uvicorn 0.36 and later take an import string for --loop and call it as the
loop factory), or `--loop asyncio` for the stdlib loop, with requests from
this process over real sockets (http.client)."""
import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
from _pg import free_port  # examples/_pg.py, loaded by conftest.py

HERE = os.path.dirname(os.path.abspath(__file__))
LOOP_ARGS = {"pyloop": "pyloop:new_event_loop", "asyncio": "asyncio"}
STARTED = "Application startup complete."



class Uvicorn:
    def __init__(self, tmp_path, loop_name, http, tls=None):
        self.port = free_port()
        self.tls = tls  # conftest.TLSCerts: serve https with its server certificate
        self.log = tmp_path / f"uvicorn-{loop_name}-{http}.log"
        cmd = [sys.executable, "-m", "uvicorn", "fastapi_app:app", "--app-dir", HERE,
               "--loop", LOOP_ARGS[loop_name], "--http", http, "--host", "127.0.0.1",
               "--port", str(self.port), "--timeout-graceful-shutdown", "10"]
        if tls is not None:
            cmd += ["--ssl-certfile", tls.server_cert, "--ssl-keyfile", tls.server_key]
        with open(self.log, "w") as err:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=err, stderr=err)
        self.wait_for(STARTED)

    def wait_for(self, line):
        """Until the server's output has `line` (it fails if the server exits
        or takes over a minute)."""
        deadline = time.monotonic() + 60
        while line not in self.output():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"uvicorn never printed {line!r}:\n{self.output()}")
            time.sleep(0.02)

    def output(self):
        return self.log.read_text()

    def connection(self, timeout=30):
        if self.tls is None:
            return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        return http.client.HTTPSConnection("127.0.0.1", self.port, timeout=timeout,
                                           context=self.tls.client_context())

    def request(self, method, path, body=None, timeout=30):
        conn = self.connection(timeout)
        try:
            headers = {}
            if body is not None:
                body = json.dumps(body)
                headers["Content-Type"] = "application/json"
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            return resp.status, resp.getheader("Content-Type"), resp.read()
        finally:
            conn.close()

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def server_params():
    params = [("pyloop", "h11"), ("asyncio", "h11")]
    try:
        import httptools  # noqa: F401
    except ImportError:
        pass
    else:
        params.append(("pyloop", "httptools"))
    return params


@pytest.fixture(scope="module", params=server_params(), ids="-".join)
def server(request, tmp_path_factory):
    loop_name, http = request.param
    srv = Uvicorn(tmp_path_factory.mktemp("uvicorn"), loop_name, http)
    srv.loop_name = loop_name
    yield srv
    srv.kill()


def test_runs_on_the_requested_loop(server):
    status, _, body = server.request("GET", "/loop")
    assert status == 200
    want = {"pyloop": {"module": "pyloop.loop", "class": "Loop"},
            "asyncio": {"module": "asyncio.unix_events", "class": "_UnixSelectorEventLoop"}}
    assert json.loads(body) == want[server.loop_name]


def test_json_crud_and_validation(server):
    item = {"name": "widget", "price": 2.5, "tags": ["a", "b"]}
    created = server.request("POST", "/items/7", item)
    duplicate = server.request("POST", "/items/7", item)
    read = server.request("GET", "/items/7?upper=true")
    missing = server.request("GET", "/items/8")
    invalid = server.request("POST", "/items/9", {"name": "", "price": -1})
    not_an_int = server.request("GET", "/items/seven")

    assert created[0] == 201 and created[1] == "application/json"
    assert json.loads(created[2]) == {"id": 7, **item}
    assert duplicate[0] == 409
    assert json.loads(read[2]) == {"id": 7, "name": "WIDGET", "price": 2.5, "tags": ["a", "b"]}
    assert missing[0] == 404 and json.loads(missing[2]) == {"detail": "no such item"}
    assert invalid[0] == 422
    assert sorted(e["loc"][-1] for e in json.loads(invalid[2])["detail"]) == ["name", "price"]
    assert not_an_int[0] == 422


def test_streaming_response(server):
    status, ctype, body = server.request("GET", "/stream?n=3000")
    assert status == 200 and ctype.startswith("text/plain")
    assert body.decode().splitlines() == [str(i) for i in range(3000)]


def test_concurrent_clients_and_executor(server):
    """Twenty clients at once, each on its own connection, half of them on a
    slow endpoint: every one gets its own answer."""
    results = {}

    def client(i):
        path = "/slow?seconds=0.2" if i % 2 else "/offload"
        results[i] = server.request("GET", path)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(20):
        status, _, body = results[i]
        assert status == 200
        assert json.loads(body) == ({"slept": 0.2} if i % 2 else {"total": 499500})


def keep_alive_ports(server, n=10):
    """n requests on one connection: the client ports they went out from."""
    conn = server.connection()
    try:
        ports = set()
        for _ in range(n):
            conn.request("GET", "/loop")
            resp = conn.getresponse()
            resp.read()
            assert resp.status == 200
            ports.add(conn.sock.getsockname()[1])
        return ports
    finally:
        conn.close()


def test_keep_alive_connection(server):
    assert len(keep_alive_ports(server)) == 1  # all ten on one connection


@pytest.mark.parametrize("loop_name", sorted(LOOP_ARGS))
def test_graceful_shutdown_on_sigterm(tmp_path, loop_name):
    """SIGTERM while a request is in flight: uvicorn stops accepting, the
    request still gets its answer, the lifespan shutdown runs, and then the
    process ends by the SIGTERM it caught (uvicorn re-raises captured signals
    after a clean shutdown, so the status is -SIGTERM, not a crash)."""
    srv = Uvicorn(tmp_path, loop_name, "h11")
    try:
        result = {}
        t = threading.Thread(target=lambda: result.update(r=srv.request("GET", "/slow?seconds=1")))
        t.start()
        srv.wait_for("slow request started (1.0)")  # the handler is running
        srv.proc.send_signal(signal.SIGTERM)
        t.join(60)
        rc = srv.proc.wait(60)
    finally:
        srv.kill()
    out = srv.output()
    assert result["r"][0] == 200 and json.loads(result["r"][2]) == {"slept": 1.0}
    assert rc == -signal.SIGTERM
    assert "Shutting down" in out and "Waiting for application shutdown." in out
    assert "Application shutdown complete." in out and "Finished server process" in out
    assert "Traceback" not in out and "ERROR" not in out


@pytest.mark.parametrize("loop_name", sorted(LOOP_ARGS))
def test_https(tmp_path, tls_certs, loop_name):
    """uvicorn with --ssl-certfile/--ssl-keyfile (its ssl= on create_server):
    requests over verified TLS, a streamed body, ten requests kept alive on one
    connection, and ten clients at once."""
    srv = Uvicorn(tmp_path, loop_name, "h11", tls=tls_certs)
    try:
        status, _, body = srv.request("GET", "/loop")
        assert status == 200
        assert json.loads(body)["module"] == ("pyloop.loop" if loop_name == "pyloop"
                                              else "asyncio.unix_events")
        status, _, body = srv.request("GET", "/stream?n=3000")
        assert status == 200 and body.decode().splitlines() == [str(i) for i in range(3000)]
        assert len(keep_alive_ports(srv)) == 1
        results = {}
        threads = [threading.Thread(target=lambda i=i: results.update({i: srv.request(
            "GET", "/offload")})) for i in range(10)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert [results[i][0] for i in range(10)] == [200] * 10
        assert all(json.loads(results[i][2]) == {"total": 499500} for i in range(10))
    finally:
        srv.kill()
    assert "Traceback" not in srv.output()
