// Shared pieces of the baseline caches (private to hnf::baselines).
#pragma once

#include <cblas.h>

#include <cstdint>
#include <limits>

#include "hnf/proofs/error.h"
#include "hnf/proofs/float16.h"

namespace hnf::baselines::detail {

[[nodiscard]] inline blasint dim(std::int64_t n) {
  HNF_ASSERT(n >= 0 && n <= std::numeric_limits<blasint>::max(), "matrix dimension exceeds the BLAS integer");
  return static_cast<blasint>(n);
}

// x rounded to fp16 (to nearest, ties to even) and back: exact in fp32.
[[nodiscard]] inline float round_to_fp16(float x) { return proofs::half_bits_to_float(proofs::float_to_half_bits(x)); }

// A stream's index in a cache's [layers * kv_heads] streams.
[[nodiscard]] inline std::size_t stream_index(std::int64_t layer, std::int64_t kv_head, std::int64_t kv_heads) {
  return static_cast<std::size_t>(layer * kv_heads + kv_head);
}

}  // namespace hnf::baselines::detail
