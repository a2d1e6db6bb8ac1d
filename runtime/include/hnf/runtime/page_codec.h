// Writing pages (kv_pages.h): the one place rows become stored bytes, with the reference
// quantizer of proofs/ (bit-exact: block_format.h).
#pragma once

#include <cstdint>
#include <vector>

#include "hnf/runtime/kv_pages.h"

namespace hnf::runtime {

// Stores row `row` of a page side: x [head_dim] into `page` (page_bytes(f, ...) bytes) in format
// f, which is fp16, bf16, intB-dG or the f32 staging layout (intB-tP pages are written whole by
// encode_token_groups). Throws proofs::Error(kBadInput) for values the format cannot store (NaN,
// inf, beyond the fp16 range); the page is unchanged then.
void encode_row(const PageFormat& f, int page_size, int head_dim, int row, const float* x, std::uint8_t* page);

// Quantizes a full page of keys, staged [page_size, head_dim] floats, into the intB-tP layout of
// f (f.group == page_size): one ChannelGroup per channel. Bad input as encode_row; `page`
// unchanged then.
void encode_token_groups(const PageFormat& f, int page_size, int head_dim, const float* staged, std::uint8_t* page);

// A stream built in memory from plain rows, for tests and benchmarks: keys and values
// [positions, head_dim], the page formats per page. Owns its bytes.
class OwnedStream {
 public:
  // key_formats, value_formats [ceil(positions / page_size)]. An intB-tP key page that is not
  // full is kept staged (as the cache keeps it).
  OwnedStream(const float* keys, const float* values, std::int64_t positions, int page_size, int head_dim,
              const std::vector<PageFormat>& key_formats, const std::vector<PageFormat>& value_formats);
  [[nodiscard]] StreamView view() const noexcept { return {pages_.data(), static_cast<std::int64_t>(pages_.size()), page_size_, head_dim_}; }
  [[nodiscard]] std::size_t stored_bytes() const noexcept { return bytes_.size(); }

 private:
  int page_size_, head_dim_;
  std::vector<std::uint8_t> bytes_;
  std::vector<PageRef> pages_;
};

}  // namespace hnf::runtime
