#!/usr/bin/env bash
# Draws a model's training and evaluation loss (train_log.csv written by hnf-train) as a PNG.
# Usage: scripts/plot_loss.sh MODEL_DIR   -> MODEL_DIR/loss.png
set -euo pipefail
dir=${1:?usage: scripts/plot_loss.sh MODEL_DIR}
log=$dir/train_log.csv
[[ -f $log ]] || { echo "plot_loss: $log not found" >&2; exit 3; }
if ! command -v gnuplot >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends gnuplot-nox >/dev/null
fi
# Columns: step,tokens,lr,train_loss,eval_<genre>...,seconds
header=$(head -1 "$log")
IFS=, read -r -a columns <<<"$header"
plots="'$log' using (\$2/1e6):4 with linespoints title 'train'"
for ((i = 4; i < ${#columns[@]} - 1; i++)); do
  plots+=", '' using (\$2/1e6):$((i + 1)) with linespoints title '${columns[i]//_/ }'"
done
gnuplot <<GNUPLOT
set terminal pngcairo size 900,540 noenhanced
set output '$dir/loss.png'
set datafile separator ','
set key autotitle columnhead
set title 'hnf-train: next-token cross-entropy (nats)'
set xlabel 'training tokens (millions)'
set ylabel 'loss'
set grid
plot $plots
GNUPLOT
echo "plot_loss: wrote $dir/loss.png" >&2
