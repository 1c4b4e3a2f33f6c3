"""Run one workload on one loop in this process and print one JSON line:
    python benchmarks/worker.py LOOP WORKLOAD [N]
"""
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from loops import LoopMissing, new_loop  # noqa: E402
import workloads_core  # noqa: E402,F401  (registers the core workloads)
import workloads_os  # noqa: E402,F401  (and the OS-surface ones)
from workloads_core import REGISTRY  # noqa: E402


def main():
    loop_name, wl_name = sys.argv[1], sys.argv[2]
    wl = REGISTRY[wl_name]
    n = int(sys.argv[3]) if len(sys.argv) > 3 else wl["n"]
    try:
        loop = new_loop(loop_name)
    except LoopMissing as exc:
        print(json.dumps({"loop": loop_name, "workload": wl_name, "missing": str(exc)}))
        return
    try:
        t0, c0 = time.perf_counter(), time.process_time()
        ops = wl["fn"](loop, n) if n else 0
        dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    finally:
        loop.close()
    print(json.dumps({"loop": loop_name, "workload": wl_name, "ops": ops, "seconds": dt,
                      "cpu_seconds": cpu}))


if __name__ == "__main__":
    main()
