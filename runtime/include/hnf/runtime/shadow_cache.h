// The guard measured (eval only): a MixedKvCache with its guard on, next to a shadow exact copy
// of the very keys and values it was given, so that every attention row's guard bound can be
// set against the row's actual error ||out - o||, o the attention over the exact rows (double
// arithmetic: a measurement, not a bound). The runtime itself keeps no exact copy; the shadow is
// what `hnf-verify eval` pays to report how loose the guard is.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "hnf/runtime/kv_cache.h"
#include "hnf/runtime/mixed_kv_cache.h"

namespace hnf::runtime {

// One attention row as the guard saw it.
struct GuardSample {
  std::int32_t layer = 0;
  bool float_only = false;  // every row it read is stored as fp16/bf16 or staged f32
  double bound = 0.0;       // the guard's bound, of its class (rounded up)
  double deterministic = 0.0;  // the deterministic bound (rounded up)
  double actual = 0.0;      // ||out - o|| against the shadow exact rows (nearest)
};

// Filled by every ShadowedCache sharing it (eval: one cache per window).
struct GuardRecord {
  std::vector<GuardSample> samples;
  double shadow_seconds = 0.0;  // spent on the shadow's exact attention (not guard overhead)
};

class ShadowedCache final : public KvCache {
 public:
  // cache: built with options.guard != kOff; record: where the samples go.
  ShadowedCache(std::unique_ptr<MixedKvCache> cache, std::shared_ptr<GuardRecord> record);
  [[nodiscard]] const MixedKvCache& cache() const noexcept { return *cache_; }

 private:
  void do_append(std::int64_t layer, const float* k, const float* v, std::int64_t n, std::int64_t first) override;
  void do_attend(std::int64_t layer, const float* q, std::int64_t n, std::int64_t first, float* out) const override;

  std::unique_ptr<MixedKvCache> cache_;
  std::shared_ptr<GuardRecord> record_;
  std::vector<std::vector<float>> keys_, values_;  // [layers * kv_heads][positions * head_dim], exact
};

}  // namespace hnf::runtime
