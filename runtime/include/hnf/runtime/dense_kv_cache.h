// Full-precision (fp32) KV cache: the baseline every quantized cache of runtime/ is compared
// against, and the cache of the unquantized model runner.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "hnf/runtime/kv_cache.h"

namespace hnf::runtime {

class DenseKvCache final : public KvCache {
 public:
  // Room for `capacity` positions of every layer. Throws proofs::Error(kBadInput) as KvCache.
  DenseKvCache(const KvCacheShape& shape, std::int64_t capacity);

  // The cached row of one kv head at one position: [head_dim], a view valid until the next
  // append. Asserts that the position is cached in `layer`.
  [[nodiscard]] std::span<const float> key(std::int64_t layer, std::int64_t kv_head, std::int64_t position) const;
  [[nodiscard]] std::span<const float> value(std::int64_t layer, std::int64_t kv_head, std::int64_t position) const;

 private:
  void do_append(std::int64_t layer, const float* k, const float* v, std::int64_t n, std::int64_t first) override;
  void do_attend(std::int64_t layer, const float* q, std::int64_t n, std::int64_t first, float* out) const override;
  [[nodiscard]] std::size_t offset(std::int64_t layer, std::int64_t kv_head, std::int64_t position) const;

  std::vector<float> keys_;    // [layers][kv_heads, capacity, head_dim]
  std::vector<float> values_;  // [layers][kv_heads, capacity, head_dim]
};

}  // namespace hnf::runtime
