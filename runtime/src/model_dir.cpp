#include "hnf/runtime/model_dir.h"

#include <fstream>
#include <sstream>

#include "hnf/proofs/error.h"

namespace hnf::runtime {

ModelDir load_model_dir(const std::filesystem::path& dir) {
  if (!std::filesystem::is_directory(dir)) throw proofs::bad_input(dir.string(), "is not a model folder");
  auto model = LlamaModel::load(dir);
  auto tokenizer = Tokenizer::load(dir / "tokenizer.model");
  if (tokenizer.vocab_size() != model.config().vocab_size) {
    throw proofs::bad_input((dir / "tokenizer.model").string(),
                            "tokenizer has " + std::to_string(tokenizer.vocab_size()) +
                                " pieces but config.json vocab_size is " + std::to_string(model.config().vocab_size));
  }
  return ModelDir{dir, std::move(model), std::move(tokenizer)};
}

std::string read_text_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw proofs::bad_input(path.string(), "cannot open");
  std::ostringstream text;
  text << in.rdbuf();
  if (text.str().empty()) throw proofs::bad_input(path.string(), "text is empty");
  return std::move(text).str();
}

}  // namespace hnf::runtime
