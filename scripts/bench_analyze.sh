#!/usr/bin/env bash
# Benchmark of hnf-verify analyze on synthetic traces of the reference model's shape (4 layers,
# 4 query / 2 KV heads, head_dim 64, F16) from 4K to 32K tokens, default query subset (the 32
# newest recorded queries plus a stride giving about 32 more per head). Prints one line per
# size with the wall time and the map's bits; the target is under 30 s at 32K on 2 cores.
# Usage: scripts/bench_analyze.sh [EPS]   (default 0.05)
set -euo pipefail
cd "$(dirname "$0")/.."
eps=${1:-0.05}
[[ -x build/hnf-verify ]] || bash scripts/setup.sh build
work=.cache/bench
mkdir -p "$work"
printf "%8s %10s %10s %s\n" tokens seconds bits "stage times (s): attention sensitivities allocate bounds, summed over heads"
for tokens in 4096 8192 16384 32768; do
  trace=$work/synthetic-$tokens.safetensors
  [[ -f $trace ]] || build/hnf-verify synth-trace --out "$trace" --layers 4 --heads 4 --kv-heads 2 \
    --tokens "$tokens" --head-dim 64 >/dev/null
  start=$(date +%s.%N)
  HNF_ANALYZE_TIMING=1 build/hnf-verify analyze "$trace" --eps "$eps" --json >"$work/analysis-$tokens.json" \
    2>"$work/timing-$tokens.txt"
  end=$(date +%s.%N)
  python3 - "$tokens" "$start" "$end" "$work/analysis-$tokens.json" "$work/timing-$tokens.txt" <<'PY'
import json, sys
tokens, start, end, analysis, timing = sys.argv[1:]
bits = json.load(open(analysis))["bits_per_element"]
rows = [l.split() for l in open(timing) if l.strip()]
stages, prev = {}, None
for r in rows:
    t, stage = float(r[0]), r[3]
    if prev: stages[prev[1]] = stages.get(prev[1], 0.0) + t - prev[0]
    prev = (t, stage)
stages[prev[1]] = stages.get(prev[1], 0.0) + float(end) - float(start) - prev[0]
detail = " ".join(f"{k} {stages.get(k, 0):.1f}" for k in ["attention", "sensitivities", "allocate", "bounds"])
print(f"{tokens:>8} {float(end) - float(start):>10.2f} {bits:>10.4f} {detail}")
PY
done
