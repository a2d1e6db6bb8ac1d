#!/usr/bin/env bash
# Rebuilds the reference model from nothing: corpora, tokenizer, build, training (not run in CI).
# Usage: scripts/train_model.sh [OUT_DIR] [extra hnf-train arguments...]
#   OUT_DIR defaults to models/hnf-llama-4m. Training took 44 minutes on a 2-core machine.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-models/hnf-llama-4m}
shift || true
bash scripts/corpora.sh
bash scripts/train_tokenizer.sh
bash scripts/setup.sh build
# Token files for the trainer: hnf-train cannot load SentencePiece itself (LibTorch and
# SentencePiece each bring protobuf and crash when loaded into one process).
for genre in prose code dialogue; do
  mkdir -p ".cache/tokens/$genre"
  for split in train eval; do
    build/hnf-verify tokenize --tokenizer .cache/tokenizer/tokenizer.model \
      --text ".cache/corpora/$genre/$split.txt" --out ".cache/tokens/$genre/$split.safetensors"
  done
done
# Training speed depends 5x on the BLAS set-up (../shared/TOOLCHAIN.md): prefer the OpenMP
# OpenBLAS build, and the AVX-512 kernels where the CPU has them (hnf-train checks a GEMM
# against a reference before it starts, and refuses to train if the kernels are wrong).
if [[ -d /usr/lib/x86_64-linux-gnu/openblas-openmp ]]; then
  export LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu/openblas-openmp${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
fi
if grep -qw avx512f /proc/cpuinfo; then export OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-SkylakeX}; fi
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(nproc)}
mkdir -p "$out"
# The settings of the committed model (models/hnf-llama-4m/README.md); later arguments override.
build/hnf-train --out "$out" --data .cache/tokens --tokenizer .cache/tokenizer/tokenizer.model --vocab 4096 --bos 1 \
  --steps 1000 --long-steps 120 --long-seq 1024 --batch 8 --seq 512 --lr 1.5e-3 --min-lr 1.5e-4 --warmup 80 \
  --eval-every 200 --seed 1 "$@" 2>&1 | tee "$out/train_output.txt"
