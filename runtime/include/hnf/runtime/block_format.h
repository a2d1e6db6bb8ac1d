// Storage blocks of the format vocabulary (proofs/format.h), as the runtime cache keeps them.
//
// Integer formats store one group as an fp16 scale, an fp16 zero point and packed codes:
//   TokenGroup<B, G>   one token's G consecutive channels (formats intB-dG, G in 32/64/128);
//   ChannelGroup<B, P> one channel over P consecutive positions (formats intB-tP, keys only).
// Codes are packed little-endian by bit: code i occupies bits [B*i, B*i + B) of the byte
// array (bit k of the array is bit k%8 of byte k/8). Float formats store one uint16 per
// element (fp16 or bf16 bits, rounded to nearest even). The codes and parameters are those of
// the reference quantizer in proofs/ (integer_group_params, integer_code), so the stored
// values, and therefore the error radius the analysis assumed, are bit-exact.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <type_traits>

#include "hnf/proofs/error.h"
#include "hnf/proofs/format.h"

namespace hnf::runtime {

template <int Bits, int Count>
struct PackedCodes {
  static_assert(Bits >= 1 && Bits <= 8 && (Bits * Count) % 8 == 0, "codes fill whole bytes");
  static constexpr int kBits = Bits;
  static constexpr int kCount = Count;
  std::uint8_t bytes[Bits * Count / 8];
};

// One group of an integer format: fp16 scale, fp16 zero point, Count packed codes.
template <int Bits, int Count>
struct IntegerGroup {
  std::uint16_t scale_f16;
  std::uint16_t zero_f16;
  PackedCodes<Bits, Count> codes;
};

template <int Bits, int Group>
using TokenGroup = IntegerGroup<Bits, Group>;  // intB-dG: one token, G channels
template <int Bits, int Positions>
using ChannelGroup = IntegerGroup<Bits, Positions>;  // intB-tP: one channel, P positions

// The layout every block of the vocabulary has: 4 bytes of metadata, then Bits*Count/8 bytes
// of codes, 2-byte aligned, no padding, trivially copyable (blocks are copied as bytes).
template <int Bits, int Count>
constexpr bool pinned_layout() {
  using Block = IntegerGroup<Bits, Count>;
  return sizeof(Block) == 4 + Bits * Count / 8 && alignof(Block) == 2 && std::is_trivially_copyable_v<Block> &&
         std::is_standard_layout_v<Block> && offsetof(Block, codes) == 4;
}
static_assert(pinned_layout<8, 32>() && pinned_layout<8, 64>() && pinned_layout<8, 128>());
static_assert(pinned_layout<4, 32>() && pinned_layout<4, 64>() && pinned_layout<4, 128>());
static_assert(pinned_layout<3, 32>() && pinned_layout<3, 64>() && pinned_layout<3, 128>());
static_assert(pinned_layout<2, 32>() && pinned_layout<2, 64>() && pinned_layout<2, 128>());
static_assert(pinned_layout<8, 16>() && pinned_layout<4, 16>() && pinned_layout<3, 16>() && pinned_layout<2, 16>());
static_assert(sizeof(TokenGroup<4, 32>) == 20 && sizeof(TokenGroup<3, 32>) == 16 && sizeof(TokenGroup<2, 128>) == 36);
static_assert(sizeof(ChannelGroup<2, 16>) == 8 && sizeof(ChannelGroup<3, 64>) == 28);

// A float-format element: the fp16 or bf16 bits.
struct FloatElement {
  std::uint16_t bits;
};
static_assert(sizeof(FloatElement) == 2 && alignof(FloatElement) == 2 && std::is_trivially_copyable_v<FloatElement>);

// Code i of a packed array of `bits`-bit codes.
[[nodiscard]] inline std::uint8_t unpack_code(const std::uint8_t* packed, int bits, std::size_t i) noexcept {
  const std::size_t first_bit = static_cast<std::size_t>(bits) * i;
  // Two bytes hold any code of at most 8 bits; the second is read only when the code crosses.
  unsigned window = packed[first_bit / 8];
  if (first_bit % 8 + static_cast<std::size_t>(bits) > 8) window |= static_cast<unsigned>(packed[first_bit / 8 + 1]) << 8;
  return static_cast<std::uint8_t>((window >> (first_bit % 8)) & ((1u << bits) - 1u));
}

// Packs codes[i] (each < 2^bits) into out, which must hold bits*codes.size()/8 bytes (rounded up).
void pack_codes(std::span<const std::uint8_t> codes, int bits, std::span<std::uint8_t> out);

// Quantizes x [Count] (one group: a token's channels, or a channel's positions) with the
// reference quantizer of proofs/. Throws proofs::Error (bad input) for values the format
// cannot store, as proofs::integer_group_params does.
// With `draws` [Count] (stochastic rounding, proofs::stochastic_integer_code), element i uses draws[i].
template <int Bits, int Count>
[[nodiscard]] IntegerGroup<Bits, Count> quantize_group(std::span<const float, Count> x, const double* draws = nullptr) {
  IntegerGroup<Bits, Count> block{};
  const proofs::GroupParams p = proofs::integer_group_params(x, Bits);
  block.scale_f16 = p.scale_f16;
  block.zero_f16 = p.zero_f16;
  std::uint8_t codes[Count];
  for (int i = 0; i < Count; ++i) {
    const float v = x[static_cast<std::size_t>(i)];
    codes[i] = draws ? proofs::stochastic_integer_code(v, p, Bits, draws[i]) : proofs::integer_code(v, p, Bits);
  }
  pack_codes(codes, Bits, block.codes.bytes);
  return block;
}

// The exact stored value of element i (z + s*c, exact as a double: proofs/format.h).
template <int Bits, int Count>
[[nodiscard]] double stored_value(const IntegerGroup<Bits, Count>& block, std::size_t i) {
  return proofs::dequantize_code(unpack_code(block.codes.bytes, Bits, i), {block.scale_f16, block.zero_f16});
}

// Per-element error radius of the block (proofs::integer_radius of its parameters).
template <int Bits, int Count>
[[nodiscard]] double block_radius(const IntegerGroup<Bits, Count>& block) {
  return proofs::integer_radius({block.scale_f16, block.zero_f16});
}

// Calls fn.template operator()<Bits, Count>() for an integer format of the vocabulary (Count:
// the group size, channels for -d formats, positions for -t formats). Internal error otherwise.
template <typename Fn>
decltype(auto) with_integer_block(const proofs::Format& f, Fn&& fn) {
  const int bits = proofs::code_bits(f.encoding);
  auto by_count = [&]<int Bits>() -> decltype(auto) {
    switch (f.group_size) {
      case 16: return fn.template operator()<Bits, 16>();
      case 32: return fn.template operator()<Bits, 32>();
      case 64: return fn.template operator()<Bits, 64>();
      case 128: return fn.template operator()<Bits, 128>();
      default: HNF_ASSERT(false, "an integer format of the vocabulary has groups of 16, 32, 64 or 128");
    }
    return fn.template operator()<Bits, 16>();  // not reached
  };
  HNF_ASSERT(proofs::is_integer_encoding(f.encoding), "with_integer_block needs an integer format");
  switch (bits) {
    case 8: return by_count.template operator()<8>();
    case 4: return by_count.template operator()<4>();
    case 3: return by_count.template operator()<3>();
    default: return by_count.template operator()<2>();
  }
}

// Stores x [rows, head_dim] in blocks of format f and reads back the exact stored values and
// their radii, [rows, head_dim] each: what a cache holding these rows would hold. For -t
// formats rows must be a multiple of the group (the cache quantizes a channel group once it is
// full). Bad input for values the format cannot store.
void store_and_read_back(const proofs::Format& f, std::span<const float> x, std::size_t rows, std::size_t head_dim,
                         std::span<double> stored, std::span<double> radius);

}  // namespace hnf::runtime
