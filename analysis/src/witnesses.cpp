#include "hnf/analysis/witnesses.h"

#include <algorithm>
#include <cmath>

#include "hnf/analysis/composition.h"
#include "hnf/analysis/interval.h"
#include "hnf/proofs/error.h"

namespace hnf::analysis {
namespace {

std::string layer_name(std::int64_t layer, proofs::ObligationKind kind) {
  return "layer" + std::to_string(layer) + "_" + std::string(proofs::obligation_kind_name(kind));
}

// Both values are exact dyadics (doubles); the certificate's must not be below the recomputed.
void compare(const std::string& what, const std::string& certified, double recomputed, RecomputeReport& report) {
  ++report.compared;
  if (proofs::rational_to_double(certified) < recomputed) {
    report.problems.push_back(what + ": the certificate says " + certified + ", the trace gives " +
                              proofs::exact_rational(recomputed));
  }
}

AnalysisOptions options_for(const proofs::Certificate& c) {
  AnalysisOptions o;
  o.eps = proofs::rational_to_double(c.eps);
  o.block = c.map.block;
  o.query_positions = c.scope.query_positions;
  o.fixed_map = [&c](std::int64_t layer, std::int64_t kv_head, std::size_t units, std::vector<proofs::Format>& keys,
                     std::vector<proofs::Format>& values) {
    const auto& e = c.map.entries.at(static_cast<std::size_t>(layer * c.map.kv_heads + kv_head));
    HNF_ASSERT(e.key_formats.size() == units, "the checked map has one format per unit");
    keys = e.key_formats;
    values = e.value_formats;
  };
  return o;
}

void compare_layer(const proofs::Obligation& certified, const proofs::Obligation& recomputed, RecomputeReport& report) {
  if (certified.kind == proofs::ObligationKind::kSufficiency) {
    HNF_ASSERT(certified.sufficiency.size() == recomputed.sufficiency.size(), "same scope, same rows");
    for (std::size_t r = 0; r < certified.sufficiency.size(); ++r) {
      compare(certified.name + " row " + std::to_string(r), certified.sufficiency[r].bound,
              proofs::rational_to_double(recomputed.sufficiency[r].bound), report);
    }
  } else {
    HNF_ASSERT(certified.necessity.size() == recomputed.necessity.size(), "same map, same rows");
    for (std::size_t r = 0; r < certified.necessity.size(); ++r) {
      compare(certified.name + " row " + std::to_string(r), certified.necessity[r].kappa_d2,
              proofs::rational_to_double(recomputed.necessity[r].kappa_d2), report);
    }
  }
}

}  // namespace

proofs::PrecisionMap precision_map(const AnalysisResult& a) {
  proofs::PrecisionMap m;
  m.layers = a.shape.num_layers;
  m.kv_heads = a.shape.num_kv_heads;
  m.heads = a.shape.num_heads;
  m.head_dim = a.shape.head_dim;
  m.tokens = a.shape.num_tokens;
  m.block = a.options.block;
  for (const auto& h : a.heads) m.entries.push_back({h.layer, h.kv_head, h.key_formats, h.value_formats});
  return m;
}

proofs::Obligation sufficiency_obligation(const AnalysisResult& a, std::int64_t layer, double budget) {
  proofs::Obligation o;
  o.name = layer_name(layer, proofs::ObligationKind::kSufficiency);
  o.kind = proofs::ObligationKind::kSufficiency;
  o.layer = layer;
  o.budget = proofs::exact_rational(budget);
  for (const auto& h : a.heads) {
    if (h.layer != layer) continue;
    auto queries = h.queries;
    std::sort(queries.begin(), queries.end(), [](const auto& x, const auto& y) {
      return std::pair(x.head, x.position) < std::pair(y.head, y.position);
    });
    for (const auto& q : queries) o.sufficiency.push_back({h.kv_head, q.head, q.position, proofs::exact_rational(q.s1)});
  }
  return o;
}

proofs::Obligation necessity_obligation(const AnalysisResult& a, std::int64_t layer, double budget) {
  proofs::Obligation o;
  o.name = layer_name(layer, proofs::ObligationKind::kNecessity);
  o.kind = proofs::ObligationKind::kNecessity;
  o.layer = layer;
  o.budget = proofs::exact_rational(budget);
  o.below_reason =
      "Theorem 5.7 bounds the worst case over a quantization cell; S1 certifies the trace's actual keys, which may "
      "need fewer bits (THEORY.md section 9, status (3))";
  for (const auto& h : a.heads) {
    if (h.layer != layer) continue;
    for (std::int64_t t = 0; t < a.shape.num_tokens; ++t) {
      const auto i = static_cast<std::size_t>(t);
      const double d = h.positions.diameter[i];
      const double kd2 = mul_up(h.positions.kappa[i], mul_up(d, d));
      const int bits = proofs::precision_bits(h.key_formats[static_cast<std::size_t>(t / a.options.block)]);
      // 8 budget 4^bits rounded down: a row is listed below whenever it might fail; the
      // checker re-decides each row exactly and rejects a wrong list.
      const double capacity = mul_down(8.0 * budget, std::ldexp(1.0, 2 * bits));
      if (!(capacity > kd2)) o.below.push_back(static_cast<std::int64_t>(o.necessity.size()));
      o.necessity.push_back({h.kv_head, t, proofs::exact_rational(kd2), bits});
    }
  }
  return o;
}

RecomputeReport recompute_witnesses(const proofs::Certificate& c, const std::string& trace_path,
                                    const std::optional<std::filesystem::path>& model_dir) {
  const AnalysisResult a = analyze_trace(trace_path, options_for(c));
  RecomputeReport report;
  for (const auto& o : c.obligations) {
    if (o.kind == proofs::ObligationKind::kComposition) {
      if (!model_dir) continue;
      const ModelConstants constants = composition_constants(*model_dir);
      for (std::size_t l = 0; l < constants.layers.size() && l < o.lipschitz.size(); ++l) {
        compare("composition lipschitz " + std::to_string(l), o.lipschitz[l], constants.layers[l].lipschitz_up, report);
        compare("composition injection " + std::to_string(l), o.injection[l], constants.layers[l].injection_up, report);
      }
      continue;
    }
    const double budget = proofs::rational_to_double(o.budget);
    compare_layer(o,
                  o.kind == proofs::ObligationKind::kSufficiency ? sufficiency_obligation(a, o.layer, budget)
                                                                 : necessity_obligation(a, o.layer, budget),
                  report);
  }
  return report;
}

}  // namespace hnf::analysis
