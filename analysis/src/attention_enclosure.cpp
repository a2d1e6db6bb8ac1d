#include "hnf/analysis/attention_enclosure.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "hnf/analysis/interval.h"
#include "hnf/proofs/error.h"

namespace hnf::analysis {
namespace {

// Four independent partial sums: any summation order keeps the gamma_n bound, and this one
// lets the compiler overlap the additions.
double dot(const double* a, const double* b, std::size_t n) {
  double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0;
  std::size_t i = 0;
  for (; i + 4 <= n; i += 4) {
    s0 += a[i] * b[i];
    s1 += a[i + 1] * b[i + 1];
    s2 += a[i + 2] * b[i + 2];
    s3 += a[i + 3] * b[i + 3];
  }
  for (; i < n; ++i) s0 += a[i] * b[i];
  return (s0 + s1) + (s2 + s3);
}

}  // namespace

std::vector<double> row_norms_up(std::span<const double> rows, std::size_t d) {
  HNF_ASSERT(d > 0 && rows.size() % d == 0, "rows must be a whole number of rows of length d");
  std::vector<double> out(rows.size() / d);
  for (std::size_t t = 0; t < out.size(); ++t) out[t] = norm_up(rows.data() + t * d, d, 0);
  return out;
}

namespace {

// e_t = exp(s_t - shift) enclosed for every score, and the normaliser Z = sum_t e_t.
struct ShiftedExponentials {
  double gamma = 0.0;            // gamma_n of the n-term sums, rounded up
  double one_minus_gamma = 0.0;  // 1 - gamma, rounded down
  double z_lo = 0.0, z_hi = 0.0;
};

ShiftedExponentials shifted_exponentials(std::span<const double> s_lo, std::span<const double> s_hi, std::size_t n,
                                         double* e_lo /*[n]*/, double* e_hi /*[n]*/) {
  // Softmax is shift invariant; shifting by the largest upper score keeps every exponent <= 0.
  const double shift = *std::max_element(s_hi.begin(), s_hi.begin() + static_cast<std::ptrdiff_t>(n));
  double sum_lo = 0.0, sum_hi = 0.0;
  for (std::size_t t = 0; t < n; ++t) {
    e_lo[t] = exp_down(sub_down(s_lo[t], shift));
    e_hi[t] = exp_up(sub_up(s_hi[t], shift));
    sum_lo += e_lo[t];
    sum_hi += e_hi[t];
  }
  // Sums of nonnegative terms: |fl(S) - S| <= gamma S, so S in [fl(S)(1 - gamma), fl(S)/(1 - gamma)].
  ShiftedExponentials out;
  out.gamma = gamma_up(n);
  out.one_minus_gamma = sub_down(1.0, out.gamma);
  out.z_lo = mul_down(sum_lo, out.one_minus_gamma);
  out.z_hi = div_up(sum_hi, out.one_minus_gamma);
  HNF_ASSERT(out.z_lo > 0.0, "softmax normaliser enclosure touches zero");
  return out;
}

}  // namespace

void DoubleRows::read(std::size_t first, std::size_t count, double* out) const {
  HNF_ASSERT(first <= rows() && count <= rows() - first, "DoubleRows::read past the last row");
  std::copy_n(data_.data() + first * dim_, count * dim_, out);
}

// AVX2 clones of the two hot kernels where the CPU has it (the bounds hold for any
// operation order and with or without fused multiply-add).
__attribute__((target_clones("avx2", "default"))) void enclose_scores(std::span<const double> q, const RowSource& keys,
                                                                      std::span<const double> key_norms,
                                                                      std::size_t num_keys, std::span<double> s_lo,
                                                                      std::span<double> s_hi) {
  const std::size_t d = keys.dim();
  HNF_ASSERT(q.size() == d && keys.rows() >= num_keys && key_norms.size() >= num_keys && s_lo.size() >= num_keys &&
                 s_hi.size() >= num_keys,
             "enclose_scores: shape mismatch");
  // 1/sqrt(d) is inexact for most d: enclose it.
  const double c_lo = div_down(1.0, sqrt_up(static_cast<double>(d)));
  const double c_hi = div_up(1.0, sqrt_down(static_cast<double>(d)));
  const double q_norm = norm_up(q.data(), d, 0);
  const double gamma_d = gamma_up(d);
  std::vector<double> chunk(kReadRows * d);
  for (std::size_t first = 0; first < num_keys; first += kReadRows) {
    const std::size_t count = std::min(kReadRows, num_keys - first);
    keys.read(first, count, chunk.data());
    for (std::size_t r = 0; r < count; ++r) {
      const std::size_t t = first + r;
      const double computed = dot(q.data(), chunk.data() + r * d, d);
      // |computed - q.k| <= gamma_d sum|q_i k_i| <= gamma_d ||q|| ||k|| (Cauchy-Schwarz).
      const double err = mul_up(gamma_d, mul_up(q_norm, key_norms[t]));
      const double dot_lo = sub_down(computed, err);
      const double dot_hi = add_up(computed, err);
      s_lo[t] = dot_lo >= 0.0 ? mul_down(dot_lo, c_lo) : mul_down(dot_lo, c_hi);
      s_hi[t] = dot_hi >= 0.0 ? mul_up(dot_hi, c_hi) : mul_up(dot_hi, c_lo);
    }
  }
}

void enclose_scores(std::span<const double> q, std::span<const double> keys, std::span<const double> key_norms,
                    std::size_t d, std::size_t num_keys, std::span<double> s_lo, std::span<double> s_hi) {
  HNF_ASSERT(d > 0 && keys.size() >= num_keys * d, "enclose_scores: shape mismatch");
  enclose_scores(q, DoubleRows(keys.first(num_keys * d), d), key_norms, num_keys, s_lo, s_hi);
}

__attribute__((target_clones("avx2", "default"))) OutputEnclosure enclose_softmax_output(
    std::span<const double> s_lo, std::span<const double> s_hi, const RowSource& values, std::size_t num_keys,
    std::vector<double>& exp_scratch) {
  const std::size_t d = values.dim();
  HNF_ASSERT(num_keys > 0 && s_lo.size() >= num_keys && s_hi.size() >= num_keys && values.rows() >= num_keys,
             "enclose_softmax_output: shape mismatch");
  exp_scratch.resize(2 * num_keys);
  double* e_lo = exp_scratch.data();
  double* e_hi = exp_scratch.data() + num_keys;
  const ShiftedExponentials e = shifted_exponentials(s_lo, s_hi, num_keys, e_lo, e_hi);
  const double gamma = e.gamma;
  const double one_minus_gamma = e.one_minus_gamma;
  const double z_lo = e.z_lo;
  const double z_hi = e.z_hi;

  // Numerator N_i = sum_t e_t v_ti with e_t in [e_lo, e_hi]: per component, the smallest and
  // largest product of each term, plus sum e_hi |v| for the rounding error of the sums.
  std::vector<double> lo(d, 0.0), hi(d, 0.0), magnitude(d, 0.0), chunk(kReadRows * d);
  for (std::size_t first = 0; first < num_keys; first += kReadRows) {
    const std::size_t count = std::min(kReadRows, num_keys - first);
    values.read(first, count, chunk.data());
    for (std::size_t r = 0; r < count; ++r) {
      const double el = e_lo[first + r];
      const double eh = e_hi[first + r];
      const double* row = chunk.data() + r * d;
      for (std::size_t i = 0; i < d; ++i) {
        const double a = el * row[i];
        const double b = eh * row[i];
        lo[i] += std::min(a, b);
        hi[i] += std::max(a, b);
        magnitude[i] += eh * std::fabs(row[i]);
      }
    }
  }
  const double underflow = mul_up(static_cast<double>(num_keys), std::numeric_limits<double>::denorm_min());
  OutputEnclosure out{std::vector<double>(d), std::vector<double>(d)};
  for (std::size_t i = 0; i < d; ++i) {
    // The exact sum of |products| is <= fl(magnitude)/(1 - gamma); its rounding error bound
    // is gamma times that.
    // Products that underflow into the subnormal range carry an absolute error of up to
    // 2^-1075 each, which gamma does not cover: add num_keys * 2^-1074.
    const double err = add_up(mul_up(gamma, div_up(magnitude[i], one_minus_gamma)), underflow);
    const double n_lo = sub_down(lo[i], err);
    const double n_hi = add_up(hi[i], err);
    out.lo[i] = n_lo >= 0.0 ? div_down(n_lo, z_hi) : div_down(n_lo, z_lo);
    out.hi[i] = n_hi >= 0.0 ? div_up(n_hi, z_lo) : div_up(n_hi, z_hi);
  }
  return out;
}

OutputEnclosure enclose_softmax_output(std::span<const double> s_lo, std::span<const double> s_hi,
                                       std::span<const double> values, std::size_t d, std::size_t num_keys,
                                       std::vector<double>& exp_scratch) {
  HNF_ASSERT(d > 0 && values.size() >= num_keys * d, "enclose_softmax_output: shape mismatch");
  return enclose_softmax_output(s_lo, s_hi, DoubleRows(values.first(num_keys * d), d), num_keys, exp_scratch);
}

OutputEnclosure enclose_attention_output(std::span<const double> q, const RowSource& keys,
                                         std::span<const double> key_norms, const RowSource& values,
                                         std::size_t num_keys) {
  std::vector<double> s_lo(num_keys), s_hi(num_keys), scratch;
  enclose_scores(q, keys, key_norms, num_keys, s_lo, s_hi);
  return enclose_softmax_output(s_lo, s_hi, values, num_keys, scratch);
}

OutputEnclosure enclose_attention_output(std::span<const double> q, std::span<const double> keys,
                                         std::span<const double> key_norms, std::span<const double> values,
                                         std::size_t d, std::size_t num_keys) {
  HNF_ASSERT(d > 0 && keys.size() >= num_keys * d && values.size() >= num_keys * d,
             "enclose_attention_output: shape mismatch");
  return enclose_attention_output(q, DoubleRows(keys.first(num_keys * d), d), key_norms,
                                  DoubleRows(values.first(num_keys * d), d), num_keys);
}

double difference_norm_up(const OutputEnclosure& a, const OutputEnclosure& b) {
  HNF_ASSERT(a.lo.size() == b.lo.size(), "difference_norm_up: enclosures of different dimension");
  // Component i of any difference lies in [a.lo - b.hi, a.hi - b.lo]; its largest magnitude is
  // one nearest subtraction away from exact (one input rounding for norm_up).
  std::vector<double> largest(a.lo.size());
  for (std::size_t i = 0; i < a.lo.size(); ++i)
    largest[i] = std::max(std::fabs(a.lo[i] - b.hi[i]), std::fabs(a.hi[i] - b.lo[i]));
  return norm_up(largest.data(), largest.size(), 1);
}

void enclose_softmax_weights(std::span<const double> s_lo, std::span<const double> s_hi, std::size_t num_keys,
                             std::span<double> w_lo, std::span<double> w_hi) {
  HNF_ASSERT(num_keys > 0 && s_lo.size() >= num_keys && s_hi.size() >= num_keys && w_lo.size() >= num_keys &&
                 w_hi.size() >= num_keys,
             "enclose_softmax_weights: shape mismatch");
  const ShiftedExponentials e = shifted_exponentials(s_lo, s_hi, num_keys, w_lo.data(), w_hi.data());
  for (std::size_t t = 0; t < num_keys; ++t) {
    w_lo[t] = std::max(0.0, div_down(w_lo[t], e.z_hi));
    w_hi[t] = std::min(1.0, div_up(w_hi[t], e.z_lo));
  }
}

double difference_norm_down(const OutputEnclosure& a, const OutputEnclosure& b) {
  HNF_ASSERT(a.lo.size() == b.lo.size(), "difference_norm_down: enclosures of different dimension");
  double sum = 0.0;
  for (std::size_t i = 0; i < a.lo.size(); ++i) {
    const double gap = std::max({0.0, sub_down(a.lo[i], b.hi[i]), sub_down(b.lo[i], a.hi[i])});
    if (gap > 0.0) sum = add_down(sum, mul_down(gap, gap));  // mul_down(0, 0) would step below 0
  }
  return sum > 0.0 ? sqrt_down(sum) : 0.0;
}

double distance_up(std::span<const double> v, const OutputEnclosure& e) {
  HNF_ASSERT(v.size() == e.lo.size(), "distance_up: dimension mismatch");
  std::vector<double> largest(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) largest[i] = std::max(std::fabs(v[i] - e.hi[i]), std::fabs(v[i] - e.lo[i]));
  return norm_up(largest.data(), largest.size(), 1);
}

double max_width_up(const OutputEnclosure& e) {
  double widest = 0.0;
  for (std::size_t i = 0; i < e.lo.size(); ++i) widest = std::max(widest, sub_up(e.hi[i], e.lo[i]));
  return widest;
}

}  // namespace hnf::analysis
