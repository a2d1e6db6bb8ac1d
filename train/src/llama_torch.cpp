#include "hnf/train/llama_torch.h"

#include <cmath>
#include <nlohmann/json.hpp>

#include "hnf/proofs/error.h"
#include "hnf/proofs/safetensors.h"
#include "hnf/proofs/write_file.h"

namespace hnf::train {
namespace {

std::string layer_name(std::int64_t l, const char* suffix) { return "model.layers." + std::to_string(l) + "." + suffix; }

// x [..., hidden] -> x / sqrt(mean(x^2) + eps) * weight, in fp32 as the runner does.
torch::Tensor rms_norm(const torch::Tensor& x, const torch::Tensor& weight, double eps) {
  return x * torch::rsqrt(x.pow(2).mean(-1, /*keepdim=*/true) + eps) * weight;
}

// cos, sin [time, head_dim/2] with angles position * theta^(-2i/head_dim) evaluated in double,
// exactly as the runner computes them.
std::pair<torch::Tensor, torch::Tensor> rope_tables(std::int64_t time, std::int64_t head_dim, double theta) {
  const std::int64_t half = head_dim / 2;
  auto cos = torch::empty({time, half}, torch::kFloat32);
  auto sin = torch::empty({time, half}, torch::kFloat32);
  auto c = cos.accessor<float, 2>();
  auto s = sin.accessor<float, 2>();
  for (std::int64_t i = 0; i < half; ++i) {
    const double inv_freq = std::pow(theta, -2.0 * static_cast<double>(i) / static_cast<double>(head_dim));
    for (std::int64_t t = 0; t < time; ++t) {
      const double angle = static_cast<double>(t) * inv_freq;
      c[t][i] = static_cast<float>(std::cos(angle));
      s[t][i] = static_cast<float>(std::sin(angle));
    }
  }
  return {cos, sin};
}

// x [batch, heads, time, head_dim]: rotate-half RoPE on pairs (i, i + head_dim/2).
torch::Tensor apply_rope(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin) {
  const auto half = x.size(-1) / 2;
  const auto x1 = x.narrow(-1, 0, half);
  const auto x2 = x.narrow(-1, half, half);
  return torch::cat({x1 * cos - x2 * sin, x2 * cos + x1 * sin}, -1);
}

}  // namespace

LlamaTorch::LlamaTorch(const ModelShape& shape, std::uint64_t seed) : shape_(shape) {
  HNF_ASSERT(shape.hidden_size % shape.num_heads == 0 && shape.num_heads % shape.num_kv_heads == 0 &&
                 shape.head_dim() % 2 == 0,
             "inconsistent model shape");
  torch::manual_seed(seed);
  const double std = 0.02;
  const double residual_std = std / std::sqrt(2.0 * static_cast<double>(shape.num_layers));
  auto normal = [](std::vector<std::int64_t> size, double s) { return (torch::randn(size) * s).requires_grad_(); };
  auto ones = [](std::int64_t n) { return torch::ones({n}).requires_grad_(); };
  const auto h = shape.hidden_size;
  const auto q_out = shape.num_heads * shape.head_dim();
  const auto kv_out = shape.num_kv_heads * shape.head_dim();
  params_.emplace_back("model.embed_tokens.weight", normal({shape.vocab_size, h}, std));
  for (std::int64_t l = 0; l < shape.num_layers; ++l) {
    params_.emplace_back(layer_name(l, "input_layernorm.weight"), ones(h));
    params_.emplace_back(layer_name(l, "self_attn.q_proj.weight"), normal({q_out, h}, std));
    params_.emplace_back(layer_name(l, "self_attn.k_proj.weight"), normal({kv_out, h}, std));
    params_.emplace_back(layer_name(l, "self_attn.v_proj.weight"), normal({kv_out, h}, std));
    params_.emplace_back(layer_name(l, "self_attn.o_proj.weight"), normal({h, q_out}, residual_std));
    params_.emplace_back(layer_name(l, "post_attention_layernorm.weight"), ones(h));
    params_.emplace_back(layer_name(l, "mlp.gate_proj.weight"), normal({shape.intermediate_size, h}, std));
    params_.emplace_back(layer_name(l, "mlp.up_proj.weight"), normal({shape.intermediate_size, h}, std));
    params_.emplace_back(layer_name(l, "mlp.down_proj.weight"), normal({h, shape.intermediate_size}, residual_std));
  }
  params_.emplace_back("model.norm.weight", ones(h));
}

const torch::Tensor& LlamaTorch::param(const std::string& name) const {
  for (const auto& [n, t] : params_)
    if (n == name) return t;
  HNF_ASSERT(false, "unknown parameter " + name);
  return params_.front().second;  // unreachable
}

std::vector<torch::Tensor> LlamaTorch::parameters() const {
  std::vector<torch::Tensor> out;
  for (const auto& [n, t] : params_) out.push_back(t);
  return out;
}

std::int64_t LlamaTorch::parameter_count() const {
  std::int64_t n = 0;
  for (const auto& [name, t] : params_) n += t.numel();
  return n;
}

torch::Tensor LlamaTorch::forward(const torch::Tensor& tokens) const {
  const auto batch = tokens.size(0);
  const auto time = tokens.size(1);
  const auto hd = shape_.head_dim();
  const auto heads = shape_.num_heads;
  const auto kv_heads = shape_.num_kv_heads;
  const auto [cos, sin] = rope_tables(time, hd, shape_.rope_theta);
  const auto causal = torch::ones({time, time}, torch::kBool).triu(1);  // true above the diagonal = masked
  const double scale = 1.0 / std::sqrt(static_cast<double>(hd));
  const auto& embed = param("model.embed_tokens.weight");

  auto h = embed.index_select(0, tokens.reshape({-1})).reshape({batch, time, shape_.hidden_size});
  for (std::int64_t l = 0; l < shape_.num_layers; ++l) {
    const auto x = rms_norm(h, param(layer_name(l, "input_layernorm.weight")), shape_.rms_norm_eps);
    auto split_heads = [&](const torch::Tensor& y, std::int64_t n) {
      return y.reshape({batch, time, n, hd}).transpose(1, 2);  // [batch, n, time, hd]
    };
    auto q = split_heads(torch::matmul(x, param(layer_name(l, "self_attn.q_proj.weight")).t()), heads);
    auto k = split_heads(torch::matmul(x, param(layer_name(l, "self_attn.k_proj.weight")).t()), kv_heads);
    auto v = split_heads(torch::matmul(x, param(layer_name(l, "self_attn.v_proj.weight")).t()), kv_heads);
    q = apply_rope(q, cos, sin);
    k = apply_rope(k, cos, sin);
    // Grouped-query attention: query head j reads kv head j / (heads / kv_heads).
    k = k.repeat_interleave(heads / kv_heads, 1);
    v = v.repeat_interleave(heads / kv_heads, 1);
    auto scores = torch::matmul(q, k.transpose(-2, -1)) * scale;
    scores = scores.masked_fill(causal, -std::numeric_limits<float>::infinity());
    const auto attn = torch::matmul(torch::softmax(scores, -1), v);  // [batch, heads, time, hd]
    const auto merged = attn.transpose(1, 2).reshape({batch, time, heads * hd});
    h = h + torch::matmul(merged, param(layer_name(l, "self_attn.o_proj.weight")).t());

    const auto y = rms_norm(h, param(layer_name(l, "post_attention_layernorm.weight")), shape_.rms_norm_eps);
    const auto gate = torch::matmul(y, param(layer_name(l, "mlp.gate_proj.weight")).t());
    const auto up = torch::matmul(y, param(layer_name(l, "mlp.up_proj.weight")).t());
    h = h + torch::matmul(torch::silu(gate) * up, param(layer_name(l, "mlp.down_proj.weight")).t());
  }
  const auto final_h = rms_norm(h, param("model.norm.weight"), shape_.rms_norm_eps);
  return torch::matmul(final_h, embed.t());  // tied output head
}

void LlamaTorch::save(const std::filesystem::path& dir) const {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) throw proofs::bad_input(dir.string(), "cannot create folder: " + ec.message());

  const nlohmann::json config{
      {"architectures", {"LlamaForCausalLM"}},
      {"model_type", "llama"},
      {"hidden_act", "silu"},
      {"vocab_size", shape_.vocab_size},
      {"hidden_size", shape_.hidden_size},
      {"intermediate_size", shape_.intermediate_size},
      {"num_hidden_layers", shape_.num_layers},
      {"num_attention_heads", shape_.num_heads},
      {"num_key_value_heads", shape_.num_kv_heads},
      {"head_dim", shape_.head_dim()},
      {"max_position_embeddings", shape_.max_positions},
      {"rms_norm_eps", shape_.rms_norm_eps},
      {"rope_theta", shape_.rope_theta},
      {"rope_scaling", nullptr},
      {"tie_word_embeddings", true},
      {"bos_token_id", shape_.bos_token_id},
      {"eos_token_id", shape_.eos_token_id},
      {"torch_dtype", "float32"},
  };
  proofs::write_text_atomically((dir / "config.json").string(), config.dump(2) + "\n");

  std::vector<proofs::TensorSpec> specs;
  for (const auto& [name, t] : params_) specs.push_back({name, proofs::Dtype::kF32, t.sizes().vec()});
  proofs::SafetensorsWriter writer(dir / "model.safetensors", specs, {{"format", "pt"}});
  for (const auto& [name, t] : params_) {
    const auto data = t.detach().to(torch::kFloat32).contiguous();
    writer.append(name, std::as_bytes(std::span(data.data_ptr<float>(), static_cast<std::size_t>(data.numel()))));
  }
  writer.finish();
}

}  // namespace hnf::train
