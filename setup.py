"""Build script for pyloop's C core (pyloop._core), linked against the system libuv."""
import glob
import os
import shlex
import subprocess
import sys

from setuptools import Extension, setup


def _pkg_config(*args):
    try:
        out = subprocess.run(["pkg-config", *args, "libuv"], check=True,
                             capture_output=True, text=True).stdout
    except FileNotFoundError:
        sys.exit("pyloop: pkg-config was not found. On Debian/Ubuntu: "
                 "apt-get install pkg-config libuv1-dev")
    except subprocess.CalledProcessError:
        sys.exit("pyloop: libuv was not found by pkg-config. On Debian/Ubuntu: "
                 "apt-get install libuv1-dev (Fedora: libuv-devel)")
    return shlex.split(out)


def _flags():
    cflags = _pkg_config("--cflags")
    libs = _pkg_config("--libs")
    extra_compile = ["-std=c11", "-Wall", "-Wextra", "-Wno-missing-field-initializers",
                     "-fno-strict-aliasing"]
    extra_link = []
    if os.environ.get("PYLOOP_WERROR"):
        extra_compile.append("-Werror")
    if os.environ.get("PYLOOP_SANITIZE"):
        san = "-fsanitize=address,undefined"
        extra_compile += [san, "-fno-omit-frame-pointer", "-O1", "-g"]
        extra_link.append(san)
    if os.environ.get("PYLOOP_DEBUG"):
        extra_compile += ["-O0", "-g", "-DPL_DEBUG=1"]
    return cflags + extra_compile, libs + extra_link


compile_args, link_args = _flags()

setup(
    ext_modules=[
        Extension(
            "pyloop._core",
            sources=sorted(glob.glob("csrc/*.c")),
            depends=sorted(glob.glob("csrc/*.h")),
            extra_compile_args=compile_args,
            extra_link_args=link_args,
        )
    ],
)
