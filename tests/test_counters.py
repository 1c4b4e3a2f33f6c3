"""libuv handles and requests created by the core are all freed by close()."""
import asyncio
import gc

import pyloop


def test_counters_balance_after_close():
    before = pyloop._core._counters()
    loop = pyloop.new_event_loop()
    loop.run_until_complete(asyncio.sleep(0.001))
    loop.call_later(10, print)
    loop.close()
    del loop
    gc.collect()
    after = pyloop._core._counters()
    created = after["handles_created"] - before["handles_created"]
    freed = after["handles_freed"] - before["handles_freed"]
    assert created == freed
    assert (after["requests_created"] - before["requests_created"]
            == after["requests_freed"] - before["requests_freed"])
    assert set(after) == {"handles_created", "handles_freed", "requests_created",
                          "requests_freed"}
