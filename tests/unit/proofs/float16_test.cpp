#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <random>
#include <vector>

#include "hnf/proofs/float16.h"

using namespace hnf::proofs;

namespace {
bool is_nan_half(std::uint16_t h) { return (h & 0x7c00u) == 0x7c00u && (h & 0x3ffu) != 0; }

// Exact value of a finite half by its definition, for comparison with the bit manipulation.
double half_value_by_definition(std::uint16_t h) {
  const int exponent = (h >> 10) & 0x1f;
  const int mantissa = h & 0x3ff;
  const double magnitude = exponent == 0 ? std::ldexp(mantissa, -24) : std::ldexp(1024 + mantissa, exponent - 25);
  return (h & 0x8000u) ? -magnitude : magnitude;
}
}  // namespace

TEST_CASE("every finite half converts to its exact value and back to the same bits") {
  for (std::uint32_t bits = 0; bits <= 0xffffu; ++bits) {
    const auto h = static_cast<std::uint16_t>(bits);
    if ((h & 0x7c00u) == 0x7c00u) continue;
    const float f = half_bits_to_float(h);
    REQUIRE(static_cast<double>(f) == half_value_by_definition(h));
    REQUIRE(std::signbit(f) == ((h & 0x8000u) != 0));
    REQUIRE(float_to_half_bits(f) == h);
  }
}

TEST_CASE("half infinities and NaNs survive the round trip") {
  CHECK(std::isinf(half_bits_to_float(0x7c00)));
  CHECK(half_bits_to_float(0xfc00) < 0);
  CHECK(float_to_half_bits(INFINITY) == 0x7c00);
  CHECK(float_to_half_bits(-INFINITY) == 0xfc00);
  for (std::uint16_t h : {std::uint16_t{0x7e00}, std::uint16_t{0x7c01}, std::uint16_t{0xfe55}}) {
    CHECK(std::isnan(half_bits_to_float(h)));
    CHECK(is_nan_half(float_to_half_bits(half_bits_to_float(h))));
  }
  CHECK(is_nan_half(float_to_half_bits(NAN)));
}

TEST_CASE("float to half rounds to nearest, ties to even, at every adjacent pair of halves") {
  // For consecutive positive finite halves a < b the midpoint m is exactly representable in
  // float; values just below m round to a, just above to b, m itself to the even one.
  for (std::uint16_t h = 0; h < 0x7bff; ++h) {
    const float a = half_bits_to_float(h);
    const float b = half_bits_to_float(static_cast<std::uint16_t>(h + 1));
    const float mid = static_cast<float>((static_cast<double>(a) + b) / 2);
    REQUIRE(static_cast<double>(mid) == (static_cast<double>(a) + b) / 2);
    const std::uint16_t even = (h & 1u) == 0 ? h : static_cast<std::uint16_t>(h + 1);
    REQUIRE(float_to_half_bits(mid) == even);
    REQUIRE(float_to_half_bits(std::nextafter(mid, 0.0f)) == h);
    REQUIRE(float_to_half_bits(std::nextafter(mid, INFINITY)) == h + 1);
    REQUIRE(float_to_half_bits(-mid) == (even | 0x8000u));
  }
}

TEST_CASE("float to half overflow and underflow boundaries") {
  CHECK(float_to_half_bits(65504.0f) == 0x7bff);
  CHECK(float_to_half_bits(65519.996f) == 0x7bff);
  CHECK(float_to_half_bits(65520.0f) == 0x7c00);  // tie between 65504 (odd) and 2^16: to even, inf
  CHECK(float_to_half_bits(1e30f) == 0x7c00);
  CHECK(float_to_half_bits(0x1p-25f) == 0x0000);  // tie between 0 and the smallest subnormal
  CHECK(float_to_half_bits(std::nextafter(0x1p-25f, 1.0f)) == 0x0001);
  CHECK(float_to_half_bits(0x1p-24f) == 0x0001);
  CHECK(float_to_half_bits(1e-45f) == 0x0000);  // float subnormal
  CHECK(float_to_half_bits(-0.0f) == 0x8000);
}

TEST_CASE("bf16 conversions are exact one way and round to nearest even the other") {
  for (std::uint32_t bits = 0; bits <= 0xffffu; ++bits) {
    const auto b = static_cast<std::uint16_t>(bits);
    const float f = bf16_bits_to_float(b);
    if (std::isnan(f)) {
      REQUIRE(std::isnan(bf16_bits_to_float(float_to_bf16_bits(f))));
      continue;
    }
    REQUIRE(float_to_bf16_bits(f) == b);
  }
  CHECK(float_to_bf16_bits(std::bit_cast<float>(0x3f808000u)) == 0x3f80);  // tie, even stays
  CHECK(float_to_bf16_bits(std::bit_cast<float>(0x3f818000u)) == 0x3f82);  // tie, odd rounds up
  CHECK(float_to_bf16_bits(std::bit_cast<float>(0x3f808001u)) == 0x3f81);
  CHECK(float_to_bf16_bits(std::bit_cast<float>(0x7f7fffffu)) == 0x7f80);  // FLT_MAX rounds to inf
}

// Directed rounding from double: constexpr, so these hold at compile time too.
static_assert(double_to_half_bits_down(1.0) == 0x3c00 && double_to_half_bits_up(1.0) == 0x3c00);
static_assert(double_to_half_bits_down(0.1) == 0x2e66 && double_to_half_bits_up(0.1) == 0x2e67);
static_assert(double_to_half_bits_down(-0.1) == 0xae67 && double_to_half_bits_up(-0.1) == 0xae66);

TEST_CASE("double to half rounds down and up at every adjacent pair of halves") {
  // Between consecutive positive halves a < b every double rounds down to a and up to b;
  // halves themselves are fixed points. Probe a, b, the midpoint and the doubles next to a
  // and b, and the mirrored negatives.
  for (std::uint16_t h = 0; h < 0x7bff; ++h) {
    const auto next = static_cast<std::uint16_t>(h + 1);
    const double a = half_value_by_definition(h);
    const double b = half_value_by_definition(next);
    REQUIRE(double_to_half_bits_down(a) == h);
    REQUIRE(double_to_half_bits_up(a) == h);
    REQUIRE(double_to_half_bits_down(-a) == (h | 0x8000u));
    REQUIRE(double_to_half_bits_up(-a) == (h | 0x8000u));
    for (const double inside : {std::nextafter(a, b), (a + b) / 2, std::nextafter(b, a)}) {
      REQUIRE(a < inside);
      REQUIRE(inside < b);
      REQUIRE(double_to_half_bits_down(inside) == h);
      REQUIRE(double_to_half_bits_up(inside) == next);
      REQUIRE(double_to_half_bits_down(-inside) == (next | 0x8000u));
      REQUIRE(double_to_half_bits_up(-inside) == (h | 0x8000u));
    }
  }
}

TEST_CASE("double to half directed rounding matches the neighbouring halves of random doubles") {
  // Reference: the sorted finite half values; down = largest <= v, up = smallest >= v.
  std::vector<double> halves;
  for (std::uint32_t bits = 0; bits <= 0x7bffu; ++bits) {
    const double v = half_value_by_definition(static_cast<std::uint16_t>(bits));
    halves.push_back(v);
    halves.push_back(-v);
  }
  std::sort(halves.begin(), halves.end());
  std::mt19937_64 rng(20240611);
  std::uniform_int_distribution<int> exponent(-40, 17);
  std::uniform_real_distribution<double> mantissa(1.0, 2.0);
  for (int i = 0; i < 100000; ++i) {
    const double v = std::ldexp(mantissa(rng), exponent(rng)) * ((i & 1) != 0 ? -1.0 : 1.0);
    const std::uint16_t down = double_to_half_bits_down(v);
    const std::uint16_t up = double_to_half_bits_up(v);
    const auto above = std::upper_bound(halves.begin(), halves.end(), v);  // first > v
    const auto at_or_above = std::lower_bound(halves.begin(), halves.end(), v);  // first >= v
    const double want_down = above == halves.begin() ? -INFINITY : *(above - 1);
    const double want_up = at_or_above == halves.end() ? INFINITY : *at_or_above;
    REQUIRE(static_cast<double>(half_bits_to_float(down)) == want_down);
    REQUIRE(static_cast<double>(half_bits_to_float(up)) == want_up);
    // Round to nearest of the float nearest to v is one of the two (or equal to both).
    const std::uint16_t nearest = float_to_half_bits(static_cast<float>(v));
    if (static_cast<double>(static_cast<float>(v)) == v) REQUIRE((nearest == down || nearest == up));
  }
}

TEST_CASE("double to half directed rounding at overflow, underflow, zeros, infinities and NaN") {
  const double max_double = std::numeric_limits<double>::max();
  const double min_subnormal = std::numeric_limits<double>::denorm_min();
  CHECK(double_to_half_bits_down(65504.0) == 0x7bff);
  CHECK(double_to_half_bits_up(65504.0) == 0x7bff);
  CHECK(double_to_half_bits_down(std::nextafter(65504.0, INFINITY)) == 0x7bff);
  CHECK(double_to_half_bits_up(std::nextafter(65504.0, INFINITY)) == 0x7c00);
  CHECK(double_to_half_bits_down(65536.0) == 0x7bff);
  CHECK(double_to_half_bits_up(65536.0) == 0x7c00);
  CHECK(double_to_half_bits_down(max_double) == 0x7bff);
  CHECK(double_to_half_bits_up(max_double) == 0x7c00);
  CHECK(double_to_half_bits_down(-max_double) == 0xfc00);
  CHECK(double_to_half_bits_up(-max_double) == 0xfbff);
  CHECK(double_to_half_bits_down(-65504.0) == 0xfbff);
  CHECK(double_to_half_bits_down(std::nextafter(-65504.0, -INFINITY)) == 0xfc00);
  CHECK(double_to_half_bits_up(std::nextafter(-65504.0, -INFINITY)) == 0xfbff);
  CHECK(double_to_half_bits_down(INFINITY) == 0x7c00);
  CHECK(double_to_half_bits_up(INFINITY) == 0x7c00);
  CHECK(double_to_half_bits_down(-INFINITY) == 0xfc00);
  CHECK(double_to_half_bits_up(-INFINITY) == 0xfc00);
  CHECK(is_nan_half(double_to_half_bits_down(NAN)));
  CHECK(is_nan_half(double_to_half_bits_up(-NAN)));
  CHECK(double_to_half_bits_down(0.0) == 0x0000);
  CHECK(double_to_half_bits_up(0.0) == 0x0000);
  CHECK(double_to_half_bits_down(-0.0) == 0x8000);
  CHECK(double_to_half_bits_up(-0.0) == 0x8000);
  CHECK(double_to_half_bits_down(min_subnormal) == 0x0000);
  CHECK(double_to_half_bits_up(min_subnormal) == 0x0001);
  CHECK(double_to_half_bits_down(-min_subnormal) == 0x8001);
  CHECK(double_to_half_bits_up(-min_subnormal) == 0x8000);
  CHECK(double_to_half_bits_up(std::numeric_limits<double>::min()) == 0x0001);
  CHECK(double_to_half_bits_down(0x1p-24) == 0x0001);
  CHECK(double_to_half_bits_up(0x1p-25) == 0x0001);
  CHECK(double_to_half_bits_down(0x1p-25) == 0x0000);
  CHECK(double_to_half_bits_up(std::nextafter(0x1p-14, 0.0)) == 0x0400);  // subnormal carries to normal
  CHECK(double_to_half_bits_down(std::nextafter(0x1p-14, 0.0)) == 0x03ff);
  CHECK(double_to_half_bits_up(std::nextafter(2.0, 0.0)) == 0x4000);      // carry into the exponent
}
