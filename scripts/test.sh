#!/usr/bin/env bash
# Set up, build and run the whole test suite with ctest.
# Usage: scripts/test.sh [BUILD_DIR] [extra cmake arguments...]   (BUILD_DIR defaults to build)
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${1:-build}
shift || true
bash scripts/setup.sh "$build_dir" "$@"
# Chromium renders the audit report in one test; where it cannot be installed, that test is
# skipped (exit 77), not failed.
source scripts/install_packages.sh
( hnf_install_packages test chromium ) || echo "test: chromium could not be installed; the browser test will be skipped" >&2
# Sanitizer settings take effect only in a -DHNF_SANITIZE build; harmless elsewhere.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:strict_string_checks=1}
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$PWD/tests/sanitizers/lsan.supp:print_suppressions=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
ctest --test-dir "$build_dir" --output-on-failure -j "$(nproc)"
