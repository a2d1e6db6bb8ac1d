#!/usr/bin/env bash
# Benchmark of hnf-verify certify and check on a 32K-token synthetic trace of the reference
# model's shape (4 layers, 4 query / 2 KV heads, head_dim 64, F16; the reference model itself
# is trained for 1,024 positions). Prints the wall time of certify (target under 60 s on 2
# cores), the largest Z3 time of a layer obligation (target under 50 ms), and check's wall
# time (target under 5 s).
# Usage: scripts/bench_certify.sh [TOKENS] [EPS]   (defaults 32768 and 0.05)
set -euo pipefail
cd "$(dirname "$0")/.."
tokens=${1:-32768}
eps=${2:-0.05}
[[ -x build/hnf-verify ]] || bash scripts/setup.sh build
work=.cache/bench
mkdir -p "$work"
trace=$work/synthetic-$tokens.safetensors
[[ -f $trace ]] || build/hnf-verify synth-trace --out "$trace" --layers 4 --heads 4 --kv-heads 2 \
  --tokens "$tokens" --head-dim 64 >/dev/null
cert=$work/certificate-$tokens.json
start=$(date +%s.%N)
set +e
build/hnf-verify certify "$trace" --eps "$eps" --out "$cert" >"$work/certify-$tokens.txt"
status=$?
set -e
mid=$(date +%s.%N)
build/hnf-verify check "$cert" --trace "$trace" >"$work/check-$tokens.txt" || true
end=$(date +%s.%N)
cat "$work/certify-$tokens.txt"
python3 - "$tokens" "$start" "$mid" "$end" "$cert" "$status" <<'PY'
import json, os, sys
tokens, start, mid, end, cert, status = sys.argv[1:]
c = json.load(open(cert))
layer = [o["solver_ms"] for o in c["obligations"] if o["layer"] >= 0]
print(f"tokens {tokens}: certify {float(mid) - float(start):.2f} s (exit {status}, verdict {c['verdict']}), "
      f"largest layer obligation in z3 {max(layer):.1f} ms, certificate {os.path.getsize(cert) / 1e6:.1f} MB, "
      f"check {float(end) - float(mid):.2f} s")
PY
cat "$work/check-$tokens.txt"
