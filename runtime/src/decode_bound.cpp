// The a-posteriori error bound of one decode row: proofs/THEORY.md section 13, Theorem R,
// whose steps (R1)-(R6) the comments below follow. Every quantity is an exact real bounded
// with the directed helpers of proofs/directed.h (L1) or the a-priori sum bounds (L2, L4);
// "nearest" marks a plain round-to-nearest value whose error a later step accounts for.
#include "hnf/runtime/decode_bound.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <vector>

#include "hnf/proofs/directed.h"
#include "hnf/proofs/error.h"
#include "hnf/runtime/decode_attention.h"

namespace hnf::runtime {

using proofs::add_down;
using proofs::add_up;
using proofs::div_down;
using proofs::div_up;
using proofs::exp_down;
using proofs::exp_up;
using proofs::gamma_up;
using proofs::mul_down;
using proofs::mul_up;
using proofs::norm_up;
using proofs::sqrt_down;
using proofs::sqrt_up;
using proofs::sub_down;
using proofs::sub_up;

DecodeBoundTerms decode_error_bound_terms(const StreamView& stream, std::int64_t positions, const float* q,
                                          const float* out) {
  HNF_ASSERT(positions >= 1, "decode_error_bound needs a position");
  HNF_ASSERT(stream.head_dim >= 1, "decode_error_bound needs head_dim >= 1");
  constexpr double kInf = std::numeric_limits<double>::infinity();
  const DecodeBoundTerms unbounded{kInf, kInf, kInf, kInf, kInf};
  const auto d = static_cast<std::size_t>(stream.head_dim);
  const auto n = static_cast<std::size_t>(positions);
  for (std::size_t c = 0; c < d; ++c) {
    if (!std::isfinite(q[c]) || !std::isfinite(out[c])) return unbounded;
  }

  // The one allocation: rows of head_dim, then three rows of positions.
  std::vector<double> buffer(12 * d + 3 * n, 0.0);
  double* const qd = buffer.data();           // q as doubles (exact)
  double* const q_abs = qd + d;               // |q|
  double* const key = q_abs + d;              // read_position's outputs
  double* const value = key + d;
  double* const key_radius = value + d;
  double* const value_radius = key_radius + d;
  double* const lo = value_radius + d;        // numerator, then the enclosure of o~
  double* const hi = lo + d;
  double* const magnitude = hi + d;
  double* const key_acc = magnitude + d;      // sum_t G_t m_ti (nearest)
  double* const value_acc = key_acc + d;      // sum_t A_t rv_ti (nearest)
  double* const scratch = value_acc + d;
  double* const e_lo = buffer.data() + 12 * d;  // scores, then e^{s - shift}, then weights
  double* const e_hi = e_lo + n;
  double* const eta = e_hi + n;                 // >= |q.(k_t - k^_t)| / sqrt(d)
  for (std::size_t c = 0; c < d; ++c) {
    qd[c] = q[c];
    q_abs[c] = std::fabs(qd[c]);
  }

  // (R1) Scores of the stored keys and the key radii. 1/sqrt(d) is enclosed by [c_lo, c_hi].
  // The dot products have d nonzero terms none of which is subnormal (THEORY.md section 0), so
  // |fl(q.k^) - q.k^| <= gamma_d sum|q_i k^_i| <= gamma_d fl(sum|q_i k^_i|) / (1 - gamma_d) (L2).
  const double c_lo = div_down(1.0, sqrt_up(static_cast<double>(d)));
  const double c_hi = div_up(1.0, sqrt_down(static_cast<double>(d)));
  const double gamma_d = gamma_up(d);
  const double one_minus_gamma_d = sub_down(1.0, gamma_d);
  for (std::size_t t = 0; t < n; ++t) {
    read_position(stream, static_cast<std::int64_t>(t), key, value, key_radius, value_radius);
    double dot = 0.0, dot_magnitude = 0.0, radius_dot = 0.0;
    for (std::size_t c = 0; c < d; ++c) {
      const double p = qd[c] * key[c];
      dot += p;
      dot_magnitude += std::fabs(p);
      radius_dot += q_abs[c] * key_radius[c];
    }
    const double err = mul_up(gamma_d, div_up(dot_magnitude, one_minus_gamma_d));
    const double dot_lo = sub_down(dot, err);
    const double dot_hi = add_up(dot, err);
    e_lo[t] = dot_lo >= 0.0 ? mul_down(dot_lo, c_lo) : mul_down(dot_lo, c_hi);
    e_hi[t] = dot_hi >= 0.0 ? mul_up(dot_hi, c_hi) : mul_up(dot_hi, c_lo);
    eta[t] = mul_up(div_up(radius_dot, one_minus_gamma_d), c_hi);
  }

  // (R2) Shift by the largest upper score: e^{s~_t - shift} in [e_lo, e_hi], <= 1 exactly.
  // Normaliser Z~ = sum_t e^{s~_t - shift} in [z_lo, z_hi] (L2, nonnegative terms).
  const double shift = *std::max_element(e_hi, e_hi + n);
  double sum_lo = 0.0, sum_hi = 0.0;
  for (std::size_t t = 0; t < n; ++t) {
    e_lo[t] = exp_down(sub_down(e_lo[t], shift));
    e_hi[t] = std::min(1.0, exp_up(sub_up(e_hi[t], shift)));
    sum_lo += e_lo[t];
    sum_hi += e_hi[t];
  }
  const double gamma_n = gamma_up(n);
  const double one_minus_gamma_n = sub_down(1.0, gamma_n);
  const double z_lo = mul_down(sum_lo, one_minus_gamma_n);
  const double z_hi = div_up(sum_hi, one_minus_gamma_n);
  if (!(z_lo > 0.0)) return unbounded;  // only when the score enclosure is wider than ~745

  // (R3) o~ = N / Z~ with N_i = sum_t e^{s~_t - shift} v^_ti (Theorem E (d), (e)).
  const double underflow = mul_up(static_cast<double>(n), std::numeric_limits<double>::denorm_min());
  for (std::size_t t = 0; t < n; ++t) {
    read_position(stream, static_cast<std::int64_t>(t), key, value, key_radius, value_radius);
    const double el = e_lo[t];
    const double eh = e_hi[t];
    for (std::size_t c = 0; c < d; ++c) {
      const double a = el * value[c];
      const double b = eh * value[c];
      lo[c] += std::min(a, b);
      hi[c] += std::max(a, b);
      magnitude[c] += eh * std::fabs(value[c]);
    }
  }
  for (std::size_t c = 0; c < d; ++c) {
    const double err = add_up(mul_up(gamma_n, div_up(magnitude[c], one_minus_gamma_n)), underflow);
    const double n_lo = sub_down(lo[c], err);
    const double n_hi = add_up(hi[c], err);
    lo[c] = n_lo >= 0.0 ? div_down(n_lo, z_hi) : div_down(n_lo, z_lo);
    hi[c] = n_hi >= 0.0 ? div_up(n_hi, z_lo) : div_up(n_hi, z_hi);
  }

  // (R4) Weights a~_t in [w_lo, w_hi]; Z = sum_u a~_u e^{delta_u} >= big_z_lo.
  double eta_max = 0.0, zl = 0.0;
  for (std::size_t t = 0; t < n; ++t) {
    e_lo[t] = std::max(0.0, div_down(e_lo[t], z_hi));
    e_hi[t] = std::min(1.0, div_up(e_hi[t], z_lo));
    eta_max = std::max(eta_max, eta[t]);
    zl = add_down(zl, mul_down(e_lo[t], exp_down(-eta[t])));
  }
  const double big_z_lo = std::max({zl, exp_down(-eta_max), 0.0});

  // (R5) Per position: G_t >= a~_t (e^{eta_t} - 1) and A_t >= a_t; accumulate per component
  // G_t m_ti (m_ti = nearest max(v^_ti - lo_i, hi_i - v^_ti) >= |v^_ti - o~_i| / (1 + u)) and
  // A_t rv_ti; the largest value radius per component; the convexity cap
  // max_t (||v^_t - o~|| + ||rv_t||).
  double* const radius_max = magnitude;  // the numerator's magnitudes are no longer needed
  std::fill(radius_max, radius_max + d, 0.0);
  double cap = 0.0;
  for (std::size_t t = 0; t < n; ++t) {
    const double w_hi = e_hi[t];  // > 0: div_up never returns 0
    const double growth = exp_up(eta[t]);  // >= e^{delta_t}
    const double g = mul_up(w_hi, sub_up(growth, 1.0));
    const double a_hi = big_z_lo > 0.0 ? std::min(1.0, mul_up(w_hi, div_up(growth, big_z_lo))) : 1.0;
    read_position(stream, static_cast<std::int64_t>(t), key, value, key_radius, value_radius);
    for (std::size_t c = 0; c < d; ++c) {
      const double m = std::max(value[c] - lo[c], hi[c] - value[c]);
      scratch[c] = m;
      key_acc[c] += g * m;
      value_acc[c] += a_hi * value_radius[c];
      radius_max[c] = std::max(radius_max[c], value_radius[c]);
    }
    cap = std::max(cap, add_up(norm_up(scratch, d, 1), norm_up(value_radius, d, 0)));
  }

  // (R6) Sums of n nonnegative nearest products: exact <= (fl + n 2^-1074) / (1 - gamma_n); the
  // (1 + u) of m_ti makes it gamma_{n+1}. Per component: key part / Z, value part capped by the
  // largest radius; then the norms, and ||out - o~|| from the box.
  DecodeBoundTerms terms;
  const double one_minus_gamma_n1 = sub_down(1.0, gamma_up(n + 1));
  for (std::size_t c = 0; c < d; ++c) {
    const double k = big_z_lo > 0.0
                         ? div_up(div_up(add_up(key_acc[c], underflow), one_minus_gamma_n1), big_z_lo)
                         : kInf;
    const double v = std::min(div_up(add_up(value_acc[c], underflow), one_minus_gamma_n1), radius_max[c]);
    key_acc[c] = k;
    value_acc[c] = v;
    scratch[c] = add_up(k, v);
  }
  const double perturbation = norm_up(scratch, d, 0);
  terms.key = norm_up(key_acc, d, 0);
  terms.value = norm_up(value_acc, d, 0);
  terms.cap = cap;
  for (std::size_t c = 0; c < d; ++c) {
    const double o = out[c];
    scratch[c] = std::max(o - lo[c], hi[c] - o);  // nearest; >= |out_i - o~_i| / (1 + u)
  }
  terms.arithmetic = norm_up(scratch, d, 1);
  terms.total = add_up(terms.arithmetic, std::min(perturbation, cap));
  return terms;
}

double decode_error_bound(const StreamView& stream, std::int64_t positions, const float* q, const float* out) {
  return decode_error_bound_terms(stream, positions, q, out).total;
}

}  // namespace hnf::runtime
