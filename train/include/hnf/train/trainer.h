// Training loop for LlamaTorch: AdamW, linear warm-up then cosine decay, gradient clipping,
// windows that each start with the beginning-of-sequence token (so the model forms the
// attention sink real LLMs have), periodic evaluation per genre, a CSV loss log and
// checkpoints. Deterministic for a given seed and thread count.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "hnf/train/llama_torch.h"

namespace hnf::train {

struct Corpus {
  std::string name;                 // genre, e.g. "prose"
  std::vector<std::int32_t> train;  // token stream of the train split
  std::vector<std::int32_t> eval;   // token stream of the eval split
  double weight = 1.0;              // share of training windows drawn from this genre
};

struct TrainOptions {
  std::int64_t steps = 3000;
  std::int64_t batch = 8;
  std::int64_t seq_len = 512;       // tokens per window, BOS included
  // The last long_steps steps use windows of long_seq_len tokens (batch scaled to keep the
  // tokens per step), so the model meets every position up to its context at a fraction of
  // the cost of training on long windows throughout (attention cost grows with the window).
  std::int64_t long_seq_len = 1024;
  std::int64_t long_steps = 0;
  double lr = 2e-3;
  double min_lr = 2e-4;
  std::int64_t warmup = 200;
  double weight_decay = 0.1;
  double grad_clip = 1.0;
  std::int64_t eval_every = 250;
  std::int64_t eval_windows = 16;   // per genre, fixed offsets
  std::uint64_t seed = 1;
  std::filesystem::path out;        // model folder: checkpoints and train_log.csv go here
};

struct EvalResult {
  std::string genre;
  double loss = 0.0;  // mean next-token cross-entropy (nats) over the eval windows
};

// Learning rate at `step` (0-based): linear warm-up, then cosine decay to min_lr.
[[nodiscard]] double learning_rate(const TrainOptions& options, std::int64_t step);

// Trains `model` in place; writes out/train_log.csv and a checkpoint (LlamaTorch::save) at
// every evaluation and at the end. `on_log(line)` receives each log line for display.
void train(LlamaTorch& model, const std::vector<Corpus>& corpora, const TrainOptions& options,
           const std::function<void(const std::string&)>& on_log);

// Mean cross-entropy of `model` on `windows` fixed windows of the eval stream of each corpus.
[[nodiscard]] std::vector<EvalResult> evaluate(const LlamaTorch& model, const std::vector<Corpus>& corpora,
                                               std::int64_t seq_len, std::int64_t windows);

}  // namespace hnf::train
