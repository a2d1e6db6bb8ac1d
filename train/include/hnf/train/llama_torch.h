// A Llama-architecture model in LibTorch for training: the same math and the same Hugging Face
// tensor names as runtime::LlamaModel, which is the inference path. Torch stays inside train/.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

namespace hnf::train {

struct ModelShape {
  std::int64_t vocab_size = 4096;
  std::int64_t hidden_size = 256;
  std::int64_t intermediate_size = 688;
  std::int64_t num_layers = 4;
  std::int64_t num_heads = 4;
  std::int64_t num_kv_heads = 2;
  std::int64_t max_positions = 1024;
  double rms_norm_eps = 1e-5;
  double rope_theta = 10000.0;
  std::int64_t bos_token_id = 1;
  std::int64_t eos_token_id = 2;

  [[nodiscard]] std::int64_t head_dim() const { return hidden_size / num_heads; }
};

class LlamaTorch {
 public:
  // Fresh weights: normal(0, 0.02), residual output projections scaled by 1/sqrt(2 * layers),
  // norms 1. Embeddings are tied to the output head (no lm_head tensor).
  LlamaTorch(const ModelShape& shape, std::uint64_t seed);

  // logits [batch, time, vocab] for tokens [batch, time] (int64), positions 0..time-1.
  [[nodiscard]] torch::Tensor forward(const torch::Tensor& tokens) const;

  // The trainable tensors, in Hugging Face naming.
  [[nodiscard]] std::vector<torch::Tensor> parameters() const;
  [[nodiscard]] const std::vector<std::pair<std::string, torch::Tensor>>& named_parameters() const { return params_; }
  [[nodiscard]] const ModelShape& shape() const { return shape_; }
  [[nodiscard]] std::int64_t parameter_count() const;

  // Writes dir/config.json (Hugging Face LlamaForCausalLM keys) and dir/model.safetensors (F32),
  // each atomically. Throws proofs::Error(kBadInput) when dir cannot be written.
  void save(const std::filesystem::path& dir) const;

 private:
  [[nodiscard]] const torch::Tensor& param(const std::string& name) const;

  ModelShape shape_;
  std::vector<std::pair<std::string, torch::Tensor>> params_;
};

}  // namespace hnf::train
