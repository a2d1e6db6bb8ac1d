#include "hnf/analysis/policy_allocation.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>

#include <fmt/format.h>

#include "head_data.h"
#include "hnf/analysis/attention_stats.h"
#include "hnf/analysis/kv_rows.h"
#include "hnf/analysis/trace.h"
#include "hnf/proofs/error.h"

namespace hnf::analysis {
namespace {

using detail::each_row;
using proofs::Format;

void validate(const PolicyAllocationOptions& o) {
  if (!(std::isfinite(o.bits) && o.bits > 0.0)) throw proofs::bad_input("--bits", "must be a positive number");
  if (o.query_stride < 1) throw proofs::bad_input("policy allocation", "the query stride must be at least 1");
  const auto is_float = [](const Format& f) { return !proofs::is_integer_encoding(f.encoding); };
  if (!is_float(o.recent_format)) throw proofs::bad_input("policy allocation", "the recent format must be fp16 or bf16");
}

// Formats a unit's old pages may take: fp16, then per bit width the per-token groups that divide
// head_dim and (keys) the per-channel group of one page.
std::vector<Format> old_candidates(bool keys, int head_dim, int page) {
  std::vector<Format> out{{proofs::Encoding::kF16, proofs::GroupAxis::kNone, 0}};
  for (const auto e : {proofs::Encoding::kInt8, proofs::Encoding::kInt4, proofs::Encoding::kInt3, proofs::Encoding::kInt2}) {
    for (const int g : {32, 64, 128}) {
      if (head_dim % g == 0 && g <= head_dim) out.push_back({e, proofs::GroupAxis::kHeadDim, g});
    }
    if (keys) out.push_back({e, proofs::GroupAxis::kTokens, page});
  }
  return out;
}

// Storage bits of one side of one (layer, kv head) at the trace's length with these class formats
// (the expansion's per-page formats, as map_bits_per_element counts them).
double side_bits(const proofs::PrecisionPolicy& rule, const proofs::ClassFormats& formats, std::int64_t tokens, std::int64_t d) {
  double bits = 0.0;
  for (std::int64_t first = 0; first < tokens; first += rule.page) {
    const auto rows = static_cast<double>(std::min<std::int64_t>(rule.page, tokens - first));
    const Format& f = proofs::class_format(formats, proofs::age_class(rule, first, tokens));
    bits += rows * static_cast<double>(d) * proofs::storage_bits_per_element(f);
  }
  return bits;
}

// Plain double attention of q over rows [0, n) of keys and values: out [d].
void attention(const double* q, const RowSource& keys, const RowSource& values, std::size_t n, std::vector<double>& scores,
               double* out) {
  const std::size_t d = keys.dim();
  const double scale = 1.0 / std::sqrt(static_cast<double>(d));
  scores.resize(n);
  double m = -std::numeric_limits<double>::infinity();
  each_row(keys, 0, n, [&](std::size_t t, const double* k) {
    double dot = 0.0;
    for (std::size_t c = 0; c < d; ++c) dot += q[c] * k[c];
    scores[t] = dot * scale;
    m = std::max(m, scores[t]);
  });
  double z = 0.0;
  for (std::size_t t = 0; t < n; ++t) z += (scores[t] = std::exp(scores[t] - m));
  std::fill(out, out + d, 0.0);
  each_row(values, 0, n, [&](std::size_t t, const double* v) {
    const double w = scores[t] / z;
    for (std::size_t c = 0; c < d; ++c) out[c] += w * v[c];
  });
}

struct Unit {
  std::vector<double> error;  // [candidates] mean relative squared error
  std::vector<double> bits;   // [candidates]
};

// The sampled queries of one (layer, kv head): every stride-th recorded query and the last, for
// each query head of the group.
struct Queries {
  std::vector<double> q;                // [J, d]
  std::vector<std::size_t> positions;  // [J]
};

Queries sample_queries(const Trace& trace, const std::string& path, std::int64_t layer, std::int64_t kv_head, std::int64_t stride) {
  const TraceShape& s = trace.shape();
  const auto d = static_cast<std::size_t>(s.head_dim);
  const auto& recorded = trace.query_positions();
  Queries out;
  const std::int64_t group = s.num_heads / s.num_kv_heads;
  for (std::int64_t g = 0; g < group; ++g) {
    const StoredRows q(trace.file(), path, *trace.layers()[static_cast<std::size_t>(layer)].q, kv_head * group + g, 0,
                       s.num_queries, StoredRows::Values::kFinite);
    std::vector<double> row(d);
    for (std::size_t i = 0; i < recorded.size(); ++i) {
      if (i % static_cast<std::size_t>(stride) != 0 && i + 1 != recorded.size()) continue;
      q.read(i, 1, row.data());
      out.q.insert(out.q.end(), row.begin(), row.end());
      out.positions.push_back(static_cast<std::size_t>(recorded[i]));
    }
  }
  return out;
}

// Per candidate old format of one side: the mean over the sampled queries of the relative squared
// error with that side quantized by the policy (aged states) and the other side exact.
Unit measure_side(const StoredRows& keys, const StoredRows& values, bool key_side, const Queries& queries,
                  const std::vector<double>& exact, const proofs::PrecisionPolicy& rule, const PolicyAllocationOptions& o,
                  const std::vector<Format>& candidates, double scale, std::int64_t tokens, std::int64_t layer,
                  std::int64_t kv_head) {
  const std::size_t d = keys.dim(), J = queries.positions.size();
  Unit unit;
  unit.error.assign(candidates.size(), 0.0);
  unit.bits.assign(candidates.size(), 0.0);
#pragma omp parallel for schedule(dynamic)
  for (std::size_t c = 0; c < candidates.size(); ++c) {
    const proofs::ClassFormats formats{o.sink_format, o.recent_format, candidates[c]};
    const AgedRows aged(key_side ? keys : values, rule, formats, layer, kv_head, !key_side);
    std::vector<double> scores, out(d);
    double total = 0.0;
    for (std::size_t j = 0; j < J; ++j) {
      const std::size_t n = queries.positions[j] + 1;
      const AgedRows::State state = aged.at(n);
      attention(queries.q.data() + j * d, key_side ? static_cast<const RowSource&>(state) : keys,
                key_side ? static_cast<const RowSource&>(values) : state, n, scores, out.data());
      double squared = 0.0;
      for (std::size_t i = 0; i < d; ++i) squared += (out[i] - exact[j * d + i]) * (out[i] - exact[j * d + i]);
      total += squared;
    }
    unit.error[c] = total / static_cast<double>(std::max<std::size_t>(1, J)) / (scale * scale);
    unit.bits[c] = side_bits(rule, formats, tokens, static_cast<std::int64_t>(d));
  }
  return unit;
}

// One format per unit minimising sum error + lambda * bits.
std::vector<std::size_t> lagrangian_choice(const std::vector<Unit>& units, double lambda) {
  std::vector<std::size_t> choice;
  for (const Unit& u : units) {
    std::size_t best = 0;
    for (std::size_t c = 1; c < u.error.size(); ++c) {
      if (u.error[c] + lambda * u.bits[c] < u.error[best] + lambda * u.bits[best]) best = c;
    }
    choice.push_back(best);
  }
  return choice;
}

double total(const std::vector<Unit>& units, const std::vector<std::size_t>& choice, bool bits) {
  double sum = 0.0;
  for (std::size_t i = 0; i < units.size(); ++i) sum += bits ? units[i].bits[choice[i]] : units[i].error[choice[i]];
  return sum;
}

// The Lagrangian at the budget, then single-unit upgrades while they fit (best error drop per bit).
std::vector<std::size_t> allocate_units(const std::vector<Unit>& units, double budget) {
  double lo = 0.0, hi = 1.0;
  while (total(units, lagrangian_choice(units, hi), true) > budget && hi < 1e30) hi *= 4.0;
  std::vector<std::size_t> best = lagrangian_choice(units, hi);
  if (total(units, best, true) > budget) return best;  // nothing fits: the caller reports it
  for (int i = 0; i < 100; ++i) {
    const double mid = lo == 0.0 ? hi / 1e12 : std::sqrt(lo * hi);
    const auto choice = lagrangian_choice(units, mid);
    if (total(units, choice, true) <= budget) {
      hi = mid;
      best = choice;
    } else {
      lo = mid;
    }
    if (lo > 0.0 && hi / lo < 1.0 + 1e-9) break;
  }
  for (bool improved = true; improved;) {
    improved = false;
    const double used = total(units, best, true);
    double best_rate = 0.0;
    std::size_t unit = 0, format = 0;
    for (std::size_t i = 0; i < units.size(); ++i) {
      for (std::size_t c = 0; c < units[i].error.size(); ++c) {
        const double gain = units[i].error[best[i]] - units[i].error[c];
        const double extra = units[i].bits[c] - units[i].bits[best[i]];
        if (gain <= 0.0 || used + extra > budget) continue;
        const double rate = extra <= 0.0 ? std::numeric_limits<double>::infinity() : gain / extra;
        if (rate > best_rate) best_rate = rate, unit = i, format = c;
      }
    }
    if (best_rate > 0.0) {
      best[unit] = format;
      improved = true;
    }
  }
  return best;
}

}  // namespace

PolicyAllocation allocate_policy(const std::string& trace_path, const PolicyAllocationOptions& o) {
  const auto start = std::chrono::steady_clock::now();
  validate(o);
  const Trace trace = Trace::open(trace_path);
  const TraceShape& s = trace.shape();
  proofs::PrecisionPolicy rule{.layers = s.num_layers, .kv_heads = s.num_kv_heads, .heads = s.num_heads,
                               .head_dim = s.head_dim, .page = o.page, .sink_pages = o.sink_pages,
                               .recent_pages = o.recent_pages, .entries = {}, .rounding = o.rounding,
                               .calibration_seed = o.rounding == proofs::Rounding::kStochastic ? o.calibration_seed : 0};
  PolicyAllocation result;
  for (const auto& l : attention_stats(trace, 1)) {
    result.output_norm_median.push_back(l.output_norm_median > 0.0 ? l.output_norm_median : 1.0);
  }
  const auto key_formats = old_candidates(true, static_cast<int>(s.head_dim), o.page);
  const auto value_formats = old_candidates(false, static_cast<int>(s.head_dim), o.page);
  std::vector<Unit> units;  // [layers * kv_heads * 2]: keys, values
  const auto d = static_cast<std::size_t>(s.head_dim);
  for (std::int64_t layer = 0; layer < s.num_layers; ++layer) {
    const auto& tl = trace.layers()[static_cast<std::size_t>(layer)];
    for (std::int64_t kvh = 0; kvh < s.num_kv_heads; ++kvh) {
      if (o.progress) o.progress("policy allocation", static_cast<double>(layer * s.num_kv_heads + kvh) /
                                                          static_cast<double>(s.num_layers * s.num_kv_heads));
      const StoredRows keys(trace.file(), trace_path, *tl.k, kvh, 0, s.num_tokens);
      const StoredRows values(trace.file(), trace_path, *tl.v, kvh, 0, s.num_tokens);
      const Queries queries = sample_queries(trace, trace_path, layer, kvh, o.query_stride);
      std::vector<double> exact(queries.q.size()), scores;
      for (std::size_t j = 0; j < queries.positions.size(); ++j) {
        attention(queries.q.data() + j * d, keys, values, queries.positions[j] + 1, scores, exact.data() + j * d);
      }
      const double scale = result.output_norm_median[static_cast<std::size_t>(layer)];
      units.push_back(measure_side(keys, values, true, queries, exact, rule, o, key_formats, scale, s.num_tokens, layer, kvh));
      units.push_back(measure_side(keys, values, false, queries, exact, rule, o, value_formats, scale, s.num_tokens, layer, kvh));
    }
  }
  const double elements = 2.0 * static_cast<double>(s.num_layers * s.num_kv_heads * s.num_tokens * s.head_dim);
  const double budget = o.bits * elements;
  auto policy_of = [&](const std::vector<std::size_t>& choice) {
    proofs::PrecisionPolicy p = rule;
    for (std::int64_t i = 0; i < s.num_layers * s.num_kv_heads; ++i) {
      const auto u = static_cast<std::size_t>(i);
      p.entries.push_back({.layer = i / s.num_kv_heads, .kv_head = i % s.num_kv_heads,
                           .keys = {o.sink_format, o.recent_format, key_formats[choice[2 * u]]},
                           .values = {o.sink_format, o.recent_format, value_formats[choice[2 * u + 1]]}});
    }
    return p;
  };
  auto consider = [&](const std::string& name, const std::vector<std::size_t>& choice) {
    const double bits = total(units, choice, true) / elements;
    const double objective = total(units, choice, false);
    const bool fits = total(units, choice, true) <= budget;
    result.candidates.push_back({name, bits, objective, fits});
    if (fits && (result.chosen.empty() || objective < result.objective)) {
      result.chosen = name;
      result.objective = objective;
      result.bits = bits;
      result.policy = policy_of(choice);
    }
  };
  consider("allocated", allocate_units(units, budget));
  // Uniform points: the same old formats for every unit (KIVI-style when keys are per channel).
  for (std::size_t k = 0; k < key_formats.size(); ++k) {
    for (std::size_t v = 0; v < value_formats.size(); ++v) {
      std::vector<std::size_t> choice;
      for (std::size_t i = 0; i < units.size() / 2; ++i) choice.insert(choice.end(), {k, v});
      consider("uniform " + proofs::format_name(key_formats[k]) + " / " + proofs::format_name(value_formats[v]), choice);
    }
  }
  if (result.chosen.empty()) {
    double smallest = std::numeric_limits<double>::infinity();
    for (const auto& c : result.candidates) smallest = std::min(smallest, c.bits);
    throw proofs::bad_input("--bits", fmt::format("no policy with these sink and recent pages fits {:.4g} bits per element "
                                                  "at {} tokens; the smallest has {:.4g}",
                                                  o.bits, s.num_tokens, smallest));
  }
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return result;
}

}  // namespace hnf::analysis
