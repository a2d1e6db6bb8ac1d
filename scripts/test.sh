#!/usr/bin/env bash
# Set up, build and run the test suite with ctest (docs/ci.md).
# Usage: scripts/test.sh [BUILD_DIR] [extra cmake arguments...]
#          every test; BUILD_DIR defaults to build.
#        scripts/test.sh --sanitize [BUILD_DIR] [extra cmake arguments...]
#          the unit, hostile-input and bug-replay tests (ctest -L) under AddressSanitizer and
#          UndefinedBehaviorSanitizer, built without train/, CUDA and bench/ and only for those
#          tests (target hnf-sanitizer-tests); BUILD_DIR defaults to build-sanitize.
set -euo pipefail
cd "$(dirname "$0")/.."
sanitize=0
if [[ ${1:-} == --sanitize ]]; then
  sanitize=1
  shift
fi
ctest_selection=()
if ((sanitize)); then
  build_dir=${1:-build-sanitize}
  shift || true
  # -O1 -g1: ASan's recommended optimisation level, and line tables for its reports, at a
  # fraction of the compile time of -O2 -g. The labels are tests/CMakeLists.txt's
  # HNF_SANITIZER_LABELS.
  HNF_BUILD_TARGETS=hnf-sanitizer-tests bash scripts/setup.sh "$build_dir" -DHNF_SANITIZE=address,undefined \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -g1" -DHNF_ENABLE_TRAIN=OFF \
    -DHNF_ENABLE_CUDA=OFF "$@"
  ctest_selection=(-L '^(unit|hostile|bugs)$')
else
  build_dir=${1:-build}
  shift || true
  bash scripts/setup.sh "$build_dir" "$@"
  # Chromium renders the audit report in one test; where it cannot be installed, that test is
  # skipped (exit 77), not failed.
  source scripts/install_packages.sh
  ( hnf_install_packages test chromium ) || echo "test: chromium could not be installed; the browser test will be skipped" >&2
fi
# Sanitizer settings take effect only in a -DHNF_SANITIZE build; harmless elsewhere.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:strict_string_checks=1}
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$PWD/tests/sanitizers/lsan.supp:print_suppressions=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
# --no-tests=error: a selection that matches nothing fails instead of passing.
ctest --test-dir "$build_dir" --output-on-failure --no-tests=error -j "$(nproc)" "${ctest_selection[@]}"
