#!/usr/bin/env bash
# tools/test_python.sh VERSION INTERPRETER VENV
# Everything `make test` runs on one Python: set up VENV (tools/venv.sh), the
# pytest suite, CPython's own asyncio tests against pyloop (tests/cpython) and
# the own-code check. An INTERPRETER "sid:PATH" runs all of it inside the Debian
# unstable chroot (tools/sid.sh). Exit status: non-zero if any part failed.
set -uo pipefail
v=$1 py=$2 venv=$3
here=$(cd "$(dirname "$0")" && pwd)
# The pinned libuv sources (tools/libuv.sh), unpacked on this machine first:
# the chroot sees the checkout but not this machine's download cache.
if [ -z "${PYLOOP_SYSTEM_LIBUV:-}" ] && [ -x "$here/libuv.sh" ] && [ -z "${PYLOOP_IN_CHROOT:-}" ]; then
    bash "$here/libuv.sh" unpack >/dev/null
fi
case "$py" in
    sid:*) PYLOOP_IN_CHROOT=1 exec "$here/sid.sh" run "tools/test_python.sh" "$v" "${py#sid:}" "$venv" ;;
esac
echo "=== Python $v ($py) -> $venv"
tools/venv.sh "$py" "$venv" test || exit 1
fail=0
"$venv/bin/python" -m pytest -q -p no:cacheprovider ${PYTEST_ARGS:-} tests || fail=1
"$venv/bin/python" tests/cpython/run_suite.py || fail=1
own=../shared/tools/owncode.py
if [ -f "$own" ]; then
    "$venv/bin/python" "$own" pyloop || { echo "owncode: near-copies of the stdlib on Python $v"; fail=1; }
else
    echo "owncode: $own not found (it lies beside the project in CI and sessions)"
fi
exit $fail
