#!/usr/bin/env bash
# Create (or refresh) the project's virtual environment in .venv and install synthct into it.
# Sourced by scripts/demo.sh and scripts/test.sh; safe to run again: it reinstalls only when
# pyproject.toml or constraints.txt changed since the last install. It also installs the browser
# assets of `synthct view` (NiiVue, from the npm registry, pinned by package-lock.json) with
# `npm ci` when they are missing or the lock changed.
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
web="$root/src/synthct/view/web"
web_stamp="$web/node_modules/.synthct-lock-stamp"
web_want="$(sha256sum "$web/package-lock.json" | cut -d' ' -f1)"
if [ ! -f "$web_stamp" ] || [ "$(cat "$web_stamp")" != "$web_want" ]; then
    if command -v npm >/dev/null 2>&1; then
        echo "synthct: installing the viewer's browser assets (npm ci: NiiVue)" >&2
        (cd "$web" && npm ci --no-audit --no-fund --loglevel=error >&2)
        echo "$web_want" > "$web_stamp"
    else
        echo "synthct: npm not found: \`synthct view\` needs Node.js/npm once to install NiiVue" >&2
    fi
fi
