#!/usr/bin/env bash
# The main job: set up the environment if needed, then run `synthct demo` on the embedded data.
# Extra arguments go to `synthct demo` (e.g. --out DIR).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$root/scripts/bootstrap.sh"
cd "$root"
exec synthct demo "$@"
