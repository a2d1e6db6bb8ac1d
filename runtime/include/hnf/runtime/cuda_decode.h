// Decode attention on CUDA device 0, read straight from a device copy of one layer's pages
// (kv_pages.h): the same contract as decode_layer_cpu (decode_attention.h), query head h reads
// stream h / (heads / kv_heads). Always declared; in a build without CUDA the constructor
// throws, so callers need no #ifdefs (check cuda_decode_compiled() or cuda_device_count()).
//
// Plain C++17 with no CUDA types (pimpl) and no proofs headers: the CUDA sources include it.
//
// Supported: page_size 16, 32 or 64; head_dim 64, 128 or 256; keys in fp16, bf16, the f32
// staging layout, intB-dG or intB-tP (G = page_size); values in fp16, bf16 or intB-dG. Any
// number of query heads per kv head (the kernel takes them eight at a time: up to eight query
// heads share one read of the pages).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include "hnf/runtime/kv_pages.h"

namespace hnf::runtime {

// True when this build contains the CUDA decode kernels.
[[nodiscard]] bool cuda_decode_compiled() noexcept;

class CudaLayerStreams {
 public:
  // Copies the pages of streams [kv_heads] (all with the same page_size and head_dim) to device
  // 0: one device arena of page bytes and one device page table. Throws hnf::proofs::Error: bad
  // input when this build has no CUDA support, no device is present, or a stream is not one the
  // kernels take (see above); internal when a CUDA call fails.
  CudaLayerStreams(const StreamView* streams, int kv_heads);
  ~CudaLayerStreams();
  CudaLayerStreams(CudaLayerStreams&&) noexcept;
  CudaLayerStreams& operator=(CudaLayerStreams&&) noexcept;
  CudaLayerStreams(const CudaLayerStreams&) = delete;
  CudaLayerStreams& operator=(const CudaLayerStreams&) = delete;

  // Every query head at once, as decode_layer_cpu: q, out host arrays [heads, head_dim];
  // heads a multiple of kv_heads; 1 <= positions <= positions(). Blocks until out is written.
  void decode(std::int64_t positions, const float* q, int heads, float scale, float* out);

  // Device time of the last decode's kernels in ms (cudaEvent: split-K pass and combine).
  [[nodiscard]] double last_kernel_ms() const;
  // Bytes of pages copied to the device (what a decode of every position reads).
  [[nodiscard]] std::size_t device_page_bytes() const;
  // Positions every stream holds (the largest `positions` decode accepts).
  [[nodiscard]] std::int64_t positions() const;

  // Split-K chunk length in tiles of 32 positions; 0 (the default) picks it from the device
  // (one wave of thread blocks). For tests of the chunking; any value >= 0.
  void set_tiles_per_chunk(int tiles);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace hnf::runtime
