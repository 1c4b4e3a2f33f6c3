#!/usr/bin/env bash
# tools/venv.sh INTERPRETER VENV EXTRAS
# Create VENV with INTERPRETER if missing, install the project editable with
# EXTRAS (re-run only when pyproject.toml/setup.py change), then (re)build the
# C extension in place with -Werror so csrc/ edits are always picked up.
set -euo pipefail
py=$1 venv=$2 extras=$3
if [ ! -x "$venv/bin/python" ]; then
    "$py" -m venv "$venv"
fi
stamp="$venv/.pyloop-stamp-$extras"
want=$(cat pyproject.toml setup.py | sha256sum | cut -c1-16)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    "$venv/bin/python" -m pip install -q --upgrade pip setuptools wheel
    PYLOOP_WERROR=1 "$venv/bin/python" -m pip install -q -e ".[$extras]"
    echo "$want" > "$stamp"
fi
PYLOOP_WERROR=1 "$venv/bin/python" setup.py -q build_ext --inplace >/dev/null
