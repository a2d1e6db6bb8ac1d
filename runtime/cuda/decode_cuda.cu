// CUDA decode attention (cuda_decode.h): split-K ("flash-decoding") over the mixed-precision
// pages of kv_pages.h, read straight from a device copy of the pages, fp32 arithmetic with an
// online softmax. Parity target: decode_attention_reference (the stored values are the same
// bits; only the arithmetic is fp32 instead of double).
//
// Kernel 1, decode_chunks<D> (D = head_dim: 64, 128, 256). Grid (chunks, kv_heads,
// ceil(group / 8)); 128 threads (4 warps). Block (c, h, b) reads the positions of chunk c
// (tiles_per_chunk tiles of 32 positions) of stream h once, for up to eight query heads of
// kv head h (batch b), and writes one partial result per query head: m (the largest score),
// l = sum_t exp(s_t - m) and acc = sum_t exp(s_t - m) v_t (unnormalised, [D]).
// Per tile of 32 positions:
//   A. decode: the tile's keys and values are decoded into shared memory as fp32, K[32][D+4]
//      and V[32][D+4]. The work is split in tasks of 16 values: 16 channels of one row
//      (fp16, bf16, f32 staging, intB-dG) or 16 positions of one channel (intB-tP keys); there
//      are 2*D tasks per side and tile, D/64 per thread. A thread issues the global loads of
//      one key task and one value task (16-byte vectors for floats, 32-bit words for
//      int8/int4/int2 codes, 16-bit halves for int3 whose 6-byte chunks are only 2-byte
//      aligned), then decodes both: codes are shifted out of a 32- or 64-bit word (LSB first, block_format.h),
//      converted with the 2^23 trick and dequantized as fmaf(s, c, z) (one rounding of the
//      exact z + s*c). Rows past `positions` are zeros (a zero value row times p = 0 is 0).
//      With page_size 16 a tile spans two pages (two segments of 16 rows, each with its own
//      formats); with page_size 64 a tile is half a page.
//   B. scores: warp w sums channels [w*D/4, (w+1)*D/4) of q_g . k_t for row t = lane, all g,
//      from float4 reads of K (row stride D+4: conflict-free) and broadcast reads of q; the four
//      partial sums go to shared memory.
//   C. online softmax: warp w owns query heads w and w+4 (m, l in registers, replicated across
//      the lanes); s = scale * sum of the partials, -inf past `positions`; m' = max(m, max_t s),
//      p_t = exp(s_t - m'), corr = exp(m - m'), l' = corr*l + sum_t p_t.
//   D. values: thread owns channels (tid % min(D,128)) + 128j and query heads
//      tid / min(D,128) + stride*k: acc = corr*acc + sum_t p_t v_t from V in shared memory.
// Four __syncthreads per tile separate the phases.
//
// Kernel 2, combine_chunks: one block per query head, one thread per channel:
// out = sum_i e^(m_i - M) acc_i / sum_i e^(m_i - M) l_i over the chunks, M = max_i m_i.
//
// Chunking: by default one wave of blocks (occupancy * SMs) shares the tiles evenly, so every
// block does the same number of tiles and none waits for a second wave.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "hnf/proofs/error.h"
#include "hnf/runtime/cuda_decode.h"
#include "hnf/runtime/cuda_device.h"

namespace hnf::runtime {
namespace {

constexpr int kThreads = 128;          // threads per block of decode_chunks
constexpr int kWarps = kThreads / 32;  // channel slices of phase B
constexpr int kTile = 32;              // positions per tile (one score per lane)
constexpr int kMaxQ = 8;               // query heads per block (two per warp in phase C)
constexpr int kValues = 16;            // values one decode task produces
static_assert(kMaxQ == 2 * kWarps, "phase C: each warp owns two query heads");

void check_cuda(cudaError_t err, const char* what) {
  if (err != cudaSuccess) {
    throw proofs::Error(proofs::ErrorKind::kInternal,
                        std::string("cuda: ") + what + " failed: " + cudaGetErrorString(err));
  }
}
#define HNF_CUDA_CHECK(call) check_cuda((call), #call)

[[noreturn]] void bad_input(const std::string& message) {
  throw proofs::Error(proofs::ErrorKind::kBadInput, "cuda decode: " + message);
}

struct KernelParams {
  const PageRef* pages;         // every stream's pages, stream after stream (device pointers)
  const long long* first_page;  // [kv_heads] index of each stream's first page in `pages`
  const float* q;               // [heads, D]
  float* acc_part;              // [heads, chunks, D]
  float* ml_part;               // [heads, chunks, 2]: m, l
  long long positions;          // 1 <= positions <= every stream's positions
  int page_shift;               // log2(page_size)
  int group;                    // query heads per kv head
  int tiles;                    // ceil(positions / kTile)
  int tiles_per_chunk;
  int chunks;                   // ceil(tiles / tiles_per_chunk) = gridDim.x
  float scale;
};

// Shared memory of decode_chunks<D>, in floats. Every offset is a multiple of 4 (float4).
template <int D>
struct Smem {
  static constexpr int kLd = D + 4;  // row stride of K and V: 4 banks apart per row
  static constexpr int kK = 0;                            // K [kTile][kLd]
  static constexpr int kV = kK + kTile * kLd;             // V [kTile][kLd]
  static constexpr int kQ = kV + kTile * kLd;             // q [kMaxQ][D]
  static constexpr int kRed = kQ + kMaxQ * D;             // partial scores [kWarps][kMaxQ][kTile]
  static constexpr int kProb = kRed + kWarps * kMaxQ * kTile;  // p [kMaxQ][kTile]
  static constexpr int kCorr = kProb + kMaxQ * kTile;    // corr [kMaxQ]
  static constexpr int kFloats = kCorr + kMaxQ;
  static constexpr std::size_t kBytes = sizeof(float) * kFloats;
  static_assert(kLd % 4 == 0 && kV % 4 == 0 && kQ % 4 == 0 && kRed % 4 == 0 && kProb % 4 == 0, "float4 alignment");
};

// ---- Phase A: decode tasks ------------------------------------------------------------------

// 16 values to decode: 16 channels of one row (column == false: tile[dst + i]) or 16 positions
// of one channel (column == true: tile[dst + i * (D+4)]).
struct Task {
  const std::uint8_t* base;  // floats: the first element; integers: the group (fp16 scale, fp16 zero)
  int code_offset;           // integers: bytes from base to the first code
  int dst;                   // index of the first value in the shared tile (K or V)
  int kind;                  // PageEncoding of the bytes; -1: zeros (rows past `positions`)
  bool column;
};

// The raw bytes of one task, as loaded: W words (16 for keys: f32 staging; 8 for values).
template <int W>
struct Raw {
  std::uint32_t w[W];
  std::uint32_t meta;  // scale | zero << 16
};

// Task `tau` (0 <= tau < 2*D) of one side (keys or values) of the tile at position t0.
template <int D>
__device__ __forceinline__ Task make_task(const PageRef* pages, bool keys, long long t0, long long positions,
                                          int page_shift, int tau) {
  constexpr int kLd = Smem<D>::kLd;
  const int page_size = 1 << page_shift;
  const int seg_rows = page_size < kTile ? page_size : kTile;  // rows of one page in the tile
  const int tasks_per_seg = seg_rows * (D / kValues);
  const int seg = tau / tasks_per_seg;
  const int u = tau - seg * tasks_per_seg;
  const int row0 = seg * seg_rows;      // tile row of the segment's first position
  const long long pos0 = t0 + row0;     // its position in the stream
  Task t{nullptr, 0, 0, -1, false};
  PageFormat f{};
  const std::uint8_t* data = nullptr;
  int prow0 = 0;                        // page row of the segment's first position
  const bool live = pos0 < positions;
  if (live) {
    const PageRef& page = pages[pos0 >> page_shift];
    f = keys ? page.key_format : page.value_format;
    data = keys ? page.keys : page.values;
    prow0 = static_cast<int>(pos0 & (page_size - 1));
    if (f.axis == kAxisTokens) {
      // One ChannelGroup per channel c over the page's page_size positions; this task decodes
      // codes prow0 + 16j .. +15 of channel c (the page is full: a partial one is staged).
      const int c = u % D;
      const int j = u / D;
      const int group_bytes = 4 + f.bits * page_size / 8;
      t.base = data + static_cast<std::size_t>(c) * group_bytes;
      t.code_offset = 4 + (prow0 + kValues * j) * f.bits / 8;
      t.dst = (row0 + kValues * j) * kLd + c;
      t.column = true;
      t.kind = f.encoding;
      return t;
    }
  }
  // Row-major layouts: row r of the segment, channels 16k .. 16k+15. Eight consecutive threads
  // take eight consecutive rows at the same k (their float4 stores, which run by quarter warp,
  // hit distinct banks: rows are 4 banks apart); a warp covers 4 consecutive k of 8 rows, so its
  // loads read 4 adjacent chunks of each row.
  const int chunks_per_row = D / kValues;
  const int rest = u >> 3;
  const int k = rest % chunks_per_row;
  const int r = (rest / chunks_per_row) * 8 + (u & 7);
  t.dst = (row0 + r) * kLd + kValues * k;
  if (!live || pos0 + r >= positions) return t;  // zeros
  const std::size_t prow = static_cast<std::size_t>(prow0 + r);
  const int c0 = kValues * k;
  t.kind = f.encoding;
  if (f.encoding == kPageStagedF32) {
    t.base = data + (prow * D + c0) * 4;
  } else if (f.axis == kAxisNone) {
    t.base = data + (prow * D + c0) * 2;
  } else {  // intB-dG: TokenGroup c0 / G of row prow, codes from index c0 % G
    const int g = f.group;
    const int group_bytes = 4 + f.bits * g / 8;
    t.base = data + (prow * (D / g) + c0 / g) * group_bytes;
    t.code_offset = 4 + (c0 % g) * f.bits / 8;
  }
  return t;
}

// Issues the loads of one task (nothing for zeros). Alignment (page bases are 16-byte aligned
// in the arena): float rows at 32*k or 64*k bytes (16-aligned); integer groups start at a
// multiple of 4 bytes except intB-t16 with B = 3 (10-byte groups); a task's codes start 2B
// bytes * (index / 16) after the 4-byte header: 4-aligned for B = 2, 4, 8 (all layouts but
// int3), 2-aligned for B = 3. So: words for int8/4/2, halves for int3 and for the header.
template <int W>
__device__ __forceinline__ void load_raw(Raw<W>& raw, const Task& t) {
  const std::uint8_t* codes = t.base + t.code_offset;
  switch (t.kind) {
    case kPageF16:
    case kPageBF16: {
      const uint4* p = reinterpret_cast<const uint4*>(codes);
      const uint4 a = __ldg(p);
      const uint4 b = __ldg(p + 1);
      raw.w[0] = a.x; raw.w[1] = a.y; raw.w[2] = a.z; raw.w[3] = a.w;
      raw.w[4] = b.x; raw.w[5] = b.y; raw.w[6] = b.z; raw.w[7] = b.w;
      break;
    }
    case kPageStagedF32:
      if constexpr (W >= 16) {
        const uint4* p = reinterpret_cast<const uint4*>(codes);
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          const uint4 a = __ldg(p + i);
          raw.w[4 * i] = a.x; raw.w[4 * i + 1] = a.y; raw.w[4 * i + 2] = a.z; raw.w[4 * i + 3] = a.w;
        }
      }
      break;
    case kPageInt8: {
      const unsigned int* p = reinterpret_cast<const unsigned int*>(codes);
#pragma unroll
      for (int i = 0; i < 4; ++i) raw.w[i] = __ldg(p + i);
      break;
    }
    case kPageInt4: {
      const unsigned int* p = reinterpret_cast<const unsigned int*>(codes);
      raw.w[0] = __ldg(p);
      raw.w[1] = __ldg(p + 1);
      break;
    }
    case kPageInt3: {
      const unsigned short* p = reinterpret_cast<const unsigned short*>(codes);
      raw.w[0] = static_cast<std::uint32_t>(__ldg(p)) | (static_cast<std::uint32_t>(__ldg(p + 1)) << 16);
      raw.w[1] = __ldg(p + 2);
      break;
    }
    case kPageInt2:
      raw.w[0] = __ldg(reinterpret_cast<const unsigned int*>(codes));
      break;
    default:
      break;
  }
  if (t.kind >= kPageInt8 && t.kind <= kPageInt2) {
    const unsigned short* m = reinterpret_cast<const unsigned short*>(t.base);
    raw.meta = static_cast<std::uint32_t>(__ldg(m)) | (static_cast<std::uint32_t>(__ldg(m + 1)) << 16);
  }
}

__device__ __forceinline__ float half_bits(std::uint32_t bits) {
  return __half2float(__ushort_as_half(static_cast<unsigned short>(bits & 0xffffu)));
}

// An integer code (< 2^23) as a float, exactly: the bits of 2^23 + c, minus 2^23.
__device__ __forceinline__ float code_float(std::uint32_t c) {
  return __uint_as_float(0x4B000000u | c) - 8388608.0f;
}

// 16 codes of B bits, LSB first from bit 0 of w[0] (w[1] continues at bit 32), as z + s*c.
template <int B, int W>
__device__ __forceinline__ void dequantize16(const Raw<W>& raw, float (&v)[kValues]) {
  const float s = half_bits(raw.meta);
  const float z = half_bits(raw.meta >> 16);
  constexpr std::uint32_t kMask = (1u << B) - 1u;
  if constexpr (B == 8) {
#pragma unroll
    for (int i = 0; i < kValues; ++i) v[i] = fmaf(s, code_float((raw.w[i >> 2] >> (8 * (i & 3))) & kMask), z);
  } else {
    // 16*B <= 64 bits: one 64-bit window (w[1] only when the codes reach past bit 31).
    unsigned long long bits = raw.w[0];
    if constexpr (B * kValues > 32) bits |= static_cast<unsigned long long>(raw.w[1]) << 32;
#pragma unroll
    for (int i = 0; i < kValues; ++i) {
      v[i] = fmaf(s, code_float(static_cast<std::uint32_t>(bits >> (B * i)) & kMask), z);
    }
  }
}

template <int D, int W>
__device__ __forceinline__ void store_task(const Task& t, const Raw<W>& raw, float* tile) {
  float v[kValues];
  switch (t.kind) {
    case kPageF16:
#pragma unroll
      for (int i = 0; i < 8; ++i) {
        v[2 * i] = half_bits(raw.w[i]);
        v[2 * i + 1] = half_bits(raw.w[i] >> 16);
      }
      break;
    case kPageBF16:
#pragma unroll
      for (int i = 0; i < 8; ++i) {
        v[2 * i] = __uint_as_float(raw.w[i] << 16);
        v[2 * i + 1] = __uint_as_float(raw.w[i] & 0xffff0000u);
      }
      break;
    case kPageStagedF32:
      if constexpr (W >= 16) {
#pragma unroll
        for (int i = 0; i < kValues; ++i) v[i] = __uint_as_float(raw.w[i]);
      } else {
#pragma unroll
        for (int i = 0; i < kValues; ++i) v[i] = 0.0f;  // not reached: the host refuses staged values
      }
      break;
    case kPageInt8: dequantize16<8>(raw, v); break;
    case kPageInt4: dequantize16<4>(raw, v); break;
    case kPageInt3: dequantize16<3>(raw, v); break;
    case kPageInt2: dequantize16<2>(raw, v); break;
    default:
#pragma unroll
      for (int i = 0; i < kValues; ++i) v[i] = 0.0f;
      break;
  }
  if (t.column) {
#pragma unroll
    for (int i = 0; i < kValues; ++i) tile[t.dst + i * Smem<D>::kLd] = v[i];
  } else {
    float4* d = reinterpret_cast<float4*>(tile + t.dst);
#pragma unroll
    for (int m = 0; m < kValues / 4; ++m) d[m] = make_float4(v[4 * m], v[4 * m + 1], v[4 * m + 2], v[4 * m + 3]);
  }
}

// Phase A: the keys and values of the tile at position t0 into ks and vs. One key task and one
// value task at a time per thread (their loads in flight together): more tasks per round cost
// registers (occupancy) and buy no more bytes in flight per SM.
template <int D>
__device__ __forceinline__ void decode_tile(const PageRef* pages, long long t0, long long positions, int page_shift,
                                            float* ks, float* vs) {
  constexpr int kTasks = D / 64;  // per thread and side: 2*D tasks / 128 threads
  static_assert(kTasks * kThreads * kValues == kTile * D, "the tasks cover the tile exactly");
#pragma unroll
  for (int i = 0; i < kTasks; ++i) {
    const int tau = static_cast<int>(threadIdx.x) + kThreads * i;
    const Task kt = make_task<D>(pages, true, t0, positions, page_shift, tau);
    const Task vt = make_task<D>(pages, false, t0, positions, page_shift, tau);
    Raw<16> kr;
    Raw<8> vr;
    load_raw(kr, kt);
    load_raw(vr, vt);
    store_task<D>(kt, kr, ks);
    store_task<D>(vt, vr, vs);
  }
}

__device__ __forceinline__ float warp_max(float x) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, o));
  return x;
}

__device__ __forceinline__ float warp_sum(float x) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
  return x;
}

template <int D>
__global__ void __launch_bounds__(kThreads) decode_chunks(const KernelParams p) {
  using S = Smem<D>;
  extern __shared__ float4 smem4[];
  float* smem = reinterpret_cast<float*>(smem4);
  float* ks = smem + S::kK;
  float* vs = smem + S::kV;
  float* qs = smem + S::kQ;
  float* red = smem + S::kRed;
  float* prob = smem + S::kProb;
  float* corr = smem + S::kCorr;

  const int tid = static_cast<int>(threadIdx.x);
  const int lane = tid & 31;
  const int warp = tid >> 5;
  const int chunk = static_cast<int>(blockIdx.x);
  const int kvh = static_cast<int>(blockIdx.y);
  const int qb = static_cast<int>(blockIdx.z);
  const int gb = min(kMaxQ, p.group - qb * kMaxQ);  // query heads of this block, 1..8
  const int qh0 = kvh * p.group + qb * kMaxQ;       // the first one
  const PageRef* pages = p.pages + p.first_page[kvh];

  for (int e = tid; e < kMaxQ * D; e += kThreads) {
    const int g = e / D;
    qs[e] = g < gb ? p.q[static_cast<std::size_t>(qh0 + g) * D + (e % D)] : 0.0f;
  }

  // Phase D ownership: channels cbase + kCh*j (j < kCpt), query heads gfirst + kGs*k (k < kNg).
  constexpr int kCh = D < kThreads ? D : kThreads;
  constexpr int kCpt = D / kCh;
  constexpr int kGs = kThreads / kCh;
  constexpr int kNg = kMaxQ / kGs;
  const int cbase = tid % kCh;
  const int gfirst = tid / kCh;
  float acc[kCpt][kNg];
#pragma unroll
  for (int j = 0; j < kCpt; ++j) {
#pragma unroll
    for (int k = 0; k < kNg; ++k) acc[j][k] = 0.0f;
  }
  // Phase C state of query heads warp and warp + kWarps (the same in every lane).
  float m_run[2] = {-INFINITY, -INFINITY};
  float l_run[2] = {0.0f, 0.0f};

  const int tile_begin = chunk * p.tiles_per_chunk;
  const int tile_end = min(tile_begin + p.tiles_per_chunk, p.tiles);
  for (int tile = tile_begin; tile < tile_end; ++tile) {
    const long long t0 = static_cast<long long>(tile) * kTile;

    // A. Decode the tile (every row of the tile: zeros past `positions`).
    decode_tile<D>(pages, t0, p.positions, p.page_shift, ks, vs);
    __syncthreads();

    // B. Partial scores of row `lane` over this warp's channel slice.
    {
      constexpr int kSlice = D / kWarps;
      const float* krow = ks + lane * S::kLd + warp * kSlice;
      const float* qcol = qs + warp * kSlice;
      float part[kMaxQ];
#pragma unroll
      for (int g = 0; g < kMaxQ; ++g) part[g] = 0.0f;
#pragma unroll 2
      for (int c = 0; c < kSlice; c += 4) {
        const float4 k4 = *reinterpret_cast<const float4*>(krow + c);
#pragma unroll
        for (int g = 0; g < kMaxQ; ++g) {
          if (g < gb) {
            const float4 q4 = *reinterpret_cast<const float4*>(qcol + g * D + c);
            part[g] = fmaf(q4.x, k4.x, part[g]);
            part[g] = fmaf(q4.y, k4.y, part[g]);
            part[g] = fmaf(q4.z, k4.z, part[g]);
            part[g] = fmaf(q4.w, k4.w, part[g]);
          }
        }
      }
#pragma unroll
      for (int g = 0; g < kMaxQ; ++g) {
        if (g < gb) red[(warp * kMaxQ + g) * kTile + lane] = part[g];
      }
    }
    __syncthreads();

    // C. Online softmax of query heads warp and warp + kWarps; lane = row of the tile.
    {
      const bool valid = t0 + lane < p.positions;  // row 0 always is: tile < tiles
#pragma unroll
      for (int gi = 0; gi < 2; ++gi) {
        const int g = warp + kWarps * gi;
        if (g < gb) {  // warp-uniform
          float s = 0.0f;
#pragma unroll
          for (int w = 0; w < kWarps; ++w) s += red[(w * kMaxQ + g) * kTile + lane];
          s = valid ? s * p.scale : -INFINITY;
          const float m_new = fmaxf(m_run[gi], warp_max(s));  // finite: row 0 is valid
          const float pr = valid ? expf(s - m_new) : 0.0f;
          const float cr = expf(m_run[gi] - m_new);  // 0 on the first tile (m = -inf)
          l_run[gi] = fmaf(l_run[gi], cr, warp_sum(pr));
          m_run[gi] = m_new;
          prob[g * kTile + lane] = pr;
          if (lane == 0) corr[g] = cr;
        }
      }
    }
    __syncthreads();

    // D. acc = corr * acc + sum_t p_t v_t.
#pragma unroll
    for (int k = 0; k < kNg; ++k) {
      const int g = gfirst + kGs * k;
      if (g < gb) {
        const float cr = corr[g];
#pragma unroll
        for (int j = 0; j < kCpt; ++j) acc[j][k] *= cr;
      }
    }
#pragma unroll 2
    for (int t = 0; t < kTile; t += 4) {
      float v[kCpt][4];
#pragma unroll
      for (int j = 0; j < kCpt; ++j) {
#pragma unroll
        for (int i = 0; i < 4; ++i) v[j][i] = vs[(t + i) * S::kLd + cbase + kCh * j];
      }
#pragma unroll
      for (int k = 0; k < kNg; ++k) {
        const int g = gfirst + kGs * k;
        if (g < gb) {
          const float4 p4 = *reinterpret_cast<const float4*>(prob + g * kTile + t);
#pragma unroll
          for (int j = 0; j < kCpt; ++j) {
            acc[j][k] = fmaf(p4.x, v[j][0], acc[j][k]);
            acc[j][k] = fmaf(p4.y, v[j][1], acc[j][k]);
            acc[j][k] = fmaf(p4.z, v[j][2], acc[j][k]);
            acc[j][k] = fmaf(p4.w, v[j][3], acc[j][k]);
          }
        }
      }
    }
    __syncthreads();  // the next tile overwrites K, V, the scores and p
  }

  // The chunk's partial results.
#pragma unroll
  for (int k = 0; k < kNg; ++k) {
    const int g = gfirst + kGs * k;
    if (g < gb) {
      float* out = p.acc_part + (static_cast<std::size_t>(qh0 + g) * p.chunks + chunk) * D;
#pragma unroll
      for (int j = 0; j < kCpt; ++j) out[cbase + kCh * j] = acc[j][k];
    }
  }
#pragma unroll
  for (int gi = 0; gi < 2; ++gi) {
    const int g = warp + kWarps * gi;
    if (g < gb && lane == 0) {
      float* ml = p.ml_part + (static_cast<std::size_t>(qh0 + g) * p.chunks + chunk) * 2;
      ml[0] = m_run[gi];
      ml[1] = l_run[gi];
    }
  }
}

// One block per query head, one thread per channel (blockDim.x == head_dim).
__global__ void combine_chunks(const float* acc_part, const float* ml_part, int chunks, int head_dim, float* out) {
  const int qh = static_cast<int>(blockIdx.x);
  const int c = static_cast<int>(threadIdx.x);
  const float* ml = ml_part + static_cast<std::size_t>(qh) * chunks * 2;
  float m = -INFINITY;
  for (int i = 0; i < chunks; ++i) m = fmaxf(m, ml[2 * i]);
  float l = 0.0f;
  float a = 0.0f;
  for (int i = 0; i < chunks; ++i) {
    const float w = expf(ml[2 * i] - m);
    l = fmaf(w, ml[2 * i + 1], l);
    a = fmaf(w, acc_part[(static_cast<std::size_t>(qh) * chunks + i) * head_dim + c], a);
  }
  out[static_cast<std::size_t>(qh) * head_dim + c] = a / l;
}

// ---- Host side ------------------------------------------------------------------------------

bool valid_integer_group(const PageFormat& f, int page_size, int head_dim, bool keys) {
  if (f.axis == kAxisHeadDim) return (f.group == 32 || f.group == 64 || f.group == 128) && head_dim % f.group == 0;
  if (f.axis == kAxisTokens) return keys && f.group == page_size;
  return false;
}

// A format the kernels take for this side (values: no staging, no per-channel groups).
bool valid_format(const PageFormat& f, int page_size, int head_dim, bool keys) {
  switch (f.encoding) {
    case kPageF16:
    case kPageBF16: return f.axis == kAxisNone && f.bits == 16;
    case kPageStagedF32: return keys && f.bits == 32;
    case kPageInt8: return f.bits == 8 && valid_integer_group(f, page_size, head_dim, keys);
    case kPageInt4: return f.bits == 4 && valid_integer_group(f, page_size, head_dim, keys);
    case kPageInt3: return f.bits == 3 && valid_integer_group(f, page_size, head_dim, keys);
    case kPageInt2: return f.bits == 2 && valid_integer_group(f, page_size, head_dim, keys);
    default: return false;
  }
}

std::string describe(const PageFormat& f) {
  return "(encoding " + std::to_string(f.encoding) + ", axis " + std::to_string(f.axis) + ", bits " +
         std::to_string(f.bits) + ", group " + std::to_string(f.group) + ")";
}

std::size_t align16(std::size_t n) { return (n + 15) / 16 * 16; }

template <typename T>
void grow(T*& ptr, std::size_t& capacity, std::size_t count) {
  if (count <= capacity) return;
  if (ptr != nullptr) HNF_CUDA_CHECK(cudaFree(ptr));
  ptr = nullptr;
  capacity = 0;
  HNF_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&ptr), count * sizeof(T)));
  capacity = count;
}

}  // namespace

bool cuda_decode_compiled() noexcept { return true; }

struct CudaLayerStreams::Impl {
  int kv_heads = 0;
  int page_size = 0;
  int page_shift = 0;
  int head_dim = 0;
  std::int64_t positions = 0;  // the smallest stream's
  std::size_t page_bytes = 0;
  int slots = 1;               // blocks of decode_chunks<head_dim> the device runs at once
  int tiles_per_chunk = 0;     // 0: from `slots`
  double last_ms = 0.0;

  std::uint8_t* arena = nullptr;
  PageRef* pages = nullptr;
  long long* first_page = nullptr;
  float* q = nullptr;
  float* out = nullptr;
  float* acc = nullptr;
  float* ml = nullptr;
  std::size_t q_capacity = 0, out_capacity = 0, acc_capacity = 0, ml_capacity = 0;
  cudaStream_t stream = nullptr;
  cudaEvent_t start = nullptr, stop = nullptr;

  Impl() = default;
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;
  ~Impl() {  // never throws; errors at release are ignored
    for (void* ptr : {static_cast<void*>(arena), static_cast<void*>(pages), static_cast<void*>(first_page),
                      static_cast<void*>(q), static_cast<void*>(out), static_cast<void*>(acc), static_cast<void*>(ml)}) {
      if (ptr != nullptr) cudaFree(ptr);
    }
    if (start != nullptr) cudaEventDestroy(start);
    if (stop != nullptr) cudaEventDestroy(stop);
    if (stream != nullptr) cudaStreamDestroy(stream);
  }

  void init(const StreamView* streams, int heads);
  template <int D>
  void prepare_kernel();
  template <int D>
  void launch(const KernelParams& params, int kv, int batches);
};

template <int D>
void CudaLayerStreams::Impl::prepare_kernel() {
  const int bytes = static_cast<int>(Smem<D>::kBytes);
  HNF_CUDA_CHECK(cudaFuncSetAttribute(decode_chunks<D>, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes));
  int per_sm = 0;
  HNF_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, decode_chunks<D>, kThreads, Smem<D>::kBytes));
  int sms = 0;
  HNF_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
  slots = std::max(1, per_sm * sms);
}

template <int D>
void CudaLayerStreams::Impl::launch(const KernelParams& params, int kv, int batches) {
  decode_chunks<D><<<dim3(static_cast<unsigned>(params.chunks), static_cast<unsigned>(kv), static_cast<unsigned>(batches)),
                     kThreads, Smem<D>::kBytes, stream>>>(params);
  HNF_CUDA_CHECK(cudaGetLastError());
}

void CudaLayerStreams::Impl::init(const StreamView* streams, int heads) {
  if (heads < 1 || heads > 65535 || streams == nullptr) bad_input("needs 1 to 65535 kv head streams");
  if (cuda_device_count() == 0) bad_input("no CUDA device present");
  kv_heads = heads;
  page_size = streams[0].page_size;
  head_dim = streams[0].head_dim;
  if (page_size != 16 && page_size != 32 && page_size != 64) bad_input("page_size " + std::to_string(page_size) + " is not 16, 32 or 64");
  if (head_dim != 64 && head_dim != 128 && head_dim != 256) bad_input("head_dim " + std::to_string(head_dim) + " is not 64, 128 or 256");
  page_shift = page_size == 16 ? 4 : page_size == 32 ? 5 : 6;

  // Layout of the arena: every page side at a 16-byte boundary (float4 loads).
  std::vector<std::size_t> key_offset, value_offset;
  std::vector<long long> first(static_cast<std::size_t>(heads));
  std::size_t total = 0;
  positions = -1;
  for (int h = 0; h < heads; ++h) {
    const StreamView& s = streams[h];
    if (s.page_size != page_size || s.head_dim != head_dim) bad_input("the streams of a layer need one page_size and head_dim");
    first[static_cast<std::size_t>(h)] = static_cast<long long>(key_offset.size());
    std::int64_t stream_positions = 0;
    for (std::int64_t i = 0; i < s.num_pages; ++i) {
      const PageRef& pg = s.pages[i];
      const std::string where = "kv head " + std::to_string(h) + ", page " + std::to_string(i) + ": ";
      const bool last = i + 1 == s.num_pages;
      if (pg.rows < 1 || pg.rows > page_size || (!last && pg.rows != page_size)) bad_input(where + "every page but the last is full");
      if (!valid_format(pg.key_format, page_size, head_dim, true)) bad_input(where + "key format " + describe(pg.key_format) + " is not one the kernels take");
      if (!valid_format(pg.value_format, page_size, head_dim, false)) bad_input(where + "value format " + describe(pg.value_format) + " is not one the kernels take");
      if (pg.key_format.axis == kAxisTokens && pg.rows != page_size) bad_input(where + "a per-channel key page that is not full must be staged");
      stream_positions += pg.rows;
      key_offset.push_back(total);
      const std::size_t kb = hnf::runtime::page_bytes(pg.key_format, page_size, head_dim);
      total += align16(kb);
      value_offset.push_back(total);
      const std::size_t vb = hnf::runtime::page_bytes(pg.value_format, page_size, head_dim);
      total += align16(vb);
      page_bytes += kb + vb;
    }
    positions = positions < 0 ? stream_positions : std::min(positions, stream_positions);
  }

  HNF_CUDA_CHECK(cudaSetDevice(0));
  HNF_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  HNF_CUDA_CHECK(cudaEventCreate(&start));
  HNF_CUDA_CHECK(cudaEventCreate(&stop));
  switch (head_dim) {
    case 64: prepare_kernel<64>(); break;
    case 128: prepare_kernel<128>(); break;
    default: prepare_kernel<256>(); break;
  }

  const std::size_t page_count = key_offset.size();
  std::vector<std::uint8_t> host(std::max<std::size_t>(total, 16), 0);
  std::vector<PageRef> table(page_count);
  HNF_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&arena), host.size()));
  std::size_t n = 0;
  for (int h = 0; h < heads; ++h) {
    const StreamView& s = streams[h];
    for (std::int64_t i = 0; i < s.num_pages; ++i, ++n) {
      const PageRef& pg = s.pages[i];
      std::memcpy(host.data() + key_offset[n], pg.keys, hnf::runtime::page_bytes(pg.key_format, page_size, head_dim));
      std::memcpy(host.data() + value_offset[n], pg.values, hnf::runtime::page_bytes(pg.value_format, page_size, head_dim));
      table[n] = PageRef{arena + key_offset[n], arena + value_offset[n], pg.key_format, pg.value_format, pg.rows, 0};
    }
  }
  HNF_CUDA_CHECK(cudaMemcpy(arena, host.data(), host.size(), cudaMemcpyHostToDevice));
  HNF_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&pages), std::max<std::size_t>(page_count, 1) * sizeof(PageRef)));
  if (page_count > 0) HNF_CUDA_CHECK(cudaMemcpy(pages, table.data(), page_count * sizeof(PageRef), cudaMemcpyHostToDevice));
  HNF_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&first_page), first.size() * sizeof(long long)));
  HNF_CUDA_CHECK(cudaMemcpy(first_page, first.data(), first.size() * sizeof(long long), cudaMemcpyHostToDevice));
}

CudaLayerStreams::CudaLayerStreams(const StreamView* streams, int kv_heads) : impl_(std::make_unique<Impl>()) {
  impl_->init(streams, kv_heads);  // on a throw, impl_'s destructor releases what init made
}

CudaLayerStreams::~CudaLayerStreams() = default;
CudaLayerStreams::CudaLayerStreams(CudaLayerStreams&&) noexcept = default;
CudaLayerStreams& CudaLayerStreams::operator=(CudaLayerStreams&&) noexcept = default;

void CudaLayerStreams::decode(std::int64_t positions, const float* q, int heads, float scale, float* out) {
  Impl& m = *impl_;
  if (q == nullptr || out == nullptr) bad_input("q and out must not be null");
  if (heads < m.kv_heads || heads % m.kv_heads != 0) bad_input("heads must be a positive multiple of kv_heads");
  if (positions < 1 || positions > m.positions) {
    bad_input("positions " + std::to_string(positions) + " is not in 1.." + std::to_string(m.positions));
  }
  const int group = heads / m.kv_heads;
  const int batches = (group + kMaxQ - 1) / kMaxQ;
  const std::int64_t tiles = (positions + kTile - 1) / kTile;
  if (tiles > (std::int64_t{1} << 30)) bad_input("too many positions");
  std::int64_t per_chunk = m.tiles_per_chunk;
  if (per_chunk <= 0) {
    const std::int64_t work = tiles * m.kv_heads * batches;  // tiles over all blocks
    per_chunk = std::max<std::int64_t>(1, (work + m.slots - 1) / m.slots);
  }
  per_chunk = std::min(per_chunk, tiles);
  const std::int64_t chunks = (tiles + per_chunk - 1) / per_chunk;

  const auto d = static_cast<std::size_t>(m.head_dim);
  const auto nh = static_cast<std::size_t>(heads);
  grow(m.q, m.q_capacity, nh * d);
  grow(m.out, m.out_capacity, nh * d);
  grow(m.acc, m.acc_capacity, nh * static_cast<std::size_t>(chunks) * d);
  grow(m.ml, m.ml_capacity, nh * static_cast<std::size_t>(chunks) * 2);

  KernelParams params{};
  params.pages = m.pages;
  params.first_page = m.first_page;
  params.q = m.q;
  params.acc_part = m.acc;
  params.ml_part = m.ml;
  params.positions = positions;
  params.page_shift = m.page_shift;
  params.group = group;
  params.tiles = static_cast<int>(tiles);
  params.tiles_per_chunk = static_cast<int>(per_chunk);
  params.chunks = static_cast<int>(chunks);
  params.scale = scale;

  HNF_CUDA_CHECK(cudaMemcpyAsync(m.q, q, nh * d * sizeof(float), cudaMemcpyHostToDevice, m.stream));
  HNF_CUDA_CHECK(cudaEventRecord(m.start, m.stream));
  switch (m.head_dim) {
    case 64: m.launch<64>(params, m.kv_heads, batches); break;
    case 128: m.launch<128>(params, m.kv_heads, batches); break;
    default: m.launch<256>(params, m.kv_heads, batches); break;
  }
  combine_chunks<<<static_cast<unsigned>(heads), static_cast<unsigned>(m.head_dim), 0, m.stream>>>(
      m.acc, m.ml, params.chunks, m.head_dim, m.out);
  HNF_CUDA_CHECK(cudaGetLastError());
  HNF_CUDA_CHECK(cudaEventRecord(m.stop, m.stream));
  HNF_CUDA_CHECK(cudaMemcpyAsync(out, m.out, nh * d * sizeof(float), cudaMemcpyDeviceToHost, m.stream));
  HNF_CUDA_CHECK(cudaStreamSynchronize(m.stream));
  float ms = 0.0f;
  HNF_CUDA_CHECK(cudaEventElapsedTime(&ms, m.start, m.stop));
  m.last_ms = ms;
}

double CudaLayerStreams::last_kernel_ms() const { return impl_->last_ms; }
std::size_t CudaLayerStreams::device_page_bytes() const { return impl_->page_bytes; }
std::int64_t CudaLayerStreams::positions() const { return impl_->positions; }
void CudaLayerStreams::set_tiles_per_chunk(int tiles) { impl_->tiles_per_chunk = std::max(0, tiles); }

}  // namespace hnf::runtime
