#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <initializer_list>

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
