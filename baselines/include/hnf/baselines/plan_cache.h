// A KV cache that stores every position in the format a plan gives it, with KIVI's fp16
// residual window: the engine of the uniform-integer, KIVI-style and precision-map methods of
// the quality benchmark (docs/quality.md). Not the runtime cache: it needs no certificate, so
// it can run baselines and uncertified allocations; it keeps the stored values as fp32 arrays
// and attends with dense fp32 products (a dequantize-then-attend kernel).
//
// Stored values are those of the reference quantizer of proofs/ (proofs::quantize_block, the
// same codes and parameters the runtime's pages hold), rounded to fp32 (relative change at most
// 2^-24, far below any format's step). Per-channel (intB-tP) key groups are quantized when
// their P positions are cached, and held as f32 rows until then, as MixedKvCache stages them.
//
// Residual window (`recent` > 0): query position p reads a position in fp16 (rounded to
// nearest) instead of its format while the last position of its group (itself, for per-token
// and float formats) is one of the `recent` newest positions p - recent + 1 .. p. So the
// representation a query reads depends only on positions <= p and on the plan, as when
// decoding token by token, also when a window is run in one forward.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "hnf/baselines/storage_meter.h"
#include "hnf/proofs/format.h"
#include "hnf/runtime/kv_cache.h"

namespace hnf::baselines {

struct StoragePlan {
  // The format position t of (layer, kv head) is stored in. Every position of a per-channel
  // group [a, a+P) must have the same format (bad input otherwise, when the group fills).
  std::function<proofs::Format(std::int64_t layer, std::int64_t kv_head, std::int64_t position)> key_format;
  std::function<proofs::Format(std::int64_t layer, std::int64_t kv_head, std::int64_t position)> value_format;
  std::int64_t recent = 0;  // residual window in positions; 0: none
  // The method's own metadata: this many bytes per (layer, kv head) per `metadata_unit`
  // positions begun (a precision map: one format id byte for K and one for V per unit).
  double metadata_bytes_per_unit = 0.0;
  std::int64_t metadata_unit = 1;
};

class PlanCache final : public runtime::KvCache {
 public:
  // Throws proofs::Error(kBadInput) as KvCache, and when a format the plan gives is not valid
  // for the head_dim (at append). `meter` (may be null) receives the storage at destruction.
  PlanCache(const runtime::KvCacheShape& shape, std::int64_t capacity, StoragePlan plan,
            std::shared_ptr<StorageMeter> meter = nullptr);
  ~PlanCache() override;

  // Bytes the cache holds for its positions, as a query at the newest position reads them
  // (StorageMeter's counting), and the elements they represent.
  [[nodiscard]] double stored_bytes() const;
  [[nodiscard]] double stored_elements() const;

 private:
  struct Stream {
    std::vector<float> settled_k, settled_v;    // [capacity, head_dim]: stored value, or f32 staged row
    std::vector<float> recent_k, recent_v;      // [capacity, head_dim]: fp16 rounding (only with a residual window)
    std::vector<double> key_bits, value_bits;   // [capacity]: bits per element of the settled representation
    std::vector<std::int64_t> key_release;      // [capacity]: last position of the key's group (values: the position)
    std::vector<proofs::Format> key_formats;    // [capacity]
  };
  void do_append(std::int64_t layer, const float* k, const float* v, std::int64_t n, std::int64_t first) override;
  void do_attend(std::int64_t layer, const float* q, std::int64_t n, std::int64_t first, float* out) const override;
  void settle_key_groups(Stream& s, std::int64_t layer, std::int64_t size);
  // The first key (value) position query p reads in fp16 (p + 1 when none): key releases are non-decreasing.
  [[nodiscard]] std::int64_t key_residual_start(const Stream& s, std::int64_t p) const;
  [[nodiscard]] std::int64_t value_residual_start(std::int64_t p) const;

  StoragePlan plan_;
  std::shared_ptr<StorageMeter> meter_;
  std::vector<Stream> streams_;  // [layers * kv_heads]
};

}  // namespace hnf::baselines
