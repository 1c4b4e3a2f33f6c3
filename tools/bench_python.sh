#!/usr/bin/env bash
# tools/bench_python.sh VERSION: `make bench`'s three harnesses (core with
# instruction counts, network, applications) on one supported Python, in the
# venv `make test` uses for it (with the bench extra added). A Python of the
# Debian unstable chroot (tools/sid.sh) runs there, with the chroot's own
# wrk and valgrind. BENCH_ARGS, BENCH_NET_ARGS, BENCH_APPS_ARGS pass options.
set -euo pipefail
v=$1
here=$(cd "$(dirname "$0")" && pwd)
read -r _ py < <(PYLOOP_PYTHONS=$v "$here/pythons.sh") || { echo "pyloop: no Python $v here" >&2; exit 1; }
venv=.venv-$v; [ "$v" = 3.11 ] && venv=.venv
if [ -z "${PYLOOP_SYSTEM_LIBUV:-}" ]; then bash "$here/libuv.sh" unpack >/dev/null; fi
case "$py" in
    sid:*)
        # the benchmark tools inside the chroot, installed once
        "$here/sid.sh" run sh -c 'command -v wrk >/dev/null && command -v valgrind >/dev/null ||
            { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends wrk valgrind >/dev/null; }'
        exec "$here/sid.sh" run env BENCH_ARGS="${BENCH_ARGS:-}" BENCH_NET_ARGS="${BENCH_NET_ARGS:-}" \
            BENCH_APPS_ARGS="${BENCH_APPS_ARGS:-}" "tools/bench_python.sh" "$v" ;;
esac
echo "=== benchmarks on Python $v ($py) -> $venv"
tools/venv.sh "$py" "$venv" test,bench
# --monitor: pyloop with pyloop.monitor on, interleaved with the rest, and its
# overhead against plain pyloop (issue 17: core rows in time and instructions,
# network rows as server CPU)
"$venv/bin/python" benchmarks/run.py ${BENCH_ARGS:---callgrind --monitor}
"$venv/bin/python" benchmarks/run_net.py ${BENCH_NET_ARGS:---monitor}
"$venv/bin/python" benchmarks/run_apps.py ${BENCH_APPS_ARGS:-}
