// Small hand-made traces for tests, with hooks to break the schema on purpose.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "hnf/analysis/trace.h"
#include "hnf/proofs/safetensors.h"

namespace hnf::testing {

struct SmallTrace {
  std::int64_t layers = 2;
  std::int64_t heads = 4;
  std::int64_t kv_heads = 2;
  std::int64_t tokens = 8;
  std::int64_t head_dim = 4;
  // Hooks to break the trace on purpose.
  std::function<bool(const std::string& name)> skip = [](const std::string&) { return false; };
  std::function<std::vector<std::int64_t>(const std::string& name, std::vector<std::int64_t>)> reshape =
      [](const std::string&, std::vector<std::int64_t> shape) { return shape; };
  std::function<float(const std::string& name, std::uint64_t index)> value =
      [](const std::string&, std::uint64_t index) { return 0.25f * static_cast<float>(index % 7) - 0.5f; };
  proofs::Metadata metadata_overrides;
};

// Writes an F32 trace (rope "llama") per `spec`.
inline void write_small_trace(const std::filesystem::path& path, const SmallTrace& spec) {
  std::vector<proofs::TensorSpec> tensors;
  for (std::int64_t l = 0; l < spec.layers; ++l) {
    const std::string prefix = "layers." + std::to_string(l) + ".";
    const std::vector<std::int64_t> q_shape{spec.heads, spec.tokens, spec.head_dim};
    const std::vector<std::int64_t> kv_shape{spec.kv_heads, spec.tokens, spec.head_dim};
    for (const auto& [kind, shape] : {std::pair{"q", q_shape}, std::pair{"k", kv_shape},
                                      std::pair{"k_pre_rope", kv_shape}, std::pair{"v", kv_shape}}) {
      const std::string name = prefix + kind;
      if (!spec.skip(name)) tensors.push_back({name, proofs::Dtype::kF32, spec.reshape(name, shape)});
    }
  }
  proofs::Metadata metadata = analysis::make_trace_metadata({.model_id = "test", .model_sha256 = "none",
                                                             .tokenizer = "none", .text_source = "test",
                                                             .text_sha256 = "none", .num_tokens = spec.tokens,
                                                             .num_layers = spec.layers, .dtype = proofs::Dtype::kF32,
                                                             .rope_theta = 10000.0});
  for (const auto& [k, v] : spec.metadata_overrides) metadata[k] = v;
  const auto specs = tensors;
  proofs::SafetensorsWriter writer(path, std::move(tensors), metadata);
  for (const auto& t : specs) {
    std::uint64_t n = 1;
    for (auto d : t.shape) n *= static_cast<std::uint64_t>(d);
    std::vector<float> values(n);
    for (std::uint64_t i = 0; i < n; ++i) values[i] = spec.value(t.name, i);
    writer.append(t.name, std::as_bytes(std::span(values)));
  }
  writer.finish();
}

}  // namespace hnf::testing
