#!/usr/bin/env bash
# Regenerates the seed corpora under tests/fuzz/corpus/ (docs/fuzzing.md). Seeds are small valid
# inputs (and a few near-misses) of each reader, so the fuzzer starts inside the formats.
# Usage: bash tests/fuzz/make_seeds.sh HNF_VERIFY   (a built hnf-verify with Z3, for certify)
set -euo pipefail
hnf=$(realpath "$1")
cd "$(dirname "$0")"
corpus=$PWD/corpus
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# trace: synthetic traces, with and without query_positions, three dtypes.
"$hnf" synth-trace --out "$corpus/trace/f16-1layer-stride4.safetensors" --layers 1 --heads 2 --kv-heads 1 \
  --tokens 8 --head-dim 4 --query-stride 4 --dtype F16 --seed 1
"$hnf" synth-trace --out "$corpus/trace/f32-2layers.safetensors" --layers 2 --heads 2 --kv-heads 2 --tokens 4 \
  --head-dim 2 --dtype F32 --seed 2
"$hnf" synth-trace --out "$corpus/trace/bf16-gqa.safetensors" --layers 1 --heads 4 --kv-heads 2 --tokens 6 \
  --head-dim 2 --query-stride 2 --dtype BF16 --seed 3

# certificate(s): a certified, a refuted and a smaller certified certificate of synthetic traces,
# made inside the scratch folder so that the certify_command they record holds no path.
cp "$corpus/trace/f16-1layer-stride4.safetensors" "$work/t8.safetensors"
(
  cd "$work"
  "$hnf" synth-trace --out t32.safetensors --layers 1 --heads 2 --kv-heads 1 --tokens 32 --head-dim 4 \
    --query-stride 8 --dtype F16 --seed 3
  "$hnf" certify t32.safetensors --eps 0.5 --out certified.json >/dev/null
  "$hnf" certify t32.safetensors --eps 0.0001 --bits 4 --out refuted.json >/dev/null || [[ $? -eq 1 ]]
  "$hnf" certify t8.safetensors --eps 0.5 --out certified-8-tokens.json >/dev/null
)
for f in certified refuted certified-8-tokens; do
  cp "$work/$f.json" "$corpus/certificate/"
  cp "$work/$f.json" "$corpus/certificate_resealed/"
done

# checkpoint, llama_config, gate_policy, and a composition obligation for certificate_resealed.
/usr/bin/python3 make_seeds.py "$corpus"
