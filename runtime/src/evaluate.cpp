#include "hnf/runtime/evaluate.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <vector>

#include "hnf/proofs/error.h"
#include "hnf/runtime/dense_kv_cache.h"

namespace hnf::runtime {
namespace {

// log-softmax of one logits row, in double. row [vocab] -> out [vocab].
void log_softmax(const float* row, std::size_t vocab, std::vector<double>& out) {
  out.resize(vocab);
  double max = -INFINITY;
  for (std::size_t i = 0; i < vocab; ++i) max = std::max(max, static_cast<double>(row[i]));
  double total = 0.0;
  for (std::size_t i = 0; i < vocab; ++i) total += std::exp(static_cast<double>(row[i]) - max);
  const double log_total = max + std::log(total);
  for (std::size_t i = 0; i < vocab; ++i) out[i] = static_cast<double>(row[i]) - log_total;
}

std::size_t argmax(const float* row, std::size_t vocab) {
  return static_cast<std::size_t>(std::max_element(row, row + vocab) - row);
}

double unigram_perplexity(std::span<const std::int32_t> tokens, std::int64_t vocab) {
  std::vector<double> counts(static_cast<std::size_t>(vocab), 1.0);  // add-one smoothing
  for (const auto t : tokens) counts[static_cast<std::size_t>(t)] += 1.0;
  const double total = static_cast<double>(tokens.size()) + static_cast<double>(vocab);
  double nll = 0.0;
  for (const auto t : tokens) nll -= std::log(counts[static_cast<std::size_t>(t)] / total);
  return std::exp(nll / static_cast<double>(tokens.size()));
}

// Per candidate, the sums over scored tokens that become its CandidateComparison.
struct CandidateSums {
  double nll = 0.0;
  double kl = 0.0;
  double agree = 0.0;
  double seconds = 0.0;
};

// KL(reference || candidate) of one row from both log-probabilities: exactly 0 when the rows are equal.
// ref_logp [vocab], cand_logp [vocab].
double kl_divergence(std::span<const double> ref_logp, std::span<const double> cand_logp) {
  double kl = 0.0;
  for (std::size_t i = 0; i < ref_logp.size(); ++i) kl += std::exp(ref_logp[i]) * (ref_logp[i] - cand_logp[i]);
  return kl;
}

// One window through the model: one prefill, or (decode) one forward per token. input [len],
// logits [len, vocab].
void run_window(const LlamaModel& model, std::span<const std::int32_t> input, KvCache& cache, float* logits,
                bool decode, std::size_t vocab) {
  if (!decode) {
    model.forward(input, cache, logits);
    return;
  }
  for (std::size_t i = 0; i < input.size(); ++i) model.forward(input.subspan(i, 1), cache, logits + i * vocab);
}

}  // namespace

CacheComparison compare_caches(const LlamaModel& model, std::span<const std::int32_t> tokens, std::int32_t bos_id,
                               const EvalOptions& options, const CacheFactory& reference,
                               std::span<const CacheFactory> candidates,
                               const std::function<void(std::int64_t, std::int64_t)>& on_window) {
  const auto n = static_cast<std::int64_t>(tokens.size());
  const std::int64_t span = options.context - 1;  // text tokens per window; BOS takes one slot
  if (options.context < 2) throw proofs::bad_input("--ctx", "must be at least 2");
  if (options.stride < 1 || options.stride > span) {
    throw proofs::bad_input("--stride", "must be between 1 and --ctx - 1 (" + std::to_string(span) + ")");
  }
  if (n < 1) throw proofs::bad_input("evaluation text", "has no tokens");
  const auto vocab = static_cast<std::size_t>(model.config().vocab_size);
  for (const auto t : tokens) {
    if (t < 0 || static_cast<std::size_t>(t) >= vocab)
      throw proofs::bad_input("evaluation text", "token id " + std::to_string(t) + " is outside the vocabulary");
  }
  const std::int64_t total_windows = n <= span ? 1 : 1 + (n - span + options.stride - 1) / options.stride;

  CacheComparison result;
  std::vector<CandidateSums> sums(candidates.size());
  std::vector<std::int32_t> input;
  std::vector<float> logits;            // [len, vocab] of the reference, then of each candidate
  std::vector<double> ref_logp;         // [scored rows, vocab]
  std::vector<std::size_t> ref_argmax;  // [scored rows]
  std::vector<double> cand_logp;        // [vocab]
  std::vector<double> row_logp;         // [vocab]: one reference row, then copied into ref_logp
  std::int64_t scored_until = 0;
  for (std::int64_t begin = 0;; begin += options.stride) {
    const std::int64_t end = std::min(begin + span, n);
    input.assign(1, bos_id);
    input.insert(input.end(), tokens.begin() + begin, tokens.begin() + (end - 1));
    const auto len = static_cast<std::int64_t>(input.size());  // == end - begin
    const std::int64_t first_scored = std::max<std::int64_t>(0, scored_until - begin);
    const auto rows = static_cast<std::size_t>(len - first_scored);
    logits.resize(static_cast<std::size_t>(len) * vocab);
    {
      auto cache = reference(model.cache_shape(), len);
      run_window(model, input, *cache, logits.data(), options.decode, vocab);
    }
    ref_logp.resize(rows * vocab);
    ref_argmax.resize(rows);
    for (std::size_t r = 0; r < rows; ++r) {
      const auto j = static_cast<std::size_t>(first_scored) + r;
      const float* row = logits.data() + j * vocab;
      log_softmax(row, vocab, row_logp);
      std::copy(row_logp.begin(), row_logp.end(), ref_logp.begin() + static_cast<std::ptrdiff_t>(r * vocab));
      ref_argmax[r] = argmax(row, vocab);
      result.reference.nll_nats -= row_logp[static_cast<std::size_t>(tokens[static_cast<std::size_t>(begin) + j])];
      ++result.reference.tokens;
    }
    for (std::size_t c = 0; c < candidates.size(); ++c) {
      const auto start = std::chrono::steady_clock::now();
      {
        auto cache = candidates[c](model.cache_shape(), len);
        run_window(model, input, *cache, logits.data(), options.decode, vocab);
      }
      for (std::size_t r = 0; r < rows; ++r) {
        const auto j = static_cast<std::size_t>(first_scored) + r;
        const float* row = logits.data() + j * vocab;
        log_softmax(row, vocab, cand_logp);
        sums[c].nll -= cand_logp[static_cast<std::size_t>(tokens[static_cast<std::size_t>(begin) + j])];
        sums[c].kl += kl_divergence(std::span(ref_logp).subspan(r * vocab, vocab), cand_logp);
        sums[c].agree += ref_argmax[r] == argmax(row, vocab) ? 1.0 : 0.0;
      }
      sums[c].seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    }
    scored_until = end;
    ++result.reference.windows;
    if (on_window) on_window(result.reference.windows, total_windows);
    if (end == n) break;
  }
  HNF_ASSERT(result.reference.tokens == n, "every token must be scored exactly once");
  const auto count = static_cast<double>(n);
  result.reference.perplexity = std::exp(result.reference.nll_nats / count);
  result.reference.unigram_perplexity = unigram_perplexity(tokens, model.config().vocab_size);
  for (const auto& s : sums) {
    result.candidates.push_back({.mean_kl = s.kl / count, .top1_agreement = s.agree / count, .perplexity = std::exp(s.nll / count)});
    result.seconds.push_back(s.seconds);
  }
  return result;
}

EvalResult evaluate_perplexity(const LlamaModel& model, std::span<const std::int32_t> tokens, std::int32_t bos_id,
                               const EvalOptions& options, const CacheFactory& candidate,
                               const std::function<void(std::int64_t, std::int64_t)>& on_window) {
  const CacheFactory dense = [](const KvCacheShape& shape, std::int64_t capacity) {
    return std::unique_ptr<KvCache>(std::make_unique<DenseKvCache>(shape, capacity));
  };
  std::vector<CacheFactory> candidates;
  if (candidate) candidates.push_back(candidate);
  auto comparison = compare_caches(model, tokens, bos_id, options, dense, candidates, on_window);
  EvalResult result = comparison.reference;
  if (candidate) {
    result.candidate = comparison.candidates.front();
    result.candidate_seconds = comparison.seconds.front();
  }
  return result;
}

}  // namespace hnf::runtime
