#!/usr/bin/env bash
# Trains the project's SentencePiece BPE tokenizer (vocabulary 4096) on the three TRAIN
# splits built by scripts/corpora.sh; writes .cache/tokenizer/tokenizer.{model,vocab}.
#
# Deterministic: the input is a fixed concatenation, the sentence sample uses a fixed seed,
# and a stamp (sha256 of the input, the settings and spm_train's version) lets a second run
# with the same inputs skip training altogether.
#
# SentencePiece is line-based: it never sees or learns a newline. The C++ side encodes text
# line by line and emits the byte-fallback piece <0x0A> for each newline (docs/data.md).
#
# Usage: bash scripts/train_tokenizer.sh      (after bash scripts/corpora.sh)
set -euo pipefail
cd "$(dirname "$0")/.."

corpora=.cache/corpora
out=.cache/tokenizer
# Enough to take every line of the current corpora (0.49 M non-empty lines); it bounds memory and
# time if the corpora grow, and then the fixed seed keeps the sample reproducible.
input_sentence_size=2000000
# The code genre is capped to this share of the tokenizer input so that Python's identifiers
# and indentation runs do not crowd prose and dialogue pieces out of a 4096 vocabulary.
code_max_percent=40

for f in prose/train.txt code/train.txt dialogue/train.txt; do
  [[ -f $corpora/$f ]] || { echo "train_tokenizer: missing $corpora/$f; run: bash scripts/corpora.sh" >&2; exit 3; }
done
command -v spm_train >/dev/null || { echo "train_tokenizer: spm_train not found; run: bash scripts/corpora.sh (installs sentencepiece)" >&2; exit 3; }

mkdir -p "$out"
prose_bytes=$(stat -c %s "$corpora/prose/train.txt")
dialogue_bytes=$(stat -c %s "$corpora/dialogue/train.txt")
code_bytes=$(stat -c %s "$corpora/code/train.txt")
# code <= p% of (prose + dialogue + code)  <=>  code <= p * (prose + dialogue) / (100 - p)
code_cap=$(( code_max_percent * (prose_bytes + dialogue_bytes) / (100 - code_max_percent) ))

input=$out/input.txt
{
  cat "$corpora/prose/train.txt"
  cat "$corpora/dialogue/train.txt"
  if (( code_bytes <= code_cap )); then
    cat "$corpora/code/train.txt"
  else
    # The first code_cap bytes, cut back to the last whole line (the file is sorted by
    # module path, so this keeps whole modules except the last one).
    head -c "$code_cap" "$corpora/code/train.txt" | sed '$d'
  fi
} >"$input.partial"
mv "$input.partial" "$input"
input_bytes=$(stat -c %s "$input")
used_code=$(( input_bytes - prose_bytes - dialogue_bytes ))
echo "train_tokenizer: input $input_bytes bytes (prose $prose_bytes, dialogue $dialogue_bytes, code $used_code of $code_bytes = $(( 100 * used_code / input_bytes ))%)" >&2

args=(
  --input="$input"
  --model_prefix="$out/tokenizer.partial"
  --vocab_size=4096
  --model_type=bpe
  --character_coverage=1.0
  --byte_fallback=true
  --split_digits=true
  --unk_id=0 --bos_id=1 --eos_id=2 --pad_id=-1
  --normalization_rule_name=identity
  --remove_extra_whitespaces=false
  --allow_whitespace_only_pieces=true
  --max_sentence_length=16384
  --input_sentence_size="$input_sentence_size"
  --shuffle_input_sentence=true
  --random_seed=20261128
  --num_threads=2
)

stamp=$( { sha256sum <"$input"; printf '%s\n' "${args[@]}"; spm_train --version 2>&1; } | sha256sum | cut -d' ' -f1)
if [[ -f $out/tokenizer.model && -f $out/tokenizer.vocab && -f $out/tokenizer.stamp ]] &&
   [[ $(cat "$out/tokenizer.stamp") == "$stamp" ]]; then
  echo "train_tokenizer: $out/tokenizer.model is up to date" >&2
  exit 0
fi

spm_train "${args[@]}" >"$out/spm_train.log" 2>&1 || {
  tail -20 "$out/spm_train.log" >&2
  echo "train_tokenizer: spm_train failed; full log in $out/spm_train.log" >&2
  exit 1
}
mv "$out/tokenizer.partial.model" "$out/tokenizer.model"
mv "$out/tokenizer.partial.vocab" "$out/tokenizer.vocab"
echo "$stamp" >"$out/tokenizer.stamp"
echo "train_tokenizer: wrote $out/tokenizer.model ($(wc -l <"$out/tokenizer.vocab") pieces)" >&2
