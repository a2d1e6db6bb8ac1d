// The guard on a calibration text (certify's prediction, THEORY.md section 14.4): a policy's cache
// built over recorded keys and values one position at a time, each recorded query attended at its
// own step, and per row the guard's bound next to the row's actual error against the exact rows.
// Also the measurement `eval` makes against its shadow copy: exact_attention is that reference.
#pragma once

#include <cstdint>
#include <vector>

#include "hnf/proofs/policy.h"
#include "hnf/runtime/kv_pages.h"

namespace hnf::runtime {

// The attention of q over the exact rows [0, n), in double (a measurement, not a bound):
// q [d], keys, values [>= n, d] floats, out [d].
void exact_attention(const float* q, const float* keys, const float* values, std::int64_t n, std::int64_t d, double* out);

// Whether every page holding positions [0, positions) of a stream is a float page (fp16, bf16 or
// staged f32): rows that read only those are counted apart from the guard's bound / actual figures.
[[nodiscard]] bool reads_only_float_pages(const StreamView& view, std::int64_t positions);

struct GuardRow {
  std::int64_t head = 0;      // query head
  std::int64_t position = 0;  // query position
  double bound = 0.0;         // the guard's bound of its class (probabilistic for a stochastic policy), rounded up
  double deterministic = 0.0; // the deterministic bound (decode_error_bound)
  double actual = 0.0;        // ||out - o||, o the exact attention (nearest)
  double output_norm = 0.0;   // ||o|| (nearest)
  bool float_only = false;    // every page it read is fp16/bf16 or staged f32
};

// One (layer, kv head) of a policy cache: keys, values [tokens, d] appended in order; queries
// [group, positions.size(), d] of the group's query heads (first_head, first_head + 1, ...) at the
// sorted `positions`. Each query row is decoded by the CPU backend at its step and bounded; a
// stochastic policy draws with its calibration seed and is bounded by the probabilistic guard at
// failure probability delta per row.
[[nodiscard]] std::vector<GuardRow> calibrate_guard(const proofs::PrecisionPolicy& policy, const proofs::HeadPolicy& head,
                                                    const std::vector<float>& keys, const std::vector<float>& values,
                                                    const std::vector<float>& queries,
                                                    const std::vector<std::int64_t>& positions, std::int64_t first_head,
                                                    double delta);

}  // namespace hnf::runtime
