"""The processes benchmarks/run_apps.py measures work on each loop (tiny
runs: this checks the harness, it measures nothing)."""
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

import pytest
from _pg import free_port  # examples/_pg.py, loaded by conftest.py

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
APPS = os.path.join(ROOT, "benchmarks", "apps.py")
BENCH = os.path.join(ROOT, "benchmarks")
LOOP_MODULE = {"pyloop": "pyloop.loop", "asyncio": "asyncio.unix_events"}



def get_when_up(proc, port, path):
    deadline = time.monotonic() + 60
    while True:
        assert proc.poll() is None, proc.stderr.read()
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
                return r.read()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def test_asyncpg_client(pg, loop_name):
    out = subprocess.run([sys.executable, APPS, "asyncpg", loop_name, pg.dsn, "0.2", "3"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["loop"] == loop_name
    assert result["queries"] >= 3 and result["seconds"] > 0 and result["cpu"] >= 0


@pytest.mark.parametrize("server", ["aiohttp", "uvicorn"])
def test_http_servers(loop_name, server):
    port = free_port()
    if server == "aiohttp":
        cmd = [sys.executable, APPS, "aiohttp", loop_name, str(port)]
        want = b"Hello, World!"
    else:
        loop_arg = "pyloop:new_event_loop" if loop_name == "pyloop" else "asyncio"
        cmd = [sys.executable, "-m", "uvicorn", "apps:fastapi_app", "--app-dir", BENCH,
               "--loop", loop_arg, "--port", str(port), "--log-level", "warning"]
        want = b'{"message":"Hello, World!"}'
    proc = subprocess.Popen(cmd, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        body = get_when_up(proc, port, "/")
        loop = json.loads(get_when_up(proc, port, "/loop"))["loop"]
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert body == want
    assert loop == LOOP_MODULE[loop_name]
    # aiohttp's run_app exits 0 on SIGTERM; uvicorn re-raises the signal
    assert proc.returncode == (0 if server == "aiohttp" else -signal.SIGTERM)
