// The KV cache of a whole decoder stack, and the causal grouped-query attention that reads it.
// The model runner talks only to this interface, so a mixed-precision cache is one new class
// implementing do_append/do_attend; the protocol checks below live here, once, for all of them.
//
// Protocol of one forward step of n tokens (positions size() .. size()+n-1):
//   for layer l = 0 .. num_layers()-1:
//     append(l, k, v, n);   // layer l's new keys and values
//     attend(l, q, n, out); // layer l's queries for the same n positions
// Layer 0's append opens the step; it is the only call that can fail on the caller's input
// (the step does not fit: bad_input, nothing changed). Each later layer must append exactly
// the positions its predecessor holds beyond it; size() advances when the last layer has
// appended. Any other order is a bug of the caller and fails HNF_ASSERT.
#pragma once

#include <cstdint>
#include <vector>

namespace hnf::runtime {

// Dimensions of a cache (one per model: LlamaModel::cache_shape()).
struct KvCacheShape {
  std::int64_t num_layers = 0;
  std::int64_t num_heads = 0;     // query heads, a multiple of num_kv_heads
  std::int64_t num_kv_heads = 0;  // query head h reads kv head h / (num_heads / num_kv_heads)
  std::int64_t head_dim = 0;
};

class KvCache {
 public:
  virtual ~KvCache() = default;
  KvCache(const KvCache&) = delete;
  KvCache& operator=(const KvCache&) = delete;

  [[nodiscard]] const KvCacheShape& shape() const noexcept { return shape_; }
  [[nodiscard]] std::int64_t num_layers() const noexcept { return shape_.num_layers; }
  [[nodiscard]] std::int64_t num_heads() const noexcept { return shape_.num_heads; }
  [[nodiscard]] std::int64_t num_kv_heads() const noexcept { return shape_.num_kv_heads; }
  [[nodiscard]] std::int64_t head_dim() const noexcept { return shape_.head_dim; }
  // Positions cached in every layer (a step in progress is not counted until its last layer).
  [[nodiscard]] std::int64_t size() const noexcept { return layer_size_.back(); }
  [[nodiscard]] std::int64_t capacity() const noexcept { return capacity_; }
  // Positions cached in `layer`, including the step in progress.
  [[nodiscard]] std::int64_t layer_size(std::int64_t layer) const;

  // Stores layer `layer`'s keys and values of the next n positions (see the protocol above).
  // k [kv_heads, n, head_dim], v [kv_heads, n, head_dim]: the cache copies them.
  // Throws proofs::Error(kBadInput) "kv cache: ..." when layer 0 opens a step that does not fit
  // in capacity(); the cache is unchanged then.
  void append(std::int64_t layer, const float* k, const float* v, std::int64_t n);

  // Causal grouped-query attention of the n newest positions of `layer` (those just appended,
  // at positions p = layer_size(layer)-n .. layer_size(layer)-1) over every cached position
  // t <= p of that layer: out = sum_t softmax_t(q.k_t / sqrt(head_dim)) v_t, the softmax
  // shifted by its maximum so that no score overflows. Query head h reads kv head
  // h / (num_heads / num_kv_heads). q [heads, n, head_dim], out [heads, n, head_dim].
  void attend(std::int64_t layer, const float* q, std::int64_t n, float* out) const;

 protected:
  // Throws proofs::Error(kBadInput) when a dimension is not positive or num_heads is not a
  // multiple of num_kv_heads.
  KvCache(const KvCacheShape& shape, std::int64_t capacity);

  // Writes positions first .. first+n-1 of `layer`; arguments already checked, capacity
  // guaranteed. k [kv_heads, n, head_dim], v [kv_heads, n, head_dim].
  virtual void do_append(std::int64_t layer, const float* k, const float* v, std::int64_t n, std::int64_t first) = 0;
  // attend() with arguments checked: the queries are at positions first .. first+n-1 and
  // first+n positions of `layer` are cached. q [heads, n, head_dim], out [heads, n, head_dim].
  virtual void do_attend(std::int64_t layer, const float* q, std::int64_t n, std::int64_t first, float* out) const = 0;

 private:
  KvCacheShape shape_;
  std::int64_t capacity_;
  std::vector<std::int64_t> layer_size_;  // [layers]; non-increasing in the layer index
};

}  // namespace hnf::runtime
