// hnf-train: trains the reference Llama model on the project's corpora (scripts/corpora.sh,
// scripts/train_tokenizer.sh) and writes it in the Hugging Face layout. See models/README.md.
#include <CLI/CLI.hpp>

#include <chrono>
#include <cstring>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <thread>

#include "hnf/proofs/error.h"
#include "hnf/proofs/safetensors.h"
#include "hnf/train/trainer.h"

namespace {

using hnf::proofs::bad_input;

// Token ids written by `hnf-verify tokenize` (tensor "tokens", I32 [n]); every id < vocab_size.
std::vector<std::int32_t> read_tokens(const std::filesystem::path& path, std::int64_t vocab_size) {
  const auto file = hnf::proofs::SafetensorsFile::open(path);
  const auto* tensor = file.find("tokens");
  if (tensor == nullptr || tensor->dtype != hnf::proofs::Dtype::kI32 || tensor->shape.size() != 1)
    throw bad_input(path.string(), "needs one I32 tensor 'tokens' of rank 1 (written by hnf-verify tokenize)");
  std::vector<std::int32_t> ids(tensor->numel());
  std::memcpy(ids.data(), file.bytes(*tensor).data(), tensor->nbytes());
  for (const auto id : ids)
    if (id < 0 || id >= vocab_size) throw bad_input(path.string(), "token id " + std::to_string(id) + " is outside the vocabulary");
  return ids;
}

// The BLAS behind torch is chosen at run time (libblas.so.3 alternative, OPENBLAS_CORETYPE); a
// wrong kernel would silently corrupt training. Compare one GEMM against a double-precision loop.
void check_blas() {
  torch::manual_seed(12345);
  const auto a = torch::randn({192, 160});
  const auto b = torch::randn({160, 224});
  const auto c = torch::matmul(a, b);
  const auto A = a.accessor<float, 2>();
  const auto B = b.accessor<float, 2>();
  const auto C = c.accessor<float, 2>();
  double worst = 0.0;
  for (int i = 0; i < 192; ++i)
    for (int j = 0; j < 224; ++j) {
      double exact = 0.0;
      for (int k = 0; k < 160; ++k) exact += static_cast<double>(A[i][k]) * B[k][j];
      worst = std::max(worst, std::abs(exact - C[i][j]));
    }
  if (worst > 1e-3) {
    throw hnf::proofs::Error(hnf::proofs::ErrorKind::kInternal,
                             "BLAS check failed: matmul differs from the reference by " + std::to_string(worst) +
                                 " (unset OPENBLAS_CORETYPE or select another libblas.so.3)");
  }
}

struct Options {
  std::filesystem::path data = ".cache/tokens";  // <genre>/{train,eval}.safetensors
  std::filesystem::path tokenizer = ".cache/tokenizer/tokenizer.model";
  hnf::train::ModelShape shape;
  hnf::train::TrainOptions train;
  std::vector<std::string> genres{"prose", "code", "dialogue"};
  std::vector<double> weights{0.5, 0.25, 0.25};
  int threads = 0;
};

int run(const Options& o) {
  const int threads = o.threads > 0 ? o.threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  torch::set_num_threads(threads);
  check_blas();
  if (o.genres.size() != o.weights.size()) throw bad_input("--weights", "needs one weight per genre");
  hnf::train::ModelShape shape = o.shape;

  std::vector<hnf::train::Corpus> corpora;
  for (std::size_t i = 0; i < o.genres.size(); ++i) {
    const auto dir = o.data / o.genres[i];
    hnf::train::Corpus c;
    c.name = o.genres[i];
    c.weight = o.weights[i];
    c.train = read_tokens(dir / "train.safetensors", shape.vocab_size);
    c.eval = read_tokens(dir / "eval.safetensors", shape.vocab_size);
    std::fprintf(stderr, "hnf-train: %s: %zu train / %zu eval tokens\n", c.name.c_str(), c.train.size(), c.eval.size());
    corpora.push_back(std::move(c));
  }

  std::filesystem::create_directories(o.train.out);
  hnf::train::LlamaTorch model(shape, o.train.seed);
  std::fprintf(stderr, "hnf-train: %lld parameters, %d threads, %lld steps of %lld x %lld tokens\n",
               static_cast<long long>(model.parameter_count()), threads, static_cast<long long>(o.train.steps),
               static_cast<long long>(o.train.batch), static_cast<long long>(o.train.seq_len));
  hnf::train::train(model, corpora, o.train, [](const std::string& line) { std::fprintf(stderr, "%s\n", line.c_str()); });
  std::filesystem::copy_file(o.tokenizer, o.train.out / "tokenizer.model",
                             std::filesystem::copy_options::overwrite_existing);
  std::fprintf(stderr, "hnf-train: wrote %s\n", o.train.out.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"hnf-train: train the reference Llama model (LibTorch) and save it in the Hugging Face layout"};
  Options o;
  std::string out;
  // scripts/train_model.sh passes the committed model's settings first and the user's after:
  // the last occurrence of an option wins.
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  app.add_option("--out,-o", out, "Model folder to write (config.json, model.safetensors, tokenizer.model, train_log.csv)")->required();
  app.add_option("--data", o.data, "Token files <genre>/{train,eval}.safetensors (scripts/train_model.sh makes them)")->capture_default_str();
  app.add_option("--tokenizer", o.tokenizer, "SentencePiece model the token files were made with (copied into --out)")->capture_default_str();
  app.add_option("--vocab", o.shape.vocab_size, "vocab_size (the tokenizer's)")->capture_default_str();
  app.add_option("--bos", o.shape.bos_token_id, "Beginning-of-sequence id (the tokenizer's)")->capture_default_str();
  app.add_option("--genres", o.genres, "Genres (sub-folders of --corpora) to train on")->capture_default_str();
  app.add_option("--weights", o.weights, "Share of training windows per genre")->capture_default_str();
  app.add_option("--hidden", o.shape.hidden_size, "hidden_size")->capture_default_str();
  app.add_option("--intermediate", o.shape.intermediate_size, "intermediate_size (SwiGLU)")->capture_default_str();
  app.add_option("--layers", o.shape.num_layers, "num_hidden_layers")->capture_default_str();
  app.add_option("--heads", o.shape.num_heads, "num_attention_heads")->capture_default_str();
  app.add_option("--kv-heads", o.shape.num_kv_heads, "num_key_value_heads")->capture_default_str();
  app.add_option("--context", o.shape.max_positions, "max_position_embeddings")->capture_default_str();
  app.add_option("--rope-theta", o.shape.rope_theta, "RoPE base")->capture_default_str();
  app.add_option("--steps", o.train.steps, "Optimizer steps")->capture_default_str();
  app.add_option("--batch", o.train.batch, "Windows per step")->capture_default_str();
  app.add_option("--seq", o.train.seq_len, "Tokens per window (BOS first)")->capture_default_str();
  app.add_option("--long-seq", o.train.long_seq_len, "Window length of the final --long-steps steps")->capture_default_str();
  app.add_option("--long-steps", o.train.long_steps, "Final steps on --long-seq windows (same tokens per step)")->capture_default_str();
  app.add_option("--lr", o.train.lr, "Peak learning rate")->capture_default_str();
  app.add_option("--min-lr", o.train.min_lr, "Final learning rate")->capture_default_str();
  app.add_option("--warmup", o.train.warmup, "Warm-up steps")->capture_default_str();
  app.add_option("--eval-every", o.train.eval_every, "Steps between evaluations and checkpoints")->capture_default_str();
  app.add_option("--seed", o.train.seed, "Seed of initialisation and data order")->capture_default_str();
  app.add_option("--threads", o.threads, "Torch threads (0: all cores)")->capture_default_str();
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "hnf-train: %s (see --help)\n", e.what());
    return 3;
  }
  o.train.out = out;
  try {
    return run(o);
  } catch (const hnf::proofs::Error& e) {
    std::fprintf(stderr, "hnf-train: %s\n", e.what());
    return static_cast<int>(e.exit_code());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "hnf-train: internal error: %s\n", e.what());
    return 4;
  }
}
