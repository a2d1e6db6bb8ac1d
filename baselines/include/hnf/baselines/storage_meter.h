// Bytes per K/V element, counted the same way for every cache of the quality benchmark.
#pragma once

#include <cstdint>

namespace hnf::baselines {

// What a cache held when it was destroyed, summed over caches (one per evaluation window):
// bytes = codes + fp16 scales and zero points + float elements (fp16 residuals, f32 staged
// rows) + the method's own per-position metadata (a precision map's format ids, H2O's
// accumulated attention scores); elements = 2 (K and V) x layers x kv heads x positions x
// head_dim of the positions the cache represents (evicted positions included: they are what
// the method saved).
struct StorageMeter {
  double bytes = 0.0;
  double elements = 0.0;
  std::int64_t caches = 0;
  [[nodiscard]] double bits_per_element() const noexcept { return elements > 0.0 ? bytes * 8.0 / elements : 0.0; }
  // One cache's storage, when it is destroyed.
  void add_cache(double cache_bytes, double cache_elements) noexcept {
    bytes += cache_bytes;
    elements += cache_elements;
    ++caches;
  }
};

}  // namespace hnf::baselines
