#!/usr/bin/env bash
# Pathological attention (issue 17, item 8), small sizes for ctest: for every synthetic pattern
# (uniform, equal keys, one spike, 1..5 sinks, 1e4 key outliers, subnormal F16 and F32 values)
# certify at a loose budget must certify (exit 0) with a certificate that `check --recompute`
# accepts and that holds no NaN or infinity; at a budget below fp16's reach it must refuse (exit
# 1) naming the failing query. Then the S1/S2/S3 bounds of the patterns are checked against
# MPFR by hnf-soundness. The 128K versions are in scripts/bench_long_context.sh.
# Usage: run_pathological.sh HNF_VERIFY HNF_SOUNDNESS WORK_DIR
set -euo pipefail
verify=$1 soundness=$2 work=$3
mkdir -p "$work"
shape=(--layers 1 --heads 2 --kv-heads 1 --tokens 256 --head-dim 64)

expect_exit() {  # expect_exit CODE LOG COMMAND...: runs COMMAND, fails unless it exits CODE
  local want=$1 log=$2 status=0
  shift 2
  "$@" >"$log" 2>&1 || status=$?
  if ((status != want)); then
    echo "FAIL: exit $status, expected $want: $*" >&2
    cat "$log" >&2
    exit 1
  fi
}

traces=()
for case in uniform equal-keys spike sinks:1 sinks:2 sinks:3 sinks:4 sinks:5 outliers denormal:F16 denormal:F32; do
  pattern=${case%%:*} sinks=1 dtype=F16
  [[ $case == sinks:* ]] && sinks=${case#*:}
  [[ $case == denormal:* ]] && dtype=${case#*:}
  name=${case/:/-}
  trace=$work/$name.safetensors
  "$verify" synth-trace --out "$trace" "${shape[@]}" --dtype "$dtype" --pattern "$pattern" --sinks "$sinks" >/dev/null
  expect_exit 0 "$work/$name.certify.out" "$verify" certify "$trace" --eps 0.05 --last-queries 8 --out "$work/$name.json"
  expect_exit 0 "$work/$name.check.out" "$verify" check "$work/$name.json" --trace "$trace" --recompute
  if grep -qiE '"[^"]*": *"?-?(nan|inf)' "$work/$name.json"; then
    echo "FAIL: $name: the certificate holds a NaN or infinite number" >&2
    exit 1
  fi
  echo "$name: certified at eps 0.05, $(grep -m1 -o '[0-9.]* bits' "$work/$name.certify.out") per element; check --recompute accepts"
  traces+=("$trace")
done

# Refusal: 1e-9 is below what fp16 storage reaches on the outlier keys.
expect_exit 1 "$work/refuse.out" "$verify" certify "$work/outliers.safetensors" --eps 1e-9 --last-queries 8 \
  --out "$work/refuse.json"
grep -q "refuted: layer 0 kv head 0 head [01] position [0-9]*: S1 bound" "$work/refuse.out" || {
  echo "FAIL: the refusal does not name the failing query" >&2
  cat "$work/refuse.out" >&2
  exit 1
}
echo "outliers at eps 1e-9: refuted (exit 1), failing query named"

"$soundness" "${traces[@]}" --eps 0.05 --maps allocated,int2,kivi2 --last-queries 4 --neighbours 1
