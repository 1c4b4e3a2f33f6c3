"""A loop used in a forked child fails clearly (never hangs); a new loop works."""
import asyncio
import os

import pytest

import pyloop


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_fork_child_refuses_parent_loop_and_runs_new_one(pyloop_loop):
    loop = pyloop_loop
    loop.run_until_complete(asyncio.sleep(0))
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        code = 1
        try:
            os.close(r)
            try:
                loop.call_soon(print)
            except RuntimeError as exc:
                ok_refused = "fork" in str(exc)
            else:
                ok_refused = False
            child = pyloop.new_event_loop()
            ok_new = child.run_until_complete(asyncio.sleep(0.001, "ok")) == "ok"
            child.close()
            loop.close()
            os.write(w, b"%d%d" % (ok_refused, ok_new))
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    data = b""
    while chunk := os.read(r, 16):
        data += chunk
    os.close(r)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert data == b"11"
    # The parent's loop is untouched by the child's close().
    assert loop.run_until_complete(asyncio.sleep(0.001, "parent")) == "parent"
