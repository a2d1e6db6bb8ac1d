#include "hnf/runtime/block_format.h"

#include <algorithm>

#include "hnf/proofs/error.h"
#include "hnf/proofs/float16.h"

namespace hnf::runtime {

void pack_codes(std::span<const std::uint8_t> codes, int bits, std::span<std::uint8_t> out) {
  HNF_ASSERT(bits >= 1 && bits <= 8, "codes have 1 to 8 bits");
  HNF_ASSERT(out.size() * 8 >= codes.size() * static_cast<std::size_t>(bits), "the packed array is too small");
  std::fill(out.begin(), out.end(), std::uint8_t{0});
  for (std::size_t i = 0; i < codes.size(); ++i) {
    HNF_ASSERT(codes[i] < (1u << bits), "a code does not fit its bits");
    const std::size_t first_bit = static_cast<std::size_t>(bits) * i;
    const unsigned shifted = static_cast<unsigned>(codes[i]) << (first_bit % 8);
    out[first_bit / 8] = static_cast<std::uint8_t>(out[first_bit / 8] | (shifted & 0xffu));
    if (shifted > 0xffu) out[first_bit / 8 + 1] = static_cast<std::uint8_t>(out[first_bit / 8 + 1] | (shifted >> 8));
  }
}

void store_and_read_back(const proofs::Format& f, std::span<const float> x, std::size_t rows, std::size_t head_dim,
                         std::span<double> stored, std::span<double> radius) {
  HNF_ASSERT(x.size() == rows * head_dim && stored.size() == x.size() && radius.size() == x.size(),
             "x, stored and radius hold rows * head_dim elements");
  if (!proofs::is_integer_encoding(f.encoding)) {
    const bool f16 = f.encoding == proofs::Encoding::kF16;
    for (std::size_t i = 0; i < x.size(); ++i) {
      const FloatElement e{f16 ? proofs::float_to_half_bits(x[i]) : proofs::float_to_bf16_bits(x[i])};
      stored[i] = f16 ? proofs::half_bits_to_float(e.bits) : proofs::bf16_bits_to_float(e.bits);
      radius[i] = proofs::float_format_radius(f.encoding, e.bits);
    }
    return;
  }
  with_integer_block(f, [&]<int Bits, int Count>() {
    const auto n = static_cast<std::size_t>(Count);
    float group[Count];
    // One group at a time: element k of the group sits at x[first + k * stride].
    auto run = [&](std::size_t first, std::size_t stride) {
      for (std::size_t k = 0; k < n; ++k) group[k] = x[first + k * stride];
      const auto block = quantize_group<Bits, Count>(std::span<const float, Count>(group, n));
      const double r = block_radius(block);
      for (std::size_t k = 0; k < n; ++k) {
        stored[first + k * stride] = stored_value(block, k);
        radius[first + k * stride] = r;
      }
    };
    if (f.axis == proofs::GroupAxis::kHeadDim) {
      HNF_ASSERT(head_dim % n == 0, "the group divides head_dim");
      for (std::size_t first = 0; first < x.size(); first += n) run(first, 1);
    } else {
      HNF_ASSERT(rows % n == 0, "channel groups are quantized when full");
      for (std::size_t row0 = 0; row0 < rows; row0 += n) {
        for (std::size_t c = 0; c < head_dim; ++c) run(row0 * head_dim + c, head_dim);
      }
    }
  });
}

}  // namespace hnf::runtime
