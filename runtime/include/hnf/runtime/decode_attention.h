// Decode attention read straight from the mixed-precision pages (kv_pages.h): every backend
// computes, for the `group` query heads that share one kv head,
//   out[g] = sum_{t < positions} softmax_t(q[g] . k_t * scale) v_t
// where k_t, v_t are the values the pages store (z + s*c for integer codes, the fp16/bf16
// value, or the staged float). No backend makes a dequantized copy of the stream: pages are
// decoded on the fly, at most one page at a time.
#pragma once

#include <cstdint>
#include <string>

#include "hnf/proofs/format.h"
#include "hnf/runtime/kv_pages.h"

namespace hnf::runtime {

// The page format of a vocabulary format (proofs/format.h).
[[nodiscard]] PageFormat page_format(const proofs::Format& f);
// The vocabulary format of a page format (the inverse of page_format); not for staging.
[[nodiscard]] proofs::Format vocabulary_format(const PageFormat& f);
// The f32 staging layout (keys of an intB-tP page that is not full).
[[nodiscard]] PageFormat staged_page_format();
// proofs::format_name of the page's format ("fp16", "int4-d32", "int2-t16"), or "f32-staged".
[[nodiscard]] std::string page_format_name(const PageFormat& f);

// Reference: scores, softmax and the weighted sum in double on the exact stored values; the
// result rounded once to float. The parity target of every other backend.
// q [group, head_dim], out [group, head_dim]; 1 <= positions <= the stream's positions.
void decode_attention_reference(const StreamView& stream, std::int64_t positions, const float* q, int group,
                                float scale, float* out);

// Optimised CPU backend: fp32 arithmetic, AVX2/FMA/F16C code when the CPU has them (chosen at
// run time), a portable path otherwise. Same contract as the reference. Single-threaded and
// thread-safe (thread-local scratch only), so callers can run many in parallel.
void decode_attention_cpu(const StreamView& stream, std::int64_t positions, const float* q, int group, float scale,
                          float* out);

// Every query head of one layer: query head h reads streams[h / (heads / kv_heads)];
// q [heads, head_dim], out [heads, head_dim]. Long streams are cut into chunks of positions;
// (kv head, chunk) items run in parallel (OpenMP) when there is enough work, each reading its
// part of the stream once for all of the kv head's query heads.
void decode_layer_cpu(const StreamView* streams, int kv_heads, std::int64_t positions, const float* q, int heads,
                      float scale, float* out);

// True when decode_attention_cpu runs its AVX2/FMA/F16C code on this CPU.
[[nodiscard]] bool cpu_decode_uses_avx2() noexcept;

// The exact stored key and value of position t and their per-element error radii (an upper
// bound of |appended - stored|: proofs::integer_radius of the group, proofs::float_format_radius
// of fp16/bf16 values, 0 for staged floats). key, value, key_radius, value_radius [head_dim].
void read_position(const StreamView& stream, std::int64_t t, double* key, double* value, double* key_radius,
                   double* value_radius);

// One side of a stored position as the probabilistic guard reads it (THEORY.md section 15.2),
// every array [head_dim]: the stored value; the radius (as read_position); a bound on the mean
// of the error appended - stored (bias); and a sub-Gaussian variance proxy of the rest of the
// error (proxy: s^2 (1 + 2^-40)^2 / 4 for stochastically rounded codes, whose random part lies in an
// interval of length s, else 0: the whole error is then bias, bounded by the radius).
struct SideRead {
  double* value;
  double* radius;
  double* bias;
  double* proxy;
};
void read_position_law(const StreamView& stream, std::int64_t t, const SideRead& key, const SideRead& value);

}  // namespace hnf::runtime
