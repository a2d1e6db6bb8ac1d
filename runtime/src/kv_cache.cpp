#include "hnf/runtime/kv_cache.h"

#include <string>

#include "hnf/proofs/error.h"

namespace hnf::runtime {

KvCache::KvCache(const KvCacheShape& shape, std::int64_t capacity) : shape_(shape), capacity_(capacity) {
  if (shape.num_layers < 1 || shape.num_heads < 1 || shape.num_kv_heads < 1 || shape.head_dim < 1 || capacity < 1) {
    throw proofs::bad_input("kv cache", "layers, heads, kv heads, head_dim and capacity must be positive");
  }
  if (shape.num_heads % shape.num_kv_heads != 0) {
    throw proofs::bad_input("kv cache", "heads (" + std::to_string(shape.num_heads) +
                                            ") must be a multiple of kv heads (" + std::to_string(shape.num_kv_heads) +
                                            ")");
  }
  layer_size_.assign(static_cast<std::size_t>(shape.num_layers), 0);
}

std::int64_t KvCache::layer_size(std::int64_t layer) const {
  HNF_ASSERT(layer >= 0 && layer < shape_.num_layers, "kv cache layer out of range");
  return layer_size_[static_cast<std::size_t>(layer)];
}

void KvCache::append(std::int64_t layer, const float* k, const float* v, std::int64_t n) {
  HNF_ASSERT(layer >= 0 && layer < shape_.num_layers, "kv cache layer out of range");
  HNF_ASSERT(k != nullptr && v != nullptr && n >= 1, "append needs keys and values of at least one position");
  const auto l = static_cast<std::size_t>(layer);
  const std::int64_t first = layer_size_[l];
  if (layer == 0) {
    HNF_ASSERT(first == size(), "append to layer 0 before the previous step reached the last layer");
    if (n > capacity_ - first) {
      throw proofs::bad_input("kv cache", "append of " + std::to_string(n) + " positions to " + std::to_string(first) +
                                              " cached exceeds capacity " + std::to_string(capacity_));
    }
  } else {
    HNF_ASSERT(first + n == layer_size_[l - 1], "append must bring a layer level with the layer before it");
  }
  do_append(layer, k, v, n, first);
  layer_size_[l] = first + n;
}

void KvCache::attend(std::int64_t layer, const float* q, std::int64_t n, float* out) const {
  const std::int64_t cached = layer_size(layer);
  HNF_ASSERT(q != nullptr && out != nullptr, "attend needs queries and an output");
  HNF_ASSERT(n >= 1 && n <= cached, "attend: the queries' positions must be cached in this layer");
  do_attend(layer, q, n, cached - n, out);
}

}  // namespace hnf::runtime
