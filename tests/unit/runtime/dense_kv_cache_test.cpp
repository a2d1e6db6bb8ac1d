#include <doctest/doctest.h>

#include <cmath>

#include "hnf/proofs/error.h"
#include "hnf/runtime/dense_kv_cache.h"

using hnf::runtime::DenseKvCache;

TEST_CASE("append stores rows per head and refuses past capacity without writing") {
  DenseKvCache cache(2, 3, 2);
  const std::vector<float> k0{1, 2, 3, 4, 5, 6}, v0{-1, -2, -3, -4, -5, -6};
  cache.append(k0, v0);
  cache.append(v0, k0);
  CHECK(cache.size() == 2);
  CHECK(std::vector<float>(cache.key(1, 0).begin(), cache.key(1, 0).end()) == std::vector<float>{4, 5, 6});
  CHECK(std::vector<float>(cache.value(0, 1).begin(), cache.value(0, 1).end()) == std::vector<float>{1, 2, 3});
  try {
    cache.append(k0, v0);
    FAIL("append past capacity succeeded");
  } catch (const hnf::proofs::Error& e) {
    CHECK(std::string(e.what()) == "kv cache: append past capacity 2");
  }
  CHECK(cache.size() == 2);
  CHECK_THROWS_AS(DenseKvCache(2, 3, 4).append(std::vector<float>(5), v0), hnf::proofs::Error);
  CHECK_THROWS_AS(DenseKvCache(0, 3, 4), hnf::proofs::Error);
}

TEST_CASE("scalar attention matches softmax attention computed by hand") {
  DenseKvCache cache(1, 2, 3);
  cache.append(std::vector<float>{1, 0}, std::vector<float>{1, 2});
  cache.append(std::vector<float>{0, 1}, std::vector<float>{3, -1});
  cache.append(std::vector<float>{1, 1}, std::vector<float>{0, 5});
  const std::vector<float> q{2, -1};
  // scores q.k / sqrt(2): 2/sqrt2, -1/sqrt2, 1/sqrt2
  const double s[3] = {2 / std::sqrt(2.0), -1 / std::sqrt(2.0), 1 / std::sqrt(2.0)};
  const double z = std::exp(s[0]) + std::exp(s[1]) + std::exp(s[2]);
  const double w[3] = {std::exp(s[0]) / z, std::exp(s[1]) / z, std::exp(s[2]) / z};
  std::vector<float> out(2);
  cache.attend(0, q, out);
  CHECK(out[0] == doctest::Approx(w[0] * 1 + w[1] * 3 + w[2] * 0).epsilon(1e-6));
  CHECK(out[1] == doctest::Approx(w[0] * 2 + w[1] * -1 + w[2] * 5).epsilon(1e-6));
}

TEST_CASE("attention is stable for large scores") {
  DenseKvCache cache(1, 1, 2);
  cache.append(std::vector<float>{1000}, std::vector<float>{7});
  cache.append(std::vector<float>{-1000}, std::vector<float>{-7});
  std::vector<float> out(1);
  cache.attend(0, std::vector<float>{100}, out);  // scores +-1e5: naive exp overflows
  CHECK(out[0] == 7.0f);
}
