// hnf-verify trace: run the model over a text and record, per layer, the queries, keys (before
// and after RoPE) and values it computed, in the trace format (docs/trace-format.md).
#include <fmt/format.h>

#include <cstdio>
#include <cstring>

#include "commands.h"
#include "trace_writer.h"
#include "hnf/analysis/trace.h"
#include "hnf/proofs/error.h"
#include "hnf/proofs/float16.h"
#include "hnf/proofs/sha256.h"
#include "hnf/runtime/dense_kv_cache.h"
#include "hnf/runtime/model_dir.h"
#include "progress.h"

namespace hnf::verify::cli {
namespace {

// Streams each layer's tensors into the writer as the model produces them.
class TraceRecorder final : public runtime::LayerObserver {
 public:
  TraceRecorder(proofs::SafetensorsWriter& writer, proofs::Dtype dtype, const runtime::KvCacheShape& shape,
                Progress& progress)
      : writer_(writer), dtype_(dtype), q_width_(shape.num_heads * shape.head_dim),
        kv_width_(shape.num_kv_heads * shape.head_dim), progress_(progress) {}

  void on_layer(int layer, const float* q, const float* k_pre_rope, const float* k, const float* v, std::int64_t n,
                std::int64_t first_position) override {
    HNF_ASSERT(first_position == 0, "a trace is captured in one prefill");
    const std::string prefix = "layers." + std::to_string(layer) + ".";
    write(prefix + "q", q, n * q_width_);
    write(prefix + "k", k, n * kv_width_);
    write(prefix + "k_pre_rope", k_pre_rope, n * kv_width_);
    write(prefix + "v", v, n * kv_width_);
    progress_.update(static_cast<std::uint64_t>(layer + 1));
  }

 private:
  // The whole tensor: `elements` floats, converted to the trace dtype.
  void write(const std::string& name, const float* data, std::int64_t elements) {
    const auto count = static_cast<std::size_t>(elements);
    if (dtype_ == proofs::Dtype::kF32) {
      writer_.append(name, std::as_bytes(std::span(data, count)));
      return;
    }
    scratch_.resize(count);
    for (std::size_t i = 0; i < count; ++i)
      scratch_[i] = dtype_ == proofs::Dtype::kF16 ? proofs::float_to_half_bits(data[i]) : proofs::float_to_bf16_bits(data[i]);
    writer_.append(name, std::as_bytes(std::span(scratch_)));
  }

  proofs::SafetensorsWriter& writer_;
  proofs::Dtype dtype_;
  std::int64_t q_width_;   // heads * head_dim
  std::int64_t kv_width_;  // kv_heads * head_dim
  Progress& progress_;
  std::vector<std::uint16_t> scratch_;
};

}  // namespace

void write_trace(const TraceRequest& o) {
  const auto dtype = proofs::parse_dtype(o.dtype);
  if (!dtype || !proofs::is_floating(*dtype)) throw proofs::bad_input("--dtype", "'" + o.dtype + "' is not F32, F16 or BF16");
  if (o.tokens < 2) throw proofs::bad_input("--tokens", "must be at least 2");
  const auto dir = runtime::load_model_dir(o.model);
  const auto& config = dir.model.config();
  const std::string text = runtime::read_text_file(o.text);
  const auto ids = dir.tokenizer.encode(text, o.text);
  if (static_cast<std::int64_t>(ids.size()) < o.tokens - 1) {
    throw proofs::bad_input(o.text, fmt::format("has {} tokens, fewer than the {} requested after BOS", ids.size(), o.tokens - 1));
  }
  if (o.tokens > config.max_position_embeddings) {
    std::fprintf(stderr, "hnf-verify: warning: %lld tokens exceed the model's max_position_embeddings %lld\n",
                 static_cast<long long>(o.tokens), static_cast<long long>(config.max_position_embeddings));
  }
  std::vector<std::int32_t> input{dir.tokenizer.bos_id()};
  input.insert(input.end(), ids.begin(), ids.begin() + (o.tokens - 1));

  const auto shape = dir.model.cache_shape();
  const std::int64_t n = o.tokens;
  auto specs = analysis::trace_tensor_specs(
      {shape.num_layers, shape.num_heads, shape.num_kv_heads, n, n, shape.head_dim}, *dtype);
  const std::filesystem::path model_file = std::filesystem::path(o.model) / "model.safetensors";
  const std::filesystem::path tokenizer_file = std::filesystem::path(o.model) / "tokenizer.model";
  auto metadata = analysis::make_trace_metadata({
      .model_id = std::filesystem::path(o.model).lexically_normal().filename().string(),
      .model_sha256 = proofs::sha256_file_hex(model_file),
      .tokenizer = "tokenizer.model sha256 " + proofs::sha256_file_hex(tokenizer_file),
      .text_source = std::filesystem::path(o.text).filename().string() + ": BOS then its first " +
                     std::to_string(n - 1) + " tokens",
      .text_sha256 = proofs::sha256_hex(std::as_bytes(std::span(text.data(), text.size()))),
      .num_tokens = n,
      .num_layers = shape.num_layers,
      .dtype = *dtype,
      .rope_theta = config.rope_theta,
  });
  metadata.emplace("num_heads", std::to_string(shape.num_heads));
  metadata.emplace("num_kv_heads", std::to_string(shape.num_kv_heads));
  metadata.emplace("head_dim", std::to_string(shape.head_dim));
  metadata.emplace("max_position_embeddings", std::to_string(config.max_position_embeddings));

  proofs::SafetensorsWriter writer(o.out, std::move(specs), metadata);
  Progress progress("trace " + o.out, static_cast<std::uint64_t>(shape.num_layers));
  TraceRecorder recorder(writer, *dtype, shape, progress);
  runtime::DenseKvCache cache(shape, n);
  dir.model.forward(input, cache, nullptr, &recorder);
  throw_if_interrupted();  // the last chance to stop before the trace is renamed into place
  writer.finish();
  std::fprintf(stderr, "hnf-verify: wrote %s (%lld tokens, %lld layers)\n", o.out.c_str(), static_cast<long long>(n),
               static_cast<long long>(shape.num_layers));
}

namespace {

int run_trace(const TraceRequest& o) {
  write_trace(o);
  return 0;
}

}  // namespace

void register_trace(CLI::App& app, int* exit_code) {
  auto options = std::make_shared<TraceRequest>();
  CLI::App* cmd = app.add_subcommand("trace", "Record a model's attention inputs (q, k, v per layer) over a text");
  cmd->add_option("--model", options->model, "Model folder (config.json, model.safetensors, tokenizer.model)")->required();
  cmd->add_option("--text", options->text, "UTF-8 text file; the trace reads BOS then its first tokens")->required();
  cmd->add_option("--tokens", options->tokens, "Positions to record, BOS included")->capture_default_str();
  cmd->add_option("--out,-o", options->out, "Trace file to write (atomically)")->required();
  cmd->add_option("--dtype", options->dtype, "Stored dtype: F32 (exact), F16 or BF16")->capture_default_str();
  cmd->callback([options, exit_code] { *exit_code = run_trace(*options); });
}

}  // namespace hnf::verify::cli
