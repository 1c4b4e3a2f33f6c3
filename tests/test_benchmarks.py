"""The benchmark workloads run and count their operations on each loop (a
tiny size: this checks the harness, it measures nothing)."""
import json
import os
import subprocess
import sys

import pytest

WORKER = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                      "benchmarks", "worker.py")
SMALL = {"call_soon": 100, "call_later_cancel": 100, "task_gather": 1000, "sleep0": 200,
         "future_pingpong": 100, "queue": 100, "call_soon_threadsafe": 100,
         "udp_echo": 200, "subprocess_spawn": 4, "pipe_cat": 2}


@pytest.mark.parametrize("workload", sorted(SMALL))
def test_workload_runs(loop_name, workload):
    out = subprocess.run([sys.executable, WORKER, loop_name, workload, str(SMALL[workload])],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["loop"] == loop_name
    assert result["ops"] == SMALL[workload]
    assert result["seconds"] > 0


def test_every_registered_workload_is_covered():
    sys.path.insert(0, os.path.dirname(WORKER))
    try:
        import workloads_core
        import workloads_os  # noqa: F401  (registers into the same table)
    finally:
        sys.path.pop(0)
    assert set(workloads_core.REGISTRY) == set(SMALL)


NET_SERVER = os.path.join(os.path.dirname(WORKER), "net_server.py")


@pytest.fixture(scope="module")
def bench_cert(tmp_path_factory):
    d = tmp_path_factory.mktemp("bench-cert")
    cert, key = str(d / "cert.pem"), str(d / "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-keyout", key, "-out", cert],
                   check=True, capture_output=True)
    return cert, key


@pytest.mark.parametrize("kind", ["tls", "https"])
def test_tls_bench_servers_answer(loop_name, kind, bench_cert):
    # The TLS rows of run_net.py: the echo and hello-world servers speak TLS.
    import socket
    import ssl
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, NET_SERVER, loop_name, kind, str(port), *bench_cert],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        ctx = ssl.create_default_context(cafile=bench_cert[0])
        ctx.check_hostname = False
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
                ctx.wrap_socket(raw) as c:
            assert c.version() in ("TLSv1.2", "TLSv1.3")
            if kind == "tls":
                c.sendall(b"x" * 5000)
                got = b""
                while len(got) < 5000:
                    got += c.recv(65536)
                assert got == b"x" * 5000
            else:
                c.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                got = b""
                while chunk := c.recv(65536):
                    got += chunk
                assert got.startswith(b"HTTP/1.1 200 OK") and got.endswith(b"Hello, World!")
    finally:
        proc.terminate()
        proc.wait(10)
