// Deterministic synthetic traces in the trace format: for tests, examples and benchmarks of
// the file path only. Their metadata says text_source "synthetic"; no figure about model
// behaviour may ever be measured on them.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string_view>

#include "hnf/proofs/safetensors.h"

namespace hnf::analysis {

// What the queries and keys look like. Every pattern but kGaussian writes the post-RoPE q and k
// directly (k_pre_rope is k rotated back), so the attention it produces does not depend on RoPE.
enum class SyntheticPattern {
  kGaussian,   // Gaussian q, k (outlier channels x4), v, RoPE applied: the default, bytes unchanged
  kUniform,    // every query is zero: each query attends exactly uniformly to positions 0..p
  kEqualKeys,  // every key is the same vector: uniform attention again, and no key spread
  kSpike,      // queries along one direction u; the key at position tokens/2 is a strong spike along u
  kSinks,      // queries along u; the first `sinks` keys are strong spikes along u (attention sinks)
  kOutliers,   // Gaussian keys, and every 97th key has channel 3 at +-1e4
  kDenormal,   // keys and values subnormal in the trace dtype (half the smallest normal, times N(0,1))
};

// "gaussian", "uniform", "equal-keys", "spike", "sinks", "outliers", "denormal"; nullopt otherwise.
[[nodiscard]] std::optional<SyntheticPattern> parse_synthetic_pattern(std::string_view name);
[[nodiscard]] std::string_view synthetic_pattern_name(SyntheticPattern pattern);

struct SyntheticTraceSpec {
  std::int64_t num_layers = 2;
  std::int64_t num_heads = 4;
  std::int64_t num_kv_heads = 2;
  std::int64_t num_tokens = 64;
  std::int64_t head_dim = 64;
  std::int64_t query_stride = 1;  // record the query of every query_stride-th position, ending at the last
  proofs::Dtype dtype = proofs::Dtype::kF16;
  double rope_theta = 10000.0;    // Llama-style rotary embedding of q and k
  std::uint64_t seed = 1;
  SyntheticPattern pattern = SyntheticPattern::kGaussian;
  std::int64_t sinks = 1;         // kSinks: how many leading positions are sinks (1..tokens)
};

// Writes the trace layer by layer (peak memory: one head's [tokens, head_dim] block).
// Throws proofs::Error(kBadInput) for an invalid spec or an unwritable path; nothing is left
// at `out` on failure. `on_layer(l)` (optional) is called after each layer, for progress.
void write_synthetic_trace(const std::filesystem::path& out, const SyntheticTraceSpec& spec,
                           const std::function<void(std::int64_t)>& on_layer = {});

// Llama rotary embedding, rotate-half convention, in place.
// x [head_dim] at sequence position `position`; pairs (i, i + head_dim/2) rotate by
// position * theta^(-2i/head_dim).
void apply_rope(float* x, std::int64_t head_dim, std::int64_t position, double theta) noexcept;

}  // namespace hnf::analysis
