// The trainer's LibTorch model against the C++ runner: same weights, same logits. Torch headers
// come first (they define glog's CHECK, which doctest's must replace).
#include "hnf/train/llama_torch.h"
#include "hnf/train/trainer.h"

#include <doctest/doctest.h>

#include <cmath>

#include "hnf/runtime/dense_kv_cache.h"
#include "hnf/runtime/llama_model.h"
#include "test_files.h"

using namespace hnf;

namespace {

train::ModelShape small_shape() {
  train::ModelShape s;
  s.vocab_size = 64;
  s.hidden_size = 64;
  s.intermediate_size = 96;
  s.num_layers = 2;
  s.num_heads = 4;
  s.num_kv_heads = 2;
  s.max_positions = 64;
  return s;
}

}  // namespace

TEST_CASE("a model saved by the trainer gives the runner the trainer's logits") {
  testing::TempDir dir;
  const train::LlamaTorch model(small_shape(), 7);
  model.save(dir.path());
  const auto runner = runtime::LlamaModel::load(dir.path());
  CHECK(runner.config().num_key_value_heads == 2);
  CHECK(runner.config().tie_word_embeddings);

  std::vector<std::int32_t> tokens;
  for (int i = 0; i < 40; ++i) tokens.push_back((i * 13 + 5) % 64);
  const auto input = torch::tensor(std::vector<std::int64_t>(tokens.begin(), tokens.end())).reshape({1, 40});
  torch::NoGradGuard no_grad;
  const auto expected = model.forward(input).reshape({40, 64}).contiguous();

  std::vector<float> logits(40 * 64);
  runtime::DenseKvCache cache(runner.cache_shape(), 40);
  runner.forward(tokens, cache, logits.data());
  double worst = 0.0;
  const float* e = expected.data_ptr<float>();
  for (std::size_t i = 0; i < logits.size(); ++i) worst = std::max(worst, std::fabs(static_cast<double>(logits[i]) - e[i]));
  CHECK(worst <= 1e-4);
}

TEST_CASE("the learning rate warms up linearly and decays by a cosine to the floor") {
  train::TrainOptions o;
  o.steps = 1000;
  o.warmup = 100;
  o.lr = 1e-3;
  o.min_lr = 1e-4;
  CHECK(train::learning_rate(o, 0) == doctest::Approx(1e-5));
  CHECK(train::learning_rate(o, 99) == doctest::Approx(1e-3));
  CHECK(train::learning_rate(o, 550) == doctest::Approx(5.5e-4));  // half-way down
  CHECK(train::learning_rate(o, 999) == doctest::Approx(1e-4).epsilon(1e-3));
}

TEST_CASE("training lowers the loss on a learnable stream and writes log and checkpoint") {
  testing::TempDir dir;
  train::LlamaTorch model(small_shape(), 3);
  train::Corpus c;
  c.name = "pattern";
  for (int i = 0; i < 4000; ++i) c.train.push_back(2 + (i % 17));  // a period-17 cycle
  c.eval = c.train;
  train::TrainOptions o;
  o.steps = 40;
  o.batch = 4;
  o.seq_len = 32;
  o.warmup = 5;
  o.lr = 3e-3;
  o.eval_every = 20;
  o.eval_windows = 4;
  o.out = dir.path();
  const double before = train::evaluate(model, {c}, 32, 4).front().loss;
  std::vector<std::string> lines;
  train::train(model, {c}, o, [&](const std::string& line) { lines.push_back(line); });
  const double after = train::evaluate(model, {c}, 32, 4).front().loss;
  CHECK(before > 3.0);          // about log(64) at initialisation
  CHECK(after < 0.5 * before);  // the cycle is learnable
  CHECK(lines.size() == 2);
  CHECK(std::filesystem::exists(dir / "model.safetensors"));
  CHECK(testing::read_file(dir / "train_log.csv").starts_with("step,tokens,lr,train_loss,eval_pattern,seconds\n"));
}
