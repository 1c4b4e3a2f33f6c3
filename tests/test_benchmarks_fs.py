"""benchmarks/run_fs.py runs every row on every implementation and prints its
table (a tiny size: this checks the harness, it measures nothing)."""
import os
import subprocess
import sys

SCRIPT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                      "benchmarks", "run_fs.py")


def test_run_fs_prints_every_row(tmp_path):
    out = subprocess.run([sys.executable, SCRIPT, "--reps", "1", "--scale", "0.005",
                          "--json", str(tmp_path / "r.json")],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    for row in ["read 4 KiB, 1 task", "read 4 KiB, 64 tasks", "stat", "read 1 MiB sequential",
                "write+read 1,000 small files", "small files through open()"]:
        assert f"| {row} | " in out.stdout
    assert "pyloop.fs@pyloop" in out.stdout and "aiofiles@asyncio" in out.stdout
    assert "pyloop.fs(pool)@pyloop" in out.stdout  # PYLOOP_FS_NOWAIT=0's column
    assert (tmp_path / "r.json").exists()
