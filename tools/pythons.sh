#!/usr/bin/env bash
# Print "VERSION INTERPRETER" for each supported Python present on this machine.
# INTERPRETER is a path on this machine (pyenv installs first, then pythonX.Y on
# PATH), or "sid:PATH" for an interpreter inside the Debian unstable chroot of
# tools/sid.sh (3.14 and 3.15 when no host build exists). 3.14t is the
# free-threaded build tools/freethreaded.sh caches in pyenv's versions folder.
# PYLOOP_PYTHONS chooses and orders the versions (default: all supported).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(pyenv root 2>/dev/null || echo "${PYENV_ROOT:-$HOME/.pyenv}")
sid=$("$here/sid.sh" path)
for v in ${PYLOOP_PYTHONS:-3.11 3.12 3.13 3.14 3.15 3.14t}; do
    found=""
    base=${v%t}
    if [ "$v" != "$base" ]; then
        # free-threaded: versions/3.14.N t
        for d in $(ls -d "$root"/versions/"$base".*t 2>/dev/null | sort -V -r); do
            if [ -x "$d/bin/python$v" ]; then found="$d/bin/python$v"; break; fi
        done
        command -v "python$v" >/dev/null 2>&1 && [ -z "$found" ] && found=$(command -v "python$v")
    else
        for d in $(ls -d "$root"/versions/"$base".* 2>/dev/null | grep -v 't$' | sort -V -r); do
            if [ -x "$d/bin/python$v" ]; then found="$d/bin/python$v"; break; fi
        done
        if [ -z "$found" ] && command -v "python$v" >/dev/null 2>&1; then
            found=$(command -v "python$v")
        fi
        if [ -z "$found" ] && [ -f "$sid/.pyloop-stamp" ] && [ -x "$sid/usr/bin/python$v" ]; then
            found="sid:/usr/bin/python$v"
        fi
    fi
    if [ -n "$found" ]; then echo "$v $found"; fi
done
