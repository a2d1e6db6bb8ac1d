// The mixed-precision KV cache: keys and values stored at the formats a certificate allows,
// attention computed from that storage. Constructible only from a proofs::CertifiedPrecisionMap
// (which only the exact checker makes): a plain proofs::PrecisionMap does not compile
// (tests/compile_fail/mixed_cache_from_plain_map.cpp).
//
// Layout: one stream per (layer, kv head) (kv_pages.h), pages of map.block positions. Position
// t of a stream is stored in the format the map gives its block t / block. Positions at or
// beyond the traced length (map.tokens) follow the *newest-block policy*: each new page takes
// the formats the map gave the newest traced block (the block that held the most recent
// positions when the trace was taken), so a position's format depends on its distance from the
// newest token when it was written, as during tracing. The certificate's S1 scope does not
// cover those positions; the a-posteriori bound and the S2 counter below do, at run time.
//
// Under a certified precision policy (proofs/policy.h) a position's format is its age class's
// instead, and pages are re-quantized as they age (policy_pages.h; docs/runtime.md).
//
// Memory: pages live in fixed-size slabs allocated on demand per stream (nothing is reserved
// for capacity up front); memory() reports the bytes by category.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "hnf/proofs/certificate.h"
#include "hnf/runtime/decode_attention.h"
#include "hnf/runtime/kv_cache.h"

namespace hnf::runtime {

enum class DecodeBackend { kReference, kCpu };


// Bytes of the cache by category. The categories add up to allocated(), the bytes obtained
// from the allocator for this cache's data structures (slabs, page tables, staging, tables).
struct CacheMemory {
  std::size_t codes = 0;         // packed integer codes and fp16/bf16 elements of stored positions
  std::size_t group_params = 0;  // fp16 scales and zero points of stored positions
  std::size_t staging = 0;       // f32 rows of intB-tP pages that are not full yet (allocated)
  std::size_t map_metadata = 0;  // page tables, per-stream format tables
  std::size_t page_slack = 0;    // slab bytes allocated but not holding a stored position
  [[nodiscard]] std::size_t total() const noexcept { return codes + group_params + staging + map_metadata + page_slack; }
};

// Recorded queries of the certificate's trace, for the S2 check (THEORY.md section 6: a query at
// a recorded position p of head h is in scope when ||q - q_rec(h, p)|| <= s2_radius of its
// (layer, kv head)). queries[l] [heads, positions.size(), head_dim], post-RoPE.
struct S2Reference {
  std::vector<std::int64_t> positions;          // sorted ascending
  std::vector<std::vector<float>> queries;      // [layers][heads * positions * head_dim]
};

// What attend() observed when monitoring is on (options.monitor_bounds, set_s2_reference).
struct DecodeMonitor {
  std::int64_t queries = 0;           // (query head, position) rows attended
  std::int64_t bounded = 0;           // rows with an a-posteriori bound
  double max_bound = 0.0;             // largest a-posteriori bound (L2 norm of the output error)
  double sum_bound = 0.0;
  std::int64_t s2_checked = 0;        // rows checked against the S2 reference
  std::int64_t outside_s2 = 0;        // of those, rows outside the certified S2 neighbourhood
  // A cache writing here was built under MixedKvCacheOptions::allow_unverified_witnesses from a
  // map whose witnesses were neither re-derived nor attested: its bounds are the certificate's word.
  bool unverified_witnesses = false;
  // Added by each cache when it is destroyed: its stored bytes (codes, group parameters,
  // staged rows) and K/V elements, so a shared monitor measures bits per element over all.
  // The guard (options.guard): rows bounded and within epsilon, steps (attend calls) and steps
  // whose every row held; time in the attention itself and in the guard's bounds.
  std::int64_t guard_rows = 0;
  std::int64_t guard_within = 0;
  std::int64_t guard_deterministic_within = 0;
  bool guard_probabilistic = false;  // the guard's class: probabilistic (stochastic policy) or deterministic
  double guard_delta = 0.0;          // its failure probability per row (0: deterministic)
  std::int64_t guard_steps = 0;
  std::int64_t guard_steps_held = 0;
  double attend_seconds = 0.0;
  double guard_seconds = 0.0;
  std::int64_t caches_closed = 0;
  double stored_bytes = 0.0;
  double stored_elements = 0.0;
};

// The guard (THEORY.md section 14.4): every attended row's deterministic error bound
// (decode_bound.h: against the appended keys and values, from what the cache keeps) compared
// with the certificate's epsilon of its layer. kMonitor counts rows within and outside in
// monitor(); kEnforce also makes attend_guarded's status the caller's to act on (a row outside
// epsilon: the guarantee did not hold for this step).
enum class GuardMode { kOff, kMonitor, kEnforce };

// The guard's verdict on one attend() call (one decode step of one layer).
// The guard's class is probabilistic for a stochastic policy (its bound holds with probability
// at least 1 - delta per row over the cache's seed, THEORY.md section 15) and deterministic
// otherwise; the deterministic bound is computed beside the probabilistic one.
struct GuardStatus {
  std::int64_t rows = 0;    // attention rows bounded
  std::int64_t within = 0;  // rows whose bound (the guard's class) is <= the layer's epsilon
  std::int64_t deterministic_within = 0;  // rows whose deterministic bound is <= epsilon
  double max_bound = 0.0;
  [[nodiscard]] bool held() const noexcept { return within == rows; }
};

struct MixedKvCacheOptions {
  DecodeBackend backend = DecodeBackend::kCpu;
  // When set, every attend() also computes the a-posteriori error bound of every output row
  // (decode_bound.h) and records it in monitor(); slower (double, interval arithmetic).
  bool monitor_bounds = false;
  // Where monitor() records; several caches may share one (e.g. one per evaluation window).
  // A new one per cache when null.
  std::shared_ptr<DecodeMonitor> monitor;
  GuardMode guard = GuardMode::kOff;
  // A stochastic policy's seed. Unset (always, outside tests): drawn from the operating system
  // (std::random_device) when the cache is built, kept in memory only, never written.
  std::optional<std::uint64_t> dither_seed;
  // The probabilistic guard's failure probability per row (stochastic policies).
  double guard_delta = 1e-9;
  // The named opt-out: build the cache although the certificate's witnesses were neither
  // re-derived from its trace nor attested (CertifiedPrecisionMap::witnesses_verified() false).
  // Recorded in monitor().unverified_witnesses.
  bool allow_unverified_witnesses = false;
};

class MixedKvCache final : public KvCache {
 public:
  // Throws proofs::Error(kBadInput) "kv cache: ..." when the certificate was not compared with
  // a model (model_verified() false), when its witnesses were neither re-derived nor attested
  // (witnesses_verified() false) unless options.allow_unverified_witnesses, when its map's shape (layers, kv heads, heads, head_dim)
  // is not `shape`, or when its map uses a format this build cannot store (an intB-tP key
  // format whose P is not the map's block). Nothing is allocated then.
  MixedKvCache(const proofs::CertifiedPrecisionMap& certified, const KvCacheShape& shape, std::int64_t capacity,
               const MixedKvCacheOptions& options = {});
  ~MixedKvCache() override;

  // Formats of position t of (layer, kv head): under a certified policy, its age class's at the
  // layer's current length (a position not yet stored: as it would be stored next); else under
  // the map and the newest-block policy.
  [[nodiscard]] proofs::Format key_format(std::int64_t layer, std::int64_t kv_head, std::int64_t position) const;
  [[nodiscard]] proofs::Format value_format(std::int64_t layer, std::int64_t kv_head, std::int64_t position) const;
  // The pages of (layer, kv head) as the kernels read them; valid until the next append.
  [[nodiscard]] StreamView stream(std::int64_t layer, std::int64_t kv_head) const;
  [[nodiscard]] std::int32_t page_size() const noexcept { return page_size_; }
  [[nodiscard]] const std::string& map_sha256() const noexcept { return map_sha256_; }

  [[nodiscard]] CacheMemory memory() const;
  // Stored bits per cached K/V element, measured on the stored positions: (codes + group
  // params + staged rows in use) * 8 / (2 * layers * kv_heads * size() * head_dim).
  [[nodiscard]] double bits_per_element() const;

  // attend() and, per output row, the a-posteriori bound: bounds [heads, n], each >= the L2
  // norm of (out row - the exact attention of the appended keys and values) (decode_bound.h).
  void attend_with_bounds(std::int64_t layer, const float* q, std::int64_t n, float* out, double* bounds) const;

  // attend() and the guard's status of that step (options.guard must not be kOff); bounds, when
  // not null, receives every row's bound of the guard's class [heads, n], deterministic_bounds
  // the deterministic bounds.
  GuardStatus attend_guarded(std::int64_t layer, const float* q, std::int64_t n, float* out, double* bounds = nullptr,
                             double* deterministic_bounds = nullptr) const;
  [[nodiscard]] bool guard_is_probabilistic() const noexcept {
    return policy_ && policy_->rounding == proofs::Rounding::kStochastic;
  }
  // The certificate's epsilon of a layer, rounded down (a bound <= it is within the exact budget).
  [[nodiscard]] double layer_eps_down(std::int64_t layer) const { return layer_eps_down_.at(static_cast<std::size_t>(layer)); }

  // Enables the S2 check: queries at recorded positions are compared with the recorded ones.
  // Throws bad input when the reference's shape does not match the cache.
  void set_s2_reference(S2Reference reference);
  [[nodiscard]] const DecodeMonitor& monitor() const noexcept { return *monitor_; }

 private:
  struct Stream;
  void do_append(std::int64_t layer, const float* k, const float* v, std::int64_t n, std::int64_t first) override;
  void do_attend(std::int64_t layer, const float* q, std::int64_t n, std::int64_t first, float* out) const override;
  [[nodiscard]] std::size_t staged_bytes() const;  // f32 rows of staged pages, in use
  void attend_rows(std::int64_t layer, const float* q, std::int64_t n, std::int64_t first, float* out) const;
  // Every row's decode bound into last_bounds_ and the guard's status into last_guard_.
  void bound_rows(std::int64_t layer, const float* q, std::int64_t n, std::int64_t first, const float* out) const;
  void observe(std::int64_t layer, const float* q, std::int64_t n, std::int64_t first, const float* out) const;
  [[nodiscard]] proofs::AgeClass age_at(std::int64_t layer, std::int64_t position) const;
  [[nodiscard]] Stream& stream_at(std::int64_t layer, std::int64_t kv_head);
  [[nodiscard]] const Stream& stream_at(std::int64_t layer, std::int64_t kv_head) const;

  proofs::PrecisionMap map_;
  std::optional<proofs::PrecisionPolicy> policy_;  // set when the certificate certifies a policy
  std::string map_sha256_;
  std::int32_t page_size_ = 16;
  MixedKvCacheOptions options_;
  std::vector<double> s2_radius_;  // [layers * kv_heads], rounded down
  std::vector<double> layer_eps_down_;  // [layers], rounded down
  mutable GuardStatus last_guard_;      // the guard's verdict on the latest attend()
  mutable std::vector<double> last_bounds_;  // [heads, n] of the latest attend(), when bounded
  mutable std::vector<double> last_deterministic_;  // [heads, n] deterministic bounds of the latest attend()
  S2Reference s2_;
  std::vector<std::unique_ptr<Stream>> streams_;  // [layers * kv_heads]
  std::shared_ptr<DecodeMonitor> monitor_;  // never null; written by the const attend()
};

}  // namespace hnf::runtime
