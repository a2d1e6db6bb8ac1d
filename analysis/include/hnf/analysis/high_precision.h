// High-precision reference evaluation with MPFR: a small RAII wrapper of one MPFR number and a
// reference attention computation used by the soundness tests (an analytic bound must contain
// what this computes). Nothing here depends on the FPU rounding mode: MPFR rounds in software,
// each operation to the direction it is given.
#pragma once

#include <cstddef>
#include <span>
#include <vector>

#include <mpfr.h>

namespace hnf::analysis {

// Owner of one mpfr_t (RAII: initialised in the constructor, cleared in the destructor). Use
// get() with the mpfr_* functions. Copies (construction and assignment) take the source's
// precision and value exactly; a moved-from object stays valid with an unspecified value.
class MpfrFloat {
 public:
  // Value +0 at `precision_bits` (MPFR_PREC_MIN..MPFR_PREC_MAX).
  explicit MpfrFloat(int precision_bits);
  // The double `value`, exactly when precision_bits >= 53 (otherwise rounded to nearest).
  MpfrFloat(int precision_bits, double value);
  MpfrFloat(const MpfrFloat& other);
  MpfrFloat(MpfrFloat&& other) noexcept;
  MpfrFloat& operator=(const MpfrFloat& other);  // takes the source's precision
  MpfrFloat& operator=(MpfrFloat&& other) noexcept;
  ~MpfrFloat();

  [[nodiscard]] mpfr_ptr get() noexcept { return value_; }
  [[nodiscard]] mpfr_srcptr get() const noexcept { return value_; }
  [[nodiscard]] int precision() const noexcept;
  // The value rounded to a double in direction `rnd` (MPFR_RNDN nearest, MPFR_RNDD toward -inf,
  // MPFR_RNDU toward +inf): with RNDD/RNDU the result is a rigorous lower/upper bound.
  [[nodiscard]] double to_double(mpfr_rnd_t rnd = MPFR_RNDN) const noexcept;

 private:
  mpfr_t value_;
};

// Exact-input attention for one head and one query, evaluated with MPFR at `precision_bits`:
// o = sum_t softmax(q.k_t / sqrt(d))_t v_t over t < num_keys.
// q [d]; keys, values [num_keys, d] row-major. Returns o rounded to nearest double.
// Rounding (all to nearest at `precision_bits` >= 53): each dot product q.k_t is the exact sum of
// exact products rounded once; then one rounding each for the 1/sqrt(d) scaling, the shift by the
// maximum score and exp; each weighted sum sum_t e_t v_tj and the normaliser sum_t e_t are exact
// sums of exact products rounded once; one division. The relative error of o is a few units of
// 2^-precision_bits times the condition of the weighted sum: far below a double's ulp at the
// default 128 bits. Preconditions (HNF_ASSERT, hnf::proofs::Error kInternal): d >= 1,
// num_keys >= 1, keys and values of equal size num_keys * d, all inputs finite.
// Cost: about 4 ms for 1,000 keys x d = 64 (1,000 mpfr_exp calls are ~1 ms of it).
[[nodiscard]] std::vector<double> attention_output_mpfr(std::span<const double> q, std::span<const double> keys,
                                                        std::span<const double> values, std::size_t d,
                                                        int precision_bits = 128);

// ||o(q; keys_a, values_a) - o(q; keys_b, values_b)||_2 evaluated entirely in MPFR (the
// difference is taken before rounding), rounded to nearest double. Same shapes for a and b
// (the number of keys may differ between a and b; each side follows the rules above).
[[nodiscard]] double attention_difference_norm_mpfr(std::span<const double> q, std::span<const double> keys_a,
                                                    std::span<const double> values_a,
                                                    std::span<const double> keys_b,
                                                    std::span<const double> values_b, std::size_t d,
                                                    int precision_bits = 128);

}  // namespace hnf::analysis
