// The floating-point model of proofs/THEORY.md section 1 as this build runs it. The type
// properties are static_asserts in hnf/proofs/directed.h; what only a run shows is here.
#include <doctest/doctest.h>

#include <cfenv>
#include <cmath>

#include "hnf/proofs/directed.h"
#include "skip.h"

namespace {

// a*b + c in a function compiled for FMA hardware: GCC and clang fuse it into one FMA (one
// rounding) unless the build turns contraction off (-ffp-contract=off,
// cmake/HnfCompileOptions.cmake).
#if defined(__x86_64__) || defined(__i386__)
__attribute__((target("fma"), noinline))
#else
__attribute__((noinline))
#endif
double product_then_sum(double a, double b, double c) {
  return a * b + c;
}

bool cpu_has_fma() {
#if defined(__x86_64__) || defined(__i386__)
  return __builtin_cpu_supports("fma");
#else
  return true;  // AArch64 and the other targets GCC contracts on have a fused multiply-add
#endif
}

}  // namespace

TEST_CASE("a*b+c rounds twice, as written: the build does not contract it into an FMA") {
  if (!cpu_has_fma()) HNF_SKIP("this CPU has no FMA instruction: contraction cannot be observed");
  // a*b = 1 - 2^-60 exactly: rounded it is 1, so fl(fl(a*b) + c) = 0, while the fused result
  // keeps -2^-60. volatile: the compiler must not fold the arithmetic at compile time.
  volatile double a = 1.0 + 0x1p-30;
  volatile double b = 1.0 - 0x1p-30;
  volatile double c = -1.0;
  REQUIRE(std::fma(a, b, c) == -0x1p-60);  // the two results differ: the check can tell them apart
  CHECK(product_then_sum(a, b, c) == 0.0);
}

TEST_CASE("the process runs in round-to-nearest, the directed helpers' precondition") {
  CHECK(std::fegetround() == FE_TONEAREST);
  // 1 + u/2 ties to even (1), 1 + u/2 + tiny rounds up: round-to-nearest-even, not truncation.
  volatile double one = 1.0;
  CHECK(one + 0x1p-53 == 1.0);
  CHECK(one + (0x1p-53 + 0x1p-80) == 1.0 + 0x1p-52);
  CHECK(hnf::proofs::add_up(one, 0x1p-53) == 1.0 + 0x1p-52);
}
