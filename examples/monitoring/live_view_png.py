"""Render the live view of demo_app.py to a PNG (docs/img/monitor-live-view.png):

    python examples/monitoring/live_view_png.py [OUT.png]

Runs demo_app.py, takes two snapshots a second apart through its socket, and
draws the text python -m pyloop monitor would show, with matplotlib."""
import os
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(1, ROOT)

from pyloop import monitor  # noqa: E402


def snapshots(path, n=2, interval=1.0):
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(path)
        f = s.makefile("rwb")
        out = []
        for i in range(n):
            if i:
                time.sleep(interval)
            out.append(monitor._request(f))
        return out


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "docs", "img",
                                                              "monitor-live-view.png")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "demo.monitor")
        app = subprocess.Popen([sys.executable, os.path.join(HERE, "demo_app.py"), path],
                               stderr=subprocess.DEVNULL)
        try:
            for _ in range(100):
                if os.path.exists(path):
                    break
                time.sleep(0.05)
            time.sleep(2)
            prev, snap = snapshots(path)
        finally:
            app.terminate()
            app.wait()
    lines = monitor.render(snap, prev, width=110)
    # Paths of this machine mean nothing to a reader.
    lines = [ln.replace(ROOT + os.sep, "") for ln in lines]
    print("\n".join(lines))

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig = plt.figure(figsize=(11, 0.2 * len(lines) + 0.4), facecolor="#1e1e1e")
    fig.text(0.01, 0.98, "$ python -m pyloop monitor /tmp/demo.monitor\n" + "\n".join(lines),
             family="monospace", fontsize=9, color="#e0e0e0", va="top", ha="left")
    fig.savefig(out, dpi=110, facecolor=fig.get_facecolor())
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
