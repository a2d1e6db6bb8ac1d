#include "scope_bounds.h"

#include <algorithm>
#include <cmath>

#include "hnf/analysis/interval.h"

namespace hnf::analysis::detail {

ResidualNorms residual_norms(const HeadInputs& h, const QuantizedCache& qc) {
  const std::size_t d = h.d;
  ResidualNorms r{std::vector<double>(h.tokens), std::vector<double>(h.tokens)};
  std::vector<double> diff(d);
  each_row<4>({&qc.keys, &h.keys, &qc.values, &h.values}, 0, h.tokens,
              [&](std::size_t t, const std::array<const double*, 4>& row) {
                for (std::size_t i = 0; i < d; ++i) diff[i] = row[0][i] - row[1][i];
                r.dk[t] = norm_up(diff.data(), d, 1);
                for (std::size_t i = 0; i < d; ++i) diff[i] = row[2][i] - row[3][i];
                r.dv[t] = norm_up(diff.data(), d, 1);
              });
  return r;
}

double s2_bound(const HeadInputs& h, const QuantizedCache& qc, std::size_t j, const OutputEnclosure& exact,
                double radius, const std::vector<double>& rho, const ResidualNorms& residuals) {
  const std::size_t d = h.d;
  const auto n = static_cast<std::size_t>(h.positions[j]) + 1;
  const double* q = h.queries.data() + j * d;
  std::vector<double> s_lo(n), s_hi(n), w_lo(n), w_hi(n);
  enclose_scores({q, d}, h.keys, h.key_norms, n, s_lo, s_hi);
  enclose_softmax_weights(s_lo, s_hi, n, w_lo, w_hi);
  const double c_hi = div_up(1.0, sqrt_down(static_cast<double>(d)));
  const double q_norm = norm_up(q, d, 0);
  const double gamma_d = gamma_up(d);
  double rho_max = 0.0;
  for (std::size_t t = 0; t < n; ++t) rho_max = std::max(rho_max, rho[t]);
  // Per key: a_t bound, spread factor e^{R(rho_t + rho*)}, eta_t, w_t, ||dv_t||.
  std::vector<double> spread(n), eta(n), w(n), dv(n), dk(d);
  const double gamma_d_u = add_up(gamma_d, std::ldexp(1.0, -52));
  double omega = 0.0, big_h = 0.0;
  each_row<3>({&qc.keys, &h.keys, &h.values}, 0, n, [&](std::size_t t, const std::array<const double*, 3>& row) {
    // Residuals rounded to nearest: the exact residual is within a relative u of each, so the
    // magnitudes stepped up bound it, and the dot product's error gains u ||q|| ||dk||.
    for (std::size_t i = 0; i < d; ++i) dk[i] = row[0][i] - row[1][i];
    const double dk_norm = residuals.dk[t];
    dv[t] = residuals.dv[t];
    double dot = 0.0;
    for (std::size_t i = 0; i < d; ++i) dot += q[i] * dk[i];
    const double dot_abs = add_up(next_up(std::fabs(dot)), mul_up(gamma_d_u, mul_up(q_norm, dk_norm)));
    eta[t] = add_up(mul_up(dot_abs, c_hi), mul_up(radius, mul_up(dk_norm, c_hi)));
    big_h = std::max(big_h, eta[t]);
    spread[t] = exp_up(mul_up(radius, add_up(rho[t], rho_max)));
    w[t] = distance_up({row[2], d}, exact);
    omega = add_up(omega, mul_up(w_hi[t], mul_up(sub_up(spread[t], 1.0), w[t])));
  });
  double sum = 0.0;
  for (std::size_t t = 0; t < n; ++t) {
    const double term = add_up(mul_up(eta[t], add_up(w[t], omega)), dv[t]);
    sum = add_up(sum, mul_up(mul_up(w_hi[t], spread[t]), term));
  }
  return mul_up(exp_up(mul_up(2.0, big_h)), sum);
}

double s3_from_terms(const S3Terms& terms, double query_norm, std::size_t d) {
  const double c_hi = div_up(1.0, sqrt_down(static_cast<double>(d)));
  const double big_h = mul_up(query_norm, mul_up(terms.dk_max, c_hi));
  const double e_h = exp_up(big_h);
  return add_up(mul_up(mul_up(e_h, sub_up(e_h, 1.0)), mul_up(2.0, terms.radius_v)), terms.dv_max);
}

namespace {

// The mean row of rows [tokens, d]: sum_t x_t / tokens, each term divided first (nearest).
std::vector<double> mean_row(const RowSource& rows) {
  const std::size_t d = rows.dim();
  std::vector<double> mean(d, 0.0);
  const auto tokens = static_cast<double>(rows.rows());
  each_row(rows, 0, rows.rows(), [&](std::size_t, const double* x) {
    for (std::size_t i = 0; i < d; ++i) mean[i] += x[i] / tokens;
  });
  return mean;
}

}  // namespace

// Residual magnitudes are the nearest differences stepped up one ulp.
S3Terms s3_terms(const HeadInputs& h, const QuantizedCache& qc) {
  const std::size_t d = h.d;
  const std::vector<double> mean = mean_row(h.values);
  std::vector<double> diff(d);
  double dk_max = 0.0, dv_max = 0.0, radius_v = 0.0;
  each_row<4>({&qc.keys, &h.keys, &qc.values, &h.values}, 0, h.tokens,
              [&](std::size_t, const std::array<const double*, 4>& row) {
                for (std::size_t i = 0; i < d; ++i) diff[i] = row[0][i] - row[1][i];
                dk_max = std::max(dk_max, norm_up(diff.data(), d, 1));
                for (std::size_t i = 0; i < d; ++i) diff[i] = row[2][i] - row[3][i];
                dv_max = std::max(dv_max, norm_up(diff.data(), d, 1));
                for (std::size_t i = 0; i < d; ++i) diff[i] = row[3][i] - mean[i];
                radius_v = std::max(radius_v, norm_up(diff.data(), d, 1));
              });
  return {dk_max, dv_max, radius_v};
}

std::vector<double> key_spreads(const HeadInputs& h) {
  // rho_t = ||k_t - c|| / sqrt(d), rounded up, with c the mean key (any c is valid).
  const std::size_t d = h.d;
  const double c_hi = div_up(1.0, sqrt_down(static_cast<double>(d)));
  const std::vector<double> mean = mean_row(h.keys);
  std::vector<double> diff(d), rho(h.tokens);
  each_row(h.keys, 0, h.tokens, [&](std::size_t t, const double* k) {
    for (std::size_t i = 0; i < d; ++i) diff[i] = k[i] - mean[i];
    rho[t] = mul_up(norm_up(diff.data(), d, 1), c_hi);
  });
  return rho;
}


}  // namespace hnf::analysis::detail
