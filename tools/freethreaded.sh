#!/usr/bin/env bash
# tools/freethreaded.sh: build a free-threaded CPython 3.14 (python3.14t) once
# and cache it in pyenv's versions folder, where tools/pythons.sh finds it.
#
# No registry reachable from here ships a free-threaded 3.14 for Debian 12, so
# it is built from the upstream source in Debian's python3.14 source package
# (fetched with apt-get source inside the unstable chroot of tools/sid.sh),
# configured with --disable-gil. Takes about ten minutes on two cores; a no-op
# once built. Where the archive serves no source packages (seen on this
# project's machines in December 2026: every pool source file answers 404), it
# says so and exits 0, so `make test` runs the other interpreters; set
# PYLOOP_REQUIRE_FT=1 to make that an error.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
pyroot=$(pyenv root 2>/dev/null || echo "${PYENV_ROOT:-$HOME/.pyenv}")
for d in "$pyroot"/versions/3.14.*t; do
    if [ -x "$d/bin/python3.14t" ]; then exit 0; fi
done

# Host build dependencies (the modules the tests use: ssl, ctypes, zlib, bz2,
# lzma, sqlite3, readline-free); installed only when missing.
need=()
for p in build-essential libssl-dev libffi-dev zlib1g-dev libbz2-dev liblzma-dev \
         libsqlite3-dev uuid-dev libzstd-dev; do
    dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq "${need[@]}" >/dev/null
fi

"$here/sid.sh" setup
sid=$("$here/sid.sh" path)
work=$(mktemp -d "$sid/tmp/pyloop-src.XXXXXX")
# deb-src for the chroot's own suite, then the source package (upstream tarball
# plus Debian's packaging, of which only the tarball is used).
srclist=$sid/etc/apt/sources.list.d/pyloop-src.list
sed -n 's/^deb /deb-src /p' "$sid/etc/apt/sources.list" >"$srclist"
trap 'rm -rf "$work"; rm -f "$srclist"' EXIT
if ! "$here/sid.sh" run sh -c "apt-get update -qq && cd '${work#"$sid"}' && apt-get source -qq --download-only python3.14" >"$work/fetch.log" 2>&1; then
    echo "pyloop: no free-threaded 3.14t: Debian's archive did not serve the python3.14 source package:" >&2
    grep -E '^E:' "$work/fetch.log" | head -n 3 >&2
    [ "${PYLOOP_REQUIRE_FT:-0}" = 1 ] && exit 1
    exit 0
fi
tarball=$(ls "$work"/python3.14_*.orig.tar.* | head -n 1)
ver=$(basename "$tarball" | sed -E 's/^python3\.14_([0-9.]+)\.orig.*/\1/')
prefix=$pyroot/versions/${ver}t
echo "pyloop: building free-threaded CPython $ver into $prefix"
tar -xf "$tarball" -C "$work"
src=$(find "$work" -maxdepth 1 -type d -name 'Python-*' | head -n 1)
log=$work/build.log
(
    cd "$src"
    ./configure --prefix="$prefix" --disable-gil --with-ensurepip=install >"$log" 2>&1
    make -j"$(nproc)" >>"$log" 2>&1
    make install >>"$log" 2>&1
) || { tail -n 30 "$log" >&2; rm -rf "$prefix"; exit 1; }
"$prefix/bin/python3.14t" -c 'import sys, ssl, ctypes; assert not sys._is_gil_enabled(); print("pyloop: free-threaded", sys.version)'
