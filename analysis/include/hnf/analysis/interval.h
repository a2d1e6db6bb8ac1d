// Outward-rounded interval arithmetic on doubles: every function here returns a rigorous
// enclosure (or a rigorous one-sided bound) of the exact real result, never an approximation.
//
// Two layers:
//  * `Interval`, Boost.Interval with the `rounded_arith_opp` policy. Its + - * / and sqrt switch
//    the FPU to upward rounding for each operation and restore the caller's mode afterwards
//    (save_state). Boost's own transcendental policies are NOT used: glibc's exp/log are not
//    reliable under directed rounding (measured: exp missed the true value in ~1.4% of samples).
//    exp/log below evaluate libm in round-to-nearest (< 1 ulp error in glibc) and widen by one ulp.
//  * Scalar helpers (add_up, mul_down, exp_up, ...) for hot loops, defined in
//    hnf/proofs/directed.h and re-exported here: they never switch rounding modes; each
//    evaluates in round-to-nearest (error <= 1/2 ulp for + - * / sqrt, < 1 ulp for glibc exp)
//    and steps one ulp in the stated direction, which makes it a rigorous bound.
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

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <vector>

#include <boost/numeric/interval.hpp>

#include "hnf/proofs/directed.h"

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

// ---- scalar directed helpers ------------------------------------------------------------------
// One implementation, in proofs/directed.h (shared with the runtime); brought into this
// namespace so analysis code calls them unqualified. Precondition: round-to-nearest mode.

using proofs::add_down;
using proofs::add_up;
using proofs::div_down;
using proofs::div_up;
using proofs::exp_down;
using proofs::exp_up;
using proofs::log_down;
using proofs::log_up;
using proofs::mul_down;
using proofs::mul_up;
using proofs::next_down;
using proofs::next_up;
using proofs::sqrt_down;
using proofs::sqrt_up;
using proofs::sub_down;
using proofs::sub_up;

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
