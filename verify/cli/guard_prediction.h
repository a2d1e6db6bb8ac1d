// certify's forecast of the runtime guard (proofs::GuardPrediction): the policy's cache run over
// the calibration trace, every analysed query at its step, the guard's bound per row next to its
// actual error (runtime/guard_calibration.h); epsilon chosen on one split of the rows, the guarded
// fraction of the other split stated as the expectation on unseen text.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "hnf/proofs/certificate.h"
#include "hnf/proofs/policy.h"
#include "hnf/runtime/guard_calibration.h"

namespace hnf::verify::cli {

struct CalibratedGuard {
  bool probabilistic = false;
  std::vector<std::vector<runtime::GuardRow>> layers;  // [layers][rows]
  std::vector<double> output_norm_median;               // [layers] over the rows' ||o||
};

// The guard on every query the policy's S1 covers (analysis::policy_query_indices).
// The guard's failure probability per row for a stochastic policy (the runtime's default too).
inline constexpr double kGuardDelta = 1e-9;
[[nodiscard]] CalibratedGuard calibrate_policy_guard(const std::string& trace_path, const proofs::PrecisionPolicy& policy,
                                                     std::int64_t dense_queries, std::int64_t beyond_stride);

// Whether a row is in the split epsilon is chosen on (queries in even 64-position blocks).
[[nodiscard]] inline bool in_fit_split(const runtime::GuardRow& row) { return (row.position / 64) % 2 == 0; }

// The smallest r with at least `fraction` of the fit split's rows guarded at epsilon_l = r * m_l.
[[nodiscard]] double smallest_guarded_eps_rel(const CalibratedGuard& guard, double fraction);

// Budgets chosen for a storage size (certify --policy auto --bits B without --eps):
// epsilon_l = r x median ||o||_l, r the smallest ratio at which `fraction` of the calibration
// split's rows are guarded, with the forecast at those budgets.
struct GuardedBudgets {
  std::vector<double> layer_eps;  // [layers], rounded down
  double eps_rel = 0.0;           // r
  std::string rule;
  proofs::GuardPrediction prediction;
};
[[nodiscard]] GuardedBudgets guarded_budgets(const CalibratedGuard& guard, double fraction);

// The forecast at these per-layer budgets.
[[nodiscard]] proofs::GuardPrediction predict_guard(const CalibratedGuard& guard, const std::vector<double>& layer_eps,
                                                    const std::string& rule, double eps_rel);

}  // namespace hnf::verify::cli
