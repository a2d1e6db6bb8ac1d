#include <doctest/doctest.h>

#include <string>

#include <nlohmann/json.hpp>

#include "hnf/proofs/error.h"
#include "hnf/runtime/llama_config.h"
#include "test_files.h"

using hnf::runtime::load_llama_config;
using nlohmann::json;

namespace {

json valid_config() {
  return {{"model_type", "llama"},     {"hidden_act", "silu"},          {"hidden_size", 64},
          {"num_attention_heads", 4},  {"num_key_value_heads", 2},      {"intermediate_size", 96},
          {"num_hidden_layers", 2},    {"vocab_size", 50},              {"max_position_embeddings", 128},
          {"rms_norm_eps", 1e-6},      {"rope_theta", 500000.0},        {"tie_word_embeddings", true},
          {"bos_token_id", 1},         {"eos_token_id", 2},             {"rope_scaling", nullptr}};
}

// The message of the bad_input error that loading `config` raises ("" when it loads).
std::string rejection(const json& config) {
  hnf::testing::TempDir dir;
  const auto path = dir / "config.json";
  hnf::testing::write_file(path, config.dump());
  try {
    (void)load_llama_config(path);
  } catch (const hnf::proofs::Error& e) {
    CHECK(e.kind() == hnf::proofs::ErrorKind::kBadInput);
    const std::string message = e.what();
    CHECK(message.starts_with(path.string() + ": "));  // names the file
    return message.substr(path.string().size() + 2);
  }
  return "";
}

}  // namespace

TEST_CASE("a valid config loads with every field") {
  hnf::testing::TempDir dir;
  hnf::testing::write_file(dir / "config.json", valid_config().dump());
  const auto c = load_llama_config(dir / "config.json");
  CHECK(c.hidden_size == 64);
  CHECK(c.num_attention_heads == 4);
  CHECK(c.num_key_value_heads == 2);
  CHECK(c.head_dim == 16);
  CHECK(c.intermediate_size == 96);
  CHECK(c.num_hidden_layers == 2);
  CHECK(c.vocab_size == 50);
  CHECK(c.max_position_embeddings == 128);
  CHECK(c.rms_norm_eps == 1e-6);
  CHECK(c.rope_theta == 500000.0);
  CHECK(c.tie_word_embeddings);
  CHECK(c.bos_token_id == 1);
  CHECK(c.eos_token_ids == std::vector<std::int32_t>{2});
}

TEST_CASE("absent optional fields take Hugging Face's defaults") {
  json config = valid_config();
  for (const char* field : {"model_type", "hidden_act", "num_key_value_heads", "rope_theta", "tie_word_embeddings",
                            "bos_token_id", "eos_token_id", "rope_scaling"}) {
    config.erase(field);
  }
  config["head_dim"] = nullptr;  // null counts as absent
  hnf::testing::TempDir dir;
  hnf::testing::write_file(dir / "config.json", config.dump());
  const auto c = load_llama_config(dir / "config.json");
  CHECK(c.num_key_value_heads == 4);
  CHECK(c.head_dim == 16);
  CHECK(c.rope_theta == 10000.0);
  CHECK_FALSE(c.tie_word_embeddings);
  CHECK_FALSE(c.bos_token_id.has_value());
  CHECK(c.eos_token_ids.empty());
}

TEST_CASE("an explicit head_dim and a list of eos ids are accepted") {
  json config = valid_config();
  config["head_dim"] = 16;
  config["eos_token_id"] = {2, 7};
  CHECK(rejection(config).empty());
}

TEST_CASE("every malformed or unsupported config is rejected naming the field") {
  struct Case {
    std::string what;
    std::function<void(json&)> edit;
    const char* message;
  };
  const Case cases[] = {
      {"missing hidden_size", [](json& c) { c.erase("hidden_size"); }, "field \"hidden_size\" is missing"},
      {"missing num_attention_heads", [](json& c) { c.erase("num_attention_heads"); },
       "field \"num_attention_heads\" is missing"},
      {"missing intermediate_size", [](json& c) { c.erase("intermediate_size"); },
       "field \"intermediate_size\" is missing"},
      {"missing num_hidden_layers", [](json& c) { c.erase("num_hidden_layers"); },
       "field \"num_hidden_layers\" is missing"},
      {"missing vocab_size", [](json& c) { c.erase("vocab_size"); }, "field \"vocab_size\" is missing"},
      {"missing max_position_embeddings", [](json& c) { c.erase("max_position_embeddings"); },
       "field \"max_position_embeddings\" is missing"},
      {"missing rms_norm_eps", [](json& c) { c.erase("rms_norm_eps"); }, "field \"rms_norm_eps\" is missing"},
      {"string size", [](json& c) { c["hidden_size"] = "64"; },
       "field \"hidden_size\" must be a positive integer, got \"64\""},
      {"fractional size", [](json& c) { c["vocab_size"] = 50.5; },
       "field \"vocab_size\" must be a positive integer, got 50.5"},
      {"zero size", [](json& c) { c["num_hidden_layers"] = 0; },
       "field \"num_hidden_layers\" must be a positive integer, got 0"},
      {"negative size", [](json& c) { c["intermediate_size"] = -96; },
       "field \"intermediate_size\" must be a positive integer, got -96"},
      {"huge size", [](json& c) { c["vocab_size"] = 1ll << 40; }, "field \"vocab_size\" is too large: 1099511627776"},
      {"zero kv heads", [](json& c) { c["num_key_value_heads"] = 0; },
       "field \"num_key_value_heads\" must be a positive integer, got 0"},
      {"eps not a number", [](json& c) { c["rms_norm_eps"] = true; },
       "field \"rms_norm_eps\" must be a positive number, got true"},
      {"negative eps", [](json& c) { c["rms_norm_eps"] = -1e-6; },
       "field \"rms_norm_eps\" must be a positive number, got -1e-06"},
      {"zero rope_theta", [](json& c) { c["rope_theta"] = 0; },
       "field \"rope_theta\" must be a positive number, got 0"},
      {"tie not a boolean", [](json& c) { c["tie_word_embeddings"] = 1; },
       "field \"tie_word_embeddings\" must be true or false, got 1"},
      {"bos not an id", [](json& c) { c["bos_token_id"] = "<s>"; },
       "field \"bos_token_id\" must be a non-negative integer token id, got \"<s>\""},
      {"eos list with a bad id", [](json& c) { c["eos_token_id"] = {2, -1}; },
       "field \"eos_token_id\" must be a non-negative integer token id, got -1"},
      {"bos outside the vocabulary", [](json& c) { c["bos_token_id"] = 50; },
       "field \"bos_token_id\" (50) is outside the vocabulary of 50 tokens"},
      {"heads not a multiple of kv heads", [](json& c) { c["num_key_value_heads"] = 3; },
       "field \"num_attention_heads\" (4) must be a multiple of \"num_key_value_heads\" (3)"},
      {"hidden not a multiple of heads", [](json& c) { c["num_attention_heads"] = 6; c["num_key_value_heads"] = 6; },
       "field \"hidden_size\" (64) must be a multiple of \"num_attention_heads\" (6)"},
      {"hidden != heads * head_dim", [](json& c) { c["head_dim"] = 32; },
       "field \"hidden_size\" (64) must equal num_attention_heads * head_dim (4 * 32)"},
      {"odd head_dim", [](json& c) { c["hidden_size"] = 36; c["head_dim"] = 9; },
       "field \"head_dim\" must be even (RoPE rotates pairs of dimensions), got 9"},
      {"another activation", [](json& c) { c["hidden_act"] = "gelu"; },
       "field \"hidden_act\" is \"gelu\", only \"silu\" is supported (the Llama MLP is SwiGLU)"},
      {"another architecture", [](json& c) { c["model_type"] = "mistral"; },
       "field \"model_type\" is \"mistral\", only \"llama\" is supported (the runner implements LlamaForCausalLM)"},
      {"rope scaling", [](json& c) { c["rope_scaling"] = {{"type", "linear"}, {"factor", 2.0}}; },
       "field \"rope_scaling\" is {\"factor\":2.0,\"type\":\"linear\"}: RoPE scaling is not supported"},
      {"attention bias", [](json& c) { c["attention_bias"] = true; },
       "field \"attention_bias\" is true: a bias on the attention projections is not supported"},
      {"mlp bias", [](json& c) { c["mlp_bias"] = true; },
       "field \"mlp_bias\" is true: a bias on the MLP projections is not supported"},
  };
  for (const Case& c : cases) {
    CAPTURE(c.what);
    json config = valid_config();
    c.edit(config);
    CHECK(rejection(config) == c.message);
  }
}

TEST_CASE("an unreadable or non-object config is rejected naming the file") {
  hnf::testing::TempDir dir;
  const auto path = dir / "config.json";
  CHECK_THROWS_WITH_AS((void)load_llama_config(path),
                       doctest::Contains((path.string() + ": cannot open the model config: ").c_str()), hnf::proofs::Error);
  hnf::testing::write_file(path, "{\"hidden_size\": ");
  CHECK_THROWS_WITH_AS((void)load_llama_config(path), doctest::Contains((path.string() + ": not valid JSON").c_str()),
                       hnf::proofs::Error);
  hnf::testing::write_file(path, "[1, 2]");
  CHECK_THROWS_WITH_AS((void)load_llama_config(path), (path.string() + ": the model config must be a JSON object").c_str(),
                       hnf::proofs::Error);
}
