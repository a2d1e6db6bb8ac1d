#include "hnf/runtime/page_codec.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "hnf/proofs/error.h"
#include "hnf/proofs/float16.h"
#include "hnf/proofs/format.h"
#include "hnf/proofs/policy.h"
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

void encode_row(const PageFormat& f, int page_size, int head_dim, int row, const float* x, std::uint8_t* page,
                const proofs::BlockDither* dither) {
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
  HNF_ASSERT((dither != nullptr) == (f.rounding == 1), "a stochastic page side is written with its draws");
  std::vector<double> draws(dither ? d : 0);
  for (std::size_t c = 0; c < draws.size(); ++c) {
    draws[c] = proofs::dither_uniform(dither->key, dither->first_position + row, static_cast<std::int64_t>(c));
  }
  with_integer_block(format, [&]<int Bits, int Count>() {
    for (std::size_t j = 0; j < groups; ++j) {
      const auto block = quantize_group<Bits, Count>(std::span<const float, Count>(x + j * Count, Count),
                                                     dither ? draws.data() + j * Count : nullptr);
      static_assert(sizeof(block) == integer_group_bytes(Bits, Count));
      std::memcpy(encoded.data() + j * group_bytes, &block, sizeof(block));
    }
  });
  std::memcpy(page + static_cast<std::size_t>(row) * groups * group_bytes, encoded.data(), encoded.size());
}

void encode_token_groups(const PageFormat& f, int page_size, int head_dim, const float* staged, std::uint8_t* page,
                         const proofs::BlockDither* dither) {
  HNF_ASSERT(f.axis == kAxisTokens && f.group == page_size, "an intB-tP page holds one group of page_size positions");
  const auto d = static_cast<std::size_t>(head_dim);
  const proofs::Format format = vocabulary_format(f);
  const std::size_t group_bytes = integer_group_bytes(f.bits, f.group);
  std::vector<std::uint8_t> encoded(d * group_bytes);
  HNF_ASSERT((dither != nullptr) == (f.rounding == 1), "a stochastic page side is written with its draws");
  with_integer_block(format, [&]<int Bits, int Count>() {
    float channel[Count];
    double draws[Count];
    for (std::size_t c = 0; c < d; ++c) {
      for (int t = 0; t < Count; ++t) channel[t] = staged[static_cast<std::size_t>(t) * d + c];
      for (int t = 0; t < Count && dither; ++t) {
        draws[t] = proofs::dither_uniform(dither->key, dither->first_position + t, static_cast<std::int64_t>(c));
      }
      const auto block = quantize_group<Bits, Count>(std::span<const float, Count>(channel, Count), dither ? draws : nullptr);
      static_assert(sizeof(block) == integer_group_bytes(Bits, Count));
      std::memcpy(encoded.data() + c * group_bytes, &block, sizeof(block));
    }
  });
  std::memcpy(page, encoded.data(), encoded.size());
}

namespace {
// Bytes of codes and of group parameters one row adds to a page side of format f (not intB-tP,
// which is quantized a whole page at a time).
struct RowBytes {
  std::size_t codes = 0, params = 0;
};
RowBytes row_bytes(const PageFormat& f, std::size_t d) {
  if (f.axis == kAxisNone) return {2 * d, 0};
  return {d * f.bits / 8, d / f.group * 4};
}
}  // namespace

PageWriter::PageWriter(int page_size, int head_dim) : page_size_(page_size), head_dim_(head_dim) {
  HNF_ASSERT(page_size > 0 && head_dim > 0, "a page has rows and channels");
}

std::size_t PageWriter::staging_bytes() const noexcept {
  return staging_ ? static_cast<std::size_t>(page_size_) * static_cast<std::size_t>(head_dim_) * sizeof(float) : 0;
}

const proofs::BlockDither* PageWriter::dither_for(proofs::BlockDither& out, bool values, std::uint8_t age,
                                                  std::int64_t first_position) const noexcept {
  if (!dither_) return nullptr;
  out = {.key = {.seed = seed_, .stream = stream_, .side = static_cast<std::uint8_t>(values ? 1 : 0), .age = age},
         .first_position = first_position};
  return &out;
}

PageFormat PageWriter::stored_format(PageFormat f) const noexcept {
  if (dither_ && f.encoding != kPageF16 && f.encoding != kPageBF16 && f.encoding != kPageStagedF32) f.rounding = 1;
  return f;
}

void PageWriter::append(std::vector<PageRef>& pages, const PageFormat& key_format_in, const PageFormat& value_format_in,
                        const float* key, const float* value, const Allocate& allocate, std::uint8_t age) {
  const int P = page_size_;
  const auto d = static_cast<std::size_t>(head_dim_);
  const PageFormat key_format = stored_format(key_format_in), value_format = stored_format(value_format_in);
  if (pages.empty() || pages.back().rows == P) {  // open a page in the formats of its block
    PageRef page{nullptr, nullptr, key_format, value_format, 0, 0};
    page.age = age;  // the draws this page's sides were (or will be) quantized with
    if (key_format.axis == kAxisTokens) {
      if (!staging_) staging_.reset(new float[static_cast<std::size_t>(P) * d]);
      page.keys = reinterpret_cast<const std::uint8_t*>(staging_.get());
      page.key_format = staged_page_format();
      staged_key_format_ = key_format;
      staged_age_ = age;
    } else {
      page.keys = allocate(page_bytes(key_format, P, head_dim_));
    }
    page.values = allocate(page_bytes(value_format, P, head_dim_));
    pages.push_back(page);
  }
  PageRef& page = pages.back();
  const int row = page.rows;
  const auto first_position = static_cast<std::int64_t>(pages.size() - 1) * P;
  const auto page_age = static_cast<std::uint8_t>(page.age);
  proofs::BlockDither draws{};
  const auto writable = [](const std::uint8_t* p) { return const_cast<std::uint8_t*>(p); };  // bytes we allocated
  encode_row(page.key_format, P, head_dim_, row, key, writable(page.keys),
             page.key_format.rounding == 1 ? dither_for(draws, false, page_age, first_position) : nullptr);
  if (page.key_format.encoding == kPageStagedF32) {
    if (row == P - 1) {  // the per-channel groups are complete: quantize them into the page's own bytes
      std::uint8_t* bytes = allocate(page_bytes(staged_key_format_, P, head_dim_));
      encode_token_groups(staged_key_format_, P, head_dim_, staging_.get(), bytes,
                          staged_key_format_.rounding == 1 ? dither_for(draws, false, staged_age_, first_position) : nullptr);
      page.keys = bytes;
      page.key_format = staged_key_format_;
      codes_ += d * static_cast<std::size_t>(P) * staged_key_format_.bits / 8;
      params_ += d * 4;
    }
  } else {
    const RowBytes kb = row_bytes(page.key_format, d);
    codes_ += kb.codes;
    params_ += kb.params;
  }
  encode_row(page.value_format, P, head_dim_, row, value, writable(page.values),
             page.value_format.rounding == 1 ? dither_for(draws, true, page_age, first_position) : nullptr);
  const RowBytes vb = row_bytes(page.value_format, d);
  codes_ += vb.codes;
  params_ += vb.params;
  page.rows = row + 1;
}

namespace {
bool same_format(const PageFormat& a, const PageFormat& b) {
  return a.encoding == b.encoding && a.axis == b.axis && a.bits == b.bits && a.group == b.group;
}
}  // namespace

void PageWriter::migrate(PageRef& page, std::int64_t first_position, const PageFormat& key_format_in,
                         const PageFormat& value_format_in, const Allocate& allocate, const Release& release) {
  const PageFormat key_format = stored_format(key_format_in), value_format = stored_format(value_format_in);
  const int P = page_size_;
  const auto d = static_cast<std::size_t>(head_dim_);
  HNF_ASSERT(page.rows == P, "only a full page ages");
  std::vector<float> rows(static_cast<std::size_t>(P) * d);
  proofs::BlockDither draws{};
  auto migrate_side = [&](const std::uint8_t*& bytes, PageFormat& format, const PageFormat& to, bool values) {
    const proofs::BlockDither* dither =
        to.rounding == 1 ? dither_for(draws, values, static_cast<std::uint8_t>(proofs::AgeClass::kOld), first_position) : nullptr;
    if (same_format(format, to)) return;
    HNF_ASSERT((format.encoding == kPageF16 || format.encoding == kPageBF16) && format.origin == kOriginAppended,
               "a page migrates from the fp16 or bf16 values it was appended in");
    HNF_ASSERT(to.encoding != kPageStagedF32 && (to.axis != kAxisTokens || to.group == P), "a storable target format");
    const auto* stored = reinterpret_cast<const std::uint16_t*>(bytes);
    for (std::size_t i = 0; i < rows.size(); ++i) {
      rows[i] = format.encoding == kPageF16 ? proofs::half_bits_to_float(stored[i]) : proofs::bf16_bits_to_float(stored[i]);
    }
    std::uint8_t* out = allocate(page_bytes(to, P, head_dim_));
    if (to.axis == kAxisTokens) {
      encode_token_groups(to, P, head_dim_, rows.data(), out, dither);
      codes_ += d * static_cast<std::size_t>(P) * to.bits / 8;
      params_ += d * 4;
    } else {
      for (int r = 0; r < P; ++r) encode_row(to, P, head_dim_, r, rows.data() + static_cast<std::size_t>(r) * d, out, dither);
      const RowBytes rb = row_bytes(to, d);
      codes_ += rb.codes * static_cast<std::size_t>(P);
      params_ += rb.params * static_cast<std::size_t>(P);
    }
    codes_ -= 2 * d * static_cast<std::size_t>(P);  // the float side's codes (it has no parameters)
    release(bytes, page_bytes(format, P, head_dim_));
    const std::uint8_t origin = format.encoding == kPageF16 ? kOriginFromF16 : kOriginFromBF16;
    bytes = out;
    format = to;
    format.origin = origin;
  };
  migrate_side(page.keys, page.key_format, key_format, false);
  migrate_side(page.values, page.value_format, value_format, true);
}

OwnedStream::OwnedStream(const float* keys, const float* values, std::int64_t positions, int page_size, int head_dim,
                         const std::vector<PageFormat>& key_formats, const std::vector<PageFormat>& value_formats)
    : page_size_(page_size), head_dim_(head_dim), writer_(page_size, head_dim) {
  const std::int64_t num_pages = (positions + page_size - 1) / page_size;
  HNF_ASSERT(static_cast<std::int64_t>(key_formats.size()) == num_pages &&
                 static_cast<std::int64_t>(value_formats.size()) == num_pages,
             "one key and one value format per page");
  // One buffer for every page side the writer allocates (a staged key page stays in the
  // writer), sides in writing order and 8-byte aligned, so the stream is contiguous.
  constexpr std::size_t kAlign = 8;
  const auto aligned = [](std::size_t n) { return (n + kAlign - 1) / kAlign * kAlign; };
  std::size_t total = 0;
  for (std::int64_t p = 0; p < num_pages; ++p) {
    const auto i = static_cast<std::size_t>(p);
    const bool full = (p + 1) * page_size <= positions;
    if (key_formats[i].axis != kAxisTokens || full) total += aligned(page_bytes(key_formats[i], page_size, head_dim));
    total += aligned(page_bytes(value_formats[i], page_size, head_dim));
  }
  bytes_.assign(total, 0);
  std::size_t used = 0;
  const PageWriter::Allocate allocate = [this, &used, aligned](std::size_t bytes) {
    HNF_ASSERT(used + aligned(bytes) <= bytes_.size(), "the page sides fit the buffer sized for them");
    std::uint8_t* p = bytes_.data() + used;
    used += aligned(bytes);
    return p;
  };
  const auto d = static_cast<std::size_t>(head_dim);
  for (std::int64_t t = 0; t < positions; ++t) {
    const auto page = static_cast<std::size_t>(t / page_size);
    writer_.append(pages_, key_formats[page], value_formats[page], keys + static_cast<std::size_t>(t) * d,
                   values + static_cast<std::size_t>(t) * d, allocate);
  }
  for (const auto& page : pages_) {
    stored_ += page_bytes(page.key_format, page_size, head_dim) + page_bytes(page.value_format, page_size, head_dim);
  }
}

}  // namespace hnf::runtime
