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
