#!/usr/bin/env bash
# Runs the libFuzzer targets of tests/fuzz/ (docs/fuzzing.md), built with clang, ASan and UBSan in
# their own build folder (build-fuzz, or $HNF_FUZZ_BUILD).
#
#   bash scripts/fuzz.sh --list             the targets
#   bash scripts/fuzz.sh TARGET SECONDS     fuzz one target for SECONDS
#   bash scripts/fuzz.sh --smoke [SECONDS]  every target for SECONDS each (default 30): the CI step
#
# A run starts from the committed seed corpus tests/fuzz/corpus/TARGET, copied into a scratch
# folder (the committed corpus never grows), with the JSON dictionary. It prints libFuzzer's
# progress and a summary (executions, exec/s, cov, ft, corpus size). On a crash it prints the
# path of the crash file and exits 1: copy the file to tests/bugs/TARGET/ (ctest replays it).
# Environment: HNF_FUZZ_JOBS (default 1) parallel workers; HNF_FUZZ_KEEP=1 keeps the scratch folder;
# HNF_FUZZ_ARGS extra libFuzzer flags; HNF_FUZZ_NO_BUILD=1 runs the binaries as built; CXX_CLANG
# (default clang++-14).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
build=${HNF_FUZZ_BUILD:-build-fuzz}
clang=${CXX_CLANG:-clang++-14}

targets() { sed -n 's/^set(hnf_fuzz_targets \(.*\))$/\1/p' tests/fuzz/CMakeLists.txt; }

usage() {
  sed -n '5,7p' "$0" | sed 's/^# *//' >&2
  exit 3
}

configure_and_build() {
  [[ ${HNF_FUZZ_NO_BUILD:-0} == 1 ]] && return 0  # run the binaries as they are (e.g. while sources change)
  if ! command -v "$clang" >/dev/null; then
    echo "fuzz: $clang not found (Debian: apt-get install clang-14 libfuzzer-14-dev)" >&2
    exit 3
  fi
  if [[ ! -f $build/build.ninja ]]; then
    local launcher=()
    command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
    # Z3, training and CUDA are not on any fuzzed path; warnings are judged by the gcc build.
    cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER="$clang" \
      -DHNF_FUZZ=ON -DHNF_SANITIZE=address,undefined,fuzzer-no-link -DHNF_WERROR=OFF \
      -DHNF_ENABLE_Z3=OFF -DHNF_ENABLE_TRAIN=OFF -DHNF_ENABLE_CUDA=OFF "${launcher[@]}" >/dev/null
  fi
  local names=()
  for t in "$@"; do names+=("fuzz_$t"); done
  nice -n 10 cmake --build "$build" -j "${HNF_BUILD_JOBS:-2}" --target "${names[@]}"
}

# Where the targets write each input as a file (readers that take a path): memory when there is
# a tmpfs, since a disk makes that write ten times slower than the reader it feeds.
scratch_file_dir() {
  if [[ -d /dev/shm && -w /dev/shm ]]; then echo /dev/shm; else echo "${TMPDIR:-/tmp}"; fi
}

# Fuzzes target $1 for $2 seconds; returns 1 on a crash (after naming the crash file).
run_target() {
  local target=$1 seconds=$2
  local seeds=$root/tests/fuzz/corpus/$target
  [[ -d $seeds ]] || { echo "fuzz: no seed corpus $seeds" >&2; return 3; }
  local scratch
  scratch=$(mktemp -d "${TMPDIR:-/tmp}/hnf-fuzz-$target.XXXXXX")
  mkdir -p "$scratch/corpus" "$scratch/crashes"
  cp "$seeds"/* "$scratch/corpus/"
  local jobs=${HNF_FUZZ_JOBS:-1} parallel=()
  # Workers write fuzz-N.log files; one job runs in this process, its progress in the log below.
  [[ $jobs -gt 1 ]] && parallel=(-jobs="$jobs" -workers="$jobs")
  echo "fuzz: $target for ${seconds} s from $(ls "$seeds" | wc -l) seeds (scratch $scratch)"
  local status=0
  # Inputs are capped at the larger of 4096 bytes and the largest seed (libFuzzer's default).
  # -rss_limit_mb (and the malloc limit it implies): a reader that allocates what a header claims
  # is a finding.
  ( cd "$scratch" && \
    ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:strict_string_checks=1} \
    LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$root/tests/sanitizers/lsan.supp:print_suppressions=0} \
    UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
    OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 TMPDIR="$(scratch_file_dir)" \
    "$root/$build/tests/fuzz/fuzz_$target" -max_total_time="$seconds" -rss_limit_mb=2048 \
      -timeout=25 -dict="$root/tests/fuzz/json.dict" -artifact_prefix="$scratch/crashes/" \
      -print_final_stats=1 "${parallel[@]}" ${HNF_FUZZ_ARGS:-} corpus ) \
    >"$scratch/log" 2>&1 || status=$?
  grep -E '^#[0-9]+.*(pulse|REDUCE|NEW|DONE)' "$scratch/log" | tail -n 3 || true
  grep -E '^(stat::|SUMMARY|==[0-9]+==ERROR|hnf fuzz finding)' "$scratch/log" || true
  local last
  last=$(grep -E '^#[0-9]+' "$scratch/log" | tail -n 1 || true)
  echo "fuzz: $target summary: ${last:-no progress line} | corpus files $(ls "$scratch/corpus" | wc -l)"
  local crashes
  crashes=$(find "$scratch/crashes" -type f | sort)
  if [[ -n $crashes || $status -ne 0 ]]; then
    echo "fuzz: $target CRASHED (libFuzzer exit $status); log $scratch/log" >&2
    for f in $crashes; do echo "fuzz: crash file $f" >&2; done
    echo "fuzz: keep it as a regression test: cp FILE tests/bugs/$target/" >&2
    return 1
  fi
  [[ ${HNF_FUZZ_KEEP:-0} == 1 ]] || rm -rf "$scratch"
  return 0
}

[[ $# -ge 1 ]] || usage
case $1 in
  --list)
    targets | tr ' ' '\n'
    ;;
  --smoke)
    seconds=${2:-30}
    read -r -a all <<<"$(targets)"
    configure_and_build "${all[@]}"
    failed=0
    for t in "${all[@]}"; do run_target "$t" "$seconds" || failed=1; done
    exit $failed
    ;;
  -*)
    usage
    ;;
  *)
    [[ $# -eq 2 && $2 =~ ^[0-9]+$ && $2 -gt 0 ]] || usage
    read -r -a all <<<"$(targets)"
    [[ " ${all[*]} " == *" $1 "* ]] || { echo "fuzz: unknown target '$1' (scripts/fuzz.sh --list)" >&2; exit 3; }
    configure_and_build "$1"
    run_target "$1" "$2"
    ;;
esac
