// Tiny random Llama checkpoints (config.json + model.safetensors in Hugging Face layout) for
// tests of the model runner, with hooks to break them on purpose.
#pragma once

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "hnf/proofs/float16.h"
#include "hnf/proofs/safetensors.h"

namespace hnf::testing {

struct TinyLlama {
  std::int64_t hidden = 64;
  std::int64_t heads = 4;
  std::int64_t kv_heads = 2;
  std::int64_t head_dim = 16;
  std::int64_t intermediate = 96;
  std::int64_t layers = 2;
  std::int64_t vocab = 50;
  double rms_norm_eps = 1e-5;
  double rope_theta = 10000.0;
  bool tie_word_embeddings = false;
  proofs::Dtype dtype = proofs::Dtype::kF32;  // F32, F16 or BF16
  std::uint64_t seed = 1;
  // Hooks to break the checkpoint on purpose.
  std::function<bool(const std::string& name)> skip = [](const std::string&) { return false; };
  std::function<std::vector<std::int64_t>(const std::string& name, std::vector<std::int64_t>)> reshape =
      [](const std::string&, std::vector<std::int64_t> shape) { return shape; };
  std::function<proofs::Dtype(const std::string& name, proofs::Dtype)> retype =
      [](const std::string&, proofs::Dtype given) { return given; };  // a non-float dtype gets zero bytes
  bool lm_head_even_if_tied = false;
  std::vector<std::pair<std::string, std::vector<float>>> extra_tensors;  // 1-D F32 tensors
  nlohmann::json config_overrides = nlohmann::json::object();  // merged into config.json
};

// fp32 values of every tensor as written (already rounded to the file's dtype), by name.
using TinyWeights = std::map<std::string, std::vector<float>>;

// Hugging Face tensor names and shapes of the spec's model, in file order.
inline std::vector<std::pair<std::string, std::vector<std::int64_t>>> tiny_llama_tensors(const TinyLlama& s) {
  std::vector<std::pair<std::string, std::vector<std::int64_t>>> tensors{{"model.embed_tokens.weight", {s.vocab, s.hidden}}};
  for (std::int64_t i = 0; i < s.layers; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    tensors.push_back({p + "input_layernorm.weight", {s.hidden}});
    tensors.push_back({p + "self_attn.q_proj.weight", {s.heads * s.head_dim, s.hidden}});
    tensors.push_back({p + "self_attn.k_proj.weight", {s.kv_heads * s.head_dim, s.hidden}});
    tensors.push_back({p + "self_attn.v_proj.weight", {s.kv_heads * s.head_dim, s.hidden}});
    tensors.push_back({p + "self_attn.o_proj.weight", {s.hidden, s.heads * s.head_dim}});
    tensors.push_back({p + "post_attention_layernorm.weight", {s.hidden}});
    tensors.push_back({p + "mlp.gate_proj.weight", {s.intermediate, s.hidden}});
    tensors.push_back({p + "mlp.up_proj.weight", {s.intermediate, s.hidden}});
    tensors.push_back({p + "mlp.down_proj.weight", {s.hidden, s.intermediate}});
  }
  tensors.push_back({"model.norm.weight", {s.hidden}});
  if (!s.tie_word_embeddings || s.lm_head_even_if_tied) tensors.push_back({"lm_head.weight", {s.vocab, s.hidden}});
  return tensors;
}

// Deterministic uniform values in [-1, 1) (splitmix64: the same on every platform).
class TinyRandom {
 public:
  explicit TinyRandom(std::uint64_t seed) : state_(seed) {}
  float next() {
    std::uint64_t z = (state_ += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return static_cast<float>(static_cast<double>(z >> 40) / static_cast<double>(1ull << 23) - 1.0);
  }

 private:
  std::uint64_t state_;
};

inline void write_tiny_llama_config(const std::filesystem::path& dir, const TinyLlama& s) {
  nlohmann::json config = {{"architectures", {"LlamaForCausalLM"}},
                           {"model_type", "llama"},
                           {"hidden_act", "silu"},
                           {"hidden_size", s.hidden},
                           {"num_attention_heads", s.heads},
                           {"num_key_value_heads", s.kv_heads},
                           {"intermediate_size", s.intermediate},
                           {"num_hidden_layers", s.layers},
                           {"vocab_size", s.vocab},
                           {"max_position_embeddings", 2048},
                           {"rms_norm_eps", s.rms_norm_eps},
                           {"rope_theta", s.rope_theta},
                           {"rope_scaling", nullptr},
                           {"tie_word_embeddings", s.tie_word_embeddings},
                           {"bos_token_id", 1},
                           {"eos_token_id", 2},
                           {"torch_dtype", "float32"}};
  config.merge_patch(s.config_overrides);  // a null in the overrides removes the field
  std::ofstream(dir / "config.json") << config.dump(2) << "\n";
}

// Writes dir/config.json and dir/model.safetensors; returns the weights as written. Weights are
// scaled so that activations stay of order one through the layers (like a trained model's).
inline TinyWeights write_tiny_llama(const std::filesystem::path& dir, const TinyLlama& s) {
  std::filesystem::create_directories(dir);
  write_tiny_llama_config(dir, s);
  TinyRandom random(s.seed);
  TinyWeights weights;
  std::vector<proofs::TensorSpec> specs;
  for (const auto& [name, shape] : tiny_llama_tensors(s)) {
    std::size_t n = 1;
    for (const std::int64_t dim : shape) n *= static_cast<std::size_t>(dim);
    std::vector<float> values(n);
    const bool is_norm = shape.size() == 1;
    const bool is_embedding = name == "model.embed_tokens.weight";
    const float scale = is_norm || is_embedding ? 1.0f : static_cast<float>(std::sqrt(3.0 / static_cast<double>(shape[1])));
    for (float& x : values) {
      x = is_norm ? 1.0f + 0.2f * random.next() : scale * random.next();
      if (s.dtype == proofs::Dtype::kF16) x = proofs::half_bits_to_float(proofs::float_to_half_bits(x));
      if (s.dtype == proofs::Dtype::kBF16) x = proofs::bf16_bits_to_float(proofs::float_to_bf16_bits(x));
    }
    if (s.skip(name)) continue;
    specs.push_back({name, s.retype(name, s.dtype), s.reshape(name, shape)});
    weights.emplace(name, std::move(values));
  }
  for (const auto& [name, values] : s.extra_tensors) {
    specs.push_back({name, proofs::Dtype::kF32, {static_cast<std::int64_t>(values.size())}});
    weights.emplace(name, values);
  }
  const auto order = specs;
  proofs::SafetensorsWriter writer(dir / "model.safetensors", std::move(specs), {{"format", "pt"}});
  for (const auto& spec : order) {
    const std::vector<float>& values = weights.at(spec.name);
    std::size_t n = 1;
    for (const std::int64_t dim : spec.shape) n *= static_cast<std::size_t>(dim);
    std::vector<float> data(values);
    data.resize(n);  // a reshaped tensor gets the right number of bytes for its new shape
    if (spec.dtype == proofs::Dtype::kF32) {
      writer.append(spec.name, std::as_bytes(std::span(data)));
    } else if (!proofs::is_floating(spec.dtype)) {
      writer.append(spec.name, std::vector<std::byte>(n * proofs::dtype_size(spec.dtype)));
    } else {
      std::vector<std::uint16_t> bits(n);
      for (std::size_t i = 0; i < n; ++i) {
        bits[i] = spec.dtype == proofs::Dtype::kF16 ? proofs::float_to_half_bits(data[i]) : proofs::float_to_bf16_bits(data[i]);
      }
      writer.append(spec.name, std::as_bytes(std::span(bits)));
    }
  }
  writer.finish();
  return weights;
}

}  // namespace hnf::testing
