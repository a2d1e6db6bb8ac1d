// The architecture of a Llama-layout Hugging Face checkpoint, read from its config.json. Only
// what LlamaForCausalLM computes with is kept; features the runner does not implement (RoPE
// scaling, attention or MLP biases, another activation) are rejected rather than ignored, so
// a checkpoint is either run exactly as Hugging Face runs it or not at all.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string_view>
#include <vector>

namespace hnf::runtime {

struct LlamaConfig {
  std::int64_t hidden_size = 0;
  std::int64_t num_attention_heads = 0;
  std::int64_t num_key_value_heads = 0;  // divides num_attention_heads (grouped-query attention)
  std::int64_t head_dim = 0;             // even; hidden_size == num_attention_heads * head_dim
  std::int64_t intermediate_size = 0;
  std::int64_t num_hidden_layers = 0;
  std::int64_t vocab_size = 0;
  std::int64_t max_position_embeddings = 0;  // informational: the runner does not cap positions
  double rms_norm_eps = 0.0;
  double rope_theta = 10000.0;
  bool tie_word_embeddings = false;  // true: lm_head is the embedding matrix
  std::optional<std::int32_t> bos_token_id;
  std::vector<std::int32_t> eos_token_ids;  // config.json may give one id or a list; empty when absent
};

// Reads and validates `config_json`. Defaults as Hugging Face applies them: num_key_value_heads
// = num_attention_heads, head_dim = hidden_size / num_attention_heads, rope_theta = 10000,
// tie_word_embeddings = false; a field set to null counts as absent. Throws
// proofs::Error(kBadInput) "<config_json>: <problem naming the field>" when the file is
// unreadable or not a JSON object, a required field is missing or has the wrong type, a size
// is not positive, the head counts or head_dim are inconsistent, a token id is outside the
// vocabulary, or the config asks for a feature the runner does not implement.
[[nodiscard]] LlamaConfig load_llama_config(const std::filesystem::path& config_json);

// The consistency checks of load_llama_config on a config built in code; errors name `source`.
void validate_llama_config(const LlamaConfig& config, std::string_view source);

}  // namespace hnf::runtime
