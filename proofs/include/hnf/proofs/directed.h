// Scalar directed rounding on doubles (proofs/THEORY.md section 1, lemmas L1, L2, L4): every
// function here returns a rigorous one-sided bound of the exact real result, never an
// approximation. The one implementation the analysis (analysis/interval.h re-exports these into
// hnf::analysis) and the runtime (decode_bound.cpp) share.
//
// The helpers never switch rounding modes: each evaluates in round-to-nearest (error <= 1/2 ulp
// for + - * / sqrt, < 1 ulp for glibc exp/log) and steps one ulp in the stated direction, which
// makes it a rigorous bound (L1).
//
// Precondition for every helper: the current rounding mode is round-to-nearest (the default;
// Boost's interval operators restore it on exit). They do not check it, to stay cheap.
// Non-finite inputs: the helpers propagate NaN; infinities follow IEEE rules and the results
// stay valid bounds (e.g. add_down overflowing to +inf returns DBL_MAX, still a lower bound).
// Never compile with -ffast-math.
#pragma once

#include <bit>
#include <cfloat>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>

// The floating-point model THEORY.md section 1 proves its lemmas in, pinned at compile time for
// every file that computes a certified bound (they all include this header): IEEE-754 binary64
// doubles with subnormals, each operation evaluated in double itself (FLT_EVAL_METHOD 0, not
// x87 extended precision, which would round twice), and no value-changing optimisation.
// Contraction of a*b+c into one FMA is not visible to the preprocessor: the build turns it off
// for every object (-ffp-contract=off, cmake/HnfCompileOptions.cmake) and a test checks it.
static_assert(std::numeric_limits<double>::is_iec559, "the bounds assume IEEE-754 binary64 doubles");
static_assert(std::numeric_limits<double>::radix == 2 && std::numeric_limits<double>::digits == 53,
              "the bounds assume a 53-bit binary significand (u = 2^-53)");
static_assert(std::numeric_limits<double>::has_denorm == std::denorm_present,
              "next_up(0) = denorm_min and the underflow terms assume subnormal doubles");
static_assert(FLT_EVAL_METHOD == 0, "each double operation must round to double (no extended-precision evaluation)");
#if defined(__FAST_MATH__)
#error "hnf: never compile with -ffast-math (it breaks every rounding argument of THEORY.md)"
#endif

namespace hnf::proofs {

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

// ---- a-priori bounds of rounded sums (L2, L4) ----------------------------------------------------

// gamma_n = n u / (1 - n u) with u = 2^-53, rounded toward +inf: the relative error bound of a
// floating-point sum or dot product of n terms in any order (Higham, Accuracy and Stability of Numerical
// Algorithms, 2nd ed., Lemma 3.1 and eq. (3.5); THEORY.md L2).
[[nodiscard]] double gamma_up(std::size_t n);

// Upper bound (rounded toward +inf) of sqrt(sum_i y_i^2) for exact reals y_i with
// |y_i| <= |x_i| (1 + u)^input_roundings, u = 2^-53: x [n] may be the results of
// `input_roundings` round-to-nearest operations on the exact values (0: x is exact). THEORY.md L4.
[[nodiscard]] double norm_up(const double* x, std::size_t n, int input_roundings);

}  // namespace hnf::proofs
