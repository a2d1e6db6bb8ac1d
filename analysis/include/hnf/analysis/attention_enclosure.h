// Rigorous enclosures of one attention head's output for one query, fast enough to run over
// every recorded query of a long trace (proofs/THEORY.md, section "Enclosing attention").
//
// The inputs are exact reals stored as doubles (trace values are floats or halves, quantized
// values are dyadic rationals that a double holds exactly). All arithmetic runs in
// round-to-nearest; every rounding is accounted for either by a one-ulp step (nextafter) or by
// the a-priori bound gamma_n * sum |x_i y_i| of a floating-point dot product of length n (any
// summation order), so the returned intervals contain the exact real attention output.
#pragma once

#include <cstddef>
#include <span>
#include <vector>

#include "hnf/proofs/directed.h"

namespace hnf::analysis {

// Per component i of the exact output o = sum_t softmax(s)_t v_t: lo[i] <= o_i <= hi[i].
struct OutputEnclosure {
  std::vector<double> lo;  // [head_dim], rounded toward -inf
  std::vector<double> hi;  // [head_dim], rounded toward +inf
};

// gamma_up(n) (gamma_n = n u / (1 - n u), rounded up) and norm_up(x, n, input_roundings) (an
// upper bound of the norm of reals within (1 + u)^input_roundings of x): one implementation,
// in hnf/proofs/directed.h (THEORY.md L2, L4), shared with the runtime.
using proofs::gamma_up;
using proofs::norm_up;

// A [rows, dim] matrix of exact reals read back as doubles a few rows at a time, so that a
// long trace's keys and values can stay in a compact form (the trace's 2-byte elements, or a
// quantized block's codes) while the enclosures below run over them (kv_rows.h).
class RowSource {
 public:
  virtual ~RowSource() = default;
  [[nodiscard]] virtual std::size_t rows() const noexcept = 0;
  [[nodiscard]] virtual std::size_t dim() const noexcept = 0;
  // Rows [first, first + count) as exact doubles: out [count, dim].
  virtual void read(std::size_t first, std::size_t count, double* out) const = 0;
};

// Rows held as doubles already: data [rows, dim], borrowed.
class DoubleRows final : public RowSource {
 public:
  DoubleRows(std::span<const double> data, std::size_t dim) : data_(data), dim_(dim) {}
  [[nodiscard]] std::size_t rows() const noexcept override { return dim_ == 0 ? 0 : data_.size() / dim_; }
  [[nodiscard]] std::size_t dim() const noexcept override { return dim_; }
  void read(std::size_t first, std::size_t count, double* out) const override;

 private:
  std::span<const double> data_;
  std::size_t dim_;
};

// Rows a RowSource yields per read in the enclosures: [kReadRows, dim] doubles of scratch.
inline constexpr std::size_t kReadRows = 64;

// Upper bound of the Euclidean norm of each row: rows [n, d] -> out [n], rounded toward +inf.
[[nodiscard]] std::vector<double> row_norms_up(std::span<const double> rows, std::size_t d);

// Scores s_t = q.k_t / sqrt(d) of the first `num_keys` keys, enclosed: s_lo[t] <= s_t <= s_hi[t].
// q [d]; keys [>= num_keys, d] row-major; key_norms [>= num_keys] upper bounds of ||k_t||_2
// (row_norms_up). s_lo, s_hi [>= num_keys].
void enclose_scores(std::span<const double> q, std::span<const double> keys, std::span<const double> key_norms,
                    std::size_t d, std::size_t num_keys, std::span<double> s_lo, std::span<double> s_hi);

// The exact output o = sum_{t < num_keys} softmax(s)_t v_t for any scores with
// s_lo[t] <= s_t <= s_hi[t], enclosed componentwise. values [>= num_keys, d]; scratch space is
// reused between calls through `exp_scratch` (resized as needed).
[[nodiscard]] OutputEnclosure enclose_softmax_output(std::span<const double> s_lo, std::span<const double> s_hi,
                                                     std::span<const double> values, std::size_t d,
                                                     std::size_t num_keys, std::vector<double>& exp_scratch);

// The same over rows read from a RowSource (the span versions above call these).
void enclose_scores(std::span<const double> q, const RowSource& keys, std::span<const double> key_norms,
                    std::size_t num_keys, std::span<double> s_lo, std::span<double> s_hi);
[[nodiscard]] OutputEnclosure enclose_softmax_output(std::span<const double> s_lo, std::span<const double> s_hi,
                                                     const RowSource& values, std::size_t num_keys,
                                                     std::vector<double>& exp_scratch);
[[nodiscard]] OutputEnclosure enclose_attention_output(std::span<const double> q, const RowSource& keys,
                                                       std::span<const double> key_norms, const RowSource& values,
                                                       std::size_t num_keys);

// Convenience: enclose_scores then enclose_softmax_output.
[[nodiscard]] OutputEnclosure enclose_attention_output(std::span<const double> q, std::span<const double> keys,
                                                       std::span<const double> key_norms,
                                                       std::span<const double> values, std::size_t d,
                                                       std::size_t num_keys);

// The softmax weights a_t = e^{s_t} / sum_u e^{s_u} for any scores with s_lo <= s <= s_hi,
// enclosed: w_lo[t] <= a_t <= w_hi[t] (t < num_keys). Used by the S2 bound.
void enclose_softmax_weights(std::span<const double> s_lo, std::span<const double> s_hi, std::size_t num_keys,
                             std::span<double> w_lo, std::span<double> w_hi);

// Upper bound (rounded toward +inf) of sup ||x - y||_2 over x in a, y in b.
[[nodiscard]] double difference_norm_up(const OutputEnclosure& a, const OutputEnclosure& b);

// Lower bound (rounded toward -inf) of inf ||x - y||_2 over x in a, y in b: a rigorous lower
// bound of the actual difference, against which a bound's sharpness is measured.
[[nodiscard]] double difference_norm_down(const OutputEnclosure& a, const OutputEnclosure& b);

// Upper bound (rounded toward +inf) of sup ||v - x||_2 over x in e; v [d].
[[nodiscard]] double distance_up(std::span<const double> v, const OutputEnclosure& e);

// Upper bound (rounded toward +inf) of the largest component width of an enclosure: how much
// of a reported bound is rounding slack rather than quantization error.
[[nodiscard]] double max_width_up(const OutputEnclosure& e);

}  // namespace hnf::analysis
