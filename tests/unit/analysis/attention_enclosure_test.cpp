// Soundness and sharpness of the attention enclosures against MPFR references at 256 bits.
//
// Comparing a double bound with an MPFR value rounded to nearest is valid: rounding to
// nearest is monotone and leaves doubles fixed, so an exact real x in [lo, hi] (lo, hi doubles)
// always rounds into [lo, hi]. At 256 bits the MPFR value is within ~2^-250 (relative) of the
// exact one, so it could only fall one ulp outside when the exact value sits within 2^-250 of a
// rounding midpoint next to an endpoint: no random instance here comes near that.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "hnf/analysis/attention_enclosure.h"
#include "hnf/analysis/high_precision.h"
#include "hnf/analysis/interval.h"
#include "hnf/proofs/error.h"

using hnf::analysis::attention_difference_norm_mpfr;
using hnf::analysis::attention_output_mpfr;
using hnf::analysis::difference_norm_down;
using hnf::analysis::difference_norm_up;
using hnf::analysis::distance_up;
using hnf::analysis::enclose_attention_output;
using hnf::analysis::enclose_scores;
using hnf::analysis::enclose_softmax_output;
using hnf::analysis::enclose_softmax_weights;
using hnf::analysis::gamma_up;
using hnf::analysis::max_width_up;
using hnf::analysis::MpfrFloat;
using hnf::analysis::OutputEnclosure;
using hnf::analysis::row_norms_up;

namespace {

constexpr int kBits = 256;

enum class Kind { kNormal, kUniformFloat, kScoreSpread, kSpike, kHeavyValues, kDyadic, kEqualKeys, kCount };

const char* kind_name(Kind k) {
  switch (k) {
    case Kind::kNormal: return "normal";
    case Kind::kUniformFloat: return "uniform float";
    case Kind::kScoreSpread: return "score spread up to +-600";
    case Kind::kSpike: return "attention spike";
    case Kind::kHeavyValues: return "heavy-tailed values";
    case Kind::kDyadic: return "dyadic (quantized-like)";
    case Kind::kEqualKeys: return "equal keys";
    default: return "?";
  }
}

// Ordinary inputs: moderate scores and values, where the enclosures must be sharp.
bool ordinary(Kind k) { return k == Kind::kNormal || k == Kind::kUniformFloat || k == Kind::kDyadic; }

struct Instance {
  Kind kind = Kind::kNormal;
  std::size_t d = 1, n = 1;
  std::vector<double> q, keys, values;
};

Instance make_instance(std::mt19937_64& rng, std::size_t index) {
  static constexpr std::size_t kDims[] = {1, 4, 16, 64};
  Instance in;
  in.d = kDims[index % 4];
  in.kind = static_cast<Kind>((index / 4) % static_cast<std::size_t>(Kind::kCount));
  in.n = std::uniform_int_distribution<std::size_t>(1, 300)(rng);
  const std::size_t d = in.d, n = in.n;
  std::normal_distribution<double> normal(0.0, 1.0);
  std::uniform_real_distribution<double> uniform(-1.0, 1.0);
  in.q.resize(d);
  in.keys.resize(n * d);
  in.values.resize(n * d);
  auto fill_normal = [&](std::vector<double>& x) {
    for (double& e : x) e = normal(rng);
  };
  fill_normal(in.q);
  fill_normal(in.keys);
  fill_normal(in.values);
  auto scores = [&] {
    std::vector<double> s(n);
    for (std::size_t t = 0; t < n; ++t) {
      double acc = 0.0;
      for (std::size_t i = 0; i < d; ++i) acc += in.q[i] * in.keys[t * d + i];
      s[t] = acc / std::sqrt(static_cast<double>(d));
    }
    return s;
  };
  switch (in.kind) {
    case Kind::kNormal: break;
    case Kind::kUniformFloat:
      for (auto* x : {&in.q, &in.keys, &in.values})
        for (double& e : *x) e = static_cast<float>(uniform(rng) * 3.0);
      break;
    case Kind::kScoreSpread: {
      // Scale q so the largest |score| is between 50 and 600.
      const auto s = scores();
      double m = 0.0;
      for (double x : s) m = std::max(m, std::fabs(x));
      if (m > 0.0) {
        const double target = std::uniform_real_distribution<double>(50.0, 600.0)(rng);
        for (double& e : in.q) e *= target / m;
      }
      break;
    }
    case Kind::kSpike: {
      // One key along q with a score far above the others (30 to 600), the rest ordinary.
      const std::size_t spike = std::uniform_int_distribution<std::size_t>(0, n - 1)(rng);
      double qq = 0.0;
      for (double x : in.q) qq += x * x;
      const double target = std::uniform_real_distribution<double>(30.0, 600.0)(rng);
      const double c = qq > 0.0 ? target * std::sqrt(static_cast<double>(d)) / qq : 0.0;
      for (std::size_t i = 0; i < d; ++i) in.keys[spike * d + i] = c * in.q[i];
      break;
    }
    case Kind::kHeavyValues:
      // Rows scaled by 10^[-6, 4], some exact zeros and one negative outlier.
      for (std::size_t t = 0; t < n; ++t) {
        const double scale = std::pow(10.0, std::uniform_real_distribution<double>(-6.0, 4.0)(rng));
        for (std::size_t i = 0; i < d; ++i) {
          double& v = in.values[t * d + i];
          v = (t % 7 == 3) ? 0.0 : v * scale;
        }
      }
      in.values[0] = -65504.0;
      break;
    case Kind::kDyadic:
      // Multiples of 2^-10 in [-1, 1] (q, k) and [-8, 8] (v), like dequantized codes.
      for (double& e : in.q) e = std::ldexp(std::round(uniform(rng) * 1024.0), -10);
      for (double& e : in.keys) e = std::ldexp(std::round(uniform(rng) * 1024.0), -10);
      for (double& e : in.values) e = std::ldexp(std::round(uniform(rng) * 8192.0), -10);
      break;
    case Kind::kEqualKeys:
      // Every key equal: uniform weights, the output is the mean of the values.
      for (std::size_t t = 1; t < n; ++t)
        for (std::size_t i = 0; i < d; ++i) in.keys[t * d + i] = in.keys[i];
      break;
    default: break;
  }
  return in;
}

// Scores q.k_t / sqrt(d) in MPFR: exact products (106 bits), sums and the scaling at 256 bits.
std::vector<MpfrFloat> mpfr_scores(const std::vector<double>& q, const std::vector<double>& keys, std::size_t d,
                                   std::size_t n) {
  std::vector<MpfrFloat> s;
  MpfrFloat a(kBits), scale(kBits);
  mpfr_set_ui(scale.get(), static_cast<unsigned long>(d), MPFR_RNDN);
  mpfr_rec_sqrt(scale.get(), scale.get(), MPFR_RNDN);
  for (std::size_t t = 0; t < n; ++t) {
    s.emplace_back(kBits);
    for (std::size_t i = 0; i < d; ++i) {
      mpfr_set_d(a.get(), q[i], MPFR_RNDN);
      mpfr_mul_d(a.get(), a.get(), keys[t * d + i], MPFR_RNDN);
      mpfr_add(s.back().get(), s.back().get(), a.get(), MPFR_RNDN);
    }
    mpfr_mul(s.back().get(), s.back().get(), scale.get(), MPFR_RNDN);
  }
  return s;
}

// softmax(s) in MPFR at 256 bits, rounded to nearest doubles.
std::vector<double> mpfr_softmax(std::vector<MpfrFloat> s) {
  MpfrFloat m(kBits), z(kBits);
  mpfr_set(m.get(), s.front().get(), MPFR_RNDN);
  for (const auto& x : s) mpfr_max(m.get(), m.get(), x.get(), MPFR_RNDN);
  for (auto& x : s) {
    mpfr_sub(x.get(), x.get(), m.get(), MPFR_RNDN);
    mpfr_exp(x.get(), x.get(), MPFR_RNDN);
    mpfr_add(z.get(), z.get(), x.get(), MPFR_RNDN);
  }
  std::vector<double> w;
  for (auto& x : s) {
    mpfr_div(x.get(), x.get(), z.get(), MPFR_RNDN);
    w.push_back(x.to_double(MPFR_RNDN));
  }
  return w;
}

std::vector<MpfrFloat> from_doubles(const std::vector<double>& x) {
  std::vector<MpfrFloat> out;
  for (double v : x) out.emplace_back(kBits, v);
  return out;
}

// sum_t w_t v_t for MPFR weights of the given (double) scores, rounded to nearest.
std::vector<double> mpfr_weighted_sum(const std::vector<double>& scores, const std::vector<double>& values,
                                      std::size_t d) {
  const std::size_t n = scores.size();
  std::vector<MpfrFloat> e = from_doubles(scores);
  MpfrFloat m(kBits), z(kBits), acc(kBits), term(kBits);
  mpfr_set(m.get(), e.front().get(), MPFR_RNDN);
  for (const auto& x : e) mpfr_max(m.get(), m.get(), x.get(), MPFR_RNDN);
  for (auto& x : e) {
    mpfr_sub(x.get(), x.get(), m.get(), MPFR_RNDN);
    mpfr_exp(x.get(), x.get(), MPFR_RNDN);
    mpfr_add(z.get(), z.get(), x.get(), MPFR_RNDN);
  }
  std::vector<double> out(d);
  for (std::size_t i = 0; i < d; ++i) {
    mpfr_set_zero(acc.get(), 1);
    for (std::size_t t = 0; t < n; ++t) {
      mpfr_mul_d(term.get(), e[t].get(), values[t * d + i], MPFR_RNDN);
      mpfr_add(acc.get(), acc.get(), term.get(), MPFR_RNDN);
    }
    mpfr_div(acc.get(), acc.get(), z.get(), MPFR_RNDN);
    out[i] = acc.to_double(MPFR_RNDN);
  }
  return out;
}

// A perturbed copy of a cache: relative noise of size `rel` on keys and/or values.
std::vector<double> perturbed(std::mt19937_64& rng, const std::vector<double>& x, double rel) {
  std::normal_distribution<double> normal(0.0, 1.0);
  std::vector<double> out(x);
  for (double& e : out) e += rel * (std::fabs(e) + 1e-3) * normal(rng);
  return out;
}

double max_abs_column(const std::vector<double>& values, std::size_t d, std::size_t n, std::size_t i) {
  double m = 0.0;
  for (std::size_t t = 0; t < n; ++t) m = std::max(m, std::fabs(values[t * d + i]));
  return m;
}

}  // namespace

TEST_CASE("gamma_up bounds n u / (1 - n u) from above, is monotone and tight") {
  const double u = std::ldexp(1.0, -53);
  double previous = 0.0;
  for (std::size_t n = 0; n < 5000; ++n) {
    const double g = gamma_up(n);
    CHECK(g >= static_cast<double>(n) * u);
    CHECK(g >= previous);
    previous = g;
  }
  for (std::size_t n : {1ul, 2ul, 3ul, 7ul, 64ul, 300ul, 1000ul, 131072ul, 1ul << 30, 1ul << 40, 1ul << 50}) {
    CAPTURE(n);
    const double g = gamma_up(n);
    // Exact n u / (1 - n u), rounded up at 256 bits, must not exceed the returned double.
    MpfrFloat nu(kBits), den(kBits);
    mpfr_set_ui(nu.get(), n, MPFR_RNDN);
    mpfr_mul_2si(nu.get(), nu.get(), -53, MPFR_RNDN);
    mpfr_ui_sub(den.get(), 1, nu.get(), MPFR_RNDN);
    mpfr_div(nu.get(), nu.get(), den.get(), MPFR_RNDU);
    CHECK(mpfr_cmp_d(nu.get(), g) <= 0);
    // Tight: a few ulps above the exact value.
    CHECK(g <= nu.to_double(MPFR_RNDU) * (1.0 + 1e-14));
    CHECK(gamma_up(n + 1) > g);
  }
  CHECK_THROWS_AS((void)gamma_up(std::size_t{1} << 53), hnf::proofs::Error);
}

TEST_CASE("row_norms_up bounds every row norm from above, tightly") {
  std::mt19937_64 rng(11);
  std::normal_distribution<double> normal(0.0, 1.0);
  for (std::size_t d : {1ul, 3ul, 16ul, 64ul}) {
    std::vector<double> rows(20 * d);
    for (double& x : rows) x = normal(rng) * std::pow(10.0, normal(rng));
    const auto norms = row_norms_up(rows, d);
    REQUIRE(norms.size() == 20);
    for (std::size_t t = 0; t < 20; ++t) {
      MpfrFloat sum(kBits), sq(kBits);
      for (std::size_t i = 0; i < d; ++i) {
        mpfr_set_d(sq.get(), rows[t * d + i], MPFR_RNDN);
        mpfr_sqr(sq.get(), sq.get(), MPFR_RNDN);
        mpfr_add(sum.get(), sum.get(), sq.get(), MPFR_RNDN);
      }
      mpfr_sqrt(sum.get(), sum.get(), MPFR_RNDU);
      CHECK(mpfr_cmp_d(sum.get(), norms[t]) <= 0);
      CHECK(norms[t] <= sum.to_double(MPFR_RNDU) * (1.0 + 1e-13));
    }
  }
  CHECK_THROWS_AS((void)row_norms_up(std::vector<double>(5, 1.0), 2), hnf::proofs::Error);
}

TEST_CASE("attention enclosures contain the MPFR reference on 3,000 random instances, and are sharp") {
  std::mt19937_64 rng(20240601);
  constexpr std::size_t kInstances = 3024;
  std::size_t checked_components = 0, sharp_cases = 0, positive_differences = 0;
  double worst_ordinary_width = 0.0;
  std::vector<double> s_lo, s_hi, w_lo, w_hi;
  for (std::size_t index = 0; index < kInstances; ++index) {
    const Instance in = make_instance(rng, index);
    const std::size_t d = in.d, n = in.n;
    CAPTURE(index);
    const std::string kind = kind_name(in.kind);
    CAPTURE(kind);
    CAPTURE(d);
    CAPTURE(n);
    const auto norms = row_norms_up(in.keys, d);

    // Scores and softmax weights.
    s_lo.assign(n, 0.0);
    s_hi.assign(n, 0.0);
    enclose_scores(in.q, in.keys, norms, d, n, s_lo, s_hi);
    auto exact_scores = mpfr_scores(in.q, in.keys, d, n);
    for (std::size_t t = 0; t < n; ++t) {
      const double s = exact_scores[t].to_double(MPFR_RNDN);
      REQUIRE(s_lo[t] <= s);
      REQUIRE(s <= s_hi[t]);
    }
    w_lo.assign(n, 0.0);
    w_hi.assign(n, 0.0);
    enclose_softmax_weights(s_lo, s_hi, n, w_lo, w_hi);
    const auto weights = mpfr_softmax(std::move(exact_scores));
    for (std::size_t t = 0; t < n; ++t) {
      REQUIRE(w_lo[t] <= weights[t]);
      REQUIRE(weights[t] <= w_hi[t]);
      // (w_lo may be -denorm_min where e^{s - max} underflows: still a valid lower bound.)
      REQUIRE(w_lo[t] >= -std::numeric_limits<double>::denorm_min());
      REQUIRE(w_hi[t] <= 1.0);
    }

    // The output.
    const OutputEnclosure exact = enclose_attention_output(in.q, in.keys, norms, in.values, d, n);
    REQUIRE(exact.lo.size() == d);
    REQUIRE(exact.hi.size() == d);
    const auto o = attention_output_mpfr(in.q, in.keys, in.values, d, kBits);
    for (std::size_t i = 0; i < d; ++i) {
      CAPTURE(i);
      REQUIRE(exact.lo[i] <= o[i]);
      REQUIRE(o[i] <= exact.hi[i]);
      ++checked_components;
      if (ordinary(in.kind)) {
        // Sharpness: the width is rounding slack only, far below the values' scale.
        const double scale = max_abs_column(in.values, d, n, i);
        const double width = exact.hi[i] - exact.lo[i];
        const double relative = scale > 0.0 ? width / scale : width;
        worst_ordinary_width = std::max(worst_ordinary_width, relative);
        CHECK(relative <= 1e-12);
      }
    }
    for (std::size_t i = 0; i < d; ++i) CHECK(max_width_up(exact) >= exact.hi[i] - exact.lo[i]);

    // distance_up from a value row to the enclosure bounds the distance to the exact output.
    {
      const std::size_t t = index % n;
      const std::vector<double> v(in.values.begin() + static_cast<std::ptrdiff_t>(t * d),
                                  in.values.begin() + static_cast<std::ptrdiff_t>((t + 1) * d));
      MpfrFloat sum(kBits), diff(kBits);
      for (std::size_t i = 0; i < d; ++i) {
        mpfr_set_d(diff.get(), v[i], MPFR_RNDN);
        mpfr_sub_d(diff.get(), diff.get(), o[i], MPFR_RNDN);
        mpfr_sqr(diff.get(), diff.get(), MPFR_RNDN);
        mpfr_add(sum.get(), sum.get(), diff.get(), MPFR_RNDN);
      }
      mpfr_sqrt(sum.get(), sum.get(), MPFR_RNDN);
      // o rounded to nearest is within half an ulp per component: allow that slack.
      double o_max = 0.0;
      for (double x : o) o_max = std::max(o_max, std::fabs(x));
      const double slack = std::sqrt(static_cast<double>(d)) * o_max * std::ldexp(1.0, -52);
      CHECK(distance_up(v, exact) >= sum.to_double(MPFR_RNDN) - slack);
    }

    // A perturbed cache: ||o(perturbed) - o|| lies between the two difference bounds.
    const int mode = static_cast<int>(index % 5);
    const double rel = std::pow(10.0, -static_cast<double>(1 + (index / 5) % 8));  // 1e-1 .. 1e-8
    const std::vector<double> keys_b = (mode == 1) ? in.keys : perturbed(rng, in.keys, rel);
    std::vector<double> values_b = (mode == 2) ? in.values : perturbed(rng, in.values, rel);
    if (mode == 3) {  // rounded to float, like a float trace read back
      for (double& x : values_b) x = static_cast<float>(x);
    }
    const std::vector<double>& keys_used = (mode == 4) ? in.keys : keys_b;
    const std::vector<double>& values_used = (mode == 4) ? in.values : values_b;  // mode 4: identical caches
    const auto norms_b = row_norms_up(keys_used, d);
    const OutputEnclosure other = enclose_attention_output(in.q, keys_used, norms_b, values_used, d, n);
    const double actual = attention_difference_norm_mpfr(in.q, keys_used, values_used, in.keys, in.values, d, kBits);
    const double up = difference_norm_up(other, exact);
    const double down = difference_norm_down(other, exact);
    CAPTURE(mode);
    CAPTURE(rel);
    CAPTURE(actual);
    CAPTURE(up);
    CAPTURE(down);
    REQUIRE(!std::isnan(up));
    REQUIRE(!std::isnan(down));
    REQUIRE(down >= 0.0);
    REQUIRE(down <= actual);
    REQUIRE(actual <= up);
    CHECK(difference_norm_up(exact, other) == up);
    CHECK(difference_norm_down(exact, other) == down);
    if (mode == 4) {
      CHECK(actual == 0.0);
      CHECK(down == 0.0);
    }
    if (actual > 0.0) ++positive_differences;
    // Sharpness of the pair: an ordinary instance with a clearly visible difference has both
    // bounds within a relative 1e-6 of it.
    if (ordinary(in.kind) && mode != 4 && rel >= 1e-4 && actual > 1e-8) {
      ++sharp_cases;
      CHECK(down > 0.0);
      CHECK(up <= actual * (1.0 + 1e-6));
      CHECK(down >= actual * (1.0 - 1e-6));
    }
  }
  MESSAGE("components checked: " << checked_components << ", worst ordinary width / value scale: "
                                  << worst_ordinary_width << ", sharp difference cases: " << sharp_cases);
  CHECK(checked_components > 30'000);
  CHECK(sharp_cases > 100);
  CHECK(positive_differences > kInstances / 2);
}

TEST_CASE("enclose_softmax_output and enclose_softmax_weights hold for every score in the intervals") {
  std::mt19937_64 rng(7);
  std::normal_distribution<double> normal(0.0, 1.0);
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  std::vector<double> scratch, w_lo, w_hi;
  for (int rep = 0; rep < 300; ++rep) {
    CAPTURE(rep);
    const std::size_t n = 1 + static_cast<std::size_t>(rep % 40);
    const std::size_t d = 1 + static_cast<std::size_t>(rep % 5);
    const double spread = (rep % 3 == 0) ? 300.0 : 3.0;
    const double radius = std::pow(10.0, -1.0 - static_cast<double>(rep % 10));
    std::vector<double> lo(n), hi(n), values(n * d);
    for (std::size_t t = 0; t < n; ++t) {
      const double centre = spread * normal(rng);
      lo[t] = centre - radius * unit(rng);
      hi[t] = centre + radius * unit(rng);
    }
    if (rep % 7 == 0) hi[0] = lo[0];  // a point interval
    for (double& v : values) v = normal(rng);
    const OutputEnclosure enc = enclose_softmax_output(lo, hi, values, d, n, scratch);
    w_lo.assign(n, 0.0);
    w_hi.assign(n, 0.0);
    enclose_softmax_weights(lo, hi, n, w_lo, w_hi);
    // Corners and random points of the box of scores.
    for (int sample = 0; sample < 6; ++sample) {
      CAPTURE(sample);
      std::vector<double> s(n);
      for (std::size_t t = 0; t < n; ++t) {
        if (sample == 0) s[t] = lo[t];
        else if (sample == 1) s[t] = hi[t];
        else if (sample == 2) s[t] = t % 2 == 0 ? lo[t] : hi[t];
        else s[t] = std::clamp(lo[t] + (hi[t] - lo[t]) * unit(rng), lo[t], hi[t]);
      }
      const auto o = mpfr_weighted_sum(s, values, d);
      for (std::size_t i = 0; i < d; ++i) {
        CHECK(enc.lo[i] <= o[i]);
        CHECK(o[i] <= enc.hi[i]);
      }
      const auto w = mpfr_softmax(from_doubles(s));
      for (std::size_t t = 0; t < n; ++t) {
        CHECK(w_lo[t] <= w[t]);
        CHECK(w[t] <= w_hi[t]);
      }
    }
  }
}

TEST_CASE("difference bounds of hand-made enclosures: overlap gives exactly 0, disjoint boxes a positive gap") {
  const OutputEnclosure a{{0.0, 1.0, -2.0}, {1.0, 2.0, -1.0}};
  const OutputEnclosure inside{{0.5, 1.5, -1.5}, {0.6, 1.6, -1.4}};
  const double down = difference_norm_down(a, inside);
  CHECK(!std::isnan(down));
  CHECK(down == 0.0);
  CHECK(difference_norm_down(a, a) == 0.0);
  // sup ||x - y||: per component max(|a.lo - b.hi|, |a.hi - b.lo|) = 0.6, 0.6, 0.6.
  const double up = difference_norm_up(a, inside);
  CHECK(up >= std::sqrt(3.0 * 0.36));
  CHECK(up <= std::sqrt(3.0 * 0.36) * (1.0 + 1e-14));
  CHECK(difference_norm_up(a, a) >= std::sqrt(3.0));

  // Disjoint in the first component only: the gap is 3 there, 0 elsewhere.
  const OutputEnclosure far{{4.0, 1.2, -1.8}, {5.0, 1.3, -1.7}};
  const double gap = difference_norm_down(a, far);
  CHECK(gap <= 3.0);
  CHECK(gap >= 3.0 * (1.0 - 1e-15));
  CHECK(difference_norm_down(far, a) == gap);
  CHECK(difference_norm_up(a, far) >= std::sqrt(25.0 + 0.8 * 0.8 + 0.8 * 0.8));

  // Point enclosures: both bounds are the Euclidean distance up to rounding.
  const OutputEnclosure p{{3.0, 0.0}, {3.0, 0.0}};
  const OutputEnclosure r{{0.0, 4.0}, {0.0, 4.0}};
  CHECK(difference_norm_down(p, r) <= 5.0);
  CHECK(difference_norm_down(p, r) >= 5.0 * (1.0 - 1e-15));
  CHECK(difference_norm_up(p, r) >= 5.0);
  CHECK(difference_norm_up(p, r) <= 5.0 * (1.0 + 1e-15));
  const std::vector<double> v{0.0, 4.0};
  CHECK(distance_up(v, p) >= 5.0);
  CHECK(distance_up(v, p) <= 5.0 * (1.0 + 1e-15));

  CHECK_THROWS_AS((void)difference_norm_up(a, p), hnf::proofs::Error);
  CHECK_THROWS_AS((void)difference_norm_down(a, p), hnf::proofs::Error);
}

TEST_CASE("enclosures of exact special cases") {
  // One key: the output is that value exactly (weight 1), whatever the score. The width is a
  // few ulps of the score (600 has an ulp of 1.1e-13) carried by the separate bounds of the
  // numerator and the normaliser.
  for (double k : {0.0, 1.0, -600.0, 600.0}) {
    CAPTURE(k);
    const std::vector<double> q{1.0}, keys{k}, values{0.3};
    const auto enc = enclose_attention_output(q, keys, row_norms_up(keys, 1), values, 1, 1);
    CHECK(enc.lo[0] <= 0.3);
    CHECK(enc.hi[0] >= 0.3);
    CHECK(enc.hi[0] - enc.lo[0] <= 0.3 * 1e-14 * std::max(1.0, std::fabs(k)));
  }
  // Scores 0 and 600 (d = 1, q = 1): the second key takes all but e^-600 of the weight.
  const std::vector<double> q{1.0}, keys{0.0, 600.0}, values{1.0, -1.0};
  const auto enc = enclose_attention_output(q, keys, row_norms_up(keys, 1), values, 1, 2);
  const auto o = attention_output_mpfr(q, keys, values, 1, kBits);
  CHECK(enc.lo[0] <= o[0]);
  CHECK(o[0] <= enc.hi[0]);
  CHECK(enc.lo[0] >= -1.0 - 600.0 * 1e-14);
  CHECK(enc.hi[0] <= -1.0 + 600.0 * 1e-14);
  // Only num_keys keys count: extra rows beyond it are ignored.
  const std::vector<double> keys3{0.0, 600.0, -5.0}, values3{1.0, -1.0, 100.0};
  const auto enc1 = enclose_attention_output(q, keys3, row_norms_up(keys3, 1), values3, 1, 1);
  CHECK(enc1.lo[0] <= 1.0);
  CHECK(enc1.hi[0] >= 1.0);
  CHECK(enc1.hi[0] <= 1.0 + 1e-14);
  CHECK(enc1.lo[0] >= 1.0 - 1e-14);
}
