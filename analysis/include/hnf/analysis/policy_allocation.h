// Choosing a precision policy for a storage budget (an untrusted heuristic: whatever it returns
// is certified, or not, by the S1 obligations and the guard). The search space: per (layer, kv
// head, K or V) the old pages' format, with the sink and recent formats given; uniform maps,
// KIVI-style maps (keys per channel, values per token) and per-head uniform maps are all points
// of it. The objective is separable: per unit and candidate format, the mean over sampled
// calibration queries of ||o_hat - o||^2 / m_l^2 with only that unit quantized (the other side
// exact), each query at its aged cache state, m_l the layer's median ||o||. A Lagrangian picks one
// format per unit at the budget; every uniform point that fits is evaluated on the same objective
// and wins when it is better, so the result is never worse on this objective than any of them.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "hnf/proofs/certificate.h"
#include "hnf/proofs/policy.h"

namespace hnf::analysis {

struct PolicyAllocationOptions {
  double bits = 4.0;  // average storage bits per K/V element at the trace's length, metadata included
  int page = 16;
  std::int64_t sink_pages = 1;
  std::int64_t recent_pages = 1;
  proofs::Format sink_format{proofs::Encoding::kF16, proofs::GroupAxis::kNone, 0};
  proofs::Format recent_format{proofs::Encoding::kF16, proofs::GroupAxis::kNone, 0};
  std::int64_t query_stride = 8;  // sample every N-th recorded query (and the last)
  // Stochastic rounding (the probabilistic guard's route) with this calibration seed, or nearest.
  proofs::Rounding rounding = proofs::Rounding::kStochastic;
  std::uint64_t calibration_seed = 1;
  std::function<void(std::string_view, double)> progress;
};

struct PolicyCandidate {
  std::string name;         // "allocated", "uniform int4-t16 / int4-d64", ...
  double bits = 0.0;        // at the trace's length
  double objective = 0.0;   // sum over units of the mean relative squared error
  bool fits = false;        // bits <= the budget
};

struct PolicyAllocation {
  proofs::PrecisionPolicy policy;
  std::string chosen;                     // the candidate's name
  double bits = 0.0;
  double objective = 0.0;
  std::vector<PolicyCandidate> candidates;  // every evaluated point, the chosen one included
  std::vector<double> output_norm_median;   // [layers] m_l
  double seconds = 0.0;
};

// Throws proofs::Error(kBadInput) for a trace it cannot read or options out of range, and when no
// point of the space fits the budget (naming the smallest size there is).
[[nodiscard]] PolicyAllocation allocate_policy(const std::string& trace_path, const PolicyAllocationOptions& options);

}  // namespace hnf::analysis
