#include "hnf/runtime/shadow_cache.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "hnf/proofs/error.h"

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

bool ShadowedCache::float_only(std::int64_t layer, std::int64_t kv_head, std::int64_t positions) const {
  const StreamView view = cache_->stream(layer, kv_head);
  const std::int64_t pages = (positions + view.page_size - 1) / view.page_size;
  for (std::int64_t p = 0; p < pages; ++p) {
    for (const PageFormat& f : {view.pages[p].key_format, view.pages[p].value_format}) {
      if (f.encoding != kPageF16 && f.encoding != kPageBF16 && f.encoding != kPageStagedF32) return false;
    }
  }
  return true;
}

void ShadowedCache::do_attend(std::int64_t layer, const float* q, std::int64_t n, std::int64_t first, float* out) const {
  std::vector<double> bounds(static_cast<std::size_t>(num_heads() * n));
  (void)cache_->attend_guarded(layer, q, n, out, bounds.data());
  const auto start = std::chrono::steady_clock::now();
  const auto d = static_cast<std::size_t>(head_dim());
  const std::int64_t group = num_heads() / num_kv_heads();
  const double scale = 1.0 / std::sqrt(static_cast<double>(d));
  std::vector<double> scores, o(d);
  for (std::int64_t h = 0; h < num_heads(); ++h) {
    const auto s = static_cast<std::size_t>(layer * num_kv_heads() + h / group);
    for (std::int64_t i = 0; i < n; ++i) {
      const auto row = static_cast<std::size_t>(h * n + i);
      const float* q_row = q + row * d;
      const auto positions = static_cast<std::size_t>(first + i + 1);
      // The exact attention over the appended rows, in double.
      scores.resize(positions);
      double m = -INFINITY;
      for (std::size_t t = 0; t < positions; ++t) {
        double dot = 0.0;
        for (std::size_t c = 0; c < d; ++c) dot += static_cast<double>(q_row[c]) * keys_[s][t * d + c];
        scores[t] = dot * scale;
        m = std::max(m, scores[t]);
      }
      double z = 0.0;
      std::fill(o.begin(), o.end(), 0.0);
      for (std::size_t t = 0; t < positions; ++t) {
        const double e = std::exp(scores[t] - m);
        z += e;
        for (std::size_t c = 0; c < d; ++c) o[c] += e * values_[s][t * d + c];
      }
      double squared = 0.0;
      for (std::size_t c = 0; c < d; ++c) {
        const double diff = static_cast<double>(out[row * d + c]) - o[c] / z;
        squared += diff * diff;
      }
      record_->samples.push_back({.layer = static_cast<std::int32_t>(layer),
                                  .float_only = float_only(layer, h / group, first + i + 1),
                                  .bound = bounds[row],
                                  .actual = std::sqrt(squared)});
    }
  }
  record_->shadow_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace hnf::runtime
