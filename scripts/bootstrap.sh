#!/usr/bin/env bash
# Create (or refresh) the project's virtual environment in .venv and install synthct into it.
# Sourced by scripts/demo.sh and scripts/test.sh; safe to run again: it reinstalls only when
# pyproject.toml or constraints.txt changed since the last install.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
python="${SYNTHCT_PYTHON:-python3}"
stamp="$venv/.synthct-install-stamp"
want="$(cat "$root/pyproject.toml" "$root/constraints.txt" | sha256sum | cut -d' ' -f1)"
if [ ! -x "$venv/bin/python" ]; then
    echo "synthct: creating virtual environment in $venv" >&2
    "$python" -m venv "$venv"
fi
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "synthct: installing synthct and its dependencies (first run takes a few minutes)" >&2
    "$venv/bin/python" -m pip install --quiet --upgrade pip >&2
    "$venv/bin/python" -m pip install --quiet -c "$root/constraints.txt" -e "$root[dev]" >&2
    echo "$want" > "$stamp"
fi
export PATH="$venv/bin:$PATH"
