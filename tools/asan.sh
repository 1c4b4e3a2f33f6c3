#!/usr/bin/env bash
# tools/asan.sh INTERPRETER VENV [pytest args]
# Build pyloop with -fsanitize=address,undefined in a copy of the tree (so the
# normal in-place build is left alone) and run the pytest suite with the
# sanitizer runtimes preloaded. Any sanitizer report aborts the run.
set -euo pipefail
py=$1 venv=$2; shift 2
top=$(pwd)
[ -x "$venv/bin/python" ] || "$py" -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade setuptools wheel
# The test extra's requirements (not the project itself: it is built below
# with the sanitizers).
mapfile -t reqs < <("$venv/bin/python" -c '
import tomllib
with open("pyproject.toml", "rb") as f:
    print("\n".join(tomllib.load(f)["project"]["optional-dependencies"]["test"]))')
"$venv/bin/python" -m pip install -q "${reqs[@]}"
src=build/asan-src
rm -rf "$src"; mkdir -p "$src"
# tools/: setup.py takes the pinned libuv sources from tools/libuv.sh's cache
cp -r csrc pyloop tests benchmarks tools setup.py pyproject.toml README.md "$src"/
[ -d examples ] && cp -r examples "$src"/
rm -f "$src"/pyloop/*.so
(cd "$src" && PYLOOP_SANITIZE=1 PYLOOP_WERROR=1 "$top/$venv/bin/python" setup.py -q build_ext --inplace >/dev/null)
libs="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libubsan.so)"
cd "$src"
# detect_leaks=0: CPython keeps interned objects alive at exit by design.
# PYTHONMALLOC=malloc: route Python objects through malloc so ASan sees
# use-after-free of objects the C core releases too early.
export LD_PRELOAD="$libs"
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:halt_on_error=1:allocator_may_return_null=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
export PYTHONMALLOC=malloc
export PYLOOP_UNDER_ASAN=1
# Subprocesses the tests start (python -m pyloop, pytester runs) import the
# sanitized build from this copy, wherever their working directory is.
export PYTHONPATH="$top/$src"
exec "$top/$venv/bin/python" -m pytest -q -p no:cacheprovider "$@" tests
