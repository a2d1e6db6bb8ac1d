#!/usr/bin/env bash
# Fast soundness subset for ctest: traces of 256 positions (the committed reference model on
# real text, a synthetic trace, the adversarial spike trace), every map kind.
# Usage: run_soundness.sh HNF_VERIFY HNF_SOUNDNESS SOURCE_DIR WORK_DIR
set -euo pipefail
verify=$1 soundness=$2 source=$3 work=$4
mkdir -p "$work"
# The committed WikiText-2 test passage (over 1,000 tokens): the same text on every checkout, so
# a fresh clone runs the same cases as the machine the test was written on.
text=$source/examples/wikitext-2-test-passage.txt
echo "real trace: reference model on $text"
"$verify" trace --model "$source/models/hnf-llama-4m" --text "$text" --tokens 256 -o "$work/wiki.safetensors" >/dev/null
"$verify" synth-trace --out "$work/synthetic.safetensors" --layers 2 --heads 4 --kv-heads 2 --tokens 256 \
  --head-dim 64 >/dev/null
"$soundness" --write-spike-trace "$work/spike.safetensors"
# The harness fails when a check ran on zero cases: --neighbours 0 leaves S2-ball and S3 empty,
# which must exit 1 and say so (exit 3 would be a usage error, not this check).
status=0
"$soundness" "$work/synthetic.safetensors" --maps int8 --last-queries 1 --neighbours 0 >"$work/empty.out" || status=$?
if ((status != 1)) || ! grep -q "S3 was checked on zero cases" "$work/empty.out"; then
  echo "FAIL: hnf-soundness with zero S2-ball/S3 cases exited $status instead of failing:" >&2
  cat "$work/empty.out" >&2
  exit 1
fi
echo "zero-case control: hnf-soundness refused a run with empty checks (exit 1)"
"$soundness" "$work/wiki.safetensors" "$work/synthetic.safetensors" "$work/spike.safetensors" \
  --eps 0.05 --last-queries 8 --neighbours 2
