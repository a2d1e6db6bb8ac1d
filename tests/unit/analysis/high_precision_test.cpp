#include <doctest/doctest.h>

#include <bit>
#include <chrono>
#include <cstdint>
#include <cmath>
#include <random>
#include <utility>
#include <vector>

#include "hnf/analysis/high_precision.h"
#include "hnf/proofs/error.h"

using hnf::analysis::attention_difference_norm_mpfr;
using hnf::analysis::attention_output_mpfr;
using hnf::analysis::MpfrFloat;

namespace {

struct Head {
  std::vector<double> q, keys, values;
};

Head random_head(std::mt19937_64& rng, std::size_t num_keys, std::size_t d, double scale) {
  std::normal_distribution<double> normal(0.0, 1.0);
  Head h;
  for (std::size_t i = 0; i < d; ++i) h.q.push_back(scale * normal(rng));
  for (std::size_t i = 0; i < num_keys * d; ++i) h.keys.push_back(scale * normal(rng));
  for (std::size_t i = 0; i < num_keys * d; ++i) h.values.push_back(normal(rng));
  return h;
}

// The same attention in long double (64-bit mantissa): close to, but less accurate than, MPFR.
std::vector<long double> attention_long_double(const Head& h, std::size_t d) {
  const std::size_t n = h.keys.size() / d;
  std::vector<long double> s(n);
  long double m = -INFINITY;
  for (std::size_t t = 0; t < n; ++t) {
    long double acc = 0;
    for (std::size_t i = 0; i < d; ++i) acc += static_cast<long double>(h.q[i]) * h.keys[t * d + i];
    s[t] = acc / std::sqrt(static_cast<long double>(d));
    m = std::max(m, s[t]);
  }
  long double z = 0;
  std::vector<long double> o(d, 0);
  for (std::size_t t = 0; t < n; ++t) {
    const long double e = std::exp(s[t] - m);
    z += e;
    for (std::size_t j = 0; j < d; ++j) o[j] += e * h.values[t * d + j];
  }
  for (auto& x : o) x /= z;
  return o;
}

// The same attention, written the plain way (mpfr_set_d, mpfr_mul, mpfr_add, one variable per
// step) at 512 bits: an independent check of the exact-product fast paths of the library.
std::vector<double> attention_plain_mpfr(const Head& h, std::size_t d) {
  constexpr int kBits = 512;
  const std::size_t n = h.keys.size() / d;
  MpfrFloat a(kBits), b(kBits), acc(kBits), m(kBits), z(kBits), scale(kBits);
  std::vector<MpfrFloat> s;
  for (std::size_t t = 0; t < n; ++t) s.emplace_back(kBits);
  std::vector<MpfrFloat> o;
  for (std::size_t j = 0; j < d; ++j) o.emplace_back(kBits);
  mpfr_set_ui(scale.get(), static_cast<unsigned long>(d), MPFR_RNDN);
  mpfr_sqrt(scale.get(), scale.get(), MPFR_RNDN);
  for (std::size_t t = 0; t < n; ++t) {
    mpfr_set_zero(acc.get(), 1);
    for (std::size_t i = 0; i < d; ++i) {
      mpfr_set_d(a.get(), h.q[i], MPFR_RNDN);
      mpfr_set_d(b.get(), h.keys[t * d + i], MPFR_RNDN);
      mpfr_mul(a.get(), a.get(), b.get(), MPFR_RNDN);
      mpfr_add(acc.get(), acc.get(), a.get(), MPFR_RNDN);
    }
    mpfr_div(s[t].get(), acc.get(), scale.get(), MPFR_RNDN);
    if (t == 0 || mpfr_greater_p(s[t].get(), m.get())) mpfr_set(m.get(), s[t].get(), MPFR_RNDN);
  }
  for (std::size_t t = 0; t < n; ++t) {
    mpfr_sub(s[t].get(), s[t].get(), m.get(), MPFR_RNDN);
    mpfr_exp(s[t].get(), s[t].get(), MPFR_RNDN);
    mpfr_add(z.get(), z.get(), s[t].get(), MPFR_RNDN);
    for (std::size_t j = 0; j < d; ++j) {
      mpfr_set_d(b.get(), h.values[t * d + j], MPFR_RNDN);
      mpfr_mul(a.get(), s[t].get(), b.get(), MPFR_RNDN);
      mpfr_add(o[j].get(), o[j].get(), a.get(), MPFR_RNDN);
    }
  }
  std::vector<double> out;
  for (std::size_t j = 0; j < d; ++j) {
    mpfr_div(o[j].get(), o[j].get(), z.get(), MPFR_RNDN);
    out.push_back(o[j].to_double());
  }
  return out;
}

// A double of random sign over every binade, subnormals and zeros included.
double any_double(std::mt19937_64& rng) {
  const std::uint64_t bits = rng();
  switch (bits % 6) {
    case 0: return std::bit_cast<double>(bits >> (12 + bits % 52));                        // subnormal, down to 2^-1074
    case 1: return (bits & 64) != 0 ? 0.0 : -0.0;
    case 2: return std::ldexp(static_cast<double>(static_cast<std::int32_t>(bits >> 32)), -31);  // moderate
    default: {
      const double x = std::bit_cast<double>(bits);
      return std::isfinite(x) ? x : 1.5;
    }
  }
}

}  // namespace

TEST_CASE("MpfrFloat owns one MPFR number: exact copies, valid moved-from state") {
  MpfrFloat a(128, 0.1);
  CHECK(a.precision() == 128);
  CHECK(a.to_double() == 0.1);  // a double is stored exactly
  MpfrFloat b(a);
  CHECK(mpfr_equal_p(a.get(), b.get()) != 0);
  MpfrFloat c(std::move(b));
  CHECK(c.to_double() == 0.1);
  CHECK(mpfr_nan_p(b.get()) != 0);  // NOLINT(bugprone-use-after-move): documented state
  b = c;
  CHECK(b.to_double() == 0.1);
  MpfrFloat third(256);
  mpfr_set_ui(third.get(), 1, MPFR_RNDN);
  mpfr_div_ui(third.get(), third.get(), 3, MPFR_RNDN);
  CHECK(third.to_double(MPFR_RNDD) < third.to_double(MPFR_RNDU));
  CHECK(third.to_double(MPFR_RNDN) == 1.0 / 3.0);
  a = std::move(third);
  CHECK(a.precision() == 256);
}

TEST_CASE("attention_output_mpfr: exact special cases") {
  SUBCASE("one key returns its value row") {
    const std::vector<double> q = {1.0, -2.0};
    const std::vector<double> k = {3.0, 4.0};
    const std::vector<double> v = {0.1, -7.5};
    CHECK(attention_output_mpfr(q, k, v, 2) == v);
  }
  SUBCASE("a zero query averages the values uniformly") {
    const std::vector<double> q = {0.0, 0.0, 0.0};
    const std::vector<double> k = {1, 2, 3, 4, 5, 6, 7, 8, 9};
    const std::vector<double> v = {0.1, 0.2, 0.3, 1.0, 2.0, 3.0, -1.0, 5.0, 0.7};
    const auto o = attention_output_mpfr(q, k, v, 3);
    CHECK(o[0] == doctest::Approx(0.1 / 3).epsilon(1e-15));
    CHECK(o[1] == doctest::Approx(7.2 / 3).epsilon(1e-15));
    CHECK(o[2] == doctest::Approx(4.0 / 3).epsilon(1e-15));
  }
  SUBCASE("a dominant score selects its value row") {
    const std::vector<double> q = {1000.0};
    const std::vector<double> k = {1.0, 2.0, 0.5};  // scores 1000, 2000, 500
    const std::vector<double> v = {5.0, 6.0, 7.0};
    CHECK(attention_output_mpfr(q, k, v, 1)[0] == 6.0);
  }
}

TEST_CASE("attention_output_mpfr agrees with a long double evaluation and across precisions") {
  std::mt19937_64 rng(7);
  double worst = 0.0;
  for (int trial = 0; trial < 200; ++trial) {
    const auto n = static_cast<std::size_t>(1 + trial % 50);
    const auto d = static_cast<std::size_t>(1 + trial % 16);
    const Head h = random_head(rng, n, d, trial % 3 == 0 ? 4.0 : 1.0);
    const auto o = attention_output_mpfr(h.q, h.keys, h.values, d);
    const auto o256 = attention_output_mpfr(h.q, h.keys, h.values, d, 256);
    const auto ref = attention_long_double(h, d);
    REQUIRE(o.size() == d);
    for (std::size_t j = 0; j < d; ++j) {
      const double err = std::fabs(static_cast<double>(static_cast<long double>(o[j]) - ref[j]));
      worst = std::max(worst, err);
      CHECK(err <= 1e-14);
      // 128 vs 256 bits: the same double or (at a rounding boundary) a neighbour.
      CHECK(std::fabs(o[j] - o256[j]) <= 2 * std::fabs(std::nextafter(o[j], INFINITY) - o[j]));
    }
  }
  MESSAGE("worst |MPFR - long double| = " << worst);
}

TEST_CASE("attention_difference_norm_mpfr takes the difference before rounding") {
  SUBCASE("identical inputs give exactly 0") {
    std::mt19937_64 rng(3);
    const Head h = random_head(rng, 20, 8, 1.0);
    CHECK(attention_difference_norm_mpfr(h.q, h.keys, h.values, h.keys, h.values, 8) == 0.0);
  }
  SUBCASE("a perturbation below double resolution of o is still seen") {
    // d = 1, q = 1, keys 0 and delta: o(delta) - o(0) = w0 w1 (v0 - v1) delta + O(delta^2) with
    // w0 = w1 = 1/2. For delta = 1e-20 the two outputs round to the same double.
    const double delta = 1e-20;
    const std::vector<double> q = {1.0};
    const std::vector<double> v = {1.0, 3.0};
    const std::vector<double> ka = {0.0, 0.0};
    const std::vector<double> kb = {delta, 0.0};
    const double norm = attention_difference_norm_mpfr(q, ka, v, kb, v, 1);
    CHECK(norm == doctest::Approx(0.5 * delta).epsilon(1e-12));
    CHECK(attention_output_mpfr(q, ka, v, 1)[0] == attention_output_mpfr(q, kb, v, 1)[0]);
  }
  SUBCASE("agrees with the norm of the difference of the rounded outputs when that is large") {
    std::mt19937_64 rng(5);
    for (int trial = 0; trial < 20; ++trial) {
      const Head a = random_head(rng, 30, 8, 1.0);
      const Head b = random_head(rng, 25, 8, 1.0);  // the number of keys may differ
      const auto oa = attention_output_mpfr(a.q, a.keys, a.values, 8);
      const auto ob = attention_output_mpfr(a.q, b.keys, b.values, 8);
      double sq = 0.0;
      for (std::size_t j = 0; j < 8; ++j) sq += (oa[j] - ob[j]) * (oa[j] - ob[j]);
      CHECK(attention_difference_norm_mpfr(a.q, a.keys, a.values, b.keys, b.values, 8) ==
            doctest::Approx(std::sqrt(sq)).epsilon(1e-12));
    }
  }
}

TEST_CASE("attention MPFR reference: 1000 keys x d = 64 in a few milliseconds") {
  std::mt19937_64 rng(9);
  const Head a = random_head(rng, 1000, 64, 1.0);
  Head b = a;
  b.values[17] += 1e-3;
  const auto start = std::chrono::steady_clock::now();
  const auto o = attention_output_mpfr(a.q, a.keys, a.values, 64);
  const auto mid = std::chrono::steady_clock::now();
  const double norm = attention_difference_norm_mpfr(a.q, a.keys, a.values, b.keys, b.values, 64);
  const auto end = std::chrono::steady_clock::now();
  CHECK(o.size() == 64);
  CHECK(norm > 0.0);
  MESSAGE("attention_output_mpfr: " << std::chrono::duration<double, std::milli>(mid - start).count()
                                    << " ms; attention_difference_norm_mpfr: "
                                    << std::chrono::duration<double, std::milli>(end - mid).count() << " ms");
}

TEST_CASE("attention MPFR reference: shape and precision preconditions throw") {
  const std::vector<double> q = {1.0, 2.0};
  const std::vector<double> k = {1.0, 2.0, 3.0, 4.0};
  const std::vector<double> v = {1.0, 2.0, 3.0, 4.0};
  const std::vector<double> short_v = {1.0, 2.0};
  const std::vector<double> odd = {1.0, 2.0, 3.0};
  CHECK_THROWS_AS((void)attention_output_mpfr(q, k, short_v, 2), hnf::proofs::Error);
  CHECK_THROWS_AS((void)attention_output_mpfr(q, odd, odd, 2), hnf::proofs::Error);
  CHECK_THROWS_AS((void)attention_output_mpfr(q, k, v, 3), hnf::proofs::Error);
  CHECK_THROWS_AS((void)attention_output_mpfr(q, {}, {}, 2), hnf::proofs::Error);
  CHECK_THROWS_AS((void)attention_output_mpfr(q, k, v, 2, 24), hnf::proofs::Error);
  const std::vector<double> bad = {1.0, NAN, 3.0, 4.0};
  CHECK_THROWS_AS((void)attention_output_mpfr(q, bad, v, 2), hnf::proofs::Error);
  CHECK_THROWS_AS((void)attention_difference_norm_mpfr(q, k, v, k, short_v, 2), hnf::proofs::Error);
}

TEST_CASE("attention_output_mpfr matches a plain 512-bit MPFR evaluation on extreme inputs") {
  // Subnormal, huge and zero entries, exponents across the whole double range: the exact-product
  // fast paths must agree with mpfr_set_d / mpfr_mul. Both are far more accurate than a double, so
  // the rounded outputs agree to the last bit except at an exact rounding boundary (1 ulp).
  std::mt19937_64 rng(11);
  long mismatches = 0;
  long compared = 0;
  for (int trial = 0; trial < 300; ++trial) {
    const auto n = static_cast<std::size_t>(1 + trial % 40);
    const auto d = static_cast<std::size_t>(1 + trial % 9);
    Head h;
    const bool extreme_keys = trial % 2 == 0;
    std::normal_distribution<double> normal(0.0, 1.0);
    for (std::size_t i = 0; i < d; ++i) h.q.push_back(extreme_keys ? any_double(rng) : normal(rng));
    for (std::size_t i = 0; i < n * d; ++i) h.keys.push_back(extreme_keys ? any_double(rng) : normal(rng));
    // Values: any binade mixed, or all subnormal, or all of one random binade (so that tiny and
    // huge values are not swamped by the others).
    const int value_kind = trial % 3;
    const int binade = std::uniform_int_distribution<int>(-1070, 1020)(rng);
    for (std::size_t i = 0; i < n * d; ++i) {
      h.values.push_back(value_kind == 0   ? any_double(rng)
                         : value_kind == 1 ? std::bit_cast<double>(rng() >> (12 + trial % 52))
                                           : std::ldexp(normal(rng), binade));
    }
    const auto fast = attention_output_mpfr(h.q, h.keys, h.values, d);
    const auto plain = attention_plain_mpfr(h, d);
    for (std::size_t j = 0; j < d; ++j) {
      ++compared;
      const bool same = fast[j] == plain[j] || std::nextafter(fast[j], plain[j]) == plain[j];
      if (!same) {
        ++mismatches;
        MESSAGE("trial " << trial << " j " << j << ": " << fast[j] << " vs " << plain[j]);
      }
    }
  }
  CHECK(compared > 1000);
  CHECK(mismatches == 0);
}
