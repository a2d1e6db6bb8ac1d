// KV-cache storage formats: the vocabulary of formats a K or V block may be stored in, and the
// bit-exact reference quantizer with a rigorous per-element error radius.
//
// Every stored value is returned exactly (as a double, which holds it without rounding) and
// every radius is an upper bound, rounded toward +inf, on |x - stored(x)| for the element it
// belongs to. The analysis relies on the radii; the runtime will reproduce the stored values
// bit for bit, so the rounding of every intermediate step is part of the contract.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace hnf::proofs {

enum class Encoding : std::uint8_t { kF16, kBF16, kInt8, kInt4, kInt3, kInt2 };

enum class GroupAxis : std::uint8_t {
  kNone,     // float formats: each element rounded on its own
  kHeadDim,  // per token: groups of group_size consecutive channels along head_dim
  kTokens,   // per channel: one group = one channel over a block of group_size consecutive
             // positions (KIVI-style keys)
};

struct Format {
  Encoding encoding = Encoding::kF16;
  GroupAxis axis = GroupAxis::kNone;
  int group_size = 0;  // 0 for float formats; 32/64/128 for kHeadDim; 16/32/64 for kTokens
  friend bool operator==(const Format&, const Format&) = default;
};

// Bits of one stored code: 16, 16, 8, 4, 3, 2 (in enumerator order).
[[nodiscard]] int code_bits(Encoding encoding);

// True for kInt8, kInt4, kInt3, kInt2 (grouped affine codes), false for kF16 and kBF16.
[[nodiscard]] bool is_integer_encoding(Encoding encoding);

// "fp16", "bf16", "int4-d32" (head_dim groups of 32), "int2-t16" (per channel over 16
// positions). Requires a well-formed format (float encodings with kNone and group 0, integer
// encodings with kHeadDim/kTokens and a positive group); anything else is an internal error.
[[nodiscard]] std::string format_name(const Format& format);

// Inverse of format_name on the vocabulary's names: accepts exactly "fp16", "bf16" and
// "int{8,4,3,2}-d{32,64,128}", "int{8,4,3,2}-t{16,32,64}" (canonical spelling only, no spaces,
// no leading zeros, lower case); nullopt for anything else.
[[nodiscard]] std::optional<Format> parse_format(std::string_view name);

// Float encodings: axis kNone and group 0. kHeadDim: integer encoding, group_size in
// {32, 64, 128} dividing head_dim. kTokens: integer encoding, group_size in {16, 32, 64}.
// False for head_dim <= 0.
[[nodiscard]] bool is_valid_format(const Format& format, int head_dim);

// Every valid format for this head_dim, in a fixed order: fp16, bf16, then for bits 8, 4, 3, 2
// (descending) the head_dim groups d32, d64, d128 that divide head_dim, then t16, t32, t64.
// Empty for head_dim <= 0.
[[nodiscard]] std::vector<Format> format_vocabulary(int head_dim);

// Storage bits per element including the format's own metadata: float formats 16; integer
// formats code_bits + 32/group_size (one fp16 scale and one fp16 zero point per group). Exact:
// a dyadic rational for the power-of-two groups of the vocabulary, returned as a double.
[[nodiscard]] double storage_bits_per_element(const Format& format);

// ---- Integer formats ---------------------------------------------------------------------
//
// One group of n values x_0..x_{n-1} (float) is stored as an fp16 zero point z, an fp16 scale
// s >= 0 and codes c_i in [0, 2^b - 1]; the stored (dequantized) value is the exact real
// z + s*c_i, which is always exactly representable as a double (z and s are multiples of
// 2^-24 below 2^16 and c_i <= 255, so z + s*c_i is a multiple of 2^-24 below 2^25).
//
// Every value of a group must be finite with |x| <= 65504 (the fp16 range): the zero point
// and scale are fp16, and data beyond fp16 is not a KV cache this format can hold.

struct GroupParams {
  std::uint16_t scale_f16 = 0;
  std::uint16_t zero_f16 = 0;
};
static_assert(sizeof(GroupParams) == 4, "a group's metadata is two fp16 words (32 bits)");

// z = min_i x_i rounded to fp16 toward -inf (a zero z is always +0, so the bits do not depend
// on the order of -0 and +0 in the group). s: d = max_i x_i - z in double, stepped one ulp up
// with nextafter; q = d / (2^b - 1) in double, stepped one ulp up; s = q rounded to fp16
// toward +inf. Each double operation errs by less than one ulp in any rounding mode, so the
// steps make s*(2^b - 1) >= max - z exactly. When d == 0 (then max == z exactly: a constant
// group whose value is an fp16 number) s = 0 exactly and the group is stored without error.
// bits in [1, 8] (the vocabulary uses 8, 4, 3, 2) and a non-empty group, else an internal
// error. Throws proofs::Error (bad input) when a value is NaN or inf ("... is not finite"),
// when |value| > 65504 ("... is outside the fp16 range") or when z or s would not fit in fp16.
// Whether the integer formats, and so every format of the vocabulary, can store a value: finite
// and within [-65504, 65504] (zero point and scale are fp16). integer_value_problem says why not
// ("is not finite", "is outside the fp16 range [-65504, 65504]"), or is empty when it can.
[[nodiscard]] bool integer_storable(float value);
[[nodiscard]] std::string integer_value_problem(float value);

[[nodiscard]] GroupParams integer_group_params(std::span<const float> x, int bits);

// c = clamp(round((double(x) - z) / s), 0, 2^b - 1), the subtraction and the division in
// double (round to nearest: the default FPU mode), the rounding to an integer to nearest with
// ties to even (as nearbyint in round-to-nearest mode, but computed with floor and a compare,
// so it does not depend on the FPU mode). c = 0 when s == 0 and for NaN x.
[[nodiscard]] std::uint8_t integer_code(float x, GroupParams p, int bits);

// The exact stored value z + s*c (no rounding happens: see above).
[[nodiscard]] double dequantize_code(std::uint8_t code, GroupParams p);

// Rigorous per-element radius: |x - dequantize_code(integer_code(x, p, b), p)| <= radius for
// every float x in [z, z + s*(2^b - 1)], which contains [min, max] of the group the params
// were chosen for. radius = s*(1/2 + 2^-40), an upper bound (rounded toward +inf; the product
// is in fact exact: an 11-bit by 41-bit significand product, far from underflow).
[[nodiscard]] double integer_radius(GroupParams p);

// ---- Stochastic rounding (dithered storage: THEORY.md section 15) ------------------------
//
// A cache may store its integer codes by stochastic rounding: c = clamp(floor(q' + u), 0, 2^b - 1)
// with q' = fl(fl(x - z)/s) as above and u a fresh uniform draw on [0, 1) per element. Then
// s*c - (x - z) lies in an interval of length s (two values), has mean within s*2^-30 of 0, and
// the draws of different elements are independent: what the probabilistic guard needs. The group
// parameters are those of integer_group_params (they depend on x only, never on u).

// Which draws an element uses: the cache's seed, its stream (layer * kv_heads + kv_head), its side
// (0 keys, 1 values) and the age class whose quantization it is (0 sink, 1 recent, 2 old: a row
// re-quantized as it ages draws afresh).
struct DitherKey {
  std::uint64_t seed = 0;
  std::uint32_t stream = 0;
  std::uint8_t side = 0;
  std::uint8_t age = 0;
};

// u = k / 2^32 for a 32-bit k from a counter-based generator (SplitMix64 finalisers over the key,
// position and channel): the same key, position and channel give the same u everywhere.
[[nodiscard]] double dither_uniform(const DitherKey& key, std::int64_t position, std::int64_t channel) noexcept;

// The stochastically rounded code for the draw u in [0, 1): 0 when s == 0.
[[nodiscard]] std::uint8_t stochastic_integer_code(float x, GroupParams p, int bits, double u);

// Rigorous per-element radius of a stochastic code: |x - (z + s*c)| <= s*(1 + 2^-40) for every
// u (the deterministic guard's radius), exact.
[[nodiscard]] double stochastic_integer_radius(GroupParams p);

// Bound on the mean of the error: |E_u[z + s*c] - x| <= s * 2^-30 (THEORY.md section 15.1).
inline constexpr double kStochasticBiasFraction = 0x1p-30;

// ---- Float formats -----------------------------------------------------------------------
//
// Stored by rounding the float to nearest, ties to even (float_to_half_bits /
// float_to_bf16_bits of float16.h).

// Per-element radius of a stored value y of a float encoding: half the spacing between |y|
// and the next larger representable magnitude of that format (for the largest finite value:
// half its ulp), exact as a double. Any x that rounds to y to nearest is within it. Infinities
// (overflow) and NaN are bad input; an integer encoding is an internal error.
[[nodiscard]] double float_format_radius(Encoding encoding, std::uint16_t stored_bits);

// An upper bound (exact: a power of two) of float_format_radius(encoding, y) over every finite
// stored value y of a float encoding with |y| <= magnitude (magnitude >= 0, or +inf): the radius a
// value had before it was re-quantized, when only a bound on its size is left. The radius grows
// with |y| (one binade at a time), so the bound is the radius of magnitude's binade, clamped to
// the format's finite binades.
[[nodiscard]] double float_radius_at_most(Encoding encoding, double magnitude);

// ---- Blocks ------------------------------------------------------------------------------

// Reference quantizer of a whole block of a K or V matrix, used by the analysis and (later)
// bit-exact by the runtime. x [rows, head_dim] row-major floats; writes x_hat [rows, head_dim]
// (the exact stored values, as double) and radius [rows, head_dim] (the rigorous per-element
// bound from the stored parameters, >= |x - x_hat| always).
// kHeadDim: each row split into head_dim/group_size groups of consecutive channels. kTokens:
// each channel's rows grouped in consecutive runs of group_size rows (the last run is shorter
// when rows is not a multiple of group_size). Float formats: elementwise.
// Throws bad input (message "<format name>: ..." with the row and column) on values the format
// cannot store (NaN, inf, out of fp16 range; for fp16/bf16: values that round to infinity) and
// on a format that is not valid for head_dim. Span sizes other than rows*head_dim are an
// internal error.
void quantize_block(const Format& f, std::span<const float> x, std::size_t rows,
                    std::size_t head_dim, std::span<double> x_hat, std::span<double> radius);

// What a block stores, without dequantizing it: per element its code (the fp16 or bf16 bit
// pattern for float formats, the integer code otherwise) and per group its parameters (integer
// formats only). quantize_block is encode_block followed by decode_element and the radius, so
// the two cannot disagree; a compact copy of a quantized matrix keeps the codes and groups.
//
// Groups of a block of `rows` rows: none for float formats; kHeadDim: rows * head_dim/group,
// group of (row, column) = (row * head_dim + column) / group; kTokens: ceil(rows/group) *
// head_dim, group of (row, column) = (row / group) * head_dim + column.
[[nodiscard]] std::size_t block_group_count(const Format& f, std::size_t rows, std::size_t head_dim);
// Integer formats only (inline: readers of compact copies call it per element).
[[nodiscard]] inline std::size_t block_group(const Format& f, std::size_t row, std::size_t column,
                                             std::size_t head_dim) noexcept {
  const auto g = static_cast<std::size_t>(f.group_size);
  return f.axis == GroupAxis::kHeadDim ? (row * head_dim + column) / g  // g divides head_dim
                                       : row / g * head_dim + column;
}

// Calls fn(row, column, block_group(f, row, column, head_dim)) for every element of rows
// [row_begin, row_end) of a block of an integer format, row by row, without a division per
// element (kHeadDim: a group is group_size consecutive columns; kTokens: the groups of a row are
// consecutive by column).
template <class Fn>
void for_each_block_element(const Format& f, std::size_t row_begin, std::size_t row_end, std::size_t head_dim,
                            Fn&& fn) {
  const auto g = static_cast<std::size_t>(f.group_size);
  for (std::size_t row = row_begin; row < row_end; ++row) {
    if (f.axis == GroupAxis::kHeadDim) {
      for (std::size_t c0 = 0; c0 < head_dim; c0 += g) {
        const std::size_t k = block_group(f, row, c0, head_dim);
        for (std::size_t column = c0; column < c0 + g; ++column) fn(row, column, k);
      }
    } else {
      const std::size_t k0 = block_group(f, row, 0, head_dim);
      for (std::size_t column = 0; column < head_dim; ++column) fn(row, column, k0 + column);
    }
  }
}

// x [rows, head_dim]; codes [rows, head_dim]; groups [block_group_count]. Throws exactly as
// quantize_block does.
//
// With `dither` (stochastic rounding), integer codes are stochastic_integer_code of the draw
// dither_uniform(dither->key, dither->first_position + row, column); float formats ignore it.
struct BlockDither {
  DitherKey key;
  std::int64_t first_position = 0;  // the position of the block's row 0
};
void encode_block(const Format& f, std::span<const float> x, std::size_t rows, std::size_t head_dim,
                  std::span<std::uint16_t> codes, std::span<GroupParams> groups, const BlockDither* dither = nullptr);

// The exact stored value of an element: the fp16/bf16 value of its bit pattern, or z + s*code
// of its group (p is ignored for float encodings).
[[nodiscard]] double decode_element(Encoding encoding, std::uint16_t code, GroupParams p);

}  // namespace hnf::proofs
