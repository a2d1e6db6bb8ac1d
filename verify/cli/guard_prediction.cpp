#include "guard_prediction.h"

#include <algorithm>
#include <cmath>

#include "hnf/analysis/analyze.h"
#include "hnf/analysis/kv_rows.h"
#include "hnf/analysis/trace.h"
#include <fmt/format.h>

#include "hnf/proofs/directed.h"
#include "hnf/proofs/error.h"

namespace hnf::verify::cli {

CalibratedGuard calibrate_policy_guard(const std::string& trace_path, const proofs::PrecisionPolicy& policy,
                                       std::int64_t dense_queries, std::int64_t beyond_stride) {
  const auto trace = analysis::Trace::open(trace_path);
  const analysis::TraceShape& s = trace.shape();
  const auto d = static_cast<std::size_t>(s.head_dim);
  const auto indices = analysis::policy_query_indices(trace.query_positions(), dense_queries, beyond_stride);
  std::vector<std::int64_t> positions;
  for (const std::size_t i : indices) positions.push_back(trace.query_positions()[i]);
  const std::int64_t group = s.num_heads / s.num_kv_heads;
  CalibratedGuard out;
  out.probabilistic = policy.rounding == proofs::Rounding::kStochastic;
  out.layers.resize(static_cast<std::size_t>(s.num_layers));
  for (std::int64_t l = 0; l < s.num_layers; ++l) {
    const auto& tl = trace.layers()[static_cast<std::size_t>(l)];
    for (std::int64_t g = 0; g < s.num_kv_heads; ++g) {
      const auto rows = static_cast<std::size_t>(s.num_tokens);
      std::vector<float> keys(rows * d), values(rows * d);
      analysis::StoredRows(trace.file(), trace_path, *tl.k, g, 0, s.num_tokens).read_floats(0, rows, keys.data());
      analysis::StoredRows(trace.file(), trace_path, *tl.v, g, 0, s.num_tokens).read_floats(0, rows, values.data());
      std::vector<float> queries, row(d);
      for (std::int64_t h = 0; h < group; ++h) {
        const analysis::StoredRows q(trace.file(), trace_path, *tl.q, g * group + h, 0, s.num_queries,
                                     analysis::StoredRows::Values::kFinite);
        for (const std::size_t i : indices) {
          q.read_floats(i, 1, row.data());
          queries.insert(queries.end(), row.begin(), row.end());
        }
      }
      const auto& head = policy.entries[static_cast<std::size_t>(l * s.num_kv_heads + g)];
      auto found = runtime::calibrate_guard(policy, head, keys, values, queries, positions, g * group, kGuardDelta);
      auto& layer = out.layers[static_cast<std::size_t>(l)];
      layer.insert(layer.end(), found.begin(), found.end());
    }
    std::vector<double> norms;
    for (const auto& r : out.layers[static_cast<std::size_t>(l)]) norms.push_back(r.output_norm);
    std::sort(norms.begin(), norms.end());
    out.output_norm_median.push_back(norms.empty() ? 1.0 : std::max(norms[norms.size() / 2], 1e-30));
  }
  return out;
}

double smallest_guarded_eps_rel(const CalibratedGuard& guard, double fraction) {
  std::vector<double> ratios;
  for (std::size_t l = 0; l < guard.layers.size(); ++l) {
    for (const auto& r : guard.layers[l]) {
      if (in_fit_split(r)) ratios.push_back(r.bound / guard.output_norm_median[l]);
    }
  }
  if (ratios.empty()) throw proofs::bad_input("certify", "the calibration trace has no query to choose epsilon on");
  std::sort(ratios.begin(), ratios.end());
  // The smallest r with at least `fraction` of the rows at or below it, stepped up so that
  // r * m_l (in double) stays at or above each of those rows' bound.
  const auto k = static_cast<std::size_t>(std::ceil(fraction * static_cast<double>(ratios.size()))) - 1;
  return std::nextafter(std::nextafter(ratios[std::min(k, ratios.size() - 1)], INFINITY), INFINITY);
}

GuardedBudgets guarded_budgets(const CalibratedGuard& guard, double fraction) {
  GuardedBudgets b;
  b.eps_rel = smallest_guarded_eps_rel(guard, fraction);
  for (const double m : guard.output_norm_median) b.layer_eps.push_back(proofs::mul_down(b.eps_rel, m));
  b.rule = fmt::format("r x median ||o|| of the layer, r = {:.4g} the smallest ratio with {:g} % of the calibration split's "
                       "rows guarded",
                       b.eps_rel, 100.0 * fraction);
  b.prediction = predict_guard(guard, b.layer_eps, b.rule, b.eps_rel);
  return b;
}

proofs::GuardPrediction predict_guard(const CalibratedGuard& guard, const std::vector<double>& layer_eps,
                                      const std::string& rule, double eps_rel) {
  proofs::GuardPrediction p;
  p.rule = rule;
  p.kind = guard.probabilistic ? "probabilistic" : "deterministic";
  p.delta = guard.probabilistic ? kGuardDelta : 0.0;
  p.eps_rel = eps_rel;
  p.output_norm_median = guard.output_norm_median;
  std::vector<double> actual;
  p.layer_rows.assign(guard.layers.size(), 0);
  p.layer_within.assign(guard.layers.size(), 0);
  for (std::size_t l = 0; l < guard.layers.size(); ++l) {
    for (const auto& r : guard.layers[l]) {
      const bool within = r.bound <= layer_eps.at(l);
      ++p.layer_rows[l];
      p.layer_within[l] += within ? 1 : 0;
      if (in_fit_split(r)) {
        ++p.calibration_rows;
        p.calibration_within += within ? 1 : 0;
      } else {
        ++p.heldout_rows;
        p.heldout_within += within ? 1 : 0;
      }
      if (!r.float_only) actual.push_back(r.actual);
    }
  }
  std::sort(actual.begin(), actual.end());
  p.median_actual = actual.empty() ? 0.0 : actual[actual.size() / 2];
  return p;
}

}  // namespace hnf::verify::cli
