// The certificate rows an analysis yields: the necessity rows' "below" list must be exactly the
// rows failing 8 eps 4^bits >= kappa_d2, decided on exact rationals, also at the boundary.
#include <doctest/doctest.h>
#include <gmpxx.h>

#include <algorithm>
#include <cmath>
#include <random>

#include "hnf/analysis/witnesses.h"

using namespace hnf;

TEST_CASE("necessity rows: the below list is exactly the failing rows, at and around the boundary") {
  analysis::AnalysisResult a;
  a.shape.num_layers = 1;
  a.shape.num_kv_heads = 1;
  a.shape.num_heads = 1;
  a.shape.head_dim = 32;
  a.shape.num_tokens = 4096;
  a.options.block = 16;
  analysis::HeadAnalysis h;
  const auto units = static_cast<std::size_t>(a.shape.num_tokens / 16);
  std::mt19937_64 rng(11);
  const std::vector<proofs::Format> formats = {*proofs::parse_format("fp16"), *proofs::parse_format("int4-d32"),
                                               *proofs::parse_format("int2-d32"), *proofs::parse_format("int8-d32")};
  for (std::size_t u = 0; u < units; ++u) h.key_formats.push_back(formats[u % formats.size()]);
  h.value_formats.assign(units, formats[0]);
  const double eps = 0.05;
  for (std::int64_t t = 0; t < a.shape.num_tokens; ++t) {
    const int bits = proofs::precision_bits(h.key_formats[static_cast<std::size_t>(t / 16)]);
    const double capacity = std::ldexp(eps, 3 + 2 * bits);  // exact
    // kappa D^2 within a few ulps of the capacity: D = 1 makes kappa_d2 = mul_up(kappa, 1).
    const double kappa = std::nextafter(capacity, t % 3 == 0 ? 0.0 : INFINITY) *
                         (1.0 + std::uniform_real_distribution<double>(-1e-15, 1e-15)(rng));
    h.positions.kappa.push_back(kappa);
    h.positions.diameter.push_back(1.0);
  }
  a.heads.push_back(h);
  auto failing_rows = [&](const proofs::Obligation& o) {
    std::vector<std::int64_t> failing;
    for (std::size_t r = 0; r < o.necessity.size(); ++r) {
      mpq_class capacity(eps);
      capacity *= 8;
      mpz_class power;
      mpz_ui_pow_ui(power.get_mpz_t(), 2, static_cast<unsigned long>(2 * o.necessity[r].bits));
      capacity *= power;
      if (capacity < mpq_class(o.necessity[r].kappa_d2)) failing.push_back(static_cast<std::int64_t>(r));
    }
    return failing;
  };
  SUBCASE("schema 2: one row per position") {
    const proofs::Obligation o = analysis::necessity_obligation(a, 0, eps, 2);
    REQUIRE(o.necessity.size() == 4096);
    const auto failing = failing_rows(o);
    CHECK(o.below == failing);
    CHECK(failing.size() > 100);  // both sides of the boundary occur
    CHECK(failing.size() < o.necessity.size() - 100);
  }
  SUBCASE("schema 3: one row per allocation unit, its largest kappa D^2 and where it is") {
    const proofs::Obligation o = analysis::necessity_obligation(a, 0, eps);
    REQUIRE(o.necessity.size() == units);
    for (std::size_t u = 0; u < units; ++u) {
      const auto& row = o.necessity[u];
      const auto first = static_cast<std::int64_t>(u * 16);
      REQUIRE(row.position >= first);
      REQUIRE(row.position < first + 16);
      // The largest of the unit, first on ties (D = 1: kappa_d2 is kappa rounded up by a few ulps).
      const auto begin = h.positions.kappa.begin() + first;
      const auto at = std::max_element(begin, begin + 16) - h.positions.kappa.begin();
      CHECK(row.position == at);
      const double kappa = h.positions.kappa[static_cast<std::size_t>(at)];
      CHECK(mpq_class(row.kappa_d2) >= mpq_class(kappa));
      CHECK(mpq_class(row.kappa_d2) <= mpq_class(kappa) * mpq_class(1.0 + 1e-14));
    }
    // Every unit holds positions a few ulps above its capacity, so every row fails here; the
    // capacities differ per unit (fp16, int4, int2, int8 keys), so the list is still decided per row.
    CHECK(o.below == failing_rows(o));
    CHECK(o.below.size() == units);
  }
}
