// The a-posteriori error bound of one decode row (DESIGN.md section 3, "What the runtime
// adds"; proved in proofs/THEORY.md section 13).
#pragma once

#include <cstdint>

#include "hnf/runtime/kv_pages.h"

namespace hnf::runtime {

// An upper bound (rounded toward +inf) of ||out - o||_2, where o is the exact-arithmetic
// attention of the query q over positions 0 .. positions-1 of the *appended* keys and values
// (before quantization), with the exact scale 1/sqrt(head_dim):
//   o = sum_t softmax_t(q . k_t / sqrt(head_dim)) v_t.
// The runtime does not keep k_t, v_t: the bound uses the stored values and their per-element
// radii (read_position), which enclose them, and covers the backend's own floating-point error
// in `out` as well. q [head_dim], out [head_dim] (the row a backend computed for q).
// +inf when q or out holds a non-finite value (or, in degenerate cases, when the enclosure of
// the softmax normaliser reaches 0). Cost: O(positions * head_dim), one allocation per call.
[[nodiscard]] double decode_error_bound(const StreamView& stream, std::int64_t positions, const float* q,
                                        const float* out);

// The parts of decode_error_bound (THEORY.md section 13), each rounded toward +inf; with
// o~ the exact attention over the *stored* keys and values:
struct DecodeBoundTerms {
  double arithmetic = 0.0;  // >= ||out - o~||: the backend's rounding (and any other error of out)
  double key = 0.0;         // >= ||sum_t (a_t - a~_t)(v^_t - o~)||: the key radii, through the weights
  double value = 0.0;       // >= ||sum_t a_t (v_t - v^_t)||: the value radii
  double cap = 0.0;         // >= max_t ||v_t - o~|| >= ||o - o~|| (o is a convex combination of the v_t)
  double total = 0.0;       // arithmetic + min(||key vector + value vector||, cap) >= ||out - o||;
                            // <= arithmetic + min(key + value, cap)
};
// decode_error_bound with its parts (total is the same double).
[[nodiscard]] DecodeBoundTerms decode_error_bound_terms(const StreamView& stream, std::int64_t positions,
                                                        const float* q, const float* out);

// The probabilistic guard (THEORY.md section 15, Theorem G): for stochastically rounded pages
// (independent draws, inputs chosen independently of the seed), with probability at least
// 1 - delta over the draws, ||out - o||_2 <= probabilistic. Elements not stochastically rounded
// enter through their radii as bias, so on a stream without stochastic pages the statement holds
// with probability 1 (and is looser than the deterministic bound). The deterministic bound of the
// same row (decode_error_bound_terms) comes with it: the guard reports both.
struct GuardBoundTerms {
  DecodeBoundTerms deterministic;
  double probabilistic = 0.0;  // arithmetic + min(key + value parts, cap), rounded up; +inf if unbounded
  double key_linear = 0.0;     // the parts of probabilistic before the cap (upper bounds)
  double key_bias = 0.0;
  double key_quadratic = 0.0;
  double value_random = 0.0;
  double value_bias = 0.0;
  double normaliser_lo = 0.0;  // Z_lo of the probabilistic part
};
// 0 < delta < 1.
[[nodiscard]] GuardBoundTerms decode_guard_terms(const StreamView& stream, std::int64_t positions, const float* q,
                                                 const float* out, double delta);

// Both bounds of `group` rows over the same stream and positions (the query heads of one kv head
// at one step), the stream's stored rows decoded once for all of them. q, out [group, head_dim],
// terms [group]. delta == 0: the deterministic bound only (terms[g].probabilistic is 0). The
// same doubles as decode_guard_terms / decode_error_bound_terms row by row.
void decode_guard_group(const StreamView& stream, std::int64_t positions, const float* q, const float* out, int group,
                        double delta, GuardBoundTerms* terms);

}  // namespace hnf::runtime
