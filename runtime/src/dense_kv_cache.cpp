#include "hnf/runtime/dense_kv_cache.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "blas.h"
#include "hnf/proofs/error.h"

namespace hnf::runtime {

namespace {
// Queries per score block: bounds the score matrix at kQueryBlock x positions floats however
// long the prefill is.
constexpr std::int64_t kQueryBlock = 64;
}  // namespace

DenseKvCache::DenseKvCache(const KvCacheShape& shape, std::int64_t capacity) : KvCache(shape, capacity) {
  const auto n = static_cast<std::size_t>(shape.num_layers * shape.num_kv_heads * capacity * shape.head_dim);
  keys_.resize(n);
  values_.resize(n);
}

std::size_t DenseKvCache::offset(std::int64_t layer, std::int64_t kv_head, std::int64_t position) const {
  HNF_ASSERT(layer >= 0 && layer < num_layers() && kv_head >= 0 && kv_head < num_kv_heads() && position >= 0 && position <= capacity(),
             "kv cache index out of range");
  return static_cast<std::size_t>(((layer * num_kv_heads() + kv_head) * capacity() + position) * head_dim());
}

std::span<const float> DenseKvCache::key(std::int64_t layer, std::int64_t kv_head, std::int64_t position) const {
  HNF_ASSERT(position < layer_size(layer), "kv cache position not cached");
  return {keys_.data() + offset(layer, kv_head, position), static_cast<std::size_t>(head_dim())};
}

std::span<const float> DenseKvCache::value(std::int64_t layer, std::int64_t kv_head, std::int64_t position) const {
  HNF_ASSERT(position < layer_size(layer), "kv cache position not cached");
  return {values_.data() + offset(layer, kv_head, position), static_cast<std::size_t>(head_dim())};
}

void DenseKvCache::do_append(std::int64_t layer, const float* k, const float* v, std::int64_t n, std::int64_t first) {
  const std::int64_t d = head_dim();
  for (std::int64_t g = 0; g < num_kv_heads(); ++g) {
    const auto src = static_cast<std::ptrdiff_t>(g * n * d);
    const std::size_t dst = offset(layer, g, first);
    std::copy_n(k + src, n * d, keys_.begin() + static_cast<std::ptrdiff_t>(dst));
    std::copy_n(v + src, n * d, values_.begin() + static_cast<std::ptrdiff_t>(dst));
  }
}

void DenseKvCache::do_attend(std::int64_t layer, const float* q, std::int64_t n, std::int64_t first,
                             float* out) const {
  const std::int64_t d = head_dim();
  const std::int64_t group = num_heads() / num_kv_heads();
  const auto scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(d)));
  std::vector<float> scores(static_cast<std::size_t>(std::min(n, kQueryBlock) * (first + n)));
  for (std::int64_t h = 0; h < num_heads(); ++h) {
    const float* keys = keys_.data() + offset(layer, h / group, 0);      // [capacity, head_dim]
    const float* values = values_.data() + offset(layer, h / group, 0);  // [capacity, head_dim]
    for (std::int64_t i0 = 0; i0 < n; i0 += kQueryBlock) {
      const std::int64_t rows = std::min(kQueryBlock, n - i0);
      const std::int64_t visible = first + i0 + rows;  // positions the block's last query sees
      const std::int64_t row0 = h * n + i0;            // the block's first row in q and out
      // scores [rows, visible] = q . k^T / sqrt(head_dim)
      blas::gemm_nt(rows, visible, d, scale, q + row0 * d, d, keys, d, scores.data(), visible);
      for (std::int64_t r = 0; r < rows; ++r) {
        float* s = scores.data() + r * visible;
        const std::int64_t seen = first + i0 + r + 1;  // causal: positions 0 .. first+i0+r
        // Shift by the maximum so that exp never overflows; the largest weight is exactly 1.
        const float max_score = *std::max_element(s, s + seen);
        double total = 0.0;
        for (std::int64_t t = 0; t < seen; ++t) total += (s[t] = std::exp(s[t] - max_score));
        const auto inverse = static_cast<float>(1.0 / total);
        for (std::int64_t t = 0; t < seen; ++t) s[t] *= inverse;
        std::fill(s + seen, s + visible, 0.0f);
      }
      // out [rows, head_dim] = weights [rows, visible] . v [visible, head_dim]
      blas::gemm_nn(rows, d, visible, scores.data(), visible, values, d, out + row0 * d, d);
    }
  }
}

}  // namespace hnf::runtime
