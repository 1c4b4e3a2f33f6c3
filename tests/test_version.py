"""pyloop.libuv_version() and `python -m pyloop --version` report the libuv pyloop runs on."""
import re
import subprocess
import sys

import pyloop


def test_libuv_version_is_the_linked_library():
    v = pyloop.libuv_version()
    assert re.fullmatch(r"\d+\.\d+\.\d+(-\w+)?", v), v
    assert pyloop._core.libuv_linkage in ("bundled", "system")
    if pyloop._core.libuv_linkage == "bundled":
        # the pinned libuv of tools/libuv.sh: 1.48 or later
        assert tuple(int(x) for x in v.split("-")[0].split(".")) >= (1, 48, 0)


def test_version_option():
    out = subprocess.run([sys.executable, "-m", "pyloop", "--version"], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    assert out == (f"pyloop {pyloop.__version__} on libuv {pyloop.libuv_version()} "
                   f"({pyloop._core.libuv_linkage})\n")
