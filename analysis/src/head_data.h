// The data of one (layer, kv head) that the analysis (analyze.cpp) and the bounds over a scope
// (scope_bounds.cpp) share: the head's exact rows and analysed queries, its exact attention, and
// a map's quantized rows. Internal to analysis/src.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "hnf/analysis/attention_enclosure.h"
#include "hnf/analysis/kv_rows.h"
#include "hnf/proofs/format.h"

namespace hnf::analysis::detail {

// Inputs of one (layer, kv head).
struct HeadInputs {
  std::int64_t layer = 0;
  std::int64_t kv_head = 0;
  std::size_t tokens = 0;
  std::size_t d = 0;
  // Exact keys and values in the trace's own element type (2 bytes for F16/BF16): as doubles
  // they would be the largest arrays of a long-context analysis (kv_rows.h).
  StoredRows keys;                // [tokens, d]
  StoredRows values;              // [tokens, d]
  std::vector<double> key_norms;  // [tokens] upper bounds
  // The analysed queries of every query head sharing this kv head, sorted by position.
  std::vector<double> queries;         // [J, d]
  std::vector<std::int64_t> positions; // [J]
  std::vector<std::int64_t> heads;     // [J]
  std::vector<double> radius_samples;  // ||q_j - q at the previous recorded position||
  double max_query_norm = 0.0;         // over every recorded query of these heads, rounded up
};

// Calls f(t, rows) for t in [first, end), rows[i] [d] the exact doubles of row t of sources[i],
// read kReadRows rows at a time (the sources share d).
template <std::size_t N, class F>
void each_row(const std::array<const RowSource*, N>& sources, std::size_t first, std::size_t end, F&& f) {
  const std::size_t d = sources[0]->dim();
  std::array<std::vector<double>, N> chunks;
  for (auto& c : chunks) c.resize(kReadRows * d);
  std::array<const double*, N> rows{};
  for (std::size_t b = first; b < end; b += kReadRows) {
    const std::size_t count = std::min(kReadRows, end - b);
    for (std::size_t i = 0; i < N; ++i) sources[i]->read(b, count, chunks[i].data());
    for (std::size_t r = 0; r < count; ++r) {
      for (std::size_t i = 0; i < N; ++i) rows[i] = chunks[i].data() + r * d;
      f(b + r, rows);
    }
  }
}

template <class F>
void each_row(const RowSource& source, std::size_t first, std::size_t end, F&& f) {
  each_row<1>({&source}, first, end, [&](std::size_t t, const std::array<const double*, 1>& rows) { f(t, rows[0]); });
}

// Exact attention of the analysed queries (round to nearest: statistics and the model).
struct ExactAttention {
  std::size_t J = 0;
  // What the weights a_jt = e^{s_jt - m_j} / z_j and the distances ||v_t - o_j|| are recomputed
  // from, a block of positions at a time (unit_attention): kept as [tokens, J] they would be
  // the largest arrays of a long-context analysis.
  std::vector<double> max_score;           // [J] m_j, the largest scaled score
  std::vector<double> normaliser;          // [J] z_j
  std::vector<double> output;              // [J, d] o_j
  std::vector<OutputEnclosure> enclosure;  // [J] rigorous enclosure of o_j
  std::vector<double> query_norm;          // [J] nearest
};

struct MapChoice {
  std::vector<proofs::Format> key_formats;    // [units]
  std::vector<proofs::Format> value_formats;  // [units]
};

// The quantized K and V of a head under a map, as codes (kv_rows.h). requantize() redoes only
// the blocks whose format changed since the previous map, which keeps the allocator's S1
// checks cheap.
struct QuantizedCache {
  QuantizedRows keys, values;     // [tokens, d] each
  std::vector<double> key_norms;  // [tokens] upper bounds of the quantized keys' norms
};

}  // namespace hnf::analysis::detail
