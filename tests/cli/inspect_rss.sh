#!/usr/bin/env bash
# Peak resident memory of `hnf-verify inspect` on a 128K-token trace of the reference model's
# shape (4 layers, 4 query / 2 KV heads, head_dim 64, F16: about 640 MiB) must stay below twice
# the file's size: the reader maps the file and drops pages it has summarised.
# Usage: inspect_rss.sh HNF_VERIFY WORKDIR
set -euo pipefail
bin=$1
work=$2
mkdir -p "$work"
trace="$work/trace-128k.safetensors"
trap 'rm -f "$trace"' EXIT
"$bin" synth-trace --out "$trace" --layers 4 --heads 4 --kv-heads 2 --tokens 131072 --head-dim 64 --dtype F16
size=$(stat -c %s "$trace")
/usr/bin/time -v "$bin" inspect --strict "$trace" >"$work/inspect.out" 2>"$work/time.txt"
rss_kib=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$work/time.txt")
rss=$((rss_kib * 1024))
echo "trace bytes: $size; inspect peak RSS: $rss bytes ($(awk -v r="$rss" -v s="$size" 'BEGIN {printf "%.3f", r / s}') x file size)"
grep -q "131072 tokens" "$work/inspect.out"
if (( rss >= 2 * size )); then
  echo "FAIL: peak RSS is not below 2x the file size" >&2
  exit 1
fi
