"""pyloop.workers: real gunicorn masters with two workers of each kind serve
real HTTP requests over a TCP socket, from pyloop loops."""
import concurrent.futures
import http.client
import json
import signal
import socket
import subprocess
import sys
import textwrap
import time

import pytest

gunicorn = pytest.importorskip("gunicorn", reason="gunicorn is in the test extra")
import gunicorn.config  # noqa: E402

# Each app answers /loop with the module of the loop running the handler and the
# worker's pid. The handler blocks its loop for a moment so that concurrent
# requests are accepted by the other worker too.
APPS = {
    "UvicornWorker": ("uvicorn", """
        import asyncio, json, os, time

        async def app(scope, receive, send):
            if scope["type"] != "http":
                return
            time.sleep(0.02)
            body = json.dumps({"loop": type(asyncio.get_running_loop()).__module__,
                               "pid": os.getpid(), "path": scope["path"]}).encode()
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"application/json")]})
            await send({"type": "http.response.body", "body": body})
        """),
    "GunicornWebWorker": ("aiohttp", """
        import asyncio, os, time
        from aiohttp import web

        async def loop_info(request):
            time.sleep(0.02)
            return web.json_response({"loop": type(asyncio.get_running_loop()).__module__,
                                      "pid": os.getpid(), "path": request.path})

        app = web.Application()
        app.router.add_get("/loop", loop_info)
        """),
}


def _get(port, path):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path, headers={"Connection": "close"})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


def _wait_ready(proc, port, deadline):
    while True:
        if proc.poll() is not None:
            pytest.fail(f"gunicorn exited with {proc.returncode}:\n{proc.stderr.read()}")
        try:
            return _get(port, "/loop")
        except (ConnectionError, http.client.HTTPException, socket.timeout):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


# SIGTERM: gunicorn's graceful stop; SIGQUIT: its quick stop, which reaches the
# workers as SIGQUIT. Either way every worker must finish by itself (gunicorn
# would SIGKILL it after --graceful-timeout and say so in its log).
@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGQUIT], ids=["TERM", "QUIT"])
@pytest.mark.parametrize("worker", sorted(APPS))
def test_gunicorn_two_workers_serve_on_pyloop(worker, stop_signal, tmp_path):
    package, source = APPS[worker]
    pytest.importorskip(package, reason=f"{package} is in the test extra")
    (tmp_path / "app.py").write_text(textwrap.dedent(source))
    # The test binds the listening socket and hands it to gunicorn (fd://), so
    # the port is known and no other process can take it in between.
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    fd = listener.fileno()
    args = [sys.executable, "-m", "gunicorn", "--workers", "2", "--worker-class",
            f"pyloop.workers.{worker}", "--bind", f"fd://{fd}", "--chdir", str(tmp_path),
            "--graceful-timeout", "20", "app:app"]
    if "control_socket" in gunicorn.config.Config().settings:
        # gunicorn 25+ listens on a control socket in $HOME by default; keep
        # concurrent runs apart.
        args[-1:-1] = ["--control-socket", str(tmp_path / "gunicorn.ctl")]
    proc = subprocess.Popen(
        args,
        pass_fds=[fd], stderr=subprocess.PIPE, text=True)
    listener.close()
    try:
        _wait_ready(proc, port, time.monotonic() + 60)
        pids = set()
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            # Bounded: both workers have answered well before this many rounds.
            for _ in range(25):
                results = list(pool.map(lambda i: _get(port, f"/loop?i={i}"), range(16)))
                for status, body in results:
                    assert status == 200
                    assert body == {"loop": "pyloop.loop", "pid": body["pid"], "path": "/loop"}
                    pids.add(body["pid"])
                if len(pids) == 2:
                    break
        assert len(pids) == 2, f"requests were served by {pids} only"
        assert proc.pid not in pids
    finally:
        proc.send_signal(stop_signal)
        try:
            _, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:  # pragma: no cover - a hung shutdown
            proc.kill()
            _, err = proc.communicate()
    assert proc.returncode == 0, err
    booted = [line for line in err.splitlines() if "Booting worker with pid" in line]
    assert len(booted) == 2, err
    assert "Traceback" not in err, err
    assert "SIGKILL" not in err, err
    # Every worker pid that served a request is one that gunicorn booted.
    assert pids == {int(line.rsplit(" ", 1)[1]) for line in booted}
