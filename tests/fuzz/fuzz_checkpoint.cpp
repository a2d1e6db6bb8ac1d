// Fuzz target "checkpoint": runtime::LlamaModel::load on an arbitrary model.safetensors beside a
// fixed, valid config.json of a tiny model (the config reader has its own target). A checkpoint
// the loader accepts is then run for two tokens of prefill and one of decode: accepted weights
// (NaN and Inf included) must not make the runner read or write out of bounds.
#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "fuzz_support.h"
#include "hnf/runtime/dense_kv_cache.h"
#include "hnf/runtime/llama_model.h"

namespace {

// 1 layer, 2 query heads sharing 1 kv head of dim 2, vocabulary 4, tied embeddings: 11 tensors,
// the seeds under tests/fuzz/corpus/checkpoint/ are checkpoints of this shape.
constexpr std::string_view kTinyConfig = R"({
  "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_act": "silu",
  "hidden_size": 4, "num_attention_heads": 2, "num_key_value_heads": 1, "intermediate_size": 4,
  "num_hidden_layers": 1, "vocab_size": 4, "max_position_embeddings": 16, "rms_norm_eps": 1e-05,
  "rope_theta": 10000.0, "tie_word_embeddings": true, "bos_token_id": 1, "eos_token_id": 2
}
)";

void run_three_tokens(const hnf::runtime::LlamaModel& model) {
  hnf::runtime::DenseKvCache cache(model.cache_shape(), 3);
  const std::array<std::int32_t, 2> prompt{1, 3};
  std::vector<float> logits(2 * static_cast<std::size_t>(model.config().vocab_size));
  model.forward(prompt, cache, logits.data());
  const std::array<std::int32_t, 1> next{0};
  model.forward(next, cache, logits.data());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const hnf::fuzz::ScratchFile scratch("model.safetensors");
  static const bool config_written = [] {
    hnf::fuzz::ScratchFile::write_at(scratch.dir() / "config.json", reinterpret_cast<const std::uint8_t*>(kTinyConfig.data()),
                                     kTinyConfig.size());
    return true;
  }();
  (void)config_written;
  scratch.write(data, size);
  // Errors name config.json or model.safetensors, both inside the model directory.
  (void)hnf::fuzz::accepts(scratch.dir().string(), [&] { run_three_tokens(hnf::runtime::LlamaModel::load(scratch.dir())); });
  return 0;
}
