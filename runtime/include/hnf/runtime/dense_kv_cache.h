// Full-precision KV cache of one attention layer and its scalar decode attention: the
// reference every quantized cache of runtime/ is compared against.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace hnf::runtime {

class DenseKvCache {
 public:
  // Room for `capacity` positions of `num_kv_heads` heads of `head_dim` floats each.
  // Throws proofs::Error(kBadInput) when a dimension is not positive.
  DenseKvCache(std::int64_t num_kv_heads, std::int64_t head_dim, std::int64_t capacity);

  // Appends the next position. k, v [kv_heads, head_dim]. Throws proofs::Error(kBadInput)
  // when the cache is full or a span has the wrong size; the cache is unchanged then.
  void append(std::span<const float> k, std::span<const float> v);

  [[nodiscard]] std::int64_t size() const noexcept { return size_; }
  [[nodiscard]] std::int64_t capacity() const noexcept { return capacity_; }
  [[nodiscard]] std::int64_t num_kv_heads() const noexcept { return num_kv_heads_; }
  [[nodiscard]] std::int64_t head_dim() const noexcept { return head_dim_; }

  // [head_dim] rows of one head at one cached position.
  [[nodiscard]] std::span<const float> key(std::int64_t head, std::int64_t position) const;
  [[nodiscard]] std::span<const float> value(std::int64_t head, std::int64_t position) const;

  // Scalar reference decode attention of one query against kv head `head` over all cached
  // positions: out = sum_t softmax(q.k_t / sqrt(head_dim))_t v_t, accumulated in double.
  // q [head_dim], out [head_dim].
  void attend(std::int64_t head, std::span<const float> q, std::span<float> out) const;

 private:
  [[nodiscard]] std::size_t offset(std::int64_t head, std::int64_t position) const;

  std::int64_t num_kv_heads_;
  std::int64_t head_dim_;
  std::int64_t capacity_;
  std::int64_t size_ = 0;
  std::vector<float> keys_;    // [kv_heads, capacity, head_dim]
  std::vector<float> values_;  // [kv_heads, capacity, head_dim]
};

}  // namespace hnf::runtime
