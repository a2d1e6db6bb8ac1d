// Where the recorded queries of a trace put their attention mass: on the first position (the
// "attention sink" of real LLMs) and on the most recent positions. Computed from the trace's
// post-RoPE queries and keys with causal softmax attention, in double precision.
#pragma once

#include <cstdint>
#include <vector>

#include "hnf/analysis/trace.h"

namespace hnf::analysis {

struct LayerAttentionStats {
  std::int64_t layer = 0;
  double first_token_mass = 0.0;   // mean over heads and queries of the weight on position 0
  double recent_mass = 0.0;        // mean of the total weight on the `recent` newest positions (query's own included)
  double max_weight = 0.0;         // mean of the largest single weight
  std::int64_t queries = 0;        // (head, query) pairs averaged over
  // Percentiles of the attention output's norm ||o||_2 over those pairs: the layer's scale, which
  // a relative budget (certify --eps-rel) multiplies.
  double output_norm_p10 = 0.0;
  double output_norm_median = 0.0;
  double output_norm_p90 = 0.0;
};

// One entry per layer. `recent` >= 1. Queries at position p attend to positions 0..p.
[[nodiscard]] std::vector<LayerAttentionStats> attention_stats(const Trace& trace, std::int64_t recent);

}  // namespace hnf::analysis
