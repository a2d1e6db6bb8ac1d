#include "hnf/runtime/evaluate.h"

#include <algorithm>
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

}  // namespace

EvalResult evaluate_perplexity(const LlamaModel& model, std::span<const std::int32_t> tokens, std::int32_t bos_id,
                               const EvalOptions& options, const CacheFactory& candidate,
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

  EvalResult result;
  CandidateComparison comparison;
  double candidate_nll = 0.0;
  std::vector<std::int32_t> input;
  std::vector<float> logits;
  std::vector<float> candidate_logits;
  std::vector<double> ref_logp;
  std::vector<double> cand_logp;
  std::int64_t scored_until = 0;
  for (std::int64_t begin = 0;; begin += options.stride) {
    const std::int64_t end = std::min(begin + span, n);
    input.assign(1, bos_id);
    input.insert(input.end(), tokens.begin() + begin, tokens.begin() + (end - 1));
    const auto len = static_cast<std::int64_t>(input.size());  // == end - begin
    logits.resize(static_cast<std::size_t>(len) * vocab);
    DenseKvCache reference(model.cache_shape(), len);
    model.forward(input, reference, logits.data());
    std::unique_ptr<KvCache> other;
    if (candidate) {
      other = candidate(model.cache_shape(), len);
      candidate_logits.resize(logits.size());
      model.forward(input, *other, candidate_logits.data());
    }
    for (std::int64_t j = std::max<std::int64_t>(0, scored_until - begin); j < len; ++j) {
      const auto target = static_cast<std::size_t>(tokens[static_cast<std::size_t>(begin + j)]);
      const float* row = logits.data() + static_cast<std::size_t>(j) * vocab;
      log_softmax(row, vocab, ref_logp);
      result.nll_nats -= ref_logp[target];
      ++result.tokens;
      if (candidate) {
        const float* cand_row = candidate_logits.data() + static_cast<std::size_t>(j) * vocab;
        log_softmax(cand_row, vocab, cand_logp);
        candidate_nll -= cand_logp[target];
        double kl = 0.0;
        for (std::size_t i = 0; i < vocab; ++i) kl += std::exp(ref_logp[i]) * (ref_logp[i] - cand_logp[i]);
        comparison.mean_kl += kl;
        comparison.top1_agreement += argmax(row, vocab) == argmax(cand_row, vocab) ? 1.0 : 0.0;
      }
    }
    scored_until = end;
    ++result.windows;
    if (on_window) on_window(result.windows, total_windows);
    if (end == n) break;
  }
  HNF_ASSERT(result.tokens == n, "every token must be scored exactly once");
  const auto count = static_cast<double>(result.tokens);
  result.perplexity = std::exp(result.nll_nats / count);
  result.unigram_perplexity = unigram_perplexity(tokens, model.config().vocab_size);
  if (candidate) {
    comparison.mean_kl /= count;
    comparison.top1_agreement /= count;
    comparison.perplexity = std::exp(candidate_nll / count);
    result.candidate = comparison;
  }
  return result;
}

}  // namespace hnf::runtime
