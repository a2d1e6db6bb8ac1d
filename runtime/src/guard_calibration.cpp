#include "hnf/runtime/guard_calibration.h"

#include <algorithm>
#include <cmath>

#include "hnf/proofs/error.h"
#include "hnf/runtime/decode_attention.h"
#include "hnf/runtime/decode_bound.h"
#include "hnf/runtime/policy_pages.h"

namespace hnf::runtime {

void exact_attention(const float* q, const float* keys, const float* values, std::int64_t n, std::int64_t d, double* out) {
  const auto dim = static_cast<std::size_t>(d);
  const double scale = 1.0 / std::sqrt(static_cast<double>(d));
  std::vector<double> scores(static_cast<std::size_t>(n));
  double m = -INFINITY;
  for (std::size_t t = 0; t < scores.size(); ++t) {
    double dot = 0.0;
    for (std::size_t c = 0; c < dim; ++c) dot += static_cast<double>(q[c]) * keys[t * dim + c];
    scores[t] = dot * scale;
    m = std::max(m, scores[t]);
  }
  double z = 0.0;
  std::fill(out, out + dim, 0.0);
  for (std::size_t t = 0; t < scores.size(); ++t) {
    const double e = std::exp(scores[t] - m);
    z += e;
    for (std::size_t c = 0; c < dim; ++c) out[c] += e * values[t * dim + c];
  }
  for (std::size_t c = 0; c < dim; ++c) out[c] /= z;
}

bool reads_only_float_pages(const StreamView& view, std::int64_t positions) {
  const std::int64_t pages = (positions + view.page_size - 1) / view.page_size;
  for (std::int64_t p = 0; p < pages; ++p) {
    for (const PageFormat& f : {view.pages[p].key_format, view.pages[p].value_format}) {
      if (f.encoding != kPageF16 && f.encoding != kPageBF16 && f.encoding != kPageStagedF32) return false;
    }
  }
  return true;
}

std::vector<GuardRow> calibrate_guard(const proofs::PrecisionPolicy& policy, const proofs::HeadPolicy& head,
                                      const std::vector<float>& keys, const std::vector<float>& values,
                                      const std::vector<float>& queries, const std::vector<std::int64_t>& positions,
                                      std::int64_t first_head, double delta) {
  const auto d = static_cast<std::size_t>(policy.head_dim);
  HNF_ASSERT(keys.size() == values.size() && keys.size() % d == 0, "keys and values are [tokens, d]");
  HNF_ASSERT(std::is_sorted(positions.begin(), positions.end()), "query positions are sorted");
  const std::size_t group = positions.empty() ? 0 : queries.size() / (positions.size() * d);
  HNF_ASSERT(queries.size() == group * positions.size() * d, "queries are [group, positions, d]");
  OwnedPolicyStream stream(policy, head, static_cast<int>(d), policy.calibration_seed);
  const bool probabilistic = policy.rounding == proofs::Rounding::kStochastic;
  std::vector<GuardRow> rows;
  std::vector<double> o(d);
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(d)));
  std::size_t next = 0;
  for (std::size_t t = 0; t < keys.size() / d && next < positions.size(); ++t) {
    stream.append(keys.data() + t * d, values.data() + t * d);
    while (next < positions.size() && positions[next] == static_cast<std::int64_t>(t)) {
      const auto n = static_cast<std::int64_t>(t + 1);
      std::vector<float> q_rows(group * d), out_rows(group * d);  // [group, d]
      for (std::size_t g = 0; g < group; ++g) {
        std::copy_n(queries.data() + (g * positions.size() + next) * d, d, q_rows.data() + g * d);
        decode_attention_cpu(stream.view(), n, q_rows.data() + g * d, 1, scale, out_rows.data() + g * d);
      }
      std::vector<GuardBoundTerms> terms(group);
      decode_guard_group(stream.view(), n, q_rows.data(), out_rows.data(), static_cast<int>(group),
                         probabilistic ? delta : 0.0, terms.data());
      const bool float_only = reads_only_float_pages(stream.view(), n);  // the same for every head of the group
      for (std::size_t g = 0; g < group; ++g) {
        const float* q = q_rows.data() + g * d;
        exact_attention(q, keys.data(), values.data(), n, static_cast<std::int64_t>(d), o.data());
        double err = 0.0, norm = 0.0;
        for (std::size_t c = 0; c < d; ++c) {
          err += (out_rows[g * d + c] - o[c]) * (out_rows[g * d + c] - o[c]);
          norm += o[c] * o[c];
        }
        GuardRow row{.head = first_head + static_cast<std::int64_t>(g), .position = static_cast<std::int64_t>(t),
                     .actual = std::sqrt(err), .output_norm = std::sqrt(norm),
                     .float_only = float_only};
        row.deterministic = terms[g].deterministic.total;
        row.bound = probabilistic ? terms[g].probabilistic : row.deterministic;
        rows.push_back(row);
      }
      ++next;
    }
  }
  return rows;
}

}  // namespace hnf::runtime
