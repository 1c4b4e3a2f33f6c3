"""The release wheel on a system without libuv: tools/wheel_test.sh (python -m build, readelf, auditwheel,
a fresh Debian 12 chroot running asyncio, TCP, UDP, TLS and a subprocess on the installed wheel).

It takes about a minute with its caches warm (more the first time: debootstrap), needs root and network to
PyPI and deb.debian.org, so it runs only when asked: PYLOOP_WHEEL_TEST=1."""
import os
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.timeout(1800)
@pytest.mark.skipif(os.environ.get("PYLOOP_WHEEL_TEST") != "1",
                    reason="the wheel test takes minutes, needs root and network: set PYLOOP_WHEEL_TEST=1 "
                           "(or run tools/wheel_test.sh)")
def test_wheel_on_a_system_without_libuv():
    proc = subprocess.run(["bash", os.path.join(ROOT, "tools", "wheel_test.sh")], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "ok subprocess:" in proc.stdout and "(bundled)" in proc.stdout
