#include "hnf/analysis/attention_stats.h"

#include <algorithm>
#include <cmath>

#include "hnf/proofs/error.h"

namespace hnf::analysis {
namespace {

// Rows of a [heads, n, head_dim] tensor as floats: row (h, i) -> head_dim values.
std::vector<float> load_rows(const Trace& trace, const proofs::TensorInfo& tensor) {
  const auto bytes = trace.file().bytes(tensor);
  std::vector<float> out(tensor.numel());
  for (std::uint64_t i = 0; i < out.size(); ++i) out[i] = proofs::load_float(trace.dtype(), bytes.data(), i);
  trace.file().release(tensor, 0, tensor.nbytes());
  return out;
}

}  // namespace

std::vector<LayerAttentionStats> attention_stats(const Trace& trace, std::int64_t recent) {
  HNF_ASSERT(recent >= 1, "recent window must hold at least one position");
  const TraceShape& s = trace.shape();
  const auto d = static_cast<std::size_t>(s.head_dim);
  const auto tokens = static_cast<std::size_t>(s.num_tokens);
  const std::int64_t group = s.num_heads / s.num_kv_heads;
  const double scale = 1.0 / std::sqrt(static_cast<double>(s.head_dim));
  std::vector<LayerAttentionStats> out;
  std::vector<double> scores(tokens);
  for (std::int64_t l = 0; l < s.num_layers; ++l) {
    const TraceLayer& layer = trace.layers()[static_cast<std::size_t>(l)];
    const auto q = load_rows(trace, *layer.q);  // [heads, queries, head_dim]
    const auto k = load_rows(trace, *layer.k);  // [kv_heads, tokens, head_dim]
    const auto v = load_rows(trace, *layer.v);  // [kv_heads, tokens, head_dim]
    LayerAttentionStats stats{.layer = l};
    std::vector<double> norms, o(d);
    for (std::int64_t h = 0; h < s.num_heads; ++h) {
      const float* keys = k.data() + static_cast<std::size_t>(h / group) * tokens * d;
      const float* values = v.data() + static_cast<std::size_t>(h / group) * tokens * d;
      for (std::int64_t i = 0; i < s.num_queries; ++i) {
        const float* query = q.data() + (static_cast<std::size_t>(h * s.num_queries + i)) * d;
        const auto position = static_cast<std::size_t>(trace.query_positions()[static_cast<std::size_t>(i)]);
        double max_score = -INFINITY;
        for (std::size_t t = 0; t <= position; ++t) {
          double dot = 0.0;
          for (std::size_t c = 0; c < d; ++c) dot += static_cast<double>(query[c]) * keys[t * d + c];
          scores[t] = dot * scale;
          max_score = std::max(max_score, scores[t]);
        }
        double total = 0.0;
        for (std::size_t t = 0; t <= position; ++t) total += (scores[t] = std::exp(scores[t] - max_score));
        const std::size_t first_recent = position + 1 > static_cast<std::size_t>(recent) ? position + 1 - static_cast<std::size_t>(recent) : 0;
        double recent_total = 0.0;
        double largest = 0.0;
        for (std::size_t t = 0; t <= position; ++t) {
          if (t >= first_recent) recent_total += scores[t];
          largest = std::max(largest, scores[t]);
        }
        std::fill(o.begin(), o.end(), 0.0);
        for (std::size_t t = 0; t <= position; ++t) {
          for (std::size_t c = 0; c < d; ++c) o[c] += scores[t] * values[t * d + c];
        }
        double squared = 0.0;
        for (const double x : o) squared += (x / total) * (x / total);
        norms.push_back(std::sqrt(squared));
        stats.first_token_mass += scores[0] / total;
        stats.recent_mass += recent_total / total;
        stats.max_weight += largest / total;
        ++stats.queries;
      }
    }
    const auto n = static_cast<double>(std::max<std::int64_t>(1, stats.queries));
    stats.first_token_mass /= n;
    stats.recent_mass /= n;
    stats.max_weight /= n;
    std::sort(norms.begin(), norms.end());
    const auto at = [&](double fraction) { return norms.empty() ? 0.0 : norms[std::min(norms.size() - 1, static_cast<std::size_t>(fraction * static_cast<double>(norms.size())))]; };
    stats.output_norm_p10 = at(0.1);
    stats.output_norm_median = at(0.5);
    stats.output_norm_p90 = at(0.9);
    out.push_back(stats);
  }
  return out;
}

}  // namespace hnf::analysis
