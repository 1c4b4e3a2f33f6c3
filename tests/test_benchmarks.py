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
         "udp_echo": 200, "subprocess_spawn": 4, "pipe_cat": 2, "getaddrinfo": 200}


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


def test_a_peer_that_fails_or_is_missing_keeps_its_cell():
    """The tables say why a loop has no figure instead of dropping its column."""
    sys.path.insert(0, os.path.dirname(WORKER))
    try:
        import loops
        import run
        import run_net
    finally:
        sys.path.pop(0)
    assert {"rloop", "zuvloop"} <= set(loops.LOOPS) and {"rloop", "zuvloop"} <= set(run_net.SERVERS)
    assert run.show_cell({"rates": [], "errors": ["exit 1: boom"], "median": None}) == "fails"
    assert run.show_cell({"missing": "zuvloop is not installed for this Python (x)"}) == \
        "not installed"
    assert run.show_cell({"rates": [2000.0], "median": 2000.0}) == "2.0k"
    cell = {"rps": [], "cpu_us": [], "errors": ["http check: refused"], "warnings": [],
            "missing": None}
    assert run_net.cell_text(cell) == "fails"
    assert run_net.cell_text(dict(cell, missing="rloop is not installed")) == "not installed"
    assert run_net.row_name(("churn", None, False, None)) == "churn-tcp-wrk-c20-close"


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


@pytest.mark.parametrize("size,records", [(1024, 1), (102400, 7)])
def test_tls_echo_client_pattern(loop_name, bench_cert, tmp_path, size, records):
    # benchmarks/tools/tls_echo_client.c as run_net.py runs it (--warmup, the
    # -warm rows): it counts round trips, and --stats reports one SSL_write of
    # the whole message, cut by OpenSSL into records of at most 16 KiB each way.
    import re
    import shutil
    import socket
    if not shutil.which("gcc") or not os.path.exists("/usr/include/openssl/ssl.h"):
        pytest.skip("gcc or the OpenSSL headers not found")
    client = str(tmp_path / "tls_echo_client")
    subprocess.run(["gcc", "-O2", "-o", client,
                    os.path.join(os.path.dirname(WORKER), "tools", "tls_echo_client.c"),
                    "-lssl", "-lcrypto"], check=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, NET_SERVER, loop_name, "tls", str(port), *bench_cert],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        out = subprocess.run([client, "--warmup", "--stats", "127.0.0.1", str(port), "2",
                              str(size), "0.5"], capture_output=True, text=True, timeout=60)
    finally:
        proc.terminate()
        proc.wait(10)
    assert out.returncode == 0, out.stderr
    trips = int(out.stdout.split()[0])
    assert trips >= 20
    m = re.search(r"records sent ([\d.]+) \(mean (\d+) B\), received ([\d.]+) .*"
                  r"SSL_write ([\d.]+), SSL_read ([\d.]+)", out.stderr)
    assert m, out.stderr
    sent, mean, received = float(m.group(1)), int(m.group(2)), float(m.group(3))
    # Counted in the timed window: the last messages may be unanswered, and the
    # server's two session tickets arrive in the first read.
    assert records <= sent <= records + 0.1 and records <= received <= records + 0.2
    # A TLS 1.3 record: 5 bytes of header, the data, its content type and a
    # 16-byte tag (the last message of the window may be partly sent).
    expected = (size + 22 * records) / records
    assert abs(mean - expected) <= expected * 0.01
