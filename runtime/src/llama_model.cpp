#include "hnf/runtime/llama_model.h"

#include <cmath>
#include <cstring>
#include <set>
#include <string>

#include "blas.h"
#include "hnf/proofs/error.h"
#include "hnf/proofs/safetensors.h"

namespace hnf::runtime {
namespace {

using proofs::Dtype;
using proofs::SafetensorsFile;
using proofs::TensorInfo;

std::string in_quotes(std::string_view name) { return "\"" + std::string(name) + "\""; }

// Takes the tensors of one checkpoint by name, converting each to fp32, and remembers which
// were taken so that the leftovers can be reported.
class WeightReader {
 public:
  explicit WeightReader(const SafetensorsFile& file) : file_(file), source_(file.path().string()) {}

  [[nodiscard]] const std::string& source() const noexcept { return source_; }

  // The tensor `name` of exactly `shape`, as fp32 in its row-major order.
  [[nodiscard]] std::vector<float> take(const std::string& name, const std::vector<std::int64_t>& shape) {
    const TensorInfo* info = file_.find(name);
    if (info == nullptr) {
      throw proofs::bad_input(source_, "tensor " + in_quotes(name) + " is missing (expected shape " +
                                           proofs::format_shape(shape) + ")");
    }
    if (info->shape != shape) {
      throw proofs::bad_input(source_, "tensor " + in_quotes(name) + " has shape " + proofs::format_shape(info->shape) +
                                           ", expected " + proofs::format_shape(shape));
    }
    taken_.insert(name);
    return to_float(*info);
  }

  [[nodiscard]] std::vector<float> to_float(const TensorInfo& info) const {
    if (info.dtype != Dtype::kF32 && info.dtype != Dtype::kF16 && info.dtype != Dtype::kBF16) {
      throw proofs::bad_input(source_, "tensor " + in_quotes(info.name) + " has dtype " +
                                           std::string(proofs::dtype_name(info.dtype)) + ", expected F32, F16 or BF16");
    }
    const auto bytes = file_.bytes(info);
    std::vector<float> values(static_cast<std::size_t>(info.numel()));
    for (std::size_t i = 0; i < values.size(); ++i) values[i] = proofs::load_float(info.dtype, bytes.data(), i);
    file_.release(info, 0, info.nbytes());  // converted: the mapped pages are not needed again
    return values;
  }

  [[nodiscard]] bool taken(const std::string& name) const { return taken_.contains(name); }

 private:
  const SafetensorsFile& file_;
  std::string source_;
  std::set<std::string, std::less<>> taken_;
};

// "model.layers.<i>.self_attn.rotary_emb.inv_freq": a buffer transformers < 4.31 saved with the
// weights. It is derived from rope_theta, so it is accepted when it agrees with it.
bool is_inv_freq(std::string_view name) {
  constexpr std::string_view kPrefix = "model.layers.";
  constexpr std::string_view kSuffix = ".self_attn.rotary_emb.inv_freq";
  if (!name.starts_with(kPrefix) || !name.ends_with(kSuffix)) return false;
  const auto index = name.substr(kPrefix.size(), name.size() - kPrefix.size() - kSuffix.size());
  return !index.empty() && index.find_first_not_of("0123456789") == std::string_view::npos;
}

void check_inv_freq(const WeightReader& reader, const TensorInfo& info, const LlamaConfig& c) {
  const std::int64_t half = c.head_dim / 2;
  if (info.shape != std::vector<std::int64_t>{half}) {
    throw proofs::bad_input(reader.source(), "tensor " + in_quotes(info.name) + " has shape " +
                                                 proofs::format_shape(info.shape) + ", expected [" +
                                                 std::to_string(half) + "]");
  }
  const std::vector<float> saved = reader.to_float(info);
  for (std::int64_t i = 0; i < half; ++i) {
    const double expected = std::pow(c.rope_theta, -2.0 * static_cast<double>(i) / static_cast<double>(c.head_dim));
    // transformers computed it in fp32 (and may have saved it in 16 bits): a loose tolerance.
    if (std::abs(saved[static_cast<std::size_t>(i)] - expected) > 1e-2 * expected) {
      throw proofs::bad_input(reader.source(), "tensor " + in_quotes(info.name) + " disagrees with rope_theta " +
                                                   std::to_string(c.rope_theta) + " at index " + std::to_string(i));
    }
  }
}

// x [n, dim] -> out [n, dim]: x / sqrt(mean(x^2) + eps) * weight, the mean in double.
void rms_norm(const float* x, const std::vector<float>& weight, std::int64_t n, double eps, float* out) {
  const auto dim = static_cast<std::int64_t>(weight.size());
  for (std::int64_t t = 0; t < n; ++t) {
    const float* row = x + t * dim;
    double sum = 0.0;
    for (std::int64_t i = 0; i < dim; ++i) sum += static_cast<double>(row[i]) * row[i];
    const double inverse = 1.0 / std::sqrt(sum / static_cast<double>(dim) + eps);
    for (std::int64_t i = 0; i < dim; ++i) {
      out[t * dim + i] = weight[static_cast<std::size_t>(i)] * static_cast<float>(row[i] * inverse);
    }
  }
}

// y [n, out] = x [n, in] . w [out, in]^T
void linear(const float* x, const std::vector<float>& w, std::int64_t n, std::int64_t in, float* y) {
  const auto out = static_cast<std::int64_t>(w.size()) / in;
  blas::gemm_nt(n, out, in, 1.0f, x, in, w.data(), in, y, out);
}

// Token-major [n, heads * head_dim] -> head-major [heads, n, head_dim], the cache's layout.
void to_heads(const float* x, std::int64_t n, std::int64_t heads, std::int64_t d, float* out) {
  for (std::int64_t h = 0; h < heads; ++h) {
    for (std::int64_t t = 0; t < n; ++t) std::memcpy(out + (h * n + t) * d, x + (t * heads + h) * d, sizeof(float) * d);
  }
}

void from_heads(const float* x, std::int64_t n, std::int64_t heads, std::int64_t d, float* out) {
  for (std::int64_t h = 0; h < heads; ++h) {
    for (std::int64_t t = 0; t < n; ++t) std::memcpy(out + (t * heads + h) * d, x + (h * n + t) * d, sizeof(float) * d);
  }
}

// Rotate-half RoPE in place: dimension i pairs with i + d/2 and turns by the angle of its pair.
// x [heads, n, head_dim]; cos, sin [n, head_dim / 2].
void apply_rope(float* x, std::int64_t heads, std::int64_t n, std::int64_t d, const std::vector<float>& cos,
                const std::vector<float>& sin) {
  const std::int64_t half = d / 2;
  for (std::int64_t h = 0; h < heads; ++h) {
    for (std::int64_t t = 0; t < n; ++t) {
      float* row = x + (h * n + t) * d;
      const float* c = cos.data() + t * half;
      const float* s = sin.data() + t * half;
      for (std::int64_t i = 0; i < half; ++i) {
        const float x1 = row[i];
        const float x2 = row[i + half];
        row[i] = x1 * c[i] - x2 * s[i];
        row[i + half] = x2 * c[i] + x1 * s[i];
      }
    }
  }
}

std::string describe(const KvCacheShape& s) {
  return std::to_string(s.num_layers) + " layers, " + std::to_string(s.num_heads) + " heads, " +
         std::to_string(s.num_kv_heads) + " kv heads, head_dim " + std::to_string(s.head_dim);
}

}  // namespace

LlamaModel LlamaModel::load(const std::filesystem::path& model_dir) {
  LlamaModel m;
  m.model_dir_ = model_dir;
  m.config_ = load_llama_config(model_dir / "config.json");
  const LlamaConfig& c = m.config_;

  const auto weights_path = model_dir / "model.safetensors";
  if (!std::filesystem::exists(weights_path) && std::filesystem::exists(model_dir / "model.safetensors.index.json")) {
    throw proofs::bad_input(weights_path.string(),
                            "missing; sharded checkpoints (model.safetensors.index.json) are not supported");
  }
  const SafetensorsFile file = SafetensorsFile::open(weights_path);
  WeightReader reader(file);

  const std::int64_t hidden = c.hidden_size;
  const std::int64_t q_dim = c.num_attention_heads * c.head_dim;
  const std::int64_t kv_dim = c.num_key_value_heads * c.head_dim;
  const std::int64_t inter = c.intermediate_size;
  m.embed_tokens_ = reader.take("model.embed_tokens.weight", {c.vocab_size, hidden});
  for (std::int64_t i = 0; i < c.num_hidden_layers; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    Layer layer;
    layer.input_norm = reader.take(p + "input_layernorm.weight", {hidden});
    layer.q_proj = reader.take(p + "self_attn.q_proj.weight", {q_dim, hidden});
    layer.k_proj = reader.take(p + "self_attn.k_proj.weight", {kv_dim, hidden});
    layer.v_proj = reader.take(p + "self_attn.v_proj.weight", {kv_dim, hidden});
    layer.o_proj = reader.take(p + "self_attn.o_proj.weight", {hidden, q_dim});
    layer.post_attention_norm = reader.take(p + "post_attention_layernorm.weight", {hidden});
    layer.gate_proj = reader.take(p + "mlp.gate_proj.weight", {inter, hidden});
    layer.up_proj = reader.take(p + "mlp.up_proj.weight", {inter, hidden});
    layer.down_proj = reader.take(p + "mlp.down_proj.weight", {hidden, inter});
    m.layers_.push_back(std::move(layer));
  }
  m.norm_ = reader.take("model.norm.weight", {hidden});
  if (!c.tie_word_embeddings) {
    m.lm_head_ = reader.take("lm_head.weight", {c.vocab_size, hidden});
  } else if (file.find("lm_head.weight") != nullptr) {
    throw proofs::bad_input(reader.source(),
                            "tensor \"lm_head.weight\" is present but config.json sets tie_word_embeddings "
                            "(the output matrix is the embedding matrix)");
  }
  for (const TensorInfo& info : file.tensors()) {
    if (reader.taken(info.name)) continue;
    if (is_inv_freq(info.name)) {
      check_inv_freq(reader, info, c);
      continue;
    }
    throw proofs::bad_input(reader.source(), "unexpected tensor " + in_quotes(info.name) + " " +
                                                 proofs::format_shape(info.shape) + " (not part of a Llama model with " +
                                                 std::to_string(c.num_hidden_layers) + " layers)");
  }
  return m;
}

KvCacheShape LlamaModel::cache_shape() const noexcept {
  return {.num_layers = config_.num_hidden_layers,
          .num_heads = config_.num_attention_heads,
          .num_kv_heads = config_.num_key_value_heads,
          .head_dim = config_.head_dim};
}

void LlamaModel::forward(std::span<const std::int32_t> tokens, KvCache& cache, float* logits,
                         LayerObserver* observer) const {
  const auto n = static_cast<std::int64_t>(tokens.size());
  if (n == 0) return;
  const LlamaConfig& c = config_;
  const KvCacheShape shape = cache_shape();
  const KvCacheShape& given = cache.shape();
  if (given.num_layers != shape.num_layers || given.num_heads != shape.num_heads ||
      given.num_kv_heads != shape.num_kv_heads || given.head_dim != shape.head_dim) {
    throw proofs::bad_input(model_dir_.string(), "kv cache has " + describe(given) + ", the model needs " +
                                                     describe(shape));
  }
  for (std::int64_t t = 0; t < n; ++t) {
    const std::int32_t id = tokens[static_cast<std::size_t>(t)];
    if (id < 0 || id >= c.vocab_size) {
      throw proofs::bad_input(model_dir_.string(), "token id " + std::to_string(id) + " at index " + std::to_string(t) +
                                                       " is outside the vocabulary [0, " +
                                                       std::to_string(c.vocab_size) + ")");
    }
  }

  const std::int64_t hidden = c.hidden_size;
  const std::int64_t heads = c.num_attention_heads;
  const std::int64_t kv_heads = c.num_key_value_heads;
  const std::int64_t d = c.head_dim;
  const std::int64_t inter = c.intermediate_size;
  const std::int64_t first = cache.size();
  const auto size = [](std::int64_t a, std::int64_t b) { return static_cast<std::size_t>(a * b); };

  // RoPE tables [n, head_dim / 2]: angles in double, so that large positions lose no phase.
  const std::int64_t half = d / 2;
  std::vector<float> cos(size(n, half)), sin(size(n, half));
  for (std::int64_t i = 0; i < half; ++i) {
    const double inv_freq = std::pow(c.rope_theta, -2.0 * static_cast<double>(i) / static_cast<double>(d));
    for (std::int64_t t = 0; t < n; ++t) {
      const double angle = static_cast<double>(first + t) * inv_freq;
      cos[size(t, half) + i] = static_cast<float>(std::cos(angle));
      sin[size(t, half) + i] = static_cast<float>(std::sin(angle));
    }
  }

  std::vector<float> h(size(n, hidden));  // [n, hidden], the residual stream
  for (std::int64_t t = 0; t < n; ++t) {
    const auto row = size(tokens[static_cast<std::size_t>(t)], hidden);
    std::memcpy(h.data() + t * hidden, embed_tokens_.data() + row, sizeof(float) * hidden);
  }
  std::vector<float> x(size(n, hidden));                // [n, hidden]
  std::vector<float> q(size(n, heads * d));             // [n, heads * head_dim], then attention output
  std::vector<float> k(size(n, kv_heads * d));          // [n, kv_heads * head_dim]
  std::vector<float> v(size(n, kv_heads * d));          // [n, kv_heads * head_dim]
  std::vector<float> q_heads(size(n, heads * d));       // [heads, n, head_dim]
  std::vector<float> k_pre_rope(size(n, kv_heads * d)); // [kv_heads, n, head_dim]
  std::vector<float> k_heads(size(n, kv_heads * d));    // [kv_heads, n, head_dim]
  std::vector<float> v_heads(size(n, kv_heads * d));    // [kv_heads, n, head_dim]
  std::vector<float> attention(size(n, heads * d));     // [heads, n, head_dim]
  std::vector<float> gate(size(n, inter));              // [n, intermediate]
  std::vector<float> up(size(n, inter));                // [n, intermediate]

  for (std::int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const Layer& w = layers_[static_cast<std::size_t>(l)];
    rms_norm(h.data(), w.input_norm, n, c.rms_norm_eps, x.data());
    linear(x.data(), w.q_proj, n, hidden, q.data());
    linear(x.data(), w.k_proj, n, hidden, k.data());
    linear(x.data(), w.v_proj, n, hidden, v.data());
    to_heads(q.data(), n, heads, d, q_heads.data());
    to_heads(k.data(), n, kv_heads, d, k_pre_rope.data());
    to_heads(v.data(), n, kv_heads, d, v_heads.data());
    k_heads = k_pre_rope;
    apply_rope(q_heads.data(), heads, n, d, cos, sin);
    apply_rope(k_heads.data(), kv_heads, n, d, cos, sin);

    cache.append(l, k_heads.data(), v_heads.data(), n);
    if (observer != nullptr) {
      observer->on_layer(static_cast<int>(l), q_heads.data(), k_pre_rope.data(), k_heads.data(), v_heads.data(), n,
                         first);
    }
    cache.attend(l, q_heads.data(), n, attention.data());
    from_heads(attention.data(), n, heads, d, q.data());
    linear(q.data(), w.o_proj, n, heads * d, x.data());
    for (std::size_t i = 0; i < h.size(); ++i) h[i] += x[i];

    rms_norm(h.data(), w.post_attention_norm, n, c.rms_norm_eps, x.data());
    linear(x.data(), w.gate_proj, n, hidden, gate.data());
    linear(x.data(), w.up_proj, n, hidden, up.data());
    for (std::size_t i = 0; i < gate.size(); ++i) gate[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];  // SiLU
    linear(gate.data(), w.down_proj, n, inter, x.data());
    for (std::size_t i = 0; i < h.size(); ++i) h[i] += x[i];
  }

  if (logits == nullptr) return;
  rms_norm(h.data(), norm_, n, c.rms_norm_eps, x.data());
  linear(x.data(), lm_head(), n, hidden, logits);
}

}  // namespace hnf::runtime
