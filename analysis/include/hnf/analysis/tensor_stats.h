// Summary statistics of one stored tensor, computed by streaming over its bytes.
#pragma once

#include <cstdint>
#include <functional>

#include "hnf/proofs/safetensors.h"

namespace hnf::analysis {

struct TensorStats {
  std::uint64_t numel = 0;
  std::uint64_t nan_count = 0;
  std::uint64_t inf_count = 0;
  std::uint64_t finite_count = 0;
  // Over finite elements only; all 0 when finite_count == 0. Rounded to nearest (a summary,
  // not a bound).
  double min_abs = 0.0;
  double max_abs = 0.0;
  double mean_abs = 0.0;
};

// Reads `tensor` (any dtype) in chunks and drops each chunk from resident memory after use,
// so peak memory stays near one chunk whatever the tensor's size. `on_bytes(n)` (optional)
// is told the bytes done so far, for progress display.
[[nodiscard]] TensorStats compute_stats(const proofs::SafetensorsFile& file, const proofs::TensorInfo& tensor,
                                        const std::function<void(std::uint64_t)>& on_bytes = {});

}  // namespace hnf::analysis
