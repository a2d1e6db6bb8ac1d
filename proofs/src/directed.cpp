#include "hnf/proofs/directed.h"

#include "hnf/proofs/error.h"

namespace hnf::proofs {

namespace {
constexpr double kInf = std::numeric_limits<double>::infinity();
}  // namespace

// Special values are returned exactly (e^0 = 1 is common: the shifted maximum score in softmax);
// everything else is libm in round-to-nearest plus one ulp in the bound's direction.
double exp_up(double x) noexcept {
  if (x == 0.0) return 1.0;
  if (x == -kInf) return 0.0;
  return next_up(std::exp(x));  // overflow: exp gives +inf, next_up keeps it
}

double exp_down(double x) noexcept {
  if (x == 0.0) return 1.0;
  if (x == kInf) return kInf;
  const double r = next_down(std::exp(x));  // overflow of a finite x: DBL_MAX, below the exact value
  return r < 0.0 ? 0.0 : r;                 // underflow to 0: next_down gives -denorm_min, but e^x > 0
}

double log_up(double x) noexcept {
  if (x == 1.0) return 0.0;
  if (x == 0.0) return -kInf;
  if (x == kInf) return kInf;
  return next_up(std::log(x));
}

double log_down(double x) noexcept {
  if (x == 1.0) return 0.0;
  if (x == 0.0) return -kInf;
  if (x == kInf) return kInf;
  return next_down(std::log(x));
}

double gamma_up(std::size_t n) {
  // n u / (1 - n u), every operation stepped up; n u < 1/2 for any n this code meets.
  const double nu = mul_up(static_cast<double>(n), std::ldexp(1.0, -53));
  HNF_ASSERT(nu < 0.5, "gamma_n requested for an absurd n");
  return div_up(nu, sub_down(1.0, nu));
}

double norm_up(const double* x, std::size_t n, int input_roundings) {
  // Each |x_i| is within a factor (1 + u)^k of the exact value it stands for; squaring doubles
  // that, and the sum of n nonnegative squares adds gamma_n: the exact sum of squares is at
  // most fl(S) / (1 - gamma_{n + 2k}). Squares that underflow lose up to 2^-1075 each.
  double sum = 0.0;
  for (std::size_t i = 0; i < n; ++i) sum += x[i] * x[i];
  const double gamma = gamma_up(n + 2 * static_cast<std::size_t>(input_roundings));
  const double underflow = mul_up(static_cast<double>(n), std::numeric_limits<double>::denorm_min());
  return sqrt_up(div_up(add_up(sum, underflow), sub_down(1.0, gamma)));
}

}  // namespace hnf::proofs
