#include <doctest/doctest.h>
#include <mpfr.h>

#include <algorithm>
#include <bit>
#include <cfenv>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "hnf/proofs/error.h"
#include "hnf/proofs/float16.h"
#include "hnf/proofs/format.h"

using namespace hnf::proofs;

namespace {

// A 320-bit MPFR number: wide enough that the differences below are exact (a float and a
// stored value are multiples of 2^-149 below 2^128 and agree to within a few ulps, or are
// both below 2^25).
class Exact {
 public:
  Exact() { mpfr_init2(v_, 320); }
  explicit Exact(double d) : Exact() { mpfr_set_d(v_, d, MPFR_RNDN); }
  Exact(const Exact&) = delete;
  Exact& operator=(const Exact&) = delete;
  ~Exact() { mpfr_clear(v_); }
  mpfr_ptr get() { return v_; }
  mpfr_srcptr get() const { return v_; }

 private:
  mpfr_t v_;
};

// |a - b| compared with r, exactly; returns the sign of |a - b| - r.
int compare_abs_difference(double a, double b, double r) {
  Exact d;
  REQUIRE(mpfr_set_d(d.get(), a, MPFR_RNDN) == 0);
  REQUIRE(mpfr_sub_d(d.get(), d.get(), b, MPFR_RNDN) == 0);  // 0: exact
  mpfr_abs(d.get(), d.get(), MPFR_RNDN);
  return mpfr_cmp_d(d.get(), r);
}

// |a - b| rounded up to a double (for statistics only).
double abs_difference_up(double a, double b) {
  Exact d(a);
  REQUIRE(mpfr_sub_d(d.get(), d.get(), b, MPFR_RNDN) == 0);
  mpfr_abs(d.get(), d.get(), MPFR_RNDN);
  return mpfr_get_d(d.get(), MPFR_RNDU);
}

double half(std::uint16_t h) { return static_cast<double>(half_bits_to_float(h)); }

std::vector<std::string> names(const std::vector<Format>& formats) {
  std::vector<std::string> out;
  for (const Format& f : formats) out.push_back(format_name(f));
  return out;
}

std::string error_text(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::kBadInput);
    return e.what();
  }
  FAIL("no error thrown");
  return {};
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// Checks everything the contract promises for one group; returns the largest observed
// |x - x_hat| / s (0 for s == 0).
double check_group(std::span<const float> x, int bits) {
  const GroupParams p = integer_group_params(x, bits);
  const auto max_code = static_cast<unsigned>((1 << bits) - 1);
  const float lo = *std::min_element(x.begin(), x.end());
  const float hi = *std::max_element(x.begin(), x.end());
  const double z = half(p.zero_f16);
  const double s = half(p.scale_f16);
  REQUIRE(p.zero_f16 != 0x8000u);
  REQUIRE(p.scale_f16 <= 0x7bffu);
  REQUIRE((p.zero_f16 & 0x7c00u) != 0x7c00u);
  // z is the largest half <= min.
  REQUIRE(z <= static_cast<double>(lo));
  // The next half above z: one step toward zero for a negative z (-2^-24 steps to 0).
  const auto z_up = static_cast<std::uint16_t>((p.zero_f16 & 0x8000u) != 0 ? p.zero_f16 - 1 : p.zero_f16 + 1);
  REQUIRE(half(z_up) > static_cast<double>(lo));
  // s * (2^b - 1) >= max - z exactly (the product is exact in double: 11 + 8 bits).
  const double span = s * max_code;
  Exact range(static_cast<double>(hi));
  REQUIRE(mpfr_sub_d(range.get(), range.get(), z, MPFR_RNDN) == 0);
  REQUIRE(mpfr_cmp_d(range.get(), span) <= 0);
  // s is tight: the half below s is below the exact quotient (max - z)/(2^b - 1), up to the
  // two one-ulp steps of the double computation.
  if (p.scale_f16 != 0) {
    Exact quotient;
    mpfr_div_ui(quotient.get(), range.get(), max_code, MPFR_RNDU);
    mpfr_mul_d(quotient.get(), quotient.get(), 1.0 + 0x1p-48, MPFR_RNDU);
    REQUIRE(mpfr_cmp_d(quotient.get(), half(static_cast<std::uint16_t>(p.scale_f16 - 1))) > 0);
  } else {
    REQUIRE(static_cast<double>(hi) == z);
  }
  // The radius: an upper bound, and not loose.
  const double r = integer_radius(p);
  REQUIRE(r >= s / 2);
  REQUIRE(r <= s * 0.5000001);
  double worst = 0;
  for (const float v : x) {
    const std::uint8_t c = integer_code(v, p, bits);
    REQUIRE(c <= max_code);
    const double y = dequantize_code(c, p);
    REQUIRE(y == z + s * c);
    REQUIRE(compare_abs_difference(static_cast<double>(v), y, r) <= 0);
    if (s > 0) worst = std::max(worst, abs_difference_up(static_cast<double>(v), y) / s);
  }
  return worst;
}

constexpr int kBits[] = {8, 4, 3, 2};

// Sets an FPU rounding mode and restores round to nearest even when a REQUIRE throws.
class RoundingModeGuard {
 public:
  explicit RoundingModeGuard(int mode) { REQUIRE(std::fesetround(mode) == 0); }
  RoundingModeGuard(const RoundingModeGuard&) = delete;
  RoundingModeGuard& operator=(const RoundingModeGuard&) = delete;
  ~RoundingModeGuard() { std::fesetround(FE_TONEAREST); }
};

}  // namespace

TEST_CASE("format names round-trip for every vocabulary entry, unknown names are rejected") {
  for (const int head_dim : {16, 32, 64, 96, 128, 256}) {
    for (const Format& f : format_vocabulary(head_dim)) {
      CHECK(is_valid_format(f, head_dim));
      const std::optional<Format> parsed = parse_format(format_name(f));
      REQUIRE(parsed.has_value());
      CHECK(*parsed == f);
    }
  }
  CHECK(format_name({Encoding::kInt4, GroupAxis::kHeadDim, 32}) == "int4-d32");
  CHECK(format_name({Encoding::kInt2, GroupAxis::kTokens, 16}) == "int2-t16");
  CHECK(format_name({}) == "fp16");
  CHECK(*parse_format("bf16") == Format{Encoding::kBF16, GroupAxis::kNone, 0});
  CHECK(*parse_format("int3-t64") == Format{Encoding::kInt3, GroupAxis::kTokens, 64});
  for (const char* bad : {"", "fp32", "f16", "int5-d32", "int4-d48", "int4-t128", "int4-d16",
                          "int4-d032", "INT4-d32", "int4d32", "int4-x32", "fp16 ", " fp16",
                          "int4-d32x", "int4-", "int-d32", "int16-d32"}) {
    CAPTURE(bad);
    CHECK_FALSE(parse_format(bad).has_value());
  }
}

TEST_CASE("format vocabulary for head_dim 64, 96 and 128") {
  CHECK(names(format_vocabulary(64)) ==
        std::vector<std::string>{"fp16",     "bf16",     "int8-d32", "int8-d64", "int8-t16", "int8-t32",
                                 "int8-t64", "int4-d32", "int4-d64", "int4-t16", "int4-t32", "int4-t64",
                                 "int3-d32", "int3-d64", "int3-t16", "int3-t32", "int3-t64", "int2-d32",
                                 "int2-d64", "int2-t16", "int2-t32", "int2-t64"});
  CHECK(names(format_vocabulary(128)) ==
        std::vector<std::string>{"fp16",      "bf16",     "int8-d32", "int8-d64", "int8-d128", "int8-t16",
                                 "int8-t32",  "int8-t64", "int4-d32", "int4-d64", "int4-d128", "int4-t16",
                                 "int4-t32",  "int4-t64", "int3-d32", "int3-d64", "int3-d128", "int3-t16",
                                 "int3-t32",  "int3-t64", "int2-d32", "int2-d64", "int2-d128", "int2-t16",
                                 "int2-t32",  "int2-t64"});
  CHECK(format_vocabulary(96).size() == 2 + 4 * 4);  // only d32 divides 96
  CHECK(format_vocabulary(0).empty());
}

TEST_CASE("format validity rules") {
  CHECK(is_valid_format({Encoding::kF16, GroupAxis::kNone, 0}, 64));
  CHECK_FALSE(is_valid_format({Encoding::kF16, GroupAxis::kNone, 32}, 64));
  CHECK_FALSE(is_valid_format({Encoding::kBF16, GroupAxis::kHeadDim, 32}, 64));
  CHECK_FALSE(is_valid_format({Encoding::kInt4, GroupAxis::kNone, 0}, 64));
  CHECK(is_valid_format({Encoding::kInt4, GroupAxis::kHeadDim, 64}, 128));
  CHECK_FALSE(is_valid_format({Encoding::kInt4, GroupAxis::kHeadDim, 64}, 96));
  CHECK_FALSE(is_valid_format({Encoding::kInt4, GroupAxis::kHeadDim, 16}, 64));
  CHECK_FALSE(is_valid_format({Encoding::kInt4, GroupAxis::kHeadDim, 128}, 64));
  CHECK(is_valid_format({Encoding::kInt4, GroupAxis::kTokens, 64}, 8));  // tokens: any head_dim
  CHECK_FALSE(is_valid_format({Encoding::kInt4, GroupAxis::kTokens, 128}, 128));
  CHECK_FALSE(is_valid_format({Encoding::kF16, GroupAxis::kNone, 0}, 0));
}

TEST_CASE("code bits and storage bits per element") {
  CHECK(code_bits(Encoding::kF16) == 16);
  CHECK(code_bits(Encoding::kBF16) == 16);
  CHECK(code_bits(Encoding::kInt8) == 8);
  CHECK(code_bits(Encoding::kInt4) == 4);
  CHECK(code_bits(Encoding::kInt3) == 3);
  CHECK(code_bits(Encoding::kInt2) == 2);
  CHECK(storage_bits_per_element(*parse_format("fp16")) == 16.0);
  CHECK(storage_bits_per_element(*parse_format("bf16")) == 16.0);
  CHECK(storage_bits_per_element(*parse_format("int4-d32")) == 5.0);
  CHECK(storage_bits_per_element(*parse_format("int2-t16")) == 4.0);
  CHECK(storage_bits_per_element(*parse_format("int8-d128")) == 8.25);
  CHECK(storage_bits_per_element(*parse_format("int3-t64")) == 3.5);
  CHECK(storage_bits_per_element(*parse_format("int2-d64")) == 2.5);
}

TEST_CASE("integer groups: exact error within the radius over random and adversarial groups") {
  std::mt19937_64 rng(7);
  std::size_t elements = 0;
  auto run = [&](const std::vector<float>& x, int bits) {
    elements += x.size();
    return check_group(x, bits);
  };
  for (const int bits : kBits) {
    CAPTURE(bits);
    double worst_random = 0;
    for (const int n : {16, 32, 64, 128}) {
      std::vector<float> x(static_cast<std::size_t>(n));
      // Random groups at scales from subnormal-fp16 to near the fp16 limit.
      for (int trial = 0; trial < 250; ++trial) {
        const double scale = std::ldexp(1.0, std::uniform_int_distribution<int>(-26, 14)(rng));
        std::normal_distribution<double> normal(std::uniform_real_distribution<double>(-2, 2)(rng), 1.0);
        for (float& v : x) v = static_cast<float>(std::clamp(normal(rng) * scale, -65504.0, 65504.0));
        worst_random = std::max(worst_random, run(x, bits));
      }
      // Uniform over the full fp16 range, endpoints included.
      std::uniform_real_distribution<float> full(-65504.0f, 65504.0f);
      for (int trial = 0; trial < 10; ++trial) {
        for (float& v : x) v = full(rng);
        x[0] = -65504.0f;
        x[1] = 65504.0f;
        run(x, bits);
      }
      // Huge ranges near the limit, positive-only and negative-only.
      std::uniform_real_distribution<float> top(60000.0f, 65504.0f);
      for (int trial = 0; trial < 5; ++trial) {
        for (float& v : x) v = top(rng);
        run(x, bits);
        for (float& v : x) v = -v;
        run(x, bits);
      }
      // Tiny ranges: fp16-subnormal scale, float-subnormal values, and a tiny range at an offset.
      std::uniform_real_distribution<float> tiny(-1e-7f, 1e-7f);
      for (float& v : x) v = tiny(rng);
      run(x, bits);
      for (float& v : x) v = std::bit_cast<float>(std::uniform_int_distribution<std::uint32_t>(1, 0x7fffffu)(rng));
      run(x, bits);
      for (float& v : x) v = 1000.0f + std::uniform_real_distribution<float>(0.0f, 0.25f)(rng);
      run(x, bits);
      // Negative-only groups.
      std::uniform_real_distribution<float> negative(-8.0f, -0.5f);
      for (float& v : x) v = negative(rng);
      run(x, bits);
      // Constant groups: fp16-exact constants are stored exactly (s = 0); others are not.
      for (const float c : {0.0f, -0.0f, 1.5f, -65504.0f, 65504.0f, 0.1f, -1e-30f, 3.14159f}) {
        std::fill(x.begin(), x.end(), c);
        run(x, bits);
        const GroupParams p = integer_group_params(x, bits);
        if (static_cast<double>(half_bits_to_float(float_to_half_bits(c))) == static_cast<double>(c)) {
          CHECK(p.scale_f16 == 0);
          CHECK(integer_radius(p) == 0.0);
          CHECK(dequantize_code(integer_code(c, p, bits), p) == static_cast<double>(c));
        }
      }
      // Mixed signed zeros: the zero point is +0 whatever the order.
      std::fill(x.begin(), x.end(), 0.0f);
      x[3] = -0.0f;
      x[5] = 2.0f;
      CHECK(integer_group_params(x, bits).zero_f16 == 0);
      run(x, bits);
      // max - z inexact in double, with the rounded quotient exactly an fp16 number: only the
      // one-ulp steps make s * (2^b - 1) >= max - z here (without them s would be 2^j).
      for (const int j : {-20, 0, 7}) {
        const float m = static_cast<float>((1 << bits) - 1);
        std::fill(x.begin(), x.end(), 0.0f);
        x[0] = -std::ldexp(m, j);
        x[1] = std::numeric_limits<float>::denorm_min();
        run(x, bits);
        CHECK(half(integer_group_params(x, bits).scale_f16) > std::ldexp(1.0, j));
      }
      // Outlier: one huge value in a group of small ones.
      std::uniform_real_distribution<float> small(-1.0f, 1.0f);
      for (float& v : x) v = small(rng);
      x[static_cast<std::size_t>(n) / 2] = 30000.0f;
      run(x, bits);
    }
    CHECK(worst_random > 0.49);  // the radius s/2 is sharp: random data comes close to it
    CHECK(worst_random <= 0.5 + 0x1p-40);
  }
  CHECK(elements >= 100000);
}

TEST_CASE("integer groups: the bounds hold in every FPU rounding mode") {
  // Interval code switches rounding modes; the scale's one-ulp steps and the radius's 2^-40
  // margin cover the directed modes too (codes may then differ from round to nearest).
  std::mt19937_64 rng(5);
  for (const int mode : {FE_UPWARD, FE_DOWNWARD, FE_TOWARDZERO}) {
    CAPTURE(mode);
    for (const int bits : kBits) {
      std::vector<float> x(64);
      for (int trial = 0; trial < 40; ++trial) {
        const double scale = std::ldexp(1.0, std::uniform_int_distribution<int>(-26, 14)(rng));
        std::uniform_real_distribution<double> uniform(-1.0, 1.0);
        for (float& v : x) v = static_cast<float>(std::clamp(uniform(rng) * scale * 3, -65504.0, 65504.0));
        const RoundingModeGuard guard(mode);
        check_group(x, bits);
      }
    }
  }
}

TEST_CASE("integer codes: values exactly on half steps round to even, out-of-range values clamp") {
  for (const int bits : kBits) {
    CAPTURE(bits);
    const int max_code = (1 << bits) - 1;
    // Group [0, max_code + 0.3]: z = 0, and every z + s*(k + 1/2) is a float (11 + 9 bits).
    std::vector<float> x = {0.0f, static_cast<float>(max_code) + 0.3f};
    const GroupParams p = integer_group_params(x, bits);
    const double s = half(p.scale_f16);
    REQUIRE(p.zero_f16 == 0);
    for (int k = 0; k < max_code; ++k) {
      const double tie = s * (k + 0.5);
      REQUIRE(static_cast<double>(static_cast<float>(tie)) == tie);
      x.push_back(static_cast<float>(tie));
      const int even = k % 2 == 0 ? k : k + 1;
      CHECK(integer_code(static_cast<float>(tie), p, bits) == even);
      CHECK(integer_code(std::nextafter(static_cast<float>(tie), 0.0f), p, bits) == k);
      CHECK(integer_code(std::nextafter(static_cast<float>(tie), INFINITY), p, bits) == k + 1);
    }
    check_group(x, bits);  // the ties are inside the group: the radius holds for them as well
    CHECK(integer_code(-5.0f, p, bits) == 0);
    CHECK(integer_code(1e4f, p, bits) == max_code);
    CHECK(integer_code(NAN, p, bits) == 0);
    CHECK(integer_code(INFINITY, p, bits) == max_code);
  }
}

TEST_CASE("quantize_block groups along head_dim and along tokens, with a short last run") {
  std::mt19937_64 rng(11);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const std::size_t head_dim = 64;
  for (const std::size_t rows : {std::size_t{37}, std::size_t{64}}) {
    std::vector<float> x(rows * head_dim);
    for (float& v : x) v = normal(rng);
    for (std::size_t r = 0; r < rows; ++r) x[r * head_dim + 5] *= 1000.0f;  // outlier channel
    std::vector<double> x_hat(x.size());
    std::vector<double> radius(x.size());
    for (const Format& f : format_vocabulary(static_cast<int>(head_dim))) {
      CAPTURE(format_name(f));
      quantize_block(f, x, rows, head_dim, x_hat, radius);
      for (std::size_t i = 0; i < x.size(); ++i)
        REQUIRE(compare_abs_difference(static_cast<double>(x[i]), x_hat[i], radius[i]) <= 0);
      if (f.axis == GroupAxis::kNone) continue;
      const int bits = code_bits(f.encoding);
      const auto g = static_cast<std::size_t>(f.group_size);
      // Rebuild every group independently and compare bit for bit.
      if (f.axis == GroupAxis::kHeadDim) {
        for (std::size_t r = 0; r < rows; ++r)
          for (std::size_t c0 = 0; c0 < head_dim; c0 += g) {
            const std::span<const float> group(x.data() + r * head_dim + c0, g);
            const GroupParams p = integer_group_params(group, bits);
            for (std::size_t c = c0; c < c0 + g; ++c) {
              const std::size_t i = r * head_dim + c;
              REQUIRE(x_hat[i] == dequantize_code(integer_code(x[i], p, bits), p));
              REQUIRE(radius[i] == integer_radius(p));
            }
          }
      } else {
        for (std::size_t c = 0; c < head_dim; ++c)
          for (std::size_t r0 = 0; r0 < rows; r0 += g) {
            std::vector<float> group;
            for (std::size_t r = r0; r < std::min(rows, r0 + g); ++r) group.push_back(x[r * head_dim + c]);
            const GroupParams p = integer_group_params(group, bits);
            for (std::size_t r = r0; r < std::min(rows, r0 + g); ++r) {
              const std::size_t i = r * head_dim + c;
              REQUIRE(x_hat[i] == dequantize_code(integer_code(x[i], p, bits), p));
              REQUIRE(radius[i] == integer_radius(p));
            }
          }
        // Per channel: the outlier channel's radius does not leak into other channels.
        CHECK(radius[5] > 100 * radius[6]);
      }
    }
  }
  // An empty block is fine.
  quantize_block(*parse_format("int4-t16"), {}, 0, head_dim, {}, {});
}

TEST_CASE("encode_block stores what quantize_block returns: codes and groups decode to x_hat") {
  std::mt19937_64 rng(12);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const std::size_t head_dim = 64;
  for (const std::size_t rows : {std::size_t{1}, std::size_t{37}, std::size_t{64}}) {
    std::vector<float> x(rows * head_dim);
    for (float& v : x) v = normal(rng);
    x[3] = 300.0f;  // one outlier
    std::vector<double> x_hat(x.size()), radius(x.size());
    std::vector<std::uint16_t> codes(x.size());
    for (const Format& f : format_vocabulary(static_cast<int>(head_dim))) {
      CAPTURE(format_name(f));
      CAPTURE(rows);
      quantize_block(f, x, rows, head_dim, x_hat, radius);
      std::vector<GroupParams> groups(block_group_count(f, rows, head_dim));
      encode_block(f, x, rows, head_dim, codes, groups);
      if (!is_integer_encoding(f.encoding)) {
        CHECK(groups.empty());
        for (std::size_t i = 0; i < x.size(); ++i) {
          const std::uint16_t expected = f.encoding == Encoding::kF16 ? float_to_half_bits(x[i]) : float_to_bf16_bits(x[i]);
          REQUIRE(codes[i] == expected);
          REQUIRE(decode_element(f.encoding, codes[i], {}) == x_hat[i]);
        }
        continue;
      }
      const auto g = static_cast<std::size_t>(f.group_size);
      CHECK(groups.size() == (f.axis == GroupAxis::kHeadDim ? rows * head_dim / g : (rows + g - 1) / g * head_dim));
      const int bits = code_bits(f.encoding);
      for (std::size_t r = 0; r < rows; ++r)
        for (std::size_t c = 0; c < head_dim; ++c) {
          const std::size_t i = r * head_dim + c;
          const std::size_t k = block_group(f, r, c, head_dim);
          REQUIRE(k < groups.size());
          REQUIRE(codes[i] < (1u << bits));
          REQUIRE(decode_element(f.encoding, codes[i], groups[k]) == x_hat[i]);
          REQUIRE(integer_radius(groups[k]) == radius[i]);
          // The group holds exactly the elements the format groups together.
          const std::size_t same_group_neighbour =
              f.axis == GroupAxis::kHeadDim ? (c % g + 1 < g ? k : k + 1) : (r % g + 1 < g && r + 1 < rows ? k : k + head_dim);
          if (f.axis == GroupAxis::kHeadDim && c + 1 < head_dim) CHECK(block_group(f, r, c + 1, head_dim) == same_group_neighbour);
          if (f.axis == GroupAxis::kTokens && r + 1 < rows) CHECK(block_group(f, r + 1, c, head_dim) == same_group_neighbour);
        }
    }
  }
}

TEST_CASE("float formats: the radius of every fp16 and bf16 pattern is half the gap above it") {
  for (std::uint32_t bits = 0; bits <= 0xffffu; ++bits) {
    const auto h = static_cast<std::uint16_t>(bits);
    const auto magnitude = static_cast<std::uint16_t>(h & 0x7fffu);
    // fp16
    if (magnitude >= 0x7c00u) {
      REQUIRE_THROWS_AS((void)float_format_radius(Encoding::kF16, h), Error);
    } else {
      const double y = half(magnitude);
      // The largest finite half's "next" is 2^16 (its binade's spacing, 32).
      const double next = magnitude == 0x7bffu ? 65536.0 : half(static_cast<std::uint16_t>(magnitude + 1));
      REQUIRE(float_format_radius(Encoding::kF16, h) == (next - y) / 2);
    }
    // bf16
    if ((magnitude & 0x7f80u) == 0x7f80u) {
      REQUIRE_THROWS_AS((void)float_format_radius(Encoding::kBF16, h), Error);
    } else {
      const double y = static_cast<double>(bf16_bits_to_float(magnitude));
      const auto above = static_cast<std::uint16_t>(magnitude + 1);
      const double next = magnitude == 0x7f7fu ? 0x1p128 : static_cast<double>(bf16_bits_to_float(above));
      REQUIRE(float_format_radius(Encoding::kBF16, h) == (next - y) / 2);
    }
  }
}

TEST_CASE("float formats: random floats are within the radius of their stored value") {
  std::mt19937_64 rng(3);
  const std::size_t rows = 250;
  const std::size_t head_dim = 128;
  std::vector<float> x(rows * head_dim);
  std::vector<double> x_hat(x.size());
  std::vector<double> radius(x.size());
  for (const Encoding encoding : {Encoding::kF16, Encoding::kBF16}) {
    CAPTURE(static_cast<int>(encoding));
    // Half random bit patterns (every exponent, float subnormals included), half random
    // significands at the exponents of fp16 (subnormals included); all below the value that
    // rounds to infinity (65520 for fp16, 0x1.ffp127 for bf16).
    const float limit = encoding == Encoding::kF16 ? 65520.0f : 0x1.ffp127f;
    std::uniform_int_distribution<std::uint32_t> pattern(0, 0xffffffffu);
    std::uniform_int_distribution<std::uint32_t> significand(0, 0x7fffffu);
    std::uniform_int_distribution<int> exponent(-30, 15);
    for (std::size_t i = 0; i < x.size(); ++i) {
      float& v = x[i];
      do {
        v = i % 2 == 0 ? std::bit_cast<float>(pattern(rng))
                       : std::ldexp(std::bit_cast<float>(0xbf800000u | significand(rng)), exponent(rng));
      } while (!(std::fabs(v) < limit));
    }
    x[0] = 65519.99f;  // the fp16 limit: rounds to 65504 with error < 16
    x[1] = -0.0f;
    x[2] = 0x1p-25f;   // ties to zero
    quantize_block({encoding, GroupAxis::kNone, 0}, x, rows, head_dim, x_hat, radius);
    for (std::size_t i = 0; i < x.size(); ++i) {
      REQUIRE(compare_abs_difference(static_cast<double>(x[i]), x_hat[i], radius[i]) <= 0);
      const std::uint16_t stored = encoding == Encoding::kF16 ? float_to_half_bits(x[i]) : float_to_bf16_bits(x[i]);
      REQUIRE(radius[i] == float_format_radius(encoding, stored));
    }
  }
}

TEST_CASE("bad input: NaN, inf and out-of-range values are rejected with a message naming the problem") {
  std::vector<float> group(32, 0.5f);
  group[3] = NAN;
  std::string text = error_text([&] { (void)integer_group_params(group, 4); });
  CHECK(contains(text, "int4 group"));
  CHECK(contains(text, "nan"));
  CHECK(contains(text, "not finite"));
  group[3] = -INFINITY;
  text = error_text([&] { (void)integer_group_params(group, 8); });
  CHECK(contains(text, "-inf"));
  CHECK(contains(text, "not finite"));
  group[3] = 1e6f;
  text = error_text([&] { (void)integer_group_params(group, 2); });
  CHECK(contains(text, "1e+06"));
  CHECK(contains(text, "outside the fp16 range"));
  group[3] = -65505.0f;
  CHECK(contains(error_text([&] { (void)integer_group_params(group, 8); }), "outside the fp16 range"));

  const std::size_t head_dim = 32;
  std::vector<float> x(2 * head_dim, 1.0f);
  std::vector<double> x_hat(x.size());
  std::vector<double> radius(x.size());
  x[head_dim + 7] = 1e6f;
  text = error_text([&] { quantize_block(*parse_format("int4-d32"), x, 2, head_dim, x_hat, radius); });
  CHECK(contains(text, "int4-d32: "));
  CHECK(contains(text, "row 1, column 7"));
  CHECK(contains(text, "outside the fp16 range"));
  text = error_text([&] { quantize_block(*parse_format("int2-t16"), x, 2, head_dim, x_hat, radius); });
  CHECK(contains(text, "int2-t16: "));
  text = error_text([&] { quantize_block(*parse_format("fp16"), x, 2, head_dim, x_hat, radius); });
  CHECK(contains(text, "fp16: "));
  CHECK(contains(text, "overflows fp16"));
  quantize_block(*parse_format("bf16"), x, 2, head_dim, x_hat, radius);  // bf16 holds 1e6
  CHECK(x_hat[head_dim + 7] == 999424.0);
  x[head_dim + 7] = std::numeric_limits<float>::max();  // rounds to infinity in bf16
  CHECK(contains(error_text([&] { quantize_block(*parse_format("bf16"), x, 2, head_dim, x_hat, radius); }),
                 "overflows bf16"));
  x[head_dim + 7] = NAN;
  for (const char* name : {"fp16", "bf16", "int8-d32", "int3-t32"}) {
    text = error_text([&] { quantize_block(*parse_format(name), x, 2, head_dim, x_hat, radius); });
    CHECK(contains(text, std::string(name) + ": "));
    CHECK(contains(text, "not finite"));
  }
  x[head_dim + 7] = 1.0f;
  CHECK(contains(error_text([&] { quantize_block(*parse_format("int4-d64"), x, 2, head_dim, x_hat, radius); }),
                 "not a valid format for head_dim 32"));
  // Malformed formats, group shapes and span sizes are the caller's invariants: internal errors.
  for (const std::function<void()>& misuse : std::vector<std::function<void()>>{
           [] { (void)format_name({Encoding::kF16, GroupAxis::kHeadDim, 32}); },
           [] { (void)format_name({Encoding::kInt4, GroupAxis::kNone, 0}); },
           [] { (void)integer_group_params({}, 4); },
           [&] { (void)integer_group_params(group, 9); },
           [] { (void)integer_radius({0x7c00, 0}); },
           [] { (void)float_format_radius(Encoding::kInt8, 0); }}) {
    try {
      misuse();
      FAIL("no error thrown");
    } catch (const Error& e) {
      CHECK(e.kind() == ErrorKind::kInternal);
    }
  }
  // Span sizes are the caller's invariant: an internal error.
  try {
    quantize_block(*parse_format("fp16"), x, 3, head_dim, x_hat, radius);
    FAIL("no error thrown");
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::kInternal);
  }
}

TEST_CASE("float_radius_at_most bounds the radius of every fp16 and bf16 value up to the magnitude, and is tight") {
  for (const Encoding e : {Encoding::kF16, Encoding::kBF16}) {
    const bool f16 = e == Encoding::kF16;
    std::size_t tight = 0;
    for (std::uint32_t bits = 0; bits < 0x10000; ++bits) {
      const auto b = static_cast<std::uint16_t>(bits);
      const float y = f16 ? half_bits_to_float(b) : bf16_bits_to_float(b);
      if (!std::isfinite(y)) continue;
      const double r = float_format_radius(e, b);
      const double m = std::fabs(static_cast<double>(y));
      // At |y| itself, just above it, and far above it: never below y's radius.
      REQUIRE(float_radius_at_most(e, m) >= r);
      REQUIRE(float_radius_at_most(e, std::nextafter(m, 1e300)) >= r);
      REQUIRE(float_radius_at_most(e, m * 3.0 + 1.0) >= r);
      REQUIRE(float_radius_at_most(e, std::numeric_limits<double>::infinity()) >= r);
      tight += float_radius_at_most(e, m) == r ? 1 : 0;
    }
    // Equal to y's own radius for every finite y (the bound loses nothing at |y|).
    CHECK(tight == (f16 ? 2u * (0x7c00u) : 2u * (0x7f80u)));
  }
  // Inside one binade the bound is that binade's radius: fp16 values in [1, 2) have radius 2^-11.
  CHECK(float_radius_at_most(Encoding::kF16, 1.5) == std::ldexp(1.0, -11));
  CHECK(float_radius_at_most(Encoding::kF16, 0.0) == std::ldexp(1.0, -25));
  CHECK(float_radius_at_most(Encoding::kF16, 1e9) == 16.0);  // beyond fp16: its largest binade's radius
}

TEST_CASE("stochastic rounding: codes are the two neighbours, the mean is the value, draws are reproducible") {
  const DitherKey key{.seed = 7, .stream = 3, .side = 1, .age = 2};
  CHECK(dither_uniform(key, 10, 5) == dither_uniform(key, 10, 5));
  CHECK(dither_uniform(key, 10, 5) != dither_uniform(key, 10, 6));
  CHECK(dither_uniform(key, 10, 5) != dither_uniform({.seed = 8, .stream = 3, .side = 1, .age = 2}, 10, 5));
  CHECK(dither_uniform(key, 10, 5) != dither_uniform({.seed = 7, .stream = 3, .side = 1, .age = 1}, 10, 5));
  double mean_u = 0.0;
  for (int i = 0; i < 100000; ++i) {
    const double u = dither_uniform(key, i, 0);
    REQUIRE(u >= 0.0);
    REQUIRE(u < 1.0);
    mean_u += u;
  }
  CHECK(mean_u / 100000.0 == doctest::Approx(0.5).epsilon(0.01));

  std::mt19937_64 rng(3);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (const int bits : {2, 3, 4, 8}) {
    std::vector<float> group(64);
    for (float& v : group) v = normal(rng);
    const GroupParams p = integer_group_params(group, bits);
    const double z = static_cast<double>(half_bits_to_float(p.zero_f16)), s = static_cast<double>(half_bits_to_float(p.scale_f16));
    for (const float x : {group[0], group[7], group[33]}) {
      const double q = (static_cast<double>(x) - z) / s;
      double mean = 0.0;
      const int draws = 200000;
      for (int i = 0; i < draws; ++i) {
        const std::uint8_t c = stochastic_integer_code(x, p, bits, dither_uniform(key, i, bits));
        REQUIRE((c == static_cast<int>(std::floor(q)) || c == static_cast<int>(std::floor(q)) + 1));
        const double stored = dequantize_code(c, p);
        REQUIRE(std::fabs(stored - x) <= stochastic_integer_radius(p));
        mean += stored;
      }
      mean /= draws;
      // Unbiased: the mean of the stored value is x, within 5 standard errors (std <= s/2).
      CHECK(std::fabs(mean - x) <= 5.0 * 0.5 * s / std::sqrt(static_cast<double>(draws)) + s * kStochasticBiasFraction);
    }
    // Round to nearest would have a bias: with stochastic rounding, a value 0.3 of a step above a
    // level is stored one step up about 30 % of the time.
    const float x = static_cast<float>(z + s * 1.3);
    int up = 0;
    for (int i = 0; i < 100000; ++i) up += stochastic_integer_code(x, p, bits, dither_uniform(key, i, 99)) == 2 ? 1 : 0;
    CHECK(up / 100000.0 == doctest::Approx((static_cast<double>(x) - z) / s - 1.0).epsilon(0.05));
  }
}
