// The S2 and S3 bounds of a head's map (THEORY.md, Theorems S2 and S3): every query within a
// radius of an analysed one, and every query of bounded norm at any position. Internal to
// analysis/src.
#pragma once

#include <cstddef>
#include <vector>

#include "head_data.h"

namespace hnf::analysis::detail {

// Upper bounds of ||dk_t|| and ||dv_t|| for every position, [tokens] each.
struct ResidualNorms {
  std::vector<double> dk, dv;
};

[[nodiscard]] ResidualNorms residual_norms(const HeadInputs& h, const QuantizedCache& qc);

// Upper bound over every query q with ||q - q_j|| <= radius (same position) of the
// attention-output error with this map (Theorem S2). rho [tokens]: key spreads (key_spreads).
[[nodiscard]] double s2_bound(const HeadInputs& h, const QuantizedCache& qc, std::size_t j, const OutputEnclosure& exact,
                              double radius, const std::vector<double>& rho, const ResidualNorms& residuals);

// Upper bound over every query with ||q|| <= Q, at any position (Theorem S3), from its terms.
struct S3Terms {
  double dk_max = 0.0;    // max_t ||dk_t||, rounded up
  double dv_max = 0.0;    // max_t ||dv_t||, rounded up
  double radius_v = 0.0;  // max_t ||v_t - mean||, rounded up
};

// e^H (e^H - 1) 2 radius_v + dv_max with H = Q dk_max / sqrt(d), every step rounded up.
[[nodiscard]] double s3_from_terms(const S3Terms& terms, double query_norm, std::size_t d);
[[nodiscard]] S3Terms s3_terms(const HeadInputs& h, const QuantizedCache& qc);

// rho_t = ||k_t - c|| / sqrt(d), rounded up, with c the mean key: [tokens].
[[nodiscard]] std::vector<double> key_spreads(const HeadInputs& h);

}  // namespace hnf::analysis::detail
