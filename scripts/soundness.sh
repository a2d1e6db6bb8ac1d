#!/usr/bin/env bash
# The full soundness run of the analysis bounds (docs/analysis.md): traces of the committed
# reference model on WikiText-2 test and valid, a synthetic trace and the adversarial spike
# trace; every analysed query of every (layer, head) under five maps (allocated at --eps,
# random formats per block, all int2, KIVI-like int2, all int8); S1, S2 (at the query and at a
# random query in its ball) and S3 (a random query of norm <= Q) against MPFR at 128 bits.
# Usage: scripts/soundness.sh [TOKENS] [EPS]   (defaults 512 and 0.05). Exit 1 on any violation.
set -euo pipefail
cd "$(dirname "$0")/.."
tokens=${1:-512}
eps=${2:-0.05}
[[ -x build/hnf-verify && -x build/tests/hnf-soundness ]] || bash scripts/setup.sh build
work=.cache/soundness
mkdir -p "$work"
for split in test valid; do
  build/hnf-verify trace --model models/hnf-llama-4m --text ../shared/data/wikitext-2/$split.txt \
    --tokens "$tokens" -o "$work/wiki-$split.safetensors"
done
build/hnf-verify synth-trace --out "$work/synthetic.safetensors" --layers 4 --heads 4 --kv-heads 2 \
  --tokens 256 --head-dim 64
build/tests/hnf-soundness --write-spike-trace "$work/spike.safetensors"
# Every recorded query: --last-queries covers the whole trace.
/usr/bin/time -f "soundness: %e s, %M KiB peak" build/tests/hnf-soundness \
  "$work/wiki-test.safetensors" "$work/wiki-valid.safetensors" "$work/synthetic.safetensors" \
  "$work/spike.safetensors" --eps "$eps" --last-queries "$tokens" --neighbours 1
