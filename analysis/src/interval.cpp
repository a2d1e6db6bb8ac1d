#include "hnf/analysis/interval.h"

#include <algorithm>
#include <cfenv>
#include <string>

#include "hnf/proofs/error.h"

namespace hnf::analysis {

namespace interval_detail {

void ThrowEmptyInterval::operator()() const {
  throw proofs::Error(proofs::ErrorKind::kInternal,
                      "interval arithmetic: an operation produced an empty interval (lower > upper, sqrt of a "
                      "negative interval or division by [0,0])");
}

void ThrowNanInterval::operator()() const {
  throw proofs::Error(proofs::ErrorKind::kInternal, "interval arithmetic: NaN used as an interval endpoint");
}

}  // namespace interval_detail

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// libm's accuracy guarantee (< 1 ulp) holds in round-to-nearest only. Boost's operators restore
// the caller's mode on exit, so this is normally a no-op read of the control word; a caller that
// left a directed mode set gets nearest for the duration of the call and its mode back after.
class NearestRoundingScope {
 public:
  NearestRoundingScope() noexcept : saved_(std::fegetround()) {
    if (saved_ != FE_TONEAREST) std::fesetround(FE_TONEAREST);
  }
  ~NearestRoundingScope() {
    if (saved_ != FE_TONEAREST) std::fesetround(saved_);
  }
  NearestRoundingScope(const NearestRoundingScope&) = delete;
  NearestRoundingScope& operator=(const NearestRoundingScope&) = delete;

 private:
  int saved_;
};

}  // namespace

Interval exp(const Interval& i) {
  const NearestRoundingScope nearest;
  return Interval(exp_down(i.lower()), exp_up(i.upper()));
}

Interval log(const Interval& i) {
  if (!(i.lower() >= 0.0)) {
    throw proofs::Error(proofs::ErrorKind::kInternal,
                        "interval log: the argument's lower bound " + std::to_string(i.lower()) +
                            " is negative; log is undefined there");
  }
  const NearestRoundingScope nearest;
  return Interval(log_down(i.lower()), log_up(i.upper()));
}

double magnitude_up(const Interval& i) noexcept { return std::max(-i.lower(), i.upper()); }

std::vector<Interval> softmax_weighted_sum(std::span<const Interval> scores, std::span<const double> values,
                                           std::size_t d) {
  const std::size_t num = scores.size();
  HNF_ASSERT(num >= 1, "softmax_weighted_sum needs at least one score");
  HNF_ASSERT(d >= 1, "softmax_weighted_sum needs d >= 1");
  HNF_ASSERT(values.size() / d == num && values.size() % d == 0, "softmax_weighted_sum: values must be [T, d]");
  for (const double v : values) HNF_ASSERT(std::isfinite(v), "softmax_weighted_sum: values must be finite");

  const NearestRoundingScope nearest;  // the scalar helpers below need round-to-nearest
  double shift = -kInf;
  for (const Interval& s : scores) shift = std::max(shift, s.upper());
  HNF_ASSERT(std::isfinite(shift), "softmax_weighted_sum: score upper bounds must be finite");

  // e_t = exp(s_t - shift) in [e_lo, e_hi]. The exact s_t - shift is <= 0, hence e_t <= 1: both
  // clamps are exact facts, and they keep e_t * v from overflowing.
  std::vector<double> e_lo(num);
  std::vector<double> e_hi(num);
  double z_lo = 0.0;
  double z_hi = 0.0;
  for (std::size_t t = 0; t < num; ++t) {
    e_lo[t] = exp_down(sub_down(scores[t].lower(), shift));
    e_hi[t] = std::min(exp_up(std::min(sub_up(scores[t].upper(), shift), 0.0)), 1.0);
    z_lo = add_down(z_lo, e_lo[t]);
    z_hi = add_up(z_hi, e_hi[t]);
  }
  z_lo = std::max(z_lo, 0.0);  // the exact Z is positive; a negative lower bound is just loose

  std::vector<Interval> out;
  out.reserve(d);
  for (std::size_t j = 0; j < d; ++j) {
    double n_lo = 0.0;
    double n_hi = 0.0;
    double v_min = kInf;
    double v_max = -kInf;
    for (std::size_t t = 0; t < num; ++t) {
      const double v = values[t * d + j];
      v_min = std::min(v_min, v);
      v_max = std::max(v_max, v);
      // e_t >= 0, so e_t * v is increasing in e_t for v >= 0 and decreasing for v < 0.
      if (v >= 0.0) {
        n_lo = add_down(n_lo, mul_down(e_lo[t], v));
        n_hi = add_up(n_hi, mul_up(e_hi[t], v));
      } else {
        n_lo = add_down(n_lo, mul_down(e_hi[t], v));
        n_hi = add_up(n_hi, mul_up(e_lo[t], v));
      }
    }
    // N / Z with Z in [z_lo, z_hi], z_hi >= 1 > 0 (the maximal score contributes e = 1). A
    // negative N is smallest over the smallest Z, a positive one over the largest; z_lo == 0
    // yields an infinite bound, which the convex-hull clamp below then replaces.
    double lo = n_lo < 0.0 ? div_down(n_lo, z_lo) : div_down(n_lo, z_hi);
    double hi = n_hi > 0.0 ? div_up(n_hi, z_lo) : div_up(n_hi, z_hi);
    // o_j is a convex combination of the v_tj: exactly within [v_min, v_max].
    lo = std::max(lo, v_min);
    hi = std::min(hi, v_max);
    out.emplace_back(lo, hi);
  }
  return out;
}

}  // namespace hnf::analysis
