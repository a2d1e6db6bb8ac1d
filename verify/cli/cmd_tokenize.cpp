// hnf-verify tokenize: text -> token ids in a safetensors file (tensor "tokens", I32 [n]).
// The trainer reads these files instead of linking SentencePiece: LibTorch and SentencePiece
// each carry protobuf, and a process that loads both crashes during start-up.
#include <cstdio>
#include <fstream>
#include <sstream>

#include "commands.h"
#include "hnf/proofs/error.h"
#include "hnf/proofs/read_file.h"
#include "hnf/proofs/safetensors.h"
#include "hnf/runtime/tokenizer.h"

namespace hnf::verify::cli {
namespace {

struct TokenizeOptions {
  std::string tokenizer;
  std::string text;
  std::string out;
};

int run_tokenize(const TokenizeOptions& o) {
  const auto tokenizer = runtime::Tokenizer::load(o.tokenizer);
  // Bounded (a pipe or /dev/zero cannot exhaust memory) and one consistent snapshot.
  const std::string text = proofs::read_whole_file(o.text);
  const auto ids = tokenizer.encode(text, o.text);
  proofs::SafetensorsWriter writer(o.out, {{"tokens", proofs::Dtype::kI32, {static_cast<std::int64_t>(ids.size())}}},
                                   {{"format", "hnf-tokens"},
                                    {"tokenizer", o.tokenizer},
                                    {"text_source", o.text},
                                    {"text_bytes", std::to_string(text.size())}});
  writer.append("tokens", std::as_bytes(std::span(ids)));
  writer.finish();
  std::fprintf(stderr, "hnf-verify: %s: %zu tokens (%.3f bytes per token)\n", o.text.c_str(), ids.size(),
               ids.empty() ? 0.0 : static_cast<double>(text.size()) / static_cast<double>(ids.size()));
  return 0;
}

}  // namespace

void register_tokenize(CLI::App& app, int* exit_code) {
  auto options = std::make_shared<TokenizeOptions>();
  CLI::App* cmd = app.add_subcommand("tokenize", "Encode a text file with a SentencePiece model into token ids (safetensors)");
  cmd->add_option("--tokenizer", options->tokenizer, "SentencePiece model (tokenizer.model)")->required();
  cmd->add_option("--text", options->text, "UTF-8 text file")->required();
  cmd->add_option("--out,-o", options->out, "Output file: tensor 'tokens', I32 [n] (written atomically)")->required();
  cmd->callback([options, exit_code] { *exit_code = run_tokenize(*options); });
}

}  // namespace hnf::verify::cli
