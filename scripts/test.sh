#!/usr/bin/env bash
# The test job: set up the environment if needed, then lint (ruff), type-check (mypy) and test (pytest).
# Extra arguments go to pytest (e.g. -k volume, -m "not slow").
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$root/scripts/bootstrap.sh"
cd "$root"
echo "== ruff" && ruff check src tests benchmarks
echo "== mypy" && mypy
echo "== pytest" && exec pytest "$@"
