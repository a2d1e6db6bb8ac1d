#include <doctest/doctest.h>

#include <cmath>
#include <string>
#include <vector>

#include "hnf/proofs/error.h"
#include "hnf/runtime/dense_kv_cache.h"

using hnf::runtime::DenseKvCache;
using hnf::runtime::KvCacheShape;

namespace {
std::vector<float> row(std::span<const float> s) { return {s.begin(), s.end()}; }
}  // namespace

TEST_CASE("append stores rows per layer and head and refuses past capacity without writing") {
  DenseKvCache cache({.num_layers = 2, .num_heads = 2, .num_kv_heads = 2, .head_dim = 3}, 2);
  // k, v [kv_heads = 2, n = 1, head_dim = 3]
  const std::vector<float> k0{1, 2, 3, 4, 5, 6}, v0{-1, -2, -3, -4, -5, -6};
  cache.append(0, k0.data(), v0.data(), 1);
  CHECK(cache.size() == 0);  // the step is complete only when the last layer has appended
  CHECK(cache.layer_size(0) == 1);
  cache.append(1, v0.data(), k0.data(), 1);
  CHECK(cache.size() == 1);
  cache.append(0, v0.data(), k0.data(), 1);
  cache.append(1, k0.data(), v0.data(), 1);
  CHECK(cache.size() == 2);
  CHECK(row(cache.key(0, 1, 0)) == std::vector<float>{4, 5, 6});
  CHECK(row(cache.value(0, 0, 1)) == std::vector<float>{1, 2, 3});
  CHECK(row(cache.key(1, 0, 0)) == std::vector<float>{-1, -2, -3});
  try {
    cache.append(0, k0.data(), v0.data(), 1);
    FAIL("append past capacity succeeded");
  } catch (const hnf::proofs::Error& e) {
    CHECK(e.kind() == hnf::proofs::ErrorKind::kBadInput);
    CHECK(std::string(e.what()) == "kv cache: append of 1 positions to 2 cached exceeds capacity 2");
  }
  CHECK(cache.size() == 2);
  CHECK(cache.layer_size(0) == 2);
  CHECK(row(cache.key(0, 1, 0)) == std::vector<float>{4, 5, 6});
  CHECK_THROWS_AS(DenseKvCache({.num_layers = 1, .num_heads = 2, .num_kv_heads = 0, .head_dim = 3}, 4),
                  hnf::proofs::Error);
  CHECK_THROWS_AS(DenseKvCache({.num_layers = 1, .num_heads = 3, .num_kv_heads = 2, .head_dim = 3}, 4),
                  hnf::proofs::Error);
}

TEST_CASE("a multi-position append lays positions out per head") {
  DenseKvCache cache({.num_layers = 1, .num_heads = 2, .num_kv_heads = 2, .head_dim = 2}, 4);
  // k [kv_heads = 2, n = 2, head_dim = 2]
  const std::vector<float> k{1, 2, 3, 4, 5, 6, 7, 8};
  cache.append(0, k.data(), k.data(), 2);
  CHECK(cache.size() == 2);
  CHECK(row(cache.key(0, 0, 1)) == std::vector<float>{3, 4});
  CHECK(row(cache.key(0, 1, 0)) == std::vector<float>{5, 6});
  CHECK_THROWS_AS(cache.append(0, k.data(), k.data(), 3), hnf::proofs::Error);
  CHECK(cache.size() == 2);
}

TEST_CASE("appends out of protocol order are internal errors") {
  DenseKvCache cache({.num_layers = 2, .num_heads = 1, .num_kv_heads = 1, .head_dim = 1}, 4);
  const std::vector<float> x{1, 2};
  auto kind_of = [](auto&& call) {
    try {
      call();
    } catch (const hnf::proofs::Error& e) {
      return e.kind();
    }
    FAIL("no error");
    return hnf::proofs::ErrorKind::kBadInput;
  };
  CHECK(kind_of([&] { cache.append(1, x.data(), x.data(), 1); }) == hnf::proofs::ErrorKind::kInternal);
  cache.append(0, x.data(), x.data(), 2);
  CHECK(kind_of([&] { cache.append(0, x.data(), x.data(), 1); }) == hnf::proofs::ErrorKind::kInternal);
  CHECK(kind_of([&] { cache.append(1, x.data(), x.data(), 1); }) == hnf::proofs::ErrorKind::kInternal);
}

TEST_CASE("attention matches softmax attention computed by hand") {
  DenseKvCache cache({.num_layers = 1, .num_heads = 1, .num_kv_heads = 1, .head_dim = 2}, 3);
  // k, v [1, n = 3, 2]
  const std::vector<float> k{1, 0, 0, 1, 1, 1}, v{1, 2, 3, -1, 0, 5};
  cache.append(0, k.data(), v.data(), 3);
  // The last query (position 2) sees all three positions: scores q.k / sqrt(2).
  const std::vector<float> q{2, -1};
  const double s[3] = {2 / std::sqrt(2.0), -1 / std::sqrt(2.0), 1 / std::sqrt(2.0)};
  const double z = std::exp(s[0]) + std::exp(s[1]) + std::exp(s[2]);
  const double w[3] = {std::exp(s[0]) / z, std::exp(s[1]) / z, std::exp(s[2]) / z};
  std::vector<float> out(2);
  cache.attend(0, q.data(), 1, out.data());
  CHECK(out[0] == doctest::Approx(w[0] * 1 + w[1] * 3 + w[2] * 0).epsilon(1e-6));
  CHECK(out[1] == doctest::Approx(w[0] * 2 + w[1] * -1 + w[2] * 5).epsilon(1e-6));
}

TEST_CASE("attention is causal: query i sees positions 0..first+i only") {
  DenseKvCache cache({.num_layers = 1, .num_heads = 1, .num_kv_heads = 1, .head_dim = 1}, 4);
  const std::vector<float> k0{0}, v0{10};
  cache.append(0, k0.data(), v0.data(), 1);
  // Three new positions with equal keys: uniform weights over what each query may see.
  const std::vector<float> k{0, 0, 0}, v{20, 30, 40};
  cache.append(0, k.data(), v.data(), 3);
  const std::vector<float> q{1, 1, 1};  // [1, n = 3, 1]
  std::vector<float> out(3);
  cache.attend(0, q.data(), 3, out.data());
  CHECK(out[0] == doctest::Approx(15.0));  // positions 0, 1
  CHECK(out[1] == doctest::Approx(20.0));  // positions 0..2
  CHECK(out[2] == doctest::Approx(25.0));  // positions 0..3
}

TEST_CASE("grouped-query attention: query head h reads kv head h / (heads / kv_heads)") {
  DenseKvCache cache({.num_layers = 1, .num_heads = 4, .num_kv_heads = 2, .head_dim = 1}, 2);
  // Keys pick position 1 for kv head 0 and position 0 for kv head 1 under a large query.
  const std::vector<float> k{-50, 50, 50, -50}, v{1, 2, 3, 4};  // [kv_heads = 2, n = 2, 1]
  cache.append(0, k.data(), v.data(), 2);
  const std::vector<float> q{1, 1, 1, 1};  // [heads = 4, n = 1, 1]
  std::vector<float> out(4);
  cache.attend(0, q.data(), 1, out.data());
  CHECK(out == std::vector<float>{2, 2, 3, 3});
}

TEST_CASE("attention is stable for large scores") {
  DenseKvCache cache({.num_layers = 1, .num_heads = 1, .num_kv_heads = 1, .head_dim = 1}, 2);
  const std::vector<float> k{1000, -1000}, v{7, -7};
  cache.append(0, k.data(), v.data(), 2);
  const std::vector<float> q{100};
  std::vector<float> out(1);
  cache.attend(0, q.data(), 1, out.data());  // scores +-1e5: naive exp overflows
  CHECK(out[0] == 7.0f);
}
