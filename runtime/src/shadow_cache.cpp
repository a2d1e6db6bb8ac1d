#include "hnf/runtime/shadow_cache.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "hnf/proofs/error.h"
#include "hnf/runtime/guard_calibration.h"

namespace hnf::runtime {

ShadowedCache::ShadowedCache(std::unique_ptr<MixedKvCache> cache, std::shared_ptr<GuardRecord> record)
    : KvCache(cache->shape(), cache->capacity()), cache_(std::move(cache)), record_(std::move(record)) {
  HNF_ASSERT(cache_->size() == 0 && record_, "a shadow starts with an empty cache and a record");
  keys_.resize(static_cast<std::size_t>(num_layers() * num_kv_heads()));
  values_.resize(keys_.size());
}

void ShadowedCache::do_append(std::int64_t layer, const float* k, const float* v, std::int64_t n, std::int64_t) {
  cache_->append(layer, k, v, n);  // refuses (and changes nothing) before the shadow copies
  const auto d = static_cast<std::size_t>(head_dim());
  const auto rows = static_cast<std::size_t>(n);
  for (std::int64_t g = 0; g < num_kv_heads(); ++g) {
    auto& keys = keys_[static_cast<std::size_t>(layer * num_kv_heads() + g)];
    auto& values = values_[static_cast<std::size_t>(layer * num_kv_heads() + g)];
    const std::size_t at = static_cast<std::size_t>(g) * rows * d;
    keys.insert(keys.end(), k + at, k + at + rows * d);
    values.insert(values.end(), v + at, v + at + rows * d);
  }
}

void ShadowedCache::do_attend(std::int64_t layer, const float* q, std::int64_t n, std::int64_t first, float* out) const {
  std::vector<double> bounds(static_cast<std::size_t>(num_heads() * n)), deterministic(bounds.size());
  (void)cache_->attend_guarded(layer, q, n, out, bounds.data(), deterministic.data());
  const auto start = std::chrono::steady_clock::now();
  const auto d = static_cast<std::size_t>(head_dim());
  const std::int64_t group = num_heads() / num_kv_heads();
  std::vector<double> o(d);
  for (std::int64_t h = 0; h < num_heads(); ++h) {
    const auto s = static_cast<std::size_t>(layer * num_kv_heads() + h / group);
    for (std::int64_t i = 0; i < n; ++i) {
      const auto row = static_cast<std::size_t>(h * n + i);
      exact_attention(q + row * d, keys_[s].data(), values_[s].data(), first + i + 1, head_dim(), o.data());
      double squared = 0.0;
      for (std::size_t c = 0; c < d; ++c) {
        const double diff = static_cast<double>(out[row * d + c]) - o[c];
        squared += diff * diff;
      }
      record_->samples.push_back({.layer = static_cast<std::int32_t>(layer),
                                  .float_only = reads_only_float_pages(cache_->stream(layer, h / group), first + i + 1),
                                  .bound = bounds[row],
                                  .deterministic = deterministic[row],
                                  .actual = std::sqrt(squared)});
    }
  }
  record_->shadow_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace hnf::runtime
