// H2O-style eviction (Zhang et al., 2023, "Heavy-Hitter Oracle"): each (layer, kv head) keeps
// at most `keep` positions in fp16: the `recent` newest, and of the older ones those with the
// largest attention received so far (summed over the query heads that share the kv head and
// over every query since the position arrived). When a query's position makes the set exceed
// `keep`, the older position with the smallest accumulated attention is evicted for good.
//
// Queries are processed in position order, each over the set as it stood at its position, so
// a window run in one forward reads exactly what token-by-token decoding would. Storage per
// kept position: K and V rows in fp16 and one fp32 accumulated score (accumulated in double
// here; counted as the fp32 a kernel would keep).
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "hnf/baselines/storage_meter.h"
#include "hnf/runtime/kv_cache.h"

namespace hnf::baselines {

struct H2oOptions {
  std::int64_t keep = 0;    // positions kept per (layer, kv head), the query's own included
  std::int64_t recent = 0;  // of those, the newest always kept; keep - recent >= 1 heavy hitters
};

class H2oCache final : public runtime::KvCache {
 public:
  // Throws proofs::Error(kBadInput) as KvCache and when recent < 0 or keep <= recent.
  H2oCache(const runtime::KvCacheShape& shape, std::int64_t capacity, H2oOptions options,
           std::shared_ptr<StorageMeter> meter = nullptr);
  ~H2oCache() override;

  [[nodiscard]] double stored_bytes() const;     // kept positions x (4 head_dim + 4) bytes
  [[nodiscard]] double stored_elements() const;  // 2 x layers x kv heads x size() x head_dim
  // Positions (layer, kv head) holds after the queries so far (any order).
  [[nodiscard]] std::vector<std::int64_t> kept_positions(std::int64_t layer, std::int64_t kv_head) const;

 private:
  struct Stream {
    std::vector<float> pending_k, pending_v;  // [capacity, head_dim]: appended rows, fp16-rounded
    std::vector<float> kept_k, kept_v;        // [keep + 1, head_dim]: the kept set, compacted
    std::vector<std::int64_t> kept_position;  // [keep + 1]
    std::vector<double> score;                // [keep + 1]: accumulated attention
    std::int64_t count = 0;
  };
  void do_append(std::int64_t layer, const float* k, const float* v, std::int64_t n, std::int64_t first) override;
  void do_attend(std::int64_t layer, const float* q, std::int64_t n, std::int64_t first, float* out) const override;

  H2oOptions options_;
  std::shared_ptr<StorageMeter> meter_;
  // attend() advances the eviction state: it is the query's position that admits a position.
  mutable std::vector<Stream> streams_;  // [layers * kv_heads]
};

}  // namespace hnf::baselines
