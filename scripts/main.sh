#!/usr/bin/env bash
# The main job: set up and build, then trace a WikiText-2 passage with the committed reference
# model, certify a precision map for it (Z3), re-check the certificate with the exact checker
# (and re-derive its witnesses from the trace and model), sign an attestation of that with the
# operator key ($out/operator.key, made once by keygen), then run the certified map in the
# runtime's mixed-precision cache next to the fp32 cache over the passage (eval --cache:
# perplexity, KL, top-1 agreement, measured bytes per element, queries outside S2), write the
# audit report with that measurement attached (report.html, report.md), and print a short
# summary. Every figure printed is computed in this run.
#
# Usage: scripts/main.sh [--text FILE] [--tokens N] [--eps E] [--out DIR]
#   defaults: examples/wikitext-2-test-passage.txt, 1024 tokens, eps 0.05, out .cache/main
set -euo pipefail
cd "$(dirname "$0")/.."
text=examples/wikitext-2-test-passage.txt
tokens=1024
eps=0.05
eval_tokens=2048
out=.cache/main
while (($#)); do
  case $1 in
    --text) text=$2; shift 2 ;;
    --tokens) tokens=$2; shift 2 ;;
    --eps) eps=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    -h|--help) sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "main.sh: unknown argument '$1' (see --help)" >&2; exit 3 ;;
  esac
done
bash scripts/setup.sh build >&2
model=models/hnf-llama-4m
mkdir -p "$out"
start=$(date +%s.%N)
build/hnf-verify trace --model "$model" --text "$text" --tokens "$tokens" --out "$out/trace.safetensors"
set +e
build/hnf-verify certify "$out/trace.safetensors" --eps "$eps" --model "$model" --out "$out/certificate.json" \
  --smt-dir "$out/smt"
certify_status=$?
set -e
# 3 and 4 are errors (already reported); 0, 1 and 2 leave a complete certificate to check.
((certify_status <= 2)) || exit "$certify_status"
set +e
# The operator's key pair: made once, kept (keygen never overwrites a key).
[[ -f "$out/operator.key" ]] || build/hnf-verify keygen --out "$out/operator" >/dev/null
build/hnf-verify check "$out/certificate.json" --model "$model" --trace "$out/trace.safetensors" --recompute \
  --sign "$out/operator.key" --attestation-out "$out/attestation.json"
check_status=$?
set -e
if ((check_status == 0)); then
  # The certified map in the runtime cache, against the fp32 cache, on the same text.
  # The cache is built only from verified witnesses: here the attestation, under the public key.
  build/hnf-verify eval --model "$model" --text "$text" --max-tokens "$eval_tokens" --cache "$out/certificate.json" \
    --attestation "$out/attestation.json" --public-key "$out/operator.pub" \
    --trace "$out/trace.safetensors" --json-out "$out/eval.json"
  # The audit report, with that measurement attached.
  build/hnf-verify report "$out/certificate.json" --model "$model" --trace "$out/trace.safetensors" \
    --attestation "$out/attestation.json" --public-key "$out/operator.pub" \
    --eval "$out/eval.json" --html "$out/report.html" --md "$out/report.md"
fi
end=$(date +%s.%N)
echo "main job: $(awk -v s="$start" -v e="$end" 'BEGIN { printf "%.1f", e - s }') s in all (trace, certify, check, eval, report);" \
  "certificate $out/certificate.json, SMT-LIB files $out/smt/, report $out/report.html"
exit "$check_status"
