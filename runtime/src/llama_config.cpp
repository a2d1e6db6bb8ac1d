#include "hnf/runtime/llama_config.h"

#include <cmath>
#include <limits>
#include <string>

#include <nlohmann/json.hpp>

#include "hnf/proofs/error.h"
#include "hnf/proofs/json_limits.h"

namespace hnf::runtime {
namespace {

using nlohmann::json;

// Reads the fields of one config.json; every error names the file and the field.
class ConfigReader {
 public:
  ConfigReader(const json& root, std::string source) : root_(root), source_(std::move(source)) {}

  [[noreturn]] void fail(std::string_view field, const std::string& problem) const {
    throw proofs::bad_input(source_, "field \"" + std::string(field) + "\" " + problem);
  }

  // nullptr when absent or null (Hugging Face treats both as "use the default").
  [[nodiscard]] const json* find(std::string_view field) const {
    const auto it = root_.find(field);
    if (it == root_.end() || it->is_null()) return nullptr;
    return &*it;
  }

  [[nodiscard]] std::int64_t positive_int(std::string_view field) const {
    const json* value = find(field);
    if (value == nullptr) fail(field, "is missing");
    return positive_int(field, *value);
  }

  [[nodiscard]] std::int64_t positive_int(std::string_view field, std::int64_t fallback) const {
    const json* value = find(field);
    return value == nullptr ? fallback : positive_int(field, *value);
  }

  [[nodiscard]] double positive_number(std::string_view field) const {
    const json* value = find(field);
    if (value == nullptr) fail(field, "is missing");
    return positive_number(field, *value);
  }

  [[nodiscard]] double positive_number(std::string_view field, double fallback) const {
    const json* value = find(field);
    return value == nullptr ? fallback : positive_number(field, *value);
  }

  [[nodiscard]] bool boolean(std::string_view field, bool fallback) const {
    const json* value = find(field);
    if (value == nullptr) return fallback;
    if (!value->is_boolean()) fail(field, "must be true or false, got " + value->dump());
    return value->get<bool>();
  }

  // Token ids: one integer, or (allow_list) a list of them.
  [[nodiscard]] std::vector<std::int32_t> token_ids(std::string_view field, bool allow_list) const {
    const json* value = find(field);
    if (value == nullptr) return {};
    std::vector<std::int32_t> ids;
    if (allow_list && value->is_array()) {
      for (const json& item : *value) ids.push_back(token_id(field, item));
    } else {
      ids.push_back(token_id(field, *value));
    }
    return ids;
  }

  // A string field that, when present, must equal `expected`.
  void require_string(std::string_view field, std::string_view expected, const std::string& why) const {
    const json* value = find(field);
    if (value == nullptr) return;
    if (!value->is_string() || value->get<std::string>() != expected) {
      fail(field, "is " + value->dump() + ", only \"" + std::string(expected) + "\" is supported (" + why + ")");
    }
  }

  // A field that must be absent, null or false: a feature the runner does not implement.
  void require_off(std::string_view field, const std::string& feature) const {
    const json* value = find(field);
    if (value == nullptr || (value->is_boolean() && !value->get<bool>())) return;
    fail(field, "is " + value->dump() + ": " + feature + " is not supported");
  }

 private:
  // Sizes are capped at 2^31 - 1 so that every product of two of them fits an int64.
  [[nodiscard]] std::int64_t positive_int(std::string_view field, const json& value) const {
    if (!value.is_number_integer()) fail(field, "must be a positive integer, got " + value.dump());
    if (const auto n = proofs::json_integer(value, 1, std::numeric_limits<std::int32_t>::max())) return *n;
    // Above 2^31 - 1, including unsigned values beyond int64: too large; otherwise not positive.
    if (!proofs::json_integer(value, std::numeric_limits<std::int64_t>::min(), std::numeric_limits<std::int32_t>::max())) {
      fail(field, "is too large: " + value.dump());
    }
    fail(field, "must be a positive integer, got " + value.dump());
  }

  [[nodiscard]] double positive_number(std::string_view field, const json& value) const {
    if (!value.is_number()) fail(field, "must be a positive number, got " + value.dump());
    const auto x = value.get<double>();
    if (!std::isfinite(x) || x <= 0.0) fail(field, "must be a positive number, got " + value.dump());
    return x;
  }

  [[nodiscard]] std::int32_t token_id(std::string_view field, const json& value) const {
    const auto id = proofs::json_integer(value, 0, std::numeric_limits<std::int32_t>::max());
    if (!id) fail(field, "must be a non-negative integer token id, got " + value.dump());
    return static_cast<std::int32_t>(*id);
  }

  const json& root_;
  std::string source_;
};

}  // namespace

void validate_llama_config(const LlamaConfig& c, std::string_view source) {
  const auto fail = [&](const std::string& problem) { throw proofs::bad_input(source, problem); };
  const std::pair<const char*, std::int64_t> sizes[] = {
      {"hidden_size", c.hidden_size},         {"num_attention_heads", c.num_attention_heads},
      {"num_key_value_heads", c.num_key_value_heads}, {"head_dim", c.head_dim},
      {"intermediate_size", c.intermediate_size}, {"num_hidden_layers", c.num_hidden_layers},
      {"vocab_size", c.vocab_size},           {"max_position_embeddings", c.max_position_embeddings}};
  for (const auto& [field, value] : sizes) {
    if (value <= 0) fail("field \"" + std::string(field) + "\" must be a positive integer, got " + std::to_string(value));
  }
  if (!(std::isfinite(c.rms_norm_eps) && c.rms_norm_eps > 0.0)) fail("field \"rms_norm_eps\" must be a positive number");
  if (!(std::isfinite(c.rope_theta) && c.rope_theta > 0.0)) fail("field \"rope_theta\" must be a positive number");
  if (c.num_attention_heads % c.num_key_value_heads != 0) {
    fail("field \"num_attention_heads\" (" + std::to_string(c.num_attention_heads) +
         ") must be a multiple of \"num_key_value_heads\" (" + std::to_string(c.num_key_value_heads) + ")");
  }
  if (c.head_dim % 2 != 0) {
    fail("field \"head_dim\" must be even (RoPE rotates pairs of dimensions), got " + std::to_string(c.head_dim));
  }
  // Hugging Face allows head_dim != hidden_size / heads; the runner (and the trace analysis that
  // reads its traces) assumes the classic Llama layout, so anything else is refused up front.
  if (c.hidden_size != c.num_attention_heads * c.head_dim) {
    fail("field \"hidden_size\" (" + std::to_string(c.hidden_size) + ") must equal num_attention_heads * head_dim (" +
         std::to_string(c.num_attention_heads) + " * " + std::to_string(c.head_dim) + ")");
  }
  const auto check_token = [&](const char* field, std::int32_t id) {
    if (id >= c.vocab_size) {
      fail("field \"" + std::string(field) + "\" (" + std::to_string(id) + ") is outside the vocabulary of " +
           std::to_string(c.vocab_size) + " tokens");
    }
  };
  if (c.bos_token_id) check_token("bos_token_id", *c.bos_token_id);
  for (const std::int32_t id : c.eos_token_ids) check_token("eos_token_id", id);
}

LlamaConfig load_llama_config(const std::filesystem::path& config_json) {
  const std::string source = config_json.string();
  const json root = proofs::read_json_file(config_json, proofs::kMaxSmallJsonBytes, "the model config");
  if (!root.is_object()) throw proofs::bad_input(source, "the model config must be a JSON object");

  const ConfigReader r(root, source);
  r.require_string("model_type", "llama", "the runner implements LlamaForCausalLM");
  r.require_string("hidden_act", "silu", "the Llama MLP is SwiGLU");
  if (r.find("rope_scaling") != nullptr) {
    r.fail("rope_scaling", "is " + r.find("rope_scaling")->dump() + ": RoPE scaling is not supported");
  }
  r.require_off("attention_bias", "a bias on the attention projections");
  r.require_off("mlp_bias", "a bias on the MLP projections");

  LlamaConfig c;
  c.hidden_size = r.positive_int("hidden_size");
  c.num_attention_heads = r.positive_int("num_attention_heads");
  c.num_key_value_heads = r.positive_int("num_key_value_heads", c.num_attention_heads);
  c.intermediate_size = r.positive_int("intermediate_size");
  c.num_hidden_layers = r.positive_int("num_hidden_layers");
  c.vocab_size = r.positive_int("vocab_size");
  c.max_position_embeddings = r.positive_int("max_position_embeddings");
  c.rms_norm_eps = r.positive_number("rms_norm_eps");
  c.rope_theta = r.positive_number("rope_theta", 10000.0);
  c.tie_word_embeddings = r.boolean("tie_word_embeddings", false);
  const auto bos = r.token_ids("bos_token_id", false);
  if (!bos.empty()) c.bos_token_id = bos.front();
  c.eos_token_ids = r.token_ids("eos_token_id", true);
  if (r.find("head_dim") != nullptr) {
    c.head_dim = r.positive_int("head_dim");
  } else {
    if (c.hidden_size % c.num_attention_heads != 0) {
      r.fail("hidden_size", "(" + std::to_string(c.hidden_size) + ") must be a multiple of \"num_attention_heads\" (" +
                                std::to_string(c.num_attention_heads) + ")");
    }
    c.head_dim = c.hidden_size / c.num_attention_heads;
  }
  validate_llama_config(c, source);
  return c;
}

}  // namespace hnf::runtime
