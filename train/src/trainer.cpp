#include "hnf/train/trainer.h"

#include <chrono>
#include <cmath>
#include <fstream>
#include <numbers>
#include <random>

#include "hnf/proofs/error.h"

namespace hnf::train {
namespace {

// A window of seq_len model inputs: BOS then the first seq_len - 1 tokens of `stream` at
// `offset`; the targets are the seq_len tokens from `offset`.
void fill_window(const std::vector<std::int32_t>& stream, std::int64_t offset, std::int64_t seq_len,
                 std::int64_t bos, std::int64_t* input, std::int64_t* target) {
  input[0] = bos;
  for (std::int64_t t = 0; t < seq_len; ++t) {
    const std::int64_t token = stream[static_cast<std::size_t>(offset + t)];
    target[t] = token;
    if (t + 1 < seq_len) input[t + 1] = token;
  }
}

double batch_loss(const LlamaTorch& model, const torch::Tensor& input, const torch::Tensor& target) {
  const auto logits = model.forward(input);
  return torch::nn::functional::cross_entropy(logits.reshape({-1, logits.size(-1)}), target.reshape({-1}))
      .item<double>();
}

}  // namespace

double learning_rate(const TrainOptions& o, std::int64_t step) {
  if (step < o.warmup) return o.lr * static_cast<double>(step + 1) / static_cast<double>(o.warmup);
  const double progress =
      static_cast<double>(step - o.warmup) / static_cast<double>(std::max<std::int64_t>(1, o.steps - o.warmup));
  return o.min_lr + 0.5 * (o.lr - o.min_lr) * (1.0 + std::cos(std::numbers::pi * std::min(1.0, progress)));
}

std::vector<EvalResult> evaluate(const LlamaTorch& model, const std::vector<Corpus>& corpora, std::int64_t seq_len,
                                 std::int64_t windows) {
  torch::NoGradGuard no_grad;
  std::vector<EvalResult> results;
  for (const auto& corpus : corpora) {
    const auto available = static_cast<std::int64_t>(corpus.eval.size()) - seq_len;
    HNF_ASSERT(available > 0, "eval stream of " + corpus.name + " is shorter than one window");
    auto input = torch::empty({windows, seq_len}, torch::kInt64);
    auto target = torch::empty({windows, seq_len}, torch::kInt64);
    for (std::int64_t w = 0; w < windows; ++w) {
      const std::int64_t offset = available * w / windows;  // evenly spread, fixed
      fill_window(corpus.eval, offset, seq_len, model.shape().bos_token_id, input[w].data_ptr<std::int64_t>(),
                  target[w].data_ptr<std::int64_t>());
    }
    results.push_back({corpus.name, batch_loss(model, input, target)});
  }
  return results;
}

void train(LlamaTorch& model, const std::vector<Corpus>& corpora, const TrainOptions& o,
           const std::function<void(const std::string&)>& on_log) {
  HNF_ASSERT(!corpora.empty(), "no corpora to train on");
  std::vector<double> weights;
  for (const auto& c : corpora) {
    if (static_cast<std::int64_t>(c.train.size()) <= std::max(o.seq_len, o.long_seq_len))
      throw proofs::bad_input(c.name, "train split has fewer tokens than one window");
    weights.push_back(c.weight);
  }

  // Decay matrices only; norm gains are not decayed.
  std::vector<torch::Tensor> decay, no_decay;
  for (const auto& [name, t] : model.named_parameters()) (t.dim() >= 2 ? decay : no_decay).push_back(t);
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(decay, std::make_unique<torch::optim::AdamWOptions>(
                                 torch::optim::AdamWOptions(o.lr).betas({0.9, 0.95}).weight_decay(o.weight_decay)));
  groups.emplace_back(no_decay, std::make_unique<torch::optim::AdamWOptions>(
                                    torch::optim::AdamWOptions(o.lr).betas({0.9, 0.95}).weight_decay(0.0)));
  torch::optim::AdamW optimizer(std::move(groups));

  std::mt19937_64 rng(o.seed);
  std::discrete_distribution<std::size_t> pick_corpus(weights.begin(), weights.end());
  const auto parameters = model.parameters();

  std::ofstream log(o.out / "train_log.csv");
  if (!log) throw proofs::bad_input((o.out / "train_log.csv").string(), "cannot write");
  log << "step,tokens,lr,train_loss";
  for (const auto& c : corpora) log << ",eval_" << c.name;
  log << ",seconds\n";

  const auto start = std::chrono::steady_clock::now();
  double running_loss = 0.0;
  std::int64_t running_count = 0;
  std::int64_t tokens = 0;
  for (std::int64_t step = 0; step < o.steps; ++step) {
    const bool long_phase = step >= o.steps - o.long_steps;
    const std::int64_t seq_len = long_phase ? o.long_seq_len : o.seq_len;
    const std::int64_t batch = long_phase ? std::max<std::int64_t>(1, o.batch * o.seq_len / o.long_seq_len) : o.batch;
    auto input = torch::empty({batch, seq_len}, torch::kInt64);
    auto target = torch::empty({batch, seq_len}, torch::kInt64);
    for (std::int64_t b = 0; b < batch; ++b) {
      const Corpus& c = corpora[pick_corpus(rng)];
      std::uniform_int_distribution<std::int64_t> pick_offset(0, static_cast<std::int64_t>(c.train.size()) - seq_len);
      fill_window(c.train, pick_offset(rng), seq_len, model.shape().bos_token_id, input[b].data_ptr<std::int64_t>(),
                  target[b].data_ptr<std::int64_t>());
    }
    tokens += batch * seq_len;
    const double lr = learning_rate(o, step);
    for (auto& group : optimizer.param_groups()) static_cast<torch::optim::AdamWOptions&>(group.options()).lr(lr);

    optimizer.zero_grad();
    const auto logits = model.forward(input);
    const auto loss =
        torch::nn::functional::cross_entropy(logits.reshape({-1, logits.size(-1)}), target.reshape({-1}));
    loss.backward();
    torch::nn::utils::clip_grad_norm_(parameters, o.grad_clip);
    optimizer.step();
    running_loss += loss.item<double>();
    ++running_count;

    const bool last = step + 1 == o.steps;
    if ((step + 1) % o.eval_every == 0 || last) {
      const auto evals = evaluate(model, corpora, o.seq_len, o.eval_windows);
      const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      log << step + 1 << ',' << tokens << ',' << lr << ',' << running_loss / static_cast<double>(running_count);
      std::string line = "step " + std::to_string(step + 1) + "/" + std::to_string(o.steps) + "  tokens " +
                         std::to_string(tokens) + "  train " + std::to_string(running_loss / static_cast<double>(running_count));
      for (const auto& e : evals) {
        log << ',' << e.loss;
        line += "  eval_" + e.genre + " " + std::to_string(e.loss);
      }
      log << ',' << seconds << '\n' << std::flush;
      line += "  (" + std::to_string(static_cast<std::int64_t>(seconds)) + " s, " +
              std::to_string(static_cast<std::int64_t>(static_cast<double>(tokens) / seconds)) + " tokens/s)";
      if (on_log) on_log(line);
      running_loss = 0.0;
      running_count = 0;
      model.save(o.out);  // a usable checkpoint even if the run is stopped
    }
  }
}

}  // namespace hnf::train
