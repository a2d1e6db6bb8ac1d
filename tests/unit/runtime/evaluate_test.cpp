#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "hnf/proofs/error.h"
#include "hnf/runtime/dense_kv_cache.h"
#include "hnf/runtime/evaluate.h"
#include "hnf/runtime/llama_model.h"
#include "test_files.h"
#include "tiny_llama.h"

using namespace hnf;

namespace {

std::vector<std::int32_t> token_stream(std::int64_t n, std::int32_t vocab) {
  std::vector<std::int32_t> ids;
  for (std::int64_t i = 0; i < n; ++i) ids.push_back(static_cast<std::int32_t>((i * 7 + i / 3) % vocab));
  return ids;
}

// -log p(target) of every position of one full forward over [bos] + ids[0, n-1).
double direct_nll(const runtime::LlamaModel& model, const std::vector<std::int32_t>& ids, std::int32_t bos) {
  std::vector<std::int32_t> input{bos};
  input.insert(input.end(), ids.begin(), ids.end() - 1);
  const auto vocab = static_cast<std::size_t>(model.config().vocab_size);
  std::vector<float> logits(input.size() * vocab);
  runtime::DenseKvCache cache(model.cache_shape(), static_cast<std::int64_t>(input.size()));
  model.forward(input, cache, logits.data());
  double nll = 0.0;
  for (std::size_t j = 0; j < ids.size(); ++j) {
    const float* row = logits.data() + j * vocab;
    double max = -INFINITY;
    for (std::size_t i = 0; i < vocab; ++i) max = std::max(max, static_cast<double>(row[i]));
    double total = 0.0;
    for (std::size_t i = 0; i < vocab; ++i) total += std::exp(row[i] - max);
    nll -= row[static_cast<std::size_t>(ids[j])] - max - std::log(total);
  }
  return nll;
}

}  // namespace

TEST_CASE("one window scores every token exactly as a direct forward does") {
  testing::TempDir dir;
  testing::write_tiny_llama(dir.path(), testing::TinyLlama{});
  const auto model = runtime::LlamaModel::load(dir.path());
  const auto ids = token_stream(40, 50);
  const auto result = runtime::evaluate_perplexity(model, ids, 1, {.context = 64, .stride = 16});
  CHECK(result.windows == 1);
  CHECK(result.tokens == 40);
  CHECK(result.nll_nats == doctest::Approx(direct_nll(model, ids, 1)).epsilon(1e-9));
  CHECK(result.perplexity == doctest::Approx(std::exp(result.nll_nats / 40)).epsilon(1e-12));
  CHECK(!result.candidate.has_value());
}

TEST_CASE("sliding windows score each token once, with the context the windows give") {
  testing::TempDir dir;
  testing::write_tiny_llama(dir.path(), testing::TinyLlama{});
  const auto model = runtime::LlamaModel::load(dir.path());
  const auto ids = token_stream(50, 50);
  std::vector<std::pair<std::int64_t, std::int64_t>> progress;
  // context 16: windows of 15 text tokens starting at 0, 5, 10, ..., 35 (the one ending at 50).
  const auto result = runtime::evaluate_perplexity(model, ids, 1, {.context = 16, .stride = 5}, nullptr,
                                                   [&](std::int64_t done, std::int64_t total) { progress.emplace_back(done, total); });
  CHECK(result.tokens == 50);
  CHECK(result.windows == 8);
  REQUIRE(progress.size() == 8);
  CHECK(progress.back() == std::pair<std::int64_t, std::int64_t>{8, 8});
  // Window 0 scores tokens 0..14 with a full forward over them; the total differs from one
  // long window because later tokens see less context.
  const std::vector<std::int32_t> first(ids.begin(), ids.begin() + 15);
  const auto one = runtime::evaluate_perplexity(model, first, 1, {.context = 16, .stride = 5});
  CHECK(one.nll_nats == doctest::Approx(direct_nll(model, first, 1)).epsilon(1e-9));
  CHECK(result.nll_nats != doctest::Approx(direct_nll(model, ids, 1)).epsilon(1e-9));
}

TEST_CASE("a candidate cache identical to the reference shows zero KL and full agreement") {
  testing::TempDir dir;
  testing::write_tiny_llama(dir.path(), testing::TinyLlama{});
  const auto model = runtime::LlamaModel::load(dir.path());
  const auto ids = token_stream(30, 50);
  const runtime::CacheFactory dense = [](const runtime::KvCacheShape& shape, std::int64_t capacity) {
    return std::make_unique<runtime::DenseKvCache>(shape, capacity);
  };
  const auto result = runtime::evaluate_perplexity(model, ids, 1, {.context = 12, .stride = 4}, dense);
  REQUIRE(result.candidate.has_value());
  CHECK(result.candidate->mean_kl == doctest::Approx(0.0).epsilon(1e-12));
  CHECK(result.candidate->top1_agreement == 1.0);
  CHECK(result.candidate->perplexity == doctest::Approx(result.perplexity).epsilon(1e-12));
}

TEST_CASE("the unigram baseline is the add-one unigram of the scored tokens") {
  testing::TempDir dir;
  testing::write_tiny_llama(dir.path(), testing::TinyLlama{});
  const auto model = runtime::LlamaModel::load(dir.path());
  const std::vector<std::int32_t> ids{3, 3, 3, 7};
  const auto result = runtime::evaluate_perplexity(model, ids, 1, {.context = 8, .stride = 4});
  // counts +1 over 50 symbols: p(3) = 4/54, p(7) = 2/54.
  const double expected = std::exp(-(3 * std::log(4.0 / 54) + std::log(2.0 / 54)) / 4);
  CHECK(result.unigram_perplexity == doctest::Approx(expected).epsilon(1e-12));
}

TEST_CASE("bad evaluation settings are bad input") {
  testing::TempDir dir;
  testing::write_tiny_llama(dir.path(), testing::TinyLlama{});
  const auto model = runtime::LlamaModel::load(dir.path());
  const auto ids = token_stream(10, 50);
  CHECK_THROWS_WITH_AS((void)runtime::evaluate_perplexity(model, ids, 1, {.context = 8, .stride = 8}),
                       "--stride: must be between 1 and --ctx - 1 (7)", proofs::Error);
  CHECK_THROWS_WITH_AS((void)runtime::evaluate_perplexity(model, ids, 1, {.context = 1, .stride = 1}),
                       "--ctx: must be at least 2", proofs::Error);
  CHECK_THROWS_AS((void)runtime::evaluate_perplexity(model, std::vector<std::int32_t>{}, 1, {}), proofs::Error);
  CHECK_THROWS_AS((void)runtime::evaluate_perplexity(model, std::vector<std::int32_t>{1, 50}, 1, {}), proofs::Error);
}

namespace {

// A cache that stores every value scaled by 0.5: attention outputs change, so distributions do.
class HalfValueCache final : public runtime::KvCache {
 public:
  HalfValueCache(const runtime::KvCacheShape& shape, std::int64_t capacity) : KvCache(shape, capacity), dense_(shape, capacity) {}

 private:
  void do_append(std::int64_t layer, const float* k, const float* v, std::int64_t n, std::int64_t) override {
    std::vector<float> half(v, v + num_kv_heads() * n * head_dim());
    for (auto& x : half) x *= 0.5f;
    dense_.append(layer, k, half.data(), n);
  }
  void do_attend(std::int64_t layer, const float* q, std::int64_t n, std::int64_t, float* out) const override {
    dense_.attend(layer, q, n, out);
  }
  runtime::DenseKvCache dense_;
};

}  // namespace

TEST_CASE("compare_caches: the reference against itself is KL exactly 0, agreement 1, another cache is not") {
  testing::TempDir dir;
  testing::write_tiny_llama(dir.path(), testing::TinyLlama{});
  const auto model = runtime::LlamaModel::load(dir.path());
  const auto ids = token_stream(70, 50);
  const runtime::CacheFactory dense = [](const runtime::KvCacheShape& shape, std::int64_t capacity) {
    return std::unique_ptr<runtime::KvCache>(std::make_unique<runtime::DenseKvCache>(shape, capacity));
  };
  const runtime::CacheFactory half = [](const runtime::KvCacheShape& shape, std::int64_t capacity) {
    return std::unique_ptr<runtime::KvCache>(std::make_unique<HalfValueCache>(shape, capacity));
  };
  const std::vector<runtime::CacheFactory> candidates{dense, half};
  const runtime::EvalOptions options{.context = 32, .stride = 8};
  const auto c = runtime::compare_caches(model, ids, 1, options, dense, candidates);
  REQUIRE(c.candidates.size() == 2);
  CHECK(c.candidates[0].mean_kl == 0.0);
  CHECK(c.candidates[0].top1_agreement == 1.0);
  CHECK(c.candidates[0].perplexity == c.reference.perplexity);
  CHECK(c.candidates[1].mean_kl > 1e-6);
  CHECK(c.candidates[1].perplexity != c.reference.perplexity);
  CHECK(c.seconds.size() == 2);
  // The reference's own figures are evaluate_perplexity's, window for window.
  const auto single = runtime::evaluate_perplexity(model, ids, 1, options, half);
  CHECK(c.reference.nll_nats == single.nll_nats);
  CHECK(c.reference.windows == single.windows);
  CHECK(single.candidate->mean_kl == c.candidates[1].mean_kl);
}
