// Optimised CPU decode attention (decode_attention.h): fp32 arithmetic read straight from the
// pages, one pass over the stream for all query heads of a kv head.
//
// Scheme (every path). Pages are visited in position order; for each page and each block of
// up to four query heads:
//   1. scores s[t, g] = (scale * q_g) . k_t for the page's rows (keys decoded on the fly);
//   2. online softmax: m_g <- max(m_g, max_t s[t, g]), alpha_g = exp(m_old - m_new),
//      w[t, g] = exp(s[t, g] - m_new) <= 1, l_g <- alpha_g l_g + sum_t w[t, g] (nothing
//      overflows: every exponent is <= 0);
//   3. acc_g <- alpha_g acc_g + sum_t w[t, g] v_t (values decoded on the fly).
// Every stored byte is read from memory once: the page's keys in step 1 and its values in
// step 3; the other query-head blocks of the same page (group > 4) find them in L1.
// Accumulating per page then rescaling keeps fp32 sums short (page_size terms, then one term
// per page). A stream is cut into chunks of kChunkPositions positions (whole pages), each
// with its own state (m, l, acc); the chunks are merged at the end (out_g = sum_i e_i acc_i,g /
// sum_i e_i l_i,g with e_i = exp(m_i,g - max_i m_i,g)). decode_layer_cpu runs all chunks of all
// kv heads in parallel (flash-decoding's split over positions), so a layer with fewer kv heads
// than cores still uses every core at long contexts; the chunks depend on the stream only, so
// the result does not depend on the thread count.
//
// Paths. Two SIMD paths share one set of kernels (written once against a vector-traits struct,
// compiled once per width; see the end of the file): AVX2 (target("avx2,fma,f16c"), 8-float
// vectors) and AVX-512 (F/BW/VL/DQ, 16-float vectors, 32 registers), chosen at run time with
// __builtin_cpu_supports (the project itself is built for the baseline ISA); AVX-512 wherever
// the CPU has it and head_dim is a multiple of 16, else AVX2 where head_dim is a multiple of 8.
// They decode one vector of channels (or, for intB-tP keys, of positions) at a time in
// registers, never writing a dequantized value to memory: fp16 with vcvtph2ps, bf16 with a
// 16-bit shift, integer codes with one broadcast (or, 4-bit AVX-512, one vpermd) of the code
// bytes and a per-lane variable shift, then z + s*c by mask + convert + FMA (8 and 4 bits) or
// by one permute lookup in the group's table of 2^B stored values (3 and 2 bits). Each stored
// element is decoded once and then serves every query head of the block (one FMA per head),
// and each query vector loaded serves several key rows. The kernels are templated on the
// format (bits, group) and on the number of query heads in the block (1..4), so the inner loops
// have no branches and no calls; the register blocking (rows or channels per step, extra
// accumulator sets for one or two heads) keeps 8 or more independent FMA chains in flight.
// With four heads per kv head the FMAs (2 x 4 heads x head_dim per position) and the decode
// around them bound one core below fp16 storage; fp16 is close to one core's memory bandwidth.
// The portable path (any CPU, and streams whose head_dim is not a multiple of 8) decodes one
// page at a time into a thread-local fp32 tile and runs plain loops the compiler vectorises
// for the baseline ISA; it is about 10x slower and exists for coverage, not speed.
//
// intB-tP keys (one channel group per channel over the page's P positions) use the factored
// score sum_c q_c z_c + sum_c (q_c s_c) code_{c,t}: q*s and q.z are computed once per page, and
// the inner loop is code conversion + FMA with positions in the vector lanes.
#ifndef HNF_DECODE_CPU_KERNELS  // the whole file but its SIMD kernels (at the end)
#include "decode_cpu.h"

// The SIMD paths exist on x86 only; elsewhere every call takes the portable path.
#if defined(__x86_64__) || defined(__i386__)
#define HNF_DECODE_X86 1
// GCC 12's AVX-512 intrinsics read a deliberately uninitialised _mm512_undefined_*() value,
// which -Wuninitialized reports at their lines in the header (GCC bug 105593, fixed in 13).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop
#include <cpuid.h>
#else
#define HNF_DECODE_X86 0
#endif

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "hnf/proofs/error.h"
#include "hnf/runtime/decode_attention.h"

namespace hnf::runtime {
namespace {

// Largest head_dim the kernels take (their per-page tables live on the stack).
constexpr std::size_t kMaxHeadDim = 512;
// Largest page_size (the weight tile [page_size, 4] lives on the stack).
constexpr int kMaxPageSize = 256;
// Query heads per register block: four score accumulators (or eight value accumulators of
// two 8-lane chunks) plus the decoded chunk fit in the 16 AVX2 registers.
constexpr int kBlock = 4;
// Positions per chunk: a stream is decoded in chunks of this many positions (whole pages),
// each into its own partial softmax state, merged at the end. decode_layer_cpu runs the chunks
// of all kv heads in parallel, so a few kv heads still use every core at long contexts; the
// chunking depends only on the stream, never on the thread count, so results are the same bit
// for bit whatever the threads, and decode_layer_cpu equals decode_attention_cpu per head.
constexpr std::int64_t kChunkPositions = 2048;

// The softmax state of one chunk, unnormalised: acc [group, d] = sum_t exp(s_t - m) v_t,
// m, l [blocks * 4] (head g at index g; padded to whole blocks of kBlock) the running max
// and sum_t exp(s_t - m).
struct Partial {
  float* acc;
  float* m;
  float* l;
};

std::size_t padded_heads(int group) {
  return (static_cast<std::size_t>(group) + kBlock - 1) / kBlock * kBlock;
}
// Floats of one Partial: acc, m, l.
std::size_t partial_floats(int group, int head_dim) {
  return static_cast<std::size_t>(group) * static_cast<std::size_t>(head_dim) + 2 * padded_heads(group);
}
Partial partial_at(float* base, int group, int head_dim) {
  float* m = base + static_cast<std::size_t>(group) * static_cast<std::size_t>(head_dim);
  return {base, m, m + padded_heads(group)};
}

// ---- Validation (always before any parallel region: kernels never throw) ------------------

bool valid_integer_group(const PageFormat& f, int page_size, std::size_t d, bool keys) {
  if (f.axis == kAxisHeadDim) return (f.group == 32 || f.group == 64 || f.group == 128) && d % f.group == 0;
  if (f.axis == kAxisTokens) return keys && f.group == page_size && (f.group == 16 || f.group == 32 || f.group == 64);
  return false;
}

bool valid_page_format(const PageFormat& f, int page_size, std::size_t d, bool keys) {
  switch (f.encoding) {
    case kPageF16:
    case kPageBF16: return f.axis == kAxisNone && f.bits == 16;
    case kPageStagedF32: return f.bits == 32;
    case kPageInt8: return f.bits == 8 && valid_integer_group(f, page_size, d, keys);
    case kPageInt4: return f.bits == 4 && valid_integer_group(f, page_size, d, keys);
    case kPageInt3: return f.bits == 3 && valid_integer_group(f, page_size, d, keys);
    case kPageInt2: return f.bits == 2 && valid_integer_group(f, page_size, d, keys);
    default: return false;
  }
}

// Rows of page p that the first `positions` positions use.
int rows_used(const StreamView& stream, std::int64_t p, std::int64_t positions) {
  return static_cast<int>(std::min<std::int64_t>(stream.pages[p].rows, positions - p * stream.page_size));
}

void check_call(const StreamView& stream, std::int64_t positions, int group) {
  HNF_ASSERT(positions >= 1 && group >= 1, "decode needs a position and a query");
  HNF_ASSERT(stream.head_dim >= 1 && static_cast<std::size_t>(stream.head_dim) <= kMaxHeadDim,
             "the CPU decode takes head_dim 1..512");
  HNF_ASSERT(stream.page_size >= 1 && stream.page_size <= kMaxPageSize, "the CPU decode takes page_size 1..256");
  const std::int64_t pages = (positions + stream.page_size - 1) / stream.page_size;
  HNF_ASSERT(pages <= stream.num_pages, "positions are in the stream");
  const auto d = static_cast<std::size_t>(stream.head_dim);
  for (std::int64_t p = 0; p < pages; ++p) {
    const PageRef& page = stream.pages[p];
    HNF_ASSERT(page.rows >= 1 && page.rows <= stream.page_size, "a page holds 1..page_size rows");
    HNF_ASSERT(p + 1 == pages || page.rows == stream.page_size, "every page but the last is full");
    HNF_ASSERT(valid_page_format(page.key_format, stream.page_size, d, true), "a key page format the decode reads");
    HNF_ASSERT(valid_page_format(page.value_format, stream.page_size, d, false),
               "a value page format the decode reads");
  }
  HNF_ASSERT(positions - (pages - 1) * stream.page_size <= stream.pages[pages - 1].rows, "positions are in the stream");
}

bool cpu_has_avx2() noexcept {
#if HNF_DECODE_X86
  // libgcc's check also requires the OS to save the AVX registers (XGETBV), not just CPUID.
  static const bool has = [] {
    __builtin_cpu_init();
    // F16C from CPUID leaf 1 itself: clang 14's __builtin_cpu_supports does not know "f16c"
    // (it uses the same YMM state the AVX2 check has found the OS saves).
    unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
    const bool f16c = __get_cpuid(1, &eax, &ebx, &ecx, &edx) != 0 && (ecx & bit_F16C) != 0;
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && f16c;
  }();
  return has;
#else
  return false;
#endif
}

bool cpu_has_avx512() noexcept {
#if HNF_DECODE_X86
  // As for AVX2, libgcc also checks that the OS saves the opmask and zmm registers.
  static const bool has = [] {
    __builtin_cpu_init();
    return cpu_has_avx2() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
  }();
  return has;
#else
  return false;
#endif
}

bool path_supported(detail::CpuDecodePath path, int head_dim) noexcept {
  switch (path) {
    case detail::CpuDecodePath::kAvx512: return cpu_has_avx512() && head_dim % 16 == 0;
    case detail::CpuDecodePath::kAvx2: return cpu_has_avx2() && head_dim % 8 == 0;
    default: return true;
  }
}

// ---- Portable path -------------------------------------------------------------------------

// fp16 bits to float, exact, without branches and without float subnormals (so a flush-to-
// zero / denormals-are-zero FPU mode set elsewhere in the process cannot change it): normal
// halves (and inf/NaN) by rebiasing the exponent field, subnormal halves as mantissa * 2^-24.
inline float half_to_float(std::uint16_t h) noexcept {
  const std::uint32_t magnitude = h & 0x7fffu;
  const std::uint32_t exponent = magnitude >> 10;
  const std::uint32_t rebiased =
      (magnitude << 13) + ((127u - 15u) << 23) + (exponent == 31u ? (128u - 16u) << 23 : 0u);
  const float subnormal = static_cast<float>(magnitude) * 0x1p-24f;  // exponent 0: the mantissa
  const float value = exponent == 0u ? subnormal : std::bit_cast<float>(rebiased);
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
  return std::bit_cast<float>(std::bit_cast<std::uint32_t>(value) | sign);
}

inline float bf16_to_float(std::uint16_t h) noexcept {
  return std::bit_cast<float>(static_cast<std::uint32_t>(h) << 16);
}

inline std::uint16_t load_u16(const std::uint8_t* p) noexcept {
  return static_cast<std::uint16_t>(p[0] | (p[1] << 8));  // little-endian by definition of the layout
}

// Eight B-bit codes from the B bytes at p (code i: bits [B*i, B*i + B), LSB first).
// codes [8].
template <int B>
inline void unpack8(const std::uint8_t* p, float* codes) noexcept {
  std::uint64_t window = 0;
  for (int k = 0; k < B; ++k) window |= static_cast<std::uint64_t>(p[k]) << (8 * k);
  constexpr std::uint64_t kMask = (std::uint64_t{1} << B) - 1u;
  for (int i = 0; i < 8; ++i) codes[i] = static_cast<float>((window >> (B * i)) & kMask);
}

// Decodes `rows` rows of an intB-dG page side into tile [rows, d].
template <int B, int G>
void decode_int_rows(const std::uint8_t* data, int rows, std::size_t d, float* tile) {
  constexpr std::size_t kGroupBytes = integer_group_bytes(B, G);
  const std::size_t groups = d / G;
  for (std::size_t t = 0; t < static_cast<std::size_t>(rows); ++t) {
    for (std::size_t j = 0; j < groups; ++j) {
      const std::uint8_t* group = data + (t * groups + j) * kGroupBytes;
      const float s = half_to_float(load_u16(group));
      const float z = half_to_float(load_u16(group + 2));
      float* out = tile + t * d + j * G;
      for (std::size_t k = 0; k < G / 8; ++k) {
        float codes[8];
        unpack8<B>(group + 4 + k * B, codes);
        for (std::size_t i = 0; i < 8; ++i) out[k * 8 + i] = z + s * codes[i];
      }
    }
  }
}

// Decodes the first `rows` positions of an intB-tP key page (one group per channel) into
// tile [rows, d].
template <int B, int P>
void decode_int_tokens(const std::uint8_t* data, int rows, std::size_t d, float* tile) {
  constexpr std::size_t kGroupBytes = integer_group_bytes(B, P);
  const auto n = static_cast<std::size_t>(rows);
  for (std::size_t c = 0; c < d; ++c) {
    const std::uint8_t* group = data + c * kGroupBytes;
    const float s = half_to_float(load_u16(group));
    const float z = half_to_float(load_u16(group + 2));
    float channel[P];
    for (std::size_t k = 0; k < P / 8; ++k) unpack8<B>(group + 4 + k * B, channel + k * 8);
    for (std::size_t t = 0; t < n; ++t) tile[t * d + c] = z + s * channel[t];
  }
}

template <int B>
void decode_int_page(const PageFormat& f, const std::uint8_t* data, int rows, std::size_t d, float* tile) {
  if (f.axis == kAxisHeadDim) {
    switch (f.group) {
      case 32: decode_int_rows<B, 32>(data, rows, d, tile); return;
      case 64: decode_int_rows<B, 64>(data, rows, d, tile); return;
      default: decode_int_rows<B, 128>(data, rows, d, tile); return;
    }
  }
  switch (f.group) {
    case 16: decode_int_tokens<B, 16>(data, rows, d, tile); return;
    case 32: decode_int_tokens<B, 32>(data, rows, d, tile); return;
    default: decode_int_tokens<B, 64>(data, rows, d, tile); return;
  }
}

// The stored values of the first `rows` rows of one page side (format validated) into
// tile [rows, d].
void decode_page(const PageFormat& f, const std::uint8_t* data, int rows, std::size_t d, float* tile) {
  const std::size_t n = static_cast<std::size_t>(rows) * d;
  switch (f.encoding) {
    case kPageF16: {
      const auto* x = reinterpret_cast<const std::uint16_t*>(data);
      for (std::size_t i = 0; i < n; ++i) tile[i] = half_to_float(x[i]);
      return;
    }
    case kPageBF16: {
      const auto* x = reinterpret_cast<const std::uint16_t*>(data);
      for (std::size_t i = 0; i < n; ++i) tile[i] = bf16_to_float(x[i]);
      return;
    }
    case kPageStagedF32: std::memcpy(tile, data, n * sizeof(float)); return;
    case kPageInt8: decode_int_page<8>(f, data, rows, d, tile); return;
    case kPageInt4: decode_int_page<4>(f, data, rows, d, tile); return;
    case kPageInt3: decode_int_page<3>(f, data, rows, d, tile); return;
    default: decode_int_page<2>(f, data, rows, d, tile); return;
  }
}

// a . b over d floats, eight independent partial sums (vectorisable without reassociation).
// a, b [d].
inline float dot(const float* a, const float* b, std::size_t d) noexcept {
  float partial[8] = {};
  std::size_t c = 0;
  for (; c + 8 <= d; c += 8) {
    for (std::size_t i = 0; i < 8; ++i) partial[i] += a[c + i] * b[c + i];
  }
  for (; c < d; ++c) partial[0] += a[c] * b[c];
  return ((partial[0] + partial[4]) + (partial[1] + partial[5])) +
         ((partial[2] + partial[6]) + (partial[3] + partial[7]));
}

// Pages [page_begin, page_end) of the first `positions` positions into `part` (initialised
// here). qs [group, d]: the queries times the softmax scale.
void decode_pages_portable(const StreamView& stream, std::int64_t positions, std::int64_t page_begin,
                           std::int64_t page_end, const float* qs, int group, const Partial& part) {
  const auto d = static_cast<std::size_t>(stream.head_dim);
  const auto ps = static_cast<std::size_t>(stream.page_size);
  const auto heads = static_cast<std::size_t>(group);
  // Per-thread scratch, grown once: one decoded page [page_size, d], weights [group,
  // page_size], this page's rescale factors [group].
  thread_local std::vector<float> scratch;
  scratch.resize(ps * d + heads * ps + heads);
  float* tile = scratch.data();
  float* w = tile + ps * d;
  float* alpha = w + heads * ps;
  float* m = part.m;
  float* l = part.l;
  std::fill(m, m + heads, -std::numeric_limits<float>::infinity());
  std::fill(l, l + heads, 0.0f);
  std::fill(part.acc, part.acc + heads * d, 0.0f);

  for (std::int64_t p = page_begin; p < page_end; ++p) {
    const PageRef& page = stream.pages[p];
    const int rows = rows_used(stream, p, positions);
    const auto n = static_cast<std::size_t>(rows);
    decode_page(page.key_format, page.keys, rows, d, tile);
    for (std::size_t g = 0; g < heads; ++g) {
      float* wg = w + g * ps;
      for (std::size_t t = 0; t < n; ++t) wg[t] = dot(qs + g * d, tile + t * d, d);
      const float m_new = std::max(m[g], *std::max_element(wg, wg + n));
      alpha[g] = std::exp(m[g] - m_new);  // exp(-inf) = 0 on the first page
      float sum = 0.0f;
      for (std::size_t t = 0; t < n; ++t) sum += (wg[t] = std::exp(wg[t] - m_new));
      l[g] = l[g] * alpha[g] + sum;
      m[g] = m_new;
    }
    decode_page(page.value_format, page.values, rows, d, tile);
    for (std::size_t g = 0; g < heads; ++g) {
      float* acc = part.acc + g * d;
      const float* wg = w + g * ps;
      for (std::size_t c = 0; c < d; ++c) acc[c] *= alpha[g];
      for (std::size_t t = 0; t < n; ++t) {
        const float* v = tile + t * d;
        for (std::size_t c = 0; c < d; ++c) acc[c] += wg[t] * v[c];
      }
    }
  }
}

#if HNF_DECODE_X86
// ---- SIMD paths: AVX2 (8 lanes) and AVX-512 (16 lanes) -------------------------------------
//
// The kernels sit at the end of this file, between #else and #endif of HNF_DECODE_CPU_KERNELS,
// and are included here once per vector width (see there).
#define HNF_DECODE_CPU_KERNELS 8
#include "decode_cpu.cpp"  // NOLINT(bugprone-suspicious-include): the kernels, AVX2 instance
#undef HNF_DECODE_CPU_KERNELS
#define HNF_DECODE_CPU_KERNELS 16
#include "decode_cpu.cpp"  // NOLINT(bugprone-suspicious-include): the kernels, AVX-512 instance
#undef HNF_DECODE_CPU_KERNELS
#endif  // HNF_DECODE_X86

// The path decode_attention_cpu takes for a stream with this head_dim.
detail::CpuDecodePath best_path(int head_dim) noexcept {
  if (path_supported(detail::CpuDecodePath::kAvx512, head_dim)) return detail::CpuDecodePath::kAvx512;
  if (path_supported(detail::CpuDecodePath::kAvx2, head_dim)) return detail::CpuDecodePath::kAvx2;
  return detail::CpuDecodePath::kPortable;
}

// Chunks: runs of chunk_pages() pages from the stream's start; the last one may be shorter.
std::int64_t chunk_pages(const StreamView& stream) {
  return std::max<std::int64_t>(1, kChunkPositions / stream.page_size);
}
std::int64_t chunk_count(const StreamView& stream, std::int64_t positions) {
  const std::int64_t pages = (positions + stream.page_size - 1) / stream.page_size;
  return (pages + chunk_pages(stream) - 1) / chunk_pages(stream);
}

// One chunk of one stream into `part`. Validated arguments only. qs [group, d] scaled queries.
void run_chunk(detail::CpuDecodePath path, const StreamView& stream, std::int64_t positions, std::int64_t chunk,
               const float* qs, int group, const Partial& part) {
  const std::int64_t pages = (positions + stream.page_size - 1) / stream.page_size;
  const std::int64_t begin = chunk * chunk_pages(stream);
  const std::int64_t end = std::min(pages, begin + chunk_pages(stream));
  switch (path) {
#if HNF_DECODE_X86
    case detail::CpuDecodePath::kAvx512: avx512::decode_pages(stream, positions, begin, end, qs, group, part); return;
    case detail::CpuDecodePath::kAvx2: avx2::decode_pages(stream, positions, begin, end, qs, group, part); return;
#endif
    default: decode_pages_portable(stream, positions, begin, end, qs, group, part); return;
  }
}

// out [group, d] = the softmax-weighted sum of `count` chunk states (parts[i] at
// base + i * partial_floats), in chunk order: every exponent is <= 0 again.
void merge_chunks(float* base, std::int64_t count, int group, int head_dim, float* out) {
  const auto d = static_cast<std::size_t>(head_dim);
  const std::size_t stride = partial_floats(group, head_dim);
  for (std::size_t g = 0; g < static_cast<std::size_t>(group); ++g) {
    float m = -std::numeric_limits<float>::infinity();
    for (std::int64_t i = 0; i < count; ++i) {
      m = std::max(m, partial_at(base + static_cast<std::size_t>(i) * stride, group, head_dim).m[g]);
    }
    float* o = out + g * d;
    std::fill(o, o + d, 0.0f);
    float total = 0.0f;
    for (std::int64_t i = 0; i < count; ++i) {
      const Partial part = partial_at(base + static_cast<std::size_t>(i) * stride, group, head_dim);
      const float weight = std::exp(part.m[g] - m);
      total += weight * part.l[g];
      const float* acc = part.acc + g * d;
      for (std::size_t c = 0; c < d; ++c) o[c] += weight * acc[c];
    }
    const float inv = 1.0f / total;
    for (std::size_t c = 0; c < d; ++c) o[c] *= inv;
  }
}

// Scaled queries: qs [n] = q [n] * scale.
void scale_queries(const float* q, std::size_t n, float scale, float* qs) {
  for (std::size_t i = 0; i < n; ++i) qs[i] = q[i] * scale;
}

// Validated arguments only. q [group, d], out [group, d].
void run_path(detail::CpuDecodePath path, const StreamView& stream, std::int64_t positions, const float* q, int group,
              float scale, float* out) {
  const std::size_t n = static_cast<std::size_t>(group) * static_cast<std::size_t>(stream.head_dim);
  const std::int64_t chunks = chunk_count(stream, positions);
  const std::size_t stride = partial_floats(group, stream.head_dim);
  // Per-thread scratch, grown once: scaled queries, then one Partial per chunk.
  thread_local std::vector<float> scratch;
  scratch.resize(n + static_cast<std::size_t>(chunks) * stride);
  float* qs = scratch.data();
  scale_queries(q, n, scale, qs);
  for (std::int64_t c = 0; c < chunks; ++c) {
    run_chunk(path, stream, positions, c, qs, group,
              partial_at(qs + n + static_cast<std::size_t>(c) * stride, group, stream.head_dim));
  }
  merge_chunks(qs + n, chunks, group, stream.head_dim, out);
}

}  // namespace

namespace detail {

void decode_attention_cpu_path(CpuDecodePath path, const StreamView& stream, std::int64_t positions, const float* q,
                               int group, float scale, float* out) {
  check_call(stream, positions, group);
  HNF_ASSERT(path_supported(path, stream.head_dim),
             "the AVX2 decode needs AVX2/FMA/F16C and head_dim a multiple of 8, the AVX-512 decode "
             "AVX-512 F/BW/VL/DQ and head_dim a multiple of 16");
  run_path(path, stream, positions, q, group, scale, out);
}

}  // namespace detail

// scratch is not used (the kernels keep per-page state on the stack and per-thread buffers);
// it may be null.
void decode_attention_cpu(const StreamView& stream, std::int64_t positions, const float* q, int group, float scale,
                          float* out) {
  check_call(stream, positions, group);
  run_path(best_path(stream.head_dim), stream, positions, q, group, scale, out);
}

constexpr std::int64_t kParallelPositions = 8192;

void decode_layer_cpu(const StreamView* streams, int kv_heads, std::int64_t positions, const float* q, int heads,
                      float scale, float* out) {
  HNF_ASSERT(kv_heads >= 1 && heads >= kv_heads && heads % kv_heads == 0, "query heads are a multiple of kv heads");
  const int group = heads / kv_heads;
  const int head_dim = streams[0].head_dim;
  // Every check throws here, before the parallel region (an exception must not leave it).
  for (int h = 0; h < kv_heads; ++h) {
    HNF_ASSERT(streams[h].head_dim == head_dim, "every kv head of a layer has the same head_dim");
    check_call(streams[h], positions, group);
  }
  const detail::CpuDecodePath path = best_path(head_dim);
  // One kv head's queries (and outputs): group rows of head_dim.
  const std::size_t per_head = static_cast<std::size_t>(group) * static_cast<std::size_t>(head_dim);
  const std::size_t stride = partial_floats(group, head_dim);
  // Work items: (kv head, chunk). chunk_first[h] is kv head h's first item.
  std::vector<std::int64_t> chunk_first(static_cast<std::size_t>(kv_heads) + 1, 0);
  for (int h = 0; h < kv_heads; ++h) {
    const auto i = static_cast<std::size_t>(h);
    chunk_first[i + 1] = chunk_first[i] + chunk_count(streams[h], positions);
  }
  const std::int64_t items = chunk_first.back();
  // Scratch of the calling thread, grown once: scaled queries [heads, d], one Partial per item.
  thread_local std::vector<float> scratch;
  scratch.resize(static_cast<std::size_t>(heads) * static_cast<std::size_t>(head_dim) +
                 static_cast<std::size_t>(items) * stride);
  float* qs = scratch.data();
  float* parts = qs + static_cast<std::size_t>(heads) * static_cast<std::size_t>(head_dim);
  scale_queries(q, static_cast<std::size_t>(heads) * static_cast<std::size_t>(head_dim), scale, qs);
  // Below a few thousand positions in all, starting a parallel region costs more than the work.
  const bool parallel = static_cast<std::int64_t>(kv_heads) * positions >= kParallelPositions;
#pragma omp parallel for schedule(dynamic) if (parallel)
  for (std::int64_t item = 0; item < items; ++item) {
    const auto h = static_cast<std::size_t>(std::upper_bound(chunk_first.begin(), chunk_first.end(), item) -
                                            chunk_first.begin()) - 1;
    run_chunk(path, streams[h], positions, item - chunk_first[h], qs + h * per_head, group,
              partial_at(parts + static_cast<std::size_t>(item) * stride, group, head_dim));
  }
  // The merge is tiny (chunks x group x head_dim per kv head): not worth a second parallel region.
  for (std::size_t h = 0; h < static_cast<std::size_t>(kv_heads); ++h) {
    merge_chunks(parts + static_cast<std::size_t>(chunk_first[h]) * stride, chunk_first[h + 1] - chunk_first[h], group,
                 head_dim, out + h * per_head);
  }
}

bool cpu_decode_uses_avx2() noexcept { return cpu_has_avx2(); }

namespace detail {
bool cpu_decode_path_supported(CpuDecodePath path, int head_dim) noexcept { return path_supported(path, head_dim); }
}  // namespace detail

}  // namespace hnf::runtime
#else  // HNF_DECODE_CPU_KERNELS
// ---- SIMD kernels, compiled once per vector width -----------------------------------------
//
// The part of the file above includes this part twice (GCC fixes a function's target at its
// definition, so one template cannot serve two ISAs): HNF_DECODE_CPU_KERNELS = 8 gives
// namespace avx2 (target avx2,fma,f16c; 8-float __m256 vectors), 16 gives namespace avx512
// (target avx512f/bw/vl/dq; 16-float __m512 vectors). The kernels below are written once
// against the small vector-traits struct V (Vec = V::F, V::kLanes lanes); only V knows the
// intrinsics of its width. The per-page softmax step, the intB-tP header decode and exp stay
// 256-bit in both (per page, not per stored element).
//
// Every function here carries the target attribute (GCC inlines only between functions of the
// same target, and lambdas would not inherit it, hence none are used).
#if HNF_DECODE_CPU_KERNELS == 8
#define HNF_SIMD __attribute__((target("avx2,fma,f16c")))
namespace avx2 {
#elif HNF_DECODE_CPU_KERNELS == 16
#define HNF_SIMD __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")))
namespace avx512 {
#else
#error "HNF_DECODE_CPU_KERNELS is the vector width: 8 or 16"
#endif

// One 32-bit little-endian load (any alignment).
HNF_SIMD inline int load_i32(const std::uint8_t* p) {
  int x = 0;
  std::memcpy(&x, p, sizeof x);
  return x;
}

// exp(x) for x <= 0 (scores minus their running max), 8 lanes: Cephes' expf (range reduction
// by ln 2 in two parts, then 1 + r + r^2 p(r) with p of degree 5), relative error ~1e-7. Below -87.3 the result
// would not be a normal float; it is flushed to 0, which weighs nothing next to the maximum
// position's exp(0) = 1 (this also makes exp(-inf) = 0 for padding rows and the first page).
HNF_SIMD inline __m256 exp_nonpositive(__m256 x) {
  const __m256 lowest = _mm256_set1_ps(-87.3f);
  const __m256 underflow = _mm256_cmp_ps(x, lowest, _CMP_LT_OQ);
  x = _mm256_max_ps(x, lowest);
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);  // n*0.693359375 is exact
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 y = _mm256_set1_ps(1.9875691500e-4f);
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.3981999507e-3f));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(8.3334519073e-3f));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(4.1665795894e-2f));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.6666665459e-1f));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(5.0000001201e-1f));
  y = _mm256_fmadd_ps(y, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  // 2^n with n in [-126, 0]: a normal float built from its exponent field.
  const __m256i two_n = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_andnot_ps(underflow, _mm256_mul_ps(y, _mm256_castsi256_ps(two_n)));
}

// The four horizontal sums of a, b, c, e in lanes 0..3.
HNF_SIMD inline __m128 hsum4_256(__m256 a, __m256 b, __m256 c, __m256 e) {
  const __m256 ab = _mm256_hadd_ps(a, b);
  const __m256 ce = _mm256_hadd_ps(c, e);
  const __m256 abce = _mm256_hadd_ps(ab, ce);  // [a b c e] of the low and of the high halves
  return _mm_add_ps(_mm256_castps256_ps128(abce), _mm256_extractf128_ps(abce, 1));
}

// Eight B-bit codes (B bytes at p, LSB first), B < 8: lane i holds code i in its low B bits
// and later codes above them (not masked). One 32-bit broadcast load of the 4 bytes that END
// at the chunk's last byte (so it never reads past the group: p is at least 4 bytes into its
// group, whose first 4 bytes are the scale and zero point), then a per-lane shift; 3-bit codes
// that straddle two bytes need nothing more.
template <int B>
HNF_SIMD inline __m256i code_windows8(const std::uint8_t* p) {
  static_assert(B < 8);
  constexpr int kBase = 32 - 8 * B;
  const __m256i window = _mm256_set1_epi32(load_i32(p + B - 4));
  const __m256i shifts = _mm256_setr_epi32(kBase, kBase + B, kBase + 2 * B, kBase + 3 * B, kBase + 4 * B,
                                           kBase + 5 * B, kBase + 6 * B, kBase + 7 * B);
  return _mm256_srlv_epi32(window, shifts);
}

#if HNF_DECODE_CPU_KERNELS == 8
struct V {
  using F = __m256;
  using I = __m256i;
  static constexpr int kLanes = 8;
  HNF_SIMD static F zero() { return _mm256_setzero_ps(); }
  HNF_SIMD static F set1(float x) { return _mm256_set1_ps(x); }
  HNF_SIMD static F broadcast(__m128 x) { return _mm256_broadcastss_ps(x); }  // lane 0 of x
  HNF_SIMD static F load(const float* p) { return _mm256_loadu_ps(p); }
  HNF_SIMD static void store(float* p, F x) { _mm256_storeu_ps(p, x); }
  HNF_SIMD static F add(F a, F b) { return _mm256_add_ps(a, b); }
  HNF_SIMD static F mul(F a, F b) { return _mm256_mul_ps(a, b); }
  HNF_SIMD static F fmadd(F a, F b, F c) { return _mm256_fmadd_ps(a, b, c); }
  HNF_SIMD static F half(const std::uint16_t* p) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  }
  HNF_SIMD static F bfloat(const std::uint16_t* p) {
    const __m256i wide = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(wide, 16));
  }
  HNF_SIMD static F bytes(const std::uint8_t* p) {
    return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
  }
  template <int B>
  HNF_SIMD static I windows(const std::uint8_t* p) {
    return code_windows8<B>(p);
  }
  HNF_SIMD static F masked_to_float(I x, int mask) {
    return _mm256_cvtepi32_ps(_mm256_and_si256(x, _mm256_set1_epi32(mask)));
  }
  // table[i & 7] per lane (vpermps reads an index's low 3 bits).
  HNF_SIMD static F lookup(F table, I index) { return _mm256_permutevar8x32_ps(table, index); }
  HNF_SIMD static __m128 hsum4(F a, F b, F c, F e) { return hsum4_256(a, b, c, e); }
  // x, forced into a register (an empty asm), so that its uses do not each reload it.
  HNF_SIMD static F pin(F x) {
    asm("" : "+x"(x));
    return x;
  }
};
#else
struct V {
  using F = __m512;
  using I = __m512i;
  static constexpr int kLanes = 16;
  HNF_SIMD static F zero() { return _mm512_setzero_ps(); }
  HNF_SIMD static F set1(float x) { return _mm512_set1_ps(x); }
  HNF_SIMD static F broadcast(__m128 x) { return _mm512_broadcastss_ps(x); }
  HNF_SIMD static F load(const float* p) { return _mm512_loadu_ps(p); }
  HNF_SIMD static void store(float* p, F x) { _mm512_storeu_ps(p, x); }
  HNF_SIMD static F add(F a, F b) { return _mm512_add_ps(a, b); }
  HNF_SIMD static F mul(F a, F b) { return _mm512_mul_ps(a, b); }
  HNF_SIMD static F fmadd(F a, F b, F c) { return _mm512_fmadd_ps(a, b, c); }
  HNF_SIMD static F half(const std::uint16_t* p) {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  }
  HNF_SIMD static F bfloat(const std::uint16_t* p) {
    const __m512i wide = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
    return _mm512_castsi512_ps(_mm512_slli_epi32(wide, 16));
  }
  HNF_SIMD static F bytes(const std::uint8_t* p) {
    return _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))));
  }
  // Sixteen codes (2B bytes at p), unmasked as code_windows8. 2-bit: one broadcast 32-bit
  // window, shifted per lane. 4-bit: the two 32-bit halves of 8 bytes, each spread over eight
  // lanes by one vpermd, then shifted. 3-bit (halves not 32-bit aligned): two eight-code
  // windows, one per 256-bit half.
  template <int B>
  HNF_SIMD static I windows(const std::uint8_t* p) {
    if constexpr (B == 2) {
      const __m512i shifts = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
      return _mm512_srlv_epi32(_mm512_set1_epi32(load_i32(p)), shifts);
    } else if constexpr (B == 4) {
      const __m512i halves = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
      const __m512i shifts = _mm512_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28, 0, 4, 8, 12, 16, 20, 24, 28);
      const __m128i bytes = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p));
      return _mm512_srlv_epi32(_mm512_permutexvar_epi32(halves, _mm512_castsi128_si512(bytes)), shifts);
    } else {
      return _mm512_inserti64x4(_mm512_castsi256_si512(code_windows8<B>(p)), code_windows8<B>(p + B), 1);
    }
  }
  HNF_SIMD static F masked_to_float(I x, int mask) {
    return _mm512_cvtepi32_ps(_mm512_and_si512(x, _mm512_set1_epi32(mask)));
  }
  // table[i & 15] per lane.
  HNF_SIMD static F lookup(F table, I index) { return _mm512_permutexvar_ps(index, table); }
  HNF_SIMD static __m256 fold(F a) { return _mm256_add_ps(_mm512_castps512_ps256(a), _mm512_extractf32x8_ps(a, 1)); }
  HNF_SIMD static __m128 hsum4(F a, F b, F c, F e) { return hsum4_256(fold(a), fold(b), fold(c), fold(e)); }
  HNF_SIMD static F pin(F x) {
    asm("" : "+v"(x));
    return x;
  }
};
#endif
using Vec = V::F;
constexpr int kLanes = V::kLanes;

// kLanes B-bit codes (kLanes * B / 8 bytes at p) as floats.
template <int B>
HNF_SIMD inline Vec codes(const std::uint8_t* p) {
  if constexpr (B == 8) {
    return V::bytes(p);
  } else {
    return V::masked_to_float(V::windows<B>(p), (1 << B) - 1);
  }
}

// Scale and zero point of one integer group (its first 4 bytes: fp16 s, fp16 z), broadcast.
struct Affine {
  Vec s, z;
};
HNF_SIMD inline Affine group_affine(const std::uint8_t* header) {
  const __m128 sz = _mm_cvtph_ps(_mm_cvtsi32_si128(load_i32(header)));  // s, z, 0, 0
  return {V::broadcast(sz), V::broadcast(_mm_movehdup_ps(sz))};
}

// Row sources: row t, channels [c, c + kLanes) of a row-major page side, as fp32. kSpan
// channels share one params() (an integer group; kLanes for float formats, which have none).
struct NoParams {};

struct F16Rows {
  static constexpr std::size_t kSpan = kLanes;
  const std::uint16_t* base;  // [page_size, d]
  std::size_t d;
  HNF_SIMD NoParams params(std::size_t, std::size_t) const { return {}; }
  HNF_SIMD Vec load(std::size_t t, std::size_t c, NoParams) const { return V::half(base + t * d + c); }
};

struct BF16Rows {
  static constexpr std::size_t kSpan = kLanes;
  const std::uint16_t* base;  // [page_size, d]
  std::size_t d;
  HNF_SIMD NoParams params(std::size_t, std::size_t) const { return {}; }
  HNF_SIMD Vec load(std::size_t t, std::size_t c, NoParams) const { return V::bfloat(base + t * d + c); }
};

struct F32Rows {
  static constexpr std::size_t kSpan = kLanes;
  const float* base;  // [page_size, d]
  std::size_t d;
  HNF_SIMD NoParams params(std::size_t, std::size_t) const { return {}; }
  HNF_SIMD Vec load(std::size_t t, std::size_t c, NoParams) const { return V::load(base + t * d + c); }
};

// intB-dG rows. For B <= 3 a group's 2^B stored values z + s*i fit in one register: its
// params() is that table (z + s*i by one FMA, the same rounding as z + s*c; repeated to fill
// the kLanes entries), and a chunk is one permute lookup by the unmasked code windows (the
// permute reads only an index's low 3 or 4 bits, and entry i is the value of i's low B bits,
// so the bits of later codes above a code do not matter). Wider codes are converted and
// scaled: cvtdq2ps + FMA.
template <int B, int G>
struct IntRows {
  static constexpr std::size_t kSpan = G;
  static constexpr std::size_t kGroupBytes = integer_group_bytes(B, G);
  const std::uint8_t* base;  // TokenGroup<B, G> [page_size, d/G]
  std::size_t groups;        // d / G
  HNF_SIMD const std::uint8_t* group(std::size_t t, std::size_t c) const {
    return base + (t * groups + c / G) * kGroupBytes;
  }
  HNF_SIMD auto params(std::size_t t, std::size_t c) const {
    const Affine a = group_affine(group(t, c));
    if constexpr (B <= 3) {
      alignas(64) float code[kLanes];
      for (int k = 0; k < kLanes; ++k) code[k] = static_cast<float>(k & ((1 << B) - 1));
      return V::fmadd(V::load(code), a.s, a.z);
    } else {
      return a;
    }
  }
  template <class Params>
  HNF_SIMD Vec load(std::size_t t, std::size_t c, const Params& p) const {
    const std::uint8_t* chunk = group(t, c) + 4 + (c % G) / 8 * B;
    if constexpr (B <= 3) {
      return V::lookup(p, V::windows<B>(chunk));
    } else {
      return V::fmadd(codes<B>(chunk), p.s, p.z);
    }
  }
};

// Paced prefetch of the next page: the kernels' loops over the current page ask for a few of
// its cache lines per step, so the next page streams in while this one is computed. (Asking
// for a whole page at its start measured no faster than not asking: a burst of hundreds of
// requests mostly waits for, or is dropped by, the few miss buffers. Pages of a real cache
// need not be adjacent, so the hardware's stream prefetcher cannot be relied on to find them.)
// Spreading the requests evenly over the loop doubled the fp16 decode's bandwidth here.
class Ahead {
 public:
  Ahead() = default;
  Ahead(const std::uint8_t* bytes, std::size_t size) : next_(bytes), end_(bytes + size) {}
  // The loop about to run has `steps` steps: spread what is left over them.
  void pace(std::size_t steps) {
    const auto left = static_cast<std::size_t>(end_ - next_ + kLine - 1) / kLine;
    per_step_ = steps == 0 ? left : (left + steps - 1) / steps;
  }
  HNF_SIMD void step() {
    for (std::size_t i = 0; i < per_step_ && next_ < end_; ++i, next_ += kLine) {
      _mm_prefetch(reinterpret_cast<const char*>(next_), _MM_HINT_T0);
    }
  }

 private:
  static constexpr std::ptrdiff_t kLine = 64;
  const std::uint8_t* next_ = nullptr;
  const std::uint8_t* end_ = nullptr;
  std::size_t per_step_ = 0;
};

// Scores of R consecutive rows t..t+R-1 of a row-major key page: w[(t+r)*4 + g] =
// qs_g . k_{t+r} for g < NQ (lanes NQ..3 get 0). qs [NQ, d] (queries already multiplied by the
// softmax scale), w [rows, 4]. The R*NQ accumulators are independent FMA chains: enough of
// them (8 or more) keep both FMA units busy despite the FMA latency, and each query chunk is
// loaded once into a register and serves all R rows (kept there by pin(): left to itself, GCC
// folds the load into every FMA, and the loads, not the FMAs, become the bound).
template <int NQ, int R, class Rows>
HNF_SIMD inline __attribute__((always_inline)) void scores_row_group(const Rows& keys, std::size_t t, std::size_t d,
                                                                     const float* qs, float* w) {
  Vec a[R][kBlock];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 4
    for (int g = 0; g < kBlock; ++g) a[r][g] = V::zero();
  }
  for (std::size_t c0 = 0; c0 < d; c0 += Rows::kSpan) {
    decltype(keys.params(t, c0)) p[R];
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) p[r] = keys.params(t + r, c0);
#pragma GCC unroll 16
    for (std::size_t c = c0; c < c0 + Rows::kSpan; c += kLanes) {
      Vec k[R];
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) k[r] = keys.load(t + r, c, p[r]);
#pragma GCC unroll 4
      for (int g = 0; g < NQ; ++g) {
        const Vec q = V::pin(V::load(qs + g * d + c));
#pragma GCC unroll 8
        for (int r = 0; r < R; ++r) a[r][g] = V::fmadd(q, k[r], a[r][g]);
      }
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) _mm_storeu_ps(w + 4 * (t + r), V::hsum4(a[r][0], a[r][1], a[r][2], a[r][3]));
}

// Scores of a row-major key page: w [rows, 4] as scores_row_group, four rows at a time for one
// or two query heads, two rows for three or four (twice that with AVX-512's 32 registers).
template <int NQ, class Rows>
HNF_SIMD void scores_rows(const Rows& keys, int rows, std::size_t d, const float* qs, float* w, Ahead& ahead) {
  constexpr int kRows = (NQ <= 2 ? 4 : 2) * kLanes / 8;
  const auto n = static_cast<std::size_t>(rows);
  ahead.pace(n / kRows + n % kRows);
  std::size_t t = 0;
  for (; t + kRows <= n; t += kRows) {
    ahead.step();
    scores_row_group<NQ, kRows>(keys, t, d, qs, w);
  }
  for (; t < n; ++t) {
    ahead.step();
    scores_row_group<NQ, 1>(keys, t, d, qs, w);
  }
}

// Scores of an intB-tP key page (ChannelGroup<B, P> [d]: channel c's P codes): the factored
// form sum_c qs_gc z_c + sum_c (qs_gc s_c) code_ct, positions in the vector lanes.
// qs [NQ, d], w [rows, 4] as scores_rows.
template <int NQ, int B, int P>
HNF_SIMD void scores_tokens(const std::uint8_t* page, int rows, std::size_t d, const float* qs, float* w,
                            Ahead& ahead) {
  constexpr std::size_t kGroupBytes = integer_group_bytes(B, P);
  alignas(64) float qscale[kBlock * kMaxHeadDim];  // [NQ, d]: qs_gc * s_c
  __m256 qzero[kBlock] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
  // Scales and zero points of eight channels: gather their 4-byte headers (stride kGroupBytes),
  // split the 16-bit halves, convert.
  const __m256i offsets = _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
                                             _mm256_set1_epi32(static_cast<int>(kGroupBytes)));
  for (std::size_t c = 0; c < d; c += 8) {
    const __m256i headers =
        _mm256_i32gather_epi32(reinterpret_cast<const int*>(page + c * kGroupBytes), offsets, 1);
    const __m256i s16 = _mm256_and_si256(headers, _mm256_set1_epi32(0xffff));
    const __m256i z16 = _mm256_srli_epi32(headers, 16);
    // packus per 128-bit half: [s0..s3 z0..z3 | s4..s7 z4..z7] -> [s0..s7 | z0..z7]
    const __m256i sz = _mm256_permute4x64_epi64(_mm256_packus_epi32(s16, z16), 0xd8);
    const __m256 s = _mm256_cvtph_ps(_mm256_castsi256_si128(sz));
    const __m256 z = _mm256_cvtph_ps(_mm256_extracti128_si256(sz, 1));
#pragma GCC unroll 4
    for (int g = 0; g < NQ; ++g) {
      const __m256 qg = _mm256_loadu_ps(qs + g * d + c);
      _mm256_store_ps(qscale + g * d + c, _mm256_mul_ps(qg, s));
      qzero[g] = _mm256_fmadd_ps(qg, z, qzero[g]);
    }
  }
  const __m128 zero_part = hsum4_256(qzero[0], qzero[1], qzero[2], qzero[3]);
  float base[kBlock];
  _mm_storeu_ps(base, zero_part);
  // Blocks of kChunks*kLanes positions (at most P: a block never leaves the page's codes);
  // kSplits accumulator sets over interleaved channels, so that there are 8 independent FMA
  // chains whatever NQ is.
  constexpr int kChunks = std::min(P / kLanes, NQ <= 2 ? 4 : 2);
  static_assert(kChunks >= 1);
  constexpr int kSplits = NQ * kChunks >= 8 ? 1 : 8 / (NQ * kChunks);
  constexpr int kBlockRows = kLanes * kChunks;
  constexpr std::size_t kChunkBytes = static_cast<std::size_t>(kLanes) * B / 8;
  ahead.pace(static_cast<std::size_t>((rows + kBlockRows - 1) / kBlockRows));
  for (int t0 = 0; t0 < rows; t0 += kBlockRows) {
    ahead.step();
    Vec acc[kSplits][kBlock][kChunks];
#pragma GCC unroll 4
    for (int g = 0; g < NQ; ++g) {
#pragma GCC unroll 4
      for (int k = 0; k < kChunks; ++k) {
        acc[0][g][k] = V::set1(base[g]);
#pragma GCC unroll 4
        for (int r = 1; r < kSplits; ++r) acc[r][g][k] = V::zero();
      }
    }
    const std::uint8_t* chunk0 = page + 4 + static_cast<std::size_t>(t0) * B / 8;
    for (std::size_t c = 0; c < d; c += kSplits) {  // kSplits divides 8, and 8 divides d
#pragma GCC unroll 4
      for (int r = 0; r < kSplits; ++r) {
        const std::uint8_t* channel = chunk0 + (c + r) * kGroupBytes;
        Vec v[kChunks];
#pragma GCC unroll 4
        for (int k = 0; k < kChunks; ++k) v[k] = codes<B>(channel + k * kChunkBytes);
#pragma GCC unroll 4
        for (int g = 0; g < NQ; ++g) {
          const Vec qsc = V::set1(qscale[g * d + c + r]);
#pragma GCC unroll 4
          for (int k = 0; k < kChunks; ++k) acc[r][g][k] = V::fmadd(qsc, v[k], acc[r][g][k]);
        }
      }
    }
    alignas(64) float block[kBlock][kBlockRows] = {};
#pragma GCC unroll 4
    for (int g = 0; g < NQ; ++g) {
#pragma GCC unroll 4
      for (int k = 0; k < kChunks; ++k) {
        Vec sum = acc[0][g][k];
#pragma GCC unroll 4
        for (int r = 1; r < kSplits; ++r) sum = V::add(sum, acc[r][g][k]);
        V::store(block[g] + kLanes * k, sum);
      }
    }
    const int n = std::min(kBlockRows, rows - t0);
    for (int i = 0; i < n; ++i) {
#pragma GCC unroll 4
      for (int g = 0; g < kBlock; ++g) w[4 * (t0 + i) + g] = block[g][i];
    }
  }
}

// Online-softmax step for one page (see the top of the file). w [rows, 4] scores in, weights
// out (lanes are query heads); m, l [4] running max and sum. Returns the rescale factors of
// the accumulators. Needs w to have room for [rows rounded up to even, 4].
HNF_SIMD __m128 softmax_page(float* w, int rows, float* m, float* l) {
  if (rows % 2 != 0) _mm_storeu_ps(w + 4 * rows, _mm_set1_ps(-std::numeric_limits<float>::infinity()));
  const int pairs = (rows + 1) / 2;
  __m256 page_max = _mm256_set1_ps(-std::numeric_limits<float>::infinity());
  for (int i = 0; i < pairs; ++i) page_max = _mm256_max_ps(page_max, _mm256_loadu_ps(w + 8 * i));
  const __m128 m_old = _mm_loadu_ps(m);
  const __m128 m_new =
      _mm_max_ps(m_old, _mm_max_ps(_mm256_castps256_ps128(page_max), _mm256_extractf128_ps(page_max, 1)));
  const __m128 drop = _mm_sub_ps(m_old, m_new);  // -inf on the first page: alpha = 0
  const __m128 alpha = _mm256_castps256_ps128(exp_nonpositive(_mm256_set_m128(drop, drop)));
  const __m256 shift = _mm256_set_m128(m_new, m_new);
  __m256 sum = _mm256_setzero_ps();
  for (int i = 0; i < pairs; ++i) {
    const __m256 e = exp_nonpositive(_mm256_sub_ps(_mm256_loadu_ps(w + 8 * i), shift));
    _mm256_storeu_ps(w + 8 * i, e);
    sum = _mm256_add_ps(sum, e);
  }
  const __m128 page_sum = _mm_add_ps(_mm256_castps256_ps128(sum), _mm256_extractf128_ps(sum, 1));
  _mm_storeu_ps(l, _mm_fmadd_ps(_mm_loadu_ps(l), alpha, page_sum));
  _mm_storeu_ps(m, m_new);
  return alpha;
}

// a_g[0..CB) += w[t, g] * v_t[c0, c0 + kLanes*CB) for g < NQ: each value chunk is decoded
// once and serves every head. w [rows, 4].
template <int NQ, int CB, class Rows>
HNF_SIMD inline void accumulate_row(const Rows& values, std::size_t t, std::size_t c0, const float* w,
                                    Vec (&a)[kBlock][CB]) {
  const auto params = values.params(t, c0);
  Vec v[CB];
#pragma GCC unroll 4
  for (int k = 0; k < CB; ++k) v[k] = values.load(t, c0 + kLanes * k, params);
#pragma GCC unroll 4
  for (int g = 0; g < NQ; ++g) {
    const Vec wt = V::set1(w[4 * t + g]);
#pragma GCC unroll 4
    for (int k = 0; k < CB; ++k) a[g][k] = V::fmadd(wt, v[k], a[g][k]);
  }
}

// acc_g[c0, c0 + kLanes*CB) <- alpha_g acc_g + sum_t w[t, g] v_t, the accumulators in
// registers across the page's rows: RS sets of NQ*CB (RS > 1 splits the rows round-robin, so
// that few heads still have 8 independent FMA chains). acc [NQ, d], w [rows, 4], alpha [4].
template <int NQ, int CB, int RS, class Rows>
HNF_SIMD void accumulate_block(const Rows& values, int rows, std::size_t d, std::size_t c0, const float* w,
                               const float* alpha, float* acc, Ahead& ahead) {
  Vec a[RS][kBlock][CB];
#pragma GCC unroll 4
  for (int g = 0; g < NQ; ++g) {
    const Vec scale = V::set1(alpha[g]);
#pragma GCC unroll 4
    for (int k = 0; k < CB; ++k) {
      a[0][g][k] = V::mul(scale, V::load(acc + g * d + c0 + kLanes * k));
#pragma GCC unroll 4
      for (int r = 1; r < RS; ++r) a[r][g][k] = V::zero();
    }
  }
  const auto n = static_cast<std::size_t>(rows);
  std::size_t t = 0;
  for (; t + RS <= n; t += RS) {
    ahead.step();
#pragma GCC unroll 4
    for (int r = 0; r < RS; ++r) accumulate_row<NQ, CB>(values, t + r, c0, w, a[r]);
  }
  for (; t < n; ++t) accumulate_row<NQ, CB>(values, t, c0, w, a[0]);
#pragma GCC unroll 4
  for (int g = 0; g < NQ; ++g) {
#pragma GCC unroll 4
    for (int k = 0; k < CB; ++k) {
      Vec sum = a[0][g][k];
#pragma GCC unroll 4
      for (int r = 1; r < RS; ++r) sum = V::add(sum, a[r][g][k]);
      V::store(acc + g * d + c0 + kLanes * k, sum);
    }
  }
}

// Values of one page into acc [NQ, d]. Channel blocks of 32 (16 for three or four heads on
// AVX2, what its 16 registers hold); an integer group has at least 32 channels and d is a
// multiple of it, so a block never straddles two groups. Float formats may leave a tail of
// whole vectors. w [rows, 4], alpha [4].
template <int NQ, class Rows>
HNF_SIMD void accumulate_rows(const Rows& values, int rows, std::size_t d, const float* w, const float* alpha,
                              float* acc, Ahead& ahead) {
  constexpr int kCB = NQ <= 2 || kLanes == 16 ? 32 / kLanes : 16 / kLanes;
  constexpr int kRS = NQ * kCB >= 8 ? 1 : 8 / (NQ * kCB);
  constexpr std::size_t kChannels = static_cast<std::size_t>(kCB) * kLanes;
  // Steps of the whole page (the blocks' row loops, tails aside), paced once.
  ahead.pace((d + kChannels - 1) / kChannels * (static_cast<std::size_t>(rows) / kRS));
  std::size_t c0 = 0;
  for (; c0 + kChannels <= d; c0 += kChannels) {
    accumulate_block<NQ, kCB, kRS>(values, rows, d, c0, w, alpha, acc, ahead);
  }
  for (; c0 < d; c0 += kLanes) accumulate_block<NQ, 1, kRS>(values, rows, d, c0, w, alpha, acc, ahead);
}

template <int NQ, int B>
HNF_SIMD void int_scores(const PageFormat& f, const std::uint8_t* data, int rows, std::size_t d, const float* qs,
                         float* w, Ahead& ahead) {
  if (f.axis == kAxisHeadDim) {
    switch (f.group) {
      case 32: scores_rows<NQ>(IntRows<B, 32>{data, d / 32}, rows, d, qs, w, ahead); return;
      case 64: scores_rows<NQ>(IntRows<B, 64>{data, d / 64}, rows, d, qs, w, ahead); return;
      default: scores_rows<NQ>(IntRows<B, 128>{data, d / 128}, rows, d, qs, w, ahead); return;
    }
  }
  switch (f.group) {
    case 16: scores_tokens<NQ, B, 16>(data, rows, d, qs, w, ahead); return;
    case 32: scores_tokens<NQ, B, 32>(data, rows, d, qs, w, ahead); return;
    default: scores_tokens<NQ, B, 64>(data, rows, d, qs, w, ahead); return;
  }
}
// Formats were validated by check_call: the switches only pick the kernel.
template <int NQ>
HNF_SIMD void page_scores(const PageFormat& f, const std::uint8_t* data, int rows, std::size_t d, const float* qs,
                          float* w, Ahead& ahead) {
  const auto* half = reinterpret_cast<const std::uint16_t*>(data);
  switch (f.encoding) {
    case kPageF16: scores_rows<NQ>(F16Rows{half, d}, rows, d, qs, w, ahead); return;
    case kPageBF16: scores_rows<NQ>(BF16Rows{half, d}, rows, d, qs, w, ahead); return;
    case kPageStagedF32: scores_rows<NQ>(F32Rows{reinterpret_cast<const float*>(data), d}, rows, d, qs, w, ahead); return;
    case kPageInt8: int_scores<NQ, 8>(f, data, rows, d, qs, w, ahead); return;
    case kPageInt4: int_scores<NQ, 4>(f, data, rows, d, qs, w, ahead); return;
    case kPageInt3: int_scores<NQ, 3>(f, data, rows, d, qs, w, ahead); return;
    default: int_scores<NQ, 2>(f, data, rows, d, qs, w, ahead); return;
  }
}

template <int NQ, int B>
HNF_SIMD void int_values(const PageFormat& f, const std::uint8_t* data, int rows, std::size_t d, const float* w,
                         const float* alpha, float* acc, Ahead& ahead) {
  switch (f.group) {
    case 32: accumulate_rows<NQ>(IntRows<B, 32>{data, d / 32}, rows, d, w, alpha, acc, ahead); return;
    case 64: accumulate_rows<NQ>(IntRows<B, 64>{data, d / 64}, rows, d, w, alpha, acc, ahead); return;
    default: accumulate_rows<NQ>(IntRows<B, 128>{data, d / 128}, rows, d, w, alpha, acc, ahead); return;
  }
}

template <int NQ>
HNF_SIMD void page_values(const PageFormat& f, const std::uint8_t* data, int rows, std::size_t d, const float* w,
                          const float* alpha, float* acc, Ahead& ahead) {
  const auto* half = reinterpret_cast<const std::uint16_t*>(data);
  switch (f.encoding) {
    case kPageF16: accumulate_rows<NQ>(F16Rows{half, d}, rows, d, w, alpha, acc, ahead); return;
    case kPageBF16: accumulate_rows<NQ>(BF16Rows{half, d}, rows, d, w, alpha, acc, ahead); return;
    case kPageStagedF32:
      accumulate_rows<NQ>(F32Rows{reinterpret_cast<const float*>(data), d}, rows, d, w, alpha, acc, ahead);
      return;
    case kPageInt8: int_values<NQ, 8>(f, data, rows, d, w, alpha, acc, ahead); return;
    case kPageInt4: int_values<NQ, 4>(f, data, rows, d, w, alpha, acc, ahead); return;
    case kPageInt3: int_values<NQ, 3>(f, data, rows, d, w, alpha, acc, ahead); return;
    default: int_values<NQ, 2>(f, data, rows, d, w, alpha, acc, ahead); return;
  }
}

// One page for one block of NQ query heads. qs [NQ, d] scaled queries, acc [NQ, d], m, l [4],
// w [kMaxPageSize + 1, 4] scratch. next_keys and next_values prefetch the next page's two sides.
template <int NQ>
HNF_SIMD void page_step(const PageRef& page, int rows, std::size_t d, const float* qs, float* acc, float* m, float* l,
                        float* w, Ahead& next_keys, Ahead& next_values) {
  page_scores<NQ>(page.key_format, page.keys, rows, d, qs, w, next_keys);
  alignas(16) float alpha[kBlock];
  _mm_store_ps(alpha, softmax_page(w, rows, m, l));
  page_values<NQ>(page.value_format, page.values, rows, d, w, alpha, acc, next_values);
}

// decode_pages_portable's contract; d % kLanes == 0.
HNF_SIMD void decode_pages(const StreamView& stream, std::int64_t positions, std::int64_t page_begin,
                                std::int64_t page_end, const float* qs, int group, const Partial& part) {
  const auto d = static_cast<std::size_t>(stream.head_dim);
  const auto heads = static_cast<std::size_t>(group);
  const std::size_t padded = padded_heads(group);
  std::fill(part.m, part.m + padded, -std::numeric_limits<float>::infinity());
  std::fill(part.l, part.l + padded, 0.0f);
  std::fill(part.acc, part.acc + heads * d, 0.0f);
  alignas(32) float w[(kMaxPageSize + 1) * 4];  // [rows rounded up to even, 4]

  for (std::int64_t p = page_begin; p < page_end; ++p) {
    const PageRef& page = stream.pages[p];
    const int rows = rows_used(stream, p, positions);
    // The next page's keys stream in during this page's scores, its values during the values.
    Ahead next_keys, next_values;
    if (p + 1 < page_end) {
      const PageRef& next = stream.pages[p + 1];
      next_keys = Ahead(next.keys, page_bytes(next.key_format, stream.page_size, stream.head_dim));
      next_values = Ahead(next.values, page_bytes(next.value_format, stream.page_size, stream.head_dim));
    }
    for (std::size_t first = 0; first < heads; first += kBlock) {
      const float* qb = qs + first * d;
      float* acc = part.acc + first * d;
      float* mb = part.m + first;
      float* lb = part.l + first;
      switch (std::min<std::size_t>(kBlock, heads - first)) {
        case 1: page_step<1>(page, rows, d, qb, acc, mb, lb, w, next_keys, next_values); break;
        case 2: page_step<2>(page, rows, d, qb, acc, mb, lb, w, next_keys, next_values); break;
        case 3: page_step<3>(page, rows, d, qb, acc, mb, lb, w, next_keys, next_values); break;
        default: page_step<4>(page, rows, d, qb, acc, mb, lb, w, next_keys, next_values); break;
      }
    }
  }
}

}  // namespace avx2 / avx512
#undef HNF_SIMD
#endif  // HNF_DECODE_CPU_KERNELS
