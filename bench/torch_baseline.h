// The LibTorch baseline: dense fp32 decode attention (q.K^T, softmax, .V) with grouped-query
// attention on [kv_heads, positions, head_dim] fp32 tensors. The only translation unit of the
// benchmark that includes LibTorch's headers.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

namespace hnf::bench {

// Sets LibTorch's intra-op thread count (the same count the runtime's OpenMP kernels get).
void torch_set_threads(int threads);
[[nodiscard]] int torch_threads();
// "1.13.1" (TORCH_VERSION).
[[nodiscard]] std::string torch_version();

class TorchAttention {
 public:
  // keys, values [kv_heads, capacity, head_dim] fp32, wrapped without a copy: they must outlive
  // this object and not move.
  TorchAttention(const float* keys, const float* values, int kv_heads, std::int64_t capacity, int head_dim);
  ~TorchAttention();
  TorchAttention(const TorchAttention&) = delete;
  TorchAttention& operator=(const TorchAttention&) = delete;

  // out[h] = softmax(q[h] . K^T * scale) V over the first `positions` positions of kv head
  // h / (heads / kv_heads). q, out [heads, head_dim].
  void decode(const float* q, int heads, std::int64_t positions, float scale, float* out) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace hnf::bench
