// The a-posteriori error bound of one decode row: proofs/THEORY.md section 13, Theorem R,
// whose steps (R1)-(R6) the comments below follow. Every quantity is an exact real bounded
// with the directed helpers of proofs/directed.h (L1) or the a-priori sum bounds (L2, L4);
// "nearest" marks a plain round-to-nearest value whose error a later step accounts for.
#include "hnf/runtime/decode_bound.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <optional>
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
using proofs::log_up;
using proofs::mul_down;
using proofs::mul_up;
using proofs::norm_up;
using proofs::sqrt_down;
using proofs::sqrt_up;
using proofs::sub_down;
using proofs::sub_up;

namespace {

// Theorem R (deterministic) and, when delta > 0, Theorem G (probabilistic, THEORY.md section 15)
// in the same three passes over the stream.
// The stored rows of a stream's first n positions with their radii, biases and proxies
// (read_position_law), decoded once and shared by every query row bounded against them.
struct DecodedRows {
  std::size_t n = 0, d = 0;
  std::vector<double> data;  // [8][n, d]: key, value, key radius, value radius, key bias, key proxy, value bias, value proxy
  [[nodiscard]] const double* at(std::size_t part, std::size_t t) const noexcept { return data.data() + (part * n + t) * d; }
};

// Decoding once costs 64 n d bytes: above this many elements per stream the rows are read per pass.
constexpr std::size_t kDecodeOnceLimit = std::size_t{1} << 22;

DecodedRows decode_rows(const StreamView& stream, std::size_t n) {
  DecodedRows rows;
  rows.n = n;
  rows.d = static_cast<std::size_t>(stream.head_dim);
  rows.data.assign(8 * n * rows.d, 0.0);
  for (std::size_t t = 0; t < n; ++t) {
    const auto p = [&](std::size_t part) { return rows.data.data() + (part * n + t) * rows.d; };
    read_position_law(stream, static_cast<std::int64_t>(t), {p(0), p(2), p(4), p(5)}, {p(1), p(3), p(6), p(7)});
  }
  return rows;
}

GuardBoundTerms guard_terms(const StreamView& stream, std::int64_t positions, const float* q, const float* out,
                            double delta, const DecodedRows* decoded) {
  HNF_ASSERT(positions >= 1, "decode_error_bound needs a position");
  HNF_ASSERT(stream.head_dim >= 1, "decode_error_bound needs head_dim >= 1");
  constexpr double kInf = std::numeric_limits<double>::infinity();
  const DecodeBoundTerms unbounded_terms{kInf, kInf, kInf, kInf, kInf};
  GuardBoundTerms unbounded;
  unbounded.deterministic = unbounded_terms;
  unbounded.probabilistic = kInf;
  const auto d = static_cast<std::size_t>(stream.head_dim);
  const auto n = static_cast<std::size_t>(positions);
  for (std::size_t c = 0; c < d; ++c) {
    if (!std::isfinite(q[c]) || !std::isfinite(out[c])) return unbounded;
  }
  const bool probabilistic = delta > 0.0;

  // The one allocation: rows of head_dim, then three rows of positions; the probabilistic part's
  // rows after them.
  std::vector<double> buffer(12 * d + 3 * n, 0.0);
  std::vector<double> law(probabilistic ? 7 * d + 3 * n : 0, 0.0);
  double* const key_bias_buffer = law.data();
  double* const key_proxy_buffer = key_bias_buffer + (probabilistic ? d : 0);
  double* const value_bias_buffer = key_proxy_buffer + (probabilistic ? d : 0);
  double* const value_proxy_buffer = value_bias_buffer + (probabilistic ? d : 0);
  double* const value_random_acc = value_proxy_buffer + (probabilistic ? d : 0);  // S_i
  double* const value_bias_acc = value_random_acc + (probabilistic ? d : 0);  // sum_t A_t b_ti
  double* const bias_t = value_bias_acc + (probabilistic ? d : 0);            // B_t
  double* const kappa_t = bias_t + (probabilistic ? n : 0);                   // kappa_t
  double* const tau_t = kappa_t + (probabilistic ? n : 0);                    // tau_t >= |delta_t| on E_tau
  double* const value_bias_max = tau_t + (probabilistic ? n : 0);             // max_t b_ti
  double* const qd = buffer.data();           // q as doubles (exact)
  double* const q_abs = qd + d;               // |q|
  double* const key_buffer = q_abs + d;       // read_position's outputs (when not decoded once)
  double* const value_buffer = key_buffer + d;
  double* const key_radius_buffer = value_buffer + d;
  double* const value_radius_buffer = key_radius_buffer + d;
  double* const lo = value_radius_buffer + d;  // numerator, then the enclosure of o~
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
  // The rows of position t: from the rows decoded once, or read now (with the law when
  // probabilistic).
  const double *key = nullptr, *value = nullptr, *key_radius = nullptr, *value_radius = nullptr;
  const double *key_bias = nullptr, *key_proxy = nullptr, *value_bias = nullptr, *value_proxy = nullptr;
  auto load = [&](std::size_t t) {
    if (decoded) {
      key = decoded->at(0, t), value = decoded->at(1, t), key_radius = decoded->at(2, t), value_radius = decoded->at(3, t);
      key_bias = decoded->at(4, t), key_proxy = decoded->at(5, t), value_bias = decoded->at(6, t), value_proxy = decoded->at(7, t);
      return;
    }
    key = key_buffer, value = value_buffer, key_radius = key_radius_buffer, value_radius = value_radius_buffer;
    if (probabilistic) {
      read_position_law(stream, static_cast<std::int64_t>(t), {key_buffer, key_radius_buffer, key_bias_buffer, key_proxy_buffer},
                        {value_buffer, value_radius_buffer, value_bias_buffer, value_proxy_buffer});
      key_bias = key_bias_buffer, key_proxy = key_proxy_buffer, value_bias = value_bias_buffer, value_proxy = value_proxy_buffer;
    } else {
      read_position(stream, static_cast<std::int64_t>(t), key_buffer, value_buffer, key_radius_buffer, value_radius_buffer);
    }
  };

  // (R1) Scores of the stored keys and the key radii. 1/sqrt(d) is enclosed by [c_lo, c_hi].
  // The dot products have d nonzero terms none of which is subnormal (THEORY.md section 0), so
  // |fl(q.k^) - q.k^| <= gamma_d sum|q_i k^_i| <= gamma_d fl(sum|q_i k^_i|) / (1 - gamma_d) (L2).
  const double c_lo = div_down(1.0, sqrt_up(static_cast<double>(d)));
  const double c_hi = div_up(1.0, sqrt_down(static_cast<double>(d)));
  const double gamma_d = gamma_up(d);
  const double one_minus_gamma_d = sub_down(1.0, gamma_d);
  const double inv_d = div_up(1.0, static_cast<double>(d));
  for (std::size_t t = 0; t < n; ++t) {
    load(t);
    if (probabilistic) {
      // B_t >= sum_i |q_i| b_ti / sqrt(d) and kappa_t >= sum_i q_i^2 sigma_ti^2 / d (nonnegative
      // nearest sums, inflated below with the other sums of the probabilistic part).
      double b = 0.0, k = 0.0;
      for (std::size_t c = 0; c < d; ++c) {
        b += q_abs[c] * key_bias[c];
        k += qd[c] * qd[c] * key_proxy[c];
      }
      bias_t[t] = b * c_hi;
      kappa_t[t] = k * inv_d;
    }
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
    load(t);
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

  // (G1) Theorem G's events: E_tau (every |zeta_t| <= sqrt(2 kappa_t x_tau), union over n,
  // failure delta/2) and four more, each failing with probability delta/8 (x = ln(8/delta)). The
  // nearest sums of the probabilistic part are inflated by `inflate` (THEORY.md 15.4).
  const double inflate = add_up(1.0, mul_up(4.0, gamma_up(n + 4 * d + 64)));
  double x_one = 0.0, z_lo_p = 0.0;
  if (probabilistic) {
    const double x_tau = log_up(div_up(4.0 * static_cast<double>(n), delta));
    x_one = log_up(div_up(8.0, delta));
    double tau_max = 0.0, zsum = 0.0, bias_mean = 0.0, proxy_mean = 0.0;
    for (std::size_t t = 0; t < n; ++t) {
      bias_t[t] = mul_up(bias_t[t], inflate);
      kappa_t[t] = mul_up(kappa_t[t], inflate);
      tau_t[t] = add_up(sqrt_up(mul_up(2.0 * x_tau, kappa_t[t])), bias_t[t]);
      tau_max = std::max(tau_max, tau_t[t]);
      zsum = add_down(zsum, mul_down(e_lo[t], exp_down(-tau_t[t])));
      bias_mean += e_hi[t] * bias_t[t];
      proxy_mean += e_hi[t] * e_hi[t] * kappa_t[t];
    }
    // Jensen: Z >= exp(-sum a~ delta) with sum a~ zeta sub-Gaussian of proxy sum a~^2 kappa.
    const double jensen = add_up(mul_up(bias_mean, inflate), sqrt_up(mul_up(2.0 * x_one, mul_up(proxy_mean, inflate))));
    z_lo_p = std::max({zsum, exp_down(-tau_max), exp_down(-jensen), 0.0});
  }
  double trace_l = 0.0, key_bias_sum = 0.0, q_mean = 0.0, q_square = 0.0, q_max = 0.0, q_bias = 0.0;

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
    load(t);
    for (std::size_t c = 0; c < d; ++c) {
      const double m = std::max(value[c] - lo[c], hi[c] - value[c]);
      scratch[c] = m;
      key_acc[c] += g * m;
      value_acc[c] += a_hi * value_radius[c];
      radius_max[c] = std::max(radius_max[c], value_radius[c]);
    }
    cap = std::max(cap, add_up(norm_up(scratch, d, 1), norm_up(value_radius, d, 0)));
    if (probabilistic) {
      // (G2) rho_t >= ||v^_t - o~||; the key part's trace, bias and quadratic sums; the value
      // part's proxies S_i with a_t <= A_t = min(1, w_t e^{tau_t} / Z_lo) (on the events).
      const double rho = norm_up(scratch, d, 1);
      const double grow = exp_up(tau_t[t]);
      const double w = w_hi;
      trace_l += w * w * kappa_t[t] * rho * rho;
      key_bias_sum += w * bias_t[t] * rho;
      const double omega = w * rho * grow;
      q_mean += omega * kappa_t[t];
      q_square += (omega * kappa_t[t]) * (omega * kappa_t[t]);
      q_max = std::max(q_max, omega * kappa_t[t]);
      q_bias += omega * bias_t[t] * bias_t[t];
      const double a_p = z_lo_p > 0.0 ? std::min(1.0, div_up(w * grow, z_lo_p)) : 1.0;
      for (std::size_t c = 0; c < d; ++c) {
        value_random_acc[c] += a_p * a_p * value_proxy[c];
        value_bias_acc[c] += a_p * value_bias[c];
        value_bias_max[c] = std::max(value_bias_max[c], value_bias[c]);
      }
    }
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
  GuardBoundTerms guard;
  guard.deterministic = terms;
  if (!probabilistic) return guard;

  // (G3) Laurent-Massart for the key part's linear term (lambda_max <= trace), its quadratic
  // term and the value part's random term; the bias terms are deterministic.
  const double lm = add_up(add_up(1.0, mul_up(2.0, sqrt_up(x_one))), mul_up(2.0, x_one));
  guard.key_linear = sqrt_up(mul_up(mul_up(trace_l, inflate), lm));
  guard.key_bias = mul_up(key_bias_sum, inflate);
  guard.key_quadratic = mul_up(add_up(add_up(add_up(q_mean, mul_up(2.0, sqrt_up(mul_up(x_one, q_square)))),
                                             mul_up(2.0 * x_one, q_max)),
                                      q_bias),
                               inflate);
  double s_sum = 0.0, s_square = 0.0, s_max = 0.0;
  for (std::size_t c = 0; c < d; ++c) {
    const double s_c = mul_up(value_random_acc[c], inflate);
    s_sum += s_c;
    s_square += s_c * s_c;
    s_max = std::max(s_max, s_c);
    scratch[c] = std::min(mul_up(value_bias_acc[c], inflate), value_bias_max[c]);
  }
  guard.value_random = sqrt_up(mul_up(add_up(add_up(s_sum, mul_up(2.0, sqrt_up(mul_up(x_one, s_square)))), mul_up(2.0 * x_one, s_max)),
                                      inflate));
  guard.value_bias = norm_up(scratch, d, 0);
  guard.normaliser_lo = z_lo_p;
  const double key_part = z_lo_p > 0.0 ? div_up(add_up(add_up(guard.key_linear, guard.key_bias), guard.key_quadratic), z_lo_p)
                                       : kInf;
  const double part = add_up(add_up(key_part, guard.value_random), guard.value_bias);
  // The deterministic bound holds always: the smaller of the two holds with probability >= 1 - delta.
  guard.probabilistic = std::min(add_up(terms.arithmetic, std::min(part, cap)), terms.total);
  return guard;
}

}  // namespace

DecodeBoundTerms decode_error_bound_terms(const StreamView& stream, std::int64_t positions, const float* q,
                                          const float* out) {
  return guard_terms(stream, positions, q, out, 0.0, nullptr).deterministic;
}

GuardBoundTerms decode_guard_terms(const StreamView& stream, std::int64_t positions, const float* q, const float* out,
                                   double delta) {
  HNF_ASSERT(delta > 0.0 && delta < 1.0, "a failure probability is in (0, 1)");
  return guard_terms(stream, positions, q, out, delta, nullptr);
}

void decode_guard_group(const StreamView& stream, std::int64_t positions, const float* q, const float* out, int group,
                        double delta, GuardBoundTerms* terms) {
  HNF_ASSERT(delta >= 0.0 && delta < 1.0 && group >= 1 && positions >= 1, "a group of rows and a failure probability in [0, 1)");
  const auto d = static_cast<std::size_t>(stream.head_dim);
  const auto n = static_cast<std::size_t>(positions);
  std::optional<DecodedRows> decoded;
  if (n * d <= kDecodeOnceLimit) decoded = decode_rows(stream, n);
  for (int g = 0; g < group; ++g) {
    const std::size_t at = static_cast<std::size_t>(g) * d;
    terms[g] = guard_terms(stream, positions, q + at, out + at, delta, decoded ? &*decoded : nullptr);
  }
}

double decode_error_bound(const StreamView& stream, std::int64_t positions, const float* q, const float* out) {
  return decode_error_bound_terms(stream, positions, q, out).total;
}

}  // namespace hnf::runtime
