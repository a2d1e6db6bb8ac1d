// Enclosure tests of the interval engine against MPFR at 256 bits.
//
// Every check is exact, not approximate: for a double bound b and a real value r,
// b <= r holds iff b <= RNDD_256(r), and b >= r iff b >= RNDU_256(r) (b is itself a 256-bit
// number, and RNDD/RNDU give the nearest 256-bit numbers below/above r). So "zero misses" below
// means every returned bound really encloses the exact real result.
#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cfenv>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "hnf/analysis/high_precision.h"
#include "hnf/analysis/attention_enclosure.h"
#include "hnf/analysis/interval.h"
#include "hnf/proofs/error.h"

using hnf::analysis::Interval;
using hnf::analysis::MpfrFloat;
namespace an = hnf::analysis;

namespace {

constexpr int kReferenceBits = 256;
constexpr int kSamples = 100'000;
constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kMax = std::numeric_limits<double>::max();
constexpr double kTiny = std::numeric_limits<double>::denorm_min();

std::string hex(double x) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%a", x);
  return buf;
}

// Random doubles biased toward the hard cases: every binade (subnormals included), values near
// the ends of the range, exact small integers and powers of two, near-cancelling pairs and pairs
// many binades apart. Fixed seeds: the tests are deterministic.
class Sampler {
 public:
  explicit Sampler(std::uint64_t seed) : rng_(seed) {}

  std::uint64_t bits() { return rng_(); }
  int integer(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng_); }
  double uniform(double lo, double hi) { return std::uniform_real_distribution<double>(lo, hi)(rng_); }
  bool coin(double p) { return uniform(0.0, 1.0) < p; }

  // A double with biased exponent in [e_lo, e_hi] (1..2046 are normal) and random mantissa, positive.
  double with_biased_exponent(int e_lo, int e_hi) {
    const auto e = static_cast<std::uint64_t>(integer(e_lo, e_hi));
    return std::bit_cast<double>((e << 52) | (bits() & kMantissa));
  }

  // A finite non-negative double.
  double magnitude() {
    switch (integer(0, 9)) {
      case 0: case 1: case 2: return with_biased_exponent(1, 2046);              // any binade
      case 3: case 4: return with_biased_exponent(1023 - 30, 1023 + 30);         // moderate
      case 5: return std::bit_cast<double>((bits() & kMantissa) >> integer(0, 51));  // subnormal (or 0)
      case 6: return static_cast<double>(integer(0, 1000));                      // exact small integers
      case 7: return std::ldexp(1.0, integer(-1074, 1023));                      // powers of two
      case 8: {                                                                   // range ends
        const double ends[] = {kMax, kTiny, std::numeric_limits<double>::min(), 1.0};
        double x = ends[integer(0, 3)];
        for (int k = integer(0, 3); k > 0; --k) x = coin(0.5) ? an::next_up(x) : an::next_down(x);
        return std::isfinite(x) && x >= 0.0 ? x : kMax;
      }
      default: return with_biased_exponent(1, 60);                                // tiny normals
    }
  }

  double any() { return coin(0.5) ? -magnitude() : magnitude(); }

  // A second operand related to x: equal, opposite, a few ulps away (cancellation), scaled by
  // many binades, or independent.
  double partner(double x) {
    switch (integer(0, 5)) {
      case 0: return x;
      case 1: return -x;
      case 2: {
        double y = x;
        for (int k = integer(1, 8); k > 0; --k) y = coin(0.5) ? an::next_up(y) : an::next_down(y);
        return std::isfinite(y) ? y : x;
      }
      case 3: {
        const double y = std::ldexp(x, integer(-1100, 1100)) * (coin(0.5) ? 1.0 : 1.0 + uniform(-0.5, 0.5));
        return std::isfinite(y) ? y : x;
      }
      default: return any();
    }
  }

  // An interval around x: the point [x,x], a few ulps wide, or the hull with a related value.
  Interval interval_around(double x) {
    const int kind = integer(0, 9);
    if (kind < 4) return Interval(x);
    if (kind < 6) {
      double hi = x;
      for (int k = integer(1, 4); k > 0; --k) hi = an::next_up(hi);
      return std::isfinite(hi) ? Interval(x, hi) : Interval(x);
    }
    const double y = partner(x);
    return Interval(std::min(x, y), std::max(x, y));
  }

 private:
  static constexpr std::uint64_t kMantissa = (std::uint64_t{1} << 52) - 1;
  std::mt19937_64 rng_;
};

enum class Op { kAdd, kSub, kMul, kDiv, kSqrt, kExp, kLog };

const char* op_name(Op op) {
  switch (op) {
    case Op::kAdd: return "+";
    case Op::kSub: return "-";
    case Op::kMul: return "*";
    case Op::kDiv: return "/";
    case Op::kSqrt: return "sqrt";
    case Op::kExp: return "exp";
    case Op::kLog: return "log";
  }
  return "?";
}

// The exact result of op(x, y), bracketed by its 256-bit roundings down and up.
class Exact {
 public:
  Exact() : a_(kReferenceBits), b_(kReferenceBits), down_(kReferenceBits), up_(kReferenceBits) {}

  void compute(Op op, double x, double y = 0.0) {
    mpfr_set_d(a_.get(), x, MPFR_RNDN);  // exact: 256 >= 53 bits
    mpfr_set_d(b_.get(), y, MPFR_RNDN);
    mpfr_ptr r = down_.get();
    int ternary = 0;
    switch (op) {
      case Op::kAdd: ternary = mpfr_add(r, a_.get(), b_.get(), MPFR_RNDD); break;
      case Op::kSub: ternary = mpfr_sub(r, a_.get(), b_.get(), MPFR_RNDD); break;
      case Op::kMul: ternary = mpfr_mul(r, a_.get(), b_.get(), MPFR_RNDD); break;
      case Op::kDiv: ternary = mpfr_div(r, a_.get(), b_.get(), MPFR_RNDD); break;
      case Op::kSqrt: ternary = mpfr_sqrt(r, a_.get(), MPFR_RNDD); break;
      case Op::kExp: ternary = mpfr_exp(r, a_.get(), MPFR_RNDD); break;
      case Op::kLog: ternary = mpfr_log(r, a_.get(), MPFR_RNDD); break;
    }
    // Inexact: the rounding up is the next 256-bit number (MPFR's exponent range is far wider
    // than a double's, so nothing here overflows or underflows).
    mpfr_set(up_.get(), r, MPFR_RNDN);
    if (ternary != 0) mpfr_nextabove(up_.get());
  }

  // bound <= exact result.
  [[nodiscard]] bool lower_ok(double bound) const { return !std::isnan(bound) && mpfr_cmp_d(down_.get(), bound) >= 0; }
  // bound >= exact result.
  [[nodiscard]] bool upper_ok(double bound) const { return !std::isnan(bound) && mpfr_cmp_d(up_.get(), bound) <= 0; }
  // The tightest double bounds of the exact result.
  [[nodiscard]] double best_lower() const { return mpfr_get_d(down_.get(), MPFR_RNDD); }
  [[nodiscard]] double best_upper() const { return mpfr_get_d(up_.get(), MPFR_RNDU); }
  // Is the exact result +-inf or NaN (log 0, or the sample left the operation's domain)?
  [[nodiscard]] bool finite() const { return mpfr_number_p(down_.get()) != 0; }

 private:
  MpfrFloat a_, b_, down_, up_;
};

// Counts failures and keeps the first few for the report.
struct Tally {
  long samples = 0;
  long misses = 0;  // a bound that does not enclose the exact result: unsound
  long loose = 0;   // a sound bound that is wider than promised
  std::vector<std::string> examples;

  void miss(const std::string& what) {
    ++misses;
    if (examples.size() < 8) examples.push_back(what);
  }
  void report(const char* name) const {
    MESSAGE(std::string(name) << ": " << samples << " samples, " << misses << " misses, " << loose << " looser than promised");
    for (const auto& e : examples) MESSAGE("  " << e);
  }
};

std::string describe(Op op, const Interval& x, const Interval& y, const Interval& r) {
  return std::string(op_name(op)) + " [" + hex(x.lower()) + ", " + hex(x.upper()) + "] [" + hex(y.lower()) + ", " +
         hex(y.upper()) + "] -> [" + hex(r.lower()) + ", " + hex(r.upper()) + "]";
}

// r must contain op(a, b) for every corner (a, b) of x * y. The exact range of + - * / (0 not in
// y), sqrt, exp and log over a box is the hull of its corner values, so this is the complete
// enclosure check. With `tightest`, r must also be the tightest double hull (Boost's directed
// rounding promises that); otherwise r may be one ulp wider on each side (nearest + one ulp).
void check_interval(Op op, const Interval& x, const Interval& y, const Interval& r, bool tightest, Exact& exact,
                    Tally& tally) {
  ++tally.samples;
  double best_lo = kInf;
  double best_hi = -kInf;
  bool ok = !std::isnan(r.lower()) && !std::isnan(r.upper()) && r.lower() <= r.upper();
  const bool binary = op == Op::kAdd || op == Op::kSub || op == Op::kMul || op == Op::kDiv;
  for (const double a : {x.lower(), x.upper()}) {
    for (int k = 0; k < (binary ? 2 : 1); ++k) {
      exact.compute(op, a, k == 0 ? y.lower() : y.upper());
      ok = ok && exact.lower_ok(r.lower()) && exact.upper_ok(r.upper());
      best_lo = std::min(best_lo, exact.best_lower());
      best_hi = std::max(best_hi, exact.best_upper());
    }
  }
  if (!ok) {
    tally.miss(describe(op, x, y, r));
    return;
  }
  const bool tight = tightest ? (r.lower() == best_lo && r.upper() == best_hi)
                              : (r.lower() >= an::next_down(best_lo) && r.upper() <= an::next_up(best_hi));
  if (!tight) ++tally.loose;
}

Interval apply(Op op, const Interval& x, const Interval& y) {
  switch (op) {
    case Op::kAdd: return x + y;
    case Op::kSub: return x - y;
    case Op::kMul: return x * y;
    case Op::kDiv: return x / y;
    case Op::kSqrt: return sqrt(x);  // Boost's, by ADL
    case Op::kExp: return an::exp(x);
    case Op::kLog: return an::log(x);
  }
  return x;
}

// A divisor interval that does not contain 0.
Interval nonzero_interval(Sampler& s) {
  for (;;) {
    const Interval y = s.interval_around(s.any());
    if (!boost::numeric::zero_in(y)) return y;
  }
}

Interval nonnegative_interval(Sampler& s) {
  const double x = s.magnitude();
  const double y = std::fabs(s.partner(x));
  return s.coin(0.4) ? Interval(x) : Interval(std::min(x, y), std::max(x, y));
}

// Exponents that stress exp: the whole finite-result range -745..709.8, the overflow threshold
// (~709.78), the subnormal range start (~-708.4) and the underflow-to-zero threshold (~-745.13),
// beyond both ends, tiny arguments (e^x ~ 1) and moderate values.
double exp_argument(Sampler& s) {
  switch (s.integer(0, 7)) {
    case 0: case 1: return s.uniform(-745.2, 709.8);
    case 2: return 709.782712893384 + s.uniform(-1e-3, 1e-3);
    case 3: return -708.3964185322641 + s.uniform(-0.5, 0.5);
    case 4: return -745.1332191019411 + s.uniform(-1e-3, 1e-3);
    case 5: return s.coin(0.5) ? s.uniform(709.8, 800.0) : s.uniform(-800.0, -745.2);
    case 6: return (s.coin(0.5) ? 1.0 : -1.0) * std::ldexp(s.uniform(1.0, 2.0), s.integer(-1074, -1));
    default: return s.uniform(-30.0, 30.0);
  }
}

// Arguments that stress log: near 1 (within a few million ulps, or 1 +- 2^-k), near 0
// (subnormals, tiny normals), huge, and any positive double.
double log_argument(Sampler& s) {
  switch (s.integer(0, 5)) {
    case 0: return 1.0 + std::ldexp(static_cast<double>(s.integer(-2'000'000, 2'000'000)), -53);
    case 1: return 1.0 + (s.coin(0.5) ? 1.0 : -1.0) * std::ldexp(1.0, s.integer(-53, -1));
    case 2: return std::bit_cast<double>((s.bits() & ((std::uint64_t{1} << 52) - 1)) | 1);  // subnormal
    case 3: return s.with_biased_exponent(1, 40);
    case 4: return s.with_biased_exponent(2000, 2046);
    default: return s.with_biased_exponent(1, 2046);
  }
}

Interval exp_interval(Sampler& s) {
  const double x = exp_argument(s);
  if (s.coin(0.4)) return Interval(x);
  const double y = s.coin(0.5) ? exp_argument(s) : x + s.uniform(0.0, 1e-6);
  return Interval(std::min(x, y), std::max(x, y));
}

Interval log_interval(Sampler& s) {
  const double x = log_argument(s);
  if (s.coin(0.4)) return Interval(x);
  const double y = s.coin(0.5) ? log_argument(s) : an::next_up(an::next_up(x));
  return Interval(std::min(x, y), std::max(x, y));
}

void run_interval_op(Op op, std::uint64_t seed) {
  Sampler s(seed);
  Exact exact;
  Tally tally;
  const bool boost_op = op != Op::kExp && op != Op::kLog;
  for (int i = 0; i < kSamples; ++i) {
    Interval x(0.0);
    Interval y(0.0);
    switch (op) {
      case Op::kAdd: case Op::kSub: case Op::kMul: {
        const double a = s.any();
        x = s.interval_around(a);
        y = s.interval_around(s.partner(a));
        break;
      }
      case Op::kDiv: {
        x = s.interval_around(s.any());
        y = nonzero_interval(s);
        break;
      }
      case Op::kSqrt: x = nonnegative_interval(s); break;
      case Op::kExp: x = exp_interval(s); break;
      case Op::kLog: x = log_interval(s); break;
    }
    const Interval r = apply(op, x, y);
    check_interval(op, x, y, r, boost_op, exact, tally);
  }
  tally.report(op_name(op));
  CHECK(tally.samples == kSamples);
  CHECK(tally.misses == 0);
  CHECK(tally.loose == 0);
  CHECK(std::fegetround() == FE_TONEAREST);  // Boost's save_state restored the caller's mode
}

// Scalar helpers: `down` must be <= and `up` >= the exact op(x, y), each at most one ulp beyond
// the tightest double bound.
template <typename Down, typename Up>
void check_scalar(Op op, double x, double y, Down down, Up up, Exact& exact, Tally& tally) {
  ++tally.samples;
  exact.compute(op, x, y);
  const double lo = down(x, y);
  const double hi = up(x, y);
  if (!exact.lower_ok(lo) || !exact.upper_ok(hi)) {
    tally.miss(std::string(op_name(op)) + " " + hex(x) + " " + hex(y) + " -> [" + hex(lo) + ", " + hex(hi) + "]");
    return;
  }
  if (lo < an::next_down(exact.best_lower()) || hi > an::next_up(exact.best_upper())) ++tally.loose;
}

}  // namespace

TEST_CASE("next_up and next_down are std::nextafter toward +-inf") {
  Sampler s(1);
  std::vector<double> xs = {0.0, -0.0, kTiny, -kTiny, kMax, -kMax, kInf, -kInf, 1.0, -1.0,
                            std::numeric_limits<double>::min(), -std::numeric_limits<double>::min()};
  for (int i = 0; i < kSamples; ++i) xs.push_back(s.any());
  long mismatches = 0;
  for (const double x : xs) {
    if (std::bit_cast<std::uint64_t>(an::next_up(x)) != std::bit_cast<std::uint64_t>(std::nextafter(x, kInf)) ||
        std::bit_cast<std::uint64_t>(an::next_down(x)) != std::bit_cast<std::uint64_t>(std::nextafter(x, -kInf))) {
      ++mismatches;
      MESSAGE("mismatch at " << hex(x));
    }
  }
  CHECK(mismatches == 0);
  CHECK(std::isnan(an::next_up(std::numeric_limits<double>::quiet_NaN())));
  CHECK(std::isnan(an::next_down(std::numeric_limits<double>::quiet_NaN())));
}

TEST_CASE("interval + encloses the exact sum (100000 samples vs MPFR 256)") { run_interval_op(Op::kAdd, 11); }
TEST_CASE("interval - encloses the exact difference (100000 samples vs MPFR 256)") { run_interval_op(Op::kSub, 12); }
TEST_CASE("interval * encloses the exact product (100000 samples vs MPFR 256)") { run_interval_op(Op::kMul, 13); }
TEST_CASE("interval / encloses the exact quotient (100000 samples vs MPFR 256)") { run_interval_op(Op::kDiv, 14); }
TEST_CASE("interval sqrt encloses the exact root (100000 samples vs MPFR 256)") { run_interval_op(Op::kSqrt, 15); }
TEST_CASE("interval exp encloses the exact exponential (100000 samples vs MPFR 256)") { run_interval_op(Op::kExp, 16); }
TEST_CASE("interval log encloses the exact logarithm (100000 samples vs MPFR 256)") { run_interval_op(Op::kLog, 17); }

TEST_CASE("scalar directed helpers bound the exact result (100000 samples each vs MPFR 256)") {
  Sampler s(21);
  Exact exact;
  Tally add, sub, mul, div, root, ex, lg;
  for (int i = 0; i < kSamples; ++i) {
    const double x = s.any();
    const double y = s.partner(x);
    check_scalar(Op::kAdd, x, y, an::add_down, an::add_up, exact, add);
    check_scalar(Op::kSub, x, y, an::sub_down, an::sub_up, exact, sub);
    check_scalar(Op::kMul, x, y, an::mul_down, an::mul_up, exact, mul);
    const double z = y != 0.0 ? y : 1.0;
    check_scalar(Op::kDiv, x, z, an::div_down, an::div_up, exact, div);
    const auto unary = [](double (*f)(double)) { return [f](double a, double) { return f(a); }; };
    check_scalar(Op::kSqrt, std::fabs(x), 0.0, unary(an::sqrt_down), unary(an::sqrt_up), exact, root);
    check_scalar(Op::kExp, exp_argument(s), 0.0, unary(an::exp_down), unary(an::exp_up), exact, ex);
    check_scalar(Op::kLog, log_argument(s), 0.0, unary(an::log_down), unary(an::log_up), exact, lg);
  }
  for (const auto* t : {&add, &sub, &mul, &div, &root, &ex, &lg}) {
    CHECK(t->samples == kSamples);
    CHECK(t->misses == 0);
    CHECK(t->loose == 0);
  }
  add.report("add_up/add_down");
  sub.report("sub_up/sub_down");
  mul.report("mul_up/mul_down");
  div.report("div_up/div_down");
  root.report("sqrt_up/sqrt_down");
  ex.report("exp_up/exp_down");
  lg.report("log_up/log_down");
}

namespace {

// THEORY.md section 1 (L1) assumes libm's exp and log are faithful: the returned double is the
// exact value or one of the two doubles around it. The one-ulp steps of exp_up/exp_down/log_up/
// log_down are sound exactly then. Where it can fail with an error still below one ulp is a
// binade boundary: the exact value just above a power of two, the result just below it (two
// doubles away). The random samples above rarely land there, so these are swept, deterministically.

// x and the `ulps` doubles on each side of it, finite ones only.
template <typename F>
void for_neighbours(double x, int ulps, F&& f) {
  double y = x;
  for (int i = 0; i < ulps; ++i) y = an::next_down(y);
  for (int i = 0; i <= 2 * ulps; ++i, y = an::next_up(y)) {
    if (std::isfinite(y)) f(y);
  }
}

// The double nearest to k ln 2 (e^x crosses the power of two 2^k there).
double k_ln2(long k) {
  MpfrFloat t(kReferenceBits);
  mpfr_const_log2(t.get(), MPFR_RNDN);
  mpfr_mul_si(t.get(), t.get(), k, MPFR_RNDN);
  return t.to_double();
}

// The double nearest to e^(sign 2^j) (ln x crosses the power of two sign 2^j there).
double exp_of_power_of_two(int sign, int j) {
  MpfrFloat t(kReferenceBits);
  mpfr_set_si_2exp(t.get(), sign, j, MPFR_RNDN);
  mpfr_exp(t.get(), t.get(), MPFR_RNDN);
  return t.to_double();
}

// Arguments of exp: every crossing of a power of two by e^x (results 2^-1075 .. 2^1024: the
// subnormal range, underflow to 0 and overflow included), the ends of the range, and tiny
// arguments (e^x just above or below 1, the crossing at 2^0).
std::vector<double> exp_hard_cases() {
  std::vector<double> xs;
  const auto add = [&xs](double y) { xs.push_back(y); };
  for (long k = -1076; k <= 1025; ++k) for_neighbours(k_ln2(k), 24, add);
  for (const double edge : {709.782712893384, -708.3964185322641, -745.1332191019411}) for_neighbours(edge, 2048, add);
  for (int k = 1; k <= 1074; ++k) {
    for_neighbours(std::ldexp(1.0, -k), 4, add);
    for_neighbours(-std::ldexp(1.0, -k), 4, add);
  }
  return xs;
}

// Arguments of log: every crossing of a power of two by ln x (x = e^(+-2^j), results 2^-60 ..
// 2^9), x near 1 in every binade of the result, and the ends of the range (subnormal x included).
std::vector<double> log_hard_cases() {
  std::vector<double> xs;
  const auto add = [&xs](double y) { xs.push_back(y); };
  for (int j = -60; j <= 9; ++j) {
    for_neighbours(exp_of_power_of_two(1, j), 64, add);
    for_neighbours(exp_of_power_of_two(-1, j), 64, add);
  }
  for (int k = 1; k <= 52; ++k) {
    for_neighbours(1.0 + std::ldexp(1.0, -k), 8, add);
    for_neighbours(1.0 - std::ldexp(1.0, -k - 1), 8, add);
  }
  for (int k = -1074; k <= 1023; ++k) for_neighbours(std::ldexp(1.0, k), 4, add);
  for_neighbours(kMax, 64, add);
  for_neighbours(std::numeric_limits<double>::min(), 64, add);
  return xs;
}

// Counts arguments where libm's f is not faithful and where the widened helpers miss.
struct LibmCheck {
  long samples = 0;
  long unfaithful = 0;
  Tally enclosure;
  bool print_examples = true;

  void run(Op op, double x, double (*libm)(double), double (*down)(double), double (*up)(double), Exact& exact) {
    exact.compute(op, x);
    if (!exact.finite()) return;  // log of 0 or below, beyond the domain
    ++samples;
    const double y = libm(x);
    if (y != exact.best_lower() && y != exact.best_upper()) {
      if (unfaithful++ < 8 && print_examples) MESSAGE(op_name(op) << "(" << hex(x) << ") = " << hex(y) << " is not faithful");
    }
    ++enclosure.samples;
    const double lo = down(x);
    const double hi = up(x);
    if (!exact.lower_ok(lo) || !exact.upper_ok(hi)) enclosure.miss(std::string(op_name(op)) + " " + hex(x));
  }
};

double libm_exp(double x) { return std::exp(x); }
double libm_log(double x) { return std::log(x); }

}  // namespace

TEST_CASE("libm exp and log are faithful at every binade crossing and range end (THEORY.md L1's assumption)") {
  Exact exact;
  LibmCheck ex, lg;
  for (const double x : exp_hard_cases()) ex.run(Op::kExp, x, libm_exp, an::exp_down, an::exp_up, exact);
  for (const double x : log_hard_cases()) lg.run(Op::kLog, x, libm_log, an::log_down, an::log_up, exact);
  MESSAGE("exp: " << ex.samples << " hard cases, " << ex.unfaithful << " unfaithful; log: " << lg.samples
                  << " hard cases, " << lg.unfaithful << " unfaithful");
  ex.enclosure.report("exp_up/exp_down on hard cases");
  lg.enclosure.report("log_up/log_down on hard cases");
  CHECK(ex.samples > 100'000);  // a sweep that checked nothing proves nothing
  CHECK(lg.samples > 10'000);
  CHECK(ex.unfaithful == 0);
  CHECK(lg.unfaithful == 0);
  CHECK(ex.enclosure.misses == 0);
  CHECK(lg.enclosure.misses == 0);
  // The check has teeth: a libm one double below glibc's answer (error up to 2 ulps) is caught,
  // by the faithfulness count and, through a helper widened by one ulp, by the enclosure.
  LibmCheck broken;
  broken.print_examples = false;
  const auto low_exp = [](double x) { return an::next_down(std::exp(x)); };
  const auto low_exp_down = [](double x) { return an::next_down(an::next_down(std::exp(x))); };
  const auto low_exp_up = [](double x) { return an::next_up(an::next_down(std::exp(x))); };
  for (int k = -1000; k <= 1000; ++k) broken.run(Op::kExp, k_ln2(k) + 0.25, low_exp, low_exp_down, low_exp_up, exact);
  CHECK(broken.samples == 2001);
  CHECK(broken.unfaithful > 500);
  CHECK(broken.enclosure.misses > 500);
}

TEST_CASE("the checker has teeth: unwidened round-to-nearest results are caught") {
  // [fl(e^x), fl(e^x)] and [fl(a+b), fl(a+b)] are what an engine without outward rounding would
  // return; the checker must reject them whenever the operation is inexact.
  Sampler s(31);
  Exact exact;
  Tally plain_exp, plain_add, one_sided;
  for (int i = 0; i < 10'000; ++i) {
    const double x = s.uniform(-700.0, 700.0);
    check_interval(Op::kExp, Interval(x), Interval(0.0), Interval(std::exp(x)), false, exact, plain_exp);
    const double a = s.any();
    const double b = s.partner(a);
    check_interval(Op::kAdd, Interval(a), Interval(b), Interval(a + b), false, exact, plain_add);
    // Widening on one side only is not enough either: [fl(e^x), next_up(fl(e^x))] misses
    // whenever libm rounded up.
    exact.compute(Op::kExp, x);
    if (!exact.lower_ok(std::exp(x))) ++one_sided.misses;
  }
  MESSAGE("unwidened exp misses: " << plain_exp.misses << " / 10000, unwidened + misses: " << plain_add.misses
                                   << ", nearest exp above the exact value: " << one_sided.misses);
  CHECK(plain_exp.misses > 9'000);
  CHECK(plain_add.misses > 1'000);
  CHECK(one_sided.misses > 1'000);
}

TEST_CASE("Boost arithmetic really rounds outward: 1/3 gets a one-ulp enclosure") {
  const Interval third = Interval(1.0) / Interval(3.0);
  CHECK(third.lower() < third.upper());
  CHECK(an::next_up(third.lower()) == third.upper());
  Exact exact;
  exact.compute(Op::kDiv, 1.0, 3.0);
  CHECK(exact.lower_ok(third.lower()));
  CHECK(exact.upper_ok(third.upper()));
  // Under a caller's directed mode the operators still round outward and restore that mode.
  REQUIRE(std::fesetround(FE_DOWNWARD) == 0);
  const Interval third_down = Interval(1.0) / Interval(3.0);
  const int mode_after = std::fegetround();
  std::fesetround(FE_TONEAREST);
  CHECK(mode_after == FE_DOWNWARD);
  CHECK(third_down.lower() == third.lower());
  CHECK(third_down.upper() == third.upper());
}

TEST_CASE("exp and log of intervals run libm in round-to-nearest whatever the caller's mode") {
  Sampler s(41);
  Exact exact;
  Tally tally;
  for (const int mode : {FE_UPWARD, FE_DOWNWARD, FE_TOWARDZERO}) {
    for (int i = 0; i < 2'000; ++i) {
      const Interval x = exp_interval(s);
      const Interval p = log_interval(s);
      REQUIRE(std::fesetround(mode) == 0);
      const Interval ex = an::exp(x);
      const Interval lg = an::log(p);
      const int mode_after = std::fegetround();
      std::fesetround(FE_TONEAREST);
      CHECK(mode_after == mode);
      check_interval(Op::kExp, x, Interval(0.0), ex, false, exact, tally);
      check_interval(Op::kLog, p, Interval(0.0), lg, false, exact, tally);
    }
  }
  CHECK(tally.misses == 0);
  CHECK(tally.loose == 0);
  tally.report("exp/log under directed modes");
}

TEST_CASE("special values and domain errors") {
  CHECK(an::exp(Interval(0.0)).lower() == 1.0);
  CHECK(an::exp(Interval(0.0)).upper() == 1.0);
  CHECK(an::exp(Interval(-kInf, 0.0)).lower() == 0.0);
  CHECK(an::exp(Interval(0.0, kInf)).upper() == kInf);
  CHECK(an::exp(Interval(-1000.0)).lower() == 0.0);
  CHECK(an::exp(Interval(-1000.0)).upper() == kTiny);
  CHECK(an::exp(Interval(1000.0)).lower() == kMax);
  CHECK(an::exp(Interval(1000.0)).upper() == kInf);
  CHECK(an::log(Interval(1.0)).lower() == 0.0);
  CHECK(an::log(Interval(1.0)).upper() == 0.0);
  CHECK(an::log(Interval(0.0, 1.0)).lower() == -kInf);
  CHECK(an::log(Interval(0.0, 1.0)).upper() == 0.0);
  CHECK_THROWS_AS((void)an::log(Interval(-1.0, 1.0)), hnf::proofs::Error);
  CHECK(an::sqrt_down(0.0) == 0.0);
  CHECK(an::exp_down(-1000.0) == 0.0);
  CHECK(an::exp_up(-kInf) == 0.0);

  // The checking policy: empty and NaN intervals are never created silently.
  const double nan = std::numeric_limits<double>::quiet_NaN();
  CHECK_THROWS_AS((void)Interval(2.0, 1.0), hnf::proofs::Error);
  CHECK_THROWS_AS((void)Interval(nan), hnf::proofs::Error);
  CHECK_THROWS_AS((void)Interval(nan, 1.0), hnf::proofs::Error);
  CHECK_THROWS_AS((void)(Interval(1.0) + nan), hnf::proofs::Error);
  CHECK_THROWS_AS((void)sqrt(Interval(-2.0, -1.0)), hnf::proofs::Error);
  CHECK_THROWS_AS((void)(Interval(1.0, 2.0) / Interval(0.0)), hnf::proofs::Error);
  try {
    (void)(Interval(1.0, 2.0) / Interval(0.0));
  } catch (const hnf::proofs::Error& e) {
    CHECK(e.kind() == hnf::proofs::ErrorKind::kInternal);
  }
  // Division by an interval containing 0 is unbounded, not an error; sqrt clips at 0.
  const Interval whole = Interval(1.0, 2.0) / Interval(-1.0, 1.0);
  CHECK(whole.lower() == -kInf);
  CHECK(whole.upper() == kInf);
  const Interval root = sqrt(Interval(-1.0, 4.0));
  CHECK(root.lower() == 0.0);
  CHECK(root.upper() == 2.0);

  CHECK(an::magnitude_up(Interval(-3.0, 2.0)) == 3.0);
  CHECK(an::magnitude_up(Interval(1.0, 2.0)) == 2.0);
  CHECK(an::magnitude_up(Interval(-5.0, -4.0)) == 5.0);
  CHECK(an::magnitude_up(Interval(-0.0, 0.0)) == 0.0);
}

namespace {

// A rigorous bracket [lower(j), upper(j)] of the exact o_j = sum_t softmax(s)_t v_tj for point
// scores s, computed with MPFR in directed rounding at `bits`. Like the enclosure under test it is
// intersected with [min_t v_tj, max_t v_tj] (an exact fact, recomputed here independently):
// without that, an exact value a hair inside the hull (one weight e^-100) has a bracket poking
// out of it, and an enclosure ending exactly at the hull would look like a miss.
class SoftmaxBracket {
 public:
  explicit SoftmaxBracket(int bits)
      : bits_(bits), arg_(bits), z_lo_(bits), z_hi_(bits), n_lo_(bits), n_hi_(bits), tmp_(bits) {}

  void evaluate(const std::vector<double>& s, const std::vector<double>& values, std::size_t d) {
    const std::size_t num = s.size();
    while (e_lo_.size() < num) {
      e_lo_.emplace_back(bits_);
      e_hi_.emplace_back(bits_);
    }
    while (lower_.size() < d) {
      lower_.emplace_back(bits_);
      upper_.emplace_back(bits_);
    }
    const double m = *std::max_element(s.begin(), s.end());
    mpfr_set_zero(z_lo_.get(), 1);
    mpfr_set_zero(z_hi_.get(), 1);
    for (std::size_t t = 0; t < num; ++t) {
      // e_t = exp(s_t - m): one mpfr_exp when s_t - m is exact (nearly always at 128 bits): an
      // inexact rounding down is followed by the rounding up.
      mpfr_set_d(arg_.get(), s[t], MPFR_RNDN);
      const int sub_inexact = mpfr_sub_d(arg_.get(), arg_.get(), m, MPFR_RNDD);
      const int exp_inexact = mpfr_exp(e_lo_[t].get(), arg_.get(), MPFR_RNDD);
      if (sub_inexact == 0) {
        mpfr_set(e_hi_[t].get(), e_lo_[t].get(), MPFR_RNDN);
        if (exp_inexact != 0) mpfr_nextabove(e_hi_[t].get());
      } else {
        mpfr_set_d(arg_.get(), s[t], MPFR_RNDN);
        mpfr_sub_d(arg_.get(), arg_.get(), m, MPFR_RNDU);
        mpfr_exp(e_hi_[t].get(), arg_.get(), MPFR_RNDU);
      }
      mpfr_add(z_lo_.get(), z_lo_.get(), e_lo_[t].get(), MPFR_RNDD);
      mpfr_add(z_hi_.get(), z_hi_.get(), e_hi_[t].get(), MPFR_RNDU);
    }
    for (std::size_t j = 0; j < d; ++j) {
      mpfr_set_zero(n_lo_.get(), 1);
      mpfr_set_zero(n_hi_.get(), 1);
      double v_min = values[j];
      double v_max = values[j];
      for (std::size_t t = 0; t < num; ++t) {
        const double v = values[t * d + j];
        v_min = std::min(v_min, v);
        v_max = std::max(v_max, v);
        mpfr_mul_d(tmp_.get(), (v >= 0.0 ? e_lo_ : e_hi_)[t].get(), v, MPFR_RNDD);
        mpfr_add(n_lo_.get(), n_lo_.get(), tmp_.get(), MPFR_RNDD);
        mpfr_mul_d(tmp_.get(), (v >= 0.0 ? e_hi_ : e_lo_)[t].get(), v, MPFR_RNDU);
        mpfr_add(n_hi_.get(), n_hi_.get(), tmp_.get(), MPFR_RNDU);
      }
      mpfr_div(lower_[j].get(), n_lo_.get(), mpfr_sgn(n_lo_.get()) < 0 ? z_lo_.get() : z_hi_.get(), MPFR_RNDD);
      mpfr_div(upper_[j].get(), n_hi_.get(), mpfr_sgn(n_hi_.get()) > 0 ? z_lo_.get() : z_hi_.get(), MPFR_RNDU);
      if (mpfr_cmp_d(lower_[j].get(), v_min) < 0) mpfr_set_d(lower_[j].get(), v_min, MPFR_RNDN);
      if (mpfr_cmp_d(upper_[j].get(), v_max) > 0) mpfr_set_d(upper_[j].get(), v_max, MPFR_RNDN);
    }
  }

  // 1: the exact value is certainly inside [lo, hi]; -1: certainly outside; 0: undecided at this
  // precision.
  [[nodiscard]] int inside(std::size_t j, const Interval& e) const {
    if (mpfr_cmp_d(lower_[j].get(), e.lower()) >= 0 && mpfr_cmp_d(upper_[j].get(), e.upper()) <= 0) return 1;
    if (mpfr_cmp_d(upper_[j].get(), e.lower()) < 0 || mpfr_cmp_d(lower_[j].get(), e.upper()) > 0) return -1;
    return 0;
  }
  [[nodiscard]] double approximate(std::size_t j) const { return mpfr_get_d(lower_[j].get(), MPFR_RNDN); }

 private:
  int bits_;
  std::vector<MpfrFloat> e_lo_, e_hi_, lower_, upper_;
  MpfrFloat arg_, z_lo_, z_hi_, n_lo_, n_hi_, tmp_;
};

}  // namespace

TEST_CASE("softmax_weighted_sum encloses the MPFR softmax-weighted sum (100000 instances)") {
  Sampler s(51);
  // 128 bits (~75 beyond a double; mpfr_exp costs half of what it does at 256, and this makes
  // 3.3 million calls); an undecided case is redone at 2048 bits and counts as a miss if still
  // undecided.
  SoftmaxBracket reference(128);
  SoftmaxBracket fine_reference(2048);
  long misses = 0;
  long fast_misses = 0;  // enclose_softmax_output, the kernel the analysis runs
  long refined = 0;
  long too_wide = 0;
  long point_instances = 0;
  double worst_relative_width = 0.0;  // over instances with point scores
  std::vector<Interval> scores;
  std::vector<double> points, values;
  for (int instance = 0; instance < kSamples; ++instance) {
    const auto num = static_cast<std::size_t>(s.integer(1, 64));
    const auto d = static_cast<std::size_t>(s.integer(1, 8));
    const double spread = std::array{1e-3, 1.0, 10.0, 100.0, 700.0}[static_cast<std::size_t>(s.integer(0, 4))];
    const int width_kind = s.integer(0, 3);  // 0: point scores; 1: ulps; 2: relative 1e-6; 3: wide
    const double value_scale = std::ldexp(1.0, s.integer(-30, 30)) * (s.coin(0.02) ? 1e280 : 1.0);
    scores.clear();
    points.clear();
    values.clear();
    for (std::size_t t = 0; t < num; ++t) {
      const double c = s.uniform(-spread, spread);
      double lo = c;
      double hi = c;
      if (width_kind == 1) {
        for (int k = s.integer(0, 4); k > 0; --k) hi = an::next_up(hi);
      } else if (width_kind == 2) {
        hi = c + std::fabs(c) * 1e-6;
      } else if (width_kind == 3) {
        lo = c - s.uniform(0.0, 50.0);
        hi = c + s.uniform(0.0, 50.0);
      }
      scores.emplace_back(lo, hi);
      // A point inside [lo, hi]: an end or a random interior value (clamped: lo + u (hi - lo)
      // is rounded and could leave the interval).
      const int where = s.integer(0, 2);
      const double p = where == 0 ? lo : where == 1 ? hi : std::clamp(lo + s.uniform(0.0, 1.0) * (hi - lo), lo, hi);
      points.push_back(p);
    }
    for (std::size_t i = 0; i < num * d; ++i) values.push_back(s.uniform(-1.0, 1.0) * value_scale);

    const auto enclosure = an::softmax_weighted_sum(scores, values, d);
    reference.evaluate(points, values, d);
    REQUIRE(enclosure.size() == d);
    // The analysis's fast kernel (attention_enclosure.h) on the same instance.
    std::vector<double> s_lo, s_hi, scratch;
    for (const Interval& sc : scores) {
      s_lo.push_back(sc.lower());
      s_hi.push_back(sc.upper());
    }
    const auto fast = an::enclose_softmax_output(s_lo, s_hi, values, d, num, scratch);
    bool fine_done = false;
    for (std::size_t j = 0; j < d; ++j) {
      const Interval fast_j(fast.lo[j], fast.hi[j]);
      int verdict = reference.inside(j, fast_j);
      if (verdict == 0) {
        if (!fine_done) fine_reference.evaluate(points, values, d);
        fine_done = true;
        verdict = fine_reference.inside(j, fast_j);
      }
      if (verdict != 1) ++fast_misses;
    }
    for (std::size_t j = 0; j < d; ++j) {
      int verdict = reference.inside(j, enclosure[j]);
      if (verdict == 0) {
        ++refined;
        if (!fine_done) fine_reference.evaluate(points, values, d);
        fine_done = true;
        verdict = fine_reference.inside(j, enclosure[j]);
      }
      if (verdict != 1) {
        ++misses;
        if (misses <= 5) {
          MESSAGE("miss: T=" << num << " d=" << d << " j=" << j << " [" << hex(enclosure[j].lower()) << ", "
                             << hex(enclosure[j].upper()) << "] reference " << hex(reference.approximate(j)));
        }
      }
    }
    if (width_kind == 0) {
      // With point scores the enclosure must be nearly tight: within ~6(T+2) ulps of max |v|.
      ++point_instances;
      double vmax = 0.0;
      for (const double v : values) vmax = std::max(vmax, std::fabs(v));
      for (const Interval& e : enclosure) {
        const double relative = (e.upper() - e.lower()) / vmax;
        worst_relative_width = std::max(worst_relative_width, relative);
        if (relative > 6.0 * static_cast<double>(num + 2) * 0x1p-52) ++too_wide;
      }
    }
  }
  MESSAGE("softmax_weighted_sum: " << kSamples << " instances, " << misses << " misses, " << refined
                                   << " components decided at 2048 bits; point-score instances "
                                   << point_instances << ", worst width / max|v| " << worst_relative_width);
  MESSAGE("enclose_softmax_output: " << kSamples << " instances, " << fast_misses << " misses");
  CHECK(misses == 0);
  CHECK(fast_misses == 0);
  CHECK(too_wide == 0);
}

TEST_CASE("softmax_weighted_sum: exact cases and preconditions") {
  // One key: the output is the value row, exactly.
  const std::vector<Interval> one = {Interval(3.0, 5.0)};
  const std::vector<double> row = {0.25, -7.0};
  const auto o = an::softmax_weighted_sum(one, row, 2);
  CHECK(o[0].lower() == 0.25);
  CHECK(o[0].upper() == 0.25);
  CHECK(o[1].lower() == -7.0);
  // Equal values: any weights give that value.
  const std::vector<Interval> two = {Interval(-600.0, 600.0), Interval(0.0)};
  const auto c = an::softmax_weighted_sum(two, std::vector<double>{2.0, 2.0}, 1);
  CHECK(c[0].lower() == 2.0);
  CHECK(c[0].upper() == 2.0);
  // A score far below the other: the weight of value 1 is in [0, e^-1000]; encloses 0 tightly.
  const std::vector<Interval> far = {Interval(-1000.0), Interval(0.0)};
  const auto f = an::softmax_weighted_sum(far, std::vector<double>{1.0, 0.0}, 1);
  CHECK(f[0].lower() == 0.0);
  CHECK(f[0].upper() <= 1e-300);
  CHECK_THROWS_AS((void)an::softmax_weighted_sum({}, {}, 1), hnf::proofs::Error);
  CHECK_THROWS_AS((void)an::softmax_weighted_sum(one, std::vector<double>{1.0, 2.0, 3.0}, 2), hnf::proofs::Error);
  CHECK_THROWS_AS((void)an::softmax_weighted_sum(std::vector<Interval>{Interval(0.0, kInf)}, row, 2),
                  hnf::proofs::Error);
}
