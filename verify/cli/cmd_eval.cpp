// hnf-verify eval: perplexity and bits per byte of a model on a text (sliding windows), with an
// add-one unigram baseline computed in the same run.
#include <fmt/format.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "hnf/proofs/error.h"
#include "hnf/runtime/evaluate.h"
#include "hnf/runtime/model_dir.h"
#include "progress.h"

namespace hnf::verify::cli {
namespace {

struct EvalCommandOptions {
  std::string model;
  std::string text;
  std::int64_t max_tokens = 0;
  runtime::EvalOptions eval;
  bool json = false;
};

int run_eval(const EvalCommandOptions& o) {
  const auto start = std::chrono::steady_clock::now();
  const auto dir = runtime::load_model_dir(o.model);
  const std::string text = runtime::read_text_file(o.text);
  auto ids = dir.tokenizer.encode(text, o.text);
  if (o.max_tokens < 0) throw proofs::bad_input("--max-tokens", "must not be negative");
  if (o.max_tokens > 0 && static_cast<std::int64_t>(ids.size()) > o.max_tokens) ids.resize(static_cast<std::size_t>(o.max_tokens));
  // Bits per byte are over the UTF-8 bytes the evaluated tokens spell.
  const auto bytes = static_cast<double>(dir.tokenizer.decode(ids).size());

  Progress progress("eval " + o.text, 0);
  const auto result = runtime::evaluate_perplexity(
      dir.model, ids, dir.tokenizer.bos_id(), o.eval, nullptr, [&](std::int64_t done, std::int64_t total) {
        progress.update(static_cast<std::uint64_t>(done), static_cast<std::uint64_t>(total));
      });
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const double bits_per_byte = result.nll_nats / std::log(2.0) / bytes;

  if (o.json) {
    nlohmann::json j{{"model", o.model},
                     {"text", o.text},
                     {"tokens", result.tokens},
                     {"bytes", bytes},
                     {"windows", result.windows},
                     {"context", o.eval.context},
                     {"stride", o.eval.stride},
                     {"perplexity", result.perplexity},
                     {"bits_per_byte", bits_per_byte},
                     {"unigram_perplexity", result.unigram_perplexity},
                     {"seconds", seconds}};
    std::fputs((j.dump(2) + "\n").c_str(), stdout);
    return 0;
  }
  std::string out = fmt::format("model               {}\n", o.model);
  out += fmt::format("text                {} ({} tokens, {} bytes)\n", o.text, result.tokens, bytes);
  out += fmt::format("windows             {} (context {}, stride {})\n", result.windows, o.eval.context, o.eval.stride);
  out += fmt::format("perplexity          {:.3f}\n", result.perplexity);
  out += fmt::format("bits per byte       {:.4f}\n", bits_per_byte);
  out += fmt::format("unigram perplexity  {:.3f} (add-one, fitted on this text; {:.2f}x the model's)\n",
                     result.unigram_perplexity, result.unigram_perplexity / result.perplexity);
  out += fmt::format("time                {:.1f} s ({:.0f} tokens/s)\n", seconds, static_cast<double>(result.tokens) / seconds);
  std::fputs(out.c_str(), stdout);
  return 0;
}

}  // namespace

void register_eval(CLI::App& app, int* exit_code) {
  auto options = std::make_shared<EvalCommandOptions>();
  CLI::App* cmd = app.add_subcommand("eval", "Perplexity and bits per byte of a model on a text (sliding windows)");
  cmd->add_option("--model", options->model, "Model folder (config.json, model.safetensors, tokenizer.model)")->required();
  cmd->add_option("--text", options->text, "UTF-8 text file")->required();
  cmd->add_option("--ctx", options->eval.context, "Tokens per window, BOS included")->capture_default_str();
  cmd->add_option("--stride", options->eval.stride, "New tokens scored per window")->capture_default_str();
  cmd->add_option("--max-tokens", options->max_tokens, "Evaluate only the first N tokens (0: all)")->capture_default_str();
  cmd->add_flag("--json", options->json, "Print as JSON");
  cmd->callback([options, exit_code] { *exit_code = run_eval(*options); });
}

}  // namespace hnf::verify::cli
