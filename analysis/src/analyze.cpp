#include "hnf/analysis/analyze.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <limits>
#include <numeric>

#include "hnf/analysis/allocation.h"
#include "hnf/analysis/attention_enclosure.h"
#include "hnf/analysis/interval.h"
#include "hnf/analysis/kv_rows.h"
#include "head_data.h"
#include "scope_bounds.h"
#include "hnf/proofs/error.h"

namespace hnf::analysis {
namespace {

using namespace detail;
using proofs::Format;

double norm_nearest(const double* x, std::size_t n) {
  double s = 0.0;
  for (std::size_t i = 0; i < n; ++i) s += x[i] * x[i];
  return std::sqrt(s);
}


// Indices into the trace's recorded queries: the newest `last` plus every `stride`-th.
std::size_t effective_stride(std::size_t recorded, std::int64_t last, std::int64_t stride) {
  return stride > 0 ? static_cast<std::size_t>(stride)
                    : std::max<std::size_t>(1, recorded / std::max<std::size_t>(1, static_cast<std::size_t>(last)));
}

std::vector<std::size_t> select_queries(std::size_t recorded, std::int64_t last, std::int64_t stride) {
  std::vector<std::size_t> out;
  const auto n_last = std::min<std::size_t>(recorded, static_cast<std::size_t>(last));
  const std::size_t step = effective_stride(recorded, last, stride);
  for (std::size_t i = 0; i + n_last < recorded; i += step) out.push_back(i);
  for (std::size_t i = recorded - n_last; i < recorded; ++i) out.push_back(i);
  return out;
}

// Indices of the recorded queries at `positions` (strictly increasing, each recorded).
std::vector<std::size_t> queries_at(const Trace& trace, const std::vector<std::int64_t>& positions, const std::string& path) {
  const auto& recorded = trace.query_positions();
  std::vector<std::size_t> out;
  for (std::size_t i = 0; i < positions.size(); ++i) {
    if (i > 0 && positions[i] <= positions[i - 1]) throw proofs::bad_input(path, "query positions must increase strictly");
    const auto it = std::lower_bound(recorded.begin(), recorded.end(), positions[i]);
    if (it == recorded.end() || *it != positions[i]) {
      throw proofs::bad_input(path, "no recorded query at position " + std::to_string(positions[i]));
    }
    out.push_back(static_cast<std::size_t>(it - recorded.begin()));
  }
  return out;
}

HeadInputs load_head(const Trace& trace, const std::string& path, std::int64_t layer, std::int64_t kv_head,
                     const std::vector<std::size_t>& subset) {
  const TraceShape& s = trace.shape();
  const TraceLayer& tl = trace.layers()[static_cast<std::size_t>(layer)];
  HeadInputs h;
  h.layer = layer;
  h.kv_head = kv_head;
  h.tokens = static_cast<std::size_t>(s.num_tokens);
  h.d = static_cast<std::size_t>(s.head_dim);
  h.keys = StoredRows(trace.file(), path, *tl.k, kv_head, 0, s.num_tokens);
  h.values = StoredRows(trace.file(), path, *tl.v, kv_head, 0, s.num_tokens);
  h.key_norms.resize(h.tokens);
  each_row(h.keys, 0, h.tokens, [&](std::size_t t, const double* row) { h.key_norms[t] = norm_up(row, h.d, 0); });

  const std::int64_t group = s.num_heads / s.num_kv_heads;
  const auto& positions = trace.query_positions();
  std::vector<float> q_all;
  struct Row { std::int64_t position; std::int64_t head; std::vector<double> q; };
  std::vector<Row> rows;
  for (std::int64_t g = 0; g < group; ++g) {
    const std::int64_t head = kv_head * group + g;
    q_all.resize(static_cast<std::size_t>(s.num_queries) * h.d);
    StoredRows(trace.file(), path, *tl.q, head, 0, s.num_queries, StoredRows::Values::kFinite)
        .read_floats(0, static_cast<std::size_t>(s.num_queries), q_all.data());
    std::vector<double> row(h.d);
    for (std::size_t i = 0; i < static_cast<std::size_t>(s.num_queries); ++i) {
      std::copy_n(q_all.begin() + static_cast<std::ptrdiff_t>(i * h.d), h.d, row.begin());
      h.max_query_norm = std::max(h.max_query_norm, norm_up(row.data(), h.d, 0));
    }
    for (std::size_t i : subset) {
      Row r{positions[i], head, {q_all.begin() + static_cast<std::ptrdiff_t>(i * h.d),
                                 q_all.begin() + static_cast<std::ptrdiff_t>((i + 1) * h.d)}};
      if (i > 0) {
        double dist = 0.0;
        for (std::size_t c = 0; c < h.d; ++c) {
          const double diff = r.q[c] - q_all[(i - 1) * h.d + c];
          dist += diff * diff;
        }
        h.radius_samples.push_back(std::sqrt(dist));
      }
      rows.push_back(std::move(r));
    }
  }
  std::stable_sort(rows.begin(), rows.end(), [](const Row& a, const Row& b) { return a.position < b.position; });
  for (const auto& r : rows) {
    h.positions.push_back(r.position);
    h.heads.push_back(r.head);
    h.queries.insert(h.queries.end(), r.q.begin(), r.q.end());
  }
  trace.file().release(*tl.q, 0, tl.q->nbytes());
  trace.file().release(*tl.k, 0, tl.k->nbytes());
  trace.file().release(*tl.v, 0, tl.v->nbytes());
  return h;
}

// ---------------------------------------------------------------------------------------------
// Exact attention of the analysed queries (round to nearest: statistics and the model)

// s_jt = q_j . k_t in one fixed order: exact_attention and unit_attention must agree bit for bit.
double query_key_dot(const double* q, const double* k, std::size_t d) {
  double s = 0.0;
  for (std::size_t c = 0; c < d; ++c) s += q[c] * k[c];
  return s;
}

double squared_distance(const double* v, const double* o, std::size_t d) {
  double dist = 0.0;
  for (std::size_t c = 0; c < d; ++c) {
    const double diff = v[c] - o[c];
    dist += diff * diff;
  }
  return dist;
}

ExactAttention exact_attention(const HeadInputs& h) {
  ExactAttention ex;
  const std::size_t J = h.positions.size();
  const std::size_t d = h.d;
  ex.J = J;
  ex.max_score.resize(J);
  ex.normaliser.resize(J);
  ex.output.resize(J * d);
  ex.enclosure.resize(J);
  ex.query_norm.resize(J);
  const double scale = 1.0 / std::sqrt(static_cast<double>(d));
#pragma omp parallel for schedule(dynamic)
  for (std::size_t j = 0; j < J; ++j) {
    const double* q = h.queries.data() + j * d;
    const auto n = static_cast<std::size_t>(h.positions[j]) + 1;
    ex.query_norm[j] = norm_nearest(q, d);
    std::vector<double> a(n);
    double m = -std::numeric_limits<double>::infinity();
    each_row(h.keys, 0, n, [&](std::size_t t, const double* k) {
      a[t] = query_key_dot(q, k, d) * scale;
      m = std::max(m, a[t]);
    });
    double z = 0.0;
    for (std::size_t t = 0; t < n; ++t) z += (a[t] = std::exp(a[t] - m));
    double* o = ex.output.data() + j * d;
    each_row(h.values, 0, n, [&](std::size_t t, const double* v) {
      a[t] /= z;
      for (std::size_t c = 0; c < d; ++c) o[c] += a[t] * v[c];
    });
    ex.max_score[j] = m;
    ex.normaliser[j] = z;
    ex.enclosure[j] = enclose_attention_output({q, d}, h.keys, h.key_norms, h.values, n);
  }
  return ex;
}

// The weights a_jt and distances ||v_t - o_j|| of rows [first, first + rows) for every query,
// rounded to float as the statistics and the model use them: weight, distance [rows, J], 0 where
// t > position_j. keys, values [rows, d]: the exact rows.
void unit_attention(const HeadInputs& h, const ExactAttention& ex, const double* keys, const double* values,
                    std::size_t first, std::size_t rows, std::vector<float>& weight, std::vector<float>& distance) {
  const std::size_t J = ex.J, d = h.d;
  const double scale = 1.0 / std::sqrt(static_cast<double>(d));
  weight.assign(rows * J, 0.0f);
  distance.assign(rows * J, 0.0f);
  for (std::size_t r = 0; r < rows; ++r) {
    const std::size_t t = first + r;
    for (std::size_t j = 0; j < J; ++j) {
      if (static_cast<std::size_t>(h.positions[j]) < t) continue;
      const double a = std::exp(query_key_dot(h.queries.data() + j * d, keys + r * d, d) * scale - ex.max_score[j]) /
                       ex.normaliser[j];
      weight[r * J + j] = static_cast<float>(a);
      distance[r * J + j] = static_cast<float>(std::sqrt(squared_distance(values + r * d, ex.output.data() + j * d, d)));
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Per-position statistics, curvature, Lipschitz constants, diameter

PositionAnalysis empty_positions(std::size_t tokens) {
  PositionAnalysis p;
  p.max_weight.assign(tokens, 0.0f);
  p.mean_weight.assign(tokens, 0.0f);
  p.kappa.assign(tokens, 0.0);
  p.lipschitz_k.assign(tokens, 0.0f);
  p.lipschitz_v.assign(tokens, 0.0f);
  p.diameter.assign(tokens, 0.0);
  p.p_min.assign(tokens, 0);
  return p;
}

// The statistics of rows [first, first + rows) from their unit_attention; keys [rows, d].
void position_statistics(const HeadInputs& h, const ExactAttention& ex, const double* keys, std::size_t first,
                         std::size_t rows, const std::vector<float>& weight, const std::vector<float>& distance,
                         PositionAnalysis& p) {
  const std::size_t J = ex.J, d = h.d;
  for (std::size_t r = 0; r < rows; ++r) {
    const std::size_t t = first + r;
    double sum = 0.0, max_weight = 0.0, kappa = 0.0, lipschitz_k = 0.0;
    std::size_t seen = 0;
    for (std::size_t j = 0; j < J; ++j) {
      if (static_cast<std::size_t>(h.positions[j]) < t) continue;
      const double a = weight[r * J + j];
      const double w = distance[r * J + j];
      const double qn = ex.query_norm[j];
      ++seen;
      sum += a;
      max_weight = std::max(max_weight, a);
      // Hessian of o_j in k_t: (q q^T / d) (x) a (1 - 2a) (v_t - o_j); its norm over 2.
      kappa = std::max(kappa, 0.5 * qn * qn / static_cast<double>(d) * a * std::fabs(1.0 - 2.0 * a) * w);
      // Jacobian of o_j in k_t: a (v_t - o_j) q^T / sqrt(d); in v_t: a I.
      lipschitz_k = std::max(lipschitz_k, a * w * qn / std::sqrt(static_cast<double>(d)));
    }
    p.max_weight[t] = static_cast<float>(max_weight);  // a float already (the weights are)
    p.lipschitz_v[t] = static_cast<float>(max_weight);
    p.kappa[t] = kappa;
    p.lipschitz_k[t] = static_cast<float>(lipschitz_k);
    p.mean_weight[t] = seen > 0 ? static_cast<float>(sum / static_cast<double>(seen)) : 0.0f;
    const auto [lo, hi] = std::minmax_element(keys + r * d, keys + (r + 1) * d);
    p.diameter[t] = *hi - *lo;
  }
}

// ---------------------------------------------------------------------------------------------
// Quantization of a map and the S1 bound

void requantize(const HeadInputs& h, std::size_t block, const MapChoice& map, QuantizedCache& qc) {
  if (qc.keys.rows() != h.tokens || qc.keys.block() != block) {
    qc.keys = QuantizedRows(h.tokens, h.d, block);
    qc.values = QuantizedRows(h.tokens, h.d, block);
    qc.key_norms.assign(h.tokens, 0.0);
  }
  std::vector<float> stored;
  std::vector<double> rows;
#pragma omp parallel for schedule(static) firstprivate(stored, rows)
  for (std::size_t u = 0; u < map.key_formats.size(); ++u) {
    const std::size_t first = u * block;
    const std::size_t count = std::min(block, h.tokens - first);
    stored.resize(count * h.d);
    if (!qc.keys.holds(u, map.key_formats[u])) {
      h.keys.read_floats(first, count, stored.data());
      qc.keys.assign(u, map.key_formats[u], stored);
      rows.resize(count * h.d);
      qc.keys.read(first, count, rows.data());
      for (std::size_t r = 0; r < count; ++r) qc.key_norms[first + r] = norm_up(rows.data() + r * h.d, h.d, 0);
    }
    if (!qc.values.holds(u, map.value_formats[u])) {
      h.values.read_floats(first, count, stored.data());
      qc.values.assign(u, map.value_formats[u], stored);
    }
  }
}

QuantizedCache quantize_map(const HeadInputs& h, std::size_t block, const MapChoice& map) {
  QuantizedCache qc;
  requantize(h, block, map, qc);
  return qc;
}

// S1 upper bound and a rigorous lower bound of the actual error, per analysed query.
void s1_bounds(const HeadInputs& h, const ExactAttention& ex, const QuantizedCache& qc, std::vector<double>& upper,
               std::vector<double>* lower) {
  const std::size_t J = ex.J;
  upper.assign(J, 0.0);
  if (lower) lower->assign(J, 0.0);
#pragma omp parallel for schedule(dynamic)
  for (std::size_t j = 0; j < J; ++j) {
    const auto n = static_cast<std::size_t>(h.positions[j]) + 1;
    const auto enc = enclose_attention_output({h.queries.data() + j * h.d, h.d}, qc.keys, qc.key_norms, qc.values, n);
    upper[j] = difference_norm_up(enc, ex.enclosure[j]);
    if (lower) (*lower)[j] = difference_norm_down(enc, ex.enclosure[j]);
  }
}

// S1 and the actual error's lower bound per analysed query under a policy: query j at position p
// against the cache state after p + 1 appends (kv_rows.h AgedRows).
void policy_s1_bounds(const HeadInputs& h, const ExactAttention& ex, const proofs::PrecisionPolicy& policy,
                      std::vector<double>& upper, std::vector<double>& lower) {
  const auto& e = policy.entries.at(static_cast<std::size_t>(h.layer * policy.kv_heads + h.kv_head));
  const AgedRows keys(h.keys, policy, e.keys, h.layer, h.kv_head, false);
  const AgedRows values(h.values, policy, e.values, h.layer, h.kv_head, true);
  upper.assign(ex.J, 0.0);
  lower.assign(ex.J, 0.0);
  std::vector<double> norms;
#pragma omp parallel for schedule(dynamic) firstprivate(norms)
  for (std::size_t j = 0; j < ex.J; ++j) {
    const auto n = static_cast<std::size_t>(h.positions[j]) + 1;
    keys.norms_up(n, norms);
    const auto enc = enclose_attention_output({h.queries.data() + j * h.d, h.d}, keys.at(n), norms, values.at(n), n);
    upper[j] = difference_norm_up(enc, ex.enclosure[j]);
    lower[j] = difference_norm_down(enc, ex.enclosure[j]);
  }
}

// Whether every analysed query's S1 bound is <= eps. Stops at the first query over eps;
// `order` (the queries most likely to fail first) makes failing checks cheap.
bool s1_within(const HeadInputs& h, const ExactAttention& ex, const QuantizedCache& qc, double eps,
               const std::vector<std::size_t>& order) {
  bool ok = true;
#pragma omp parallel for schedule(dynamic)
  for (std::size_t i = 0; i < order.size(); ++i) {
    bool still_ok;
#pragma omp atomic read
    still_ok = ok;
    if (!still_ok) continue;
    const std::size_t j = order[i];
    const auto n = static_cast<std::size_t>(h.positions[j]) + 1;
    const auto enc = enclose_attention_output({h.queries.data() + j * h.d, h.d}, qc.keys, qc.key_norms, qc.values, n);
    if (difference_norm_up(enc, ex.enclosure[j]) > eps) {
#pragma omp atomic write
      ok = false;
    }
  }
  return ok;
}

// Queries in decreasing order of the model's prediction for a map: the likeliest to fail first.
std::vector<std::size_t> failure_order(const std::vector<double>& predicted) {
  std::vector<std::size_t> order(predicted.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return predicted[a] > predicted[b]; });
  return order;
}

// ---------------------------------------------------------------------------------------------
// Allocation model: separable S1 sensitivities per unit and format

struct HeadModel {
  AllocationProblem problem;
  std::size_t units = 0;
  bool squared = false;  // RMS predictor: costs are squared terms, budgets are beta^2
  std::vector<Format> key_choices, value_choices;
  explicit HeadModel(std::size_t constraints) : problem(constraints) {}
};

double unit_bytes(const Format& f, std::size_t rows, std::size_t d) {
  const int b = proofs::code_bits(f.encoding);
  double bytes = static_cast<double>(rows * d) * b / 8.0;
  if (f.axis == proofs::GroupAxis::kHeadDim) bytes += 4.0 * static_cast<double>(rows * (d / static_cast<std::size_t>(f.group_size)));
  if (f.axis == proofs::GroupAxis::kTokens) bytes += 4.0 * static_cast<double>(d);  // one group per channel per block
  return bytes + 1.0;  // the map's own format id of this unit
}

// delta[j] = q_j . (xhat - x) for every query: qt [d, J] (queries transposed), xhat, x [d].
__attribute__((target_clones("avx2", "default"))) void score_shifts(const double* qt, const double* xhat,
                                                                    const double* x, std::size_t d, std::size_t J,
                                                                    double* delta) {
  std::fill(delta, delta + J, 0.0);
  for (std::size_t i = 0; i < d; ++i) {
    const double dk = xhat[i] - x[i];
    if (dk == 0.0) continue;
    const double* qrow = qt + i * J;
    for (std::size_t j = 0; j < J; ++j) delta[j] += qrow[j] * dk;
  }
}

// The separable model's costs of every unit and format, and on the way (the same weights and
// distances, recomputed a unit at a time) the per-position statistics `p`.
HeadModel build_model(const HeadInputs& h, const ExactAttention& ex, std::size_t block, double delta_cap,
                      bool squared, PositionAnalysis& p) {
  const std::size_t T = h.tokens, J = ex.J, d = h.d;
  HeadModel model(J);
  model.squared = squared;
  model.units = (T + block - 1) / block;
  for (const Format& f : proofs::format_vocabulary(static_cast<int>(d))) {
    if (f.axis == proofs::GroupAxis::kTokens) {
      if (static_cast<std::size_t>(f.group_size) == block) model.key_choices.push_back(f);
    } else {
      model.key_choices.push_back(f);
      model.value_choices.push_back(f);
    }
  }
  for (std::size_t u = 0; u < model.units; ++u) {
    const std::size_t rows = std::min(block, T - u * block);
    std::vector<double> kb, vb;
    for (const auto& f : model.key_choices) kb.push_back(unit_bytes(f, rows, d));
    for (const auto& f : model.value_choices) vb.push_back(unit_bytes(f, rows, d));
    model.problem.add_unit(kb);
  }
  for (std::size_t u = 0; u < model.units; ++u) {
    const std::size_t rows = std::min(block, T - u * block);
    std::vector<double> vb;
    for (const auto& f : model.value_choices) vb.push_back(unit_bytes(f, rows, d));
    model.problem.add_unit(vb);
  }
  // Queries transposed [d, J] so the inner loops run over queries.
  std::vector<double> qt(d * J);
  for (std::size_t j = 0; j < J; ++j)
    for (std::size_t c = 0; c < d; ++c) qt[c * J + j] = h.queries[j * d + c];
  const double scale = 1.0 / std::sqrt(static_cast<double>(d));
  // A format a unit may not use gets a cost no budget admits (finite, so the dual stays finite;
  // the relaxation may still pick it, which only lowers the dual bound).
  const double blocked = 1e30;

#pragma omp parallel for schedule(dynamic)
  for (std::size_t u = 0; u < model.units; ++u) {
    const std::size_t first = u * block;
    const std::size_t rows = std::min(block, T - first);
    std::vector<double> xhat(rows * d), radius(rows * d), delta(J), keys(rows * d), values(rows * d), total(J);
    std::vector<float> weight, distance, stored(rows * d);
    h.keys.read(first, rows, keys.data());
    h.values.read(first, rows, values.data());
    unit_attention(h, ex, keys.data(), values.data(), first, rows, weight, distance);
    position_statistics(h, ex, keys.data(), first, rows, weight, distance, p);
    h.keys.read_floats(first, rows, stored.data());
    for (std::size_t c = 0; c < model.key_choices.size(); ++c) {
      proofs::quantize_block(model.key_choices[c], stored, rows, d, xhat, radius);
      std::fill(total.begin(), total.end(), 0.0);
      double worst_shift = 0.0;
      for (std::size_t r = 0; r < rows; ++r) {
        const std::size_t t = first + r;
        score_shifts(qt.data(), xhat.data() + r * d, keys.data() + r * d, d, J, delta.data());
        const float* a = weight.data() + r * J;
        const float* w = distance.data() + r * J;
        for (std::size_t j = 0; j < J; ++j) {
          const double shift = std::fabs(delta[j]) * scale;
          const double term = static_cast<double>(a[j]) * static_cast<double>(w[j]) * shift;
          total[j] += squared ? term * term : term;
          if (static_cast<std::size_t>(h.positions[j]) >= t) worst_shift = std::max(worst_shift, shift);
        }
      }
      if (!squared && worst_shift > delta_cap) std::fill(total.begin(), total.end(), blocked);
      std::copy(total.begin(), total.end(), model.problem.cost(u, c));
    }
    h.values.read_floats(first, rows, stored.data());
    for (std::size_t c = 0; c < model.value_choices.size(); ++c) {
      proofs::quantize_block(model.value_choices[c], stored, rows, d, xhat, radius);
      std::fill(total.begin(), total.end(), 0.0);
      for (std::size_t r = 0; r < rows; ++r) {
        double dv2 = 0.0;
        for (std::size_t i = 0; i < d; ++i) {
          const double dv = xhat[r * d + i] - values[r * d + i];
          dv2 += dv * dv;
        }
        const double dv_norm = std::sqrt(dv2);
        const float* a = weight.data() + r * J;
        for (std::size_t j = 0; j < J; ++j) {
          const double term = static_cast<double>(a[j]) * dv_norm;
          total[j] += squared ? term * term : term;
        }
      }
      std::copy(total.begin(), total.end(), model.problem.cost(model.units + u, c));
    }
  }
  return model;
}

MapChoice map_from_choices(const HeadModel& model, const std::vector<std::size_t>& choices) {
  MapChoice map;
  for (std::size_t u = 0; u < model.units; ++u) {
    map.key_formats.push_back(model.key_choices[choices[u]]);
    map.value_formats.push_back(model.value_choices[choices[model.units + u]]);
  }
  return map;
}

// Every key unit at key choice k, every value unit at value choice v.
RunMap uniform_map(const HeadModel& model, std::size_t k, std::size_t v) {
  RunMap c;
  c.append(0, k);
  c.append(model.units, v);
  return c;
}

std::vector<RunMap> uniform_candidates(const HeadModel& model) {
  std::vector<RunMap> out;
  for (std::size_t k = 0; k < model.key_choices.size(); ++k)
    for (std::size_t v = 0; v < model.value_choices.size(); ++v) out.push_back(uniform_map(model, k, v));
  return out;
}

std::vector<std::size_t> finest_choices(const HeadModel& model) {
  // Format vocabulary order: fp16 first.
  HNF_ASSERT(model.key_choices.front() == Format{} && model.value_choices.front() == Format{},
             "the format vocabulary must start with fp16");
  return uniform_map(model, 0, 0).expand(2 * model.units);
}

double quantile(std::vector<double> x, double q) {
  if (x.empty()) return 0.0;
  std::sort(x.begin(), x.end());
  const auto i = static_cast<std::size_t>(std::clamp(q, 0.0, 1.0) * static_cast<double>(x.size() - 1));
  return x[i];
}

// ---------------------------------------------------------------------------------------------
// Per head: allocation and bounds

double max_of(const std::vector<double>& x) { return x.empty() ? 0.0 : *std::max_element(x.begin(), x.end()); }

// The uniform baselines the allocator must never lose to: every (key, value) pair of one
// per-token format, and KIVI-style per-channel keys with per-token values of the same bits.
std::vector<RunMap> baseline_maps(const HeadModel& model) {
  std::vector<RunMap> out;
  for (std::size_t k = 0; k < model.key_choices.size(); ++k) {
    const Format& kf = model.key_choices[k];
    for (std::size_t v = 0; v < model.value_choices.size(); ++v) {
      const Format& vf = model.value_choices[v];
      const bool same = kf == vf;
      const bool kivi = kf.axis == proofs::GroupAxis::kTokens && vf.encoding == kf.encoding &&
                        vf.axis == proofs::GroupAxis::kHeadDim && vf.group_size == 32;
      if (same || kivi) out.push_back(uniform_map(model, k, v));
    }
  }
  std::sort(out.begin(), out.end(), [&](const auto& a, const auto& b) {
    return model.problem.total_bytes(a) < model.problem.total_bytes(b);
  });
  return out;
}

std::string map_name(const HeadModel& model, const RunMap& c) {
  return "uniform " + proofs::format_name(model.key_choices[c.choice_at(0)]) + "," +
         proofs::format_name(model.value_choices[c.choice_at(model.units)]);
}

double model_budget_value(const HeadModel& model, double beta) { return model.squared ? beta * beta : beta; }

// Chooses the map for a per-query S1 budget eps: bisection on the model budget beta, each
// candidate checked with the rigorous S1 bounds; then the cheapest uniform baseline that
// meets eps replaces it if it is cheaper.
std::vector<std::size_t> allocate_for_eps(const HeadInputs& h, const ExactAttention& ex, const HeadModel& model,
                                          std::size_t block, double eps, double delta_cap, AllocationResult& chosen,
                                          double& chosen_budget, std::string& source) {
  const auto candidates = uniform_candidates(model);
  QuantizedCache cache;
  auto meets_eps = [&](const std::vector<std::size_t>& choices) {
    requantize(h, block, map_from_choices(model, choices), cache);
    return s1_within(h, ex, cache, eps, failure_order(model.problem.constraint_totals(choices)));
  };
  AllocationState state;
  auto try_budget = [&](double beta, AllocationResult& r) {
    r = allocate(model.problem, model_budget_value(model, beta), candidates, 40, &state);
    return r.feasible && meets_eps(r.choices);
  };
  // The bound model guarantees S1 <= eps at eps e^{-2 cap}; the RMS model predicts S1 ~ beta.
  const double start = model.squared ? eps : eps * std::exp(-2.0 * delta_cap);
  double good = 0.0, bad = 0.0;
  AllocationResult r;
  if (try_budget(start, r)) {
    good = start;
    chosen = r;
    for (int k = 0; k < 8; ++k) {
      const double next = good * 2.0;
      if (!try_budget(next, r)) {
        bad = next;
        break;
      }
      good = next;
      chosen = r;
    }
  } else {
    bad = start;
    for (int k = 0; k < 8; ++k) {
      const double next = bad / 2.0;
      if (try_budget(next, r)) {
        good = next;
        chosen = r;
        break;
      }
      bad = next;
    }
  }
  if (good == 0.0) {  // no budget tried met eps: the finest map (the caller checks whether it meets eps)
    chosen = AllocationResult{};
    chosen.choices = finest_choices(model);
    chosen_budget = 0.0;
    source = "fp16 (allocation found no map)";
    return chosen.choices;
  }
  for (int k = 0; k < 2 && bad > 0.0; ++k) {
    const double mid = std::sqrt(good * bad);
    if (try_budget(mid, r)) {
      good = mid;
      chosen = r;
    } else {
      bad = mid;
    }
  }
  chosen_budget = good;
  source = "allocated";
  for (const auto& baseline : baseline_maps(model)) {
    if (model.problem.total_bytes(baseline) >= model.problem.total_bytes(chosen.choices)) break;
    if (meets_eps(baseline.expand(2 * model.units))) {
      chosen.choices = baseline.expand(2 * model.units);
      source = map_name(model, baseline);
      break;
    }
  }
  return chosen.choices;
}

// Spends the bytes a map leaves under `max_bytes`: repeatedly the single-block upgrade that
// lowers the currently worst query's model total most per extra byte, while any fits.
void spend_slack(const AllocationProblem& p, double max_bytes, std::vector<std::size_t>& choices) {
  auto totals = p.constraint_totals(choices);
  double bytes = p.total_bytes(choices);
  for (int step = 0; step < 100000 && !totals.empty(); ++step) {
    const auto worst = static_cast<std::size_t>(std::max_element(totals.begin(), totals.end()) - totals.begin());
    double best_rate = 0.0;
    std::size_t best_unit = 0, best_choice = 0;
    for (std::size_t u = 0; u < p.num_units(); ++u) {
      const std::size_t now = choices[u];
      for (std::size_t c = 0; c < p.num_choices(u); ++c) {
        const double extra = p.bytes(u, c) - p.bytes(u, now);
        const double gain = p.cost(u, now)[worst] - p.cost(u, c)[worst];
        if (extra <= 0.0 || gain <= 0.0 || bytes + extra > max_bytes) continue;
        if (gain / extra > best_rate) {
          best_rate = gain / extra;
          best_unit = u;
          best_choice = c;
        }
      }
    }
    if (best_rate == 0.0) return;
    const Cost* before = p.cost(best_unit, choices[best_unit]);
    const Cost* after = p.cost(best_unit, best_choice);
    for (std::size_t j = 0; j < totals.size(); ++j) totals[j] += after[j] - before[j];
    bytes += p.bytes(best_unit, best_choice) - p.bytes(best_unit, choices[best_unit]);
    choices[best_unit] = best_choice;
  }
}

// Chooses the map within `max_bytes` for this head: the smallest model budget whose
// allocation fits, its leftover bytes spent on the worst query, or the largest uniform
// baseline that fits when its S1 bound is smaller.
std::vector<std::size_t> allocate_for_bytes(const HeadInputs& h, const ExactAttention& ex, const HeadModel& model,
                                            std::size_t block, double max_bytes, AllocationResult& chosen,
                                            double& chosen_budget, std::string& source) {
  const auto candidates = uniform_candidates(model);
  // The smallest model budget whose allocation fits in max_bytes, leftover bytes spent.
  auto bisect = [&](const AllocationProblem& problem, double& budget_out) {
    std::vector<std::size_t> cheapest(problem.num_units());
    for (std::size_t u = 0; u < cheapest.size(); ++u) {
      for (std::size_t c = 0; c < problem.num_choices(u); ++c)
        if (problem.bytes(u, c) < problem.bytes(u, cheapest[u])) cheapest[u] = c;
    }
    double hi = std::max(max_of(problem.constraint_totals(cheapest)), 1e-300);
    AllocationState state;
    AllocationResult best = allocate(problem, hi, candidates, 40, &state);
    budget_out = hi;
    double lo = std::max(best.min_feasible_budget, 1e-300) * 0.5;
    for (int k = 0; k < 30; ++k) {
      const double mid = std::sqrt(lo * hi);
      AllocationResult r = allocate(problem, mid, candidates, 40, &state);
      if (r.feasible && r.bytes <= max_bytes) {
        hi = mid;
        best = std::move(r);
        budget_out = mid;
      } else {
        lo = mid;
      }
    }
    spend_slack(problem, max_bytes, best.choices);
    best.bytes = problem.total_bytes(best.choices);
    return best;
  };
  QuantizedCache cache;
  auto s1_of = [&](const std::vector<std::size_t>& choices) {
    std::vector<double> s1;
    requantize(h, block, map_from_choices(model, choices), cache);
    s1_bounds(h, ex, cache, s1, nullptr);
    return s1;
  };
  chosen = bisect(model.problem, chosen_budget);
  if (model.squared) chosen_budget = std::sqrt(chosen_budget);
  source = "allocated";
  std::vector<double> s1 = s1_of(chosen.choices);
  double best = max_of(s1);

  // Two rounds of calibration: each query's constraint is rescaled by how far the model's
  // prediction for the current map is from its S1 bound, and the allocation redone; the map
  // with the smaller largest S1 bound is kept. (The rescaled model is a different model, so
  // such a map carries no lower bound.)
  AllocationProblem weighted = model.problem;
  std::vector<std::size_t> current = chosen.choices;
  for (int round = 0; round < 2; ++round) {
    const auto predicted = weighted.constraint_totals(current);
    std::vector<double> factor(predicted.size(), 1.0);
    for (std::size_t j = 0; j < predicted.size(); ++j) {
      if (!(predicted[j] > 0.0) || !(s1[j] > 0.0)) continue;
      const double target = model.squared ? s1[j] * s1[j] : s1[j];
      factor[j] = std::clamp(target / predicted[j], 1e-3, 1e3);
    }
    for (std::size_t u = 0; u < weighted.num_units(); ++u)
      for (std::size_t c = 0; c < weighted.num_choices(u); ++c) {
        Cost* cost = weighted.cost(u, c);
        for (std::size_t j = 0; j < factor.size(); ++j) cost[j] = cost[j] * factor[j];
      }
    double ignored = 0.0;
    const AllocationResult r = bisect(weighted, ignored);
    current = r.choices;
    s1 = s1_of(current);
    if (max_of(s1) < best) {
      best = max_of(s1);
      chosen.choices = current;
      chosen.bytes = r.bytes;
      source = "allocated, reweighted by S1";
    }
  }

  const auto baselines = baseline_maps(model);
  // The fitting baselines with the most bytes (ties included): at most three S1 checks.
  std::vector<const RunMap*> fitting;
  for (const auto& b : baselines)
    if (model.problem.total_bytes(b) <= max_bytes) fitting.push_back(&b);
  std::reverse(fitting.begin(), fitting.end());
  if (fitting.size() > 3) fitting.resize(3);
  for (const auto* b : fitting) {
    const double v = max_of(s1_of(b->expand(2 * model.units)));
    if (v < best) {
      best = v;
      chosen.choices = b->expand(2 * model.units);
      source = map_name(model, *b);
    }
  }
  return chosen.choices;
}

std::vector<std::size_t> fixed_choices(const HeadModel& model, std::int64_t layer, std::int64_t kv_head,
                                       const decltype(AnalysisOptions::fixed_map)& fixed_map) {
  std::vector<Format> keys, values;
  fixed_map(layer, kv_head, model.units, keys, values);
  if (keys.size() != model.units || values.size() != model.units)
    throw proofs::bad_input("map", "layer " + std::to_string(layer) + " kv head " + std::to_string(kv_head) +
                                       ": expected " + std::to_string(model.units) + " formats for keys and values");
  std::vector<std::size_t> choices(2 * model.units);
  auto index_of = [&](const std::vector<Format>& offered, const Format& f) {
    const auto it = std::find(offered.begin(), offered.end(), f);
    if (it == offered.end())
      throw proofs::bad_input("map", "format " + proofs::format_name(f) + " is not offered at this block size");
    return static_cast<std::size_t>(it - offered.begin());
  };
  for (std::size_t u = 0; u < model.units; ++u) {
    choices[u] = index_of(model.key_choices, keys[u]);
    choices[model.units + u] = index_of(model.value_choices, values[u]);
  }
  return choices;
}

}  // namespace

std::vector<std::size_t> policy_query_indices(const std::vector<std::int64_t>& recorded, std::int64_t dense,
                                               std::int64_t stride) {
  HNF_ASSERT(stride >= 1, "a stride is at least 1");
  std::vector<std::size_t> out;
  std::size_t since_dense = 0;
  for (std::size_t i = 0; i < recorded.size(); ++i) {
    if (recorded[i] < dense || since_dense++ % static_cast<std::size_t>(stride) == 0) out.push_back(i);
  }
  return out;
}

int obstruction_bits(double kappa, double diameter, double eps) {
  HNF_ASSERT(eps > 0.0, "obstruction_bits needs a positive epsilon");
  if (!(kappa > 0.0) || !(diameter > 0.0)) return 0;
  const double p = 0.5 * std::log2(kappa * diameter * diameter / (8.0 * eps));
  return p <= 0.0 ? 0 : static_cast<int>(std::ceil(p));
}

namespace {

// Checks a policy against the trace and makes its expansion at the trace's length the map.
void adopt_policy(const TraceShape& s, const std::string& trace_path, AnalysisOptions& options) {
  const proofs::PrecisionPolicy& p = *options.policy;
  if (const std::string problem = proofs::policy_problem(p); !problem.empty()) throw proofs::bad_input("policy", problem);
  if (p.layers != s.num_layers || p.kv_heads != s.num_kv_heads || p.heads != s.num_heads || p.head_dim != s.head_dim) {
    throw proofs::bad_input(trace_path, "the policy's shape (layers, kv heads, heads, head_dim) is not the trace's");
  }
  if (options.dense_queries < 0 || options.beyond_stride < 1) {
    throw proofs::bad_input("policy", "dense queries must be >= 0 and the stride beyond them >= 1");
  }
  options.block = p.page;
  options.fixed_map = [map = proofs::expand_policy(p, s.num_tokens)](std::int64_t layer, std::int64_t kv_head, std::size_t,
                                                                       std::vector<Format>& keys, std::vector<Format>& values) {
    const auto& e = map.entries.at(static_cast<std::size_t>(layer * map.kv_heads + kv_head));
    keys = e.key_formats;
    values = e.value_formats;
  };
}

void validate_options(const AnalysisOptions& options) {
  if (options.policy && options.bits) throw proofs::bad_input("analyze", "a policy is analysed at a budget (--eps), not a size");
  if (options.eps.has_value() == options.bits.has_value() && !((options.fixed_map || options.policy) && !options.bits))
    throw proofs::bad_input("analyze", "give exactly one of --eps and --bits");
  if (options.eps && !(*options.eps > 0.0 && std::isfinite(*options.eps)))
    throw proofs::bad_input("--eps", "must be a positive finite number");
  if (!options.layer_eps.empty() && !options.eps)
    throw proofs::bad_input("--layer-eps", "per-layer budgets go with --eps");
  for (double e : options.layer_eps)
    if (!(e > 0.0 && std::isfinite(e))) throw proofs::bad_input("--layer-eps", "every budget must be a positive finite number");
  if (options.bits && !(*options.bits > 0.0 && std::isfinite(*options.bits)))
    throw proofs::bad_input("--bits", "must be a positive finite number");
  if (options.block != 16 && options.block != 32 && options.block != 64)
    throw proofs::bad_input("--block", "must be 16, 32 or 64");
  if (options.last_queries < 1) throw proofs::bad_input("--last-queries", "must be at least 1");
  if (options.query_stride < 0) throw proofs::bad_input("--query-stride", "must be >= 0");
  if (!(options.s2_quantile >= 0.0 && options.s2_quantile <= 1.0))
    throw proofs::bad_input("--s2-quantile", "must lie in [0, 1]");
  if (options.model != "rms" && options.model != "bound")
    throw proofs::bad_input("--model", "must be rms or bound, not '" + options.model + "'");
  if (!(options.delta_cap > 0.0 && options.delta_cap <= 8.0))
    throw proofs::bad_input("--delta-cap", "must lie in (0, 8]");
}

std::optional<Trace> open_holdout(const AnalysisOptions& options, const Trace& trace, const std::string& trace_path) {
  if (options.holdout_trace.empty()) return std::nullopt;
  Trace holdout = Trace::open(options.holdout_trace);
  const auto& a = trace.shape();
  const auto& b = holdout.shape();
  if (a.num_layers != b.num_layers || a.num_heads != b.num_heads || a.num_kv_heads != b.num_kv_heads ||
      a.head_dim != b.head_dim)
    throw proofs::bad_input(options.holdout_trace, "held-out trace has another shape than " + trace_path);
  return holdout;
}

std::string query_place(std::int64_t layer, std::int64_t head, std::int64_t position) {
  return "layer " + std::to_string(layer) + " head " + std::to_string(head) + " position " + std::to_string(position);
}

// The map of one (layer, kv head): given, allocated for the layer's eps, or for the byte
// budget. Infeasibility is recorded in `result`; the head's map source, budget and lower
// bound in `ha`. Returns the choice per unit.
std::vector<std::size_t> choose_map(const HeadInputs& h, const ExactAttention& ex, const HeadModel& model,
                                    const AnalysisOptions& options, std::optional<double> layer_eps,
                                    std::size_t block, HeadAnalysis& ha, AnalysisResult& result) {
  std::vector<std::size_t> choices;
  AllocationResult chosen;
  double budget = 0.0;
  if (options.fixed_map) {
    choices = fixed_choices(model, h.layer, h.kv_head, options.fixed_map);
    ha.map_source = "given";
  } else if (layer_eps) {
    choices = allocate_for_eps(h, ex, model, block, *layer_eps, options.delta_cap, chosen, budget, ha.map_source);
    if (ha.map_source != "allocated" && ha.map_source.rfind("uniform", 0) != 0) {
      // No allocated map met eps: the finest map decides whether any can.
      std::vector<double> finest_s1;
      s1_bounds(h, ex, quantize_map(h, block, map_from_choices(model, finest_choices(model))), finest_s1, nullptr);
      bool ok = true;
      for (std::size_t j = 0; j < finest_s1.size(); ++j) {
        if (finest_s1[j] <= *layer_eps) continue;
        ok = false;
        result.infeasible.push_back(query_place(h.layer, h.heads[j], h.positions[j]) + ": S1 bound " +
                                    fmt::format("{:.6g}", finest_s1[j]) + " with fp16 everywhere");
      }
      result.min_feasible_eps = std::max(result.min_feasible_eps, max_of(finest_s1));
      if (!ok) {
        result.feasible = false;
        choices = finest_choices(model);
        chosen = AllocationResult{};  // no lower bound: no map meets the budget
        ha.map_source = "fp16 (infeasible)";
      }
    }
  } else if (options.bits) {
    const double elements = static_cast<double>(h.tokens * h.d * 2);
    const double max_bytes = *options.bits * elements / 8.0;
    choices = allocate_for_bytes(h, ex, model, block, max_bytes, chosen, budget, ha.map_source);
    if (model.problem.total_bytes(choices) > max_bytes) {
      result.feasible = false;
      result.infeasible.push_back("layer " + std::to_string(h.layer) + " kv head " + std::to_string(h.kv_head) +
                                  ": no map of the vocabulary fits " + fmt::format("{:.6g}", *options.bits) +
                                  " bits per element; the smallest has " +
                                  fmt::format("{:.6g}", 8.0 * model.problem.total_bytes(choices) / elements));
    }
  }
  const MapChoice map = map_from_choices(model, choices);
  ha.key_formats = map.key_formats;
  ha.value_formats = map.value_formats;
  ha.bytes = model.problem.total_bytes(choices);
  ha.lower_bound_bytes = ha.map_source == "allocated" ? chosen.lower_bound : 0.0;
  ha.model_budget = budget;
  return choices;
}

// S1 (with the actual error's lower bound), S2 and S3 of the head's map, per analysed query.
// totals [J]: the allocation model's value of the map per query.
// With a policy, S1 is taken against each query's aged cache state, S2 and S3 against the map.
void bound_map(const HeadInputs& h, const ExactAttention& ex, const std::vector<double>& totals,
               const QuantizedCache& qc, const AnalysisOptions& options, HeadAnalysis& ha) {
  const double s2_quantile = options.s2_quantile;
  std::vector<double> s1, actual;
  if (options.policy) {
    policy_s1_bounds(h, ex, *options.policy, s1, actual);
  } else {
    s1_bounds(h, ex, qc, s1, &actual);
  }
  ha.s2_radius = quantile(h.radius_samples, s2_quantile);
  const auto rho = key_spreads(h);
  const S3Terms s3t = s3_terms(h, qc);
  const ResidualNorms residuals = residual_norms(h, qc);
  std::vector<double> s2(ex.J);
#pragma omp parallel for schedule(dynamic)
  for (std::size_t j = 0; j < ex.J; ++j) {
    // Every query of the ball has norm <= ||q_j|| + R, so the S3 bound at that norm holds too.
    const double norm_bound = add_up(norm_up(h.queries.data() + j * h.d, h.d, 0), ha.s2_radius);
    s2[j] = std::min(s2_bound(h, qc, j, ex.enclosure[j], ha.s2_radius, rho, residuals), s3_from_terms(s3t, norm_bound, h.d));
  }
  for (std::size_t j = 0; j < ex.J; ++j) {
    ha.queries.push_back({.head = h.heads[j], .position = h.positions[j], .s1 = s1[j], .actual_lo = actual[j],
                          .s2 = s2[j], .model = totals[j]});
  }
  ha.s3_query_norm = h.max_query_norm;
  ha.s3 = s3_from_terms(s3t, h.max_query_norm, h.d);
}

// The held-out text's query at each analysed head and position, on this head's cache: whether
// it lies within the S2 radius, and for those, S2 over a rigorous lower bound of its error.
void measure_holdout(const Trace& holdout, const std::string& holdout_path, const HeadInputs& h,
                     const QuantizedCache& qc, HeadAnalysis& ha) {
  const auto& hp = holdout.query_positions();
  const TraceLayer& hl = holdout.layers()[static_cast<std::size_t>(h.layer)];
  for (std::size_t j = 0; j < ha.queries.size(); ++j) {
    const auto it = std::lower_bound(hp.begin(), hp.end(), h.positions[j]);
    if (it == hp.end() || *it != h.positions[j]) continue;
    ++ha.holdout_total;
    std::vector<double> q(h.d);
    StoredRows(holdout.file(), holdout_path, *hl.q, h.heads[j], it - hp.begin(), 1, StoredRows::Values::kFinite)
        .read(0, 1, q.data());
    double dist = 0.0;
    for (std::size_t c = 0; c < h.d; ++c) dist += (q[c] - h.queries[j * h.d + c]) * (q[c] - h.queries[j * h.d + c]);
    if (std::sqrt(dist) > ha.s2_radius) continue;
    ++ha.holdout_inside;
    const auto n = static_cast<std::size_t>(h.positions[j]) + 1;
    const auto exact = enclose_attention_output(q, h.keys, h.key_norms, h.values, n);
    const auto quant = enclose_attention_output(q, qc.keys, qc.key_norms, qc.values, n);
    const double observed = difference_norm_down(quant, exact);
    if (observed > 0.0) ha.holdout_ratios.push_back(ha.queries[j].s2 / observed);
  }
}

// Theorem 5.7 per position at the head's budget (the achieved eps in --bits mode).
void set_obstruction_bounds(AnalysisResult& result) {
  double total = 0.0;
  for (auto& ha : result.heads) {
    double sum = 0.0;
    const double eps = ha.eps > 0.0 ? ha.eps : result.eps;
    for (std::size_t t = 0; t < ha.positions.kappa.size() && eps > 0.0; ++t) {
      // At most about 540 (half the exponent range of kappa D^2 / eps): an int16 holds it.
      ha.positions.p_min[t] = static_cast<std::int16_t>(obstruction_bits(ha.positions.kappa[t], ha.positions.diameter[t], eps));
      sum += ha.positions.p_min[t];
    }
    ha.obstruction_bits = ha.positions.kappa.empty() ? 0.0 : sum / static_cast<double>(ha.positions.kappa.size());
    total += ha.obstruction_bits;
  }
  result.obstruction_bits = result.heads.empty() ? 0.0 : total / static_cast<double>(result.heads.size());
}

}  // namespace

AnalysisResult analyze_trace(const std::string& trace_path, AnalysisOptions options) {
  const auto start = std::chrono::steady_clock::now();
  validate_options(options);
  const Trace trace = Trace::open(trace_path);
  const std::optional<Trace> holdout = open_holdout(options, trace, trace_path);
  const TraceShape& s = trace.shape();
  if (!options.layer_eps.empty() && static_cast<std::int64_t>(options.layer_eps.size()) != s.num_layers)
    throw proofs::bad_input("--layer-eps", "gives " + std::to_string(options.layer_eps.size()) + " budgets for a trace of " +
                                               std::to_string(s.num_layers) + " layers");
  if (options.policy) adopt_policy(s, trace_path, options);
  const auto subset = !options.query_positions.empty()
                          ? queries_at(trace, options.query_positions, trace_path)
                      : options.policy
                          ? policy_query_indices(trace.query_positions(), options.dense_queries, options.beyond_stride)
                          : select_queries(static_cast<std::size_t>(s.num_queries), options.last_queries, options.query_stride);
  const auto block = static_cast<std::size_t>(options.block);

  AnalysisResult result;
  result.trace_path = trace_path;
  result.shape = s;
  for (std::size_t i : subset) result.query_positions.push_back(trace.query_positions()[i]);
  result.query_stride = static_cast<std::int64_t>(
      effective_stride(static_cast<std::size_t>(s.num_queries), options.last_queries, options.query_stride));
  result.eps = options.layer_eps.empty() ? options.eps.value_or(0.0)
                                         : *std::max_element(options.layer_eps.begin(), options.layer_eps.end());

  double total_bytes = 0.0, total_lower = 0.0, achieved_eps = 0.0;
  bool all_allocated = true;
  const auto pairs = static_cast<double>(s.num_layers * s.num_kv_heads);
  for (std::int64_t layer = 0; layer < s.num_layers; ++layer) {
    // This layer's budget: its --layer-eps entry, else --eps.
    const std::optional<double> layer_eps =
        options.layer_eps.empty() ? options.eps : std::optional<double>(options.layer_eps[static_cast<std::size_t>(layer)]);
    for (std::int64_t kvh = 0; kvh < s.num_kv_heads; ++kvh) {
      const double done = static_cast<double>(layer * s.num_kv_heads + kvh) / pairs;
      auto stage = [&](std::string_view name) {
        if (options.progress) options.progress(name, done);
      };
      stage("load");
      const HeadInputs h = load_head(trace, trace_path, layer, kvh, subset);
      stage("attention");
      const ExactAttention ex = exact_attention(h);
      HeadAnalysis ha;
      ha.eps = layer_eps.value_or(0.0);
      ha.layer = layer;
      ha.kv_head = kvh;
      ha.positions = empty_positions(h.tokens);
      MapChoice map;
      std::vector<double> totals;
      {
        stage("sensitivities");
        const HeadModel model = build_model(h, ex, block, options.delta_cap, options.model == "rms", ha.positions);
        stage("allocate");
        const auto choices = choose_map(h, ex, model, options, layer_eps, block, ha, result);
        map = map_from_choices(model, choices);
        totals = model.problem.constraint_totals(choices);
        if (model.squared)
          for (double& t : totals) t = std::sqrt(t);
      }  // the model's cost matrix, the largest array of the allocation, is freed before the bounds
      if (ha.map_source != "allocated") all_allocated = false;
      stage("bounds");
      const QuantizedCache qc = quantize_map(h, block, map);
      bound_map(h, ex, totals, qc, options, ha);
      for (const auto& q : ha.queries) achieved_eps = std::max(achieved_eps, q.s1);
      if (options.fixed_map && layer_eps) {
        for (const auto& q : ha.queries) {
          if (q.s1 <= *layer_eps) continue;
          result.feasible = false;
          result.infeasible.push_back(query_place(layer, q.head, q.position) + ": S1 bound " +
                                      fmt::format("{:.6g}", q.s1) + " with the given map");
        }
        result.min_feasible_eps = achieved_eps;
      }
      if (holdout) measure_holdout(*holdout, options.holdout_trace, h, qc, ha);
      total_bytes += ha.bytes;
      total_lower += ha.lower_bound_bytes;
      result.heads.push_back(std::move(ha));
    }
  }
  if (!options.eps) result.eps = achieved_eps;
  set_obstruction_bounds(result);
  const double elements = static_cast<double>(s.num_layers * s.num_kv_heads * s.num_tokens * s.head_dim * 2);
  result.bits_per_element = 8.0 * total_bytes / elements;
  result.lower_bound_bits = all_allocated ? 8.0 * total_lower / elements : std::numeric_limits<double>::quiet_NaN();
  options.progress = nullptr;
  result.options = options;
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return result;
}

}  // namespace hnf::analysis
