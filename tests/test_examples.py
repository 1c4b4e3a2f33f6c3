"""Every example in examples/ runs as a real subprocess, on pyloop (its
default) and with --loop asyncio, and prints exactly the expected output; the
web server example also serves real requests in its --serve mode."""
import http.client
import json
import os
import signal
import subprocess
import sys

import pytest

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")
LOOPS = ["pyloop", "asyncio"]

# Third-party packages (all in the test extra) each example needs.
NEEDS = {"http_client": ["aiohttp"], "web_server": ["aiohttp", "fastapi", "uvicorn"],
         "async_files": ["aiofiles"]}

# What web_server.py's client sees of the API, the same from both frameworks.
_WEB_API_SESSION = """\
  GET /items -> 200 []
  POST /items -> 201 {'id': 1, 'name': 'pen', 'tags': ['office']}
  POST /items -> 201 {'id': 2, 'name': 'cup', 'tags': ['kitchen', 'office']}
  POST /items -> 422 (error detail)
  GET /items -> 200 [{'id': 1, 'name': 'pen', 'tags': ['office']}, {'id': 2, 'name': 'cup', 'tags': ['kitchen', 'office']}]
  GET /items?tag=kitchen -> 200 [{'id': 2, 'name': 'cup', 'tags': ['kitchen', 'office']}]
  GET /items/2 -> 200 {'id': 2, 'name': 'cup', 'tags': ['kitchen', 'office']}
"""

# Expected standard output, with <loop> where the loop's name appears.
EXPECTED = {
    "coroutines_and_loops": """\
loop: <loop>
ways to run a coroutine:
  <loop>.run: <loop>
  asyncio.run with loop_factory: <loop>
  Runner: <loop>, 'hello, runner', same loop each time: True
  Runner closed its loop: True
  a coroutine object: coroutine, awaited: 'hello, world'
  sequential: ['hello, a', 'hello, b']
  concurrent: ['hello, c', 'hello, d']
  parse_port('8080') = 8080
  parse_port('http') failed: invalid literal for int() with base 10: 'http'
  parse_port('70000') failed: port out of range: 70000
  task done=True, exception=ValueError('port out of range: -1')
  cleanup ran
  then the error reached the caller: ValueError
  run_until_complete on <loop>: 'main done'
  closed by hand: True
  a closed loop raises RuntimeError: Event loop is closed
""",
    "tasks_and_futures": """\
loop: <loop>
create_task:
  bg started, done=False
  awaited: 'background', done=True
gather:
  ['slow', 'fast']
  return_exceptions=True: ['ok', RuntimeError('bad failed')]
  without it, the first error is raised: bad failed
wait:
  FIRST_COMPLETED: done=['fast'], pending=1
  timeout=0.02: done=0, still pending=1
  FIRST_EXCEPTION: done={'j1': "'j1'", 'j2': "RuntimeError('j2 failed')"}, pending=['j3']
as_completed:
  in finishing order: ['a', 'b', 'c']
TaskGroup:
  all finished on leaving the block: a, b
  a failure cancels the rest: ['x failed'], slow cancelled=True
timeouts:
  asyncio.timeout: TimeoutError
  in time: expired=False
  wait_for: TimeoutError
  wait_for in time: 'quick'
cancellation:
  cancelled=True, cleanup ran=True
  shield: outer cancelled, inner goes on -> 'shielded'
futures:
  set by a timer callback
  set from another thread
  run_in_executor: 45
  to_thread: IN A THREAD
  a future's exception is raised by await: KeyError('missing')
""",
    "async_generators": """\
loop: <loop>
async generators:
  async comprehension: [3, 2, 1]  ['countdown closed']
  stopped at 8 and aclose(): ['countdown closed']
  chained: [6, 4, 2]
  by hand: 2, 1, then 'exhausted'
async iterators:
  pages: [[0, 1, 2], [3, 4, 5], [6]] in 3 requests
async context managers:
  class-based: ['open db', 'use db', 'close db']
  on error: ['open db', 'close db after LookupError']
  @asynccontextmanager: ['begin', 'insert', 'commit', 'begin', 'rollback (constraint)']
  AsyncExitStack closes in reverse: ['open a', 'open b', 'close b', 'close a']
async decorators:
  retry: 'connected' after 3 calls
    attempt 1 failed (refused #1), retrying
    attempt 2 failed (refused #2), retrying
  retry gives up after 2 attempts: down, log=['attempt 1 failed (down), retrying']
  timed: [0, 1, 2, 3, 4], 5 timings recorded for 'fetch', all positive: True
""",
    "http_client": """\
loop: <loop>
GET 50 URLs concurrently (at most 10 at once): sum of squares = 40425
  first three: [{'n': 0, 'square': 0}, {'n': 1, 'square': 1}, {'n': 2, 'square': 4}]
  as_completed handled 10 answers, each once: True
POST /echo -> 201 application/json: {'received': {'name': 'pyloop', 'tags': ['c', 'libuv']}, 'keys': ['name', 'tags']}
GET /items/not-a-number -> 404
  raise_for_status: ClientResponseError 404
GET /slow with a 0.05 s timeout -> TimeoutError
server handled 60 item requests
""",
    "web_server": "loop: <loop>\n" + "".join(
        f"{framework} server: started\n{_WEB_API_SESSION}"
        f"  GET /items/99, /items/abc -> [404, {abc}]\n{framework} server: stopped\n"
        # FastAPI validates the path parameter as an int: 422 where aiohttp's
        # route pattern does not match at all.
        for framework, abc in (("aiohttp", 404), ("fastapi", 422))),
    "async_files": """\
loop: <loop>
wrote 5 lines, 60 bytes
read back whole: True
line by line:
  line 1: *
  line 2: **
  line 3: ***
  line 4: ****
  line 5: *****
after append: 6 lines, last 'appended'
binary, from offset 5: b'1: *'
10 files written and read concurrently: squares [0, 1, 4, 9, 16, 25, 36, 49, 64, 81]
directory has 11 files: notes.txt .. record-09.json
removed the records, left: ['notes.txt']
exists after remove: False
opening a missing file raises FileNotFoundError (errno 2)
""",
    "task_processing": """\
loop: <loop>
images: ['img0-thumb.png', 'img1-thumb.png', 'img2-thumb.png', 'img3-thumb.png', 'img4-thumb.png', 'img5-thumb.png', 'img6-thumb.png', 'img7-thumb.png', 'img8-thumb.png', 'img9-thumb.png', 'img10-thumb.png', 'img11-thumb.png']
  email: sent to ann@example.org
  email failed: bad address 'bob'
  email: sent to cy@example.org
  email failed: bad address ''
checksums: [45, 181, 1]
cancelled before it ran: True
graceful stop: queued jobs finished first: True, workers done: True
jobs processed: 25
submit after stop: the processor is stopped
immediate stop: 6 of 6 jobs cancelled
monitor:
  function       calls   ok errors cancelled
  checksum           3    3      0         0
  resize_image      18   18      0         0
  send_email         4    2      2         0
  slow_report        2    0      0         2
""",
}


def run_example(name, *args, timeout=60):
    for module in NEEDS.get(name, []):
        pytest.importorskip(module, reason=f"{module} is in the test extra")
    return subprocess.run([sys.executable, os.path.join(EXAMPLES, f"{name}.py"), *args],
                          capture_output=True, text=True, timeout=timeout)


def loop_args(loop):
    return [] if loop == "pyloop" else ["--loop", loop]


def test_every_example_is_checked():
    found = {f[:-3] for f in os.listdir(EXAMPLES)
             if f.endswith(".py") and not f.startswith(("_", "database"))}
    assert found == set(EXPECTED)


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_output(name, loop):
    proc = run_example(name, *loop_args(loop))
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert proc.stdout == EXPECTED[name].replace("<loop>", loop)


def test_examples_default_to_pyloop():
    proc = run_example("async_generators", "--loop", "pyloop")
    assert proc.stdout == run_example("async_generators").stdout
    assert proc.stdout.startswith("loop: pyloop\n")


@pytest.mark.parametrize("loop", LOOPS)
def test_task_processing_times_column(loop):
    proc = run_example("task_processing", "--times", *loop_args(loop))
    assert proc.returncode == 0, proc.stderr
    report = proc.stdout.split("monitor:\n", 1)[1].splitlines()
    assert report[0].split() == ["function", "calls", "ok", "errors", "cancelled", "avg", "ms"]
    without_times = EXPECTED["task_processing"].split("monitor:\n", 1)[1].splitlines()
    for line, expected in zip(report[1:], without_times[1:], strict=True):
        *counts, avg = line.split()
        assert counts == expected.split()
        assert float(avg) >= 0


@pytest.mark.parametrize("loop", LOOPS)
def test_async_files_on_pyloop_fs(loop):
    # The same program with `import pyloop.fs as aiofiles`: the same output.
    proc = run_example("async_files", "--files", "pyloop.fs", *loop_args(loop))
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert proc.stdout == EXPECTED["async_files"].replace("<loop>", loop)


def test_async_files_keeps_its_files_in_dir(tmp_path):
    proc = run_example("async_files", "--dir", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert os.listdir(tmp_path) == ["notes.txt"]
    text = (tmp_path / "notes.txt").read_text()
    assert text.splitlines() == [f"line {i}: {'*' * i}" for i in range(1, 6)] + ["appended"]


def _request(port, method, path, body=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        conn.request(method, path, body=json.dumps(body) if body is not None else None,
                     headers=headers)
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("framework", ["aiohttp", "fastapi"])
def test_web_server_serve_mode(framework, loop):
    for module in NEEDS["web_server"]:
        pytest.importorskip(module, reason=f"{module} is in the test extra")
    proc = subprocess.Popen(
        [sys.executable, os.path.join(EXAMPLES, "web_server.py"), "--serve", framework,
         "--port", "0", *loop_args(loop)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = proc.stdout.readline()
        prefix = f"serving {framework} on http://127.0.0.1:"
        assert first.startswith(prefix), first + proc.stderr.read()
        port, rest = first[len(prefix):].split(" ", 1)
        assert rest == f"(loop: {loop})\n"
        port = int(port)
        assert _request(port, "POST", "/items", {"name": "lamp", "tags": ["home"]}) == \
            (201, {"id": 1, "name": "lamp", "tags": ["home"]})
        assert _request(port, "GET", "/items?tag=home") == \
            (200, [{"id": 1, "name": "lamp", "tags": ["home"]}])
        assert _request(port, "GET", "/items/7")[0] == 404
        assert _request(port, "POST", "/items", {"tags": []})[0] == 422
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert (proc.returncode, out) == (0, "stopped\n"), err
