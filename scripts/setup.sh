#!/usr/bin/env bash
# Installs the Debian 12 packages the project builds with, then configures and builds.
# Idempotent: packages already present are not reinstalled, an existing build is reused.
#
# Usage: scripts/setup.sh [BUILD_DIR] [extra cmake arguments...]
#   BUILD_DIR defaults to build. Environment: HNF_SKIP_APT=1 skips the package step;
#   HNF_BUILD_TARGETS (space-separated) builds those targets instead of everything (the
#   sanitizer pass of scripts/test.sh --sanitize builds hnf-sanitizer-tests only).
set -euo pipefail
cd "$(dirname "$0")/.."

# Keep in sync with docs/architecture.md (Dependencies).
packages=(
  cmake ninja-build pkg-config g++ git time
  libz3-dev z3 cvc5 libboost-dev libmpfr-dev libgmp-dev
  doctest-dev nlohmann-json3-dev libcli11-dev libfmt-dev
  libopenblas-dev libsentencepiece-dev libssl-dev libsodium-dev
  libtorch-dev libopenblas0-openmp
  libpng-dev libxml2-utils gnuplot-nox
  clang-14 libfuzzer-14-dev
)

source scripts/install_packages.sh
hnf_install_packages setup "${packages[@]}"

build_dir=${1:-build}
shift || true
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DHNF_WERROR=ON "$@" >/dev/null
read -r -a targets <<<"${HNF_BUILD_TARGETS:-all}"
cmake --build "$build_dir" -j "$(nproc)" --target "${targets[@]}"
