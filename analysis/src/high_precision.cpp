#include "hnf/analysis/high_precision.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <optional>
#include <utility>

#include "hnf/proofs/error.h"

namespace hnf::analysis {

MpfrFloat::MpfrFloat(int precision_bits) {
  HNF_ASSERT(precision_bits >= MPFR_PREC_MIN && precision_bits <= MPFR_PREC_MAX, "MPFR precision out of range");
  mpfr_init2(value_, precision_bits);
  mpfr_set_zero(value_, 1);
}

MpfrFloat::MpfrFloat(int precision_bits, double value) : MpfrFloat(precision_bits) {
  mpfr_set_d(value_, value, MPFR_RNDN);
}

MpfrFloat::MpfrFloat(const MpfrFloat& other) {
  mpfr_init2(value_, mpfr_get_prec(other.value_));
  mpfr_set(value_, other.value_, MPFR_RNDN);  // same precision: exact
}

// mpfr_t has no "empty" state: the moved-from side gets a fresh NaN of the same precision.
MpfrFloat::MpfrFloat(MpfrFloat&& other) noexcept {
  mpfr_init2(value_, mpfr_get_prec(other.value_));
  mpfr_swap(value_, other.value_);
}

MpfrFloat& MpfrFloat::operator=(const MpfrFloat& other) {
  if (this != &other) {
    mpfr_set_prec(value_, mpfr_get_prec(other.value_));
    mpfr_set(value_, other.value_, MPFR_RNDN);
  }
  return *this;
}

MpfrFloat& MpfrFloat::operator=(MpfrFloat&& other) noexcept {
  if (this != &other) mpfr_swap(value_, other.value_);
  return *this;
}

MpfrFloat::~MpfrFloat() { mpfr_clear(value_); }

int MpfrFloat::precision() const noexcept { return static_cast<int>(mpfr_get_prec(value_)); }

double MpfrFloat::to_double(mpfr_rnd_t rnd) const noexcept { return mpfr_get_d(value_, rnd); }

namespace {

// The fast paths below read and build MPFR significands limb by limb (MPFR's documented custom
// interface), which assumes 64-bit limbs without nail bits.
static_assert(GMP_NUMB_BITS == 64 && GMP_NAIL_BITS == 0 && sizeof(mp_limb_t) == 8, "64-bit GMP limbs expected");
__extension__ using Uint128 = unsigned __int128;  // __extension__: GCC's type, silent under -Wpedantic

// |x| = mantissa * 2^exponent with an integer mantissa < 2^53 (subnormals included).
struct SplitDouble {
  std::uint64_t mantissa;
  int exponent;
  bool negative;
};

SplitDouble split(double x) {
  const auto bits = std::bit_cast<std::uint64_t>(x);
  const auto biased = static_cast<int>((bits >> 52) & 0x7ff);
  std::uint64_t mantissa = bits & ((std::uint64_t{1} << 52) - 1);
  if (biased != 0) mantissa |= std::uint64_t{1} << 52;
  return {mantissa, (biased == 0 ? 1 : biased) - 1075, (bits >> 63) != 0};
}

// `count` read-only MPFR numbers of one precision whose significands live in this object's limbs
// (MPFR's documented custom interface). Building an exact product of two doubles, or of an MPFR
// number and a double, takes a few nanoseconds and no allocation, where mpfr_mul_d costs ~50 ns;
// mpfr_sum then adds a whole array with one correct rounding. Never pass these numbers to
// mpfr_clear or mpfr_set_prec, or as a destination.
class MpfrViews {
 public:
  MpfrViews(std::size_t count, mpfr_prec_t precision)
      : precision_(precision),
        limbs_per_value_(mpfr_custom_get_size(precision) / sizeof(mp_limb_t)),
        limbs_(count * limbs_per_value_),
        values_(count),
        pointers_(count) {
    for (std::size_t i = 0; i < count; ++i) {
      pointers_[i] = &values_[i];
      set_zero(i, false);
    }
  }

  [[nodiscard]] std::size_t size() const noexcept { return values_.size(); }
  [[nodiscard]] const mpfr_ptr* pointers() const noexcept { return pointers_.data(); }

  // Entry i = a * b exactly: the two 53-bit mantissas multiply into at most 106 bits, which a
  // precision of 128 holds.
  void set_product(std::size_t i, double a, double b) {
    const SplitDouble sa = split(a);
    const SplitDouble sb = split(b);
    Uint128 product = Uint128{sa.mantissa} * sb.mantissa;
    const bool negative = sa.negative != sb.negative;
    if (product == 0) return set_zero(i, negative);
    const auto high = static_cast<std::uint64_t>(product >> 64);
    const int shift = high != 0 ? std::countl_zero(high) : 64 + std::countl_zero(static_cast<std::uint64_t>(product));
    product <<= shift;
    mp_limb_t* limbs = limbs_.data() + i * limbs_per_value_;
    limbs[0] = static_cast<mp_limb_t>(product);
    limbs[1] = static_cast<mp_limb_t>(product >> 64);
    // MPFR's significand is in [1/2, 1): |a b| = (limbs / 2^128) * 2^(128 - shift + ea + eb).
    set_regular(i, negative, 128 - shift + sa.exponent + sb.exponent);
  }

  // Entry i = x * v exactly, for x regular or zero with n limbs, this object's precision being
  // 64 (n + 1): an n-limb significand times a 64-bit multiplier fits in n + 1 limbs.
  void set_product(std::size_t i, mpfr_srcptr x, double v) {
    const SplitDouble sv = split(v);
    const bool negative = (mpfr_signbit(x) != 0) != sv.negative;
    if (mpfr_zero_p(x) || sv.mantissa == 0) return set_zero(i, negative);
    const auto n = static_cast<mp_size_t>(limbs_per_value_ - 1);
    // Left-align the multiplier: with both factors' top bits set, the top limb of the product is
    // >= 2^62, so at most one more shift normalises it.
    const int v_shift = std::countl_zero(sv.mantissa);
    mp_limb_t* limbs = limbs_.data() + i * limbs_per_value_;
    limbs[n] = mpn_mul_1(limbs, static_cast<mp_srcptr>(mpfr_custom_get_significand(x)), n, sv.mantissa << v_shift);
    const int shift = std::countl_zero(limbs[n]);
    if (shift != 0) mpn_lshift(limbs, limbs, n + 1, static_cast<unsigned>(shift));
    // x = (X / 2^(64n)) 2^ex, v = (M / 2^64) 2^(64 - v_shift + ev): the product's significand is
    // X M / 2^(64(n+1)) scaled by 2^shift.
    const mpfr_exp_t exponent = mpfr_get_exp(x) + 64 - v_shift + sv.exponent - shift;
    // Below MPFR's exponent range (|x v| < 2^-1073741823, x being an underflowed softmax term):
    // not representable, and far below any precision that matters here.
    if (exponent < emin_) return set_zero(i, negative);
    set_regular(i, negative, exponent);
  }

 private:
  void set_zero(std::size_t i, bool negative) {
    mpfr_custom_init_set(&values_[i], negative ? -MPFR_ZERO_KIND : MPFR_ZERO_KIND, 0, precision_,
                         limbs_.data() + i * limbs_per_value_);
  }
  void set_regular(std::size_t i, bool negative, mpfr_exp_t exponent) {
    mpfr_custom_init_set(&values_[i], negative ? -MPFR_REGULAR_KIND : MPFR_REGULAR_KIND, exponent, precision_,
                         limbs_.data() + i * limbs_per_value_);
  }

  mpfr_prec_t precision_;
  mpfr_exp_t emin_ = mpfr_get_emin();  // read once: a thread-local lookup in MPFR
  std::size_t limbs_per_value_;
  std::vector<mp_limb_t> limbs_;
  std::vector<__mpfr_struct> values_;
  std::vector<mpfr_ptr> pointers_;
};

// All MPFR variables of one call, allocated once (per key for the scores and exact products, per
// component for the outputs), so the inner loops only run arithmetic. Every sum is an mpfr_sum of
// exact products: the dot products q.k_t and the weighted sums are each rounded once.
class AttentionEvaluator {
 public:
  AttentionEvaluator(std::span<const double> q, std::size_t d, int precision_bits)
      : q_(q.begin(), q.end()), d_(d), prec_(precision_bits), products_(d, 128), acc_(precision_bits),
        max_(precision_bits), sum_(precision_bits), inv_sqrt_d_(precision_bits) {
    HNF_ASSERT(precision_bits >= 53, "attention MPFR reference needs at least 53 bits of precision");
    HNF_ASSERT(d >= 1, "attention MPFR reference: head dimension must be >= 1");
    HNF_ASSERT(q.size() == d, "attention MPFR reference: q must have d entries");
    for (const double x : q) HNF_ASSERT(std::isfinite(x), "attention MPFR reference: q must be finite");
    mpfr_set_ui(inv_sqrt_d_.get(), static_cast<unsigned long>(d), MPFR_RNDN);
    mpfr_rec_sqrt(inv_sqrt_d_.get(), inv_sqrt_d_.get(), MPFR_RNDN);
  }

  // out (d entries, precision prec_) = sum_t softmax(q.k_t / sqrt(d))_t v_t, unrounded to double.
  void evaluate(std::span<const double> keys, std::span<const double> values, std::vector<MpfrFloat>& out) {
    HNF_ASSERT(keys.size() == values.size(), "attention MPFR reference: keys and values must have equal shapes");
    HNF_ASSERT(keys.size() % d_ == 0 && !keys.empty(), "attention MPFR reference: keys must be [num_keys >= 1, d]");
    for (const double x : keys) HNF_ASSERT(std::isfinite(x), "attention MPFR reference: keys must be finite");
    for (const double x : values) HNF_ASSERT(std::isfinite(x), "attention MPFR reference: values must be finite");
    const std::size_t num_keys = keys.size() / d_;
    while (scores_.size() < num_keys) scores_.emplace_back(prec_);
    score_pointers_.clear();  // after the growth: reallocation moves the mpfr_t structs
    for (MpfrFloat& x : scores_) score_pointers_.push_back(x.get());
    if (!weighted_ || weighted_->size() != num_keys) {
      const auto limbs = static_cast<mpfr_prec_t>(mpfr_custom_get_size(prec_) / sizeof(mp_limb_t));
      weighted_.emplace(num_keys, 64 * (limbs + 1));
    }
    out.clear();
    for (std::size_t j = 0; j < d_; ++j) out.emplace_back(prec_);

    for (std::size_t t = 0; t < num_keys; ++t) {
      for (std::size_t i = 0; i < d_; ++i) products_.set_product(i, q_[i], keys[t * d_ + i]);
      mpfr_sum(acc_.get(), products_.pointers(), d_, MPFR_RNDN);
      mpfr_mul(scores_[t].get(), acc_.get(), inv_sqrt_d_.get(), MPFR_RNDN);
      if (t == 0 || mpfr_greater_p(scores_[t].get(), max_.get())) mpfr_set(max_.get(), scores_[t].get(), MPFR_RNDN);
    }
    // Softmax shifted by the maximum score: every exponent is <= 0. (MPFR's exponent range would
    // not overflow anyway; the shift mirrors what the analysed implementations do.) An exponent
    // below MPFR's range underflows to an exact 0, which the products below handle.
    for (std::size_t t = 0; t < num_keys; ++t) {
      mpfr_sub(scores_[t].get(), scores_[t].get(), max_.get(), MPFR_RNDN);
      mpfr_exp(scores_[t].get(), scores_[t].get(), MPFR_RNDN);
    }
    mpfr_sum(sum_.get(), score_pointers_.data(), num_keys, MPFR_RNDN);
    for (std::size_t j = 0; j < d_; ++j) {
      for (std::size_t t = 0; t < num_keys; ++t) weighted_->set_product(t, scores_[t].get(), values[t * d_ + j]);
      mpfr_sum(out[j].get(), weighted_->pointers(), num_keys, MPFR_RNDN);
      mpfr_div(out[j].get(), out[j].get(), sum_.get(), MPFR_RNDN);
    }
  }

 private:
  std::vector<double> q_;
  std::size_t d_;
  int prec_;
  std::vector<MpfrFloat> scores_;  // the scores, then exp(score - max) in place
  std::vector<mpfr_ptr> score_pointers_;
  MpfrViews products_;                 // q_i * k_ti, exact at 128 bits
  std::optional<MpfrViews> weighted_;  // e_t * v_tj for one j, exact
  MpfrFloat acc_;
  MpfrFloat max_;
  MpfrFloat sum_;
  MpfrFloat inv_sqrt_d_;
};

}  // namespace

std::vector<double> attention_output_mpfr(std::span<const double> q, std::span<const double> keys,
                                          std::span<const double> values, std::size_t d, int precision_bits) {
  AttentionEvaluator evaluator(q, d, precision_bits);
  std::vector<MpfrFloat> out;
  evaluator.evaluate(keys, values, out);
  std::vector<double> result;
  result.reserve(d);
  for (const MpfrFloat& x : out) result.push_back(x.to_double(MPFR_RNDN));
  return result;
}

double attention_difference_norm_mpfr(std::span<const double> q, std::span<const double> keys_a,
                                      std::span<const double> values_a, std::span<const double> keys_b,
                                      std::span<const double> values_b, std::size_t d, int precision_bits) {
  AttentionEvaluator evaluator(q, d, precision_bits);
  std::vector<MpfrFloat> out_a;
  std::vector<MpfrFloat> out_b;
  evaluator.evaluate(keys_a, values_a, out_a);
  evaluator.evaluate(keys_b, values_b, out_b);
  MpfrFloat sum_sq(precision_bits);
  MpfrFloat diff(precision_bits);
  for (std::size_t j = 0; j < d; ++j) {
    mpfr_sub(diff.get(), out_a[j].get(), out_b[j].get(), MPFR_RNDN);
    mpfr_sqr(diff.get(), diff.get(), MPFR_RNDN);
    mpfr_add(sum_sq.get(), sum_sq.get(), diff.get(), MPFR_RNDN);
  }
  mpfr_sqrt(sum_sq.get(), sum_sq.get(), MPFR_RNDN);
  return sum_sq.to_double(MPFR_RNDN);
}

}  // namespace hnf::analysis
