#include "hnf/runtime/page_codec.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "hnf/proofs/error.h"
#include "hnf/proofs/float16.h"
#include "hnf/proofs/format.h"
#include "hnf/runtime/block_format.h"
#include "hnf/runtime/decode_attention.h"

namespace hnf::runtime {
namespace {

// Rounds x [head_dim] to fp16 or bf16 bits into out [head_dim], refusing (as
// proofs::quantize_block does) a value that rounds to infinity or is NaN.
void round_float_row(const PageFormat& f, const float* x, int head_dim, std::uint16_t* out) {
  const bool f16 = f.encoding == kPageF16;
  for (int c = 0; c < head_dim; ++c) {
    out[c] = f16 ? proofs::float_to_half_bits(x[c]) : proofs::float_to_bf16_bits(x[c]);
    const float back = f16 ? proofs::half_bits_to_float(out[c]) : proofs::bf16_bits_to_float(out[c]);
    if (!std::isfinite(back)) {
      throw proofs::Error(proofs::ErrorKind::kBadInput, std::string(f16 ? "fp16" : "bf16") + ": channel " +
                                                            std::to_string(c) + " holds " + std::to_string(x[c]) +
                                                            ", which the format cannot store");
    }
  }
}

}  // namespace

void encode_row(const PageFormat& f, int page_size, int head_dim, int row, const float* x, std::uint8_t* page) {
  HNF_ASSERT(row >= 0 && row < page_size, "row is in the page");
  const auto d = static_cast<std::size_t>(head_dim);
  if (f.encoding == kPageStagedF32) {
    std::memcpy(page + static_cast<std::size_t>(row) * d * sizeof(float), x, d * sizeof(float));
    return;
  }
  if (f.axis == kAxisNone) {
    // Rounded into a scratch row first so that bad input leaves the page unchanged.
    std::vector<std::uint16_t> bits(d);
    round_float_row(f, x, head_dim, bits.data());
    std::memcpy(page + static_cast<std::size_t>(row) * d * sizeof(std::uint16_t), bits.data(), d * sizeof(std::uint16_t));
    return;
  }
  HNF_ASSERT(f.axis == kAxisHeadDim, "intB-tP pages are written by encode_token_groups");
  const proofs::Format format = vocabulary_format(f);
  const std::size_t groups = d / f.group;
  const std::size_t group_bytes = integer_group_bytes(f.bits, f.group);
  // Quantize every group first so that bad input leaves the page unchanged.
  std::vector<std::uint8_t> encoded(groups * group_bytes);
  with_integer_block(format, [&]<int Bits, int Count>() {
    for (std::size_t j = 0; j < groups; ++j) {
      const auto block = quantize_group<Bits, Count>(std::span<const float, Count>(x + j * Count, Count));
      static_assert(sizeof(block) == integer_group_bytes(Bits, Count));
      std::memcpy(encoded.data() + j * group_bytes, &block, sizeof(block));
    }
  });
  std::memcpy(page + static_cast<std::size_t>(row) * groups * group_bytes, encoded.data(), encoded.size());
}

void encode_token_groups(const PageFormat& f, int page_size, int head_dim, const float* staged, std::uint8_t* page) {
  HNF_ASSERT(f.axis == kAxisTokens && f.group == page_size, "an intB-tP page holds one group of page_size positions");
  const auto d = static_cast<std::size_t>(head_dim);
  const proofs::Format format = vocabulary_format(f);
  const std::size_t group_bytes = integer_group_bytes(f.bits, f.group);
  std::vector<std::uint8_t> encoded(d * group_bytes);
  with_integer_block(format, [&]<int Bits, int Count>() {
    float channel[Count];
    for (std::size_t c = 0; c < d; ++c) {
      for (int t = 0; t < Count; ++t) channel[t] = staged[static_cast<std::size_t>(t) * d + c];
      const auto block = quantize_group<Bits, Count>(std::span<const float, Count>(channel, Count));
      static_assert(sizeof(block) == integer_group_bytes(Bits, Count));
      std::memcpy(encoded.data() + c * group_bytes, &block, sizeof(block));
    }
  });
  std::memcpy(page, encoded.data(), encoded.size());
}

OwnedStream::OwnedStream(const float* keys, const float* values, std::int64_t positions, int page_size, int head_dim,
                         const std::vector<PageFormat>& key_formats, const std::vector<PageFormat>& value_formats)
    : page_size_(page_size), head_dim_(head_dim) {
  const std::int64_t num_pages = (positions + page_size - 1) / page_size;
  HNF_ASSERT(static_cast<std::int64_t>(key_formats.size()) == num_pages &&
                 static_cast<std::int64_t>(value_formats.size()) == num_pages,
             "one key and one value format per page");
  const auto d = static_cast<std::size_t>(head_dim);
  std::vector<PageFormat> kf(key_formats);
  std::vector<std::size_t> key_offset, value_offset;
  std::size_t total = 0;
  for (std::int64_t p = 0; p < num_pages; ++p) {
    const int rows = static_cast<int>(std::min<std::int64_t>(page_size, positions - p * page_size));
    if (kf[static_cast<std::size_t>(p)].axis == kAxisTokens && rows < page_size) kf[static_cast<std::size_t>(p)] = staged_page_format();
    key_offset.push_back(total);
    total += (page_bytes(kf[static_cast<std::size_t>(p)], page_size, head_dim) + 7) / 8 * 8;
    value_offset.push_back(total);
    total += (page_bytes(value_formats[static_cast<std::size_t>(p)], page_size, head_dim) + 7) / 8 * 8;
  }
  bytes_.assign(total, 0);
  for (std::int64_t p = 0; p < num_pages; ++p) {
    const auto i = static_cast<std::size_t>(p);
    const int rows = static_cast<int>(std::min<std::int64_t>(page_size, positions - p * page_size));
    std::uint8_t* k = bytes_.data() + key_offset[i];
    std::uint8_t* v = bytes_.data() + value_offset[i];
    const float* k0 = keys + static_cast<std::size_t>(p * page_size) * d;
    const float* v0 = values + static_cast<std::size_t>(p * page_size) * d;
    if (kf[i].axis == kAxisTokens) {
      encode_token_groups(kf[i], page_size, head_dim, k0, k);
    } else {
      for (int r = 0; r < rows; ++r) encode_row(kf[i], page_size, head_dim, r, k0 + static_cast<std::size_t>(r) * d, k);
    }
    for (int r = 0; r < rows; ++r) encode_row(value_formats[i], page_size, head_dim, r, v0 + static_cast<std::size_t>(r) * d, v);
    pages_.push_back(PageRef{k, v, kf[i], value_formats[i], rows, 0});
  }
}

}  // namespace hnf::runtime
