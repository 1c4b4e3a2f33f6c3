#!/usr/bin/env bash
# tools/libuv.sh fetch          print the path of the pinned libuv tarball, downloading it first if needed
# tools/libuv.sh unpack [DIR]   put the libuv sources the build needs in DIR (default third_party/libuv)
#
# The libuv linked into pyloop's wheels: the upstream release tarball as Debian ships it (the libuv1 source
# package's .orig.tar.gz), pinned by version and sha256. It is downloaded once into a cache outside the
# tree (PYLOOP_CACHE, default ~/.cache/pyloop); PYLOOP_LIBUV_TARBALL=FILE uses a local copy instead (it
# must have the same sha256). DIR is not kept in git: the sdist carries it, so building from the sdist
# needs no network. Bumping libuv means changing the three lines below (see docs/release.md).
set -euo pipefail

LIBUV_VERSION=1.50.0
LIBUV_TARBALL=libuv1_1.50.0.orig.tar.gz
LIBUV_SHA256=ec9de6ecf2a780fd2afb3b007947d2cd57c3bb17f3b9e721a66774980d35cd4d
# Debian's pool keeps a file while a release (here Debian 13, trixie) ships it.
LIBUV_URL=http://deb.debian.org/debian/pool/main/libu/libuv1/$LIBUV_TARBALL

die() { echo "tools/libuv.sh: $*" >&2; exit 1; }

sha256_ok() { [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$LIBUV_SHA256" ]; }

fetch() {
    if [ -n "${PYLOOP_LIBUV_TARBALL:-}" ]; then
        sha256_ok "$PYLOOP_LIBUV_TARBALL" || die "$PYLOOP_LIBUV_TARBALL: sha256 is not $LIBUV_SHA256"
        echo "$PYLOOP_LIBUV_TARBALL"
        return
    fi
    local cache=${PYLOOP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pyloop}
    local file=$cache/$LIBUV_TARBALL
    if [ -f "$file" ] && sha256_ok "$file"; then
        echo "$file"
        return
    fi
    mkdir -p "$cache"
    local tmp
    tmp=$(mktemp "$cache/.download.XXXXXX")
    echo "tools/libuv.sh: downloading $LIBUV_URL" >&2
    if command -v curl >/dev/null 2>&1; then
        curl -fsSL --retry 3 -o "$tmp" "$LIBUV_URL" || { rm -f "$tmp"; die "download failed: $LIBUV_URL"; }
    else
        python3 -c 'import sys, urllib.request; urllib.request.urlretrieve(sys.argv[1], sys.argv[2])' \
            "$LIBUV_URL" "$tmp" || { rm -f "$tmp"; die "download failed: $LIBUV_URL"; }
    fi
    if ! sha256_ok "$tmp"; then
        rm -f "$tmp"
        die "$LIBUV_URL: sha256 is not $LIBUV_SHA256"
    fi
    mv "$tmp" "$file"
    echo "$file"
}

unpack() {
    local dir=${1:-third_party/libuv}
    local stamp=$dir/PYLOOP-SOURCE
    if [ -f "$stamp" ] && grep -qx "sha256 $LIBUV_SHA256" "$stamp"; then
        return
    fi
    local tarball
    tarball=$(fetch)
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    # Only what the build and the licence need: headers, the unix sources, the licence files.
    local top
    top=$(tar -tzf "$tarball" | awk -F/ 'NR == 1 { print $1 }')
    # -m: the files get the time of unpacking, so a new pin makes the build's objects out of date
    tar -xzmf "$tarball" -C "$tmp" --strip-components=1 \
        "$top/LICENSE" "$top/LICENSE-extra" "$top/LICENSE-docs" "$top/AUTHORS" "$top/README.md" \
        "$top/include" "$top/src"
    rm -rf "$tmp/src/win"
    local v=$tmp/include/uv/version.h part n
    for part in MAJOR:1 MINOR:2 PATCH:3; do
        n=$(echo "$LIBUV_VERSION" | cut -d. -f"${part#*:}")
        grep -Eq "^#define UV_VERSION_${part%:*} +$n\b" "$v" || die "$tarball is not libuv $LIBUV_VERSION"
    done
    cat > "$tmp/PYLOOP-SOURCE" <<EOF
libuv $LIBUV_VERSION, unmodified, from Debian's libuv1 source package
url $LIBUV_URL
sha256 $LIBUV_SHA256
Only LICENSE*, AUTHORS, README.md, include/ and src/ (without src/win/) are kept.
EOF
    rm -rf "$dir"
    mkdir -p "$(dirname "$dir")"
    mv "$tmp" "$dir"
    chmod 755 "$dir"
    echo "tools/libuv.sh: libuv $LIBUV_VERSION sources in $dir" >&2
}

case "${1:-}" in
    fetch) fetch ;;
    unpack) unpack "${2:-}" ;;
    version) echo "$LIBUV_VERSION" ;;
    *) die "usage: tools/libuv.sh fetch | unpack [DIR] | version" ;;
esac
