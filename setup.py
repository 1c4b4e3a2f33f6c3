"""Build script for pyloop's C core (pyloop._core).

By default libuv is built from its sources in third_party/libuv (a pinned release: tools/libuv.sh puts it
there in a checkout; the sdist carries it) as a static -fPIC archive and linked into _core with its symbols
hidden, so the extension needs no libuv at run time. PYLOOP_SYSTEM_LIBUV=1 links the system's libuv instead,
found with pkg-config (Debian: libuv1-dev), for distribution packages.
"""
import glob
import os
import shlex
import subprocess
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.command.sdist import sdist

LIBUV_DIR = os.path.join("third_party", "libuv")
SYSTEM_LIBUV = os.environ.get("PYLOOP_SYSTEM_LIBUV", "") not in ("", "0")

# libuv's own list for Linux (its CMakeLists.txt: the common, unix and Linux sources).
LIBUV_SOURCES = [
    "src/fs-poll.c", "src/idna.c", "src/inet.c", "src/random.c", "src/strscpy.c", "src/strtok.c",
    "src/thread-common.c", "src/threadpool.c", "src/timer.c", "src/uv-common.c",
    "src/uv-data-getter-setters.c", "src/version.c",
    "src/unix/async.c", "src/unix/core.c", "src/unix/dl.c", "src/unix/fs.c", "src/unix/getaddrinfo.c",
    "src/unix/getnameinfo.c", "src/unix/loop-watcher.c", "src/unix/loop.c", "src/unix/pipe.c",
    "src/unix/poll.c", "src/unix/process.c", "src/unix/random-devurandom.c", "src/unix/signal.c",
    "src/unix/stream.c", "src/unix/tcp.c", "src/unix/thread.c", "src/unix/tty.c", "src/unix/udp.c",
    "src/unix/proctitle.c", "src/unix/linux.c", "src/unix/procfs-exepath.c",
    "src/unix/random-getrandom.c", "src/unix/random-sysctl-linux.c",
]


def _libuv_tree():
    """Make sure third_party/libuv holds the pinned sources (a checkout fetches them once into a cache
    outside the tree; an sdist already has them)."""
    script = os.path.join("tools", "libuv.sh")
    if os.path.exists(script):
        subprocess.run(["bash", script, "unpack", LIBUV_DIR], check=True)
    if not os.path.exists(os.path.join(LIBUV_DIR, "include", "uv.h")):
        sys.exit(f"pyloop: the libuv sources are missing ({LIBUV_DIR}); build from a checkout "
                 "(tools/libuv.sh fetches them) or the sdist, or set PYLOOP_SYSTEM_LIBUV=1")


def _pkg_config(*args):
    try:
        out = subprocess.run(["pkg-config", *args, "libuv"], check=True,
                             capture_output=True, text=True).stdout
    except FileNotFoundError:
        sys.exit("pyloop: PYLOOP_SYSTEM_LIBUV=1 and pkg-config was not found. On Debian/Ubuntu: "
                 "apt-get install pkg-config libuv1-dev")
    except subprocess.CalledProcessError:
        sys.exit("pyloop: PYLOOP_SYSTEM_LIBUV=1 and libuv was not found by pkg-config. On Debian/Ubuntu: "
                 "apt-get install libuv1-dev (Fedora: libuv-devel)")
    return shlex.split(out)


def _sanitize_flags():
    return ["-fsanitize=address,undefined", "-fno-omit-frame-pointer"] if os.environ.get(
        "PYLOOP_SANITIZE") else []


def _flags():
    extra_compile = ["-std=c11", "-Wall", "-Wextra", "-Wno-missing-field-initializers",
                     "-fno-strict-aliasing"]
    extra_link = []
    if os.environ.get("PYLOOP_WERROR"):
        extra_compile.append("-Werror")
    if os.environ.get("PYLOOP_SANITIZE"):
        extra_compile += _sanitize_flags() + ["-O1", "-g"]
        extra_link += _sanitize_flags()[:1]
    if os.environ.get("PYLOOP_DEBUG"):
        extra_compile += ["-O0", "-g", "-DPL_DEBUG=1"]
    if SYSTEM_LIBUV:
        return _pkg_config("--cflags") + extra_compile, _pkg_config("--libs") + extra_link
    # libuv's archive members become local symbols of _core: another extension with its own libuv
    # cannot bind to them, nor they to it.
    extra_compile += ["-I" + os.path.join(LIBUV_DIR, "include"), "-DPL_LIBUV_BUNDLED=1"]
    extra_link += ["-Wl,--exclude-libs,ALL"]
    return extra_compile, extra_link


def _libuv_library():
    """libuv as a static archive built by build_clib (compiler_so: -fPIC), with libuv's own defines and
    warning flags; its warnings are libuv's, so never -Werror here."""
    headers = sorted(glob.glob(os.path.join(LIBUV_DIR, "include", "**", "*.h"), recursive=True) +
                     glob.glob(os.path.join(LIBUV_DIR, "src", "**", "*.h"), recursive=True))
    return ("pyloop_uv", {
        "sources": [os.path.join(LIBUV_DIR, s) for s in LIBUV_SOURCES],
        "include_dirs": [os.path.join(LIBUV_DIR, "include"), os.path.join(LIBUV_DIR, "src")],
        "macros": [("_GNU_SOURCE", None), ("_POSIX_C_SOURCE", "200112"), ("_FILE_OFFSET_BITS", "64"),
                   ("_LARGEFILE_SOURCE", None)],
        "cflags": ["-std=gnu90", "-fvisibility=hidden", "-fno-strict-aliasing", "-Wall", "-Wextra",
                   "-Wno-unused-parameter", "-Wstrict-prototypes", *_sanitize_flags()],
        "obj_deps": {"": headers},
    })


class BuildExt(build_ext):
    """build_ext that first builds the bundled libuv archive (an in-place build runs only build_ext)."""

    def run(self):
        if not SYSTEM_LIBUV:
            self.run_command("build_clib")
            # relink when the archive changes (a new libuv pin), not only when csrc/ does
            archive = os.path.join(self.get_finalized_command("build_clib").build_clib, "libpyloop_uv.a")
            for ext in self.extensions:
                ext.depends = [*ext.depends, archive]
        super().run()

    def build_extensions(self):
        # An interpreter built with an rpath to its own lib/ (pyenv's) passes it on in LDSHARED; _core
        # does not link libpython, and a wheel should not carry the build machine's paths.
        self.compiler.linker_so = [a for a in self.compiler.linker_so if not a.startswith("-Wl,-rpath")]
        super().build_extensions()


class Sdist(sdist):
    """The sdist always carries the pinned libuv sources, so it builds without network."""

    def run(self):
        _libuv_tree()
        super().run()


if not SYSTEM_LIBUV:
    _libuv_tree()
compile_args, link_args = _flags()

setup(
    ext_modules=[
        Extension(
            "pyloop._core",
            sources=sorted(glob.glob("csrc/*.c")),
            depends=sorted(glob.glob("csrc/*.h")),
            extra_compile_args=compile_args,
            extra_link_args=link_args,
            # what libuv needs on glibc before 2.34 (empty stubs on later ones)
            libraries=[] if SYSTEM_LIBUV else ["pthread", "dl", "rt"],
        )
    ],
    libraries=[] if SYSTEM_LIBUV else [_libuv_library()],
    cmdclass={"build_ext": BuildExt, "sdist": Sdist},
)
