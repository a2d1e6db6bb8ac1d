#!/usr/bin/env bash
# The runtime benchmark in one command: builds hnf-bench-runtime and hnf-verify, makes the two
# certified mixed precision maps it measures (cached under .cache/bench-runtime/, re-made when
# `hnf-verify check` no longer accepts them), runs the benchmark and prints where the report is.
#   - reference shape: a trace of the reference model on the WikiText-2 passage, certified with
#     the model (as scripts/main.sh does);
#   - large shape (one Llama-3-8B-like layer: 32 query heads, 8 kv heads, head_dim 128): a
#     synthetic trace (hnf-verify synth-trace, as scripts/bench_certify.sh does), certified.
# Every figure of the report is measured by that run (decode at 4K, 32K and 128K positions,
# the memory-bandwidth triad, LibTorch's fp32 attention, append throughput, the GPU if any).
#
# Usage: scripts/bench_runtime.sh [--ref-eps E] [--large-eps E] [--large-tokens N] [BENCH OPTIONS...]
#   defaults: --ref-eps 0.05, --large-eps 0.5, --large-tokens 32768; the report goes to
#   reports/runtime-bench.md. Other options go to hnf-bench-runtime (see its --help), e.g.
#   --positions 4096,32768 --threads 2 --out FILE --quick.
set -euo pipefail
cd "$(dirname "$0")/.."
ref_eps=0.05
large_eps=0.5
large_tokens=32768
bench_args=()
while (($#)); do
  case $1 in
    --ref-eps) ref_eps=$2; shift 2 ;;
    --large-eps) large_eps=$2; shift 2 ;;
    --large-tokens) large_tokens=$2; shift 2 ;;
    -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) bench_args+=("$1"); shift ;;
  esac
done

[[ -f build/CMakeCache.txt ]] || bash scripts/setup.sh build >&2
cmake --build build --target hnf-bench-runtime hnf-verify >&2

work=.cache/bench-runtime
mkdir -p "$work"
model=models/hnf-llama-4m
text=examples/wikitext-2-test-passage.txt

# certify TRACE CERT [certify options...]: exit 0 certified; 1/2 leave a certificate that is not
# certified (the benchmark then omits the mixed rows and says why); 3/4 are errors.
certify() {
  local trace=$1 cert=$2
  shift 2
  local status=0
  build/hnf-verify certify "$trace" --out "$cert" "$@" >"$cert.log" || status=$?
  if ((status > 2)); then
    cat "$cert.log" >&2
    echo "bench_runtime.sh: certify failed (exit $status)" >&2
    exit "$status"
  fi
  ((status == 0)) || echo "bench_runtime.sh: $cert is not certified (exit $status; see $cert.log)" >&2
  grep -E '^map ' "$cert.log" >&2 || true
}

# Reference shape: the real trace, certified with the model.
ref_trace=$work/ref-trace.safetensors
ref_cert=$work/ref-certificate-eps$ref_eps.json
if [[ -f $ref_cert && -f $ref_trace ]] &&
   build/hnf-verify check "$ref_cert" --model "$model" --trace "$ref_trace" >/dev/null 2>&1; then
  echo "bench_runtime.sh: reusing $ref_cert" >&2
else
  echo "bench_runtime.sh: tracing and certifying the reference model (eps $ref_eps)" >&2
  build/hnf-verify trace --model "$model" --text "$text" --tokens 1024 --out "$ref_trace" >&2
  certify "$ref_trace" "$ref_cert" --eps "$ref_eps" --model "$model"
fi

# Large shape: a synthetic trace (every 32nd query recorded, to keep the file small), certified.
large_trace=$work/large-trace-$large_tokens.safetensors
large_cert=$work/large-certificate-$large_tokens-eps$large_eps.json
if [[ -f $large_cert && -f $large_trace ]] &&
   build/hnf-verify check "$large_cert" --trace "$large_trace" >/dev/null 2>&1; then
  echo "bench_runtime.sh: reusing $large_cert" >&2
else
  echo "bench_runtime.sh: synthetic trace of the large shape ($large_tokens positions) and certify (eps $large_eps)" >&2
  [[ -f $large_trace ]] || build/hnf-verify synth-trace --out "$large_trace" --layers 1 --heads 32 --kv-heads 8 \
    --tokens "$large_tokens" --head-dim 128 --query-stride 32 >/dev/null
  certify "$large_trace" "$large_cert" --eps "$large_eps"
fi

out=reports/runtime-bench.md
for ((i = 0; i < ${#bench_args[@]}; ++i)); do
  [[ ${bench_args[i]} == --out ]] && out=${bench_args[i + 1]:-$out}
  [[ ${bench_args[i]} == --out=* ]] && out=${bench_args[i]#--out=}
done
build/hnf-bench-runtime --model "$model" --ref-cert "$ref_cert" --large-cert "$large_cert" "${bench_args[@]}"
echo "runtime benchmark report: $out"
