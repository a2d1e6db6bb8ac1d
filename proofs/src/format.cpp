#include "hnf/proofs/format.h"

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <limits>
#include <system_error>
#include <vector>

#include "hnf/proofs/error.h"
#include "hnf/proofs/float16.h"

namespace hnf::proofs {
namespace {

constexpr float kHalfMax = 65504.0f;  // largest finite fp16

constexpr std::array<Encoding, 4> kIntegerEncodings = {Encoding::kInt8, Encoding::kInt4,
                                                       Encoding::kInt3, Encoding::kInt2};
constexpr std::array<int, 3> kHeadDimGroups = {32, 64, 128};
constexpr std::array<int, 3> kTokenGroups = {16, 32, 64};

// Every format any head_dim can have, in the vocabulary's order.
std::vector<Format> all_candidate_formats() {
  std::vector<Format> formats = {{Encoding::kF16, GroupAxis::kNone, 0},
                                 {Encoding::kBF16, GroupAxis::kNone, 0}};
  for (const Encoding encoding : kIntegerEncodings) {
    for (const int g : kHeadDimGroups) formats.push_back({encoding, GroupAxis::kHeadDim, g});
    for (const int g : kTokenGroups) formats.push_back({encoding, GroupAxis::kTokens, g});
  }
  return formats;
}

bool contains(std::span<const int> values, int v) {
  for (const int x : values)
    if (x == v) return true;
  return false;
}

// Shortest round-trip text of a float ("nan", "inf", "1e+06").
std::string float_text(float value) {
  std::array<char, 64> buffer{};
  const auto [end, ec] = std::to_chars(buffer.data(), buffer.data() + buffer.size(), value);
  HNF_ASSERT(ec == std::errc(), "to_chars of a float cannot fail with 64 characters");
  return std::string(buffer.data(), end);
}

double half_value(std::uint16_t h) { return static_cast<double>(half_bits_to_float(h)); }

int checked_bits(int bits) {
  HNF_ASSERT(bits >= 1 && bits <= 8, "integer code bits must be in [1, 8]");
  return bits;
}

double max_code(int bits) { return static_cast<double>((1 << checked_bits(bits)) - 1); }

void check_params(GroupParams p) {
  // integer_group_params never makes a negative, infinite or NaN scale or zero point.
  HNF_ASSERT(p.scale_f16 <= 0x7bffu, "scale must be a finite fp16 >= +0");
  HNF_ASSERT((p.zero_f16 & 0x7c00u) != 0x7c00u, "zero point must be a finite fp16");
}

// integer_group_params with the bad-input message's subject (a format name for blocks).
GroupParams group_params(std::span<const float> x, int bits, std::string_view subject) {
  HNF_ASSERT(!x.empty(), "a group has at least one value");
  const double m = max_code(bits);
  float lo = std::numeric_limits<float>::infinity();
  float hi = -std::numeric_limits<float>::infinity();
  for (std::size_t i = 0; i < x.size(); ++i) {
    if (!integer_storable(x[i]))
      throw bad_input(subject, "element " + std::to_string(i) + " (" + float_text(x[i]) + ") " +
                                   integer_value_problem(x[i]));
    if (x[i] < lo) lo = x[i];
    if (x[i] > hi) hi = x[i];
  }
  GroupParams p;
  p.zero_f16 = double_to_half_bits_down(static_cast<double>(lo));
  if (p.zero_f16 == 0x8000u) p.zero_f16 = 0;  // -0 -> +0: same value, order-independent bits
  if ((p.zero_f16 & 0x7c00u) == 0x7c00u)
    throw bad_input(subject, "zero point for group minimum " + float_text(lo) + " does not fit in fp16");
  const double z = half_value(p.zero_f16);
  // Exact zero difference means hi == z exactly (no underflow in double for these operands).
  double d = static_cast<double>(hi) - z;
  if (d == 0.0) {
    p.scale_f16 = 0;
    return p;
  }
  // Each operation errs by less than one ulp in any rounding mode (by at most half an ulp in
  // the default one), so stepping one ulp up after each gives upper bounds: d >= hi - z and
  // q >= d / m, hence s >= q gives s * m >= hi - z exactly.
  d = std::nextafter(d, std::numeric_limits<double>::infinity());
  const double q = std::nextafter(d / m, std::numeric_limits<double>::infinity());
  p.scale_f16 = double_to_half_bits_up(q);
  if (p.scale_f16 > 0x7bffu)
    throw bad_input(subject, "scale for group range [" + float_text(lo) + ", " + float_text(hi) +
                                 "] does not fit in fp16");
  return p;
}

std::string value_position(std::size_t row, std::size_t column, float value) {
  return "value " + float_text(value) + " at row " + std::to_string(row) + ", column " +
         std::to_string(column);
}

}  // namespace

bool integer_storable(float value) { return std::isfinite(value) && std::fabs(value) <= kHalfMax; }

std::string integer_value_problem(float value) {
  if (!std::isfinite(value)) return "is not finite";
  if (std::fabs(value) > kHalfMax) return "is outside the fp16 range [-65504, 65504]";
  return {};
}

int code_bits(Encoding encoding) {
  switch (encoding) {
    case Encoding::kF16: return 16;
    case Encoding::kBF16: return 16;
    case Encoding::kInt8: return 8;
    case Encoding::kInt4: return 4;
    case Encoding::kInt3: return 3;
    case Encoding::kInt2: return 2;
  }
  assert_failed("known encoding", __FILE__, __LINE__, "unknown Encoding value");
}

bool is_integer_encoding(Encoding encoding) {
  return code_bits(encoding) <= 8;
}

std::string format_name(const Format& format) {
  if (!is_integer_encoding(format.encoding)) {
    HNF_ASSERT(format.axis == GroupAxis::kNone && format.group_size == 0,
               "float formats have no groups");
    return format.encoding == Encoding::kF16 ? "fp16" : "bf16";
  }
  HNF_ASSERT(format.axis != GroupAxis::kNone && format.group_size > 0,
             "integer formats have a group axis and a positive group size");
  std::string name = "int" + std::to_string(code_bits(format.encoding));
  name += format.axis == GroupAxis::kHeadDim ? "-d" : "-t";
  name += std::to_string(format.group_size);
  return name;
}

std::optional<Format> parse_format(std::string_view name) {
  // Matching against the names of all candidates makes this the inverse of format_name by
  // construction, and accepts only the canonical spellings.
  for (const Format& candidate : all_candidate_formats())
    if (format_name(candidate) == name) return candidate;
  return std::nullopt;
}

bool is_valid_format(const Format& format, int head_dim) {
  if (head_dim <= 0) return false;
  const bool integer = is_integer_encoding(format.encoding);
  switch (format.axis) {
    case GroupAxis::kNone: return !integer && format.group_size == 0;
    case GroupAxis::kHeadDim:
      return integer && contains(kHeadDimGroups, format.group_size) && head_dim % format.group_size == 0;
    case GroupAxis::kTokens: return integer && contains(kTokenGroups, format.group_size);
  }
  return false;
}

std::vector<Format> format_vocabulary(int head_dim) {
  std::vector<Format> formats;
  for (const Format& candidate : all_candidate_formats())
    if (is_valid_format(candidate, head_dim)) formats.push_back(candidate);
  return formats;
}

double storage_bits_per_element(const Format& format) {
  if (!is_integer_encoding(format.encoding)) return 16.0;
  HNF_ASSERT(format.group_size > 0, "integer formats have a positive group size");
  return code_bits(format.encoding) + 32.0 / format.group_size;
}

GroupParams integer_group_params(std::span<const float> x, int bits) {
  return group_params(x, bits, "int" + std::to_string(checked_bits(bits)) + " group");
}

namespace {

// The code of x for zero point z, scale s > 0 and largest code m (integer_code's arithmetic).
inline std::uint8_t code_for(float x, double z, double s, double m) {
  const double q = (static_cast<double>(x) - z) / s;
  if (!(q > 0.0)) return 0;  // also NaN
  if (q >= m) return static_cast<std::uint8_t>(m);
  // Round q in (0, 2^b - 1) to nearest, ties to even, without the FPU mode: q - floor(q) is
  // exact (trivially for q < 1; by Sterbenz's lemma for q >= 1, as floor(q) <= q < 2 floor(q)).
  const double floor_q = std::floor(q);
  const double fraction = q - floor_q;
  const auto c = static_cast<unsigned>(floor_q);  // < 255: exact
  return static_cast<std::uint8_t>(fraction > 0.5 || (fraction == 0.5 && (c & 1u) != 0u) ? c + 1u : c);
}

}  // namespace

namespace {
std::uint64_t splitmix64(std::uint64_t z) noexcept {
  z += 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}
}  // namespace

double dither_uniform(const DitherKey& key, std::int64_t position, std::int64_t channel) noexcept {
  std::uint64_t h = splitmix64(key.seed);
  h = splitmix64(h ^ (static_cast<std::uint64_t>(key.stream) << 16 | static_cast<std::uint64_t>(key.side) << 8 | key.age));
  h = splitmix64(h ^ static_cast<std::uint64_t>(position));
  h = splitmix64(h ^ static_cast<std::uint64_t>(channel));
  return static_cast<double>(h >> 32) * 0x1p-32;  // k / 2^32, exact
}

std::uint8_t stochastic_integer_code(float x, GroupParams p, int bits, double u) {
  check_params(p);
  HNF_ASSERT(u >= 0.0 && u < 1.0, "a dither draw is in [0, 1)");
  if (p.scale_f16 == 0) return 0;
  const double m = max_code(bits);
  const double q = (static_cast<double>(x) - half_value(p.zero_f16)) / half_value(p.scale_f16);
  if (!(q > 0.0)) return 0;  // floor(0 + u) = 0 (q' >= 0 for the group's values); NaN gives 0
  const double c = std::floor(q + u);
  return static_cast<std::uint8_t>(std::min(c, m));
}

// |x - (z + s*c)| = s*|q - c| with q the exact quotient: c is floor(q' + u) rounded, so
// c in {floor(q'), floor(q') + 1} (or m after clamping, with q <= m), and |q' - q| < 2^-44
// (integer_radius's argument): |q - c| < 1 + 2^-44. Exact product as for integer_radius.
double stochastic_integer_radius(GroupParams p) {
  check_params(p);
  return half_value(p.scale_f16) * (1.0 + 0x1p-40);
}

std::uint8_t integer_code(float x, GroupParams p, int bits) {
  check_params(p);
  const double m = max_code(bits);
  if (p.scale_f16 == 0) return 0;
  return code_for(x, half_value(p.zero_f16), half_value(p.scale_f16), m);
}

double dequantize_code(std::uint8_t code, GroupParams p) {
  check_params(p);
  // Exact: s*c has at most 11 + 8 significant bits, and z + s*c is a multiple of 2^-24 below
  // 2^25, i.e. at most 49 significant bits.
  return half_value(p.zero_f16) + half_value(p.scale_f16) * static_cast<double>(code);
}

// Why radius = s*(1/2 + 2^-40) bounds the error for every float x in [z, z + s*(2^b - 1)]:
// Let q = (x - z)/s be the exact quotient, 0 <= q <= 2^b - 1 <= 255. The code is computed from
// q' = fl(fl(x - z) / s). Neither operation underflows (x - z is 0 or a multiple of 2^-149 of
// at least 2^-149; s <= 2^16), so each has relative error below u = 2^-53 in round to nearest
// (below 2u in any directed mode), and |q' - q| <= q*(2u + u^2) < 256 * 2^-52 = 2^-44 (below
// 2^-43 in any mode). Rounding q' to the nearest integer moves it by at most 1/2, so the
// unclamped code is within 1/2 + 2^-44 of q; clamping to [0, 2^b - 1], an interval containing
// q, only moves it toward q. Hence |x - (z + s*c)| = s*|q - c| <= s*(1/2 + 2^-44) < radius.
// The product s*(1/2 + 2^-40) = s*(2^40 + 1)*2^-41 is exact in double (11 + 41 significant
// bits, and s >= 2^-24 keeps it far from underflow), so no upward rounding is needed.
double integer_radius(GroupParams p) {
  check_params(p);
  return half_value(p.scale_f16) * (0.5 + 0x1p-40);
}

double float_format_radius(Encoding encoding, std::uint16_t stored_bits) {
  // The spacing above |y| is the ulp of |y|'s binade (also across a binade boundary, where the
  // next value is the next power of two); RNE maps to y only values within half the spacing
  // on either side, and the spacing below |y| is never larger than the one above it.
  switch (encoding) {
    case Encoding::kF16: {
      const int exponent = (stored_bits >> 10) & 0x1f;
      if (exponent == 0x1f)
        throw bad_input("fp16", "stored value is infinite or NaN (the input overflowed fp16)");
      return std::ldexp(1.0, (exponent == 0 ? 1 : exponent) - 15 - 10 - 1);
    }
    case Encoding::kBF16: {
      const int exponent = (stored_bits >> 7) & 0xff;
      if (exponent == 0xff)
        throw bad_input("bf16", "stored value is infinite or NaN (the input overflowed bf16)");
      return std::ldexp(1.0, (exponent == 0 ? 1 : exponent) - 127 - 7 - 1);
    }
    default: break;
  }
  assert_failed("float encoding", __FILE__, __LINE__, "float_format_radius of an integer encoding");
}

double float_radius_at_most(Encoding encoding, double magnitude) {
  HNF_ASSERT(encoding == Encoding::kF16 || encoding == Encoding::kBF16, "float_radius_at_most of a float encoding");
  HNF_ASSERT(magnitude >= 0.0, "a magnitude is not negative (nor NaN)");
  // Biased exponent field of magnitude's binade, clamped to the finite normal range (subnormals
  // share the radius of exponent field 1); float_format_radius is 2^(field - bias - mantissa - 1).
  const bool f16 = encoding == Encoding::kF16;
  const int bias = f16 ? 15 : 127, mantissa = f16 ? 10 : 7, largest_field = f16 ? 30 : 254;
  int field = largest_field;
  if (std::isfinite(magnitude)) {
    int e2 = 0;
    (void)std::frexp(magnitude, &e2);  // magnitude in [2^(e2-1), 2^e2); 0 gives e2 = 0
    field = magnitude == 0.0 ? 1 : std::clamp(e2 - 1 + bias, 1, largest_field);
  }
  return std::ldexp(1.0, field - bias - mantissa - 1);
}

std::size_t block_group_count(const Format& f, std::size_t rows, std::size_t head_dim) {
  if (!is_integer_encoding(f.encoding)) return 0;
  const auto g = static_cast<std::size_t>(f.group_size);
  HNF_ASSERT(g > 0, "integer formats have a positive group size");
  if (f.axis == GroupAxis::kHeadDim) return rows * (head_dim / g);
  return (rows + g - 1) / g * head_dim;
}

namespace {

// The codes of a group already checked: count values of x, stride apart (integer_code's arithmetic,
// or stochastic_integer_code's with the draw u(k) of element k).
template <class Draw>
void encode_group(std::span<const float> x, std::size_t stride, std::size_t count, GroupParams p, int bits,
                  std::uint16_t* codes, const Draw* draw) {
  check_params(p);
  const double z = half_value(p.zero_f16);
  const double s = half_value(p.scale_f16);
  const double m = max_code(bits);
  for (std::size_t k = 0; k < count; ++k) {
    if (draw) {
      codes[k * stride] = stochastic_integer_code(x[k * stride], p, bits, (*draw)(k));
    } else {
      codes[k * stride] = p.scale_f16 == 0 ? std::uint16_t{0} : code_for(x[k * stride], z, s, m);
    }
  }
}

}  // namespace

void encode_block(const Format& f, std::span<const float> x, std::size_t rows, std::size_t head_dim,
                  std::span<std::uint16_t> codes, std::span<GroupParams> groups, const BlockDither* dither) {
  const std::string name = format_name(f);
  HNF_ASSERT(head_dim == 0 || rows <= std::numeric_limits<std::size_t>::max() / head_dim,
             "rows * head_dim overflows");
  const std::size_t n = rows * head_dim;
  if (head_dim > static_cast<std::size_t>(std::numeric_limits<int>::max()) ||
      !is_valid_format(f, static_cast<int>(head_dim)))
    throw bad_input(name, "not a valid format for head_dim " + std::to_string(head_dim));
  HNF_ASSERT(x.size() == n && codes.size() == n && groups.size() == block_group_count(f, rows, head_dim),
             "x and codes must hold rows * head_dim elements, groups block_group_count");

  if (!is_integer_encoding(f.encoding)) {
    const bool f16 = f.encoding == Encoding::kF16;
    for (std::size_t i = 0; i < n; ++i) {
      const float v = x[i];
      if (!std::isfinite(v))
        throw bad_input(name, value_position(i / head_dim, i % head_dim, v) + " is not finite");
      const std::uint16_t stored = f16 ? float_to_half_bits(v) : float_to_bf16_bits(v);
      const float y = f16 ? half_bits_to_float(stored) : bf16_bits_to_float(stored);
      if (std::isinf(y))
        throw bad_input(name, value_position(i / head_dim, i % head_dim, v) + " overflows " + name +
                                  " (rounds to infinity)");
      codes[i] = stored;
    }
    return;
  }

  // Integer formats: check every value first, so that the message names its position.
  for (std::size_t i = 0; i < n; ++i) {
    if (!integer_storable(x[i]))
      throw bad_input(name, value_position(i / head_dim, i % head_dim, x[i]) + " " + integer_value_problem(x[i]));
  }
  const int bits = code_bits(f.encoding);
  const auto g = static_cast<std::size_t>(f.group_size);
  if (f.axis == GroupAxis::kHeadDim) {
    for (std::size_t start = 0; start < n; start += g) {  // g divides head_dim
      const GroupParams p = group_params(x.subspan(start, g), bits, name);
      groups[start / g] = p;
      const auto row = static_cast<std::int64_t>(start / head_dim);
      const auto column0 = static_cast<std::int64_t>(start % head_dim);
      const auto draw = [&](std::size_t k) {
        return dither_uniform(dither->key, dither->first_position + row, column0 + static_cast<std::int64_t>(k));
      };
      encode_group(x.subspan(start, g), 1, g, p, bits, codes.data() + start, dither ? &draw : nullptr);
    }
    return;
  }
  std::vector<float> group;
  group.reserve(g);
  for (std::size_t row0 = 0; row0 < rows; row0 += g) {
    const std::size_t row1 = std::min(rows, row0 + g);
    for (std::size_t column = 0; column < head_dim; ++column) {
      group.clear();
      for (std::size_t row = row0; row < row1; ++row) group.push_back(x[row * head_dim + column]);
      const GroupParams p = group_params(group, bits, name);
      groups[row0 / g * head_dim + column] = p;
      const std::size_t first = row0 * head_dim + column;
      const auto draw = [&](std::size_t k) {
        return dither_uniform(dither->key, dither->first_position + static_cast<std::int64_t>(row0 + k),
                              static_cast<std::int64_t>(column));
      };
      encode_group(x.subspan(first), head_dim, row1 - row0, p, bits, codes.data() + first, dither ? &draw : nullptr);
    }
  }
}

double decode_element(Encoding encoding, std::uint16_t code, GroupParams p) {
  switch (encoding) {
    case Encoding::kF16: return half_value(code);
    case Encoding::kBF16: return static_cast<double>(bf16_bits_to_float(code));
    default: break;
  }
  HNF_ASSERT(code <= 0xffu, "an integer code has at most 8 bits");
  return dequantize_code(static_cast<std::uint8_t>(code), p);
}

void quantize_block(const Format& f, std::span<const float> x, std::size_t rows,
                    std::size_t head_dim, std::span<double> x_hat, std::span<double> radius) {
  HNF_ASSERT(head_dim == 0 || rows <= std::numeric_limits<std::size_t>::max() / head_dim,
             "rows * head_dim overflows");
  const std::size_t n = rows * head_dim;
  HNF_ASSERT(x.size() == n && x_hat.size() == n && radius.size() == n,
             "x, x_hat and radius must hold rows * head_dim elements");
  std::vector<std::uint16_t> codes(n);
  const bool valid = head_dim <= static_cast<std::size_t>(std::numeric_limits<int>::max()) &&
                     is_valid_format(f, static_cast<int>(head_dim));
  std::vector<GroupParams> groups(valid ? block_group_count(f, rows, head_dim) : 0);
  encode_block(f, x, rows, head_dim, codes, groups);  // throws bad input for an invalid format
  if (!is_integer_encoding(f.encoding)) {
    for (std::size_t i = 0; i < n; ++i) {
      x_hat[i] = decode_element(f.encoding, codes[i], {});
      radius[i] = float_format_radius(f.encoding, codes[i]);
    }
    return;
  }
  // Each group's value and radius once; every element looks its group up.
  std::vector<double> group_radius(groups.size());
  for (std::size_t k = 0; k < groups.size(); ++k) group_radius[k] = integer_radius(groups[k]);
  for_each_block_element(f, 0, rows, head_dim, [&](std::size_t row, std::size_t column, std::size_t k) {
    const std::size_t i = row * head_dim + column;
    x_hat[i] = decode_element(f.encoding, codes[i], groups[k]);  // exact, as in dequantize_code
    radius[i] = group_radius[k];
  });
}

}  // namespace hnf::proofs
