#!/usr/bin/env bash
# The test job: set up the environment if needed, then lint (ruff), type-check (mypy), check the
# layer contract (import-linter, .importlinter) and test (pytest).
# Extra arguments go to pytest (e.g. -k volume, -m "not slow").
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$root/scripts/bootstrap.sh"
# The browser tests of `synthct view` drive Debian's chromium (Playwright's own browser download
# is not used); install it when missing (CI runs as root; elsewhere sudo is tried).
if [ ! -x /usr/bin/chromium ]; then
    echo "synthct: installing Debian's chromium for the browser tests" >&2
    sudo_cmd=""
    if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null 2>&1; then sudo_cmd="sudo -n"; fi
    $sudo_cmd apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq chromium >&2
fi
cd "$root"
echo "== ruff" && ruff check src tests benchmarks
echo "== mypy" && mypy
echo "== import contract" && lint-imports --no-cache
echo "== pytest" && exec pytest "$@"
