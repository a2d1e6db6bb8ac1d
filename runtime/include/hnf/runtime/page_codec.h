// Writing pages (kv_pages.h): the one place rows become stored bytes, with the reference
// quantizer of proofs/ (bit-exact: block_format.h).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "hnf/proofs/format.h"
#include "hnf/runtime/kv_pages.h"

namespace hnf::runtime {

// Stores row `row` of a page side: x [head_dim] into `page` (page_bytes(f, ...) bytes) in format
// f, which is fp16, bf16, intB-dG or the f32 staging layout (intB-tP pages are written whole by
// encode_token_groups). Throws proofs::Error(kBadInput) for values the format cannot store (NaN,
// inf, beyond the fp16 range); the page is unchanged then.
// With `dither` (f.rounding == 1), integer codes are stochastically rounded with the draws of
// positions dither->first_position + row (proofs::encode_block's convention: first_position is the
// page's first position).
void encode_row(const PageFormat& f, int page_size, int head_dim, int row, const float* x, std::uint8_t* page,
                const proofs::BlockDither* dither = nullptr);

// Quantizes a full page of keys, staged [page_size, head_dim] floats, into the intB-tP layout of
// f (f.group == page_size): one ChannelGroup per channel. Bad input as encode_row; `page`
// unchanged then.
void encode_token_groups(const PageFormat& f, int page_size, int head_dim, const float* staged, std::uint8_t* page,
                         const proofs::BlockDither* dither = nullptr);

// Writes one stream's pages a position at a time: the one place a page is opened in its
// formats, its rows encoded, and an intB-tP key page staged (its exact f32 rows) until the
// page is full, then quantized by encode_token_groups. MixedKvCache appends through it and
// OwnedStream is built through it, so both hold the same bytes for the same rows.
class PageWriter {
 public:
  // Storage for one page side of `bytes` bytes; it must outlive the pages.
  using Allocate = std::function<std::uint8_t*(std::size_t bytes)>;
  PageWriter(int page_size, int head_dim);

  // Appends one position: key and value [head_dim]. When the last page of `pages` is full (or
  // there is none) a page is opened in key_format and value_format (ignored otherwise). Throws
  // bad input (encode_row) for a value its format cannot store; callers that need an append
  // of several rows to be all-or-nothing check the rows first.
  // `age` (0 sink, 1 recent) names the draws of a stochastic writer (set_dither).
  void append(std::vector<PageRef>& pages, const PageFormat& key_format, const PageFormat& value_format,
              const float* key, const float* value, const Allocate& allocate, std::uint8_t age = 0);

  // From now on integer codes are rounded stochastically with the draws of this seed and stream
  // (proofs::DitherKey; sides and ages filled in per page), and their page formats say so.
  void set_dither(std::uint64_t seed, std::uint32_t stream) noexcept {
    dither_ = true;
    seed_ = seed;
    stream_ = stream;
  }

  // Re-quantizes a full page as it ages under a precision policy (proofs/policy.h): each side whose
  // format differs from the one given is decoded from its fp16 or bf16 values (the only formats
  // a policy lets migrate; anything else is an internal error) and stored in the new format
  // (origin kOriginFromF16/BF16), in bytes from `allocate`; the old side's bytes go to `release`.
  // Bit-exact with quantizing those float values with proofs::quantize_block.
  using Release = std::function<void(const std::uint8_t* bytes, std::size_t size)>;
  // first_position: the page's first position (it keys a stochastic writer's draws).
  void migrate(PageRef& page, std::int64_t first_position, const PageFormat& key_format, const PageFormat& value_format,
               const Allocate& allocate, const Release& release);

  // Bytes of codes and of group parameters (fp16 scales and zero points) in the pages written
  // (an intB-tP key page counts once quantized; its staged rows are not counted here).
  [[nodiscard]] std::size_t code_bytes() const noexcept { return codes_; }
  [[nodiscard]] std::size_t param_bytes() const noexcept { return params_; }
  // Bytes of the staging buffer ([page_size, head_dim] f32, allocated by the first intB-tP page).
  [[nodiscard]] std::size_t staging_bytes() const noexcept;

 private:
  int page_size_, head_dim_;
  std::unique_ptr<float[]> staging_;  // [page_size, head_dim]
  PageFormat staged_key_format_{};    // the intB-tP format the staged page becomes when full
  std::size_t codes_ = 0, params_ = 0;
  bool dither_ = false;
  std::uint64_t seed_ = 0;
  std::uint32_t stream_ = 0;
  std::uint8_t staged_age_ = 0;  // the age of the staged page's draws
  // The draws of one side of the page starting at `first_position`, or null when not dithering.
  [[nodiscard]] const proofs::BlockDither* dither_for(proofs::BlockDither& out, bool values, std::uint8_t age,
                                                      std::int64_t first_position) const noexcept;
  // The format a side is stored in: f, marked stochastic for an integer format of a dithering writer.
  [[nodiscard]] PageFormat stored_format(PageFormat f) const noexcept;
};

// A stream built in memory from plain rows, for tests and benchmarks: keys and values
// [positions, head_dim], the page formats per page. Owns its bytes (move-only: its pages
// point into them).
class OwnedStream {
 public:
  // key_formats, value_formats [ceil(positions / page_size)]. An intB-tP key page that is not
  // full is kept staged (as the cache keeps it).
  OwnedStream(const float* keys, const float* values, std::int64_t positions, int page_size, int head_dim,
              const std::vector<PageFormat>& key_formats, const std::vector<PageFormat>& value_formats);
  [[nodiscard]] StreamView view() const noexcept { return {pages_.data(), static_cast<std::int64_t>(pages_.size()), page_size_, head_dim_}; }
  // The pages' bytes: page_bytes of every page side (a last intB-tP key page that is not full
  // counts as its staged f32 rows).
  [[nodiscard]] std::size_t stored_bytes() const noexcept { return stored_; }

 private:
  int page_size_, head_dim_;
  std::vector<std::uint8_t> bytes_;  // every page side but a staged key page, in writing order
  PageWriter writer_;                // holds the staged rows of a last intB-tP page that is not full
  std::vector<PageRef> pages_;
  std::size_t stored_ = 0;
};

}  // namespace hnf::runtime
