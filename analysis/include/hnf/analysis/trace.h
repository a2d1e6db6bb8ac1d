// The attention-trace schema on top of safetensors (docs/trace-format.md is the spec).
//
// Per layer l: layers.<l>.q [heads, queries, head_dim] (post-RoPE queries),
// layers.<l>.k [kv_heads, tokens, head_dim] (post-RoPE keys, as attention uses them),
// layers.<l>.k_pre_rope [kv_heads, tokens, head_dim] (required when rope != "none"),
// layers.<l>.v [kv_heads, tokens, head_dim]; optional query_positions [queries] (I64) when
// not every position's query is recorded. __metadata__ carries provenance and settings.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "hnf/proofs/safetensors.h"

namespace hnf::analysis {

inline constexpr std::string_view kTraceFormatName = "hnf-trace";
inline constexpr std::string_view kTraceFormatVersion = "1";

// Metadata keys every trace must carry (values are strings, as safetensors requires).
inline constexpr std::string_view kRequiredTraceMetadata[] = {
    "format", "format_version", "model_id", "model_sha256", "tokenizer", "text_source",
    "text_sha256", "num_tokens", "num_layers", "dtype", "rope"};

struct TraceShape {
  std::int64_t num_layers = 0;
  std::int64_t num_heads = 0;     // query heads
  std::int64_t num_kv_heads = 0;  // divides num_heads (grouped-query attention)
  std::int64_t num_tokens = 0;    // cached positions (keys and values)
  std::int64_t num_queries = 0;   // recorded queries per head
  std::int64_t head_dim = 0;
};

struct TraceLayer {
  const proofs::TensorInfo* q = nullptr;           // [heads, queries, head_dim]
  const proofs::TensorInfo* k = nullptr;           // [kv_heads, tokens, head_dim], post-RoPE
  const proofs::TensorInfo* k_pre_rope = nullptr;  // [kv_heads, tokens, head_dim]; null iff rope == "none"
  const proofs::TensorInfo* v = nullptr;           // [kv_heads, tokens, head_dim]
};

class Trace {
 public:
  // Opens and validates a trace; throws proofs::Error(kBadInput) "<path>: <problem>" naming
  // exactly what is wrong (missing layer, mismatched heads, bad metadata, unknown tensor...).
  static Trace open(const std::filesystem::path& path);

  [[nodiscard]] const proofs::SafetensorsFile& file() const noexcept { return file_; }
  [[nodiscard]] const proofs::Metadata& metadata() const noexcept { return file_.metadata(); }
  [[nodiscard]] const TraceShape& shape() const noexcept { return shape_; }
  [[nodiscard]] proofs::Dtype dtype() const noexcept { return dtype_; }
  [[nodiscard]] const std::vector<TraceLayer>& layers() const noexcept { return layers_; }
  [[nodiscard]] bool has_rope() const noexcept { return metadata().at("rope") != "none"; }
  // Position of each recorded query, [queries]; 0..tokens-1 when query_positions is absent.
  [[nodiscard]] const std::vector<std::int64_t>& query_positions() const noexcept { return query_positions_; }

 private:
  explicit Trace(proofs::SafetensorsFile file) : file_(std::move(file)) {}
  void validate();

  proofs::SafetensorsFile file_;
  TraceShape shape_;
  proofs::Dtype dtype_ = proofs::Dtype::kF32;
  std::vector<TraceLayer> layers_;
  std::vector<std::int64_t> query_positions_;
};

// What a trace writer knows about the run; make_trace_metadata turns it into the required
// __metadata__ entries, so every writer spells the schema the same way.
struct TraceProvenance {
  std::string model_id;
  std::string model_sha256;
  std::string tokenizer;
  std::string text_source;
  std::string text_sha256;
  std::int64_t num_tokens = 0;
  std::int64_t num_layers = 0;
  proofs::Dtype dtype = proofs::Dtype::kF32;
  std::optional<double> rope_theta;  // Llama RoPE base; nullopt for a model without RoPE
};
[[nodiscard]] proofs::Metadata make_trace_metadata(const TraceProvenance& provenance);

// The tensors of a trace with keys before and after RoPE, in file order: per layer q, k,
// k_pre_rope, v; then query_positions when not every position's query is recorded.
[[nodiscard]] std::vector<proofs::TensorSpec> trace_tensor_specs(const TraceShape& shape, proofs::Dtype dtype);

}  // namespace hnf::analysis
