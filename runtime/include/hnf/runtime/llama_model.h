// A plain fp32 CPU runner of Llama-layout Hugging Face checkpoints (LlamaForCausalLM), with
// prefill and token-by-token decode through a KvCache. It computes what Hugging Face computes
// in fp32 (RMSNorm, rotate-half RoPE, grouped-query attention, SwiGLU MLP), with the matrix
// products on OpenBLAS; attention is delegated to the cache, so a quantized cache changes
// exactly the attention over cached keys and values and nothing else.
#pragma once

#include <cstdint>
#include <filesystem>
#include <span>
#include <vector>

#include "hnf/runtime/kv_cache.h"
#include "hnf/runtime/llama_config.h"

namespace hnf::runtime {

// Sees every layer's attention inputs during LlamaModel::forward (trace capture). The pointers
// are valid only during the call.
class LayerObserver {
 public:
  virtual ~LayerObserver() = default;
  // Called once per layer, after the layer's keys and values went into the cache (so a step
  // the cache refuses is never observed) and before its attention, for the n tokens at
  // positions first_position .. first_position+n-1.
  // q [heads, n, head_dim] after RoPE, k_pre_rope [kv_heads, n, head_dim] before RoPE,
  // k [kv_heads, n, head_dim] after RoPE, v [kv_heads, n, head_dim].
  virtual void on_layer(int layer, const float* q, const float* k_pre_rope, const float* k, const float* v,
                        std::int64_t n, std::int64_t first_position) = 0;
};

class LlamaModel {
 public:
  // Reads model_dir/config.json (load_llama_config) and model_dir/model.safetensors (one file;
  // sharded checkpoints are not supported) and converts every weight to fp32 (F32, F16 or BF16
  // in the file). The file must hold exactly the tensors of the config: the Hugging Face names
  // of LlamaForCausalLM, lm_head.weight only when the embeddings are not tied. The one tolerated
  // extra is the rotary inv_freq buffer older transformers versions saved; it must agree with
  // rope_theta. Throws proofs::Error(kBadInput) "<file>: <problem>" naming the tensor and the
  // expected against the actual shape or dtype.
  static LlamaModel load(const std::filesystem::path& model_dir);

  [[nodiscard]] const LlamaConfig& config() const noexcept { return config_; }
  // The shape of the KvCache forward() needs.
  [[nodiscard]] KvCacheShape cache_shape() const noexcept;

  // Runs the n tokens at positions cache.size() .. cache.size()+n-1: appends their keys and
  // values to every layer of `cache` and, when logits is not null, writes the next-token
  // logits of each. n == 0 does nothing. Throws proofs::Error(kBadInput) (nothing changed)
  // when a token id is outside [0, vocab_size) or the cache's shape is not cache_shape(), and
  // as KvCache::append when the tokens do not fit in the cache.
  // tokens [n], logits [n, vocab] or nullptr.
  void forward(std::span<const std::int32_t> tokens, KvCache& cache, float* logits,
               LayerObserver* observer = nullptr) const;

 private:
  struct Layer {
    std::vector<float> input_norm;          // [hidden]
    std::vector<float> q_proj;              // [heads * head_dim, hidden]
    std::vector<float> k_proj;              // [kv_heads * head_dim, hidden]
    std::vector<float> v_proj;              // [kv_heads * head_dim, hidden]
    std::vector<float> o_proj;              // [hidden, heads * head_dim]
    std::vector<float> post_attention_norm;  // [hidden]
    std::vector<float> gate_proj;           // [intermediate, hidden]
    std::vector<float> up_proj;             // [intermediate, hidden]
    std::vector<float> down_proj;           // [hidden, intermediate]
  };

  LlamaModel() = default;
  // [vocab, hidden]: lm_head.weight, or the embeddings when tied.
  [[nodiscard]] const std::vector<float>& lm_head() const noexcept {
    return config_.tie_word_embeddings ? embed_tokens_ : lm_head_;
  }

  std::filesystem::path model_dir_;
  LlamaConfig config_;
  std::vector<float> embed_tokens_;  // [vocab, hidden]
  std::vector<Layer> layers_;
  std::vector<float> norm_;     // [hidden]
  std::vector<float> lm_head_;  // [vocab, hidden]; empty when tied
};

}  // namespace hnf::runtime
