#!/usr/bin/env bash
# Long-context benchmark (issue 17, item 8): synthetic traces of TOKENS positions (default
# 131072; 1048576 for the 1M run) in each PATTERN, analysed and certified; prints for each the
# verdict, wall time, peak RSS (getrusage via /usr/bin/time -v), one layer's trace data and the
# ratio (peak RSS - fixed) / layer, where "fixed" is the peak RSS of the same command on a
# 256-token trace of the same shape. Not part of ctest (minutes per run); the small versions
# are tests/soundness/run_pathological.sh and tests/unit/analysis/long_context_test.cpp.
# Usage: bench_long_context.sh HNF_VERIFY WORK_DIR [TOKENS] [PATTERN...]
#   env: LAYERS (2) HEADS (4) KV_HEADS (2) HEAD_DIM (64) DTYPE (F16) TRACE_QUERY_STRIDE (64:
#   queries recorded every 64 positions, as a long-context trace would keep) EPS (0.05)
#   SINKS (3: leading sink positions of the sinks pattern) SOUNDNESS (path of tests' hnf-soundness: after certify, the allocated map's S1, S2 and S3
#   bounds of the newest two queries per head and the first are checked against MPFR)
set -euo pipefail
verify=$1 work=$2 tokens=${3:-131072}
shift $(($# < 3 ? $# : 3))
patterns=("${@:-gaussian}")
layers=${LAYERS:-2} heads=${HEADS:-4} kv_heads=${KV_HEADS:-2} head_dim=${HEAD_DIM:-64} dtype=${DTYPE:-F16}
stride=${TRACE_QUERY_STRIDE:-64} eps=${EPS:-0.05} soundness=${SOUNDNESS:-}
mkdir -p "$work"
trap 'rm -f "$work"/bench-*.safetensors' EXIT

# Runs "$@" under /usr/bin/time -v; sets rss_bytes, wall_s and status.
measure() {
  status=0
  /usr/bin/time -v "$@" >"$work/run.out" 2>"$work/run.time" || status=$?
  rss_bytes=$(($(awk -F': ' '/Maximum resident set size/ {print $2}' "$work/run.time") * 1024))
  wall_s=$(awk -F': ' '/Elapsed \(wall clock\)/ {n = split($2, p, ":"); s = 0; for (i = 1; i <= n; ++i) s = s * 60 + p[i]; print s}' "$work/run.time")
}

synth() {  # synth OUT TOKENS PATTERN
  "$verify" synth-trace --out "$1" --layers "$layers" --heads "$heads" --kv-heads "$kv_heads" --tokens "$2" \
    --head-dim "$head_dim" --dtype "$dtype" --query-stride "$stride" --pattern "$3" --sinks "${SINKS:-3}" >/dev/null 2>&1
}

element=$([[ $dtype == F32 ]] && echo 4 || echo 2)
queries=$(((tokens + stride - 1) / stride))
layer_bytes=$(((heads * queries + 3 * kv_heads * tokens) * head_dim * element))
echo "shape: $layers layers, $heads heads, $kv_heads kv heads, head_dim $head_dim, $dtype, $tokens tokens," \
  "queries every $stride positions; one layer's trace data: $layer_bytes bytes"

synth "$work/bench-small.safetensors" 256 gaussian
measure "$verify" analyze "$work/bench-small.safetensors" --eps "$eps"
fixed_analyze=$rss_bytes
measure "$verify" certify "$work/bench-small.safetensors" --eps "$eps" --out "$work/bench-small.json"
fixed_certify=$rss_bytes
echo "fixed (256 tokens): analyze $fixed_analyze bytes, certify $fixed_certify bytes peak RSS"

for pattern in "${patterns[@]}"; do
  trace=$work/bench-$pattern.safetensors
  synth "$trace" "$tokens" "$pattern"
  for command in analyze certify; do
    if [[ $command == analyze ]]; then
      measure "$verify" analyze "$trace" --eps "$eps" --out "$work/$pattern.analysis.json"
      fixed=$fixed_analyze verdict="exit $status ($( ((status == 0)) && echo feasible || echo infeasible))"
    else
      measure "$verify" certify "$trace" --eps "$eps" --out "$work/$pattern.certificate.json"
      fixed=$fixed_certify verdict="exit $status ($(grep -m1 -oE 'CERTIFIED|REFUTED|UNKNOWN' "$work/run.out" || echo "no verdict"))"
    fi
    if ((status > 2)); then
      echo "FAIL: $command on $pattern exited $status" >&2
      cat "$work/run.out" "$work/run.time" >&2
      exit 1
    fi
    ratio=$(awk -v r="$rss_bytes" -v f="$fixed" -v l="$layer_bytes" 'BEGIN {printf "%.2f", (r - f) / l}')
    echo "$pattern $command: $verdict, wall ${wall_s} s, peak RSS $rss_bytes bytes, (peak - fixed) / layer = $ratio"
  done
  if [[ -n $soundness ]]; then
    "$soundness" "$trace" --eps "$eps" --maps allocated --last-queries 2 --query-stride "$tokens" --neighbours 1 \
      >"$work/soundness.out" 2>&1 || { cat "$work/soundness.out" >&2; echo "FAIL: MPFR check on $pattern" >&2; exit 1; }
    echo "$pattern MPFR sample: $(grep -m1 '^total:' "$work/soundness.out")"
  fi
done
