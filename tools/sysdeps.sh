#!/usr/bin/env bash
# Install the Debian packages pyloop needs to build, test and benchmark, when
# they are missing. Runs apt-get only when something is missing; as non-root it
# prints the command to run and fails.
set -euo pipefail

need=()
# The system libuv, found with pkg-config: for PYLOOP_SYSTEM_LIBUV=1 builds and the benchmarks' C server
# (benchmarks/run_net.py). The default build compiles the pinned libuv of tools/libuv.sh into the extension.
if [ "${PYLOOP_SYSTEM_LIBUV:-0}" != 0 ] || [ "${PYLOOP_BENCH:-0}" = 1 ]; then
    command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
    if ! pkg-config --exists libuv 2>/dev/null; then need+=(libuv1-dev); fi
fi
# tools/libuv.sh downloads the pinned libuv tarball (python3's urllib otherwise).
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v gcc >/dev/null 2>&1 || need+=(build-essential)
command -v make >/dev/null 2>&1 || need+=(make)
# The TLS tests make their certificates with the openssl command.
command -v openssl >/dev/null 2>&1 || need+=(openssl)
# PostgreSQL server binaries (initdb, pg_ctl, postgres) for tests/integration,
# examples/database.py and the asyncpg benchmark, which start their own server.
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
# Benchmark-only tools (`make bench` sets PYLOOP_BENCH=1): valgrind for the
# instruction counts, wrk for the HTTP(S) rows of the network benchmarks,
# OpenSSL's headers for the TLS client (its command is needed above already).
if [ "${PYLOOP_BENCH:-0}" = 1 ]; then
    command -v valgrind >/dev/null 2>&1 || need+=(valgrind)
    command -v wrk >/dev/null 2>&1 || need+=(wrk)
    [ -f /usr/include/openssl/ssl.h ] || need+=(libssl-dev)
fi

if [ ${#need[@]} -eq 0 ]; then
    exit 0
fi
echo "pyloop: missing system packages: ${need[*]}"
if [ "$(id -u)" != 0 ]; then
    echo "pyloop: run as root:  apt-get update && apt-get install -y ${need[*]}" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq "${need[@]}"
