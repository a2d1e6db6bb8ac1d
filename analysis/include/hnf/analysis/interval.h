// Outward-rounded interval arithmetic on doubles: every function here returns a rigorous
// enclosure (or a rigorous one-sided bound) of the exact real result, never an approximation.
//
// Two layers:
//  * `Interval`, Boost.Interval with the `rounded_arith_opp` policy. Its + - * / and sqrt switch
//    the FPU to upward rounding for each operation and restore the caller's mode afterwards
//    (save_state). Boost's own transcendental policies are NOT used: glibc's exp/log are not
//    reliable under directed rounding (measured: exp missed the true value in ~1.4% of samples).
//    exp/log below evaluate libm in round-to-nearest (< 1 ulp error in glibc) and widen by one ulp.
//  * Scalar helpers (add_up, mul_down, exp_up, ...) for hot loops: they never switch rounding
//    modes; each evaluates in round-to-nearest (error <= 1/2 ulp for + - * / sqrt, < 1 ulp for
//    glibc exp) and steps one ulp in the stated direction, which makes it a rigorous bound.
//
// Build requirement: every translation unit that instantiates `Interval` must be compiled with
// -frounding-math (hnf_analysis adds it as a PUBLIC compile option), or GCC may constant-fold or
// reorder floating-point operations across the rounding-mode switches. Never use -ffast-math.
//
// Precondition for the scalar helpers: the current rounding mode is round-to-nearest (the
// default; Boost's operators restore it on exit). They do not check it, to stay cheap.
// Non-finite inputs: the helpers propagate NaN; infinities follow IEEE rules and the results
// stay valid bounds (e.g. add_down overflowing to +inf returns DBL_MAX, still a lower bound).
#pragma once

#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <vector>

#include <boost/numeric/interval.hpp>

namespace hnf::analysis {

namespace interval_detail {

// Boost calls these when an operation would create an empty interval (sqrt of a negative
// interval, division by [0,0], a constructor with lo > hi) or a constructor sees a NaN. They
// throw hnf::proofs::Error of kind kInternal: a silent empty/NaN interval compares false
// against everything and could turn into a wrong "certified" downstream.
struct ThrowEmptyInterval {
  [[noreturn]] void operator()() const;
};
struct ThrowNanInterval {
  [[noreturn]] void operator()() const;
};

}  // namespace interval_detail

// Checking policy: like Boost's default checking_strict (no empty intervals ever exist), but
// NaN is also caught in the one-point constructor, and both failures throw hnf::proofs::Error.
// Note: arithmetic on infinite endpoints can still produce NaN bounds (inf - inf); intervals
// built from finite data with finite results never do.
using IntervalChecking = boost::numeric::interval_lib::checking_catch_nan<
    double,
    boost::numeric::interval_lib::checking_no_empty<double, boost::numeric::interval_lib::checking_base<double>,
                                                    interval_detail::ThrowEmptyInterval>,
    interval_detail::ThrowNanInterval>;

// Closed interval [lower, upper] of doubles (endpoints may be +-inf). Operations + - * / and
// sqrt (Boost's, found by ADL) return outward-rounded enclosures of the exact real range.
// Division by an interval that contains 0 in its interior or at one end returns an unbounded
// interval; division by [0,0] and sqrt of an entirely negative interval throw. sqrt of an
// interval straddling 0 encloses sqrt over its non-negative part.
using Interval = boost::numeric::interval<
    double, boost::numeric::interval_lib::policies<
                boost::numeric::interval_lib::save_state<boost::numeric::interval_lib::rounded_arith_opp<double>>,
                IntervalChecking>>;

// ---- one-ulp steps ---------------------------------------------------------------------------

// Exactly std::nextafter(x, +inf), inlined (a bit operation, no FP rounding involved):
// the smallest double > x. next_up(+inf) = +inf, NaN -> NaN, next_up(+-0) = denorm_min.
[[nodiscard]] inline double next_up(double x) noexcept {
  if (!(x < std::numeric_limits<double>::infinity())) return x;  // +inf or NaN
  if (x == 0.0) return std::numeric_limits<double>::denorm_min();
  auto bits = std::bit_cast<std::uint64_t>(x);
  bits = x > 0.0 ? bits + 1 : bits - 1;  // magnitude up for positives, down for negatives
  return std::bit_cast<double>(bits);
}

// Exactly std::nextafter(x, -inf): the largest double < x. next_down(-inf) = -inf, NaN -> NaN,
// next_down(+-0) = -denorm_min.
[[nodiscard]] inline double next_down(double x) noexcept { return -next_up(-x); }

// ---- scalar directed helpers (precondition: round-to-nearest mode) ------------------------------

// Upper bound of the exact a+b (rounded toward +inf, possibly one ulp above the tightest).
[[nodiscard]] inline double add_up(double a, double b) noexcept { return next_up(a + b); }
// Lower bound of the exact a+b (rounded toward -inf, possibly one ulp below the tightest).
[[nodiscard]] inline double add_down(double a, double b) noexcept { return next_down(a + b); }
// Upper bound of the exact a-b (rounded toward +inf).
[[nodiscard]] inline double sub_up(double a, double b) noexcept { return next_up(a - b); }
// Lower bound of the exact a-b (rounded toward -inf).
[[nodiscard]] inline double sub_down(double a, double b) noexcept { return next_down(a - b); }
// Upper bound of the exact a*b (rounded toward +inf). Underflow is covered: a product that
// rounds to 0 still gets +denorm_min, which is above any tiny exact product.
[[nodiscard]] inline double mul_up(double a, double b) noexcept { return next_up(a * b); }
// Lower bound of the exact a*b (rounded toward -inf).
[[nodiscard]] inline double mul_down(double a, double b) noexcept { return next_down(a * b); }
// Upper bound of the exact a/b (rounded toward +inf). Precondition: b != 0.
[[nodiscard]] inline double div_up(double a, double b) noexcept { return next_up(a / b); }
// Lower bound of the exact a/b (rounded toward -inf). Precondition: b != 0.
[[nodiscard]] inline double div_down(double a, double b) noexcept { return next_down(a / b); }
// Upper bound of the exact sqrt(x) (rounded toward +inf). Precondition: x >= 0 (else NaN).
[[nodiscard]] inline double sqrt_up(double x) noexcept { return next_up(std::sqrt(x)); }
// Lower bound of the exact sqrt(x) (rounded toward -inf), clamped at 0 since sqrt(x) >= 0.
// Precondition: x >= 0 (else NaN).
[[nodiscard]] inline double sqrt_down(double x) noexcept {
  const double r = next_down(std::sqrt(x));
  return r < 0.0 ? 0.0 : r;
}
// Upper bound of the exact e^x (rounded toward +inf): glibc exp in round-to-nearest has < 1 ulp
// error, so one ulp up is an upper bound (also in the subnormal range and on overflow to +inf).
// Exact special values: e^0 = 1, e^-inf = 0, e^+inf = +inf.
[[nodiscard]] double exp_up(double x) noexcept;
// Lower bound of the exact e^x (rounded toward -inf), clamped at 0 since e^x > 0.
[[nodiscard]] double exp_down(double x) noexcept;
// Upper bound of the exact ln(x) (rounded toward +inf). Precondition: x >= 0 (else NaN).
// ln(0) = -inf, ln(1) = 0 and ln(+inf) = +inf are returned exactly.
[[nodiscard]] double log_up(double x) noexcept;
// Lower bound of the exact ln(x) (rounded toward -inf). Precondition: x >= 0 (else NaN).
[[nodiscard]] double log_down(double x) noexcept;

// ---- interval functions -----------------------------------------------------------------------

// Enclosure of {e^x : x in i}: [exp_down(lower), exp_up(upper)]. libm runs in round-to-nearest:
// if the caller's mode is not nearest, it is switched to nearest for the call and restored.
[[nodiscard]] Interval exp(const Interval& i);

// Enclosure of {ln x : x in i}: [log_down(lower), log_up(upper)], evaluated in round-to-nearest
// like exp. lower(i) == 0 gives a lower bound of -inf (ln x -> -inf as x -> 0+). lower(i) < 0
// throws hnf::proofs::Error (kInternal): ln is undefined there, and a caller holding an enclosure
// of a positive quantity must first intersect it with [0, +inf] itself.
[[nodiscard]] Interval log(const Interval& i);

// Upper bound of max{|x| : x in i}. Exact (no rounding is involved): max(-lower, upper).
[[nodiscard]] double magnitude_up(const Interval& i) noexcept;

// Enclosure of the softmax-weighted sum o_j = sum_t softmax(s)_t * values[t, j] for every score
// vector s with s_t in scores[t]. scores: [T], T >= 1; values: [T, d] row-major, finite; d >= 1.
// Method: shift by m = max_t upper(scores[t]) (so every exponent is <= 0 and nothing overflows),
// e_t = exp(s_t - m), Z = sum_t e_t, o_j = (sum_t e_t v_tj) / Z, all with outward rounding via
// the scalar helpers. Each o_j is then intersected with [min_t v_tj, max_t v_tj], which holds
// exactly because o_j is a convex combination; this caps the loss from the dependency between
// numerator and denominator when the score intervals are wide. Runs in round-to-nearest
// (switching to it and back if needed). Returns d intervals.
[[nodiscard]] std::vector<Interval> softmax_weighted_sum(std::span<const Interval> scores, std::span<const double> values,
                                                         std::size_t d);

}  // namespace hnf::analysis
