#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "hnf/proofs/error.h"
#include "hnf/runtime/dense_kv_cache.h"
#include "hnf/runtime/llama_model.h"
#include "test_files.h"
#include "tiny_llama.h"

using hnf::runtime::DenseKvCache;
using hnf::runtime::LlamaModel;
using hnf::testing::TinyLlama;
using hnf::testing::TinyWeights;

namespace {

using Matrix = std::vector<std::vector<double>>;  // [rows][columns]

// Independent scalar reference of Hugging Face's LlamaForCausalLM forward over all tokens at
// once: plain loops, double everywhere, no BLAS, no cache. kv_head_of maps a query head to
// the kv head it reads (the runner's mapping unless a test breaks it on purpose).
// Returns logits [n][vocab].
Matrix reference_logits(const TinyWeights& w, const TinyLlama& s, const std::vector<std::int32_t>& tokens,
                        const std::function<std::int64_t(std::int64_t)>& kv_head_of) {
  const auto n = static_cast<std::int64_t>(tokens.size());
  const std::int64_t H = s.hidden, d = s.head_dim;
  const auto at = [&](const std::string& name) -> const std::vector<float>& { return w.at(name); };
  const auto norm = [&](const Matrix& x, const std::vector<float>& g) {
    Matrix y = x;
    for (auto& row : y) {
      double ms = 0;
      for (double v : row) ms += v * v;
      const double r = 1.0 / std::sqrt(ms / static_cast<double>(row.size()) + s.rms_norm_eps);
      for (std::size_t i = 0; i < row.size(); ++i) row[i] *= r * g[i];
    }
    return y;
  };
  const auto linear = [](const Matrix& x, const std::vector<float>& weight, std::int64_t out) {
    Matrix y(x.size(), std::vector<double>(static_cast<std::size_t>(out)));
    const std::size_t in = x.front().size();
    for (std::size_t t = 0; t < x.size(); ++t) {
      for (std::size_t o = 0; o < static_cast<std::size_t>(out); ++o) {
        double acc = 0;
        for (std::size_t i = 0; i < in; ++i) acc += weight[o * in + i] * x[t][i];
        y[t][o] = acc;
      }
    }
    return y;
  };
  const auto rope = [&](Matrix& x, std::int64_t heads) {
    for (std::int64_t t = 0; t < n; ++t) {
      for (std::int64_t h = 0; h < heads; ++h) {
        for (std::int64_t i = 0; i < d / 2; ++i) {
          const double angle = static_cast<double>(t) * std::pow(s.rope_theta, -2.0 * static_cast<double>(i) / static_cast<double>(d));
          double& x1 = x[t][h * d + i];
          double& x2 = x[t][h * d + i + d / 2];
          const double a = x1, b = x2;
          x1 = a * std::cos(angle) - b * std::sin(angle);
          x2 = b * std::cos(angle) + a * std::sin(angle);
        }
      }
    }
  };

  Matrix h(static_cast<std::size_t>(n), std::vector<double>(static_cast<std::size_t>(H)));
  for (std::int64_t t = 0; t < n; ++t) {
    for (std::int64_t i = 0; i < H; ++i) h[t][i] = at("model.embed_tokens.weight")[tokens[t] * H + i];
  }
  for (std::int64_t l = 0; l < s.layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    Matrix x = norm(h, at(p + "input_layernorm.weight"));
    Matrix q = linear(x, at(p + "self_attn.q_proj.weight"), s.heads * d);
    Matrix k = linear(x, at(p + "self_attn.k_proj.weight"), s.kv_heads * d);
    const Matrix v = linear(x, at(p + "self_attn.v_proj.weight"), s.kv_heads * d);
    rope(q, s.heads);
    rope(k, s.kv_heads);
    Matrix attention(static_cast<std::size_t>(n), std::vector<double>(static_cast<std::size_t>(s.heads * d)));
    for (std::int64_t t = 0; t < n; ++t) {
      for (std::int64_t head = 0; head < s.heads; ++head) {
        const std::int64_t g = kv_head_of(head);
        std::vector<double> score(static_cast<std::size_t>(t + 1));
        for (std::int64_t u = 0; u <= t; ++u) {
          double dot = 0;
          for (std::int64_t i = 0; i < d; ++i) dot += q[t][head * d + i] * k[u][g * d + i];
          score[u] = dot / std::sqrt(static_cast<double>(d));
        }
        const double top = *std::max_element(score.begin(), score.end());
        double total = 0;
        for (double& e : score) total += (e = std::exp(e - top));
        for (std::int64_t u = 0; u <= t; ++u) {
          for (std::int64_t i = 0; i < d; ++i) attention[t][head * d + i] += score[u] / total * v[u][g * d + i];
        }
      }
    }
    const Matrix o = linear(attention, at(p + "self_attn.o_proj.weight"), H);
    for (std::int64_t t = 0; t < n; ++t) for (std::int64_t i = 0; i < H; ++i) h[t][i] += o[t][i];
    x = norm(h, at(p + "post_attention_layernorm.weight"));
    Matrix gate = linear(x, at(p + "mlp.gate_proj.weight"), s.intermediate);
    const Matrix up = linear(x, at(p + "mlp.up_proj.weight"), s.intermediate);
    for (std::int64_t t = 0; t < n; ++t) {
      for (std::int64_t i = 0; i < s.intermediate; ++i) gate[t][i] = gate[t][i] / (1 + std::exp(-gate[t][i])) * up[t][i];
    }
    const Matrix down = linear(gate, at(p + "mlp.down_proj.weight"), H);
    for (std::int64_t t = 0; t < n; ++t) for (std::int64_t i = 0; i < H; ++i) h[t][i] += down[t][i];
  }
  const Matrix x = norm(h, at("model.norm.weight"));
  return linear(x, at(s.tie_word_embeddings ? "model.embed_tokens.weight" : "lm_head.weight"), s.vocab);
}

std::int64_t runner_kv_head(const TinyLlama& s, std::int64_t head) { return head / (s.heads / s.kv_heads); }

const std::vector<std::int32_t> kTokens{1, 17, 3, 49, 0, 22, 22, 8, 31, 5, 40, 12};

// Logits [n, vocab] of one uncached forward over all tokens.
std::vector<float> full_forward(const LlamaModel& model, const std::vector<std::int32_t>& tokens) {
  DenseKvCache cache(model.cache_shape(), static_cast<std::int64_t>(tokens.size()));
  std::vector<float> logits(tokens.size() * static_cast<std::size_t>(model.config().vocab_size));
  model.forward(tokens, cache, logits.data());
  CHECK(cache.size() == static_cast<std::int64_t>(tokens.size()));
  return logits;
}

double max_difference(const std::vector<float>& runner, const Matrix& reference) {
  double worst = 0;
  const std::size_t vocab = reference.front().size();
  for (std::size_t t = 0; t < reference.size(); ++t) {
    for (std::size_t i = 0; i < vocab; ++i) worst = std::max(worst, std::abs(runner[t * vocab + i] - reference[t][i]));
  }
  return worst;
}

double max_difference(const std::vector<float>& a, const std::vector<float>& b) {
  REQUIRE(a.size() == b.size());
  double worst = 0;
  for (std::size_t i = 0; i < a.size(); ++i) worst = std::max(worst, static_cast<double>(std::abs(a[i] - b[i])));
  return worst;
}

// The message of the bad_input error that loading the checkpoint of `spec` raises.
std::string load_error(const TinyLlama& spec, std::string* weights_path = nullptr) {
  hnf::testing::TempDir dir;
  hnf::testing::write_tiny_llama(dir.path(), spec);
  if (weights_path != nullptr) *weights_path = (dir / "model.safetensors").string();
  try {
    (void)LlamaModel::load(dir.path());
  } catch (const hnf::proofs::Error& e) {
    CHECK(e.kind() == hnf::proofs::ErrorKind::kBadInput);
    return e.what();
  }
  FAIL("the checkpoint loaded");
  return "";
}

}  // namespace

TEST_CASE("runner logits match the scalar reference for F32, F16 and BF16 checkpoints") {
  for (const auto dtype : {hnf::proofs::Dtype::kF32, hnf::proofs::Dtype::kF16, hnf::proofs::Dtype::kBF16}) {
    CAPTURE(hnf::proofs::dtype_name(dtype));
    hnf::testing::TempDir dir;
    TinyLlama spec;
    spec.dtype = dtype;
    const TinyWeights weights = hnf::testing::write_tiny_llama(dir.path(), spec);
    const LlamaModel model = LlamaModel::load(dir.path());
    CHECK(model.config().num_key_value_heads == 2);
    const std::vector<float> logits = full_forward(model, kTokens);
    const Matrix reference = reference_logits(weights, spec, kTokens, [&](std::int64_t h) { return runner_kv_head(spec, h); });
    const double worst = max_difference(logits, reference);
    MESSAGE("max |runner - reference| = " << worst);
    CHECK(worst <= 1e-4);
    // The logits are far from trivial: a wrong mapping of query to kv heads shows.
    const Matrix wrong = reference_logits(weights, spec, kTokens, [&](std::int64_t h) { return h % spec.kv_heads; });
    CHECK(max_difference(logits, wrong) > 1e-3);
  }
}

TEST_CASE("tied embeddings: the embedding matrix is the output matrix") {
  hnf::testing::TempDir dir;
  TinyLlama spec;
  spec.tie_word_embeddings = true;
  spec.heads = 4;
  spec.kv_heads = 1;
  const TinyWeights weights = hnf::testing::write_tiny_llama(dir.path(), spec);
  const LlamaModel model = LlamaModel::load(dir.path());
  const Matrix reference = reference_logits(weights, spec, kTokens, [](std::int64_t) { return 0; });
  CHECK(max_difference(full_forward(model, kTokens), reference) <= 1e-4);
}

TEST_CASE("cached decode matches the uncached forward") {
  hnf::testing::TempDir dir;
  const TinyLlama spec;
  (void)hnf::testing::write_tiny_llama(dir.path(), spec);
  const LlamaModel model = LlamaModel::load(dir.path());
  const auto vocab = static_cast<std::size_t>(spec.vocab);
  const std::vector<float> full = full_forward(model, kTokens);

  for (const std::vector<std::size_t>& steps : {std::vector<std::size_t>(kTokens.size(), 1), std::vector<std::size_t>{5, 3, 4}}) {
    DenseKvCache cache(model.cache_shape(), 64);
    std::vector<float> stepped;
    std::size_t done = 0;
    for (const std::size_t n : steps) {
      std::vector<float> logits(n * vocab);
      model.forward(std::span(kTokens).subspan(done, n), cache, logits.data());
      stepped.insert(stepped.end(), logits.begin(), logits.end());
      done += n;
      CHECK(cache.size() == static_cast<std::int64_t>(done));
    }
    const double worst = max_difference(stepped, full);
    MESSAGE("steps of " << steps.front() << ": max |cached - uncached| = " << worst);
    CHECK(worst <= 1e-4);
  }
}

TEST_CASE("the observer sees every layer's q, k before and after RoPE, and v, at their positions") {
  struct Recorder : hnf::runtime::LayerObserver {
    std::vector<std::pair<int, std::int64_t>> calls;  // (layer, first_position)
    std::vector<std::vector<float>> k_pre, k;
    std::int64_t kv_size = 0;
    void on_layer(int layer, const float* q, const float* k_pre_rope, const float* k_post, const float* v,
                  std::int64_t n, std::int64_t first_position) override {
      CHECK(q != nullptr);
      CHECK(v != nullptr);
      calls.emplace_back(layer, first_position);
      k_pre.emplace_back(k_pre_rope, k_pre_rope + kv_size * n);
      k.emplace_back(k_post, k_post + kv_size * n);
    }
  };
  hnf::testing::TempDir dir;
  const TinyLlama spec;
  (void)hnf::testing::write_tiny_llama(dir.path(), spec);
  const LlamaModel model = LlamaModel::load(dir.path());
  DenseKvCache cache(model.cache_shape(), 16);
  Recorder recorder;
  recorder.kv_size = spec.kv_heads * spec.head_dim;
  model.forward(std::span(kTokens).first(3), cache, nullptr, &recorder);
  model.forward(std::span(kTokens).subspan(3, 1), cache, nullptr, &recorder);
  CHECK(recorder.calls == std::vector<std::pair<int, std::int64_t>>{{0, 0}, {1, 0}, {0, 3}, {1, 3}});
  // Layer 1 of the second step: one position (3); its post-RoPE keys are what the cache holds,
  // and its pre-RoPE keys rotate into them by position 3's angles.
  const std::int64_t d = spec.head_dim;
  for (std::int64_t g = 0; g < spec.kv_heads; ++g) {
    const auto cached = cache.key(1, g, 3);
    for (std::int64_t i = 0; i < d; ++i) CHECK(recorder.k[3][g * d + i] == cached[i]);
    for (std::int64_t i = 0; i < d / 2; ++i) {
      const double angle = 3.0 * std::pow(spec.rope_theta, -2.0 * static_cast<double>(i) / static_cast<double>(d));
      const double x1 = recorder.k_pre[3][g * d + i], x2 = recorder.k_pre[3][g * d + i + d / 2];
      CHECK(cached[i] == doctest::Approx(x1 * std::cos(angle) - x2 * std::sin(angle)).epsilon(1e-5));
      CHECK(cached[i + d / 2] == doctest::Approx(x2 * std::cos(angle) + x1 * std::sin(angle)).epsilon(1e-5));
    }
  }
}

TEST_CASE("tokens that do not fit in the cache are refused and leave it unchanged") {
  hnf::testing::TempDir dir;
  const TinyLlama spec;
  (void)hnf::testing::write_tiny_llama(dir.path(), spec);
  const LlamaModel model = LlamaModel::load(dir.path());
  DenseKvCache cache(model.cache_shape(), static_cast<std::int64_t>(kTokens.size()));
  model.forward(std::span(kTokens).first(10), cache, nullptr);
  CHECK_THROWS_WITH_AS(model.forward(std::span(kTokens).first(3), cache, nullptr),
                       "kv cache: append of 3 positions to 10 cached exceeds capacity 12", hnf::proofs::Error);
  CHECK(cache.size() == 10);
  for (std::int64_t l = 0; l < spec.layers; ++l) CHECK(cache.layer_size(l) == 10);
  // The cache goes on as if nothing happened.
  std::vector<float> logits(2 * static_cast<std::size_t>(spec.vocab));
  model.forward(std::span(kTokens).subspan(10, 2), cache, logits.data());
  const std::vector<float> full = full_forward(model, kTokens);
  CHECK(max_difference(logits, std::vector<float>(full.end() - static_cast<std::ptrdiff_t>(logits.size()), full.end())) <= 1e-4);
}

TEST_CASE("token ids outside the vocabulary and a mismatched cache are refused naming the model") {
  hnf::testing::TempDir dir;
  const TinyLlama spec;
  (void)hnf::testing::write_tiny_llama(dir.path(), spec);
  const LlamaModel model = LlamaModel::load(dir.path());
  DenseKvCache cache(model.cache_shape(), 8);
  const std::vector<std::int32_t> too_big{3, 50}, negative{-1};
  CHECK_THROWS_WITH_AS(model.forward(too_big, cache, nullptr),
                       (dir.path().string() + ": token id 50 at index 1 is outside the vocabulary [0, 50)").c_str(),
                       hnf::proofs::Error);
  CHECK_THROWS_WITH_AS(model.forward(negative, cache, nullptr),
                       (dir.path().string() + ": token id -1 at index 0 is outside the vocabulary [0, 50)").c_str(),
                       hnf::proofs::Error);
  CHECK(cache.size() == 0);
  model.forward({}, cache, nullptr);  // nothing to do
  CHECK(cache.size() == 0);
  auto shape = model.cache_shape();
  shape.num_layers = 3;
  DenseKvCache wrong(shape, 8);
  CHECK_THROWS_WITH_AS(model.forward(kTokens, wrong, nullptr),
                       (dir.path().string() + ": kv cache has 3 layers, 4 heads, 2 kv heads, head_dim 16, the model "
                                              "needs 2 layers, 4 heads, 2 kv heads, head_dim 16").c_str(),
                       hnf::proofs::Error);
}

TEST_CASE("bad checkpoints are refused naming the file, the tensor and the problem") {
  std::string file, message;
  TinyLlama missing;
  missing.skip = [](const std::string& name) { return name == "model.layers.1.mlp.up_proj.weight"; };
  message = load_error(missing, &file);
  CHECK(message ==
        file + ": tensor \"model.layers.1.mlp.up_proj.weight\" is missing (expected shape [96, 64])");

  TinyLlama reshaped;
  reshaped.reshape = [](const std::string& name, std::vector<std::int64_t> shape) {
    if (name == "model.layers.0.self_attn.k_proj.weight") shape = {64, 64};
    return shape;
  };
  message = load_error(reshaped, &file);
  CHECK(message ==
        file + ": tensor \"model.layers.0.self_attn.k_proj.weight\" has shape [64, 64], expected [32, 64]");

  TinyLlama tied;
  tied.tie_word_embeddings = true;
  tied.lm_head_even_if_tied = true;
  message = load_error(tied, &file);
  CHECK(message == file + ": tensor \"lm_head.weight\" is present but config.json sets "
                                          "tie_word_embeddings (the output matrix is the embedding matrix)");

  TinyLlama untied_without_head;
  untied_without_head.skip = [](const std::string& name) { return name == "lm_head.weight"; };
  message = load_error(untied_without_head, &file);
  CHECK(message == file + ": tensor \"lm_head.weight\" is missing (expected shape [50, 64])");

  TinyLlama extra;
  extra.extra_tensors = {{"model.layers.2.input_layernorm.weight", std::vector<float>(64)}};
  message = load_error(extra, &file);
  CHECK(message == file + ": unexpected tensor \"model.layers.2.input_layernorm.weight\" [64] (not "
                                           "part of a Llama model with 2 layers)");

  TinyLlama integer;
  integer.retype = [](const std::string& name, hnf::proofs::Dtype dtype) {
    return name == "model.norm.weight" ? hnf::proofs::Dtype::kI32 : dtype;
  };
  message = load_error(integer, &file);
  CHECK(message == file + ": tensor \"model.norm.weight\" has dtype I32, expected F32, F16 or BF16");

  TinyLlama bad_config;
  bad_config.config_overrides = {{"hidden_size", nullptr}};
  CHECK(hnf::testing::contains(load_error(bad_config), "config.json: field \"hidden_size\" is missing"));
}

TEST_CASE("a missing weights file is refused naming it") {
  hnf::testing::TempDir dir;
  hnf::testing::write_tiny_llama(dir.path(), TinyLlama{});
  std::filesystem::remove(dir / "model.safetensors");
  CHECK_THROWS_WITH_AS((void)LlamaModel::load(dir.path()), doctest::Contains(((dir / "model.safetensors").string() + ": ").c_str()),
                       hnf::proofs::Error);
  hnf::testing::write_file(dir / "model.safetensors.index.json", "{}");
  CHECK_THROWS_WITH_AS((void)LlamaModel::load(dir.path()),
                       ((dir / "model.safetensors").string() +
                        ": missing; sharded checkpoints (model.safetensors.index.json) are not supported").c_str(),
                       hnf::proofs::Error);
}

TEST_CASE("a saved rotary inv_freq buffer is accepted when it agrees with rope_theta") {
  const auto inv_freq = [](double theta) {
    std::vector<float> values(8);
    for (std::size_t i = 0; i < values.size(); ++i) values[i] = static_cast<float>(std::pow(theta, -2.0 * static_cast<double>(i) / 16.0));
    return values;
  };
  hnf::testing::TempDir dir;
  TinyLlama good;
  good.extra_tensors = {{"model.layers.0.self_attn.rotary_emb.inv_freq", inv_freq(10000.0)}};
  (void)hnf::testing::write_tiny_llama(dir.path(), good);
  CHECK_NOTHROW((void)LlamaModel::load(dir.path()));

  TinyLlama bad;
  bad.extra_tensors = {{"model.layers.1.self_attn.rotary_emb.inv_freq", inv_freq(500000.0)}};
  std::string file, message;
  message = load_error(bad, &file);
  CHECK(message == file + ": tensor \"model.layers.1.self_attn.rotary_emb.inv_freq\" disagrees with "
                                         "rope_theta 10000.000000 at index 1");
}
