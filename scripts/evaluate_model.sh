#!/usr/bin/env bash
# Measures a model folder and writes MODEL_DIR/evaluation.md: perplexity on WikiText-2 test and
# the genre eval splits (with the unigram baseline of the same run), 2048-token traces of
# WikiText-2 test, code and dialogue (checked by inspect --strict), and the attention
# structure of each trace. Every figure in the file is computed by this run.
# Usage: scripts/evaluate_model.sh [MODEL_DIR]   (default models/hnf-llama-4m; after corpora.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:-models/hnf-llama-4m}
bin=build/hnf-verify
[[ -x $bin ]] || bash scripts/setup.sh build
wikitext=../shared/data/wikitext-2/test.txt
traces=.cache/traces
mkdir -p "$traces"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "evaluate_model: WikiText-2 test (full)" >&2
"$bin" eval --model "$model" --text "$wikitext" --json >"$work/eval-wikitext.json"
for genre in prose code dialogue; do
  echo "evaluate_model: $genre eval split (first 60000 tokens)" >&2
  "$bin" eval --model "$model" --text ".cache/corpora/$genre/eval.txt" --max-tokens 60000 --json >"$work/eval-$genre.json"
done
for source in wikitext:$wikitext code:.cache/corpora/code/eval.txt dialogue:.cache/corpora/dialogue/eval.txt; do
  name=${source%%:*}
  text=${source#*:}
  echo "evaluate_model: trace of 2048 tokens of $name" >&2
  "$bin" trace --model "$model" --text "$text" --tokens 2048 --out "$traces/$name-2048.safetensors"
  "$bin" inspect --strict --json "$traces/$name-2048.safetensors" >"$work/inspect-$name.json"
  "$bin" attention --json "$traces/$name-2048.safetensors" >"$work/attention-$name.json"
done

python3 - "$work" "$model" >"$model/evaluation.md" <<'PY'
import json, sys, datetime, platform, os
work, model = sys.argv[1], sys.argv[2]
load = lambda name: json.load(open(os.path.join(work, name)))
out = [f"# Evaluation of {os.path.basename(model)}", "",
       f"Written by `scripts/evaluate_model.sh` on {datetime.date.today()} ({platform.machine()}, "
       f"{os.cpu_count()} cores). Every figure below was computed in that run.", "",
       "## Perplexity (sliding windows: context 1024, stride 512)", "",
       "| text | tokens | perplexity | bits per byte | unigram perplexity | unigram / model | seconds |",
       "|---|---:|---:|---:|---:|---:|---:|"]
for name, label in [("wikitext", "WikiText-2 test (full)"), ("prose", "prose eval split"),
                    ("code", "code eval split"), ("dialogue", "dialogue eval split")]:
    e = load(f"eval-{name}.json")
    out.append(f"| {label} | {e['tokens']} | {e['perplexity']:.2f} | {e['bits_per_byte']:.4f} | "
               f"{e['unigram_perplexity']:.2f} | {e['unigram_perplexity'] / e['perplexity']:.2f}x | {e['seconds']:.1f} |")
out += ["", "The unigram baseline is an add-one unigram over the same tokenizer, fitted on the evaluated "
        "text itself (so it is an optimistic unigram). Genre splits: the first 60,000 tokens.", "",
        "## Attention structure of 2048-token traces", "",
        "Mean over query heads and all 2048 recorded queries of the attention weight on the first token "
        "(the beginning-of-sequence token, where real LLMs form an attention sink) and on the 64 most "
        "recent tokens (the query's own position included).", "",
        "| trace | layer | first token | last 64 tokens | largest weight |", "|---|---:|---:|---:|---:|"]
for name in ["wikitext", "code", "dialogue"]:
    a = load(f"attention-{name}.json")
    for l in a["layers"]:
        out.append(f"| {name} | {l['layer']} | {l['first_token_mass']:.4f} | {l['recent_mass']:.4f} | {l['max_weight']:.4f} |")
out += ["", "Each trace passed `hnf-verify inspect --strict` (no NaN or Inf):", ""]
for name in ["wikitext", "code", "dialogue"]:
    i = load(f"inspect-{name}.json")
    s = i["shape"]
    out.append(f"- {name}: {s['layers']} layers, {s['heads']} heads, {s['kv_heads']} kv heads, {s['tokens']} tokens, "
               f"head_dim {s['head_dim']}, {i['file_bytes']} bytes, text sha256 {i['metadata']['text_sha256'][:16]}...")
print("\n".join(out))
PY
echo "evaluate_model: wrote $model/evaluation.md" >&2
