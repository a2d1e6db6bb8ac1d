// Bit-exact conversions between float and the 16-bit storage formats IEEE binary16 (F16)
// and bfloat16 (BF16). Conversions to 16 bits round to nearest, ties to even, independent
// of the current floating-point rounding mode (integer arithmetic only), so they stay
// correct inside code that switches rounding modes for interval arithmetic. Directed
// roundings (toward -inf / +inf) from double to binary16 serve rigorous bounds.
#pragma once

#include <bit>
#include <cstdint>
#include <limits>

namespace hnf::proofs {

static_assert(sizeof(float) == 4 && std::numeric_limits<float>::is_iec559,
              "float must be IEEE binary32");

// Exact: every binary16 value is representable as a float (NaN payloads kept).
[[nodiscard]] constexpr float half_bits_to_float(std::uint16_t h) noexcept {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
  const std::uint32_t exponent = (h >> 10) & 0x1fu;
  std::uint32_t mantissa = h & 0x3ffu;
  if (exponent == 0x1f) return std::bit_cast<float>(sign | 0x7f800000u | (mantissa << 13));
  if (exponent != 0) return std::bit_cast<float>(sign | ((exponent + 112u) << 23) | (mantissa << 13));
  if (mantissa == 0) return std::bit_cast<float>(sign);
  // Subnormal half: renormalise into a normal float.
  std::uint32_t float_exponent = 113;  // exponent of 2^-14 in float bias, before the shifts
  while ((mantissa & 0x400u) == 0) {
    mantissa <<= 1;
    --float_exponent;
  }
  return std::bit_cast<float>(sign | (float_exponent << 23) | ((mantissa & 0x3ffu) << 13));
}

// Round to nearest even; overflow goes to +-inf, NaN stays NaN (quiet, top payload bits kept).
[[nodiscard]] constexpr std::uint16_t float_to_half_bits(float value) noexcept {
  const std::uint32_t bits = std::bit_cast<std::uint32_t>(value);
  const auto sign = static_cast<std::uint16_t>((bits >> 16) & 0x8000u);
  const std::uint32_t magnitude = bits & 0x7fffffffu;
  if (magnitude >= 0x7f800000u) {  // inf or NaN
    if (magnitude == 0x7f800000u) return static_cast<std::uint16_t>(sign | 0x7c00u);
    return static_cast<std::uint16_t>(sign | 0x7e00u | ((magnitude >> 13) & 0x3ffu));
  }
  const std::uint32_t exponent = magnitude >> 23;
  std::uint32_t significand = magnitude & 0x7fffffu;
  std::uint32_t shift = 13;                       // float mantissa bits dropped for a normal half
  std::uint32_t result_base = 0;
  if (exponent >= 113) {                          // |value| >= 2^-14: normal half (or overflow)
    if (exponent >= 143) return static_cast<std::uint16_t>(sign | 0x7c00u);  // >= 2^16
    result_base = (exponent - 112u) << 10;
  } else {                                        // subnormal half or zero
    if (exponent < 102) return sign;              // < 2^-25: rounds to zero
    significand |= 0x800000u;                     // implicit leading bit
    shift = 126u - exponent;                      // in [14, 24]
  }
  const std::uint32_t kept = significand >> shift;
  const std::uint32_t remainder = significand & ((1u << shift) - 1u);
  const std::uint32_t halfway = 1u << (shift - 1u);
  std::uint32_t result = result_base + kept;      // carries propagate into the exponent
  if (remainder > halfway || (remainder == halfway && (kept & 1u) != 0)) ++result;
  if (result >= 0x7c00u) result = 0x7c00u;        // rounded past the largest finite half
  return static_cast<std::uint16_t>(sign | result);
}

namespace detail {

// |value| of a finite double rounded toward zero to a binary16 magnitude (bits 0..0x7bff;
// anything >= 65504 truncates to 0x7bff), and whether that truncation dropped anything.
struct HalfTruncation {
  std::uint16_t magnitude;
  bool inexact;
};

[[nodiscard]] constexpr HalfTruncation truncate_to_half_magnitude(std::uint64_t magnitude_bits) noexcept {
  constexpr std::uint64_t kFractionMask = (std::uint64_t{1} << 52) - 1u;
  const std::uint64_t exponent = magnitude_bits >> 52;  // biased by 1023
  const std::uint64_t fraction = magnitude_bits & kFractionMask;
  if (exponent >= 1023u + 16u) return {0x7bffu, true};  // >= 2^16, beyond the largest half
  if (exponent >= 1023u - 14u) {                         // [2^-14, 2^16): normal half
    // Half exponent field in [1, 30]; 30 with a full mantissa is 0x7bff, so no overflow here.
    const std::uint64_t kept = ((exponent - (1023u - 15u)) << 10) | (fraction >> 42);
    const bool inexact = (fraction & ((std::uint64_t{1} << 42) - 1u)) != 0;
    return {static_cast<std::uint16_t>(kept), inexact};
  }
  if (exponent == 0) return {0, magnitude_bits != 0};  // zero or a double subnormal (< 2^-1022)
  // Subnormal half m * 2^-24 with m = floor(|value| / 2^-24), where
  // |value| = (2^52 + fraction) * 2^(exponent - 1075); the shift is >= 43 here.
  const std::uint64_t significand = fraction | (std::uint64_t{1} << 52);
  const std::uint64_t shift = 1051u - exponent;
  if (shift >= 64) return {0, true};
  const std::uint64_t kept = significand >> shift;
  const bool inexact = (significand & ((std::uint64_t{1} << shift) - 1u)) != 0;
  return {static_cast<std::uint16_t>(kept), inexact};
}

// IEEE 754 directed rounding of a double to binary16: toward +inf when toward_positive,
// toward -inf otherwise. Truncate the magnitude, then step one unit away from zero when the
// truncation was inexact and the direction points away from zero; the step carries into the
// exponent field and from 0x7bff into 0x7c00 (inf), exactly the IEEE overflow rule.
[[nodiscard]] constexpr std::uint16_t double_to_half_bits_directed(double value,
                                                                   bool toward_positive) noexcept {
  const std::uint64_t bits = std::bit_cast<std::uint64_t>(value);
  const bool negative = (bits >> 63) != 0;
  const auto sign = static_cast<std::uint16_t>(negative ? 0x8000u : 0u);
  const std::uint64_t magnitude = bits & 0x7fffffffffffffffu;
  if (magnitude >= 0x7ff0000000000000u) {  // inf or NaN
    if (magnitude == 0x7ff0000000000000u) return static_cast<std::uint16_t>(sign | 0x7c00u);
    return static_cast<std::uint16_t>(sign | 0x7e00u | ((magnitude >> 42) & 0x3ffu));
  }
  HalfTruncation t = truncate_to_half_magnitude(magnitude);
  if (t.inexact && toward_positive != negative) ++t.magnitude;
  return static_cast<std::uint16_t>(sign | t.magnitude);
}

}  // namespace detail

// Directed rounding of a double to binary16, integer arithmetic only, so the result does not
// depend on the FPU rounding mode. Rounds toward -inf: the largest half <= value. Overflow
// follows IEEE 754: values above 65504 give 65504, values below -65504 give -inf. Signed zeros
// as IEEE: +tiny -> +0, -tiny -> -2^-24, -0 -> -0. NaN stays NaN (quiet), inf stays inf.
[[nodiscard]] constexpr std::uint16_t double_to_half_bits_down(double value) noexcept {
  return detail::double_to_half_bits_directed(value, false);
}

// Rounds toward +inf: the smallest half >= value. Values above 65504 give +inf, values below
// -65504 give -65504; +tiny -> 2^-24, -tiny -> -0. NaN stays NaN (quiet), inf stays inf.
[[nodiscard]] constexpr std::uint16_t double_to_half_bits_up(double value) noexcept {
  return detail::double_to_half_bits_directed(value, true);
}

// Exact.
[[nodiscard]] constexpr float bf16_bits_to_float(std::uint16_t b) noexcept {
  return std::bit_cast<float>(static_cast<std::uint32_t>(b) << 16);
}

// Round to nearest even; NaN stays NaN (quiet).
[[nodiscard]] constexpr std::uint16_t float_to_bf16_bits(float value) noexcept {
  const std::uint32_t bits = std::bit_cast<std::uint32_t>(value);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((bits >> 16) | 0x40u);
  const std::uint32_t rounding_bias = 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<std::uint16_t>((bits + rounding_bias) >> 16);
}

}  // namespace hnf::proofs
