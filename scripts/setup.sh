#!/usr/bin/env bash
# Installs the Debian 12 packages the project builds with, then configures and builds.
# Idempotent: packages already present are not reinstalled, an existing build is reused.
#
# Usage: scripts/setup.sh [BUILD_DIR] [extra cmake arguments...]
#   BUILD_DIR defaults to build. Environment: HNF_SKIP_APT=1 skips the package step.
set -euo pipefail
cd "$(dirname "$0")/.."

# Keep in sync with docs/architecture.md (Dependencies).
packages=(
  cmake ninja-build pkg-config g++ git time
  libz3-dev libboost-dev libmpfr-dev libgmp-dev
  doctest-dev nlohmann-json3-dev libcli11-dev libfmt-dev
  libopenblas-dev libsentencepiece-dev libssl-dev
  libtorch-dev libopenblas0-openmp
)

install_packages() {
  local missing=()
  for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  ((${#missing[@]} == 0)) && return 0
  local sudo=()
  if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null || { echo "setup: need root (or sudo) to install: ${missing[*]}" >&2; exit 3; }
    sudo=(sudo)
  fi
  echo "setup: installing ${missing[*]}" >&2
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

[[ "${HNF_SKIP_APT:-0}" == 1 ]] || install_packages

build_dir=${1:-build}
shift || true
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DHNF_WERROR=ON "$@" >/dev/null
cmake --build "$build_dir" -j "$(nproc)"
