#!/usr/bin/env bash
# Print "VERSION INTERPRETER" for each of the supported Python versions present
# on this machine (pyenv installs first, then pythonX.Y on PATH).
set -uo pipefail
root=$(pyenv root 2>/dev/null || echo "${PYENV_ROOT:-$HOME/.pyenv}")
for v in ${PYLOOP_PYTHONS:-3.11 3.12 3.13}; do
    found=""
    for d in $(ls -d "$root"/versions/"$v".* 2>/dev/null | sort -V -r); do
        if [ -x "$d/bin/python$v" ]; then found="$d/bin/python$v"; break; fi
    done
    if [ -z "$found" ] && command -v "python$v" >/dev/null 2>&1; then
        found=$(command -v "python$v")
    fi
    if [ -n "$found" ]; then echo "$v $found"; fi
done
