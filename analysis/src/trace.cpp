#include "hnf/analysis/trace.h"

#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <optional>

#include "hnf/proofs/error.h"

namespace hnf::analysis {
namespace {

using proofs::Dtype;
using proofs::TensorInfo;

std::string q(std::string_view s) { return "'" + std::string(s) + "'"; }

std::optional<std::int64_t> parse_count(std::string_view text) {
  std::int64_t value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || value < 0) return std::nullopt;
  return value;
}

// Splits "layers.<l>.<kind>" into (l, kind); nullopt for any other name.
std::optional<std::pair<std::int64_t, std::string_view>> split_layer_name(std::string_view name) {
  constexpr std::string_view kPrefix = "layers.";
  if (!name.starts_with(kPrefix)) return std::nullopt;
  name.remove_prefix(kPrefix.size());
  const auto dot = name.find('.');
  if (dot == std::string_view::npos || dot == 0) return std::nullopt;
  const auto layer = parse_count(name.substr(0, dot));
  if (!layer) return std::nullopt;
  return std::pair{*layer, name.substr(dot + 1)};
}

}  // namespace

proofs::Metadata make_trace_metadata(const TraceProvenance& p) {
  proofs::Metadata metadata{
      {"format", std::string(kTraceFormatName)},
      {"format_version", std::string(kTraceFormatVersion)},
      {"model_id", p.model_id},
      {"model_sha256", p.model_sha256},
      {"tokenizer", p.tokenizer},
      {"text_source", p.text_source},
      {"text_sha256", p.text_sha256},
      {"num_tokens", std::to_string(p.num_tokens)},
      {"num_layers", std::to_string(p.num_layers)},
      {"dtype", std::string(proofs::dtype_name(p.dtype))},
      {"rope", p.rope_theta ? "llama" : "none"},
  };
  if (p.rope_theta) {
    char theta[32];
    std::snprintf(theta, sizeof theta, "%.17g", *p.rope_theta);  // round-trips the double exactly
    metadata.emplace("rope_theta", theta);
  }
  return metadata;
}

std::vector<proofs::TensorSpec> trace_tensor_specs(const TraceShape& s, proofs::Dtype dtype) {
  std::vector<proofs::TensorSpec> specs;
  for (std::int64_t l = 0; l < s.num_layers; ++l) {
    const std::string prefix = "layers." + std::to_string(l) + ".";
    specs.push_back({prefix + "q", dtype, {s.num_heads, s.num_queries, s.head_dim}});
    specs.push_back({prefix + "k", dtype, {s.num_kv_heads, s.num_tokens, s.head_dim}});
    specs.push_back({prefix + "k_pre_rope", dtype, {s.num_kv_heads, s.num_tokens, s.head_dim}});
    specs.push_back({prefix + "v", dtype, {s.num_kv_heads, s.num_tokens, s.head_dim}});
  }
  if (s.num_queries != s.num_tokens) specs.push_back({"query_positions", Dtype::kI64, {s.num_queries}});
  return specs;
}

Trace Trace::open(const std::filesystem::path& path) {
  Trace trace(proofs::SafetensorsFile::open(path));
  trace.validate();
  return trace;
}

void Trace::validate() {
  const std::string file = file_.path().string();
  auto fail = [&](const std::string& problem) { return proofs::bad_input(file, problem); };
  const auto& meta = file_.metadata();

  const auto format = meta.find("format");
  if (format == meta.end() || format->second != kTraceFormatName) {
    throw fail("not an hnf trace: __metadata__ 'format' is not " + q(kTraceFormatName) +
               " (use 'inspect --raw' for other safetensors files)");
  }
  for (std::string_view key : kRequiredTraceMetadata) {
    if (!meta.contains(key)) throw fail("trace metadata lacks required key " + q(key));
  }
  if (meta.at("format_version") != kTraceFormatVersion) {
    throw fail("unsupported trace format_version " + q(meta.at("format_version")) + " (this build reads " +
               std::string(kTraceFormatVersion) + ")");
  }
  const auto num_layers = parse_count(meta.at("num_layers"));
  const auto num_tokens = parse_count(meta.at("num_tokens"));
  if (!num_layers || *num_layers == 0) throw fail("metadata num_layers " + q(meta.at("num_layers")) + " is not a positive integer");
  if (!num_tokens || *num_tokens == 0) throw fail("metadata num_tokens " + q(meta.at("num_tokens")) + " is not a positive integer");
  // Every layer has at least three tensors: a larger count is a lie that would size the layer
  // table (allocated below) from an untrusted number.
  if (static_cast<std::uint64_t>(*num_layers) > file_.tensors().size()) {
    throw fail("metadata num_layers " + meta.at("num_layers") + " exceeds the " + std::to_string(file_.tensors().size()) +
               " tensors in the file");
  }
  const auto dtype = proofs::parse_dtype(meta.at("dtype"));
  if (!dtype || !proofs::is_floating(*dtype)) throw fail("metadata dtype " + q(meta.at("dtype")) + " is not F32, F16 or BF16");
  dtype_ = *dtype;
  const std::string& rope = meta.at("rope");
  if (rope != "none" && rope != "llama") throw fail("metadata rope " + q(rope) + " is neither 'none' nor 'llama'");
  if (rope == "llama") {
    const auto theta = meta.find("rope_theta");
    char* end = nullptr;
    const double value = theta == meta.end() ? 0.0 : std::strtod(theta->second.c_str(), &end);
    if (theta == meta.end() || end == theta->second.c_str() || *end != '\0' || !(value > 0.0) || !std::isfinite(value))
      throw fail("metadata rope is 'llama' but rope_theta is missing or not a positive number");
  }

  // Sort every tensor into its layer slot; anything else is an error.
  layers_.assign(static_cast<std::size_t>(*num_layers), TraceLayer{});
  const TensorInfo* positions = nullptr;
  for (const auto& t : file_.tensors()) {
    if (t.name == "query_positions") {
      positions = &t;
      continue;
    }
    const auto split = split_layer_name(t.name);
    if (!split) throw fail("unexpected tensor " + q(t.name));
    const auto [l, kind] = *split;
    if (l >= *num_layers) throw fail("tensor " + q(t.name) + " is beyond metadata num_layers " + meta.at("num_layers"));
    TraceLayer& layer = layers_[static_cast<std::size_t>(l)];
    const TensorInfo** slot = kind == "q" ? &layer.q
                              : kind == "k" ? &layer.k
                              : kind == "k_pre_rope" ? &layer.k_pre_rope
                              : kind == "v" ? &layer.v
                                            : nullptr;
    if (slot == nullptr) throw fail("unexpected tensor " + q(t.name));
    if (t.dtype != dtype_) {
      throw fail("tensor " + q(t.name) + " has dtype " + std::string(proofs::dtype_name(t.dtype)) +
                 " but metadata dtype is " + meta.at("dtype"));
    }
    if (t.shape.size() != 3) throw fail("tensor " + q(t.name) + " has shape " + proofs::format_shape(t.shape) + ", expected rank 3");
    *slot = &t;
  }

  for (std::size_t l = 0; l < layers_.size(); ++l) {
    const TraceLayer& layer = layers_[l];
    const std::string prefix = "layers." + std::to_string(l) + ".";
    if (!layer.q && !layer.k && !layer.v && !layer.k_pre_rope) {
      throw fail("trace is missing layer " + std::to_string(l) + " (metadata num_layers is " + meta.at("num_layers") + ")");
    }
    for (const auto& [tensor, kind] : {std::pair{layer.q, "q"}, std::pair{layer.k, "k"}, std::pair{layer.v, "v"}}) {
      if (!tensor) throw fail("layer " + std::to_string(l) + " is missing tensor " + q(prefix + kind));
    }
    if (has_rope() && !layer.k_pre_rope) throw fail("layer " + std::to_string(l) + " is missing tensor " + q(prefix + "k_pre_rope") + " (rope is llama)");
    if (!has_rope() && layer.k_pre_rope) throw fail("tensor " + q(prefix + "k_pre_rope") + " present but metadata rope is 'none'");

    const TraceShape here{*num_layers, layer.q->shape[0], layer.k->shape[0], layer.k->shape[1], layer.q->shape[1],
                          layer.q->shape[2]};
    if (l == 0) shape_ = here;
    auto mismatch = [&](const char* what, std::int64_t got, std::int64_t want) {
      return fail("layer " + std::to_string(l) + " has " + std::to_string(got) + " " + what + " but layer 0 has " +
                  std::to_string(want));
    };
    if (here.num_heads != shape_.num_heads) throw mismatch("query heads", here.num_heads, shape_.num_heads);
    if (here.num_kv_heads != shape_.num_kv_heads) throw mismatch("kv heads", here.num_kv_heads, shape_.num_kv_heads);
    if (here.num_tokens != shape_.num_tokens) throw mismatch("tokens", here.num_tokens, shape_.num_tokens);
    if (here.num_queries != shape_.num_queries) throw mismatch("queries", here.num_queries, shape_.num_queries);
    if (here.head_dim != shape_.head_dim) throw mismatch("head_dim", here.head_dim, shape_.head_dim);
    const std::vector<std::int64_t> kv_shape{here.num_kv_heads, here.num_tokens, here.head_dim};
    for (const TensorInfo* t : {layer.k, layer.v, layer.k_pre_rope}) {
      if (t && t->shape != kv_shape) {
        throw fail("tensor " + q(t->name) + " has shape " + proofs::format_shape(t->shape) + " but " +
                   q(layer.k->name) + " has " + proofs::format_shape(kv_shape));
      }
    }
  }
  if (shape_.num_kv_heads == 0 || shape_.num_heads % shape_.num_kv_heads != 0) {
    throw fail(std::to_string(shape_.num_heads) + " query heads are not a multiple of " +
               std::to_string(shape_.num_kv_heads) + " kv heads");
  }
  if (shape_.head_dim == 0) throw fail("head_dim is 0");
  if (shape_.num_heads == 0 || shape_.num_queries == 0) throw fail("no queries are recorded (query heads or queries is 0)");
  if (shape_.num_tokens != *num_tokens) {
    throw fail("keys hold " + std::to_string(shape_.num_tokens) + " tokens but metadata num_tokens is " + meta.at("num_tokens"));
  }

  if (positions == nullptr) {
    if (shape_.num_queries != shape_.num_tokens) {
      throw fail(std::to_string(shape_.num_queries) + " queries recorded for " + std::to_string(shape_.num_tokens) +
                 " tokens but no 'query_positions' tensor says which");
    }
    query_positions_.resize(static_cast<std::size_t>(shape_.num_tokens));
    for (std::int64_t i = 0; i < shape_.num_tokens; ++i) query_positions_[static_cast<std::size_t>(i)] = i;
    return;
  }
  if (positions->dtype != Dtype::kI64 || positions->shape != std::vector<std::int64_t>{shape_.num_queries}) {
    throw fail("tensor 'query_positions' must be I64 of shape [" + std::to_string(shape_.num_queries) + "], got " +
               std::string(proofs::dtype_name(positions->dtype)) + " " + proofs::format_shape(positions->shape));
  }
  const auto bytes = file_.bytes(*positions);
  query_positions_.resize(static_cast<std::size_t>(shape_.num_queries));
  std::memcpy(query_positions_.data(), bytes.data(), bytes.size());
  for (std::size_t i = 0; i < query_positions_.size(); ++i) {
    const std::int64_t p = query_positions_[i];
    if (p < 0 || p >= shape_.num_tokens || (i > 0 && p <= query_positions_[i - 1])) {
      throw fail("query_positions[" + std::to_string(i) + "] = " + std::to_string(p) +
                 " is out of range or not strictly increasing");
    }
  }
}

}  // namespace hnf::analysis
