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

// Exact comparison: an upper bound in the certificate must not be below its recomputed value.
void at_least(const std::string& what, const std::string& certified, const std::string& recomputed,
              proofs::WitnessCheck& report) {
  ++report.compared;
  if (proofs::compare_rationals(certified, recomputed) < 0) {
    report.problems.push_back(what + ": the certificate says " + certified + ", below the recomputed " + recomputed);
  }
}

// A radius the certificate claims to cover must not exceed the recomputed one.
void at_most(const std::string& what, const std::string& certified, const std::string& recomputed,
             proofs::WitnessCheck& report) {
  ++report.compared;
  if (proofs::compare_rationals(certified, recomputed) > 0) {
    report.problems.push_back(what + ": the certificate says " + certified + ", beyond the recomputed " + recomputed);
  }
}

// The fields every per-layer obligation starts with.
proofs::Obligation layer_obligation(proofs::ObligationKind kind, std::int64_t layer, double budget) {
  proofs::Obligation o;
  o.name = layer_name(layer, kind);
  o.kind = kind;
  o.layer = layer;
  o.budget = proofs::exact_rational(budget);
  return o;
}

AnalysisOptions options_for(const proofs::Certificate& c) {
  AnalysisOptions o;
  o.eps = proofs::rational_to_double(c.eps);
  o.block = c.map.block;
  o.query_positions = c.scope.query_positions;
  if (c.policy) {
    o.policy = c.policy;  // the map is its expansion (the checker compared them)
    return o;
  }
  o.fixed_map = [&c](std::int64_t layer, std::int64_t kv_head, std::size_t units, std::vector<proofs::Format>& keys,
                     std::vector<proofs::Format>& values) {
    const auto& e = c.map.entries.at(static_cast<std::size_t>(layer * c.map.kv_heads + kv_head));
    HNF_ASSERT(e.key_formats.size() == units, "the checked map has one format per unit");
    keys = e.key_formats;
    values = e.value_formats;
  };
  return o;
}

void compare_layer(const proofs::Obligation& certified, const proofs::Obligation& recomputed, proofs::WitnessCheck& report) {
  if (certified.kind == proofs::ObligationKind::kSufficiency) {
    HNF_ASSERT(certified.sufficiency.size() == recomputed.sufficiency.size(), "same scope, same rows");
    for (std::size_t r = 0; r < certified.sufficiency.size(); ++r) {
      at_least(certified.name + " row " + std::to_string(r), certified.sufficiency[r].bound,
               recomputed.sufficiency[r].bound, report);
    }
  } else {
    HNF_ASSERT(certified.necessity.size() == recomputed.necessity.size(), "same map, same rows");
    for (std::size_t r = 0; r < certified.necessity.size(); ++r) {
      const std::string row = certified.name + " row " + std::to_string(r);
      // Per-unit rows (schema 3) name where the unit's largest kappa D^2 is: that must be the trace's.
      if (certified.necessity[r].position != recomputed.necessity[r].position) {
        report.problems.push_back(row + ": position " + std::to_string(certified.necessity[r].position) +
                                  ", the recomputed row is at position " + std::to_string(recomputed.necessity[r].position));
      }
      at_least(row, certified.necessity[r].kappa_d2, recomputed.necessity[r].kappa_d2, report);
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

proofs::HeadScope head_scope(const HeadAnalysis& h) {
  double s2 = 0.0;
  for (const auto& q : h.queries) s2 = std::max(s2, q.s2);
  return {h.layer, h.kv_head, proofs::exact_rational(h.s2_radius), proofs::exact_rational(s2),
          proofs::exact_rational(h.s3_query_norm), proofs::exact_rational(h.s3)};
}

proofs::Obligation sufficiency_obligation(const AnalysisResult& a, std::int64_t layer, double budget) {
  proofs::Obligation o = layer_obligation(proofs::ObligationKind::kSufficiency, layer, budget);
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

proofs::Obligation necessity_obligation(const AnalysisResult& a, std::int64_t layer, double budget, int version) {
  proofs::Obligation o = layer_obligation(proofs::ObligationKind::kNecessity, layer, budget);
  // Theorem 5.7's figures, not an obligation: with the rows below it listed, nothing can fail.
  o.verdict = proofs::Verdict::kDiagnostic;
  o.below_reason =
      "Theorem 5.7 bounds the worst case over a quantization cell; S1 certifies the trace's actual keys, which may "
      "need fewer bits (THEORY.md section 9, status (3))";
  const std::int64_t block = a.options.block;
  const bool per_unit = version >= proofs::kPerUnitNecessityVersion;
  for (const auto& h : a.heads) {
    if (h.layer != layer) continue;
    auto kappa_d2 = [&](std::int64_t t) {
      const auto i = static_cast<std::size_t>(t);
      const double d = h.positions.diameter[i];
      return mul_up(h.positions.kappa[i], mul_up(d, d));
    };
    // 8 budget 4^bits is exact in binary (a power-of-two scaling; +inf only when the exact value
    // exceeds every double, where the comparison is still right). The checker decides the same
    // inequality on rationals and requires the list below to be exactly its failing rows.
    auto add_row = [&](std::int64_t position, double kd2) {
      const int bits = proofs::precision_bits(h.key_formats[static_cast<std::size_t>(position / block)]);
      const double capacity = std::ldexp(budget, 3 + 2 * bits);
      if (capacity < kd2) o.below.push_back(static_cast<std::int64_t>(o.necessity.size()));
      o.necessity.push_back({h.kv_head, position, proofs::exact_rational(kd2), bits});
    };
    if (!per_unit) {
      for (std::int64_t t = 0; t < a.shape.num_tokens; ++t) add_row(t, kappa_d2(t));
      continue;
    }
    for (std::int64_t first = 0; first < a.shape.num_tokens; first += block) {
      // The unit's largest kappa D^2, at its first position on ties.
      std::int64_t at = first;
      double largest = kappa_d2(first);
      for (std::int64_t t = first + 1; t < std::min(a.shape.num_tokens, first + block); ++t) {
        if (const double v = kappa_d2(t); v > largest) {
          largest = v;
          at = t;
        }
      }
      add_row(at, largest);
    }
  }
  return o;
}

proofs::WitnessCheck recompute_witnesses(const proofs::Certificate& c, const std::string& trace_path,
                                         const std::optional<std::filesystem::path>& model_dir) {
  proofs::WitnessCheck report;
  {
    const Trace trace = Trace::open(trace_path);
    for (const char* key : {"model_sha256", "text_sha256"}) {
      const std::string& certified = std::string(key) == "model_sha256" ? c.model_sha256 : c.text_sha256;
      if (trace.metadata().at(key) != certified) report.problems.push_back(std::string(key) + " differs from the trace's");
    }
  }
  const AnalysisResult a = analyze_trace(trace_path, options_for(c));
  for (std::size_t i = 0; i < a.heads.size() && i < c.scope.heads.size(); ++i) {
    const proofs::HeadScope recomputed = head_scope(a.heads[i]);
    const proofs::HeadScope& scope = c.scope.heads[i];
    const std::string where = "scope layer " + std::to_string(recomputed.layer) + " kv head " + std::to_string(recomputed.kv_head);
    at_most(where + " s2_radius", scope.s2_radius, recomputed.s2_radius, report);
    at_least(where + " s2_bound", scope.s2_bound, recomputed.s2_bound, report);
    at_most(where + " s3_query_norm", scope.s3_query_norm, recomputed.s3_query_norm, report);
    at_least(where + " s3_bound", scope.s3_bound, recomputed.s3_bound, report);
  }
  for (const auto& o : c.obligations) {
    if (o.kind == proofs::ObligationKind::kComposition) {
      if (!model_dir) continue;
      const ModelConstants constants = composition_constants(*model_dir);
      for (std::size_t l = 0; l < constants.layers.size() && l < o.lipschitz.size(); ++l) {
        at_least("composition lipschitz " + std::to_string(l), o.lipschitz[l],
                 proofs::exact_rational(constants.layers[l].lipschitz_up), report);
        at_least("composition injection " + std::to_string(l), o.injection[l],
                 proofs::exact_rational(constants.layers[l].injection_up), report);
      }
      continue;
    }
    const double budget = proofs::rational_to_double(o.budget);
    compare_layer(o,
                  o.kind == proofs::ObligationKind::kSufficiency ? sufficiency_obligation(a, o.layer, budget)
                                                                 : necessity_obligation(a, o.layer, budget, c.version),
                  report);
  }
  return report;
}

}  // namespace hnf::analysis
