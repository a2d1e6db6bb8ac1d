// Language-model evaluation the way the field reports it: sliding-window perplexity and bits
// per byte over a token stream, and, when a second (candidate) cache is given, how far its
// next-token distributions move from the full-precision cache's: mean KL divergence and top-1
// agreement, on the very same windows.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "hnf/runtime/kv_cache.h"
#include "hnf/runtime/llama_model.h"

namespace hnf::runtime {

// Builds a cache of the given shape and capacity (one per window).
using CacheFactory = std::function<std::unique_ptr<KvCache>(const KvCacheShape& shape, std::int64_t capacity)>;

struct EvalOptions {
  std::int64_t context = 1024;  // tokens the model sees per window, BOS included
  std::int64_t stride = 512;    // new tokens scored per window after the first
  // Token-by-token decode: each window's tokens go through the model one at a time, so every
  // query sees the cache state of its own step (a policy cache's ages and migrations). Off: one
  // prefill per window (the same result for caches whose stored rows do not depend on later ones).
  bool decode = false;
};

struct CandidateComparison {
  double mean_kl = 0.0;         // mean over scored tokens of KL(reference || candidate), nats
  double top1_agreement = 0.0;  // share of scored tokens whose argmax agrees
  double perplexity = 0.0;      // the candidate's own perplexity on the same targets
};

struct EvalResult {
  std::int64_t tokens = 0;          // tokens scored (each token of the stream exactly once)
  std::int64_t windows = 0;
  double nll_nats = 0.0;            // total negative log-likelihood of the scored tokens
  double perplexity = 0.0;          // exp(nll / tokens)
  double unigram_perplexity = 0.0;  // add-one unigram fitted on these same tokens (a strong unigram)
  std::optional<CandidateComparison> candidate;
  double candidate_seconds = 0.0;  // wall time of the candidate's windows (its forwards and comparisons)
};

// Window k covers the targets tokens[begin, end) with begin = k * stride and
// end = min(begin + context - 1, n): the model reads [bos] + tokens[begin, end - 1) (at most
// `context` tokens, in a fresh cache) and each target not scored by an earlier window is scored
// once. Requires 1 <= stride <= context - 1 (else proofs::Error(kBadInput) naming the option).
// `on_window(done, total)` (optional) reports progress.
// tokens [n], n >= 1; every id < vocab_size (else proofs::Error(kBadInput) from forward).
[[nodiscard]] EvalResult evaluate_perplexity(const LlamaModel& model, std::span<const std::int32_t> tokens,
                                             std::int32_t bos_id, const EvalOptions& options,
                                             const CacheFactory& candidate = nullptr,
                                             const std::function<void(std::int64_t, std::int64_t)>& on_window = nullptr);

// Several candidate caches against one reference cache on the same windows: each window runs
// the reference once and every candidate once (in order), and each candidate's next-token
// distributions are compared with the reference's. The reference's own perplexity is in
// `reference` (its `candidate` unset); seconds[i] is candidate i's wall time (its forwards and
// comparisons). A candidate identical to the reference has mean_kl exactly 0 and agreement 1:
// KL terms of equal log-probabilities are exact zeros.
struct CacheComparison {
  EvalResult reference;
  std::vector<CandidateComparison> candidates;  // [candidates]
  std::vector<double> seconds;                  // [candidates]
};

// Windows as evaluate_perplexity. `reference` builds the reference cache of each window;
// on_window(done, total) reports progress after each window.
[[nodiscard]] CacheComparison compare_caches(const LlamaModel& model, std::span<const std::int32_t> tokens,
                                             std::int32_t bos_id, const EvalOptions& options,
                                             const CacheFactory& reference, std::span<const CacheFactory> candidates,
                                             const std::function<void(std::int64_t, std::int64_t)>& on_window = nullptr);

}  // namespace hnf::runtime
