#!/usr/bin/env bash
# tools/sid.sh setup | run CMD... | path
#
# Python 3.14 and 3.15 for the tests, from Debian's unstable suite (the only
# source of them besides building CPython: Debian's package archive is the one
# registry reachable besides PyPI). Their binaries need unstable's C library, so
# they run in a chroot of that suite, made once with debootstrap (about a minute)
# and cached outside the work tree:
#
#   setup   make the chroot if it is missing or its package list changed
#   run     run CMD inside it, in this directory (bind-mounted at the same path),
#           in a private mount namespace so nothing stays mounted afterwards
#   path    print the chroot's directory
#
# PYLOOP_CACHE (default /var/cache/pyloop) holds it. Root is needed (chroot,
# mount); the tests run as root on the host too.
set -euo pipefail
cache=${PYLOOP_CACHE:-/var/cache/pyloop}
root=$cache/sid
mirror=${PYLOOP_DEBIAN_MIRROR:-http://deb.debian.org/debian}
# Interpreters with their headers, venv and CPython's own test suite
# (test.test_asyncio, run by tests/cpython/run_suite.py); the build tools and
# libuv for the extension; openssl for the TLS tests' certificates; PostgreSQL
# for tests/integration; procps for tests that look at processes.
packages=(python3.14-dev python3.14-venv libpython3.14-testsuite
          python3.15-dev python3.15-venv libpython3.15-testsuite
          gcc make pkg-config libuv1-dev libssl-dev openssl postgresql procps
          ca-certificates)
want=$(printf '%s\n' "${packages[@]}" | sha256sum | cut -c1-16)

setup() {
    if [ -f "$root/.pyloop-stamp" ] && [ "$(cat "$root/.pyloop-stamp")" = "$want" ]; then
        return 0
    fi
    command -v debootstrap >/dev/null 2>&1 || {
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq && apt-get install -y -qq debootstrap >/dev/null
    }
    mkdir -p "$cache"
    local tmp=$root.tmp
    rm -rf "$tmp"
    echo "pyloop: making a Debian unstable chroot for Python 3.14/3.15 in $root"
    debootstrap --variant=minbase sid "$tmp" "$mirror" >"$cache/debootstrap.log" 2>&1 || {
        tail -n 20 "$cache/debootstrap.log" >&2; exit 1; }
    # The archive may be a frozen copy whose Release file has expired.
    echo 'Acquire::Check-Valid-Until "false";' >"$tmp/etc/apt/apt.conf.d/99pyloop"
    # No service starts inside the chroot (postgresql's package would start one).
    printf '#!/bin/sh\nexit 101\n' >"$tmp/usr/sbin/policy-rc.d"
    chmod +x "$tmp/usr/sbin/policy-rc.d"
    cp /etc/resolv.conf /etc/hosts "$tmp/etc/"
    in_root "$tmp" / env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    in_root "$tmp" / env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "${packages[@]}" >"$cache/apt.log" 2>&1 || {
        tail -n 20 "$cache/apt.log" >&2; exit 1; }
    in_root "$tmp" / apt-get clean
    echo "$want" >"$tmp/.pyloop-stamp"
    rm -rf "$root"
    mv "$tmp" "$root"
}

# in_root ROOT DIR CMD...: CMD in ROOT with DIR (a host directory) mounted at the
# same path, /proc, /sys and /dev from the host, all in a private mount
# namespace that goes away with the command.
in_root() {
    local r=$1 dir=$2; shift 2
    unshare --mount --propagation private -- /bin/sh -euc '
        r=$1 dir=$2; shift 2
        mount -t proc proc "$r/proc"
        mount --rbind /sys "$r/sys"
        mount --rbind /dev "$r/dev"
        # The certificate bundle of the host: its package clients (pip) may reach the
        # registries through a proxy whose certificate only the host trusts.
        b=/etc/ssl/certs/ca-certificates.crt
        if [ -f "$b" ] && [ -f "$r$b" ]; then mount --bind "$b" "$r$b"; fi
        if [ "$dir" != / ]; then mkdir -p "$r$dir"; mount --bind "$dir" "$r$dir"; fi
        exec chroot "$r" /usr/bin/env -C "$dir" PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin "$@"
    ' sh "$r" "$dir" "$@"
}

case "${1:-}" in
    setup) setup ;;
    path) echo "$root" ;;
    run)
        shift
        [ -f "$root/.pyloop-stamp" ] || setup >&2
        # The project directory (the git checkout, or this directory).
        top=$(git rev-parse --show-toplevel 2>/dev/null || pwd)
        case "$PWD" in "$top"|"$top"/*) ;; *) top=$PWD ;; esac
        # shared/ lies beside the checkout (the own-code tool): mount the parent.
        [ -d "$top/../shared" ] && top=$(cd "$top/.." && pwd)
        in_root "$root" "$top" /usr/bin/env -C "$PWD" "$@" ;;
    *) echo "usage: tools/sid.sh setup | run CMD... | path" >&2; exit 2 ;;
esac
