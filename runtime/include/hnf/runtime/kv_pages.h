// The page table of the mixed-precision cache, as every decode kernel reads it (scalar
// reference, AVX2, CUDA). Plain C++17 with no project includes, so device code can use it.
//
// One *stream* is the keys and values of one (layer, kv head). Its positions are split into
// pages of `page_size` consecutive positions (the certificate map's block); page i holds
// positions [i*page_size, i*page_size + rows). Every page but the last is full. A page keeps
// its keys and its values in the formats the map gave its block, each as one byte array:
//
//   fp16, bf16   uint16  [page_size, head_dim]        row-major, rows >= `rows` unused
//   f32 staging  float   [page_size, head_dim]        keys of an intB-tP page not yet full
//   intB-dG      TokenGroup<B,G>   [page_size, head_dim/G]  group j of row t at index t*(head_dim/G)+j
//   intB-tP      ChannelGroup<B,P> [head_dim]          channel c over the page's P positions
//
// (TokenGroup/ChannelGroup: block_format.h, 4 bytes fp16 scale + zero, then B*count/8 bytes of
// codes, LSB first.) A per-channel key group can only be quantized when its P positions are
// known, so an intB-tP page that is not full keeps its keys in the f32 staging layout, exactly;
// the page is quantized (and its format switches) when its last row arrives.
#pragma once

#include <cstddef>
#include <cstdint>

namespace hnf::runtime {

// Encoding numbers: those of proofs::Encoding (0 fp16, 1 bf16, 2 int8, 3 int4, 4 int3,
// 5 int2), plus kStagedF32 for the f32 staging layout. Axis numbers: those of
// proofs::GroupAxis (0 none, 1 head_dim groups, 2 token groups).
enum PageEncoding : std::uint8_t { kPageF16 = 0, kPageBF16 = 1, kPageInt8 = 2, kPageInt4 = 3, kPageInt3 = 4, kPageInt2 = 5, kPageStagedF32 = 6 };
enum PageAxis : std::uint8_t { kAxisNone = 0, kAxisHeadDim = 1, kAxisTokens = 2 };

// What a page side was quantized from: the appended rows, or (a policy's aged page, proofs/
// policy.h) the fp16 or bf16 values the page held while recent. The radius of a re-quantized
// element adds the float format's radius, bounded from the stored value (decode_reference.cpp).
enum PageOrigin : std::uint8_t { kOriginAppended = 0, kOriginFromF16 = 1, kOriginFromBF16 = 2 };

struct PageFormat {
  std::uint8_t encoding;  // PageEncoding
  std::uint8_t axis;      // PageAxis
  std::uint8_t bits;      // code bits: 16 (fp16, bf16), 32 (staging), 8, 4, 3, 2
  std::uint8_t origin;     // PageOrigin: what the page side was quantized from
  std::uint16_t group;    // channels (kAxisHeadDim) or positions (kAxisTokens) per group; 0 otherwise
  std::uint8_t rounding;   // integer codes: 0 rounded to nearest, 1 stochastically (radius s(1 + 2^-40))
  std::uint8_t reserved;
};
static_assert(sizeof(PageFormat) == 8 && alignof(PageFormat) == 2, "PageFormat is 8 bytes, copied as bytes");

struct PageRef {
  const std::uint8_t* keys;    // the page's key bytes (layout by key_format)
  const std::uint8_t* values;  // the page's value bytes (layout by value_format; never kAxisTokens)
  PageFormat key_format;
  PageFormat value_format;
  std::int32_t rows;           // positions held, 1 .. page_size
  std::int32_t age;            // the age class (0 sink, 1 recent, 2 old) whose draws a stochastic page used
};
static_assert(sizeof(PageRef) == 40, "PageRef: two pointers, two formats, rows");

// One stream as the kernels see it: pages [num_pages], in position order.
struct StreamView {
  const PageRef* pages;
  std::int64_t num_pages;
  std::int32_t page_size;  // 16, 32 or 64
  std::int32_t head_dim;
};

// Bytes of one integer group: fp16 scale, fp16 zero point, then count codes of `bits` bits.
constexpr std::size_t integer_group_bytes(int bits, int count) {
  return 4 + static_cast<std::size_t>(bits) * static_cast<std::size_t>(count) / 8;
}

// Bytes of one page's keys or values in format f (the layouts above).
constexpr std::size_t page_bytes(const PageFormat& f, int page_size, int head_dim) {
  const auto rows = static_cast<std::size_t>(page_size);
  const auto d = static_cast<std::size_t>(head_dim);
  if (f.encoding == kPageStagedF32) return 4 * rows * d;
  if (f.axis == kAxisNone) return 2 * rows * d;
  if (f.axis == kAxisHeadDim) return rows * (d / f.group) * integer_group_bytes(f.bits, f.group);
  return d * integer_group_bytes(f.bits, f.group);  // kAxisTokens: one group per channel
}

}  // namespace hnf::runtime
