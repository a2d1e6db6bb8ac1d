#!/usr/bin/env bash
# The main job on its embedded default: set up, build, and inspect the bundled example trace.
# Usage: scripts/main.sh [hnf-verify inspect arguments]  (default: examples/tiny-trace.safetensors)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh build >&2
if (($# == 0)); then set -- examples/tiny-trace.safetensors; fi
exec build/hnf-verify inspect "$@"
