// The quality benchmark's caches against naive double-precision references that implement each
// method's rule directly: which representation every query reads, and the bytes counted.
#include <doctest/doctest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "hnf/baselines/h2o_cache.h"
#include "hnf/baselines/methods.h"
#include "hnf/baselines/plan_cache.h"
#include "fixture_certificate.h"
#include "hnf/proofs/certificate.h"
#include "hnf/proofs/error.h"
#include "hnf/proofs/float16.h"
#include "hnf/proofs/format.h"

using hnf::baselines::H2oCache;
using hnf::baselines::PlanCache;
using hnf::baselines::StoragePlan;
using hnf::proofs::Format;
using hnf::runtime::KvCacheShape;

namespace {

// One layer, 2 query heads over 1 kv head, head_dim 32.
const KvCacheShape kSmall{.num_layers = 1, .num_heads = 2, .num_kv_heads = 1, .head_dim = 32};
constexpr std::size_t kD = 32;

struct Rows {
  std::vector<float> k, v, q;  // k, v [n, d] (one kv head); q [heads=2, n, d]
};

Rows random_rows(std::size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  Rows r{std::vector<float>(n * kD), std::vector<float>(n * kD), std::vector<float>(2 * n * kD)};
  for (auto& x : r.k) x = normal(rng) * 1.5f;
  for (auto& x : r.v) x = normal(rng);
  for (auto& x : r.q) x = normal(rng);
  return r;
}

float fp16(float x) { return hnf::proofs::half_bits_to_float(hnf::proofs::float_to_half_bits(x)); }

// Stored values of rows x [rows, d] in format f, by the reference quantizer.
std::vector<double> stored(const Format& f, const float* x, std::size_t rows) {
  std::vector<double> out(rows * kD), radius(rows * kD);
  hnf::proofs::quantize_block(f, {x, rows * kD}, rows, kD, out, radius);
  return out;
}

// Naive causal attention of query row q [d] over positions 0..p, with key(t) and value(t) [d]
// given by the caller (the representation the rule under test says query p reads).
template <typename KeyOf, typename ValueOf>
std::vector<double> attend_naive(const float* q, std::size_t p, KeyOf key_of, ValueOf value_of) {
  std::vector<double> s(p + 1), out(kD, 0.0);
  double max = -INFINITY;
  for (std::size_t t = 0; t <= p; ++t) {
    const std::vector<double> k = key_of(t);
    double dot = 0.0;
    for (std::size_t c = 0; c < kD; ++c) dot += static_cast<double>(q[c]) * k[c];
    s[t] = dot / std::sqrt(static_cast<double>(kD));
    max = std::max(max, s[t]);
  }
  double total = 0.0;
  for (auto& x : s) total += (x = std::exp(x - max));
  for (std::size_t t = 0; t <= p; ++t) {
    const std::vector<double> v = value_of(t);
    for (std::size_t c = 0; c < kD; ++c) out[c] += s[t] / total * v[c];
  }
  return out;
}

// Runs n positions through `cache` in one step; out [heads=2, n, d].
std::vector<float> one_step(hnf::runtime::KvCache& cache, const Rows& r, std::size_t n) {
  std::vector<float> out(2 * n * kD);
  cache.append(0, r.k.data(), r.v.data(), static_cast<std::int64_t>(n));
  cache.attend(0, r.q.data(), static_cast<std::int64_t>(n), out.data());
  return out;
}

// The same positions one at a time, as decoding does; out [heads=2, n, d].
std::vector<float> token_by_token(hnf::runtime::KvCache& cache, const Rows& r, std::size_t n) {
  std::vector<float> out(2 * n * kD), q(2 * kD), o(2 * kD);
  for (std::size_t p = 0; p < n; ++p) {
    cache.append(0, r.k.data() + p * kD, r.v.data() + p * kD, 1);
    for (std::size_t h = 0; h < 2; ++h) std::copy_n(r.q.data() + (h * n + p) * kD, kD, q.data() + h * kD);
    cache.attend(0, q.data(), 1, o.data());
    for (std::size_t h = 0; h < 2; ++h) std::copy_n(o.data() + h * kD, kD, out.data() + (h * n + p) * kD);
  }
  return out;
}

double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  REQUIRE(a.size() == b.size());
  double m = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i) m = std::max(m, std::abs(static_cast<double>(a[i]) - b[i]));
  return m;
}

// Largest |cache output - naive| over every head and query.
template <typename KeyOf, typename ValueOf>
double error_vs_naive(const std::vector<float>& out, const Rows& r, std::size_t n, KeyOf key_of_p, ValueOf value_of_p) {
  double m = 0.0;
  for (std::size_t h = 0; h < 2; ++h) {
    for (std::size_t p = 0; p < n; ++p) {
      const auto ref = attend_naive(r.q.data() + (h * n + p) * kD, p, [&](std::size_t t) { return key_of_p(p, t); },
                                    [&](std::size_t t) { return value_of_p(p, t); });
      for (std::size_t c = 0; c < kD; ++c) m = std::max(m, std::abs(out[(h * n + p) * kD + c] - ref[c]));
    }
  }
  return m;
}

StoragePlan uniform(Format keys, Format values) {
  StoragePlan plan;
  plan.key_format = [keys](std::int64_t, std::int64_t, std::int64_t) { return keys; };
  plan.value_format = [values](std::int64_t, std::int64_t, std::int64_t) { return values; };
  return plan;
}

const Format kFp16{hnf::proofs::Encoding::kF16, hnf::proofs::GroupAxis::kNone, 0};
const Format kInt4d32{hnf::proofs::Encoding::kInt4, hnf::proofs::GroupAxis::kHeadDim, 32};
const Format kInt2d32{hnf::proofs::Encoding::kInt2, hnf::proofs::GroupAxis::kHeadDim, 32};
const Format kInt2t32{hnf::proofs::Encoding::kInt2, hnf::proofs::GroupAxis::kTokens, 32};

std::vector<double> row_of(const std::vector<double>& m, std::size_t t) {
  return {m.begin() + static_cast<std::ptrdiff_t>(t * kD), m.begin() + static_cast<std::ptrdiff_t>((t + 1) * kD)};
}
std::vector<double> fp16_row(const std::vector<float>& m, std::size_t t) {
  std::vector<double> out(kD);
  for (std::size_t c = 0; c < kD; ++c) out[c] = fp16(m[t * kD + c]);
  return out;
}

}  // namespace

TEST_CASE("plan cache: fp16 and int4-d32 plans attend over the reference quantizer's values, bits counted exactly") {
  const std::size_t n = 40;
  const Rows r = random_rows(n, 1);
  {
    auto meter = std::make_shared<hnf::baselines::StorageMeter>();
    {
      PlanCache cache(kSmall, n, uniform(kFp16, kFp16), meter);
      const auto out = one_step(cache, r, n);
      CHECK(error_vs_naive(out, r, n, [&](std::size_t, std::size_t t) { return fp16_row(r.k, t); },
                           [&](std::size_t, std::size_t t) { return fp16_row(r.v, t); }) < 2e-6);
    }
    CHECK(meter->bits_per_element() == 16.0);
    CHECK(meter->elements == 2.0 * n * kD);
  }
  const auto k4 = stored(kInt4d32, r.k.data(), n), v4 = stored(kInt4d32, r.v.data(), n);
  PlanCache cache(kSmall, n, uniform(kInt4d32, kInt4d32));
  const auto out = one_step(cache, r, n);
  const double error = error_vs_naive(out, r, n, [&](std::size_t, std::size_t t) { return row_of(k4, t); },
                                      [&](std::size_t, std::size_t t) { return row_of(v4, t); });
  CHECK(error < 2e-6);
  // The quantization is visible: attending over fp16 values instead is far off.
  CHECK(error_vs_naive(out, r, n, [&](std::size_t, std::size_t t) { return fp16_row(r.k, t); },
                       [&](std::size_t, std::size_t t) { return fp16_row(r.v, t); }) > 1e-3);
  CHECK(cache.stored_bytes() * 8.0 / cache.stored_elements() == 5.0);  // 4-bit codes + 2 fp16 per 32
}

TEST_CASE("plan cache: KIVI's residual: query p reads the newest 128 in fp16, older key groups per channel") {
  const std::size_t n = 200;
  const Rows r = random_rows(n, 2);
  StoragePlan plan = uniform(kInt2t32, kInt2d32);
  plan.recent = 128;
  PlanCache cache(kSmall, n, plan);
  const auto out = one_step(cache, r, n);
  const auto kq = stored(kInt2t32, r.k.data(), 192);  // the six complete groups of 32 positions
  const auto vq = stored(kInt2d32, r.v.data(), n);
  // Key t is quantized for query p when its group's last position is older than the newest 128.
  auto key_of = [&](std::size_t p, std::size_t t) {
    const std::size_t group_end = (t / 32 + 1) * 32 - 1;
    return static_cast<std::int64_t>(group_end) <= static_cast<std::int64_t>(p) - 128 ? row_of(kq, t) : fp16_row(r.k, t);
  };
  auto value_of = [&](std::size_t p, std::size_t t) {
    return static_cast<std::int64_t>(t) <= static_cast<std::int64_t>(p) - 128 ? row_of(vq, t) : fp16_row(r.v, t);
  };
  CHECK(error_vs_naive(out, r, n, key_of, value_of) < 2e-6);
  // At the newest query (p = 199): keys 0..63 in int2-t32 (3 bits), 64..199 fp16; values 0..71
  // in int2-d32 (3 bits), 72..199 fp16.
  const double bits = (64 * 3.0 + 136 * 16.0 + 72 * 3.0 + 128 * 16.0) * kD;
  CHECK(cache.stored_bytes() == doctest::Approx(bits / 8.0).epsilon(1e-15));
  CHECK(cache.stored_elements() == 2.0 * n * kD);
}

TEST_CASE("plan cache and H2O: one forward over a window reads what token-by-token decoding reads") {
  const std::size_t n = 180;
  const Rows r = random_rows(n, 3);
  StoragePlan kivi = uniform(kInt2t32, kInt2d32);
  kivi.recent = 128;
  PlanCache whole(kSmall, n, kivi), steps(kSmall, n, kivi);
  CHECK(max_abs_diff(one_step(whole, r, n), token_by_token(steps, r, n)) < 1e-5);
  CHECK(whole.stored_bytes() == steps.stored_bytes());

  const hnf::baselines::H2oOptions options{.keep = 24, .recent = 12};
  H2oCache h_whole(kSmall, n, options), h_steps(kSmall, n, options);
  CHECK(max_abs_diff(one_step(h_whole, r, n), token_by_token(h_steps, r, n)) == 0.0);
  auto a = h_whole.kept_positions(0, 0), b = h_steps.kept_positions(0, 0);
  std::sort(a.begin(), a.end());
  std::sort(b.begin(), b.end());
  CHECK(a == b);
}

TEST_CASE("H2O keeps the recent window and the most attended older position, evicts the rest") {
  const std::size_t n = 40;
  Rows r = random_rows(n, 4);
  // Position 3's key points along every query: it draws most of the attention.
  for (std::size_t c = 0; c < kD; ++c) r.k[3 * kD + c] = 0.0f;
  for (std::size_t h = 0; h < 2; ++h)
    for (std::size_t p = 0; p < n; ++p) r.q[(h * n + p) * kD + 5] = 4.0f;
  r.k[3 * kD + 5] = 4.0f;
  auto meter = std::make_shared<hnf::baselines::StorageMeter>();
  {
    H2oCache cache(kSmall, n, {.keep = 6, .recent = 3}, meter);
    (void)one_step(cache, r, n);
    auto kept = cache.kept_positions(0, 0);
    std::sort(kept.begin(), kept.end());
    REQUIRE(kept.size() == 6);
    CHECK(std::count(kept.begin(), kept.end(), 3) == 1);
    CHECK(kept[3] == 37);
    CHECK(kept[4] == 38);
    CHECK(kept[5] == 39);
  }
  // 6 kept positions x (K and V rows in fp16 + one fp32 score) over 2 x 40 x 32 elements.
  CHECK(meter->bits_per_element() == doctest::Approx(6.0 * (4 * 32 + 4) * 8 / (2 * 40 * 32)).epsilon(1e-15));
  CHECK(meter->caches == 1);

  // With room for every position H2O is the fp16 cache.
  PlanCache full(kSmall, n, uniform(kFp16, kFp16));
  H2oCache roomy(kSmall, n, {.keep = 64, .recent = 8});
  CHECK(max_abs_diff(one_step(full, r, n), one_step(roomy, r, n)) < 1e-5);
  CHECK_THROWS_AS(H2oCache(kSmall, n, {.keep = 4, .recent = 4}), hnf::proofs::Error);
}

TEST_CASE("plan cache: plans it cannot store are bad input") {
  const Rows r = random_rows(64, 5);
  std::vector<float> out(2 * 64 * kD);
  PlanCache value_per_channel(kSmall, 64, uniform(kInt2d32, kInt2t32));
  CHECK_THROWS_AS(value_per_channel.append(0, r.k.data(), r.v.data(), 64), hnf::proofs::Error);
  StoragePlan mixed;
  mixed.key_format = [](std::int64_t, std::int64_t, std::int64_t t) { return t == 40 ? kInt4d32 : kInt2t32; };
  mixed.value_format = [](std::int64_t, std::int64_t, std::int64_t) { return kInt2d32; };
  PlanCache split_group(kSmall, 64, mixed);
  CHECK_THROWS_AS(split_group.append(0, r.k.data(), r.v.data(), 64), hnf::proofs::Error);
}

TEST_CASE("a certified map: PlanCache and the runtime's MixedKvCache hold the same bytes and agree") {
  const std::string source = HNF_SOURCE_DIR;
  const hnf::proofs::CheckOptions check = hnf::testing::attested_fixture_options();
  auto report = hnf::proofs::check_certificate(source + "/tests/fixtures/hnf-llama-4m-128.cert.json", check,
                                               std::string("hnf-verify ") + HNF_TOOL_VERSION);
  REQUIRE(report.certified.has_value());
  auto certified = std::make_shared<const hnf::proofs::CertifiedPrecisionMap>(*report.certified);
  auto plan = hnf::baselines::map_method("map", "curvature", "", std::nullopt, certified->map());
  auto runtime = hnf::baselines::certified_method("certified", "", certified);
  const KvCacheShape shape{.num_layers = 4, .num_heads = 4, .num_kv_heads = 2, .head_dim = 64};
  const std::int64_t n = 120;  // not a multiple of the 16-position pages: the last page is staged
  std::mt19937 rng(6);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> k(static_cast<std::size_t>(2 * n * 64)), v(k.size()), q(2 * k.size());
  double worst = 0.0;
  {
    auto a = plan.make(shape, n);
    auto b = runtime.make(shape, n);
    std::vector<float> out_a(q.size()), out_b(q.size());
    for (std::int64_t layer = 0; layer < 4; ++layer) {
      for (auto& x : k) x = normal(rng);
      for (auto& x : v) x = normal(rng);
      for (auto& x : q) x = normal(rng);
      a->append(layer, k.data(), v.data(), n);
      b->append(layer, k.data(), v.data(), n);
      a->attend(layer, q.data(), n, out_a.data());
      b->attend(layer, q.data(), n, out_b.data());
      worst = std::max(worst, max_abs_diff(out_a, out_b));
    }
  }
  CHECK(worst < 1e-5);
  CHECK(plan.meter->elements == runtime.meter->elements);
  CHECK(plan.meter->bytes == doctest::Approx(runtime.meter->bytes).epsilon(1e-12));
  CHECK(plan.meter->bits_per_element() > 2.0);
  CHECK(plan.meter->bits_per_element() < 16.0);
}

TEST_CASE("methods: names, budgets and the H2O keep count") {
  CHECK(hnf::baselines::uniform_method(4, 64).name == "int4-d64");
  CHECK(hnf::baselines::kivi_method(2).name == "KIVI-2");
  const auto h2o = hnf::baselines::h2o_method(3.0, 1024, 64);
  CHECK(h2o.budget_bits == 3.0);
  // floor(3 / 8 x 128 x 1024 / 260) = floor(189.04) = 189 kept, 94 of them recent.
  CHECK(h2o.setting.find("keep 189 of 1024") != std::string::npos);
  CHECK(h2o.setting.find("95 heavy hitters, 94 recent") != std::string::npos);
  CHECK_THROWS_AS(hnf::baselines::h2o_method(0.01, 64, 64), hnf::proofs::Error);
}
