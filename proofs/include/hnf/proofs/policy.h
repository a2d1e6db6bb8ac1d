// Precision policies: what a certificate certifies and what the runtime cache does (THEORY.md
// section 14). A policy gives the format of a stored K or V row as a function of what the
// runtime knows when it stores or re-stores the row: layer, kv head, K or V, and the row's age
// class at that moment. One definition, shared by the analysis (S1 over aged cache states), the
// checker, the runtime cache and the baselines: a uniform map, a per-head uniform map and a
// KIVI-style map (recent rows kept at fp16) are all points of this space.
//
// Age classes are page-granular (a page is `page` consecutive positions, the unit of
// per-channel key groups): with n positions stored, page g = t / page of position t is
//   sink    when g < sink_pages,
//   recent  when g >= ceil(n / page) - recent_pages (the newest pages, the partial one included),
//   old     otherwise.
// When a new page opens, the page that leaves the recent window is re-quantized to the old
// format from the values the cache holds (the recent format's stored values), never from data
// it dropped. A recent format is therefore fp16 or bf16 (its values are floats, so the
// re-quantization reads exactly what is stored) or the same as the old format (nothing
// migrates). With recent_pages >= 1 the partial page is always recent, so an old page is full.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "hnf/proofs/format.h"

namespace hnf::proofs {

struct PrecisionMap;  // certificate.h, which includes this header

enum class AgeClass : std::uint8_t { kSink = 0, kRecent = 1, kOld = 2 };
inline constexpr std::size_t kAgeClasses = 3;
[[nodiscard]] std::string_view age_class_name(AgeClass age) noexcept;  // "sink", "recent", "old"

// Formats of one (layer, kv head, K or V) by age class: [sink, recent, old].
using ClassFormats = std::array<Format, kAgeClasses>;

struct HeadPolicy {
  std::int64_t layer = 0;
  std::int64_t kv_head = 0;
  ClassFormats keys;
  ClassFormats values;
};

// How integer codes are rounded: to nearest (the reference quantizer), or stochastically with a
// per-cache seed (format.h, THEORY.md section 15): the runtime draws its seed from the operating
// system and never writes it; the calibration's S1 uses calibration_seed, recorded here.
enum class Rounding : std::uint8_t { kNearest = 0, kStochastic = 1 };
// Seeds are below 2^53 (a JSON number holds them exactly).
inline constexpr std::uint64_t kSeedLimit = std::uint64_t{1} << 53;

struct PrecisionPolicy {
  std::int64_t layers = 0;
  std::int64_t kv_heads = 0;
  std::int64_t heads = 0;  // query heads
  std::int64_t head_dim = 0;
  int page = 16;                  // 16, 32 or 64 positions
  std::int64_t sink_pages = 0;    // >= 0
  std::int64_t recent_pages = 1;  // >= 1
  std::vector<HeadPolicy> entries;  // [layers * kv_heads], layer-major
  Rounding rounding = Rounding::kNearest;
  std::uint64_t calibration_seed = 0;  // stochastic rounding only: the calibration run's seed
};

// The draws of one (layer, kv head, K or V, age class) of a stochastic policy with this seed.
[[nodiscard]] DitherKey dither_key(const PrecisionPolicy& policy, std::uint64_t seed, std::int64_t layer,
                                   std::int64_t kv_head, bool values, AgeClass age) noexcept;

// The age class of position t when `length` positions are stored (0 <= t < length).
[[nodiscard]] AgeClass age_class(const PrecisionPolicy& policy, std::int64_t position, std::int64_t length) noexcept;

// The policy's format for a row of one class.
[[nodiscard]] inline const Format& class_format(const ClassFormats& formats, AgeClass age) noexcept {
  return formats[static_cast<std::size_t>(age)];
}

// Why the policy is not well formed, or empty: shape positive and heads a multiple of kv_heads;
// page in {16, 32, 64}; sink_pages >= 0, recent_pages >= 1; one entry per (layer, kv head) in
// layer-major order; every format valid for head_dim (format.h), a per-channel format (intB-tP)
// only for keys and with P == page; a recent format fp16, bf16 or equal to the old format.
[[nodiscard]] std::string policy_problem(const PrecisionPolicy& policy);

// SHA-256 of the canonical text ("hnf-policy 1", the shape and page rule, one line per entry
// with the format names): the identity the certificate, the runtime and reports use.
[[nodiscard]] std::string policy_sha256(const PrecisionPolicy& policy);

// The cache state after `length` appends as an absolute-position map (block = page): the
// policy's expansion for one trace, for reports and for the per-unit accounting the map code
// already does. Requires a well-formed policy and length >= 1.
[[nodiscard]] PrecisionMap expand_policy(const PrecisionPolicy& policy, std::int64_t length);

// Storage bits per K/V element of the cache state after `length` appends, metadata included
// (map_bits_per_element of the expansion).
[[nodiscard]] double policy_bits_per_element(const PrecisionPolicy& policy, std::int64_t length);

// A policy with the same three formats for every unit: keys [sink, recent, old] and values
// [sink, recent, old].
[[nodiscard]] PrecisionPolicy uniform_policy(std::int64_t layers, std::int64_t kv_heads, std::int64_t heads,
                                             std::int64_t head_dim, int page, std::int64_t sink_pages,
                                             std::int64_t recent_pages, const ClassFormats& keys,
                                             const ClassFormats& values);

// The policy spec of the command line: space- or comma-separated `key=value` items
//   page=16 sink=1 recent=1 (pages) k=fp16/fp16/int4-t16 v=fp16/fp16/int4-d64 [rounding=stochastic seed=N]
// (formats sink/recent/old; a single format means the same for every class). Defaults: page 16,
// sink 1, recent 1, rounding nearest, seed 1. Every unit gets the same formats. Bad input naming `what` on anything else.
[[nodiscard]] PrecisionPolicy parse_policy_spec(std::string_view spec, std::int64_t layers, std::int64_t kv_heads,
                                                std::int64_t heads, std::int64_t head_dim, const std::string& what);

}  // namespace hnf::proofs
